//! `weir-dedup push REPO NAME`: standard input into the repository, each chunk stored once.
//!
//! One thread reads and cuts the stream, names each chunk and groups the chunks into lists; the
//! chunks the repository lacks go to `jobs` workers that compress them into packs of their own
//! and store each pack when it is full. A list is written once every chunk in it has a stored
//! pack, so a list never points at a pack that is not there. At most twice `jobs` chunks wait
//! between the reader and the workers, and each worker fills one pack of 8 MiB, so memory stays
//! bounded whatever the stream's size (the recipe's pieces aside: one a MiB). The recipe is
//! written last, once every pack and list is stored: a push that fails leaves no backup, only
//! packs and lists that the next push reuses or prune removes.

use super::chunker::{Chunker, Piece};
use super::index::Known;
use super::pack::{self, Packer};
use super::store::{self, Entry, Key, Loc, Recipe};
use crate::plumbing::{ExitCode, coded, human_bytes, open_input};
use crate::storage::S3Settings;
use crate::storage::repo::{Created, Repo};
use crate::stream::encrypt::{self, EncryptOptions};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use std::collections::{HashSet, VecDeque};
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
    if config.version != store::VERSION {
        return Err(coded(
            ExitCode::Usage,
            format!(
                "{} is a version {} repository, which this weir reads but does not push to: push to a new repository (cat, verify and prune still work here)",
                o.repo, config.version
            ),
        ));
    }
    let lock = super::lock::take(&o.repo, &o.s3, super::lock::Kind::Push)?;
    let (started, when) = (Instant::now(), SystemTime::now());
    let mut known = super::index::known(&repo, &o.repo, &o.s3, &config)?;
    let added = Added::default();
    let read = store_stream(o, &sealing.enc, &key, &mut known, &added)?;
    let recipe = Recipe {
        format: store::FORMAT.into(),
        version: store::VERSION,
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

/// What a push worker is given: a new chunk to pack, or a list to store.
enum Job {
    Chunk(String, Vec<u8>),
    List(String, Vec<u8>),
}

/// Packs a worker stored: each chunk with its location.
type Stored = Vec<(String, Loc)>;

/// Reads standard input into pieces while the workers store the new chunks and lists.
fn store_stream(
    o: &PushOptions,
    sealing: &EncryptOptions,
    key: &Key,
    known: &mut Known,
    added: &Added,
) -> Result<Read> {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(o.jobs * 2);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Stored>();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..o.jobs)
            .map(|_| {
                let (rx, done_tx) = (rx.clone(), done_tx.clone());
                s.spawn(move || work(o, sealing, rx, done_tx, added))
            })
            .collect();
        drop((rx, done_tx));
        let mut lists = Lists::new(key, known, tx, &done_rx);
        let read = read_pieces(key, &mut lists);
        // The workers store their last packs once no more work can come.
        lists.jobs = None;
        let mut failed = None;
        for w in workers {
            let r = w.join().map_err(|_| anyhow!("an upload worker panicked"))?;
            failed = failed.or(r.err());
        }
        // A worker's error is the cause of the reader's ("the workers stopped").
        if let Some(e) = failed {
            return Err(e);
        }
        let mut read = read?;
        // The last packs are stored: the lists still open can be written, here.
        let rest = lists.finish(&mut read.pieces)?;
        store_lists(o, &rest, added)?;
        Ok(read)
    })
}

fn read_pieces(key: &Key, lists: &mut Lists) -> Result<Read> {
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
            Piece::Inline(b) => {
                lists.close(&mut r.pieces)?;
                r.pieces.push(Entry::Inline {
                    inline: base64::engine::general_purpose::STANDARD.encode(b),
                });
            }
            Piece::Chunk(b) => {
                let id = key.chunk_id(&b);
                r.chunks += 1;
                lists.add(id, b, &mut r.pieces)?;
            }
        }
    }
    lists.close(&mut r.pieces)?;
    r.blake3 = hasher.finalize().to_hex().to_string();
    r.archive = members.summary();
    Ok(r)
}

/// A list ends after a chunk whose id starts with `0` (one in 16, so about 1 MiB of stream),
/// at a member's end, or at 64 chunks: where it ends depends on the chunks, not on what came
/// before, so the runs two days share give the same lists.
const LIST_MOST: usize = 64;

fn ends_list(id: &str) -> bool {
    id.starts_with('0')
}

/// The lists being made: the current one, and those closed but waiting for a pack to be
/// stored before they can be (a list never names a pack that is not yet in the repository).
struct Lists<'a> {
    key: &'a Key,
    known: &'a mut Known,
    /// Where work goes, until the stream ends.
    jobs: Option<crossbeam_channel::Sender<Job>>,
    done: &'a crossbeam_channel::Receiver<Stored>,
    current: Vec<(String, u64)>,
    /// Closed lists, oldest first, with the recipe piece each becomes.
    waiting: VecDeque<(usize, Vec<(String, u64)>)>,
    /// Chunks given to a worker and not stored yet.
    packing: HashSet<String>,
}

