//! `weir-mask`: anonymizes and filters a weir archive as it streams through.
//!
//! The manifest arrives first, so the rules are compiled and checked against every table,
//! column and type before any row is read. Chunks of tables without rules pass through as
//! they are, unhashed, and their digests are carried over from the input's trailer (all of
//! them hashed and checked here with `--verify`); chunks of masked tables are verified, cut
//! into rows and fields, and only the fields that rules touch or read are decoded and
//! re-encoded. The output's manifest says it was masked (with a digest of the rules) and its
//! trailer is written anew, so `weir-load` still verifies the stream end to end. Our trailer
//! goes out only after the input's was checked.

pub mod array;
pub mod constant;
pub mod globals;
pub mod integrity;
pub mod json;
pub mod keyed;
pub mod row;
pub mod rules;
pub mod schema;
pub mod stream;
pub mod transform;
pub mod types;
pub mod validate;

use crate::archive::{
    ArchiveWriter, Manifest, MaskInfo, Stats, Table, Trailer, Visitor, read_archive,
};
use crate::pg::copy_text::{Chunk, Delimiters, decode_field_into, encode_field};
use crate::plumbing::{ExitCode, Output, coded, open_input};
use anyhow::{Context, Result, anyhow};
use keyed::Key;
use row::{Row, RowBuf};
use rules::{Plan, TablePlan};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

pub struct MaskOptions {
    pub rules: String,
    pub key_file: Option<String>,
    pub preview: Option<usize>,
    pub input: Option<String>,
    pub output: Option<String>,
    /// `--stats FILE`: the output archive's [`Stats`], once complete.
    pub stats: Option<String>,
    /// `--verify`: hash the tables that pass through unchanged too, instead of carrying their
    /// digests over.
    pub verify: bool,
    /// `--keep-role-passwords`: leave the roles' password verifiers in the globals.
    pub keep_role_passwords: bool,
    /// `--validate`: print what the rules leave unmasked and a sample, not an archive.
    pub validate: bool,
    /// `--strict`: an unruled column that looks personal, or a column a table's rules do not
    /// name, is a rule error.
    pub strict: bool,
    /// `--schema-from ARCHIVE`: the source's tables, for a change stream.
    pub schema_from: Option<String>,
}

/// The key: `--key-file` (its first line), else `WEIR_MASK_KEY`, else none.
fn load_key(o: &MaskOptions) -> Result<Option<Key>> {
    if let Some(f) = &o.key_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| anyhow!("cannot read key file {f}: {e}"))?;
        let line = text.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            return Err(coded(ExitCode::Usage, format!("key file {f} is empty")));
        }
        return Ok(Some(Key::from_material(line.as_bytes())));
    }
    match std::env::var("WEIR_MASK_KEY") {
        Ok(k) if !k.is_empty() => Ok(Some(Key::from_material(k.as_bytes()))),
        _ => Ok(None),
    }
}

pub fn run(o: &MaskOptions) -> Result<()> {
    let text = std::fs::read_to_string(&o.rules).map_err(|e| {
        coded(
            ExitCode::Usage,
            format!("cannot read rules {}: {e}", o.rules),
        )
    })?;
    let rules =
        rules::parse(&text, &o.rules).map_err(|e| coded(ExitCode::Usage, format!("{e:#}")))?;
    let rules_sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let key = load_key(o)?;
    let deterministic = key.is_some();
    if !deterministic {
        eprintln!(
            "{}: no key (WEIR_MASK_KEY or --key-file): pseudonyms are consistent within this run only",
            crate::plumbing::program()
        );
    }
    let key = key.unwrap_or_else(Key::random);
    let mut input = std::io::BufReader::with_capacity(1 << 20, open_input(o.input.as_deref())?);
    // A weir archive starts with a tar header (its manifest's name); a change stream with `{`.
    if std::io::BufRead::fill_buf(&mut input)?.first() == Some(&b'{') {
        return mask_stream(o, &rules, &key, input);
    }
    if o.preview.is_some() || o.validate {
        let mut v = Preview {
            rules,
            key,
            n: o.preview.unwrap_or(3),
            validate: o.validate,
            strict: o.strict,
            plan: None,
            manifest: None,
            shown: Default::default(),
            out: Output::open(o.output.as_deref(), false)?,
            schema: Vec::new(),
            started: false,
        };
        read_archive(input, &mut v)?;
        return v.out.finish().context("writing the preview");
    }
    let out = Output::open(o.output.as_deref(), true)?;
    let mut v = Masker {
        rules,
        key,
        info: MaskInfo {
            rules_sha256,
            deterministic,
            weir_version: env!("CARGO_PKG_VERSION").to_string(),
            role_passwords: None,
            unmasked: Vec::new(),
            removed: Vec::new(),
            large_objects: None,
            comments_dropped: false,
        },
        plan: None,
        out: Some(out),
        writer: None,
        row: ChunkBuf::default(),
        out_manifest: None,
        stats: None,
        verify: o.verify,
        keep_role_passwords: o.keep_role_passwords,
        strict: o.strict,
        schema: Vec::new(),
    };
    read_archive(input, &mut v)?;
    let out = v
        .writer
        .take()
        .ok_or_else(|| anyhow!("the archive had no trailer"))?;
    out.finish().context("writing the output")?;
    if let (Some(path), Some(stats)) = (&o.stats, &v.stats) {
        stats.write(path)?;
    }
    Ok(())
}

