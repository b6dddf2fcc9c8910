//! `weir-extract`: one consistent snapshot of a database, written as a weir archive.
//!
//! The leader connection opens a REPEATABLE READ transaction, exports its snapshot, reads the
//! catalog and locks the chosen tables (as `pg_dump` does, so no table can be dropped under
//! us). `pg_dump --schema-only --snapshot` and `-j N` worker connections import that same
//! snapshot, so schema and data describe one instant. Workers COPY tables (big ones in ctid
//! page ranges on PostgreSQL 14 and later) and hand row-aligned chunks to the single writer
//! through a bounded channel, which bounds memory whatever the table sizes.

mod plan;
pub mod subset;

use crate::archive::{self, Algo, ArchiveWriter};
use crate::pg::conn::ConnParams;
use crate::pg::copy_text::{Chunk, Chunker};
use crate::pg::sql::{in_statement, quote_ident, quote_literal};
use crate::pg::tools;
use crate::plumbing::{Output, Progress, human_bytes};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::io::{Read, Write};

/// What to extract and how; the binary fills it from its command line.
#[derive(Clone, Debug, Default)]
pub struct ExtractOptions {
    pub conninfo: Option<String>,
    pub jobs: usize,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub schemas: Vec<String>,
    pub exclude_schemas: Vec<String>,
    pub exclude_table_data: Vec<String>,
    /// `TABLE:CONDITION` row filters.
    pub wheres: Vec<String>,
    /// `--subset`, `--virtual-fk`, `--subset-dependents`.
    pub subset: subset::SubsetSpec,
    pub globals: bool,
    /// `Some(true)` forces large objects in, `Some(false)` leaves them out; `None` is pg_dump's
    /// default (in unless tables or schemas were selected).
    pub blobs: Option<bool>,
    /// `--no-unlogged-table-data` (always so on a standby).
    pub no_unlogged_table_data: bool,
    pub chunk_size: usize,
    /// Tables above twice this many pages are COPYed in ranges of this many pages.
    pub split_pages: i64,
    pub output: Option<String>,
    /// `--stats FILE`: the finished archive's [`archive::Stats`].
    pub stats: Option<String>,
    pub progress: bool,
    pub quiet: bool,
}

/// Settings every connection of ours uses, as `pg_dump` sets them (pg_dump.c,
/// setup_connection): stable date, interval and float output; no timeouts; no row security,
/// so a table we may not read whole is an error rather than a silently filtered dump.
const SESSION_SETUP: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; \
    SET extra_float_digits = 3; SET synchronize_seqscans = off; SET statement_timeout = 0; \
    SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET row_security = off; \
    SELECT pg_catalog.set_config('search_path', '', false);";

struct Source {
    params: ConnParams,
    client: postgres::Client,
    snapshot: String,
    server_version: String,
    server_num: u32,
    database: String,
    encoding: String,
}

/// Runs an extraction to the output named in `opts`.
pub fn run(opts: &ExtractOptions) -> Result<()> {
    let params = ConnParams::resolve(opts.conninfo.as_deref(), "weir-extract")?;
    let mut src = open_source(params)?;
    let pg_dump_version = tools::check_not_older("pg_dump", src.server_num, &src.server_version)?;
    let mut plan = plan::plan(&mut src, opts, &pg_dump_version)?;
    let blob_oids = if plan.manifest.blobs {
        blob_owners(&mut src.client)?
    } else {
        Vec::new()
    };
    plan.manifest.large_objects = Some(blob_oids.len() as u64);
    let manifest = &plan.manifest;
    let with_data = || manifest.tables.iter().filter(|t| t.data);
    let total_disk: u64 = with_data().map(|t| t.bytes_on_disk).sum();
    let out = Output::open(opts.output.as_deref(), true)?;
    let mut progress = Progress::new(Some(total_disk), opts.progress, opts.quiet);
    let mut w = ArchiveWriter::new(out, manifest)?;
    let (rows, bytes) = write_data(
        &mut w,
        &mut src,
        opts,
        plan.work,
        plan.relock.then_some(&manifest.tables[..]),
        &manifest.sequences_sql(),
        &mut progress,
    )?;
    if manifest.blobs {
        write_blobs(&mut w, &mut src.client, &blob_oids)?;
    }
    let (out, trailer) = w.finish_with_trailer()?;
    out.finish().context("writing the archive")?;
    src.client.batch_execute("COMMIT")?;
    if let Some(path) = &opts.stats {
        archive::Stats::new(manifest, &trailer).write(path)?;
    }
    progress.clear();
    if !opts.quiet {
        let secs = progress.elapsed().as_secs_f64();
        eprintln!(
            "weir-extract: {} tables, {rows} rows, {} in {secs:.1} s ({}/s)",
            with_data().count(),
            human_bytes(bytes),
            human_bytes((bytes as f64 / secs.max(0.001)) as u64)
        );
    }
    Ok(())
}

