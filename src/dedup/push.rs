//! `weir-dedup push REPO NAME`: standard input into the repository, each chunk stored once.
//!
//! One thread reads and cuts the stream, names each chunk and writes the recipe's pieces; the
//! chunks the repository lacks go to `jobs` workers that compress, encrypt and store them. At
//! most twice `jobs` chunks wait between the two, so memory stays bounded (about 3 x jobs x 2
//! MiB) whatever the stream's size. The recipe is written last, once every chunk is stored: a
//! push that fails leaves no backup, only chunks that the next push reuses or prune removes.

use super::chunker::{Chunker, Piece};
use super::store::{self, Entry, Key, Recipe};
use crate::plumbing::{ExitCode, coded, human_bytes, open_input};
use crate::storage::S3Settings;
use crate::storage::repo::{Created, Repo};
use crate::stream::encrypt::{self, EncryptOptions};
use anyhow::{Context, Result, anyhow};
use base64::Engine;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

pub struct PushOptions {
    pub repo: String,
    pub s3: S3Settings,
    pub name: String,
    /// The recipients (-r, -R, WEIR_AGE_RECIPIENTS).
    pub enc: EncryptOptions,
    pub key_file: Option<std::path::PathBuf>,
    pub jobs: usize,
    pub quiet: bool,
    /// Once the recipe is written: what was pushed, as one line of JSON.
    pub stats: Option<String>,
}

/// What the workers added.
#[derive(Default)]
struct Added {
    chunks: AtomicU64,
    bytes: AtomicU64,
}

/// What the reader made of the stream.
struct Read {
    pieces: Vec<Entry>,
    bytes: u64,
    blake3: String,
    chunks: u64,
    archive: Option<store::ArchiveSummary>,
}

/// The manifest and trailer of a weir archive, kept as they pass (both small).
#[derive(Default)]
struct Members {
    /// The member being read, when it is one of the two.
    current: Option<&'static str>,
    manifest: Vec<u8>,
    trailer: Vec<u8>,
}

impl Members {
    /// Up to this much of either is kept: more is not a weir archive's.
    const LIMIT: usize = 16 << 20;

    fn header(&mut self, block: &[u8]) {
        let name = tar::Header::from_byte_slice(block)
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.current = [crate::archive::MANIFEST, crate::archive::TRAILER]
            .into_iter()
            .find(|m| *m == name);
    }

    fn content(&mut self, b: &[u8]) {
        let keep = match self.current {
            Some(crate::archive::MANIFEST) => &mut self.manifest,
            Some(_) => &mut self.trailer,
            None => return,
        };
        if keep.len() + b.len() <= Self::LIMIT {
            keep.extend_from_slice(b);
        }
    }

    /// The summary, when both parse as the archive's own types (tar pads them with zeros).
    fn summary(&self) -> Option<store::ArchiveSummary> {
        let unpadded =
            |b: &[u8]| b[..b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1)].to_vec();
        let m: crate::archive::Manifest = serde_json::from_slice(&unpadded(&self.manifest)).ok()?;
        let t: crate::archive::Trailer = serde_json::from_slice(&unpadded(&self.trailer)).ok()?;
        Some(store::ArchiveSummary {
            database: m.database,
            tables: t.tables.len() as u64,
            rows: t.tables.iter().map(|t| t.rows).sum(),
            masked: m.masked,
        })
    }
}