/// A change stream, masked with the rules compiled for the `--schema-from` archive.
fn mask_stream(
    o: &MaskOptions,
    rules: &rules::RulesText,
    key: &Key,
    input: impl std::io::BufRead,
) -> Result<()> {
    if o.preview.is_some() || o.validate {
        return Err(coded(
            ExitCode::Usage,
            "--preview and --validate read an archive, not a change stream",
        ));
    }
    let Some(path) = &o.schema_from else {
        return Err(coded(
            ExitCode::Usage,
            "the input is a change stream: name an archive of its source with --schema-from (weir-extract -s makes one)",
        ));
    };
    let file = std::fs::File::open(path).map_err(|e| anyhow!("cannot open {path}: {e}"))?;
    let mut m = crate::archive::read_manifest_only(std::io::BufReader::new(file))
        .with_context(|| format!("reading --schema-from {path}"))?;
    // Whether the archive holds rows (a schema-only one does not) says nothing of the stream.
    m.tables.iter_mut().for_each(|t| t.data = true);
    let mut plan = compile(rules, &m, key)?;
    // In a stream an excluded column goes nowhere: as seen as a kept one, for --strict.
    for p in plan.tables.values_mut() {
        let excluded = (0..p.route.exclude.len()).filter(|&i| p.route.excluded(i));
        p.kept.extend(excluded.collect::<Vec<_>>());
    }
    if o.strict {
        check_strict(&m, &plan)?;
    }
    stream::run(&plan, &m, input, Output::open(o.output.as_deref(), false)?)
}

/// Compiles the rules for this archive; a rule error is a usage error, reported before any
/// output.
fn compile(rules: &rules::RulesText, m: &Manifest, key: &Key) -> Result<Plan> {
    rules
        .compile(m, key)
        .map_err(|e| coded(ExitCode::Usage, format!("{e:#}")))
}

/// `--strict`: what the compiled rules leave unseen is a rule error too.
fn check_strict(m: &Manifest, plan: &Plan) -> Result<()> {
    let problems = validate::strict_violations(m, plan);
    if problems.is_empty() {
        return Ok(());
    }
    Err(coded(
        ExitCode::Usage,
        format!("--strict: {}", problems.join("; ")),
    ))
}

struct Masker {
    rules: rules::RulesText,
    key: Key,
    info: MaskInfo,
    plan: Option<Plan>,
    out: Option<Output>,
    writer: Option<WriterState>,
    row: ChunkBuf,
    /// The manifest that went out, and once the trailer did, what the output holds.
    out_manifest: Option<Manifest>,
    stats: Option<Stats>,
    verify: bool,
    keep_role_passwords: bool,
    strict: bool,
    /// The schema parts, gathered: the manifest goes out after them, once it can say what
    /// was taken out of the schema (every schema part precedes every other entry).
    schema: Vec<u8>,
}

/// The archive writer while the stream runs; after the trailer, the finished output.
enum WriterState {
    Writing(Box<ArchiveWriter<Output>>),
    Done(Output),
}

impl WriterState {
    fn finish(self) -> std::io::Result<()> {
        match self {
            WriterState::Done(out) => out.finish(),
            WriterState::Writing(_) => Err(std::io::Error::other("archive not finished")),
        }
    }
}

