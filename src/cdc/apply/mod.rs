//! `weir-apply`: weir-cdc's JSON lines applied to a PostgreSQL database, one source
//! transaction per target transaction, on one connection, in the stream's order.
//!
//! Exactly once in effect: each transaction records the source position it ends at in a
//! replication origin (`pg_replication_origin_xact_setup`, in the same commit), as
//! PostgreSQL's own apply worker does (src/backend/replication/logical/worker.c,
//! apply_handle_commit). On start, the origin's progress says where the target is; a
//! transaction that ends at or before it is read and skipped, so a replay after a crash
//! anywhere in the pipeline changes nothing. weir-cdc `--confirm-from` reads the same progress,
//! so the slot never passes what the target made durable.
//!
//! Runs of inserts into one table go through COPY; updates and deletes find their row by the
//! replica identity the stream carries (only the columns sent are set: an unchanged TOAST
//! value is not sent); consecutive truncates of one source TRUNCATE are one statement, so a
//! TRUNCATE ... CASCADE of tables that reference each other applies. The session runs with
//! `session_replication_role = replica`, as the apply worker does: ordinary triggers and
//! foreign-key checks stay off, since the source already checked them.

use super::ddl;
use super::line::{Field, Line, Reader};
use super::verify;
use crate::pg::conn::ConnParams;
use crate::pg::lsn::Lsn;
use crate::pg::sql::{pg_error, quote_ident, quote_literal};
use crate::plumbing::{ExitCode, coded, open_input};
use anyhow::{Context, Result, bail};
use check::Check;
use dead_letter::DeadLetter;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};

mod check;
mod dead_letter;
mod metrics;

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub conninfo: Option<String>,
    pub origin: String,
    pub input: Option<String>,
    /// Run the DDL messages of weir-cdc --track-ddl.
    pub apply_ddl: bool,
    /// Pass over DDL messages at or before this position.
    pub skip_ddl_through: Option<Lsn>,
    /// `--on-error dead-letter=FILE`: where transactions the target refuses go.
    pub dead_letter: Option<std::path::PathBuf>,
    /// Connections that read the target for a check.
    pub jobs: usize,
    /// Where to write the Prometheus textfile ([`metrics`]).
    pub metrics: Option<std::path::PathBuf>,
    pub quiet: bool,
}

/// Updates and deletes are sent in batches of at most this much SQL.
const BATCH_BYTES: usize = 8 << 20;

/// A run of inserts goes to the server in pieces of this much while the next rows are read,
/// so the server's work on one piece overlaps the reading of the next.
const SEND_BYTES: usize = 256 << 10;

/// Updates and deletes sent in one round trip at most.
const BATCH_STATEMENTS: usize = 1000;

/// Updates and deletes waiting to be sent, with the row each must find (for the error;
/// none for a PREPARE).
#[derive(Default)]
struct Statements {
    sql: Vec<String>,
    rows: Vec<Option<String>>,
    bytes: usize,
}

impl Statements {
    fn push(&mut self, sql: String, row: Option<String>) {
        self.bytes += sql.len();
        self.sql.push(sql);
        self.rows.push(row);
    }
}

/// A target table as updates and deletes must address it.
struct Target {
    partitioned: bool,
    /// Columns whose type has no `=` of its own (json, point, xml; arrays, domains and enums
    /// have theirs only through a polymorphic one): a FULL identity compares them by their
    /// text output, which the stream carries as it is.
    by_text: HashSet<String>,
}

impl Target {
    fn read(c: &mut postgres::Client, rel: &str) -> Result<Target> {
        let q = "SELECT relkind = 'p' FROM pg_catalog.pg_class WHERE oid = $1::text::regclass";
        let partitioned: bool = c.query_one(q, &[&rel]).map_err(|e| pg_error(e, q))?.get(0);
        let q = "SELECT attname::text FROM pg_catalog.pg_attribute a \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped \
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_operator o WHERE o.oprname = '=' \
                                   AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)";
        let rows = c.query(q, &[&rel]).map_err(|e| pg_error(e, q))?;
        Ok(Target {
            partitioned,
            by_text: rows.iter().map(|r| r.get(0)).collect(),
        })
    }
}

/// The transaction being applied (or skipped).
struct Open {
    xid: u32,
    /// The commit's position, from the begin line.
    commit: Lsn,
    skip: bool,
}

