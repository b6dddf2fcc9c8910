//! `weir-cdc --backfill TABLE`: a table's rows copied into a running stream, in chunks by key,
//! with no lock held, by the low/high-watermark technique (DBLog, Andreakis and Papapanagiotou,
//! Netflix 2020; Debezium's incremental snapshots work the same way).
//!
//! For each chunk weir-cdc writes a low watermark into the source's WAL (a non-transactional
//! logical message), waits for the database's transactions then in progress to end (one of
//! them may have its commit record before the watermark and not yet be visible), reads the
//! next `chunk_rows` rows after the copied bound in key order, and writes a high watermark.
//! A wait that runs out abandons the chunk (its watermarks then match nothing) and the stream
//! goes on; a new low watermark is tried a few seconds later. The stream carries
//! every transaction in commit order between the two messages; so, for the table:
//! - a change whose key is at or below the copied bound passes as usual (the target has that
//!   row's history);
//! - before the low watermark, or beyond the chunk's last key, a change is dropped: a later
//!   chunk reads the row as it is after it;
//! - between the watermarks, a change to a key of the chunk's range is applied to the chunk's
//!   rows as read (an insert replaces, an update sets what it sent and keeps an unchanged
//!   TOASTed value, a delete removes), because the read may or may not have seen it.
//!
//! At the high watermark the chunk's rows go out as a transaction of inserts ending there, so
//! weir-apply records its position with them, and the bound moves to the chunk's last key. A
//! short chunk is the last: its range has no end.
//!
//! Keys are compared by the source server (one query per source transaction that touches the
//! table during the backfill), so every key type orders as the chunks' `ORDER BY` does. After
//! a crash the target's greatest key is the bound: it holds nothing beyond the bound, and
//! everything at or below it, once no transaction writing the table there is still open (a
//! chunk an earlier weir-apply was committing when it was killed may land after weir-cdc
//! starts, so the greatest key is read under a SHARE lock, which waits for it).
//!
//! A table without a key is read whole, at one snapshot, into a file of its own. Ranges of
//! ctid cannot be chunks: the stream does not say where a change's row lies (an update may
//! move it to any page), so a change cannot be placed before or beyond a bound. Instead each
//! transaction up to the high watermark is placed by the read's snapshot: one the read saw is
//! in its rows (its changes to the table are dropped), one it did not see is applied after
//! them, in the chunk's transaction. Every transaction before the low watermark is one the
//! read saw (those running then were waited for). Such a table is all or nothing: after a
//! crash, an empty target table is read again and a filled one is done.

use super::json::{self, Rel, Txn};
use super::pgoutput::Value;
use super::trace;
use crate::pg::conn::ConnParams;
use crate::pg::copy_text;
use crate::pg::lsn::Lsn;
use crate::pg::sql::{pg_error, quote_ident};
use anyhow::{Context, Result, bail};
use postgres::types::ToSql;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};

/// The prefix of the watermark messages.
pub const PREFIX: &str = "weir.backfill";

/// Rows read per chunk unless asked otherwise.
pub const CHUNK_ROWS: usize = 20_000;

/// How long a chunk waits for the transactions running at its low watermark, and how long
/// after a wait that ran out the next is tried: the streaming loop sends no status update
/// while it waits, and the walsender ends a silent connection after `wal_sender_timeout`.
const RUNNING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The source database's transactions that hold an xid now, as the process array has them:
/// a backend's `backend_xid` is its `PGPROC`'s xid, cleared when the transaction ends for
/// snapshots (procarray.c, ProcArrayEndTransaction), and a prepared transaction is listed
/// until its COMMIT PREPARED has left the process array too (twophase.c). Not the snapshot's
/// `xip`: that omits a running xid at or above its xmax (latestCompletedXid + 1), as a
/// committing transaction's often is (procarray.c, GetSnapshotData).
const RUNNING: &str = "SELECT a.backend_xid::text FROM pg_catalog.pg_stat_activity a \
     WHERE a.datname = pg_catalog.current_database() AND a.backend_xid IS NOT NULL \
     UNION ALL SELECT p.transaction::text FROM pg_catalog.pg_prepared_xacts p \
     WHERE p.database = pg_catalog.current_database()";

/// A value as a change or the read carried it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    /// A TOASTed value an update left alone: not sent.
    Unchanged,
    Text(Vec<u8>),
}

impl Cell {
    fn of(v: &Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Unchanged => Cell::Unchanged,
            Value::Text(t) | Value::Binary(t) => Cell::Text(t.to_vec()),
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Cell::Null => Value::Null,
            Cell::Unchanged => Value::Unchanged,
            Cell::Text(t) => Value::Text(t),
        }
    }
}

pub type Row = Vec<Cell>;
type Key = Vec<String>;

/// A change to the table, held until its transaction's keys are compared.
pub struct Held {
    pub action: char,
    pub lsn: u64,
    pub new: Option<Row>,
    pub old: Option<Row>,
    /// The line as weir-cdc writes it, for a change that passes.
    pub line: Vec<u8>,
}

/// The chunk read between a pair of watermarks.
struct Chunk {
    id: u64,
    /// The low watermark came by: changes now fall between the two.
    entered: bool,
    /// Its rows by key; `None`: deleted since.
    rows: HashMap<Key, Option<Row>>,
    /// Its last key; `None`: the last chunk, whose range has no end.
    last: Option<Key>,
    /// A table without a key: its rows read whole.
    whole: Option<Whole>,
}

