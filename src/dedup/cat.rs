//! `weir-dedup cat REPO NAME[@STAMP]`: a backup's stream, byte for byte, on standard output.
//!
//! A planner reads the recipe's lists (a batch of them at a time) and turns them into reads: each a run of
//! chunks that lie one after another in one pack, read by range in one request. `jobs` workers
//! fetch, decrypt and decompress those runs, at most `2 x jobs` ahead of the writer, so memory
//! stays bounded; the writer puts them out in order. Every chunk is checked against its name
//! (its keyed hash) before it is written, every list against its name, and the recipe against
//! its signature before anything is, so a missing or damaged chunk stops the stream (exit 3)
//! short of its end, and a weir-load reading it commits nothing. Together they authenticate
//! every byte (the signed recipe holds the inline bytes and the lists' names), so the stream's
//! own BLAKE3 is not computed again here: on one writer thread it cost a third of cat's time.
//! Its length is checked at the end; `b3sum` checks the BLAKE3 by hand.

use super::access::Opener;
use super::pack;
use super::store::{self, Batch, Entry, Key, List, Recipe};
use crate::plumbing::{Output, bad_input};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use crate::stream::encrypt::EncryptOptions;
use anyhow::{Context, Result, anyhow};
use base64::Engine;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, HashMap};
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

/// What a worker fetches: a version 1 chunk object, or a run of chunks in a pack.
enum Job {
    Object {
        id: String,
        bytes: u64,
    },
    Run {
        pack: String,
        at: u64,
        len: u64,
        /// Each chunk: its id, its length, and where its frame is in the run.
        chunks: Vec<(String, u64, u64, u64)>,
    },
}

/// What the writer does next, in stream order.
enum Step {
    Bytes(Vec<u8>),
    /// The result of job number N.
    Await(usize),
    Failed(anyhow::Error),
}

type Fetched = (usize, Result<Vec<u8>>);

/// A run is read in one request up to this many stored bytes (about four times as much once
/// decompressed, per run in flight): in a directory, where a read costs little, 256 KiB (as
/// fast as 1 MiB on the bench's 700 MB archive, in 55 MiB instead of 145); on S3, where each
/// request waits for the network, 1 MiB.
fn run_most(repo: &Repo) -> u64 {
    match repo {
        Repo::Dir(_) => 256 << 10,
        Repo::S3 { .. } => 1 << 20,
    }
}

/// Pieces of the recipe planned at a time; their lists are read together.
const WINDOW: usize = 64;

