//! weir-mask on a change stream: weir-cdc's JSON lines (docs/FORMAT.md, 13) through the same
//! compiled rules as an archive, so a key gives the same pseudonym in a masked dump and in a
//! masked stream, and a masked dump restored plus the masked stream applied equals a masked
//! copy of the final source.
//!
//! The rules compile against the manifest of an archive of the source (`--schema-from`; a
//! schema-only `weir-extract -s` is enough): it has the tables, their columns and types, and
//! the foreign keys that keyed rules follow. Each insert, update and delete is masked by
//! [`TablePlan::mask_row`], its `identity` (the old key) too, so a masked key still finds its
//! row downstream. Begin, commit, message and truncate lines pass as they are, so positions
//! keep flowing to `--confirm-from`; only `weir-cdc --verify`'s messages are dropped (a
//! masked target never equals its source).
//!
//! Row filters (`keep_rows`, `drop_rows`) decide per change: an insert the filter drops is
//! dropped; an update is judged on its old values (from `identity`) and its new ones, so a row
//! that leaves the filter becomes a delete downstream and one that enters it an insert; a
//! delete is judged on `identity`. Values a filter reads must be in the line: for updates and
//! deletes, in the replica identity (say REPLICA IDENTITY FULL), or weir-mask stops and says so.
//!
//! Routing rules ([`Route`](super::rules::Route), pg_flo's kinds) then shape what goes out:
//! `operations` drops kinds of change (judged on the action written, after a filter made an
//! update an insert or a delete), `exclude` leaves columns out, `rename` and `rename_columns`
//! give the names downstream; a truncate of a routed table is dropped or renamed likewise.

use super::row::RowBuf;
use super::rules::{Plan, TablePlan};
use crate::archive::{Manifest, Table};
use crate::cdc::json;
use crate::cdc::line::{Field, Line, Reader, Value};
use crate::cdc::verify;
use crate::plumbing::{ExitCode, Output, coded};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, Write};

/// Masks the change stream `input` into `out`.
pub fn run(plan: &Plan, manifest: &Manifest, input: impl BufRead, mut out: Output) -> Result<()> {
    notes(manifest, plan);
    let s = Streamer::new(manifest, plan);
    let mut lines = Reader::new(input);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut r = Scratch::default();
    let mut checks_dropped = false;
    while lines.advance()? {
        let l = lines.line()?;
        match s.table(&l)? {
            // A check compares unmasked rows: downstream of masking it could only fail.
            None if l.action == "M" && l.prefix.as_deref() == Some(verify::PREFIX) => {
                if !std::mem::replace(&mut checks_dropped, true) {
                    eprintln!(
                        "weir-mask: dropping weir-cdc --verify's messages: a masked target cannot equal its source"
                    );
                }
            }
            None => {
                buf.extend_from_slice(lines.raw());
                buf.push(b'\n');
            }
            Some(t) if l.action == "T" => t.truncate(&l, &mut buf)?,
            Some(t) => t.change(&l, &mut r, &mut buf).with_context(|| {
                format!(
                    "table {}, source transaction {} at {}",
                    t.table.qualified(),
                    l.xid.unwrap_or(0),
                    l.lsn.unwrap_or("?")
                )
            })?,
        }
        if buf.len() >= 1 << 20 {
            out.write_all(&buf).context("writing the output")?;
            buf.clear();
        }
    }
    out.write_all(&buf).context("writing the output")?;
    out.finish().context("writing the output")
}

/// Says, before the first line, which row filters read a column outside the table's primary
/// key: updates and deletes carry such a column only under REPLICA IDENTITY FULL (without
/// it, weir-mask stops at the first one that lacks it).
fn notes(m: &Manifest, plan: &Plan) {
    for t in &m.tables {
        let Some(p) = plan.tables.get(&t.id) else {
            continue;
        };
        let key = |c: &str| {
            t.unique
                .iter()
                .any(|k| k.kind == "primary" && k.columns.iter().any(|k| k == c))
        };
        for c in p.keep.iter().chain(&p.drop) {
            let name = &t.columns[c.column].name;
            if !key(name) {
                eprintln!(
                    "{}: table {}: the row filter reads {name}, outside the primary key: updates and deletes carry it only under REPLICA IDENTITY FULL",
                    crate::plumbing::program(),
                    t.qualified()
                );
            }
        }
    }
}

