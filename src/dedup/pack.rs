//! Packs: many chunks to one stored object, as restic packs its blobs. A pack is one age file
//! whose plaintext is its chunks' zstd frames one after another; a list says where each chunk's
//! frame starts and how long it is. By hand, `age -d` opens a pack and `dd` cuts a frame out of it
//! for `zstd -d`.
//!
//! One X25519 a pack rather than one a chunk (a 700 MB archive is about 10,000 chunks of
//! 64 KiB), and one object. A reader fetches only the part of a pack it needs: age's payload
//! is 64 KiB chunks each authenticated on its own (age-encryption.org/v1, "Payload"), so the
//! chunks of the payload that hold a range are read and opened alone, as
//! [`crate::stream::ranged`] does for a whole stream.

use super::store::{self, Key, Loc};
use super::{Identity, Recipient};
use crate::plumbing::bad_input;
use crate::storage::repo::Repo;
use crate::stream::age_stream::{CHUNK, TAG, open_chunk_into};
use anyhow::{Context, Result};
use std::collections::HashMap;

/// A pack is stored once its frames reach 8 MiB: big enough that a full backup is a few
/// dozen objects, small enough that the few in the uploaders' hands cost little. (4 MiB packs
/// held 35 MiB less in a full push of the bench's 700 MB archive, but twice the objects cost
/// its throughput: 0.90x the plain pipeline's at best, against 0.94x.)
pub const TARGET: usize = 8 << 20;

/// A pack being filled by a push's packing thread.
pub struct Packer {
    id: String,
    plain: Vec<u8>,
    chunks: Vec<(String, Loc)>,
}

impl Default for Packer {
    fn default() -> Self {
        Packer::new()
    }
}

impl Packer {
    pub fn new() -> Packer {
        Packer {
            id: store::random_hex(32),
            plain: Vec::with_capacity(TARGET + (1 << 20)),
            chunks: Vec::new(),
        }
    }

    /// Appends a chunk's zstd frame.
    pub fn add(&mut self, id: String, frame: &[u8]) {
        let loc = Loc {
            pack: self.id.clone(),
            at: self.plain.len() as u64,
            len: frame.len() as u64,
        };
        self.plain.extend_from_slice(frame);
        self.chunks.push((id, loc));
    }

    pub fn is_full(&self) -> bool {
        self.plain.len() >= TARGET
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Seals the pack and stores it (durable when this returns); then its chunks, with their
    /// locations, and the bytes stored.
    pub fn store(self, repo: &Repo, recipients: &[Recipient]) -> Result<(Vec<(String, Loc)>, u64)> {
        let sealed = crate::stream::encrypt::seal_in_memory(&self.plain, recipients)?;
        let at = store::pack_key(&self.id);
        repo.put(&at, &sealed)
            .with_context(|| format!("storing {at}"))?;
        Ok((self.chunks, sealed.len() as u64))
    }
}

/// zstd level for chunks: zstd's default, as weir-compress's.
const LEVEL: i32 = 3;

/// A chunk's frame: zstd without its content checksum: the chunk's keyed hash, which a reader checks anyway,
/// says more, and the checksum cost cat about 5% of its time at 64 KiB chunks.
pub fn compressor() -> Result<zstd::bulk::Compressor<'static>> {
    Ok(zstd::bulk::Compressor::new(LEVEL)?)
}

/// A chunk's frame back to its bytes, checked: its length and its keyed hash must be what the
/// list names it by.
pub fn decompress(
    z: &mut zstd::bulk::Decompressor,
    frame: &[u8],
    key: &Key,
    id: &str,
    bytes: u64,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; bytes as usize];
    decompress_into(z, frame, key, id, &mut out)?;
    Ok(out)
}

/// The same into `out` (the chunk's length). The caller keeps `z` between chunks: making one
/// a call cost cat a tenth of its time at 64 KiB chunks.
pub fn decompress_into(
    z: &mut zstd::bulk::Decompressor,
    frame: &[u8],
    key: &Key,
    id: &str,
    out: &mut [u8],
) -> Result<()> {
    let damaged = |why: String| bad_input(format!("chunk {id} is damaged: {why}"));
    let n = z
        .decompress_to_buffer(frame, &mut *out)
        .map_err(|e| damaged(format!("zstd: {e}")))?;
    if n != out.len() || key.chunk_id(out) != id {
        return Err(damaged("its bytes do not hash to its name".into()));
    }
    Ok(())
}

/// Reads ranges of packs' plaintexts, each pack's header opened once.
pub struct Reader<'a> {
    repo: &'a Repo,
    identities: &'a [Identity],
    /// Per pack: its payload key and where its payload starts.
    heads: HashMap<String, ([u8; 32], u64)>,
    /// The last read, sealed and opened.
    sealed: Vec<u8>,
    plain: Vec<u8>,
}

/// An age header with one X25519 stanza is about 200 bytes; this much holds a dozen.
const HEAD: usize = 4 << 10;
const SEALED: u64 = (CHUNK + TAG) as u64;

