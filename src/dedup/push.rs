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
use super::store::{self, Batch, Entry, Key, Loc, Recipe};
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
    /// The batches of lists its pieces name.
    batches: Vec<String>,
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
    if config.version < 2 {
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
        version: store::RECIPE_VERSION,
        repository: config.id.clone(),
        name: o.name.clone(),
        time: crate::plumbing::rfc3339_micros(when),
        bytes: read.bytes,
        blake3: read.blake3,
        chunks: read.chunks,
        added_chunks: added.chunks.load(Ordering::Relaxed),
        added_bytes: added.bytes.load(Ordering::Relaxed),
        archive: read.archive,
        batches: read.batches,
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
    repo.sync_all().context("making the lists durable")?;
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

/// What an uploader is given: a full pack to seal and store, or a batch of lists to store.
enum Upload {
    Pack(Packer),
    Batch(String, Vec<u8>),
}

/// A new chunk on its way to a pack, numbered in stream order.
type NewChunk = (u64, String, Vec<u8>);

/// Packs an uploader stored: each chunk with its location.
type Stored = Vec<(String, Loc)>;

/// Packs in the hands of uploaders at once (each about 8 MiB of frames, twice over while it is
/// sealed): enough to keep S3 busy, few enough that `-j` does not multiply them (a full push of
/// the bench's 700 MB archive held 129-138 MiB in all at `-j 8`).
const UPLOADERS: usize = 3;

/// Reads standard input into pieces while `jobs` threads compress the new chunks, one packs
/// their frames in stream order, and uploaders seal and store the packs and the lists.
fn store_stream(
    o: &PushOptions,
    sealing: &EncryptOptions,
    key: &Key,
    known: &mut Known,
    added: &Added,
) -> Result<Read> {
    let (chunks_tx, chunks_rx) = crossbeam_channel::bounded::<NewChunk>(o.jobs * 2);
    let (frames_tx, frames_rx) = crossbeam_channel::bounded::<NewChunk>(o.jobs * 2);
    let (up_tx, up_rx) = crossbeam_channel::bounded::<Upload>(1);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Stored>();
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for _ in 0..o.jobs {
            let (rx, tx) = (chunks_rx.clone(), frames_tx.clone());
            threads.push(s.spawn(move || compress(rx, tx)));
        }
        let packs = up_tx.clone();
        threads.push(s.spawn(move || pack_in_order(frames_rx, packs)));
        for _ in 0..o.jobs.min(UPLOADERS) {
            let (rx, done) = (up_rx.clone(), done_tx.clone());
            threads.push(s.spawn(move || upload(o, sealing, rx, done, added)));
        }
        drop((chunks_rx, frames_tx, up_rx, done_tx));
        let mut lists = Lists::new(key, known, chunks_tx, up_tx, &done_rx);
        let read = read_pieces(key, &mut lists);
        // The last pack is stored once no more work can come.
        lists.work = None;
        let mut failed = None;
        for t in threads {
            let r = t.join().map_err(|_| anyhow!("a push thread panicked"))?;
            failed = failed.or(r.err());
        }
        // A thread's error is the cause of the reader's ("the uploads stopped").
        if let Some(e) = failed {
            return Err(e);
        }
        let mut read = read?;
        // Every pack is stored: the lists still open can be written, here.
        let rest = lists.finish(&mut read.pieces)?;
        read.batches = std::mem::take(&mut lists.batches);
        store_batches(o, &rest, added)?;
        Ok(read)
    })
}