struct Applier {
    c: postgres::Client,
    origin: String,
    /// The end of the last transaction the target holds.
    progress: Lsn,
    open: Option<Open>,
    statements: Statements,
    /// One source TRUNCATE's tables (its lines share a position), applied together.
    truncate: Option<(Lsn, Vec<String>)>,
    /// What statements need to know of a target table, by its quoted name.
    targets: HashMap<String, Target>,
    /// Prepared updates and deletes: their names by SQL.
    prepared: HashMap<String, String>,
    applied: u64,
    skipped: u64,
    /// `--apply-ddl`: where the DDL messages of the open transaction stand; `None`: DDL
    /// messages are passed over.
    ddl: Option<ddl::Replay>,
    skip_ddl_through: Lsn,
    /// A DDL message was passed over without --apply-ddl (said once).
    ddl_unapplied: bool,
    /// `--on-error dead-letter=FILE`, and how many transactions went there.
    dead: Option<DeadLetter>,
    dead_lettered: u64,
    /// The commit line of the open transaction, once read: its end and commit time.
    ending: Option<(Lsn, String)>,
    /// For a check's connections to the target.
    params: ConnParams,
    jobs: usize,
    quiet: bool,
    /// The check under way ([`check`]).
    check: Option<Check>,
    metrics: Option<metrics::Metrics>,
    /// The source commit time of the last transaction applied.
    last_commit: Option<String>,
}

pub fn run(o: &ApplyOptions) -> Result<()> {
    let params = ConnParams::resolve(o.conninfo.as_deref(), "weir-apply")?;
    let mut a = Applier::connect(&params, &o.origin)?;
    (a.jobs, a.quiet) = (o.jobs.max(1), o.quiet);
    a.metrics = o.metrics.clone().map(metrics::Metrics::new);
    a.ddl = o.apply_ddl.then(ddl::Replay::default);
    a.skip_ddl_through = o.skip_ddl_through.unwrap_or_default();
    a.dead = o.dead_letter.clone().map(DeadLetter::new).transpose()?;
    let mut lines = Reader::new(std::io::BufReader::new(open_input(o.input.as_deref())?));
    while lines.advance()? {
        if let Some(d) = &mut a.dead {
            if a.open.is_none() {
                d.reset()?;
            }
            d.keep(lines.raw())?;
        }
        let l = lines.line()?;
        let result = if l.action == "I" && a.applying() {
            drop(l);
            a.insert_run(&mut lines)
        } else {
            a.line(l)
        };
        match result {
            Ok(()) => {}
            Err(e) if a.dead.is_some() && a.applying() && DeadLetter::takes(&e) => {
                let e = e.context(a.whereabouts());
                a.dead_letter(e, &mut lines)?;
            }
            // Between transactions (a check's verdict, a stray line) there is nothing to add.
            Err(e) if a.open.is_none() => return Err(e),
            Err(e) => return Err(e.context(a.whereabouts())),
        }
    }
    if let Some(t) = &a.open {
        let _ = a.c.batch_execute("ROLLBACK");
        return Err(coded(
            ExitCode::BadArchive,
            format!(
                "the stream ended inside transaction {} (commit LSN {}): nothing of it was applied",
                t.xid, t.commit
            ),
        ));
    }
    if let Some(c) = &a.check {
        bail!(
            "the stream ended before the check at {} was complete (did weir-cdc stop early?)",
            c.at
        );
    }
    a.write_metrics(true)?;
    if !o.quiet {
        let dead = match &a.dead {
            Some(d) => format!(
                ", {} refused and written to {}",
                a.dead_lettered,
                d.path.display()
            ),
            None => String::new(),
        };
        eprintln!(
            "weir-apply: {} transactions applied, {} already applied skipped{dead}; origin {} at {}",
            a.applied, a.skipped, a.origin, a.progress
        );
    }
    Ok(())
}