/// Every large object's OID and owner, read through the leader's snapshot.
fn blob_owners(c: &mut postgres::Client) -> Result<Vec<(u32, String)>> {
    let sql = "SELECT oid, pg_catalog.pg_get_userbyid(lomowner) \
               FROM pg_catalog.pg_largeobject_metadata ORDER BY oid";
    Ok(c.query(sql, &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The schema, globals and sequences, then every table's rows: `-j N` workers COPY the work
/// items and the calling thread writes their chunks as they come. Returns rows and bytes.
/// The schema is read while the workers start copying, unless the leader must first take
/// back its locks from pg_dump (`relock`, see [`plan::plan`]): then pg_dump runs first, alone.
fn write_data<W: Write>(
    w: &mut ArchiveWriter<W>,
    src: &mut Source,
    opts: &ExtractOptions,
    work: Vec<plan::WorkItem>,
    relock: Option<&[archive::Table]>,
    sequences_sql: &str,
    progress: &mut Progress,
) -> Result<(u64, u64)> {
    if let Some(tables) = relock {
        write_schema(w, src, opts)?;
        plan::lock(&mut src.client, tables)?;
    }
    let src = &*src;
    let jobs = opts.jobs.max(1);
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<plan::WorkItem>();
    // The COPYs of each table still to end: its rows are done after the last.
    let mut copies_left: HashMap<u32, usize> = HashMap::new();
    for item in work {
        *copies_left.entry(item.table).or_default() += 1;
        work_tx.send(item).expect("receiver alive");
    }
    drop(work_tx);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<Result<Piece>>(jobs * 2);
    let chunk_size = if opts.chunk_size == 0 {
        4 << 20
    } else {
        opts.chunk_size
    };
    let (mut rows, mut bytes) = (0u64, 0u64);
    // Written chunks' buffers go back to the workers (see Chunker::with_pool).
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(jobs * 3);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..jobs {
            let (pool, work_rx, chunk_tx) = (pool_rx.clone(), work_rx.clone(), chunk_tx.clone());
            let (params, snapshot) = (&src.params, &src.snapshot);
            scope.spawn(move || {
                if let Err(e) = worker(params, snapshot, &work_rx, &chunk_tx, chunk_size, pool) {
                    let _ = chunk_tx.send(Err(e));
                }
            });
        }
        drop(chunk_tx);
        let result = (|| -> Result<()> {
            if relock.is_none() {
                write_schema(w, src, opts)?;
            }
            if opts.globals {
                write_globals(w, &src.params)?;
            }
            w.add_file(archive::SEQUENCES, sequences_sql.as_bytes())?;
            for msg in chunk_rx.iter() {
                let (table, chunk) = msg?;
                let Some(chunk) = chunk else {
                    let left = copies_left.get_mut(&table).expect("counted above");
                    *left -= 1;
                    if *left == 0 {
                        w.end_table(table)?;
                    }
                    continue;
                };
                rows += chunk.rows;
                bytes += chunk.data.len() as u64;
                w.add_chunk(table, &chunk)?;
                let _ = pool_tx.try_send(chunk.data);
                progress.update(bytes, rows);
            }
            Ok(())
        })();
        if result.is_err() {
            // Unblock and stop the workers: nothing more will be read.
            drop(chunk_rx);
            while work_rx.try_recv().is_ok() {}
        }
        result
    })?;
    Ok((rows, bytes))
}

fn open_source(params: ConnParams) -> Result<Source> {
    let mut client = params.connect()?;
    client.batch_execute(SESSION_SETUP)?;
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    let row = client.query_one(
        "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.current_setting('server_version'), \
         pg_catalog.current_setting('server_version_num')::int4, pg_catalog.current_database()::text, \
         pg_catalog.pg_encoding_to_char(d.encoding)::text \
         FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
        &[],
    )?;
    let server_num: i32 = row.get(2);
    if server_num < 120000 {
        bail!(
            "server version {} is not supported: weir needs PostgreSQL 12 or newer",
            row.get::<_, String>(1)
        );
    }
    Ok(Source {
        params,
        snapshot: row.get(0),
        server_version: row.get(1),
        server_num: server_num as u32,
        database: row.get(3),
        encoding: row.get(4),
        client,
    })
}

/// What a worker sends the writer: a chunk of a table's rows, or `None` when one of its COPYs
/// ended (the channel keeps each worker's order, so after that COPY's chunks).
type Piece = (u32, Option<Chunk>);

/// One extract connection: imports the leader's snapshot and runs the COPYs it takes, cutting
/// their rows into chunks. On libpq, reading each row with `PQgetCopyData` as pg_dump does:
/// measured 0.3 s of CPU less over the benchmark's 6 million rows than tokio-postgres, which
/// parses each CopyData message (one per row) into a stream item and hands it across tasks
/// (2.82-2.94 s against 3.02-3.50 s, 2026-12-05).
fn worker(
    params: &ConnParams,
    snapshot: &str,
    work: &crossbeam_channel::Receiver<plan::WorkItem>,
    out: &crossbeam_channel::Sender<Result<Piece>>,
    chunk_size: usize,
    pool: crossbeam_channel::Receiver<Vec<u8>>,
) -> Result<()> {
    use crate::pg::replication::{ReplConn, Reply};
    let mut c = ReplConn::connect_plain(params)?;
    c.drop_notices();
    c.query(SESSION_SETUP)?;
    let begin = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot)
    );
    c.query(&begin)?;
    for (n, item) in work.iter().enumerate() {
        if n > 0 && n % plan::WORKER_TABLES == 0 {
            // Lets this transaction's table locks go (the leader holds every table).
            c.query("COMMIT")?;
            c.query(&begin)?;
        }
        let failed = |e| in_statement(e, &item.query);
        c.send(&item.query).map_err(failed)?;
        if !matches!(c.next_result().map_err(failed)?, Some(Reply::CopyOut)) {
            return Err(failed(anyhow!("the server sent no COPY stream")));
        }
        let mut chunker = Chunker::with_pool(chunk_size, pool.clone());
        while let Some(row) = c.copy_data().map_err(failed)? {
            if let Some(data) = chunker.push(&row) {
                let chunk = Chunk::new(data, Algo::CURRENT);
                if out.send(Ok((item.table, Some(chunk)))).is_err() {
                    return Ok(());
                }
            }
        }
        // The COPY's own result: an error that ended the stream shows here.
        while c.next_result().map_err(failed)?.is_some() {}
        let last = chunker.finish()?.map(|d| Chunk::new(d, Algo::CURRENT));
        let gone = |piece| out.send(Ok((item.table, piece))).is_err();
        if last.is_some_and(|c| gone(Some(c))) || gone(None) {
            return Ok(());
        }
    }
    c.query("COMMIT")?;
    Ok(())
}

