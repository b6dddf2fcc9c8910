//! The load workers: N connections, each on its own thread and single-threaded runtime, each
//! holding one open transaction, fed COPY chunks through one bounded queue by whichever is
//! free. Nothing they load is visible until [`Pool::commit`]; [`Pool::roll_back`] (or
//! dropping the pool) discards it all. weir-load uses it for archives; CDC apply will use it
//! for change streams.

use crate::pg::conn::ConnParams;
use crate::pg::copy_binary::{self, Converter};
use crate::pg::copy_text::Chunk;
use crate::pg::sql::pg_error;
use anyhow::{Context, Result, anyhow, bail};
use async_channel::{Receiver, Sender};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a worker is given: rows, or statements to run in its transaction.
pub enum Work {
    Rows(Job),
    /// A placed table's indexes, once its rows are in (see `placement`).
    Run {
        /// What the statements do, for an error message.
        what: String,
        sql: String,
    },
}

/// Chunks a worker's own queue holds: a placed table's chunks wait there while the worker is
/// busy, and the reader goes on to other workers' until it is full.
const OWN_QUEUE: usize = 8;

/// One chunk of COPY data for a worker.
pub struct Job {
    pub table: u32,
    /// TRUNCATE first (once per table and worker) and COPY with FREEZE.
    pub freeze: bool,
    /// `schema.table (columns)` for COPY.
    pub copy: String,
    /// `schema.table` for TRUNCATE.
    pub target: String,
    pub chunk: Chunk,
    /// Sends the rows as COPY binary, when every value converts (see `pg::copy_binary`).
    pub binary: Option<Arc<Converter>>,
}

/// Buffers for converted chunks, each back here once its connection sent it: a worker fills
/// the same few again instead of a new 5 MiB allocation per chunk, which malloc kept around
/// (peak RSS 230-240 MiB against 140 sending text, 2026-12-05).
#[derive(Default, Clone)]
struct Buffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// The most buffers kept for reuse: one being filled, one being sent, one spare.
const KEPT_BUFFERS: usize = 3;

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .expect("never poisoned")
            .pop()
            .unwrap_or_default()
    }

    /// `buf` as a message that returns it here when dropped.
    fn lend(&self, buf: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Lent {
            buf,
            home: self.clone(),
        })
    }
}

struct Lent {
    buf: Vec<u8>,
    home: Buffers,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut kept = self.home.0.lock().expect("never poisoned");
        if kept.len() < KEPT_BUFFERS {
            kept.push(buf);
        }
    }
}

/// Chunks sent as COPY binary and as text, over every worker.
#[derive(Default)]
pub struct Sent {
    pub binary: AtomicU64,
    pub text: AtomicU64,
}

/// A load connection on its own thread and runtime. It loads until the queue closes, reports
/// on `ready` whether everything it was given went in, then waits on `decide`: `true` commits,
/// `false` (or the sender going away) rolls back.
struct Worker {
    /// Whether it connected; taken by [`Pool::connected`].
    started: Option<std::sync::mpsc::Receiver<Result<()>>>,
    ready: std::sync::mpsc::Receiver<Result<()>>,
    decide: Option<std::sync::mpsc::Sender<bool>>,
    handle: Option<std::thread::JoinHandle<Result<()>>>,
}

pub struct Pool {
    workers: Vec<Worker>,
    /// Chunks, taken by whichever worker is free; `None` once closed.
    queue: Option<Sender<Work>>,
    /// Each worker's own queue, which it takes from first; empty once closed.
    own: Vec<Sender<Work>>,
    pub sent: Arc<Sent>,
}