impl Masker {
    /// The output's writer; the first call writes the manifest and the scrubbed schema.
    fn writer(&mut self) -> Result<&mut ArchiveWriter<Output>> {
        if self.writer.is_none() {
            self.start()?;
        }
        match self.writer.as_mut() {
            Some(WriterState::Writing(w)) => Ok(w),
            _ => Err(anyhow!("archive entry before the manifest")),
        }
    }

    /// Takes the credentials (and on request the comments) out of the gathered schema, then
    /// writes the manifest, which says what was taken, and the schema in parts.
    fn start(&mut self) -> Result<()> {
        let (Some(out), Some(plan), Some(m)) = (
            self.out.take(),
            self.plan.as_ref(),
            self.out_manifest.as_mut(),
        ) else {
            return Err(anyhow!("archive entry before the manifest"));
        };
        let scrubbed = schema::scrub(&self.schema, plan.drop_comments)?;
        self.schema = Vec::new();
        let info = m.mask.as_mut().expect("masked manifest");
        info.removed = scrubbed.removed;
        info.comments_dropped = plan.drop_comments && !scrubbed.comments.is_empty();
        let mut w = ArchiveWriter::new(out, m)?;
        for (part, bytes) in scrubbed
            .file
            .chunks(crate::archive::SCHEMA_PART)
            .enumerate()
        {
            let name = format!("{}{part:06}", crate::archive::SCHEMA_PREFIX);
            w.add_file(&name, bytes)?;
        }
        self.writer = Some(WriterState::Writing(Box::new(w)));
        Ok(())
    }

    fn large_objects(&self) -> Option<&rules::LargeObjects> {
        self.plan.as_ref()?.large_objects.as_ref()
    }
}

/// A sequence that feeds a permuted key column continues, after the restore, above every
/// masked key: `permute_key` keeps each key below the next power of two of the sequence's
/// last value, so the sequence is set to that power of two less one (issue 13: rows inserted
/// with the default after a restore must not collide with the permuted ones).
fn continue_sequences_past_permuted_keys(m: &mut Manifest, plan: &Plan) {
    let tables = &m.tables;
    let permuted = |s: &crate::archive::Sequence| -> bool {
        let (Some(oid), Some(col)) = (s.owner_table_oid, s.owner_column.as_deref()) else {
            return false;
        };
        let Some(t) = tables.iter().find(|t| t.oid == oid) else {
            return false;
        };
        let Some(index) = t.columns.iter().position(|c| c.name == col) else {
            return false;
        };
        let Some(tp) = plan.tables.get(&t.id) else {
            return false;
        };
        let cp = tp.columns.iter().find(|c| c.index == index);
        cp.is_some_and(|c| {
            c.steps
                .iter()
                .any(|s| matches!(s.transformer, transform::Transformer::PermuteInt))
        })
    };
    for s in m.sequences.iter_mut() {
        if s.last_value <= 0 || !permuted(s) {
            continue;
        }
        let bits = 64 - (s.last_value as u64).leading_zeros();
        s.last_value = ((1u128 << bits) - 1).min(i64::MAX as u128) as i64;
        s.is_called = true;
    }
}

/// The plan for a table whose rows are rewritten or dropped; `None` passes it through.
fn rewrite_plan<'p>(plan: Option<&'p Plan>, table: &Table) -> Option<&'p TablePlan> {
    let plan = plan?.tables.get(&table.id)?;
    (plan.rewrites_rows() || !plan.data).then_some(plan)
}