/// A table without a key, read whole at one snapshot.
struct Whole {
    seen: Snap,
    /// Its rows as COPY text.
    file: File,
    rows: u64,
    /// A truncate the read did not see: the rows read are gone.
    emptied: bool,
    /// Changes of transactions the read did not see, in commit order, to apply after its rows.
    after: Vec<Held>,
}

/// A snapshot as `pg_current_snapshot()` gives it.
#[derive(Debug)]
struct Snap {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Snap {
    /// `xmin:xmax:xip,...`
    fn parse(s: &str) -> Result<Snap> {
        let bad = || anyhow::anyhow!("a snapshot that does not parse: {s}");
        let mut parts = s.split(':');
        let mut next = || parts.next().ok_or_else(bad);
        let (xmin, xmax, xip) = (next()?, next()?, next()?);
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad());
        Ok(Snap {
            xmin: num(xmin)?,
            xmax: num(xmax)?,
            xip: xip
                .split(',')
                .filter(|x| !x.is_empty())
                .map(num)
                .collect::<Result<_>>()?,
        })
    }

    /// Whether a committed transaction's effects are visible in it. The stream carries 32-bit
    /// xids; the full one is taken as the nearest to xmax (a transaction in the stream now
    /// is within 2^31 of it, as PostgreSQL's own wraparound arithmetic assumes).
    fn sees(&self, xid: u32) -> bool {
        let d = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let full = (self.xmax as i64 + d) as u64;
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

pub struct Backfill {
    c: postgres::Client,
    pub oid: u32,
    /// The table's columns as the stream carries them, its key flagged.
    pub rel: Rel,
    key_at: Vec<usize>,
    /// The key columns' types (format_type).
    key_types: Vec<String>,
    chunk_rows: usize,
    /// Copied through this key; `None`: nothing yet.
    bound: Option<Key>,
    /// This run's name in its watermarks (old runs' watermarks are passed over).
    run: String,
    chunk: Option<Chunk>,
    chunks: u64,
    /// A chunk's wait ran out: none is tried before then.
    retry_at: Option<std::time::Instant>,
    /// Its rows are its partitions' (published through the root).
    partitioned: bool,
    /// The last chunk went out: every change passes.
    complete: bool,
    /// No key: read whole at one snapshot.
    keyless: bool,
    pub copied: u64,
}

/// What a watermark does.
pub enum Mark {
    /// Not this run's, or a low one: nothing to write.
    Nothing,
    /// A chunk ends here: its transaction's lines, written piece by piece.
    Chunk(Lines),
}

/// A chunk's transaction as lines, in pieces of about 1 MiB: a table without a key is read
/// whole, so its chunk is written from its file rather than held.
pub enum Lines {
    Ready(Option<Vec<u8>>),
    Whole(Box<WholeLines>),
}

impl Lines {
    /// Appends the next piece to `out`; false when none remains.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        match self {
            Lines::Ready(lines) => Ok(lines.take().map(|l| out.extend(l)).is_some()),
            Lines::Whole(w) => w.next(out),
        }
    }
}

pub struct WholeLines {
    rel: Rel,
    txn: Txn,
    at: u64,
    end: u64,
    rows: Option<std::io::Split<BufReader<File>>>,
    after: std::vec::IntoIter<Held>,
    /// Begun, ended.
    state: (bool, bool),
}

impl WholeLines {
    fn next(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if self.state.1 {
            return Ok(false);
        }
        if !self.state.0 {
            json::begin(out, &self.txn, self.at);
            self.state.0 = true;
        }
        let (at, rel) = (self.at, &self.rel);
        while out.len() < 1 << 20 {
            if let Some(line) = self.rows.as_mut().and_then(|r| r.next()) {
                let row = parse_row(&line?, rel)?;
                let tuple: Vec<Value> = row.iter().map(Cell::value).collect();
                json::snapshot_insert(out, &self.txn, at, rel, &tuple);
            } else if let Some(h) = self.after.next() {
                let (new, old) = (tuple(&h.new), tuple(&h.old));
                let action = h.action.to_string();
                json::change(out, &action, &self.txn, at, rel, new.as_ref(), old.as_ref());
            } else {
                json::commit(out, &self.txn, at, self.end);
                self.state.1 = true;
                break;
            }
        }
        Ok(true)
    }
}