impl Applier {
    fn connect(params: &ConnParams, origin: &str) -> Result<Applier> {
        let mut c = params.connect()?;
        c.batch_execute("SET session_replication_role = replica")
            .map_err(|e| pg_error(e, "SET session_replication_role = replica"))
            .context("weir-apply needs a superuser (or a role allowed to set session_replication_role) on the target")?;
        let q = "SELECT pg_catalog.pg_replication_origin_create($1::text) \
                 WHERE pg_catalog.pg_replication_origin_oid($1::text) IS NULL";
        c.execute(q, &[&origin]).map_err(|e| pg_error(e, q))?;
        take_origin(&mut c, origin)?;
        let q = "SELECT pg_catalog.pg_replication_origin_session_progress(false)::text";
        let progress: Option<String> = c.query_one(q, &[]).map_err(|e| pg_error(e, q))?.get(0);
        super::trace(format_args!("apply origin={origin} progress={progress:?}"));
        Ok(Applier {
            c,
            origin: origin.to_string(),
            progress: progress
                .as_deref()
                .map(Lsn::parse)
                .transpose()?
                .unwrap_or_default(),
            open: None,
            statements: Statements::default(),
            truncate: None,
            targets: HashMap::new(),
            prepared: HashMap::new(),
            applied: 0,
            skipped: 0,
            ddl: None,
            skip_ddl_through: Lsn::ZERO,
            ddl_unapplied: false,
            dead: None,
            dead_lettered: 0,
            ending: None,
            params: params.clone(),
            jobs: 1,
            quiet: false,
            check: None,
            metrics: None,
            last_commit: None,
        })
    }

    /// The metrics file, when asked for and due (or `now`).
    fn write_metrics(&mut self, now: bool) -> Result<()> {
        let Some(m) = &mut self.metrics else {
            return Ok(());
        };
        let counts = metrics::Counts {
            origin: &self.origin,
            applied: self.applied,
            skipped: self.skipped,
            dead_lettered: self.dead_lettered,
            progress: self.progress,
            last_commit: self.last_commit.as_deref(),
        };
        m.write(&counts, now)
    }

    /// Names the transaction an error happened in.
    fn whereabouts(&self) -> String {
        match &self.open {
            Some(t) => format!(
                "applying source transaction {} (commit LSN {})",
                t.xid, t.commit
            ),
            None => "applying the change stream".into(),
        }
    }

    fn line(&mut self, l: Line) -> Result<()> {
        let skipping = self.open.as_ref().is_some_and(|t| t.skip);
        match l.action {
            "B" => self.begin(&l),
            "C" => self.commit(&l),
            "M" if l.xid.is_none() && l.prefix.as_deref() == Some(verify::PREFIX) => self.check(&l),
            _ if l.xid.is_none() => Ok(()), // a non-transactional message
            _ if self.open.is_none() => bail!("a {:?} line outside a transaction", l.action),
            _ if skipping => Ok(()),
            "I" => bail!("an insert outside the run that reads it"),
            "U" | "D" => self.update_or_delete(&l),
            "T" => self.truncate(&l),
            "M" if l.prefix.as_deref() == Some(ddl::PREFIX) => self.ddl(&l),
            "M" => Ok(()),
            a => bail!("unknown action {a:?}"),
        }
    }

    fn begin(&mut self, l: &Line) -> Result<()> {
        if let Some(t) = &self.open {
            bail!(
                "transaction {} begins inside transaction {}",
                l.xid.unwrap_or(0),
                t.xid
            );
        }
        let commit = Lsn::parse(l.lsn.context("a begin line without lsn")?)?;
        // The target holds every transaction that ended at or before its progress; this one's
        // commit record starts before its end, so "commit < progress" is "already applied".
        let skip = commit < self.progress;
        super::trace(format_args!(
            "apply xid={} commit={commit} progress={} skip={skip}",
            l.xid.unwrap_or(0),
            self.progress
        ));
        if !skip {
            self.c.batch_execute("BEGIN")?;
        }
        if let Some(r) = &mut self.ddl {
            r.reset();
        }
        self.open = Some(Open {
            xid: l.xid.context("a begin line without xid")?,
            commit,
            skip,
        });
        Ok(())
    }

    fn commit(&mut self, l: &Line) -> Result<()> {
        let t = self.open.take().context("a commit outside a transaction")?;
        let end = Lsn::parse(l.nextlsn.context("a commit line without nextlsn")?)?;
        if t.skip {
            self.skipped += 1;
            return Ok(());
        }
        self.open = Some(t);
        let ts = l.timestamp.context("a commit line without timestamp")?;
        self.ending = Some((end, ts.to_string()));
        self.flush()?;
        self.commit_at(end, ts)?;
        (self.open, self.ending) = (None, None);
        self.progress = end;
        self.applied += 1;
        self.last_commit = Some(ts.to_string());
        self.write_metrics(false)
    }

    /// Commits the target's open transaction with the source position it ends at (`end`,
    /// committed at `ts`) recorded in the replication origin, in the same commit.
    fn commit_at(&mut self, end: Lsn, ts: &str) -> Result<()> {
        let q = format!(
            "SELECT pg_catalog.pg_replication_origin_xact_setup({}, {}); COMMIT",
            quote_literal(&end.to_string()),
            quote_literal(ts)
        );
        self.c.batch_execute(&q).map_err(|e| pg_error(e, &q))
    }