impl Visitor for Masker {
    fn manifest(&mut self, m: &Manifest) -> Result<()> {
        let plan = compile(&self.rules, m, &self.key)?;
        if self.strict {
            check_strict(m, &plan)?;
        }
        for t in m
            .tables
            .iter()
            .filter(|t| plan.tables.get(&t.id).is_some_and(|p| !p.route.is_empty()))
        {
            eprintln!(
                "{}: table {}: operations, exclude, rename and rename_columns apply to change streams; the archive keeps the table as it is",
                crate::plumbing::program(),
                t.qualified()
            );
        }
        let mut out_m = m.clone();
        out_m.masked = true;
        let mut info = self.info.clone();
        if m.globals {
            let fate = if self.keep_role_passwords {
                "kept"
            } else {
                "removed"
            };
            info.role_passwords = Some(fate.into());
        }
        use rules::LargeObjectAction as A;
        match plan.large_objects.as_ref().map(|l| l.action) {
            // Unruled or kept on purpose, their contents pass as they are: say so where a
            // reader looks.
            None | Some(A::Keep) if m.blobs => info.unmasked.push("large objects".into()),
            None | Some(A::Keep) => {}
            Some(A::Drop) => {
                out_m.blobs = false;
                out_m.large_objects = out_m.large_objects.map(|_| 0);
            }
            Some(A::Replace) => {}
        }
        if m.blobs {
            info.large_objects = plan.large_objects.as_ref().map(|l| l.action.done().into());
        }
        out_m.mask = Some(info);
        continue_sequences_past_permuted_keys(&mut out_m, &plan);
        for t in &mut out_m.tables {
            if let Some(p) = plan.tables.get(&t.id) {
                t.data = t.data && p.data;
            }
        }
        self.out_manifest = Some(out_m);
        self.plan = Some(plan);
        Ok(())
    }

    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()> {
        if name.starts_with(crate::archive::SCHEMA_PREFIX) {
            if self.writer.is_some() {
                return Err(crate::plumbing::bad_input(format!(
                    "schema part {name} after other entries: the archive is out of order"
                )));
            }
            self.schema.extend_from_slice(&data);
            return Ok(());
        }
        if name == crate::archive::BLOBS_SQL
            && self.large_objects().map(|l| l.action) == Some(rules::LargeObjectAction::Drop)
        {
            self.writer()?;
            return Ok(());
        }
        if name == crate::archive::SEQUENCES {
            // The SQL copy of the sequence states, as the output's manifest now has them.
            let sql = self
                .out_manifest
                .as_ref()
                .expect("manifest first")
                .sequences_sql();
            return self.writer()?.add_file(name, sql.as_bytes());
        }
        if name == crate::archive::GLOBALS && !self.keep_role_passwords {
            let sql = String::from_utf8(data)
                .map_err(|_| crate::plumbing::bad_input("the globals are not UTF-8"))?;
            let (sql, _) = globals::strip_role_passwords(&sql);
            return self.writer()?.add_file(name, sql.as_bytes());
        }
        self.writer()?.add_file(name, &data)
    }

    fn carries(&self, table: &Table) -> bool {
        !self.verify && rewrite_plan(self.plan.as_ref(), table).is_none()
    }

    fn chunk(&mut self, table: &Table, no: u64, chunk: Chunk) -> Result<()> {
        let Some(plan) = rewrite_plan(self.plan.as_ref(), table) else {
            // No rules: the bytes go out unchanged, with their digest carried over (or, with
            // --verify, the one the reader computed and checked).
            return match self.verify {
                false => self.writer()?.add_carried_chunk(table.id, no, &chunk),
                true => self.writer()?.add_chunk(table.id, &chunk),
            };
        };
        if !plan.data {
            return Ok(());
        }
        // Room for pseudonyms longer than the originals, so the buffer seldom grows (a
        // realloc copies everything written so far).
        let mut out = Vec::with_capacity(chunk.data.len() + chunk.data.len() / 2);
        let plan: &TablePlan = plan;
        let rows = mask_rows(
            plan,
            table,
            &chunk.data,
            &mut out,
            &mut self.row,
            &mut |_, _| {},
        )?;
        if out.is_empty() {
            return Ok(());
        }
        let w = self.writer()?;
        let masked = Chunk::with_rows(out, rows, w.algo());
        w.add_chunk(table.id, &masked)
    }

    fn table_done(&mut self, table: &Table) -> Result<()> {
        self.writer()?.end_table(table.id)
    }

    fn blob(&mut self, oid: u32, size: u64, data: &mut dyn Read) -> Result<()> {
        use rules::LargeObjectAction as A;
        match self.large_objects().map(|l| (l.action, l.with.as_deref())) {
            None | Some((A::Keep, _)) => self.writer()?.add_blob(oid, size, data),
            Some((A::Drop, _)) => Ok(()),
            Some((A::Replace, with)) => {
                // Copied out of the plan: the writer borrows self mutably.
                let with = with.unwrap_or_default().as_bytes().to_vec();
                self.writer()?.add_blob(oid, with.len() as u64, &with[..])
            }
        }
    }