/// Streams `pg_dump --schema-only` on our snapshot into the archive, in bounded parts.
fn write_schema<W: Write>(
    w: &mut ArchiveWriter<W>,
    src: &Source,
    opts: &ExtractOptions,
) -> Result<()> {
    let mut args = vec![
        "--format=custom".to_string(),
        "--schema-only".into(),
        format!("--snapshot={}", src.snapshot),
        "--no-sync".into(),
    ];
    for t in &opts.tables {
        args.push(format!("--table={t}"));
    }
    for t in &opts.exclude_tables {
        args.push(format!("--exclude-table={t}"));
    }
    for s in &opts.schemas {
        args.push(format!("--schema={s}"));
    }
    for s in &opts.exclude_schemas {
        args.push(format!("--exclude-schema={s}"));
    }
    args.push(format!("--dbname={}", src.params.dbname_conninfo()));
    let mut dump = tools::spawn(
        "pg_dump",
        &args,
        &src.params,
        std::process::Stdio::null(),
        true,
    )?;
    let mut stdout = dump.stdout().expect("piped");
    let mut part = 0;
    loop {
        let mut buf = Vec::with_capacity(archive::SCHEMA_PART);
        let n = (&mut stdout)
            .take(archive::SCHEMA_PART as u64)
            .read_to_end(&mut buf)
            .context("reading pg_dump output")?;
        if n == 0 && part > 0 {
            break;
        }
        w.add_file(&format!("{}{part:06}", archive::SCHEMA_PREFIX), &buf)?;
        part += 1;
        if n < archive::SCHEMA_PART {
            break;
        }
    }
    dump.wait()
}