pub fn push(o: &PushOptions) -> Result<()> {
    store::check_name(&o.name)?;
    let key = store::push_key(o.key_file.as_deref())?;
    let repo = Repo::open(&o.repo, &o.s3)?;
    let sealing =
        super::access::push_recipients(&repo, store::read_config(&repo)?.as_ref(), &o.enc)?;
    let recipients = encrypt::recipients(&sealing.enc)?;
    let config = store::open_or_create(&repo, &key, &recipients, sealing.passphrase)?;
    let lock = super::lock::take(&o.repo, &o.s3, super::lock::Kind::Push)?;
    let (started, when) = (Instant::now(), SystemTime::now());
    let mut known = super::index::known(&repo, &config)?;
    let added = Added::default();
    let read = store_stream(o, &sealing.enc, &key, &mut known.ids, &added)?;
    let recipe = Recipe {
        format: store::FORMAT.into(),
        version: 1,
        repository: config.id.clone(),
        name: o.name.clone(),
        time: crate::plumbing::rfc3339_micros(when),
        bytes: read.bytes,
        blake3: read.blake3,
        chunks: read.chunks,
        added_chunks: added.chunks.load(Ordering::Relaxed),
        added_bytes: added.bytes.load(Ordering::Relaxed),
        archive: read.archive,
        pieces: read.pieces,
        signature: String::new(),
    };
    let stamp = chrono::DateTime::<chrono::Utc>::from(when).format("%Y%m%dT%H%M%S%.6fZ");
    let at = format!("backups/{}/{stamp}.json", o.name);
    let summary = format!(
        "pushed {}@{stamp}: {} in {} chunks, {} new ({} stored) in {:.1} s{}",
        o.name,
        human_bytes(recipe.bytes),
        recipe.chunks,
        recipe.added_chunks,
        human_bytes(recipe.added_bytes),
        started.elapsed().as_secs_f64(),
        if known.cached {
            " (the chunk list from the cache)"
        } else {
            ""
        }
    );
    let stats = serde_json::json!({
        "repository": o.repo, "backup": format!("{}@{stamp}", o.name), "name": o.name,
        "time": recipe.time, "bytes": recipe.bytes, "blake3": recipe.blake3,
        "chunks": recipe.chunks, "added_chunks": recipe.added_chunks,
        "added_bytes": recipe.added_bytes, "archive": recipe.archive,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let json = recipe.signed(&key)?;
    lock.still_held()?;
    match repo.create(&at, &json, &crate::physical::object::sha256_hex(&json))? {
        Created::New => {}
        Created::Exists(_) => {
            return Err(coded(ExitCode::Exists, format!("{at} exists already")));
        }
    }
    drop(lock);
    // The chunks this push stored are now the repository's too.
    super::index::remember(&config, &known);
    if let Some(f) = &o.stats {
        crate::plumbing::write_json_line(f, &stats)?;
    }
    if !o.quiet {
        eprintln!("{}: {summary}", crate::plumbing::program());
    }
    Ok(())
}

/// Reads standard input into pieces while the workers store the new chunks.
fn store_stream(
    o: &PushOptions,
    sealing: &EncryptOptions,
    key: &Key,
    known: &mut HashSet<String>,
    added: &Added,
) -> Result<Read> {
    let (tx, rx) = crossbeam_channel::bounded::<(String, Vec<u8>)>(o.jobs * 2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..o.jobs)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || upload(o, sealing, rx, added))
            })
            .collect();
        drop(rx);
        let read = read_pieces(key, known, &tx);
        drop(tx);
        let mut failed = None;
        for w in workers {
            let r = w.join().map_err(|_| anyhow!("an upload worker panicked"))?;
            failed = failed.or(r.err());
        }
        // A worker's error is the cause of the reader's ("the workers stopped").
        match failed {
            Some(e) => Err(e),
            None => read,
        }
    })
}

fn read_pieces(
    key: &Key,
    known: &mut HashSet<String>,
    tx: &crossbeam_channel::Sender<(String, Vec<u8>)>,
) -> Result<Read> {
    let mut chunker = Chunker::new(open_input(None)?);
    let mut hasher = blake3::Hasher::new();
    let mut r = Read {
        pieces: Vec::new(),
        bytes: 0,
        blake3: String::new(),
        chunks: 0,
        archive: None,
    };
    let mut members = Members::default();
    while let Some(p) = chunker.next_piece().context("reading standard input")? {
        let b = match &p {
            Piece::Inline(b) | Piece::Chunk(b) => b,
        };
        hasher.update(b);
        r.bytes += b.len() as u64;
        match &p {
            Piece::Inline(h) => members.header(h),
            Piece::Chunk(c) => members.content(c),
        }
        match p {
            Piece::Inline(b) => r.pieces.push(Entry::Inline {
                inline: base64::engine::general_purpose::STANDARD.encode(b),
            }),
            Piece::Chunk(b) => {
                let id = key.chunk_id(&b);
                r.chunks += 1;
                r.pieces.push(Entry::Chunk {
                    id: id.clone(),
                    bytes: b.len() as u64,
                });
                if known.insert(id.clone()) {
                    tx.send((id, b))
                        .map_err(|_| anyhow!("the uploads stopped"))?;
                }
            }
        }
    }
    r.blake3 = hasher.finalize().to_hex().to_string();
    r.archive = members.summary();
    Ok(r)
}

/// One worker: compresses, encrypts and stores chunks until there are no more.
fn upload(
    o: &PushOptions,
    sealing: &EncryptOptions,
    rx: crossbeam_channel::Receiver<(String, Vec<u8>)>,
    added: &Added,
) -> Result<()> {
    let recipients = encrypt::recipients(sealing)?;
    let repo = Repo::open(&o.repo, &o.s3)?;
    for (id, chunk) in rx {
        let stored = super::encode(&chunk, &recipients)?;
        let at = store::chunk_key(&id);
        repo.put(&at, &stored)
            .with_context(|| format!("storing {at}"))?;
        added.chunks.fetch_add(1, Ordering::Relaxed);
        added
            .bytes
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}