impl<'a> Lists<'a> {
    fn new(
        key: &'a Key,
        known: &'a mut Known,
        jobs: crossbeam_channel::Sender<Job>,
        done: &'a crossbeam_channel::Receiver<Stored>,
    ) -> Lists<'a> {
        Lists {
            key,
            known,
            jobs: Some(jobs),
            done,
            current: Vec::new(),
            waiting: VecDeque::new(),
            packing: HashSet::new(),
        }
    }

    fn add(&mut self, id: String, chunk: Vec<u8>, pieces: &mut Vec<Entry>) -> Result<()> {
        let ends = ends_list(&id);
        self.current.push((id.clone(), chunk.len() as u64));
        if !self.known.chunks.contains_key(&id) && self.packing.insert(id.clone()) {
            self.send(Job::Chunk(id, chunk))?;
        }
        if ends || self.current.len() >= LIST_MOST {
            self.close(pieces)?;
        }
        Ok(())
    }

    fn send(&self, job: Job) -> Result<()> {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(anyhow!("the uploads stopped")),
        }
    }

    /// Ends the current list: its piece takes its place in the recipe, named once written.
    fn close(&mut self, pieces: &mut Vec<Entry>) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.current);
        pieces.push(Entry::List {
            list: String::new(),
            bytes: chunks.iter().map(|(_, b)| b).sum(),
        });
        self.waiting.push_back((pieces.len() - 1, chunks));
        let jobs = self.jobs.clone();
        self.settle(pieces, |l| {
            jobs.as_ref()
                .is_some_and(|j| j.send(Job::List(l.0, l.1)).is_ok())
        })
    }

    /// Takes in the packs stored since, then writes (through `store`) every waiting list whose
    /// chunks all have a place, oldest first.
    fn settle(
        &mut self,
        pieces: &mut [Entry],
        mut store: impl FnMut((String, Vec<u8>)) -> bool,
    ) -> Result<()> {
        for stored in self.done.try_iter() {
            for (id, loc) in stored {
                self.packing.remove(&id);
                self.known.chunks.insert(id, loc);
            }
        }
        while let Some((piece, chunks)) = self.waiting.front() {
            let located: Option<Vec<(String, u64, Loc)>> = chunks
                .iter()
                .map(|(id, b)| Some((id.clone(), *b, self.known.chunks.get(id)?.clone())))
                .collect();
            let Some(located) = located else { break };
            let (_, json) = store::List::of(&located);
            let id = self.key.chunk_id(&json);
            if self.known.lists.insert(id.clone()) && !store((store::list_key(&id), json)) {
                bail!("the uploads stopped");
            }
            if let Entry::List { list, .. } = &mut pieces[*piece] {
                *list = id;
            }
            self.waiting.pop_front();
        }
        Ok(())
    }

    /// Once every worker stored its last pack: names the lists still waiting, and returns
    /// those to write.
    fn finish(&mut self, pieces: &mut [Entry]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut rest = Vec::new();
        self.settle(pieces, |l| {
            rest.push(l);
            true
        })?;
        if !self.waiting.is_empty() {
            bail!("internal: a list names a chunk no worker stored");
        }
        Ok(rest)
    }
}

/// Writes lists on `jobs` threads.
fn store_lists(o: &PushOptions, lists: &[(String, Vec<u8>)], added: &Added) -> Result<()> {
    store::on_threads(&o.repo, &o.s3, o.jobs, lists, |repo, (at, json)| {
        put_list(repo, at, json, added)
    })?;
    Ok(())
}

fn put_list(repo: &Repo, at: &str, json: &[u8], added: &Added) -> Result<()> {
    repo.put(at, json)
        .with_context(|| format!("storing {at}"))?;
    added.bytes.fetch_add(json.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// One worker: compresses chunks into its pack, stores the pack when it is full (and at the
/// end), and stores lists, until there is no more work.
fn work(
    o: &PushOptions,
    sealing: &EncryptOptions,
    rx: crossbeam_channel::Receiver<Job>,
    done: crossbeam_channel::Sender<Stored>,
    added: &Added,
) -> Result<()> {
    let recipients = encrypt::recipients(sealing)?;
    let repo = Repo::open(&o.repo, &o.s3)?;
    let mut z = pack::compressor()?;
    let mut packer = Packer::new();
    let store = |packer: &mut Packer| -> Result<()> {
        let (chunks, bytes) = packer.store(&repo, &recipients)?;
        added
            .chunks
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        added.bytes.fetch_add(bytes, Ordering::Relaxed);
        let _ = done.send(chunks);
        Ok(())
    };
    for job in rx {
        match job {
            Job::Chunk(id, chunk) => {
                packer.add(id, &pack::compress(&mut z, &chunk)?);
                if packer.is_full() {
                    store(&mut packer)?;
                }
            }
            Job::List(at, json) => put_list(&repo, &at, &json, added)?,
        }
    }
    if !packer.is_empty() {
        store(&mut packer)?;
    }
    Ok(())
}