    fn trailer(&mut self, t: &Trailer) -> Result<()> {
        self.writer()?;
        // Every command must end in step with the values it was given before the output may
        // become a complete archive.
        let plans = self.plan.iter().flat_map(|p| p.tables.values());
        for step in plans.flat_map(|tp| tp.columns.iter().flat_map(|c| c.steps.iter())) {
            step.transformer
                .finish()
                .map_err(|e| anyhow!("{}: {e:#}", step.name))?;
        }
        // The input verified; only now does our own trailer go out.
        match self.writer.take() {
            Some(WriterState::Writing(mut w)) => {
                w.carry_digests(t)?;
                let (out, trailer) = (*w).finish_with_trailer()?;
                if let Some(m) = &self.out_manifest {
                    self.stats = Some(Stats::new(m, &trailer));
                }
                self.writer = Some(WriterState::Done(out));
                Ok(())
            }
            _ => Err(anyhow!("trailer before the manifest")),
        }
    }
}

/// Reused per-chunk storage: each row's field bounds and which fields the rules rewrite,
/// and the row's values ([`RowBuf`]).
#[derive(Default)]
struct ChunkBuf {
    bounds: Vec<(usize, usize)>,
    touched: Vec<bool>,
    row: RowBuf,
}

/// Masks the rows of one chunk of `table` into `out`, and says how many it wrote: each row is
/// split and the fields the plan reads decoded, [`TablePlan::mask_row`] masks it, and the
/// fields it rewrote are encoded in place of the old (the loop tuned with callgrind, issue 5).
/// `seen` gets each row before and after (after is `None` when the row was filtered out), for
/// the preview.
fn mask_rows(
    plan: &TablePlan,
    table: &Table,
    data: &[u8],
    out: &mut Vec<u8>,
    r: &mut ChunkBuf,
    seen: &mut dyn FnMut(&Row, Option<&Row>),
) -> Result<u64> {
    let ncols = table.columns.len();
    r.row.resize(ncols);
    plan.rewritten_into(ncols, &mut r.touched);
    let bad = |msg: String| {
        coded(
            ExitCode::BadArchive,
            format!("table {}: {msg}", table.qualified()),
        )
    };
    let body = data
        .strip_suffix(b"\n")
        .ok_or_else(|| bad("COPY chunk does not end with a newline".into()))?;
    if body.is_empty() && !data.is_empty() && ncols == 0 {
        out.extend_from_slice(data);
        return Ok(crate::pg::copy_text::count_rows(data));
    }
    let mut written = 0;
    let mut line_start = 0;
    let mut delims = Delimiters::new(body);
    while line_start <= body.len() {
        // The row's field bounds, relative to the row; its end is a newline or the body's end.
        r.bounds.clear();
        let mut start = line_start;
        let end = loop {
            match delims.next() {
                Some(i) if body[i] == b'\t' => {
                    r.bounds.push((start - line_start, i - line_start));
                    start = i + 1;
                }
                Some(i) => break i,
                None => break body.len(),
            }
        };
        let line = &body[line_start..end];
        r.bounds.push((start - line_start, line.len()));
        line_start = end + 1;
        if ncols == 0 {
            out.extend_from_slice(line);
            out.push(b'\n');
            written += 1;
            continue;
        }
        if r.bounds.len() != ncols {
            return Err(bad(format!(
                "a row has {} fields, the manifest lists {ncols} columns",
                r.bounds.len()
            )));
        }
        for (i, &(s, e)) in r.bounds.iter().enumerate() {
            if plan.decode[i] {
                // The buffer of the previous row's value is reused.
                let slot = &mut r.row.original[i];
                let mut buf = slot.take().unwrap_or_default();
                let present =
                    decode_field_into(&line[s..e], &mut buf).map_err(|e| bad(e.to_string()))?;
                *slot = present.then_some(buf);
            }
        }
        if !plan.keeps(&r.row.original) {
            seen(&r.row.original, None);
            continue;
        }
        plan.mask_row(&mut r.row)?;
        seen(&r.row.original, Some(&r.row.masked));
        // Untouched fields are copied in runs, tabs included: one copy per run, not per field.
        let mut raw_from = 0;
        for (i, &(s, e)) in r.bounds.iter().enumerate() {
            if r.touched[i] {
                out.extend_from_slice(&line[raw_from..s]);
                encode_field(r.row.masked[i].as_deref(), out);
                raw_from = e;
            }
        }
        out.extend_from_slice(&line[raw_from..]);
        out.push(b'\n');
        written += 1;
    }
    Ok(written)
}