/// The rules, by the names the stream uses.
struct Streamer<'p> {
    /// By schema, then by table.
    tables: HashMap<&'p str, HashMap<&'p str, Masked<'p>>>,
}

/// One table of the stream: its columns by name and what its rules do.
struct Masked<'p> {
    table: &'p Table,
    plan: Option<&'p TablePlan>,
    index: HashMap<&'p str, usize>,
    /// The columns the rules rewrite (the others are written as the line has them).
    rewritten: Vec<bool>,
}

impl<'p> Streamer<'p> {
    fn new(m: &'p Manifest, plan: &'p Plan) -> Self {
        let mut tables: HashMap<&str, HashMap<&str, Masked>> = HashMap::new();
        for t in &m.tables {
            let index = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_str(), i))
                .collect();
            let mut rewritten = Vec::new();
            let plan = plan.tables.get(&t.id);
            if let Some(p) = plan {
                p.rewritten_into(t.columns.len(), &mut rewritten);
            }
            let masked = Masked {
                table: t,
                plan,
                index,
                rewritten,
            };
            tables
                .entry(t.schema.as_str())
                .or_default()
                .insert(t.name.as_str(), masked);
        }
        Streamer { tables }
    }

    /// The table an insert, update, delete or truncate changes, when its rules change,
    /// filter or route anything; `None` for every other line, which passes as it is.
    fn table(&self, l: &Line) -> Result<Option<&Masked<'p>>> {
        if !matches!(l.action, "I" | "U" | "D" | "T") {
            return Ok(None);
        }
        let (Some(schema), Some(table)) = (&l.schema, &l.table) else {
            bail!("a {:?} line without schema and table", l.action);
        };
        let found = self.tables.get(&**schema).and_then(|s| s.get(&**table));
        if l.action == "T" {
            // A truncate carries no values: unknown tables' pass as they are.
            return Ok(found.filter(|t| t.plan.is_some_and(|p| !p.route.is_empty())));
        }
        let Some(t) = found else {
            // Passing it unmasked could leak what a rule by pattern would have masked.
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "table {schema}.{table} is not in the --schema-from archive: take a new one (weir-extract -s) that has it"
                ),
            ));
        };
        if t.table.relkind == "p" {
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "the stream names partitioned table {schema}.{table} (publish_via_partition_root): weir-mask masks partitions; publish them"
                ),
            ));
        }
        Ok(t.plan.filter(|p| p.changes_lines()).map(|_| t))
    }
}

/// Reused per line: the row's values in the table's column order, which columns the line
/// carried, and which were written out.
#[derive(Default)]
struct Scratch {
    row: RowBuf,
    present: Vec<bool>,
    written: Vec<bool>,
}