impl Backfill {
    /// Starts backfilling `table` (as `schema.table` or a name on the search path) of
    /// `publication`, from the greatest key `target` holds; when `fresh` (a table new to the
    /// publication), from its start, the target's copy being empty or not there yet (a
    /// replicated CREATE TABLE may still be on its way).
    pub fn start(
        params: &ConnParams,
        table: &str,
        publication: &str,
        target: &mut postgres::Client,
        chunk_rows: usize,
        fresh: bool,
    ) -> Result<Backfill> {
        let mut c = params.connect()?;
        // A partitioned table is listed only when the publication publishes through its root,
        // and a partition only when it does not: either way the stream names what is listed.
        let q = "SELECT c.oid, n.nspname::text, c.relname::text, \
                        EXISTS (SELECT FROM pg_catalog.pg_publication_tables p \
                                WHERE p.pubname = $2 AND p.schemaname = n.nspname \
                                  AND p.tablename = c.relname), \
                        c.relkind = 'p' \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = pg_catalog.to_regclass($1)";
        let row = c
            .query_opt(q, &[&table, &publication])
            .map_err(|e| pg_error(e, q))?
            .with_context(|| format!("--backfill {table}: no such table"))?;
        let (oid, schema, name, published, partitioned): (u32, String, String, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if !published {
            bail!(
                "--backfill {schema}.{name}: the table is not in publication {publication} (ALTER PUBLICATION {} ADD TABLE {}.{} first)",
                quote_ident(publication),
                quote_ident(&schema),
                quote_ident(&name)
            );
        }
        c.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
        let mut columns = super::copy::columns(&mut c, oid)?;
        let key = super::verify::key(&mut c, oid)?;
        let keyless = key.is_empty();
        if keyless && replica_identity_full(&mut c, oid)? {
            // Its updates and deletes name their row by all of its columns.
            columns.iter_mut().for_each(|c| c.key = true);
        }
        let mut key_at = Vec::new();
        for k in &key {
            let i = columns
                .iter()
                .position(|c| &c.name == k)
                .context("a key column the stream does not carry")?;
            columns[i].key = true;
            key_at.push(i);
        }
        let key_types = key_at
            .iter()
            .map(|&i| columns[i].type_name.clone())
            .collect();
        let rel = Rel {
            schema,
            table: name,
            columns,
        };
        let mut b = Backfill {
            c,
            oid,
            rel,
            key_at,
            key_types,
            chunk_rows: chunk_rows.max(1),
            bound: None,
            run: format!("{}-{}", std::process::id(), super::wire::pg_now()),
            chunk: None,
            chunks: 0,
            retry_at: None,
            partitioned,
            complete: false,
            keyless,
            copied: 0,
        };
        if fresh {
            b.fresh(target)?;
            trace(format_args!("start {} run={} fresh", b.name(), b.run));
            return Ok(b);
        }
        match keyless {
            // All or nothing: rows on the target are an earlier run's whole read.
            true => b.complete = b.target_has_rows(target, true)?,
            false => b.bound = b.greatest(target)?,
        }
        trace(format_args!(
            "start {} run={} bound={:?}",
            b.name(),
            b.run,
            b.bound
        ));
        Ok(b)
    }

    /// Read whole at one snapshot: it has no key.
    pub fn keyless(&self) -> bool {
        self.keyless
    }

    pub fn name(&self) -> String {
        format!("{}.{}", self.rel.schema, self.rel.table)
    }

    pub fn bound(&self) -> Option<&[String]> {
        self.bound.as_deref()
    }

    /// The key's columns, quoted, each between `before` and `after`, joined by commas.
    fn key_list(&self, before: &str, after: &str) -> String {
        let cols: Vec<String> = self
            .key_at
            .iter()
            .map(|&i| format!("{before}{}{after}", quote_ident(&self.rel.columns[i].name)))
            .collect();
        cols.join(", ")
    }

    /// `ROW('v1'::type1, ...)`: a key's values as typed literals.
    fn key_literal(&self, key: &[String]) -> String {
        let vals: Vec<String> = key
            .iter()
            .zip(&self.key_types)
            .map(|(v, t)| format!("{}::{t}", crate::pg::sql::quote_literal(v)))
            .collect();
        format!("ROW({})", vals.join(", "))
    }

    fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.rel.schema),
            quote_ident(&self.rel.table)
        )
    }

    /// The target's greatest key: what an earlier run copied.
    fn greatest(&self, target: &mut postgres::Client) -> Result<Option<Key>> {
        // Ordered by the columns themselves (an output column of the same name, the text,
        // would win over them in ORDER BY).
        let q = format!(
            "SELECT {} FROM {} t ORDER BY {} LIMIT 1",
            self.key_list("t.", "::text"),
            self.qualified(),
            self.key_list("t.", " DESC")
        );
        let row = self.settled(target, |tx| tx.query_opt(q.as_str(), &[]), &q)?;
        Ok(row.map(|r| (0..self.key_at.len()).map(|i| r.get(i)).collect()))
    }

    /// `read` on the target once no transaction writing the table is still open there: one
    /// of an earlier weir-apply killed while it committed a chunk may commit after it, and a
    /// read before would take the bound from before that chunk (whose rows the next chunk
    /// would then insert again). A SHARE lock waits for every writer of the table to end and
    /// keeps new ones out for the read; a lock not had in a minute is an error.
    fn settled<T>(
        &self,
        target: &mut postgres::Client,
        read: impl FnOnce(&mut postgres::Transaction) -> std::result::Result<T, postgres::Error>,
        q: &str,
    ) -> Result<T> {
        let what = || format!("reading what the target holds of {}", self.name());
        let mut tx = target.transaction().with_context(what)?;
        let lock = format!(
            "SET LOCAL lock_timeout = '60s'; LOCK TABLE {} IN SHARE MODE",
            self.qualified()
        );
        tx.batch_execute(&lock)
            .map_err(|e| pg_error(e, &lock))
            .with_context(|| {
                format!(
                    "waiting for the transactions writing {} on the target to end",
                    self.name()
                )
            })?;
        let got = read(&mut tx)
            .map_err(|e| pg_error(e, q))
            .with_context(what)?;
        tx.commit().with_context(what)?;
        Ok(got)
    }

    /// A table new to the publication: the target's copy of it must hold nothing, since
    /// nothing but this copy may fill it (rows from elsewhere would be duplicated or stale).
    fn fresh(&self, target: &mut postgres::Client) -> Result<()> {
        let q = "SELECT pg_catalog.to_regclass($1) IS NOT NULL";
        let exists: bool = target
            .query_one(q, &[&self.qualified()])
            .map_err(|e| pg_error(e, q))?
            .get(0);
        if exists && self.target_has_rows(target, false)? {
            return Err(crate::plumbing::coded(
                crate::plumbing::ExitCode::Failure,
                format!(
                    "{} joined the publication and the target's copy already holds rows weir-cdc did not copy: empty it (TRUNCATE) to have it copied, or give --backfill {} to go on after its greatest key",
                    self.name(),
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    /// Whether the target's copy of the table holds a row; after a crash (`resumed`), once no
    /// earlier writer of it can still commit ([`Backfill::settled`]).
    fn target_has_rows(&self, target: &mut postgres::Client, resumed: bool) -> Result<bool> {
        let q = format!("SELECT EXISTS (SELECT FROM {})", self.qualified());
        let row = match resumed {
            true => self.settled(target, |tx| tx.query_one(q.as_str(), &[]), &q)?,
            false => target
                .query_one(q.as_str(), &[])
                .map_err(|e| pg_error(e, &q))
                .with_context(|| format!("reading what the target holds of {}", self.name()))?,
        };
        Ok(row.get(0))
    }

    /// A chunk is to be read: none is under way.
    pub fn wants_chunk(&self) -> bool {
        let due = self.retry_at.is_none_or(|t| std::time::Instant::now() >= t);
        self.chunk.is_none() && !self.complete && due
    }

    /// Reads the next chunk between a low and a high watermark; or abandons it when
    /// transactions running at its low watermark go on, returning them the first time in a row.
    pub fn read_chunk(&mut self) -> Result<Option<Vec<String>>> {
        self.chunks += 1;
        let id = self.chunks;
        self.mark(id, "low")?;
        if let Some(running) = self.wait_for_running()? {
            trace(format_args!(
                "abandon {} id={id} running={running:?}",
                self.name()
            ));
            let first = self.retry_at.is_none();
            self.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
            return Ok(first.then_some(running));
        }
        self.retry_at = None;
        self.chunk = Some(match self.keyless {
            true => self.read_whole_chunk(id)?,
            false => self.read_keyed_chunk(id)?,
        });
        Ok(None)
    }

    fn read_whole_chunk(&mut self, id: u64) -> Result<Chunk> {
        let whole = self.read_whole()?;
        self.mark(id, "high")?;
        Ok(Chunk {
            id,
            entered: false,
            rows: HashMap::new(),
            last: None,
            whole: Some(whole),
        })
    }

    fn read_keyed_chunk(&mut self, id: u64) -> Result<Chunk> {
        let rows = self.read_rows()?;
        self.mark(id, "high")?;
        let last = match rows.len() < self.chunk_rows {
            true => None,
            false => rows.last().map(|r| self.key_of(r)).transpose()?,
        };
        trace(format_args!(
            "chunk {} id={id} after={:?} last={last:?} rows={}",
            self.name(),
            self.bound,
            rows.len()
        ));
        let rows = rows
            .into_iter()
            .map(|r| Ok((self.key_of(&r)?, Some(r))))
            .collect::<Result<_>>()?;
        Ok(Chunk {
            id,
            entered: false,
            rows,
            last,
            whole: None,
        })
    }

    fn mark(&mut self, id: u64, which: &str) -> Result<()> {
        let content = format!(
            "{{\"run\":\"{}\",\"chunk\":{id},\"mark\":\"{which}\"}}",
            self.run
        );
        let q = "SELECT pg_catalog.pg_logical_emit_message(false, $1, $2)";
        self.c
            .execute(q, &[&PREFIX, &content])
            .map_err(|e| pg_error(e, q))
            .context("writing a backfill watermark into the source's WAL")?;
        Ok(())
    }

    /// Waits until every transaction of the source database running now has ended ([`RUNNING`]):
    /// one whose commit record is before the low watermark may not be visible yet, and the
    /// chunk must see all of them. A commit is written to WAL and to the commit log before
    /// the transaction leaves the process array that snapshots are taken from (xact.c,
    /// RecordTransactionCommit; a synchronous standby is waited for in between). Those still
    /// running after [`RUNNING_WAIT`], if any, are returned.
    fn wait_for_running(&mut self) -> Result<Option<Vec<String>>> {
        let q = format!("SELECT pg_catalog.array_agg(x) FROM ({RUNNING}) r(x)");
        let xids: Option<Vec<String>> = self
            .c
            .query_one(q.as_str(), &[])
            .map_err(|e| pg_error(e, &q))?
            .get(0);
        let Some(xids) = xids else { return Ok(None) };
        let q = format!(
            "SELECT pg_catalog.array_agg(x) FROM ({RUNNING}) r(x) WHERE x = ANY($1::text[])"
        );
        let until = std::time::Instant::now() + RUNNING_WAIT;
        loop {
            let still: Option<Vec<String>> = self
                .c
                .query_one(q.as_str(), &[&xids])
                .map_err(|e| pg_error(e, &q))?
                .get(0);
            match still {
                None => return Ok(None),
                Some(s) if std::time::Instant::now() >= until => return Ok(Some(s)),
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    /// `SELECT columns FROM [ONLY] table`: a partitioned table's rows are its partitions'.
    fn select(&self) -> String {
        let cols: Vec<String> = self
            .rel
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let only = if self.partitioned { "" } else { "ONLY " };
        format!("SELECT {} FROM {only}{}", cols.join(", "), self.qualified())
    }

    /// The next `chunk_rows` rows after the bound, in key order, as COPY text.
    fn read_rows(&mut self) -> Result<Vec<Row>> {
        let after = match &self.bound {
            None => String::new(),
            Some(b) => format!(" WHERE {}", self.compare("<", b)),
        };
        let q = format!(
            "COPY ({}{after} ORDER BY {} LIMIT {}) TO STDOUT",
            self.select(),
            self.key_list("", ""),
            self.chunk_rows
        );
        let (name, rel) = (self.name(), self.rel.clone());
        let reader = self.c.copy_out(q.as_str()).map_err(|e| pg_error(e, &q))?;
        let mut rows = Vec::new();
        for line in BufReader::new(reader).split(b'\n') {
            let line = line.with_context(|| format!("reading {name}"))?;
            rows.push(parse_row(&line, &rel)?);
        }
        Ok(rows)
    }

    /// The whole table, at one snapshot, into a file; the snapshot says which transactions
    /// the read saw.
    fn read_whole(&mut self) -> Result<Whole> {
        let name = self.name();
        self.c
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        // The first statement takes the transaction's snapshot; the COPY reads in it.
        let q = "SELECT pg_catalog.pg_current_snapshot()::text";
        let snap: String = self.c.query_one(q, &[]).map_err(|e| pg_error(e, q))?.get(0);
        let seen = Snap::parse(&snap)?;
        let mut file = tempfile::tempfile().context("creating a file for a backfill")?;
        let q = format!("COPY ({}) TO STDOUT", self.select());
        let mut reader = self.c.copy_out(q.as_str()).map_err(|e| pg_error(e, &q))?;
        let (mut rows, mut buf) = (0u64, vec![0u8; 1 << 16]);
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
            loop {
                let n = reader
                    .read(&mut buf)
                    .with_context(|| format!("reading {name}"))?;
                if n == 0 {
                    break;
                }
                rows += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                w.write_all(&buf[..n])
                    .with_context(|| format!("keeping the rows of {name}"))?;
            }
            w.flush()?;
        }
        drop(reader);
        self.c.batch_execute("COMMIT")?;
        file.rewind()?;
        Ok(Whole {
            seen,
            file,
            rows,
            emptied: false,
            after: Vec::new(),
        })
    }

    /// `ROW(literal key) OP ROW(key columns)`, the key's values as typed literals.
    fn compare(&self, op: &str, key: &[String]) -> String {
        format!(
            "{} {op} ROW({})",
            self.key_literal(key),
            self.key_list("", "")
        )
    }

    fn key_of(&self, row: &[Cell]) -> Result<Key> {
        self.key_at
            .iter()
            .map(|&i| match row.get(i) {
                Some(Cell::Text(t)) => Ok(String::from_utf8_lossy(t).into_owned()),
                _ => bail!("a change of {} without its key's values", self.name()),
            })
            .collect()
    }

    /// A watermark message; `lsn` is where the stream has it.
    pub fn watermark(&mut self, content: &str, txn: Txn, lsn: Lsn) -> Result<Mark> {
        #[derive(serde::Deserialize)]
        struct W<'a> {
            run: &'a str,
            chunk: u64,
            mark: &'a str,
        }
        let w: W =
            serde_json::from_str(content).context("a backfill watermark that does not parse")?;
        let Some(chunk) = self
            .chunk
            .as_mut()
            .filter(|c| w.run == self.run && w.chunk == c.id)
        else {
            return Ok(Mark::Nothing);
        };
        trace(format_args!(
            "mark {} id={} {} lsn={lsn}",
            self.rel.table, w.chunk, w.mark
        ));
        if w.mark == "low" {
            chunk.entered = true;
            return Ok(Mark::Nothing);
        }
        let chunk = self.chunk.take().expect("checked");
        // Ends just before the watermark's position: weir-apply records it as the target's
        // progress, and the next transaction commits at or after it.
        let at = lsn.0.saturating_sub(1);
        if let Some(whole) = chunk.whole {
            self.complete = true;
            self.copied += if whole.emptied { 0 } else { whole.rows };
            let rows = (!whole.emptied).then(|| BufReader::with_capacity(1 << 20, whole.file));
            return Ok(Mark::Chunk(Lines::Whole(Box::new(WholeLines {
                rel: self.rel.clone(),
                txn,
                at,
                end: lsn.0,
                rows: rows.map(|r| r.split(b'\n')),
                after: whole.after.into_iter(),
                state: (false, false),
            }))));
        }
        let (mut lines, mut rows) = (Vec::new(), 0);
        json::begin(&mut lines, &txn, at);
        for (key, row) in &chunk.rows {
            let Some(row) = row else { continue };
            if row.contains(&Cell::Unchanged) {
                bail!(
                    "the backfill of {} lacks a TOASTed value of key ({}) that an update left unchanged",
                    self.name(),
                    key.join(", ")
                );
            }
            let tuple: Vec<Value> = row.iter().map(Cell::value).collect();
            json::snapshot_insert(&mut lines, &txn, at, &self.rel, &tuple);
            rows += 1;
        }
        json::commit(&mut lines, &txn, at, lsn.0);
        trace(format_args!(
            "emit {} id={} rows={rows} at={} bound->{:?}",
            self.rel.table,
            chunk.id,
            Lsn(at),
            chunk.last
        ));
        self.copied += rows;
        match chunk.last {
            Some(last) => self.bound = Some(last),
            // The last chunk: nothing is beyond it.
            None => self.complete = true,
        }
        Ok(Mark::Chunk(Lines::Ready(Some(lines))))
    }

    /// The last chunk went out: the table is all there.
    pub fn done(&self) -> bool {
        self.complete
    }

    /// A truncate of the table by `t`: the chunk's rows are gone as well (a whole read's,
    /// when it did not see `t`).
    pub fn truncate(&mut self, t: &Txn) {
        let Some(chunk) = self.chunk.as_mut() else {
            return;
        };
        match &mut chunk.whole {
            Some(w) if !w.seen.sees(t.xid) => {
                w.emptied = true;
                w.after.clear();
            }
            Some(_) => {}
            None if chunk.entered => chunk.rows.values_mut().for_each(|r| *r = None),
            None => {}
        }
    }

    /// The held changes of one transaction, in order: those that pass are written to `out`,
    /// those between the watermarks in the chunk's range are applied to its rows, the rest
    /// dropped.
    pub fn settle(&mut self, held: Vec<Held>, t: &Txn, out: &mut Vec<u8>) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        if self.keyless {
            self.settle_whole(held, t, out);
            return Ok(());
        }
        let mut keys: Vec<Key> = Vec::new();
        let mut index: HashMap<Key, usize> = HashMap::new();
        let mut key_of = |this: &Self, row: &Option<Row>| -> Result<Option<usize>> {
            let Some(row) = row else { return Ok(None) };
            let k = this.key_of(row)?;
            let n = keys.len();
            Ok(Some(*index.entry(k.clone()).or_insert_with(|| {
                keys.push(k);
                n
            })))
        };
        let mut at = Vec::with_capacity(held.len());
        for h in &held {
            // An update's old row carries its key only when the key changed (or under FULL).
            let new = key_of(self, &h.new)?;
            let old = key_of(self, &h.old)?;
            at.push((new, old.or(new)));
        }
        let classes = self.classify(&keys)?;
        for (h, (new, old)) in held.into_iter().zip(at) {
            let class = |i: Option<usize>| i.map(|i| classes[i]);
            self.settle_one(
                h,
                class(new),
                class(old),
                new.map(|i| &keys[i]),
                old.map(|i| &keys[i]),
                t,
                out,
            )?;
        }
        Ok(())
    }

    /// A table without a key: once copied, every change passes; while its read is under
    /// way, the changes of a transaction it did not see are kept for after its rows; the
    /// rest (seen by the read, or before it) are dropped.
    fn settle_whole(&mut self, held: Vec<Held>, t: &Txn, out: &mut Vec<u8>) {
        if self.complete {
            held.iter().for_each(|h| out.extend_from_slice(&h.line));
        } else if let Some(w) = self.chunk.as_mut().and_then(|c| c.whole.as_mut()) {
            if !w.seen.sees(t.xid) {
                w.after.extend(held);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn settle_one(
        &mut self,
        h: Held,
        new: Option<Class>,
        old: Option<Class>,
        knew: Option<&Key>,
        kold: Option<&Key>,
        t: &Txn,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let entered = self.chunk.as_ref().is_some_and(|c| c.entered);
        let in_chunk = |c: Option<Class>| entered && c == Some(Class::Chunk);
        let copied = |c: Option<Class>| c == Some(Class::Copied);
        let same_key = knew == kold;
        trace(format_args!(
            "change {} xid={} lsn={} {} new={knew:?} {new:?} old={kold:?} {old:?} entered={entered}",
            self.rel.table,
            t.xid,
            Lsn(h.lsn),
            h.action
        ));
        if same_key || h.action != 'U' {
            let (class, key) = if h.action == 'D' {
                (old, kold)
            } else {
                (new, knew)
            };
            if copied(class) {
                out.extend_from_slice(&h.line);
            } else if in_chunk(class) {
                let key = key.expect("classified").clone();
                let rows = &mut self.chunk.as_mut().expect("entered").rows;
                let row = match h.action {
                    'D' => None,
                    'I' => h.new,
                    _ => Some(merge(
                        rows.get(&key).cloned().flatten(),
                        h.new.expect("an update's row"),
                    )),
                };
                rows.insert(key, row);
            }
            return Ok(());
        }
        // An update that moved its row to another key: the old key's side, then the new's.
        let mut prior = None;
        if copied(old) {
            let old_row = h.old.as_ref().expect("a moved row's old key");
            let tuple: Vec<Value> = old_row.iter().map(Cell::value).collect();
            json::change(out, "D", t, h.lsn, &self.rel, None, Some(&tuple));
        } else if in_chunk(old) {
            let rows = &mut self.chunk.as_mut().expect("entered").rows;
            prior = rows
                .insert(kold.expect("classified").clone(), None)
                .flatten();
        }
        // The chunk's read may have seen the row under its new key already (the update
        // committed before the read): its values fill what the update left unchanged.
        if prior.is_none() && in_chunk(new) {
            let rows = &self.chunk.as_ref().expect("entered").rows;
            prior = rows.get(knew.expect("classified")).cloned().flatten();
        }
        let row = merge(prior, h.new.expect("an update's row"));
        if copied(new) {
            if row.contains(&Cell::Unchanged) {
                bail!(
                    "an update of {} moved a row into the copied range with a TOASTed value it left unchanged, which the stream does not carry; run the backfill again from an empty table",
                    self.name()
                );
            }
            let tuple: Vec<Value> = row.iter().map(Cell::value).collect();
            json::change(out, "I", t, h.lsn, &self.rel, Some(&tuple), None);
        } else if in_chunk(new) {
            let rows = &mut self.chunk.as_mut().expect("entered").rows;
            rows.insert(knew.expect("classified").clone(), Some(row));
        }
        Ok(())
    }

    /// Where each key stands: at or below the bound, in the chunk under way (up to its last
    /// key), or beyond; compared by the source server, as the chunks' ORDER BY does.
    fn classify(&mut self, keys: &[Key]) -> Result<Vec<Class>> {
        if self.complete {
            return Ok(vec![Class::Copied; keys.len()]);
        }
        let n = self.key_at.len();
        let cols: Vec<String> = (1..=n).map(|i| format!("k{i}")).collect();
        let row = |prefix: &str| -> String {
            let v: Vec<String> = cols
                .iter()
                .zip(&self.key_types)
                .map(|(c, t)| format!("{prefix}{c}::{t}"))
                .collect();
            format!("ROW({})", v.join(", "))
        };
        let lit = |key: &[String]| self.key_literal(key);
        let copied = match &self.bound {
            None => "false".to_string(),
            Some(b) => format!("{} <= {}", row("u."), lit(b)),
        };
        let in_chunk = match self.chunk.as_ref().map(|c| c.last.as_ref()) {
            Some(None) => "true".to_string(),
            Some(Some(last)) => format!("{} <= {}", row("u."), lit(last)),
            None => "false".to_string(),
        };
        let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
        let q = format!(
            "SELECT CASE WHEN {copied} THEN 0 WHEN {in_chunk} THEN 1 ELSE 2 END \
             FROM unnest({}) WITH ORDINALITY u({}, n) ORDER BY u.n",
            arrays.join(", "),
            cols.join(", ")
        );
        let columns: Vec<Vec<&str>> = (0..n)
            .map(|i| keys.iter().map(|k| k[i].as_str()).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let rows = self
            .c
            .query(q.as_str(), &params)
            .map_err(|e| pg_error(e, &q))?;
        Ok(rows
            .iter()
            .map(|r| match r.get::<_, i32>(0) {
                0 => Class::Copied,
                1 => Class::Chunk,
                _ => Class::Beyond,
            })
            .collect())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Class {
    Copied,
    Chunk,
    Beyond,
}

/// An update's new row, its unchanged TOASTed values taken from the row before it (still
/// unchanged where that is unknown).
fn merge(before: Option<Row>, new: Row) -> Row {
    match before {
        None => new,
        Some(before) => new
            .into_iter()
            .zip(before)
            .map(|(n, b)| if n == Cell::Unchanged { b } else { n })
            .collect(),
    }
}

/// A kept row as the values a change carries.
fn tuple(r: &Option<Row>) -> Option<Vec<Value<'_>>> {
    r.as_ref().map(|r| r.iter().map(Cell::value).collect())
}

/// A row of COPY text as cells, as many as `rel` has columns.
fn parse_row(line: &[u8], rel: &Rel) -> Result<Row> {
    let row = line
        .split(|b| *b == b'\t')
        .map(|f| {
            Ok(match copy_text::field(f)? {
                None => Cell::Null,
                Some(v) => Cell::Text(v.into_owned()),
            })
        })
        .collect::<Result<Row>>()?;
    if row.len() != rel.columns.len() {
        bail!(
            "a row of {}.{} with {} fields",
            rel.schema,
            rel.table,
            row.len()
        );
    }
    Ok(row)
}

/// Whether the table's replica identity is FULL.
fn replica_identity_full(c: &mut postgres::Client, oid: u32) -> Result<bool> {
    let q = "SELECT relreplident = 'f' FROM pg_catalog.pg_class WHERE oid = $1";
    Ok(c.query_one(q, &[&oid]).map_err(|e| pg_error(e, q))?.get(0))
}

/// A change's tuple, kept.
pub fn owned_row(t: &[Value]) -> Row {
    t.iter().map(Cell::of).collect()
}

/// Every table being backfilled, read one at a time in the order given, and the open
/// transaction's changes to them.
pub struct Backfills {
    tables: Vec<Backfill>,
    held: Vec<(u32, Held)>,
    quiet: bool,
}

impl Backfills {
    /// Starts backfilling `names` (every table of the publication when empty), each from
    /// where the target's copy of it stands.
    pub fn start(
        params: &ConnParams,
        names: &[String],
        publication: &str,
        target: &mut postgres::Client,
        chunk_rows: usize,
        quiet: bool,
    ) -> Result<Backfills> {
        let names = match names.is_empty() {
            false => names.to_vec(),
            true => published(params, publication)?,
        };
        let mut all = Backfills::empty(quiet);
        for name in &names {
            all.add(Backfill::start(
                params,
                name,
                publication,
                target,
                chunk_rows,
                false,
            )?);
        }
        Ok(all)
    }

    pub fn empty(quiet: bool) -> Backfills {
        Backfills {
            tables: Vec::new(),
            held: Vec::new(),
            quiet,
        }
    }

    /// One more table, copied after those before it (once, however often it is named).
    pub fn add(&mut self, b: Backfill) {
        if self.holds(b.oid) {
            return;
        }
        if !self.quiet {
            let from = match (b.keyless(), b.bound()) {
                (true, _) if b.done() => {
                    "skipped: it has no key, and the target holds its rows, copied whole by an earlier run".to_string()
                }
                (true, _) => "whole, at one snapshot (it has no key)".to_string(),
                (false, None) => "from its start".to_string(),
                (false, Some(k)) => format!(
                    "after key ({}), the greatest the target holds",
                    k.join(", ")
                ),
            };
            eprintln!("weir-cdc: backfilling {} {from}", b.name());
        }
        self.tables.push(b);
    }

    /// The tables being copied, by oid and name.
    pub fn tables(&self) -> impl Iterator<Item = (u32, String)> + '_ {
        self.tables.iter().map(|b| (b.oid, b.name()))
    }

    pub fn holds(&self, oid: u32) -> bool {
        self.tables.iter().any(|b| b.oid == oid)
    }

    /// A change of table `oid`, kept until its transaction's keys are placed.
    pub fn hold(&mut self, oid: u32, h: Held) {
        self.held.push((oid, h));
    }

    /// The open transaction's held changes, placed table by table, in order.
    pub fn settle(&mut self, t: &Txn, out: &mut Vec<u8>) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        // Each table's changes, in their order, moved out in one pass.
        let mut by_table: Vec<Vec<Held>> = self.tables.iter().map(|_| Vec::new()).collect();
        for (oid, h) in std::mem::take(&mut self.held) {
            if let Some(i) = self.tables.iter().position(|b| b.oid == oid) {
                by_table[i].push(h);
            }
        }
        for (b, mine) in self.tables.iter_mut().zip(by_table) {
            b.settle(mine, t, out)?;
        }
        Ok(())
    }

    /// A truncate of `oids`: changes held before it are placed first.
    pub fn truncating(&mut self, oids: &[u32], t: &Txn, out: &mut Vec<u8>) -> Result<()> {
        if !oids.iter().any(|o| self.holds(*o)) {
            return Ok(());
        }
        self.settle(t, out)?;
        for b in self.tables.iter_mut().filter(|b| oids.contains(&b.oid)) {
            b.truncate(t);
        }
        Ok(())
    }

    /// A watermark: a chunk's lines when it is one's high watermark.
    pub fn watermark(&mut self, content: &str, lsn: Lsn) -> Result<Option<Lines>> {
        let txn = Txn {
            xid: 0,
            commit_time: super::wire::pg_now(),
        };
        for b in &mut self.tables {
            if let Mark::Chunk(lines) = b.watermark(content, txn, lsn)? {
                return Ok(Some(lines));
            }
        }
        Ok(None)
    }

    /// Between transactions: a table whose last chunk went out is done (returned, by oid and
    /// name); the first of the others reads its next chunk when none is under way.
    pub fn step(&mut self) -> Result<Vec<(u32, String)>> {
        let mut done = Vec::new();
        while let Some(b) = self.tables.first().filter(|b| b.done()) {
            if !self.quiet {
                eprintln!(
                    "weir-cdc: backfill of {} complete: {} rows copied in this run",
                    b.name(),
                    b.copied
                );
            }
            done.push((b.oid, b.name()));
            self.tables.remove(0);
        }
        let Some(b) = self.tables.first_mut().filter(|b| b.wants_chunk()) else {
            return Ok(done);
        };
        if let Some(running) = b.read_chunk()?.filter(|_| !self.quiet) {
            eprintln!(
                "weir-cdc: the backfill of {} waits for transactions {} of the source to end; the stream goes on",
                b.name(),
                running.join(", ")
            );
        }
        Ok(done)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// The publication's tables, by name.
fn published(params: &ConnParams, publication: &str) -> Result<Vec<String>> {
    let mut c = params.connect()?;
    let q = "SELECT pg_catalog.format('%I.%I', schemaname, tablename) \
             FROM pg_catalog.pg_publication_tables WHERE pubname = $1 ORDER BY 1";
    let rows = c.query(q, &[&publication]).map_err(|e| pg_error(e, q))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::Snap;

    #[test]
    fn a_snapshot_sees_what_committed_before_it_and_not_what_ran_or_came_after() {
        let s = Snap::parse("100:105:100,103").unwrap();
        assert!(s.sees(99) && s.sees(101) && s.sees(104));
        assert!(!s.sees(100) && !s.sees(103) && !s.sees(105) && !s.sees(200));
        assert!(Snap::parse("7:7:").unwrap().sees(6));
        assert!(Snap::parse("7:7").is_err() && Snap::parse("a:7:").is_err());
    }

    #[test]
    fn a_32_bit_xid_is_placed_in_the_snapshots_epoch() {
        // xmax in epoch 1, just after wraparound: 2^32 + 10.
        let s = Snap::parse("4294967290:4294967306:4294967290").unwrap();
        assert!(s.sees(u32::MAX), "epoch 0's last xid committed before");
        assert!(!s.sees(4294967290u64 as u32), "running when taken");
        assert!(!s.sees(10) && !s.sees(11), "at or after xmax");
        assert!(s.sees(5), "between xmin and xmax, not running");
    }
}