pub fn cat(o: &CatOptions) -> Result<()> {
    let (repo, opener, key, recipe) = open_recipe(o)?;
    let moves = super::moves::Moves::read(&repo)?;
    let mut out = Output::open(o.output.as_deref(), true)?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<(usize, Job)>(o.jobs);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Fetched>();
    let (steps_tx, steps_rx) = crossbeam_channel::unbounded::<Step>();
    // A run in flight per worker and two more: on the bench's 700 MB archive as fast as twice
    // as many.
    let (slots_tx, slots_rx) = crossbeam_channel::bounded::<()>(o.jobs + 2);
    let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(o.jobs + 2);
    std::thread::scope(|s| {
        let (key, recipe) = (&key, &recipe);
        s.spawn(move || {
            let mut p = Planner {
                moves,
                repo,
                key,
                jobs: jobs_tx,
                steps: steps_tx.clone(),
                slots: slots_tx,
                next: 0,
                run: None,
                batches: HashMap::new(),
            };
            if let Err(e) = p.plan(recipe) {
                let _ = steps_tx.send(Step::Failed(e));
            }
        });
        for _ in 0..o.jobs {
            let (jobs_rx, done_tx, opener) = (jobs_rx.clone(), done_tx.clone(), &opener);
            let spare = spare_rx.clone();
            s.spawn(move || fetch(o, opener, key, jobs_rx, done_tx, spare));
        }
        drop((jobs_rx, done_tx));
        write(recipe, &mut out, steps_rx, done_rx, slots_rx, spare_tx)
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

/// Turns the recipe into the writer's steps and the workers' jobs.
struct Planner<'a> {
    repo: Repo,
    key: &'a Key,
    jobs: Sender<(usize, Job)>,
    steps: Sender<Step>,
    /// A slot per job in flight, given back once its bytes are written.
    slots: Sender<()>,
    next: usize,
    /// The run being gathered.
    run: Option<Job>,
    /// Batches of lists read, by id.
    batches: HashMap<String, Batch>,
    /// Where a repack moved chunks.
    moves: super::moves::Moves,
}

impl Planner<'_> {
    fn plan(&mut self, recipe: &Recipe) -> Result<()> {
        for window in recipe.pieces.chunks(WINDOW) {
            let mut lists = self.lists(recipe, window)?.into_iter();
            for piece in window {
                match piece {
                    Entry::Inline { inline } => {
                        let b = base64::engine::general_purpose::STANDARD
                            .decode(inline)
                            .map_err(|e| {
                                bad_input(format!("an inline piece of the recipe: {e}"))
                            })?;
                        self.flush()?;
                        self.step(Step::Bytes(b))?;
                    }
                    Entry::Chunk { id, bytes } => {
                        self.flush()?;
                        let job = Job::Object {
                            id: id.clone(),
                            bytes: *bytes,
                        };
                        self.send(job)?;
                    }
                    Entry::List { .. } => {
                        let list = lists.next().expect("one read per list");
                        self.add(&list)?;
                    }
                }
            }
        }
        self.flush()
    }

    /// The lists among `window`'s pieces, in order, each checked against its name; their
    /// batches read once each (a few kept, since consecutive lists mostly share one).
    fn lists(&mut self, recipe: &Recipe, window: &[Entry]) -> Result<Vec<List>> {
        let mut out = Vec::new();
        for p in window {
            let Entry::List { list, batch, .. } = p else {
                continue;
            };
            let batch_id = recipe.batches.get(*batch).ok_or_else(|| {
                bad_input(format!(
                    "the recipe names batch {batch}, which it does not list"
                ))
            })?;
            if !self.batches.contains_key(batch_id) {
                if self.batches.len() >= 8 {
                    self.batches.clear();
                }
                let read = store::read_batch(&self.repo, batch_id)?;
                self.batches.insert(batch_id.clone(), read);
            }
            let b = &self.batches[batch_id];
            out.push(store::list_in(b, self.key, batch_id, list)?);
        }
        Ok(out)
    }

    /// Adds a list's chunks to the current run, starting a new run where a chunk is not right
    /// after the last in the same pack.
    fn add(&mut self, list: &List) -> Result<()> {
        for (c, listed) in list.listed() {
            let loc = self.moves.place(&c.id, listed);
            let follows = match &self.run {
                Some(Job::Run { pack, at, len, .. }) => {
                    *pack == loc.pack
                        && at + len == loc.at
                        && *len + loc.len <= run_most(&self.repo)
                }
                _ => false,
            };
            if !follows {
                self.flush()?;
                self.run = Some(Job::Run {
                    pack: loc.pack.clone(),
                    at: loc.at,
                    len: 0,
                    chunks: Vec::new(),
                });
            }
            if let Some(Job::Run { len, chunks, .. }) = &mut self.run {
                chunks.push((c.id.clone(), c.bytes, *len, loc.len));
                *len += loc.len;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        match self.run.take() {
            Some(run) => self.send(run),
            None => Ok(()),
        }
    }

    fn send(&mut self, job: Job) -> Result<()> {
        let stopped = || anyhow!("the writer stopped");
        self.slots.send(()).map_err(|_| stopped())?;
        self.step(Step::Await(self.next))?;
        self.jobs.send((self.next, job)).map_err(|_| stopped())?;
        self.next += 1;
        Ok(())
    }

    fn step(&self, s: Step) -> Result<()> {
        self.steps
            .send(s)
            .map_err(|_| anyhow!("the writer stopped"))
    }
}

/// One worker: fetches and decodes what it is given.
fn fetch(
    o: &CatOptions,
    opener: &Opener,
    key: &Key,
    jobs: Receiver<(usize, Job)>,
    done: Sender<Fetched>,
    spare: Receiver<Vec<u8>>,
) {
    let setup = (|| {
        let repo = Repo::open(&o.repo, &o.s3)?;
        Ok::<_, anyhow::Error>((repo, opener.identities()?, zstd::bulk::Decompressor::new()?))
    })();
    let (repo, identities, mut z) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = done.send((usize::MAX, Err(e)));
            return;
        }
    };
    let mut packs = pack::Reader::new(&repo, &identities);
    for (i, job) in jobs {
        let got = match job {
            Job::Object { id, bytes } => repo.read(&store::chunk_key(&id)).and_then(|stored| {
                let stored = stored.ok_or_else(|| {
                    bad_input(format!("chunk {id} is missing from the repository"))
                })?;
                super::decode(&mut z, &stored.bytes()?, &identities, (key, &id, bytes))
            }),
            Job::Run {
                pack,
                at,
                len,
                chunks,
            } => run(&mut packs, &mut z, key, (&pack, at, len), &chunks, &spare),
        };
        if done.send((i, got)).is_err() {
            return;
        }
    }
}

/// A run's chunks, read in one request and each checked.
fn run(
    packs: &mut pack::Reader,
    z: &mut zstd::bulk::Decompressor,
    key: &Key,
    (pack, at, len): (&str, u64, u64),
    chunks: &[(String, u64, u64, u64)],
    spare: &Receiver<Vec<u8>>,
) -> Result<Vec<u8>> {
    let frames = packs.read(pack, at, len)?;
    let mut out = spare.try_recv().unwrap_or_default();
    out.resize(chunks.iter().map(|c| c.1 as usize).sum(), 0);
    let mut to = 0;
    for (id, bytes, off, flen) in chunks {
        let frame = &frames[*off as usize..(off + flen) as usize];
        let end = to + *bytes as usize;
        pack::decompress_into(z, frame, key, id, &mut out[to..end])?;
        to = end;
    }
    Ok(out)
}

/// Follows the steps in order, writing each job's bytes as they arrive, then checks the
/// length.
fn write(
    recipe: &Recipe,
    out: &mut Output,
    steps: Receiver<Step>,
    done: Receiver<Fetched>,
    slots: Receiver<()>,
    spare: Sender<Vec<u8>>,
) -> Result<()> {
    let mut waiting: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut bytes = 0u64;
    for step in steps {
        let data = match step {
            Step::Bytes(b) => b,
            Step::Failed(e) => return Err(e),
            Step::Await(i) => {
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
        // Back to the workers: a fresh buffer would cost a page fault and a clear per 4 KiB.
        let _ = spare.try_send(data);
    }
    if bytes != recipe.bytes {
        return Err(bad_input(format!(
            "the stream rebuilt has {bytes} bytes, the one pushed {}",
            recipe.bytes
        )));
    }
    Ok(())
}