impl Masked<'_> {
    /// The names downstream: the rules' `rename`, or the table's own.
    fn names<'a>(&'a self, plan: &'a TablePlan) -> (&'a str, &'a str) {
        match &plan.route.rename {
            Some((s, t)) => (s, t),
            None => (&self.table.schema, &self.table.name),
        }
    }

    /// The table's column `name`, the `k`-th field of a line: weir-cdc writes a table's
    /// columns in order, so position `k` is tried before the map.
    fn column(&self, k: usize, name: &str) -> Option<usize> {
        match self.table.columns.get(k) {
            Some(c) if c.name == name => Some(k),
            _ => self.index.get(name).copied(),
        }
    }

    /// A truncate of a routed table: dropped unless its operations take it, renamed.
    fn truncate(&self, l: &Line, out: &mut Vec<u8>) -> Result<()> {
        let plan = self.plan.expect("only routed tables come here");
        if !plan.route.passes("T") {
            return Ok(());
        }
        self.head(l, "T", plan, out)?;
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// A line's start, up to its table's name.
    fn head(&self, l: &Line, action: &str, plan: &TablePlan, out: &mut Vec<u8>) -> Result<()> {
        let _ = write!(
            out,
            "{{\"action\":\"{action}\",\"xid\":{},\"timestamp\":",
            l.xid.context("a change without xid")?
        );
        json::string(out, l.timestamp.context("a change without timestamp")?);
        out.extend_from_slice(b",\"lsn\":");
        json::string(out, l.lsn.context("a change without lsn")?);
        let (schema, table) = self.names(plan);
        out.extend_from_slice(b",\"schema\":");
        json::string(out, schema);
        out.extend_from_slice(b",\"table\":");
        json::string(out, table);
        Ok(())
    }

    fn change(&self, l: &Line, r: &mut Scratch, out: &mut Vec<u8>) -> Result<()> {
        let plan = self.plan.expect("only masked tables come here");
        if !plan.data {
            return Ok(());
        }
        let filtered = plan.keep.is_some() || plan.drop.is_some();
        let new_in = match l.action {
            "D" => false,
            _ => !filtered || self.judge(plan, &l.columns, Some(&l.identity), r)?,
        };
        let old_in = match l.action {
            "I" => false,
            _ => !filtered || self.judge(plan, &l.identity, None, r)?,
        };
        match (l.action, old_in, new_in) {
            ("I", _, true) => self.write(l, "I", true, false, r, out),
            ("U", true, true) => self.write(l, "U", true, true, r, out),
            // The row leaves what the target holds: delete it there by its old key.
            ("U", true, false) => self.write(l, "D", false, true, r, out),
            // The row enters: the target never had it, so it is inserted whole.
            ("U", false, true) => self.write(l, "I", true, false, r, out),
            ("D", true, _) => self.write(l, "D", false, true, r, out),
            _ => Ok(()),
        }
    }

    /// Whether the row `fields` describe passes the table's filters; values it lacks come
    /// from `fallback` (an update's old values), and must be somewhere.
    fn judge(
        &self,
        plan: &TablePlan,
        fields: &[Field],
        fallback: Option<&[Field]>,
        r: &mut Scratch,
    ) -> Result<bool> {
        self.load(plan, fields, fallback, r)?;
        for c in plan.keep.iter().chain(&plan.drop) {
            if !r.present[c.column] {
                bail!(
                    "a row filter reads column {}, which this {} does not carry: give the source table REPLICA IDENTITY FULL",
                    self.table.columns[c.column].name,
                    if fallback.is_some() {
                        "update"
                    } else {
                        "change's old key"
                    }
                );
            }
        }
        Ok(plan.keeps(&r.row.original))
    }

    /// Decodes the values of `fields` (then what only `fallback` has) that the plan reads
    /// into `r.row.original`, reusing its buffers, and notes which columns are present.
    fn load(
        &self,
        plan: &TablePlan,
        fields: &[Field],
        fallback: Option<&[Field]>,
        r: &mut Scratch,
    ) -> Result<()> {
        let n = self.table.columns.len();
        r.row.resize(n);
        r.present.clear();
        r.present.resize(n, false);
        for (k, f) in fields
            .iter()
            .chain(fallback.unwrap_or_default())
            .enumerate()
        {
            let Some(i) = self.column(k, &f.name) else {
                bail!(
                    "column {} is not in the --schema-from archive: take a new one",
                    &*f.name
                );
            };
            if std::mem::replace(&mut r.present[i], true) || !plan.decode[i] {
                continue;
            }
            let slot = &mut r.row.original[i];
            let mut buf = slot.take().unwrap_or_default();
            buf.clear();
            *slot = f.text().map(|t| {
                buf.extend_from_slice(t.as_bytes());
                buf
            });
        }
        for i in 0..n {
            if !r.present[i] || !plan.decode[i] {
                r.row.original[i] = None;
            }
        }
        Ok(())
    }

    /// A masked value that depends on another column (a step's `when`, a template) needs
    /// that column in the line: without it the value would not be the one a masked dump has.
    fn complete(&self, plan: &TablePlan, r: &Scratch, what: &str) -> Result<()> {
        let has = |i: usize| r.present[i];
        for col in plan.columns.iter().filter(|c| has(c.index)) {
            let missing = match col.late {
                // A template may read any column the plan decodes.
                true => (0..r.present.len()).find(|&i| plan.decode[i] && !has(i)),
                false => col
                    .steps
                    .iter()
                    .filter_map(|s| s.when.as_ref().map(|w| w.column))
                    .find(|&i| !has(i)),
            };
            if let Some(i) = missing {
                bail!(
                    "the rule for column {} reads column {}, which this change's {what} do not carry (an unchanged TOAST value, or a column outside the replica identity): give the source table REPLICA IDENTITY FULL",
                    self.table.columns[col.index].name,
                    self.table.columns[i].name
                );
            }
        }
        Ok(())
    }

    /// Writes the line as `action`, with its new values masked (`columns`) and its old key
    /// masked (`identity`).
    fn write(
        &self,
        l: &Line,
        action: &str,
        columns: bool,
        identity: bool,
        r: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let plan = self.plan.expect("masked");
        // Judged on what goes downstream: an update that leaves the filter is a delete there.
        if !plan.route.passes(action) {
            return Ok(());
        }
        self.head(l, action, plan, out)?;
        if columns {
            // An update that becomes an insert carries every column: those the update left
            // out (unchanged TOAST values) come from its old values.
            let fallback = (action == "I" && l.action == "U").then_some(&l.identity[..]);
            self.load(plan, &l.columns, fallback, r)?;
            self.complete(plan, r, "new values")?;
            plan.mask_row(&mut r.row)?;
            out.extend_from_slice(b",\"columns\":[");
            let all = l.columns.iter().chain(fallback.unwrap_or_default());
            self.fields(all, r, out);
            out.push(b']');
        }
        if identity && !l.identity.is_empty() {
            self.load(plan, &l.identity, None, r)?;
            self.complete(plan, r, "old key")?;
            plan.mask_row(&mut r.row)?;
            out.extend_from_slice(b",\"identity\":[");
            self.fields(l.identity.iter(), r, out);
            out.push(b']');
        }
        if l.snapshot {
            out.extend_from_slice(b",\"snapshot\":true");
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// `fields` (the first of a name counts): masked values where the rules mask, the line's
    /// own elsewhere. Excluded columns are left out, renamed ones take their new names; types
    /// are written as the stream had them.
    fn fields<'f>(
        &self,
        fields: impl Iterator<Item = &'f Field<'f>>,
        r: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        r.written.clear();
        r.written.resize(self.table.columns.len(), false);
        let route = &self.plan.expect("masked").route;
        for (k, f) in fields.enumerate() {
            let i = self.column(k, &f.name).expect("loaded before");
            if std::mem::replace(&mut r.written[i], true) || route.excluded(i) {
                continue;
            }
            if out.last() != Some(&b'[') {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            let renamed = route.columns.get(i).and_then(Option::as_deref);
            json::string(out, renamed.unwrap_or(&f.name));
            out.extend_from_slice(b",\"type\":");
            json::string(out, &f.type_name);
            out.extend_from_slice(b",\"value\":");
            match self.rewritten[i] {
                true => value_json(out, &f.type_name, r.row.masked[i].as_deref()),
                false => match &f.value {
                    Value::Null => out.extend_from_slice(b"null"),
                    Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                    Value::Text(t) => json::string(out, t),
                },
            }
            out.push(b'}');
        }
    }
}

/// A masked value as the stream writes it (wal2json's forms, as weir-cdc writes them).
fn value_json(out: &mut Vec<u8>, type_name: &str, v: Option<&[u8]>) {
    let Some(v) = v else {
        return out.extend_from_slice(b"null");
    };
    let text = String::from_utf8_lossy(v);
    match type_name {
        "boolean" if &*text == "t" => out.extend_from_slice(b"true"),
        "boolean" if &*text == "f" => out.extend_from_slice(b"false"),
        "bytea" => json::string(out, text.strip_prefix("\\x").unwrap_or(&text)),
        _ => json::string(out, &text),
    }
}
