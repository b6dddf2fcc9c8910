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
        Some(l) => compress(file, l)?,
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

/// The file as zstd frames, one per core for a segment (concatenated frames are one valid
/// zstd stream: `zstd -d` reads them as one), each with its content size and checksum, so
/// `zstd -d` alone detects damage. The archiver waits for every segment; cutting it in
/// pieces lets the other core help, at a cost in ratio too small to see at 4 MiB and more.
fn compress(file: &[u8], level: i32) -> Result<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let piece = file.len().div_ceil(cores).max(4 << 20);
    let frames: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = file
            .chunks(piece)
            .map(|p| {
                s.spawn(move || -> Result<Vec<u8>> {
                    let mut z = zstd::bulk::Compressor::new(level)?;
                    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                    Ok(z.compress(p)?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("compression thread"))
            .collect()
    });
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&f?);
    }
    Ok(out)
}

/// A stored object's file, and whether a layer already verified every byte of it.
pub struct Decoded {
    pub data: Vec<u8>,
    /// Every zstd frame carried a content checksum, and it matched.
    pub checksummed: bool,
}

/// The file inside a stored object, every layer verified (age authenticates each chunk and
/// the end; each zstd frame carries its checksum).
pub fn decode(object: Vec<u8>, identities: &[Identity]) -> Result<Decoded> {
    let mut data = object;
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
        let checksummed = all_frames_checksummed(&data);
        return Ok(Decoded {
            data: decompress(&data)?,
            checksummed,
        });
    }
    Ok(Decoded {
        data,
        checksummed: false,
    })
}

/// Whether each frame's header sets Content_Checksum_flag (RFC 8878, 3.1.1.1.1: bit 2 of the
/// descriptor after the magic). Decompression verifies those checksums.
fn all_frames_checksummed(data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Ok(size) = zstd::zstd_safe::find_frame_compressed_size(rest) else {
            return false;
        };
        if !rest.starts_with(&ZSTD_MAGIC) || rest.get(4).is_none_or(|d| d & 0x04 == 0) {
            return false;
        }
        rest = &rest[size..];
    }
    true
}

/// The frames' contents, each into its place in one buffer of the size their headers
/// declare, in parallel; frames without a declared size are streamed, bounded by
/// [`MAX_FILE`].
fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let damaged = |e: std::io::Error| bad_input(format!("the compressed data is damaged: {e}"));
    let mut frames: Vec<(&[u8], usize)> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let size = zstd::zstd_safe::find_frame_compressed_size(rest)
            .map_err(|_| bad_input("the compressed data is damaged (a frame is cut short)"))?;
        let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(&rest[..size]) else {
            return decompress_streaming(data);
        };
        frames.push((&rest[..size], n as usize));
        rest = &rest[size..];
    }
    let total: usize = frames.iter().map(|f| f.1).sum();
    if total as u64 > MAX_FILE {
        return Err(bad_input("the object decompresses to more than 1 GiB"));
    }
    let mut out = vec![0u8; total];
    let mut slots: Vec<&mut [u8]> = Vec::new();
    let mut free: &mut [u8] = &mut out;
    for (_, n) in &frames {
        let (slot, tail) = std::mem::take(&mut free).split_at_mut(*n);
        slots.push(slot);
        free = tail;
    }
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = frames
            .iter()
            .zip(slots)
            .map(|((frame, n), slot)| {
                s.spawn(move || -> Result<()> {
                    let got = zstd::bulk::Decompressor::new()?
                        .decompress_to_buffer(frame, slot)
                        .map_err(damaged)?;
                    if got != *n {
                        return Err(bad_input("a frame is shorter than its header says"));
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("decompression thread"))
    })?;
    Ok(out)
}

fn decompress_streaming(data: &[u8]) -> Result<Vec<u8>> {
    let mut plain = Vec::new();
    zstd::stream::Decoder::new(data)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut plain)
        .map_err(|e| bad_input(format!("the compressed data is damaged: {e}")))
        .context("decompressing")?;
    if plain.len() as u64 > MAX_FILE {
        return Err(bad_input("the object decompresses to more than 1 GiB"));
    }
    Ok(plain)
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
            let d = decode(obj.clone(), &ids).unwrap();
            assert_eq!(d.data, file);
            assert_eq!(d.checksummed, level.is_some());
            if level.is_some() || !recipients.is_empty() {
                let mut bad = obj.clone();
                let n = bad.len();
                bad[n - 10] ^= 1;
                assert!(decode(bad, &ids).is_err());
                assert!(decode(obj[..n - 100].to_vec(), &ids).is_err());
            }
        }
    }
}
