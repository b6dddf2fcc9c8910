//! `weir-dedup`: a content-addressed repository of streams (weir archives, base backups, any
//! bytes), where what two backups share is stored once, as restic, borg and kopia store files.
//!
//! `push` cuts its standard input into chunks ([`chunker`]), names each by a keyed hash of its
//! bytes, stores those the repository lacks as `age(zstd(chunk))` under `chunks/`, and writes a
//! recipe last (`backups/NAME/STAMP.json`), so a backup exists only once all it needs is stored.
//! `cat` writes the stream back byte for byte, every chunk checked against its name before it
//! is written. The layout and the key are in [`store`]; docs/FORMAT.md has the formats.

pub mod access;
pub mod cat;
pub mod chunker;
pub mod index;
pub mod inventory;
pub mod lock;
pub mod prune;
pub mod push;
pub mod store;

use crate::plumbing::bad_input;
use anyhow::Result;

pub type Recipient = Box<dyn age::Recipient + Send>;
pub type Identity = Box<dyn age::Identity>;

/// zstd level for chunks: zstd's default, as weir-compress's.
const LEVEL: i32 = 3;

/// Encrypts `data` to `recipients` into `out` (age), the payload through weir-encrypt's
/// OpenSSL path, at about twice the age crate's own cipher speed (see age_stream).
fn seal(data: &[u8], recipients: &[Recipient], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&crate::stream::encrypt::seal_in_memory(data, recipients)?);
    Ok(())
}

/// A chunk's stored form: zstd (with its checksum) inside age.
fn encode(chunk: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>> {
    let mut z = zstd::bulk::Compressor::new(LEVEL)?;
    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    let compressed = z.compress(chunk)?;
    let mut out = Vec::with_capacity(compressed.len() + 512);
    seal(&compressed, recipients, &mut out)?;
    Ok(out)
}

/// A chunk back from its stored form, checked: its length and its keyed hash must be what the
/// recipe names it by.
fn decode(
    stored: &[u8],
    identities: &[Identity],
    key: &store::Key,
    id: &str,
    len: u64,
) -> Result<Vec<u8>> {
    let damaged = |why: String| bad_input(format!("chunk {id} is damaged: {why}"));
    let compressed = crate::stream::encrypt::open_in_memory(stored, identities)
        .map_err(|e| e.context(format!("chunk {id}")))?;
    let data = zstd::bulk::decompress(&compressed, len as usize)
        .map_err(|e| damaged(format!("zstd: {e}")))?;
    if data.len() as u64 != len || key.chunk_id(&data) != id {
        return Err(damaged("its bytes do not hash to its name".into()));
    }
    Ok(data)
}
