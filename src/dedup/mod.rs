//! `weir-dedup`: a content-addressed repository of streams (weir archives, base backups, any
//! bytes), where what two backups share is stored once, as restic, borg and kopia store files.
//!
//! `push` cuts its standard input into chunks ([`chunker`]), names each by a keyed hash of its
//! bytes, stores those the repository lacks in packs (`age(zstd(chunk) ...)`, [`pack`]) under
//! `packs/`, the runs of chunks' locations in lists under `lists/`, and writes a recipe last
//! (`backups/NAME/STAMP.json`), so a backup exists only once all it needs is stored.
//! `cat` writes the stream back byte for byte, every chunk checked against its name before it
//! is written. The layout and the key are in [`store`]; docs/FORMAT.md has the formats.

pub mod access;
pub mod cat;
pub mod chunker;
pub mod index;
pub mod inventory;
pub mod lock;
pub mod moves;
pub mod pack;
pub mod prune;
pub mod push;
pub mod store;

use anyhow::Result;

pub type Recipient = Box<dyn age::Recipient + Send>;
pub type Identity = Box<dyn age::Identity>;

/// Encrypts `data` to `recipients` into `out` (age), the payload through weir-encrypt's
/// OpenSSL path, at about twice the age crate's own cipher speed (see age_stream).
fn seal(data: &[u8], recipients: &[Recipient], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&crate::stream::encrypt::seal_in_memory(data, recipients)?);
    Ok(())
}

/// A version 1 chunk back from its stored form, `age(zstd(chunk))`, checked: its length and
/// its keyed hash must be what the recipe names it by.
fn decode(
    z: &mut zstd::bulk::Decompressor,
    stored: &[u8],
    identities: &[Identity],
    (key, id, len): (&store::Key, &str, u64),
) -> Result<Vec<u8>> {
    let compressed = crate::stream::encrypt::open_in_memory(stored, identities)
        .map_err(|e| e.context(format!("chunk {id}")))?;
    pack::decompress(z, &compressed, key, id, len)
}