/// `--preview N`: before and after, for the first N rows of each masked table.
struct Preview {
    rules: rules::RulesText,
    key: Key,
    n: usize,
    /// `--validate`: the report first, then the sample.
    validate: bool,
    strict: bool,
    plan: Option<Plan>,
    manifest: Option<Manifest>,
    shown: std::collections::BTreeMap<u32, usize>,
    out: Output,
    /// The schema parts, gathered for the report.
    schema: Vec<u8>,
    started: bool,
}

impl Preview {
    /// Once the schema is in: the report (before --strict judges, so that a refusal comes
    /// with its reasons), then the check.
    fn start(&mut self) -> Result<()> {
        let (Some(plan), Some(m)) = (&self.plan, &self.manifest) else {
            return Ok(());
        };
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.validate {
            validate::report(m, plan, &mut self.out)?;
            let scrubbed = schema::scrub(&std::mem::take(&mut self.schema), plan.drop_comments)?;
            validate::schema_report(&scrubbed, plan, &mut self.out)?;
            writeln!(
                self.out,
                "\nsample (first {} rows of each masked table):",
                self.n
            )?;
        }
        if self.strict {
            self.out.flush()?;
            check_strict(m, plan)?;
        }
        Ok(())
    }
}

impl Visitor for Preview {
    fn manifest(&mut self, m: &Manifest) -> Result<()> {
        self.plan = Some(compile(&self.rules, m, &self.key)?);
        self.manifest = Some(m.clone());
        Ok(())
    }

    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()> {
        if name.starts_with(crate::archive::SCHEMA_PREFIX) && !self.started {
            // Only the report reads the schema; a plain --preview does not keep it.
            if self.validate {
                self.schema.extend_from_slice(&data);
            }
            return Ok(());
        }
        self.start()
    }

    fn chunk(&mut self, table: &Table, _no: u64, chunk: Chunk) -> Result<()> {
        self.start()?;
        let Some(plan) = self.plan.as_ref().and_then(|p| p.tables.get(&table.id)) else {
            return Ok(());
        };
        let shown = self.shown.entry(table.id).or_insert(0);
        if *shown >= self.n || !plan.rewrites_rows() {
            return Ok(());
        }
        let mut lines: Vec<String> = Vec::new();
        let n = self.n;
        let mut count = *shown;
        let cols: Vec<usize> = plan.columns.iter().map(|c| c.index).collect();
        let show = |v: &Option<Vec<u8>>| match v {
            None => "NULL".to_string(),
            Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        };
        let mut sink = Vec::new();
        mask_rows(
            plan,
            table,
            &chunk.data,
            &mut sink,
            &mut ChunkBuf::default(),
            &mut |before, after| {
                if count >= n {
                    return;
                }
                count += 1;
                match after {
                    None => lines.push(format!("  row {count}: dropped by the row filter")),
                    Some(after) => {
                        let parts: Vec<String> = cols
                            .iter()
                            .map(|&i| {
                                format!(
                                    "{}: {} -> {}",
                                    table.columns[i].name,
                                    show(&before[i]),
                                    show(&after[i])
                                )
                            })
                            .collect();
                        lines.push(format!("  row {count}: {}", parts.join(", ")));
                    }
                }
            },
        )?;
        if *shown == 0 {
            writeln!(self.out, "{}.{}", table.schema, table.name)?;
        }
        *shown = count;
        for l in lines {
            writeln!(self.out, "{l}")?;
        }
        Ok(())
    }

    fn blob(&mut self, _: u32, _: u64, _: &mut dyn Read) -> Result<()> {
        self.start()
    }

    fn trailer(&mut self, _: &Trailer) -> Result<()> {
        self.start()?;
        let (Some(plan), Some(m)) = (&self.plan, &self.manifest) else {
            return Ok(());
        };
        for (id, p) in &plan.tables {
            if p.dropped {
                let t = &m.tables[*id as usize];
                writeln!(self.out, "{}.{}: data dropped", t.schema, t.name)?;
            }
        }
        Ok(())
    }
}