    /// The open transaction failed at the target: rolled back, its lines (the rest read from
    /// the stream) written to the dead-letter file, and its end recorded as the target's
    /// progress in a transaction of its own, so the stream goes on and a replay skips it.
    fn dead_letter(&mut self, err: anyhow::Error, lines: &mut Reader<impl BufRead>) -> Result<()> {
        let t = self
            .open
            .as_ref()
            .context("a failure outside a transaction")?;
        let (xid, commit) = (t.xid, t.commit);
        self.c.batch_execute("ROLLBACK")?;
        // A PREPARE of the failed batch may or may not have happened.
        self.c.batch_execute("DEALLOCATE ALL")?;
        self.prepared.clear();
        (self.statements, self.truncate) = (Statements::default(), None);
        let (end, ts) = match self.ending.take() {
            Some(e) => e,
            None => self.rest_of(lines, xid)?,
        };
        let dead = self.dead.as_mut().context("no dead-letter file")?;
        dead.write()?;
        let path = dead.path.display().to_string();
        self.c.batch_execute("BEGIN")?;
        self.commit_at(end, &ts)?;
        eprintln!(
            "weir-apply: source transaction {xid} (commit LSN {commit}) refused by the target and written to {path}: {}",
            crate::plumbing::one_line(&format!("{err:#}"))
        );
        self.open = None;
        self.progress = end;
        self.dead_lettered += 1;
        self.write_metrics(false)
    }

    /// Reads the failed transaction's remaining lines into the dead-letter journal; its end
    /// and commit time from its commit line.
    fn rest_of(&mut self, lines: &mut Reader<impl BufRead>, xid: u32) -> Result<(Lsn, String)> {
        while lines.advance()? {
            if let Some(d) = &mut self.dead {
                d.keep(lines.raw())?;
            }
            let l = lines.line()?;
            if l.action == "C" {
                let end = Lsn::parse(l.nextlsn.context("a commit line without nextlsn")?)?;
                let ts = l.timestamp.context("a commit line without timestamp")?;
                return Ok((end, ts.to_string()));
            }
        }
        Err(coded(
            ExitCode::BadArchive,
            format!(
                "the stream ended inside transaction {xid}, which the target refused: nothing of it was applied or written"
            ),
        ))
    }

    /// A DDL statement of the source, run where it was in its transaction, under the source
    /// session's search_path; statements prepared before it are forgotten (their tables'
    /// columns may have changed).
    fn ddl(&mut self, l: &Line) -> Result<()> {
        let at = Lsn::parse(l.lsn.context("a message without lsn")?)?;
        let d = ddl::Ddl::parse(l.content.as_deref().context("a message without content")?)?;
        let Some(replay) = &mut self.ddl else {
            if !std::mem::replace(&mut self.ddl_unapplied, true) {
                eprintln!(
                    "weir-apply: passing over DDL from the source ({} at {at}): --apply-ddl runs it",
                    d.tag
                );
            }
            return Ok(());
        };
        if at <= self.skip_ddl_through {
            return Ok(());
        }
        let hint = |e: anyhow::Error| {
            anyhow::anyhow!(
                "DDL at {at}: {e:#}; apply it to the target by hand, then run weir-apply again with --skip-ddl-through {at}"
            )
        };
        let statement = replay.statement(&d).map_err(hint)?;
        self.flush()?;
        let q = "SELECT pg_catalog.set_config('search_path', $1, true)";
        self.c
            .execute(q, &[&d.search_path])
            .map_err(|e| pg_error(e, q))?;
        self.c
            .batch_execute(&statement)
            .map_err(|e| hint(pg_error(e, &statement)))?;
        // Back to the session's own search_path (RESET takes the value it started with).
        let q = "RESET search_path; DEALLOCATE ALL";
        self.c.batch_execute(q).map_err(|e| pg_error(e, q))?;
        self.prepared.clear();
        self.targets.clear();
        Ok(())
    }