/// One compressor: each new chunk to its zstd frame.
fn compress(
    rx: crossbeam_channel::Receiver<NewChunk>,
    tx: crossbeam_channel::Sender<NewChunk>,
) -> Result<()> {
    let mut z = pack::compressor()?;
    for (n, id, chunk) in rx {
        let frame = z.compress(&chunk)?;
        if tx.send((n, id, frame)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Appends the frames to one pack in stream order (so that `cat` reads runs of chunks in one
/// request), handing each full pack to an uploader.
fn pack_in_order(
    rx: crossbeam_channel::Receiver<NewChunk>,
    tx: crossbeam_channel::Sender<Upload>,
) -> Result<()> {
    let stopped = || anyhow!("the uploads stopped");
    let (mut packer, mut next) = (Packer::new(), 0u64);
    let mut early = std::collections::BTreeMap::new();
    for (n, id, frame) in rx {
        early.insert(n, (id, frame));
        while let Some((id, frame)) = early.remove(&next) {
            packer.add(id, &frame);
            next += 1;
            if packer.is_full() {
                let full = std::mem::take(&mut packer);
                tx.send(Upload::Pack(full)).map_err(|_| stopped())?;
            }
        }
    }
    if !early.is_empty() {
        bail!("internal: a chunk to pack went missing");
    }
    if !packer.is_empty() {
        tx.send(Upload::Pack(packer)).map_err(|_| stopped())?;
    }
    Ok(())
}

/// One uploader: seals and stores packs, stores lists, until there are no more.
fn upload(
    o: &PushOptions,
    sealing: &EncryptOptions,
    rx: crossbeam_channel::Receiver<Upload>,
    done: crossbeam_channel::Sender<Stored>,
    added: &Added,
) -> Result<()> {
    let recipients = encrypt::recipients(sealing)?;
    let repo = Repo::open(&o.repo, &o.s3)?;
    for u in rx {
        match u {
            Upload::Pack(p) => {
                let (chunks, bytes) = p.store(&repo, &recipients)?;
                let n = chunks.len() as u64;
                added.chunks.fetch_add(n, Ordering::Relaxed);
                added.bytes.fetch_add(bytes, Ordering::Relaxed);
                let _ = done.send(chunks);
            }
            Upload::Batch(at, json) => put_batch(&repo, &at, &json, added)?,
        }
    }
    Ok(())
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
        batches: Vec::new(),
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

/// A batch is written once it holds this many new lists (about 3 MiB of JSON, 2 GiB of stream),
/// and at the end.
const BATCH_MOST: usize = 2048;

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
    /// Where new chunks and lists go, until the stream ends.
    work: Option<(
        crossbeam_channel::Sender<NewChunk>,
        crossbeam_channel::Sender<Upload>,
    )>,
    /// New chunks numbered so far.
    sent: u64,
    done: &'a crossbeam_channel::Receiver<Stored>,
    current: Vec<(String, u64)>,
    /// Closed lists, oldest first, with the recipe piece each becomes.
    waiting: VecDeque<(usize, Vec<(String, u64)>)>,
    /// Chunks given to a worker and not stored yet.
    packing: HashSet<String>,
    /// The batch new lists go into: its id, and the lists so far.
    batch: (String, Batch),
    /// The batches the recipe names, in the order first named.
    batches: Vec<String>,
}

impl<'a> Lists<'a> {
    fn new(
        key: &'a Key,
        known: &'a mut Known,
        chunks: crossbeam_channel::Sender<NewChunk>,
        uploads: crossbeam_channel::Sender<Upload>,
        done: &'a crossbeam_channel::Receiver<Stored>,
    ) -> Lists<'a> {
        Lists {
            key,
            known,
            work: Some((chunks, uploads)),
            sent: 0,
            done,
            current: Vec::new(),
            waiting: VecDeque::new(),
            packing: HashSet::new(),
            batch: (store::random_hex(32), Batch::new()),
            batches: Vec::new(),
        }
    }

    fn add(&mut self, id: String, chunk: Vec<u8>, pieces: &mut Vec<Entry>) -> Result<()> {
        let ends = ends_list(&id);
        self.current.push((id.clone(), chunk.len() as u64));
        if !self.known.chunks.contains_key(&id) && self.packing.insert(id.clone()) {
            let sent = match &self.work {
                Some((chunks, _)) => chunks.send((self.sent, id, chunk)).is_ok(),
                None => false,
            };
            if !sent {
                bail!("the uploads stopped");
            }
            self.sent += 1;
        }
        if ends || self.current.len() >= LIST_MOST {
            self.close(pieces)?;
        }
        Ok(())
    }

    /// Ends the current list: its piece takes its place in the recipe, named once written.
    fn close(&mut self, pieces: &mut Vec<Entry>) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.current);
        pieces.push(Entry::List {
            list: String::new(),
            batch: 0,
            bytes: chunks.iter().map(|(_, b)| b).sum(),
        });
        self.waiting.push_back((pieces.len() - 1, chunks));
        let uploads = self.work.as_ref().map(|(_, u)| u.clone());
        self.settle(pieces, |l| {
            uploads
                .as_ref()
                .is_some_and(|u| u.send(Upload::Batch(l.0, l.1)).is_ok())
        })
    }

    /// Takes in the packs stored since, then names every waiting list whose chunks all have a
    /// place, oldest first; a new one goes into the current batch, written (through `store`)
    /// once full.
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
        while let Some((_, chunks)) = self.waiting.front() {
            let located: Option<Vec<(String, u64, Loc)>> = chunks
                .iter()
                .map(|(id, b)| Some((id.clone(), *b, self.known.chunks.get(id)?.clone())))
                .collect();
            let Some(located) = located else { break };
            let (piece, _) = self.waiting.pop_front().expect("the front was there");
            let (list, json) = store::List::of(&located);
            let id = self.key.chunk_id(&json);
            let in_batch = match self.known.lists.get(&id) {
                Some(b) => b.clone(),
                None => {
                    let b = self.batch.0.clone();
                    self.known.lists.insert(id.clone(), b.clone());
                    self.batch.1.insert(id.clone(), list);
                    if self.batch.1.len() >= BATCH_MOST && !store(self.take_batch()?) {
                        bail!("the uploads stopped");
                    }
                    b
                }
            };
            let n = match self.batches.iter().position(|b| *b == in_batch) {
                Some(n) => n,
                None => {
                    self.batches.push(in_batch);
                    self.batches.len() - 1
                }
            };
            if let Entry::List { list, batch, .. } = &mut pieces[piece] {
                (*list, *batch) = (id, n);
            }
        }
        Ok(())
    }

    /// The current batch's key and JSON; a new batch starts.
    fn take_batch(&mut self) -> Result<(String, Vec<u8>)> {
        let (id, lists) = std::mem::replace(&mut self.batch, (store::random_hex(32), Batch::new()));
        Ok((store::batch_key(&id), serde_json::to_vec(&lists)?))
    }

    /// Once every pack is stored: names the lists still waiting, and returns the batches left
    /// to write.
    fn finish(&mut self, pieces: &mut [Entry]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut rest = Vec::new();
        self.settle(pieces, |b| {
            rest.push(b);
            true
        })?;
        if !self.waiting.is_empty() {
            bail!("internal: a list names a chunk no worker stored");
        }
        if !self.batch.1.is_empty() {
            rest.push(self.take_batch()?);
        }
        Ok(rest)
    }
}

/// Writes batches of lists on `jobs` threads.
fn store_batches(o: &PushOptions, batches: &[(String, Vec<u8>)], added: &Added) -> Result<()> {
    store::on_threads(&o.repo, &o.s3, o.jobs, batches, |repo, (at, json)| {
        put_batch(repo, at, json, added)
    })?;
    Ok(())
}

/// A batch of lists is written without waiting for it to be durable; the push syncs them all
/// before its recipe. Its packs are durable already, so a batch that survives a crash names
/// packs that are there; one lost or emptied by it is taken for absent (see index.rs) and its
/// lists written again.
fn put_batch(repo: &Repo, at: &str, json: &[u8], added: &Added) -> Result<()> {
    repo.put_soon(at, json)
        .with_context(|| format!("storing {at}"))?;
    added.bytes.fetch_add(json.len() as u64, Ordering::Relaxed);
    Ok(())
}