impl Pool {
    /// Starts `jobs` workers, each connecting and opening a transaction (with triggers and
    /// foreign-key checks off for the session when `disable_triggers`); [`Pool::connected`]
    /// waits for them.
    ///
    /// With `tables_per_txn`, a worker commits its transaction before it copies into one
    /// more table than that, and goes on in a new one (issue 30: a transaction holds a lock on
    /// every table it copied into, and the server's lock table is finite). What it committed
    /// then stays whatever becomes of the rest: only for a database the caller can drop, or
    /// when the user asked for it.
    pub fn start(
        params: &ConnParams,
        jobs: usize,
        disable_triggers: bool,
        tables_per_txn: Option<usize>,
    ) -> Pool {
        // Bounded: the reader waits when the workers fall behind, which bounds memory.
        let (tx, rx) = async_channel::bounded::<Work>(2 * jobs.max(1));
        let mut pool = Pool {
            workers: Vec::new(),
            queue: Some(tx),
            own: Vec::new(),
            sent: Arc::default(),
        };
        for _ in 0..jobs.max(1) {
            let setup = Setup {
                disable_triggers,
                tables_per_txn,
            };
            let (own_tx, own_rx) = async_channel::bounded::<Work>(OWN_QUEUE);
            let queues = Queues {
                own: own_rx,
                shared: rx.clone(),
                sent: pool.sent.clone(),
                buffers: Buffers::default(),
            };
            pool.workers
                .push(spawn_worker(params.clone(), queues, setup));
            pool.own.push(own_tx);
        }
        pool
    }

    /// Waits until every worker connected (they connect at once, while the caller restores
    /// the schema); a refused connection is an error here, before any chunk is queued.
    pub fn connected(&mut self) -> Result<()> {
        for w in &mut self.workers {
            if let Some(started) = w.started.take() {
                started
                    .recv()
                    .map_err(|_| anyhow!("a load worker failed to start"))??;
            }
        }
        Ok(())
    }

    /// Queues one chunk for whichever worker is free, waiting while every worker is busy. A
    /// worker that failed stops taking chunks; its error is returned, and every worker rolled
    /// back.
    pub fn send(&mut self, job: Job) -> Result<()> {
        let tx = self.queue.as_ref().expect("open until commit or roll back");
        if tx.send_blocking(Work::Rows(job)).is_err() {
            return Err(self.worker_error());
        }
        Ok(())
    }

    /// Queues work for worker `n` alone, waiting while its queue is full.
    pub fn send_to(&mut self, n: usize, work: Work) -> Result<()> {
        if self.own[n].send_blocking(work).is_err() {
            return Err(self.worker_error());
        }
        Ok(())
    }

    /// Closes the queues, waits until every worker did all it took, and only if all did,
    /// commits every worker's transaction. On any failure all of them roll back.
    pub fn commit(&mut self) -> Result<()> {
        self.close();
        let mut failed = None;
        for w in &mut self.workers {
            match w.ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(_) => {
                    failed.get_or_insert(anyhow!("a load worker stopped"));
                }
            }
        }
        if let Some(e) = failed {
            self.roll_back();
            return Err(e);
        }
        for w in &mut self.workers {
            let _ = w.decide.take().expect("decided once").send(true);
        }
        for w in &mut self.workers {
            match w.handle.take().expect("joined once").join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => bail!("a load worker panicked"),
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        self.queue.take();
        self.own.clear();
    }

