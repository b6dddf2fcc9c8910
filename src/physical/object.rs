//! One archived WAL file as stored: `age(zstd(file))`, or any subset of the two, so that
//! `age -d | zstd -d` (or either alone) recovers it by hand. The reader tells the layers
//! apart by their magic (`age-encryption.org/v1`, the zstd frame magic), so objects written
//! with other settings stay readable. The digest kept beside each object is the SHA-256 of the
//! file itself, which a re-push can compare without decrypting (age ciphertext differs every
//! time).

use crate::plumbing::bad_input;
use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// No archived file is larger than a 1 GiB segment; a corrupt size field cannot make the
/// decompressor allocate more.
const MAX_FILE: u64 = 1 << 30;

pub type Recipient = Box<dyn age::Recipient + Send>;
pub type Identity = Box<dyn age::Identity>;

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The stored form of `file`: compressed at `level` (none: as it is), then encrypted to the
/// recipients (none: not encrypted).
pub fn encode(file: &[u8], level: Option<i32>, recipients: &[Recipient]) -> Result<Vec<u8>> {
    let data = match level {
        Some(l) => {
            let mut z = zstd::stream::Encoder::new(Vec::with_capacity(file.len() / 3), l)?;
            // The frame checksum lets `zstd -d` alone detect a damaged object.
            z.include_checksum(true)?;
            z.set_pledged_src_size(Some(file.len() as u64))?;
            z.write_all(file)?;
            z.finish()?
        }
        None => file.to_vec(),
    };
    if recipients.is_empty() {
        return Ok(data);
    }
    let enc = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(data.len() + 512);
    let mut w = enc.wrap_output(&mut out)?;
    w.write_all(&data)?;
    w.finish()?;
    Ok(out)
}

/// The file inside a stored object, every layer verified (age authenticates each chunk and
/// the end; the zstd frame carries its checksum).
pub fn decode(object: &[u8], identities: &[Identity]) -> Result<Vec<u8>> {
    let mut data = object.to_vec();
    if data.starts_with(AGE_MAGIC) {
        if identities.is_empty() {
            return Err(anyhow!(
                "the object is encrypted: give -i FILE or WEIR_AGE_IDENTITY_FILE"
            ));
        }
        let dec = age::Decryptor::new_buffered(&data[..])
            .map_err(|e| bad_input(format!("not a readable age file: {e}")))?;
        let mut r = dec
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| bad_input(format!("cannot decrypt: {e}")))?;
        let mut plain = Vec::with_capacity(data.len());
        r.read_to_end(&mut plain)
            .map_err(|e| bad_input(format!("the ciphertext is truncated or altered: {e}")))?;
        data = plain;
    }
    if data.starts_with(&ZSTD_MAGIC) {
        let mut plain = Vec::new();
        zstd::stream::Decoder::new(&data[..])?
            .take(MAX_FILE + 1)
            .read_to_end(&mut plain)
            .map_err(|e| bad_input(format!("the compressed data is damaged: {e}")))
            .context("decompressing")?;
        if plain.len() as u64 > MAX_FILE {
            return Err(bad_input("the object decompresses to more than 1 GiB"));
        }
        data = plain;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn every_layer_round_trips_and_damage_is_refused() {
        let file: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let id = age::x25519::Identity::generate();
        let r: Recipient =
            Box::new(age::x25519::Recipient::from_str(&id.to_public().to_string()).unwrap());
        let ids: Vec<Identity> = vec![Box::new(id)];
        for (level, recipients) in [(None, vec![]), (Some(3), vec![]), (Some(3), vec![r])] {
            let obj = encode(&file, level, &recipients).unwrap();
            assert_eq!(decode(&obj, &ids).unwrap(), file);
            if level.is_some() || !recipients.is_empty() {
                let mut bad = obj.clone();
                let n = bad.len();
                bad[n - 10] ^= 1;
                assert!(decode(&bad, &ids).is_err());
                assert!(decode(&obj[..n - 100], &ids).is_err());
            }
        }
    }
}