    /// A check's message: its point starts reading the target as it is now, its tables'
    /// chunks are kept, its end compares.
    fn check(&mut self, l: &Line) -> Result<()> {
        let content = l.content.as_deref().context("a message without content")?;
        match verify::Notice::parse(content)? {
            verify::Notice::Point {
                at,
                chunk_rows,
                tables,
            } => {
                let at = Lsn::parse(&at)?;
                if self.progress > at {
                    eprintln!(
                        "weir-apply: passing over the check at {at}: the target holds transactions up to {}, past it",
                        self.progress
                    );
                    return Ok(());
                }
                if self.check.is_some() {
                    bail!("a check at {at} begins before the last one ended");
                }
                let c = Check::begin(&self.params, at, chunk_rows, tables, self.jobs)?;
                self.check = Some(c);
            }
            verify::Notice::Table { index, chunks, .. } => {
                if let Some(c) = &mut self.check {
                    c.source(index, chunks)?;
                }
            }
            verify::Notice::End { .. } => {
                if let Some(c) = self.check.take() {
                    c.finish(self.quiet)?;
                }
            }
        }
        Ok(())
    }

    /// Inside a transaction that is applied (not skipped).
    fn applying(&self) -> bool {
        self.open.as_ref().is_some_and(|t| !t.skip)
    }

    /// The insert `lines` is on and those after it into the same table and columns, as one
    /// COPY sent while it is read; stops before the first line that is something else.
    fn insert_run(&mut self, lines: &mut Reader<impl BufRead>) -> Result<()> {
        self.flush()?;
        let first = lines.line()?;
        let (schema, table) = names(&first)?;
        let (schema, table) = (schema.to_string(), table.to_string());
        let columns: Vec<String> = first.columns.iter().map(|f| f.name.to_string()).collect();
        let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let q = format!(
            "COPY {}.{} ({}) FROM STDIN",
            quote_ident(&schema),
            quote_ident(&table),
            quoted.join(", ")
        );
        let mut buf = Vec::with_capacity(SEND_BYTES + (64 << 10));
        row(&mut buf, &first);
        drop(first);
        let mut w = self.c.copy_in(q.as_str()).map_err(|e| pg_error(e, &q))?;
        while lines.advance()? {
            let l = lines.line()?;
            let same = l.action == "I"
                && l.schema.as_deref() == Some(schema.as_str())
                && l.table.as_deref() == Some(table.as_str())
                && l.columns.len() == columns.len()
                && l.columns.iter().zip(&columns).all(|(f, c)| &*f.name == c);
            if !same {
                lines.unread();
                break;
            }
            if let Some(d) = &mut self.dead {
                d.keep(lines.raw())?;
            }
            row(&mut buf, &l);
            if buf.len() >= SEND_BYTES {
                w.write_all(&buf).context("sending rows")?;
                buf.clear();
            }
        }
        w.write_all(&buf).context("sending rows")?;
        w.finish().map_err(|e| pg_error(e, &q))?;
        Ok(())
    }

    fn update_or_delete(&mut self, l: &Line) -> Result<()> {
        self.flush_truncate()?;
        let rel = table(l)?;
        if l.identity.is_empty() {
            bail!(
                "{} of {rel} without its replica identity: give the source table a primary key or REPLICA IDENTITY FULL",
                if l.action == "U" {
                    "an update"
                } else {
                    "a delete"
                }
            );
        }
        let (shape, args) = statement(l, &rel, self.target(&rel)?);
        // Each shape (table, columns set, key columns, which keys are NULL) is prepared once
        // and executed with literals: the server plans it once, not once a row.
        let name = match self.prepared.get(&shape) {
            Some(name) => name.clone(),
            None => {
                let name = format!("weir_{}", self.prepared.len());
                let prepare = format!("PREPARE {name} AS {shape}");
                self.statements.push(prepare, None);
                self.prepared.insert(shape, name.clone());
                name
            }
        };
        let key: Vec<String> = l
            .identity
            .iter()
            .map(|f| format!("{} = {}", &*f.name, literal(f)))
            .collect();
        let execute = format!("EXECUTE {name}({})", args.join(", "));
        let row = format!("{rel} with {}", key.join(", "));
        self.statements.push(execute, Some(row));
        if self.statements.sql.len() >= BATCH_STATEMENTS || self.statements.bytes >= BATCH_BYTES {
            self.flush_statements()?;
        }
        Ok(())
    }