    /// Tells every worker to roll back, and waits for them.
    pub fn roll_back(&mut self) {
        self.close();
        for w in &mut self.workers {
            if let Some(d) = w.decide.take() {
                let _ = d.send(false);
            }
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn worker_error(&mut self) -> anyhow::Error {
        // A worker failed and dropped its queue: collect what it said, roll everyone back.
        self.close();
        let mut err = None;
        for w in &mut self.workers {
            if let Ok(Err(e)) = w.ready.recv() {
                err.get_or_insert(e);
            }
        }
        self.roll_back();
        err.unwrap_or_else(|| anyhow!("a load worker stopped"))
    }
}

impl Drop for Pool {
    /// Uncommitted work never survives the pool: dropping it is a roll back.
    fn drop(&mut self) {
        self.roll_back();
    }
}

/// How a worker runs its transactions.
#[derive(Clone, Copy)]
struct Setup {
    disable_triggers: bool,
    tables_per_txn: Option<usize>,
}

/// A worker's two queues: its own, which it takes from first, and the shared one.
struct Queues {
    own: Receiver<Work>,
    shared: Receiver<Work>,
    sent: Arc<Sent>,
    buffers: Buffers,
}

/// Work as a worker sends it: rows in the format they were made ready in.
enum Ready {
    /// A chunk's job, its rows taken out into `data`, in COPY binary when `binary`.
    Rows {
        job: Job,
        data: bytes::Bytes,
        binary: bool,
    },
    Run {
        what: String,
        sql: String,
    },
}

impl Queues {
    /// The next work, from the worker's own queue if it has any; `None` once both are closed
    /// and empty. (async-channel's receive is cancel-safe: the unchosen one loses nothing.)
    async fn next(&self) -> Option<Ready> {
        let work = tokio::select! {
            biased;
            Ok(w) = self.own.recv() => w,
            Ok(w) = self.shared.recv() => w,
            else => return None,
        };
        Some(match work {
            Work::Rows(job) => self.ready(job).await,
            Work::Run { what, sql } => Ready::Run { what, sql },
        })
    }

    /// Converts a chunk's rows to COPY binary where its table allows, on a blocking thread:
    /// meanwhile this runtime goes on sending the chunk before to the server.
    async fn ready(&self, mut job: Job) -> Ready {
        let text = std::mem::take(&mut job.chunk.data);
        let Some(conv) = job.binary.clone() else {
            self.sent.text.fetch_add(1, Ordering::Relaxed);
            let data = bytes::Bytes::from(text);
            return Ready::Rows {
                job,
                data,
                binary: false,
            };
        };
        let mut out = self.buffers.take();
        let convert = move || {
            // Empty: a buffer comes back cleared.
            out.reserve(text.len() + text.len() / 4);
            match conv.convert(&text, &mut out) {
                true => Ok(out),
                false => Err(text),
            }
        };
        let converted = match tokio::task::spawn_blocking(convert).await {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let (data, binary, count) = match converted {
            Ok(out) => (self.buffers.lend(out), true, &self.sent.binary),
            Err(text) => (bytes::Bytes::from(text), false, &self.sent.text),
        };
        count.fetch_add(1, Ordering::Relaxed);
        Ready::Rows { job, data, binary }
    }
}

fn spawn_worker(params: ConnParams, queue: Queues, setup: Setup) -> Worker {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (decide, decide_rx) = std::sync::mpsc::channel::<bool>();
    let (started_tx, started) = std::sync::mpsc::channel::<Result<()>>();
    let handle = std::thread::spawn(move || -> Result<()> {
        // The connection's I/O is driven by this runtime whenever the worker awaits, also
        // while it waits for the next chunk, so the server never waits for our socket.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = match rt.block_on(connect(&params, setup.disable_triggers)) {
            Ok(c) => {
                let _ = started_tx.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return Ok(());
            }
        };
        let loaded = rt.block_on(load_worker(&client, &queue, setup));
        let ok = loaded.is_ok();
        let _ = ready_tx.send(loaded);
        if ok && decide_rx.recv() == Ok(true) {
            rt.block_on(client.batch_execute("COMMIT"))
                .context("committing loaded rows")?;
        }
        Ok(())
    });
    Worker {
        started: Some(started),
        ready,
        decide: Some(decide),
        handle: Some(handle),
    }
}

/// A worker's connection, in its transaction, with an empty search path (every name the
/// workers send is qualified).
async fn connect(params: &ConnParams, disable_triggers: bool) -> Result<tokio_postgres::Client> {
    let c = params.connect_async().await?;
    c.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")
        .await?;
    begin(&c, disable_triggers).await?;
    Ok(c)
}

async fn begin(c: &tokio_postgres::Client, disable_triggers: bool) -> Result<()> {
    c.batch_execute("BEGIN").await?;
    if disable_triggers {
        // Disables user triggers and foreign-key checks for this transaction only; needs a
        // superuser, as pg_restore --disable-triggers does.
        c.batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .context("--disable-triggers")?;
    }
    Ok(())
}

/// The tables of a worker's transactions: those it copied into in the open one, and those it
/// truncated in any (TRUNCATE again would take committed rows away).
#[derive(Default)]
struct Touched {
    now: HashSet<u32>,
    truncated: HashSet<u32>,
    truncated_now: HashSet<u32>,
}

impl Touched {
    /// Commits and begins anew when `table` would be one table too many for the transaction.
    async fn make_room(&mut self, c: &tokio_postgres::Client, table: u32, s: Setup) -> Result<()> {
        let Some(most) = s.tables_per_txn else {
            return Ok(());
        };
        if self.now.contains(&table) || self.now.len() < most {
            self.now.insert(table);
            return Ok(());
        }
        c.batch_execute("COMMIT")
            .await
            .context("committing a batch of loaded rows")?;
        begin(c, s.disable_triggers).await?;
        self.now.clear();
        self.truncated_now.clear();
        self.now.insert(table);
        Ok(())
    }

    /// Whether the chunk is copied with FREEZE, and whether the table must be truncated
    /// first: FREEZE needs the table truncated in the same transaction (PostgreSQL docs,
    /// COPY), which is possible only before any of its rows were committed.
    fn freeze(&mut self, job: &Job) -> (bool, bool) {
        if !job.freeze || self.truncated_now.contains(&job.table) {
            return (job.freeze, false);
        }
        if !self.truncated.insert(job.table) {
            return (false, false);
        }
        self.truncated_now.insert(job.table);
        (true, true)
    }
}

/// One load connection: runs COPY for each run of chunks of one table, all in one transaction
/// that the leader commits only after the archive verified.
async fn load_worker(client: &tokio_postgres::Client, queue: &Queues, setup: Setup) -> Result<()> {
    let mut touched = Touched::default();
    let mut pending = queue.next().await;
    while let Some(work) = pending.take() {
        let (job, first, binary) = match work {
            Ready::Rows { job, data, binary } => (job, data, binary),
            Ready::Run { what, sql } => {
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| pg_error(e, &what))?;
                pending = queue.next().await;
                continue;
            }
        };
        touched.make_room(client, job.table, setup).await?;
        // The table is new and empty, so TRUNCATE costs nothing, and the rows land frozen:
        // no later hint-bit rewrite or anti-wraparound vacuum of them.
        let (freeze, truncate) = touched.freeze(&job);
        if truncate {
            let sql = format!("TRUNCATE ONLY {}", job.target);
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(e, &sql))?;
        }
        let with = match (freeze, binary) {
            (true, true) => " (FREEZE, FORMAT binary)",
            (true, false) => " (FREEZE)",
            (false, true) => " (FORMAT binary)",
            (false, false) => "",
        };
        let sql = format!("COPY {} FROM STDIN{with}", job.copy);
        pending = copy_run(client, queue, &sql, job.table, first, binary).await?;
    }
    Ok(())
}

