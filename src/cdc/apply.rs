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

use crate::pg::conn::ConnParams;
use crate::pg::lsn::Lsn;
use crate::pg::sql::{pg_error, quote_ident, quote_literal};
use crate::plumbing::{ExitCode, coded, open_input};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub conninfo: Option<String>,
    pub origin: String,
    pub input: Option<String>,
    pub quiet: bool,
}

/// One line of the stream; fields a kind of line lacks are absent (docs/FORMAT.md, 13).
#[derive(Debug, Deserialize)]
struct Line {
    action: String,
    xid: Option<u32>,
    lsn: Option<String>,
    nextlsn: Option<String>,
    timestamp: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    #[serde(default)]
    columns: Vec<Field>,
    #[serde(default)]
    identity: Vec<Field>,
}

#[derive(Debug, Deserialize)]
struct Field {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    value: serde_json::Value,
}

/// A COPY of inserts into one table, same columns, collected until something else comes.
struct InsertRun {
    target: String,
    data: Vec<u8>,
}

/// Inserts are sent in COPYs of at most this much, whatever the transaction's size, and
/// updates and deletes in batches of at most this much SQL.
const RUN_BYTES: usize = 8 << 20;

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
    run: Option<InsertRun>,
    statements: Statements,
    /// One source TRUNCATE's tables (its lines share a position), applied together.
    truncate: Option<(Lsn, Vec<String>)>,
    /// Whether a target table is partitioned, by its quoted name.
    partitioned: HashMap<String, bool>,
    /// Prepared updates and deletes: their names by SQL.
    prepared: HashMap<String, String>,
    applied: u64,
    skipped: u64,
}

