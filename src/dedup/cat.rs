//! `weir-dedup cat REPO NAME[@STAMP]`: a backup's stream, byte for byte, on standard output.
//!
//! `jobs` workers fetch and decode chunks ahead of the writer, at most `2 x jobs` chunks
//! ahead, so memory stays bounded; the writer puts them out in order. Every chunk is checked
//! against its name (its keyed hash) before it is written, and the recipe against its
//! signature before anything is, so a missing or damaged chunk stops the stream (exit 3) short
//! of its end, and a weir-load reading it commits nothing. Together they authenticate every
//! byte (the signed recipe holds the inline bytes and the chunks' names), so the stream's own
//! BLAKE3 is not computed again here: on one writer thread it cost a third of cat's time. Its
//! length is checked at the end; `b3sum` checks the BLAKE3 by hand.

use super::access::Opener;
use super::store::{self, Entry, Key, Recipe};
use crate::plumbing::{Output, bad_input};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use crate::stream::encrypt::EncryptOptions;
use anyhow::{Context, Result, anyhow};
use base64::Engine;
use std::collections::BTreeMap;
use std::io::Write;

pub struct CatOptions {
    pub repo: String,
    pub s3: S3Settings,
    /// `NAME`, `NAME@latest` or `NAME@STAMP`.
    pub which: String,
    /// The identities (-i, WEIR_AGE_IDENTITY_FILE), or the passphrase options.
    pub enc: EncryptOptions,
    pub jobs: usize,
    pub output: Option<String>,
}

type Fetched = (usize, Result<Vec<u8>>);

pub fn cat(o: &CatOptions) -> Result<()> {
    let (repo, opener, key, recipe) = open_recipe(o)?;
    let mut out = Output::open(o.output.as_deref(), true)?;
    let chunks: Vec<(usize, String, u64)> = recipe
        .pieces
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Entry::Chunk { id, bytes } => Some((i, id.clone(), *bytes)),
            Entry::Inline { .. } => None,
        })
        .collect();
    drop(repo);
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<(usize, String, u64)>(o.jobs);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Fetched>();
    let (slots_tx, slots_rx) = crossbeam_channel::bounded::<()>(o.jobs * 2);
    std::thread::scope(|s| {
        s.spawn(move || {
            for job in chunks {
                // A slot per chunk in flight, given back once the chunk is written.
                if slots_tx.send(()).is_err() || jobs_tx.send(job).is_err() {
                    return;
                }
            }
        });
        for _ in 0..o.jobs {
            let (jobs_rx, done_tx, key, opener) = (jobs_rx.clone(), done_tx.clone(), &key, &opener);
            s.spawn(move || fetch(o, opener, key, jobs_rx, done_tx));
        }
        drop((jobs_rx, done_tx));
        write(&recipe, &mut out, done_rx, slots_rx)
    })?;
    out.finish().context("writing the output")?;
    Ok(())
}

/// The repository, its key and the chosen recipe, checked.
fn open_recipe(o: &CatOptions) -> Result<(Repo, Opener, Key, Recipe)> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    let c = store::config(&repo, &o.repo)?;
    let opener = Opener::new(&repo, &c, &o.enc)?;
    let key = store::read_key(&repo, &c, &opener.identities()?)?;
    let at = store::select(&repo, &o.which)?;
    let recipe = Recipe::parse(&store::read_all(&repo, &at)?, &key, &c, &at)?;
    Ok((repo, opener, key, recipe))
}

/// One worker: fetches and decodes the chunks it is given.
fn fetch(
    o: &CatOptions,
    opener: &Opener,
    key: &Key,
    jobs: crossbeam_channel::Receiver<(usize, String, u64)>,
    done: crossbeam_channel::Sender<Fetched>,
) {
    let setup = (|| Ok::<_, anyhow::Error>((Repo::open(&o.repo, &o.s3)?, opener.identities()?)))();
    let (repo, identities) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = done.send((usize::MAX, Err(e)));
            return;
        }
    };
    for (i, id, len) in jobs {
        let got = repo.read(&store::chunk_key(&id)).and_then(|stored| {
            let stored = stored
                .ok_or_else(|| bad_input(format!("chunk {id} is missing from the repository")))?;
            super::decode(&stored.bytes()?, &identities, key, &id, len)
        });
        if done.send((i, got)).is_err() {
            return;
        }
    }
}

/// Writes the pieces in order as their chunks arrive, then checks the whole.
fn write(
    recipe: &Recipe,
    out: &mut Output,
    done: crossbeam_channel::Receiver<Fetched>,
    slots: crossbeam_channel::Receiver<()>,
) -> Result<()> {
    let mut waiting: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut bytes = 0u64;
    for (i, piece) in recipe.pieces.iter().enumerate() {
        let data = match piece {
            Entry::Inline { inline } => base64::engine::general_purpose::STANDARD
                .decode(inline)
                .map_err(|e| bad_input(format!("piece {i} of the recipe: {e}")))?,
            Entry::Chunk { .. } => {
                while !waiting.contains_key(&i) {
                    let (at, got) = done
                        .recv()
                        .map_err(|_| anyhow!("the chunk fetchers stopped"))?;
                    waiting.insert(at, got?);
                }
                let _ = slots.recv();
                waiting.remove(&i).expect("arrived")
            }
        };
        bytes += data.len() as u64;
        out.write_all(&data).context("writing the output")?;
    }
    if bytes != recipe.bytes {
        return Err(bad_input(format!(
            "the stream rebuilt has {bytes} bytes, the one pushed {}",
            recipe.bytes
        )));
    }
    Ok(())
}