/// One COPY statement: `first`, then the chunks that follow it in the queue while they are
/// of the same table and format. Returns the work that ended the run.
async fn copy_run(
    client: &tokio_postgres::Client,
    queue: &Queues,
    sql: &str,
    table: u32,
    first: bytes::Bytes,
    binary: bool,
) -> Result<Option<Ready>> {
    use futures_util::SinkExt;
    let sink = client
        .copy_in::<_, bytes::Bytes>(sql)
        .await
        .map_err(|e| pg_error(e, sql))?;
    let mut sink = std::pin::pin!(sink);
    let header = bytes::Bytes::from_static(copy_binary::HEADER);
    let mut sent = if binary {
        sink.send(header).await
    } else {
        Ok(())
    };
    // The chunk's buffer becomes the message as it is: no copy.
    let mut data = Some(first);
    let mut pending = None;
    while sent.is_ok() {
        if let Some(d) = data.take() {
            sent = sink.send(d).await;
            continue;
        }
        match queue.next().await {
            Some(Ready::Rows {
                job,
                data: d,
                binary: b,
            }) if job.table == table && b == binary => data = Some(d),
            other => {
                pending = other;
                break;
            }
        }
    }
    if binary && sent.is_ok() {
        let trailer = bytes::Bytes::from_static(copy_binary::TRAILER);
        sent = sink.send(trailer).await;
    }
    sent.map_err(|e| pg_error(e, sql))?;
    sink.as_mut().finish().await.map_err(|e| pg_error(e, sql))?;
    Ok(pending)
}