impl<'a> Reader<'a> {
    pub fn new(repo: &'a Repo, identities: &'a [Identity]) -> Reader<'a> {
        Reader {
            repo,
            identities,
            heads: HashMap::new(),
            sealed: Vec::new(),
            plain: Vec::new(),
        }
    }

    fn head(&mut self, pack: &str) -> Result<([u8; 32], u64)> {
        if let Some(h) = self.heads.get(pack) {
            return Ok(*h);
        }
        let at = store::pack_key(pack);
        let got = self.range(&at, 0, HEAD)?;
        let opened = match crate::stream::encrypt::open_head(&got, self.identities) {
            // Many recipients: the header and nonce need more than was read.
            Err(_) if got.len() == HEAD => {
                let got = self.range(&at, 0, 1 << 20)?;
                crate::stream::encrypt::open_head(&got, self.identities)
            }
            other => other,
        };
        let (key, payload) = opened.map_err(|e| e.context(format!("pack {pack}")))?;
        if self.heads.len() >= 256 {
            self.heads.clear();
        }
        self.heads.insert(pack.to_string(), (key, payload as u64));
        Ok((key, payload as u64))
    }

    /// Up to `len` bytes from `at` of the object; missing is bad input naming it.
    fn range(&self, key: &str, at: u64, len: usize) -> Result<Vec<u8>> {
        self.repo
            .read_range(key, at, len)?
            .ok_or_else(|| bad_input(format!("{key} is missing from the repository")))
    }

    /// Bytes `at..at + len` of `pack`'s plaintext, in a buffer this reader keeps until the
    /// next read. Each age chunk is opened as not the last first, then as the last: the flag
    /// is authenticated, so only the true one opens it.
    pub fn read(&mut self, pack: &str, at: u64, len: u64) -> Result<&[u8]> {
        if len == 0 {
            return Ok(&[]);
        }
        let (key, payload) = self.head(pack)?;
        let (first, last) = (at / CHUNK as u64, (at + len - 1) / CHUNK as u64);
        let want = ((last - first + 1) * SEALED) as usize;
        grow(&mut self.sealed, want);
        let at_key = store::pack_key(pack);
        let n = self
            .repo
            .read_range_into(&at_key, payload + first * SEALED, &mut self.sealed[..want])?
            .ok_or_else(|| bad_input(format!("{at_key} is missing from the repository")))?;
        let pieces = self.sealed[..n].chunks(SEALED as usize);
        let plain_len = n - pieces.len() * TAG;
        grow(&mut self.plain, plain_len);
        for ((i, ct), dst) in (first..)
            .zip(pieces)
            .zip(self.plain[..plain_len].chunks_mut(CHUNK))
        {
            let opened =
                open_chunk_into(&key, i, false, ct, dst) || open_chunk_into(&key, i, true, ct, dst);
            if !opened {
                return Err(bad_input(format!(
                    "pack {pack} is damaged or was tampered with (its chunk {i})"
                )));
            }
        }
        let skip = (at - first * CHUNK as u64) as usize;
        if plain_len < skip + len as usize {
            return Err(bad_input(format!(
                "pack {pack} is shorter than a list says ({len} bytes from {at} asked)"
            )));
        }
        Ok(&self.plain[skip..skip + len as usize])
    }
}

/// Makes `buf` at least `len` long; a buffer kept between reads is zeroed only where it grows.
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges of a stored pack read back as they went in: inside one age chunk, across chunk
    /// boundaries, up to the pack's last byte (which the last-chunk flag authenticates), and
    /// a byte changed in the pack refused.
    #[test]
    fn ranges_of_a_pack_read_back_whole_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::Dir(dir.path().to_path_buf());
        let id = age::x25519::Identity::generate();
        let recipients: Vec<Recipient> = vec![Box::new(id.to_public())];
        let identities: Vec<Identity> = vec![Box::new(id)];
        let mut p = Packer::new();
        let frames: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                (0..(i * 7919 % 70_000 + 1))
                    .map(|b| (b * 31 + i) as u8)
                    .collect()
            })
            .collect();
        for (i, f) in frames.iter().enumerate() {
            p.add(format!("{i:064x}"), f);
        }
        let (chunks, _) = p.store(&repo, &recipients).unwrap();
        let mut r = Reader::new(&repo, &identities);
        let mut read = |pack: &str, at: u64, len: u64| r.read(pack, at, len).unwrap().to_vec();
        for ((_, loc), f) in chunks.iter().zip(&frames) {
            assert_eq!(&read(&loc.pack, loc.at, loc.len), f);
        }
        let (first, last) = (&chunks[0].1, &chunks[chunks.len() - 1].1);
        let whole = read(&first.pack, 0, last.at + last.len);
        assert_eq!(whole, frames.concat());

        let path = dir.path().join(store::pack_key(&first.pack));
        let mut sealed = std::fs::read(&path).unwrap();
        let n = sealed.len();
        sealed[n - 40] ^= 1;
        std::fs::write(&path, sealed).unwrap();
        let mut r = Reader::new(&repo, &identities);
        let err = r.read(&last.pack, last.at, last.len).unwrap_err();
        assert!(format!("{err:#}").contains("damaged"), "{err:#}");
    }
}