fn write_globals<W: Write>(w: &mut ArchiveWriter<W>, params: &ConnParams) -> Result<()> {
    let args = vec![
        "--globals-only".to_string(),
        format!("--dbname={}", params.dbname_conninfo()),
    ];
    let mut d = tools::spawn(
        "pg_dumpall",
        &args,
        params,
        std::process::Stdio::null(),
        true,
    )?;
    let mut sql = Vec::new();
    d.stdout().expect("piped").read_to_end(&mut sql)?;
    d.wait()?;
    w.add_file(archive::GLOBALS, &sql)
}

/// Large objects: their metadata as SQL (create with the same OID, same owner), then each one's
/// contents, read through a descriptor opened in our snapshot.
fn write_blobs<W: Write>(
    w: &mut ArchiveWriter<W>,
    c: &mut postgres::Client,
    blobs: &[(u32, String)],
) -> Result<()> {
    let mut sql = String::new();
    for (oid, owner) in blobs {
        sql.push_str(&format!("SELECT pg_catalog.lo_create('{oid}');\n"));
        sql.push_str(&format!(
            "ALTER LARGE OBJECT {oid} OWNER TO {};\n",
            quote_ident(owner)
        ));
    }
    w.add_file(archive::BLOBS_SQL, sql.as_bytes())?;
    for (oid, _) in blobs {
        // INV_READ: reads see the transaction's snapshot (lo_open, PostgreSQL docs 35.3.4).
        let fd: i32 = c
            .query_one("SELECT pg_catalog.lo_open($1, 262144)", &[oid])?
            .get(0);
        let size: i64 = c
            .query_one("SELECT pg_catalog.lo_lseek64($1, 0, 2)", &[&fd])?
            .get(0);
        c.query_one("SELECT pg_catalog.lo_lseek64($1, 0, 0)", &[&fd])?;
        let reader = BlobReader {
            c: &mut *c,
            fd,
            buf: Vec::new(),
            pos: 0,
        };
        w.add_blob(*oid, size as u64, reader)?;
        c.query_one("SELECT pg_catalog.lo_close($1)", &[&fd])?;
    }
    Ok(())
}

struct BlobReader<'a> {
    c: &'a mut postgres::Client,
    fd: i32,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            let row = self
                .c
                .query_one("SELECT pg_catalog.loread($1, 1048576)", &[&self.fd])
                .map_err(std::io::Error::other)?;
            self.buf = row.get(0);
            self.pos = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