pub fn run(o: &ApplyOptions) -> Result<()> {
    let params = ConnParams::resolve(o.conninfo.as_deref(), "weir-apply")?;
    let mut a = Applier::connect(&params, &o.origin)?;
    let input = open_input(o.input.as_deref())?;
    for (n, line) in std::io::BufReader::new(input).lines().enumerate() {
        let line = line.context("reading the change stream")?;
        if line.is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| {
            coded(
                ExitCode::BadArchive,
                format!("line {}: not a weir-cdc change line ({e})", n + 1),
            )
        })?;
        a.line(l).with_context(|| a.whereabouts())?;
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
    if !o.quiet {
        eprintln!(
            "weir-apply: {} transactions applied, {} already applied skipped; origin {} at {}",
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
        Ok(Applier {
            c,
            origin: origin.to_string(),
            progress: progress
                .as_deref()
                .map(Lsn::parse)
                .transpose()?
                .unwrap_or_default(),
            open: None,
            run: None,
            statements: Statements::default(),
            truncate: None,
            partitioned: HashMap::new(),
            prepared: HashMap::new(),
            applied: 0,
            skipped: 0,
        })
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
        match l.action.as_str() {
            "B" => self.begin(&l),
            "C" => self.commit(&l),
            _ if l.xid.is_none() => Ok(()), // a non-transactional message
            _ if self.open.is_none() => bail!("a {:?} line outside a transaction", l.action),
            _ if skipping => Ok(()),
            "I" => self.insert(&l),
            "U" | "D" => self.update_or_delete(&l),
            "T" => self.truncate(&l),
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
        let commit = Lsn::parse(l.lsn.as_deref().context("a begin line without lsn")?)?;
        // The target holds every transaction that ended at or before its progress; this one's
        // commit record starts before its end, so "commit < progress" is "already applied".
        let skip = commit < self.progress;
        if !skip {
            self.c.batch_execute("BEGIN")?;
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
        let end = Lsn::parse(
            l.nextlsn
                .as_deref()
                .context("a commit line without nextlsn")?,
        )?;
        if t.skip {
            self.skipped += 1;
            return Ok(());
        }
        self.open = Some(t);
        self.flush()?;
        let ts = l
            .timestamp
            .as_deref()
            .context("a commit line without timestamp")?;
        let q = format!(
            "SELECT pg_catalog.pg_replication_origin_xact_setup({}, {}); COMMIT",
            quote_literal(&end.to_string()),
            quote_literal(ts)
        );
        self.c.batch_execute(&q).map_err(|e| pg_error(e, &q))?;
        self.open = None;
        self.progress = end;
        self.applied += 1;
        Ok(())
    }

    fn insert(&mut self, l: &Line) -> Result<()> {
        self.flush_truncate()?;
        self.flush_statements()?;
        let names: Vec<String> = l.columns.iter().map(|f| quote_ident(&f.name)).collect();
        let target = format!("{} ({})", table(l)?, names.join(", "));
        if self.run.as_ref().is_some_and(|r| r.target != target) {
            self.flush()?;
        }
        let run = self.run.get_or_insert_with(|| InsertRun {
            target,
            data: Vec::new(),
        });
        for (i, f) in l.columns.iter().enumerate() {
            if i > 0 {
                run.data.push(b'\t');
            }
            copy_value(&mut run.data, f);
        }
        run.data.push(b'\n');
        if run.data.len() >= RUN_BYTES {
            self.flush_inserts()?;
        }
        Ok(())
    }

    fn update_or_delete(&mut self, l: &Line) -> Result<()> {
        self.flush_truncate()?;
        self.flush_inserts()?;
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
        let (shape, args) = statement(l, &rel, self.partitioned(&rel)?);
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
            .map(|f| format!("{} = {}", f.name, literal(f)))
            .collect();
        let execute = format!("EXECUTE {name}({})", args.join(", "));
        let row = format!("{rel} with {}", key.join(", "));
        self.statements.push(execute, Some(row));
        if self.statements.sql.len() >= BATCH_STATEMENTS || self.statements.bytes >= RUN_BYTES {
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

    fn partitioned(&mut self, rel: &str) -> Result<bool> {
        if let Some(p) = self.partitioned.get(rel) {
            return Ok(*p);
        }
        let q = "SELECT relkind = 'p' FROM pg_catalog.pg_class WHERE oid = $1::text::regclass";
        let p: bool = self
            .c
            .query_one(q, &[&rel])
            .map_err(|e| pg_error(e, q))?
            .get(0);
        self.partitioned.insert(rel.to_string(), p);
        Ok(p)
    }

    fn truncate(&mut self, l: &Line) -> Result<()> {
        self.flush_inserts()?;
        self.flush_statements()?;
        let lsn = Lsn::parse(l.lsn.as_deref().context("a truncate line without lsn")?)?;
        if self.truncate.as_ref().is_some_and(|(at, _)| *at != lsn) {
            self.flush_truncate()?;
        }
        let t = self.truncate.get_or_insert_with(|| (lsn, Vec::new()));
        t.1.push(table(l)?);
        Ok(())
    }

    /// Sends what is collected: the insert run or the truncate.
    fn flush(&mut self) -> Result<()> {
        self.flush_truncate()?;
        self.flush_statements()?;
        self.flush_inserts()
    }

    fn flush_inserts(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let q = format!("COPY {} FROM STDIN", run.target);
        let mut w = self.c.copy_in(q.as_str()).map_err(|e| pg_error(e, &q))?;
        std::io::Write::write_all(&mut w, &run.data).context("sending rows")?;
        w.finish().map_err(|e| pg_error(e, &q))?;
        Ok(())
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

fn table(l: &Line) -> Result<String> {
    let (Some(s), Some(t)) = (&l.schema, &l.table) else {
        bail!("a {:?} line without schema and table", l.action);
    };
    Ok(format!("{}.{}", quote_ident(s), quote_ident(t)))
}

/// An update's or delete's SQL with `$n` for every value, and the values as literals, in
/// order. `=` and IS NULL, which an index serves (IS NOT DISTINCT FROM is never indexed).
/// One row, as the apply worker changes one: under REPLICA IDENTITY FULL a table without a
/// key may hold duplicates. A row address is unique only within one table, so a
/// partitioned target is matched by the identity alone.
fn statement(l: &Line, rel: &str, partitioned: bool) -> (String, Vec<String>) {
    let mut args = Vec::new();
    let mut param = |f: &Field| {
        args.push(literal(f));
        format!("${}", args.len())
    };
    let set: Vec<String> = match l.action.as_str() {
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
        .map(|f| match f.value.is_null() {
            true => format!("{} IS NULL", quote_ident(&f.name)),
            false => format!("{} = {}", quote_ident(&f.name), param(f)),
        })
        .collect();
    let cond = cond.join(" AND ");
    let row = match partitioned {
        false => format!("ctid = (SELECT ctid FROM {rel} WHERE {cond} LIMIT 1)"),
        true => cond,
    };
    let sql = match l.action.as_str() {
        "U" => format!("UPDATE {rel} SET {} WHERE {row}", set.join(", ")),
        _ => format!("DELETE FROM {rel} WHERE {row}"),
    };
    (sql, args)
}

/// A value as the stream has it, in the form the type's input function reads: text output,
/// booleans as JSON booleans, bytea as hex without its `\x` (wal2json's forms).
fn text(f: &Field) -> Option<String> {
    match &f.value {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(if *b { "t" } else { "f" }.into()),
        serde_json::Value::String(s) if f.type_name == "bytea" => Some(format!("\\x{s}")),
        serde_json::Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// An SQL literal, left for the server to type by the column it meets (so type names, which
/// the stream writes as wal2json does, are never parsed here).
fn literal(f: &Field) -> String {
    text(f).map_or("NULL".into(), |s| quote_literal(&s))
}

/// A value in COPY's text format (PostgreSQL docs, COPY, "Text Format").
fn copy_value(out: &mut Vec<u8>, f: &Field) {
    let Some(s) = text(f) else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(type_name: &str, value: serde_json::Value) -> Field {
        Field {
            name: "c".into(),
            type_name: type_name.into(),
            value,
        }
    }

    #[test]
    fn values_reach_copy_and_sql_as_their_types_read_them() {
        let mut out = Vec::new();
        copy_value(&mut out, &field("text", "a\tb\\c\nd".into()));
        out.push(b'|');
        copy_value(&mut out, &field("bytea", "0aff".into()));
        out.push(b'|');
        copy_value(&mut out, &field("boolean", true.into()));
        out.push(b'|');
        copy_value(&mut out, &field("integer", serde_json::Value::Null));
        assert_eq!(out, b"a\\tb\\\\c\\nd|\\\\x0aff|t|\\N");
        assert_eq!(literal(&field("text", "it's".into())), "'it''s'");
        assert_eq!(literal(&field("bytea", "00".into())), "'\\x00'");
        assert_eq!(literal(&field("numeric", serde_json::Value::Null)), "NULL");
    }
}