    /// Sends the queued updates and deletes in one round trip, each of which must have
    /// changed exactly one row.
    fn flush_statements(&mut self) -> Result<()> {
        if self.statements.sql.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.statements);
        let all = b.sql.join(";\n");
        let replies = self.c.simple_query(&all).map_err(|e| {
            let n = b.sql.len();
            pg_error(
                e,
                &format!("one of {n} updates and deletes, the first: {}", b.sql[0]),
            )
        })?;
        let counts = replies.iter().filter_map(|m| match m {
            postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        });
        for (n, row) in counts.zip(&b.rows) {
            if let Some(row) = row.as_ref().filter(|_| n != 1) {
                bail!("the target has no row of {row}");
            }
        }
        Ok(())
    }

    fn target(&mut self, rel: &str) -> Result<&Target> {
        if !self.targets.contains_key(rel) {
            let t = Target::read(&mut self.c, rel)?;
            self.targets.insert(rel.to_string(), t);
        }
        Ok(&self.targets[rel])
    }

    fn truncate(&mut self, l: &Line) -> Result<()> {
        self.flush_statements()?;
        let lsn = Lsn::parse(l.lsn.context("a truncate line without lsn")?)?;
        if self.truncate.as_ref().is_some_and(|(at, _)| *at != lsn) {
            self.flush_truncate()?;
        }
        let t = self.truncate.get_or_insert_with(|| (lsn, Vec::new()));
        t.1.push(table(l)?);
        Ok(())
    }

    /// Sends what is collected: the truncate or the updates and deletes.
    fn flush(&mut self) -> Result<()> {
        self.flush_truncate()?;
        self.flush_statements()
    }

    fn flush_truncate(&mut self) -> Result<()> {
        if let Some((_, tables)) = self.truncate.take() {
            let q = format!("TRUNCATE {}", tables.join(", "));
            self.c.batch_execute(&q).map_err(|e| pg_error(e, &q))?;
        }
        Ok(())
    }
}

/// Makes this session the origin's, waiting a few seconds while another session holds it: a
/// weir-apply killed a moment ago leaves a server process that lets the origin go only as it
/// notices its client is gone.
fn take_origin(c: &mut postgres::Client, origin: &str) -> Result<()> {
    let q = "SELECT pg_catalog.pg_replication_origin_session_setup($1::text)";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match c.execute(q, &[&origin]) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| d.message().contains("is already active"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(pg_error(e, q)).with_context(|| {
                    format!("taking replication origin {origin} (is another weir-apply using it?)")
                });
            }
        }
    }
}

fn names<'l>(l: &'l Line) -> Result<(&'l str, &'l str)> {
    match (&l.schema, &l.table) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => bail!("a {:?} line without schema and table", l.action),
    }
}

fn table(l: &Line) -> Result<String> {
    let (s, t) = names(l)?;
    Ok(format!("{}.{}", quote_ident(s), quote_ident(t)))
}

/// One insert's columns as a row of COPY text.
fn row(out: &mut Vec<u8>, l: &Line) {
    for (i, f) in l.columns.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        f.copy_value(out);
    }
    out.push(b'\n');
}

/// An update's or delete's SQL with `$n` for every value, and the values as literals, in
/// order. `=` and IS NULL, which an index serves (IS NOT DISTINCT FROM is never indexed).
/// One row, as the apply worker changes one: under REPLICA IDENTITY FULL a table without a
/// key may hold duplicates. A row address is unique only within one table, so a
/// partitioned target is matched by the identity alone.
fn statement(l: &Line, rel: &str, target: &Target) -> (String, Vec<String>) {
    let mut args = Vec::new();
    let mut param = |f: &Field| {
        args.push(literal(f));
        format!("${}", args.len())
    };
    let set: Vec<String> = match l.action {
        "U" => l
            .columns
            .iter()
            .map(|f| format!("{} = {}", quote_ident(&f.name), param(f)))
            .collect(),
        _ => Vec::new(),
    };
    let cond: Vec<String> = l
        .identity
        .iter()
        .map(|f| match f.is_null() {
            true => format!("{} IS NULL", quote_ident(&f.name)),
            false if target.by_text.contains(&*f.name) => {
                format!("{}::text = {}::text", quote_ident(&f.name), param(f))
            }
            false => format!("{} = {}", quote_ident(&f.name), param(f)),
        })
        .collect();
    let cond = cond.join(" AND ");
    let row = match target.partitioned {
        false => format!("ctid = (SELECT ctid FROM {rel} WHERE {cond} LIMIT 1)"),
        true => cond,
    };
    let sql = match l.action {
        "U" => format!("UPDATE {rel} SET {} WHERE {row}", set.join(", ")),
        _ => format!("DELETE FROM {rel} WHERE {row}"),
    };
    (sql, args)
}

/// An SQL literal, left for the server to type by the column it meets (so type names, which
/// the stream writes as wal2json does, are never parsed here).
fn literal(f: &Field) -> String {
    f.text().map_or("NULL".into(), |s| quote_literal(&s))
}
