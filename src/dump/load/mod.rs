//! `weir-load`: restores a weir archive read from a stream.
//!
//! Order, as `pg_restore` does it: the schema's pre-data section (types, tables) through
//! `pg_restore`, then the rows through COPY on `-j N` connections, then the post-data section
//! (indexes, constraints, triggers) through `pg_restore -j N`, then sequences and materialized
//! views. Triggers and foreign keys are created after the rows, so they neither fire nor check
//! during the load. With a format 3 archive and several connections, a table no bigger than
//! an even share is loaded by one connection, which builds its indexes, primary key and
//! unique constraints in its own transaction once the table's done entry arrives, while the
//! others still load ([`placement`]); the post-data run after the commit leaves those out.
//!
//! Nothing is committed before the archive proved complete: every worker keeps its COPYs in
//! one open transaction, and all of them commit only after the trailer arrived and every count
//! and digest matched. A truncated or corrupt stream rolls back every row, and a database that
//! `--create` made for this load is dropped again.
//!
//! The pieces: [`selection`] (what `-t`/`-n` choose), [`schema`] (the spooled schema and the
//! pg_restore runs over it), [`placement`] (which worker loads which table and builds what),
//! [`pool`] (the load workers and their transactions), [`created`]
//! (the guard that drops a database made for a failed load). This file is the order of it.

mod created;
mod locks;
mod placement;
mod pool;
mod schema;
mod selection;

use crate::pg::copy_binary::Converter;
use placement::Placement;
use pool::{Job, Pool, Work};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::archive::{self, Manifest, Table, Trailer, Visitor};
use crate::pg::conn::ConnParams;
use crate::pg::copy_text::Chunk;
use crate::pg::sql::{pg_error, quote_ident};
use crate::pg::tools;
use crate::plumbing::{ExitCode, Progress, coded, human_bytes};
use anyhow::{Context, Result, anyhow, bail};
use created::CreatedDb;
use schema::SchemaFile;
use selection::Selection;
use std::io::{Read, Write};
use std::process::Stdio;

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub conninfo: Option<String>,
    pub input: Option<String>,
    pub jobs: usize,
    pub create: bool,
    pub clean: bool,
    pub if_exists: bool,
    pub no_owner: bool,
    pub no_acl: bool,
    pub schema_only: bool,
    pub data_only: bool,
    pub disable_triggers: bool,
    pub tables: Vec<String>,
    pub schemas: Vec<String>,
    pub globals: bool,
    pub progress: bool,
    pub quiet: bool,
    /// Print each phase as it ends, with the time since the start.
    pub verbose: bool,
    /// `--transaction-size N`: commit N tables at a time, each worker (and pre-data statement
    /// by statement), giving up all-or-nothing in a database weir-load did not create.
    pub transaction_size: Option<usize>,
}

pub fn run(opts: &LoadOptions) -> Result<()> {
    let usage = |msg: &str| Err(coded(ExitCode::Usage, msg));
    if opts.schema_only && opts.data_only {
        return usage("options --schema-only and --data-only cannot be used together");
    }
    if opts.disable_triggers && !opts.data_only {
        return usage("option --disable-triggers requires --data-only");
    }
    if opts.if_exists && !opts.clean {
        return usage("option --if-exists requires option --clean");
    }
    if opts.create && opts.data_only {
        return usage("options --create and --data-only cannot be used together");
    }
    let params = ConnParams::resolve(opts.conninfo.as_deref(), "weir-load")?;
    let input = crate::plumbing::open_input(opts.input.as_deref())?;
    let mut loader = Loader::new(opts, params);
    let result = archive::read_archive(input, &mut loader);
    match result.and_then(|(m, t)| loader.complete(&m, &t)) {
        Ok(()) => Ok(()),
        Err(e) => {
            loader.abandon();
            Err(e)
        }
    }
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    params: ConnParams,
    manifest: Option<Manifest>,
    selection: Selection,
    created: Option<CreatedDb>,
    main: Option<postgres::Client>,
    schema: SchemaFile,
    /// Set at the first entry after the schema: pre-data restored, workers started.
    data_begun: bool,
    /// The load workers; none with --schema-only.
    pool: Option<Pool>,
    /// Which worker loads which table and builds its indexes (format 3; empty otherwise).
    placement: Placement,
    /// Per table, how its rows become COPY binary; `None` where they go as text.
    converters: HashMap<u32, Option<Arc<Converter>>>,
    blobs: Blobs,
    progress: Progress,
    rows: u64,
    bytes: u64,
}

/// Large objects: the metadata statements arrive first, run once the first blob does.
#[derive(Default)]
struct Blobs {
    sql: Option<Vec<u8>>,
    started: bool,
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions, params: ConnParams) -> Loader<'o> {
        Loader {
            opts,
            params,
            manifest: None,
            selection: Selection::default(),
            created: None,
            main: None,
            schema: SchemaFile::default(),
            data_begun: false,
            pool: None,
            placement: Placement::default(),
            converters: HashMap::new(),
            blobs: Blobs::default(),
            progress: Progress::new(None, opts.progress, opts.quiet),
            rows: 0,
            bytes: 0,
        }
    }

    fn main(&mut self) -> &mut postgres::Client {
        self.main
            .as_mut()
            .expect("connected when the manifest was read")
    }

    fn connect_target(&mut self, m: &Manifest) -> Result<()> {
        if self.opts.create {
            self.created = Some(CreatedDb::create(&self.params, m)?);
        }
        let client = self.params.connect().map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("does not exist") && msg.contains("database") {
                anyhow!("{msg} (use --create to create it)")
            } else {
                e
            }
        })?;
        self.main = Some(client);
        Ok(())
    }

    /// Runs the pre-data section and starts the data workers; called once, at the first entry
    /// after the schema.
    fn begin_data(&mut self) -> Result<()> {
        if self.data_begun {
            return Ok(());
        }
        self.data_begun = true;
        let m = &self.manifest.clone().expect("manifest comes first");
        self.schema.finish()?;
        if self.selection.by_table() {
            self.schema
                .restrict_to(&self.selection.wanted_oids(m), &self.params)?;
        }
        let (tx, lock_budget) = self.transactions(m)?;
        let o = self.opts;
        // With done entries (format 3) and several workers, tables are placed (see
        // [`placement`]); not when the workers commit in batches.
        let placing = archive::has_done_entries(m.format_version)
            && o.jobs >= 2
            && !o.data_only
            && !o.schema_only
            && tx.tables_per_worker.is_none();
        let entries = match placing {
            true => Some(self.schema.post_data_entries(o, &self.params)?),
            false => None,
        };
        // The workers connect while the schema is restored; their transactions see its
        // tables from their first statement on (read committed).
        if !o.schema_only {
            let pool = Pool::start(
                &self.params,
                o.jobs,
                o.disable_triggers,
                tx.tables_per_worker,
            );
            self.pool = Some(pool);
        }
        if !o.data_only {
            self.restore_pre_data(m, tx.single_pre_data)?;
        }
        self.main().batch_execute("BEGIN")?;
        if let Some(pool) = self.pool.as_mut() {
            pool.connected()?;
        }
        if let Some(entries) = entries {
            let entries = entries
                .join()
                .map_err(|_| anyhow!("reading the post-data section failed"))??;
            self.place(m, &entries, lock_budget);
        }
        Ok(())
    }

    /// Gives each table with few enough rows to one worker, which builds its indexes in its
    /// own transaction once the table's done entry arrives, while the others still load;
    /// unless the placed builds' locks would not fit.
    fn place(&mut self, m: &Manifest, entries: &[placement::PostDataEntry], lock_budget: u64) {
        let o = self.opts;
        let tables: Vec<&Table> = m
            .tables
            .iter()
            .filter(|t| t.data && t.relkind == "r" && self.selection.contains(t.id))
            .collect();
        let placement = Placement::plan(&tables, entries, o.jobs);
        let locks = placement.locks(&tables, locks::per_table, o.jobs);
        if locks > lock_budget {
            self.note(&format!(
                "indexes built after the commit: building them while loading takes {locks} locks"
            ));
            return;
        }
        self.placement = placement;
        let built = self.placement.built.len();
        self.note(&format!(
            "{built} index and constraint entries to build while loading"
        ));
    }

    /// One transaction per phase where the server's lock table has room for it, batches
    /// where it has not and the database is ours or the user said so (see [`locks`]); with
    /// the locks the load may hold at once ([`locks::LockTable::budget`]).
    fn transactions(&mut self, m: &Manifest) -> Result<(locks::Transactions, u64)> {
        let jobs = if self.opts.schema_only {
            0
        } else {
            self.opts.jobs
        };
        let pre = if self.opts.data_only { 0 } else { 1 };
        let views = self.schema.views();
        let mut need = locks::need(m, |id| self.selection.contains(id), jobs, views);
        need.pre_data *= pre;
        let table = locks::LockTable::read(self.main())?;
        let owned = self.created.is_some();
        let tx = locks::plan(
            need,
            table,
            self.opts.jobs,
            owned,
            self.opts.transaction_size,
        )?;
        if tx
            != (locks::Transactions {
                single_pre_data: true,
                tables_per_worker: None,
            })
        {
            self.note(&format!(
                "{need:?} locks, {} in the server's table: pre-data {}, {} tables per worker transaction",
                table.slots,
                if tx.single_pre_data { "in one transaction" } else { "statement by statement" },
                tx.tables_per_worker.map_or("all".into(), |n| n.to_string())
            ));
        }
        Ok((tx, table.budget()))
    }

    /// The schemas of a partial restore, `--clean`'s DROPs, then pre-data, in one transaction
    /// when `single`.
    fn restore_pre_data(&mut self, m: &Manifest, single: bool) -> Result<()> {
        if self.selection.partial() {
            for s in self.selection.schemas(m) {
                let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(s));
                self.main().batch_execute(&sql)?;
            }
        }
        if self.opts.clean {
            let drops = self.schema.drop_statements(self.opts, &self.params)?;
            self.main()
                .batch_execute(&format!("BEGIN; {drops}; COMMIT"))
                .map_err(|e| pg_error(e, "DROP statements of --clean"))?;
            self.main()
                .batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
        }
        let single = match single {
            true => vec!["--single-transaction".to_string()],
            false => vec![],
        };
        let what = "restoring the schema (pre-data)";
        self.schema
            .restore(self.opts, &self.params, "pre-data", &single, what)?;
        self.note("schema (pre-data) restored");
        Ok(())
    }

    /// The trailer matched: commit the rows, then the rest of the schema. A database created
    /// for the load goes again if anything here fails.
    fn complete(&mut self, m: &Manifest, _t: &Trailer) -> Result<()> {
        // Commit only now: the trailer matched, every row of every table is accounted for.
        if let Some(pool) = self.pool.as_mut() {
            pool.commit()?;
            let (b, t) = (pool.sent.binary.load(Relaxed), pool.sent.text.load(Relaxed));
            self.note(&format!("{b} chunks sent as COPY binary, {t} as text"));
        }
        self.main()
            .batch_execute("COMMIT")
            .context("committing large objects")?;
        self.note("data verified and committed");
        let mut created = self.created.take();
        if let Some(c) = created.as_mut() {
            c.disarm_signal();
        }
        if let Err(e) = self.finish(m) {
            // The rows are in, but the schema is not complete: a database we created for this
            // load is of no use half-built, so it goes; otherwise the user sees what failed.
            if let Some(c) = created {
                c.drop_now();
            }
            return Err(e);
        }
        if let Some(c) = created {
            c.keep();
        }
        self.summary(m);
        Ok(())
    }

    /// After the commit: sequences, post-data (indexes, constraints, triggers), matviews.
    fn finish(&mut self, m: &Manifest) -> Result<()> {
        if !self.opts.schema_only {
            self.set_sequences(m)?;
        }
        if !self.opts.data_only && !self.placement.all_built {
            if !self.placement.built.is_empty() {
                let built = std::mem::take(&mut self.placement.built);
                self.schema.leave_out(&built, &self.params)?;
            }
            let jobs = [format!("--jobs={}", self.opts.jobs.max(1))];
            let what = "restoring indexes, constraints and triggers (post-data)";
            self.schema
                .restore(self.opts, &self.params, "post-data", &jobs, what)?;
            self.note("indexes, constraints, triggers (post-data) restored");
        }
        if !self.opts.schema_only {
            self.refresh_matviews(m)?;
            self.note("sequences set, materialized views refreshed");
        }
        Ok(())
    }

    fn summary(&mut self, m: &Manifest) {
        self.progress.clear();
        if self.opts.quiet {
            return;
        }
        let secs = self.progress.elapsed().as_secs_f64();
        let tables = m
            .tables
            .iter()
            .filter(|t| t.data && self.selection.contains(t.id));
        eprintln!(
            "weir-load: {} tables, {} rows, {} in {:.1} s ({}/s)",
            tables.count(),
            self.rows,
            human_bytes(self.bytes),
            secs,
            human_bytes((self.bytes as f64 / secs.max(0.001)) as u64)
        );
    }

    /// Rows go as COPY binary when every column's type has a codec, and the tables are the
    /// ones this load created from the archive's own schema (with --data-only they may have
    /// other types, which binary input would refuse where text input converts).
    fn converter(&mut self, table: &Table) -> Option<Arc<Converter>> {
        if self.opts.data_only {
            return None;
        }
        let types = |t: &Table| {
            let enums = t.columns.iter().any(|c| !c.labels.is_empty());
            let names = t.columns.iter().map(|c| c.underlying_type());
            (!enums).then(|| Converter::for_types(names)).flatten()
        };
        self.converters
            .entry(table.id)
            .or_insert_with(|| types(table).map(Arc::new))
            .clone()
    }

    fn note(&mut self, what: &str) {
        if self.opts.verbose {
            self.progress.clear();
            eprintln!(
                "weir-load: {what} ({:.1} s)",
                self.progress.elapsed().as_secs_f64()
            );
        }
    }

    fn set_sequences(&mut self, m: &Manifest) -> Result<()> {
        let chosen = self.selection.oids(m);
        let sql: String = m
            .sequences
            .iter()
            .filter(|s| {
                self.selection
                    .takes_sequence(s.owner_table_oid, &s.schema, &chosen)
            })
            .map(|s| s.setval_sql())
            .collect();
        if !sql.is_empty() {
            self.main()
                .batch_execute(&sql)
                .context("setting sequences")?;
        }
        Ok(())
    }

    /// Refreshes the populated materialized views. One may read another, so those that fail
    /// are retried after the others until a round makes no progress.
    fn refresh_matviews(&mut self, m: &Manifest) -> Result<()> {
        let partial = self.selection.partial();
        let mut todo: Vec<String> = m
            .matviews
            .iter()
            .filter(|v| v.populated)
            .filter(|v| !partial || self.selection.takes_loose_objects_of(&v.schema))
            .map(|v| format!("{}.{}", quote_ident(&v.schema), quote_ident(&v.name)))
            .collect();
        while !todo.is_empty() {
            let mut failed = Vec::new();
            let mut last_err = None;
            for v in &todo {
                let sql = format!("REFRESH MATERIALIZED VIEW {v}");
                if let Err(e) = self.main().batch_execute(&sql) {
                    last_err = Some(pg_error(e, &sql));
                    failed.push(v.clone());
                }
            }
            if failed.len() == todo.len() {
                return Err(last_err.expect("something failed"));
            }
            todo = failed;
        }
        Ok(())
    }

    fn restore_globals(&mut self, sql: Vec<u8>) -> Result<()> {
        // Run through psql, which reads pg_dumpall's output natively; a role that exists
        // already is reported and skipped, as when pg_dumpall output is replayed by hand.
        let args = vec![
            "-X".to_string(),
            "-q".into(),
            "-v".into(),
            "ON_ERROR_STOP=0".into(),
            format!("--dbname={}", self.params.dbname_conninfo()),
        ];
        let mut p = tools::spawn("psql", &args, &self.params, Stdio::piped(), false)?;
        p.stdin().expect("piped").write_all(&sql)?;
        p.wait().context("restoring globals")
    }

    /// Rolls back everything uncommitted and drops a database this load created.
    fn abandon(&mut self) {
        self.pool.take();
        self.main.take();
        if let Some(c) = self.created.take() {
            c.drop_now();
        }
    }

    fn start_blobs(&mut self) -> Result<()> {
        if self.blobs.started {
            return Ok(());
        }
        self.blobs.started = true;
        let sql = String::from_utf8(self.blobs.sql.take().unwrap_or_default())
            .map_err(|_| anyhow!("blob metadata is not UTF-8"))?;
        let stmts = blob_statements(&sql, self.opts.no_owner, self.opts.clean);
        self.main()
            .batch_execute(&stmts)
            .map_err(|e| pg_error(e, "large object metadata"))?;
        Ok(())
    }

    fn blobs_wanted(&self) -> bool {
        !self.selection.partial() && !self.opts.schema_only
    }
}

/// The archive's large-object metadata as run: without `ALTER ... OWNER` for `--no-owner`,
/// and with `--clean`, each object unlinked first if it exists.
fn blob_statements(sql: &str, no_owner: bool, clean: bool) -> String {
    let mut stmts = String::new();
    for line in sql.lines() {
        if no_owner && line.starts_with("ALTER LARGE OBJECT ") {
            continue;
        }
        let created = line
            .strip_prefix("SELECT pg_catalog.lo_create('")
            .and_then(|r| r.strip_suffix("');"));
        if let Some(oid) = created.filter(|_| clean) {
            stmts.push_str(&format!(
                "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '{oid}';\n"
            ));
        }
        stmts.push_str(line);
        stmts.push('\n');
    }
    stmts
}

impl Visitor for Loader<'_> {
    fn manifest(&mut self, m: &Manifest) -> Result<()> {
        if self.opts.globals && !m.globals {
            bail!(
                "--globals: the archive holds no roles or tablespaces (extract it with --globals)"
            );
        }
        self.selection = Selection::new(&self.opts.tables, &self.opts.schemas, m)?;
        let total: u64 = m
            .tables
            .iter()
            .filter(|t| self.selection.contains(t.id))
            .map(|t| t.bytes_on_disk)
            .sum();
        self.progress = Progress::new(Some(total), self.opts.progress, self.opts.quiet);
        self.manifest = Some(m.clone());
        self.connect_target(m)
    }

    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()> {
        if name.starts_with(archive::SCHEMA_PREFIX) {
            if self.data_begun {
                bail!("schema part after the data began: the stream is out of order");
            }
            return self.schema.append(&data);
        }
        if name == archive::GLOBALS {
            // Roles first: the schema's ownership and grants name them.
            if self.opts.globals {
                self.restore_globals(data)?;
            }
            return Ok(());
        }
        // The schema parts come first; any other entry means the schema is complete.
        self.begin_data()?;
        match name {
            archive::BLOBS_SQL => self.blobs.sql = Some(data),
            // Sequence states come from the manifest; the SQL copy is for the hand-restore path.
            archive::SEQUENCES => {}
            other => bail!("unexpected archive entry {other:?}"),
        }
        Ok(())
    }

    fn chunk(&mut self, table: &Table, _no: u64, chunk: Chunk) -> Result<()> {
        self.begin_data()?;
        if self.opts.schema_only || !self.selection.contains(table.id) || chunk.data.is_empty() {
            return Ok(());
        }
        self.rows += chunk.rows;
        self.bytes += chunk.data.len() as u64;
        self.progress.update(self.bytes, self.rows);
        let placed = self.placement.worker_of(table.id);
        let job = Job {
            // A table loaded by one connection alone (all of them with -j 1, the placed ones
            // with more) is loaded by the transaction that TRUNCATEs it, so COPY FREEZE is
            // valid (PostgreSQL docs, COPY: only for a table created or truncated in the same
            // transaction). A table shared by several connections cannot be: the TRUNCATE's
            // exclusive lock would keep the others out.
            freeze: (self.opts.jobs <= 1 || placed.is_some()) && !self.opts.data_only,
            table: table.id,
            copy: if table.columns.is_empty() {
                table.qualified()
            } else {
                format!("{} ({})", table.qualified(), table.column_list())
            },
            target: table.qualified(),
            chunk,
            binary: self.converter(table),
        };
        let pool = self.pool.as_mut().expect("open until complete");
        match placed {
            Some(w) => pool.send_to(w, Work::Rows(job)),
            None => pool.send(job),
        }
    }

    fn table_done(&mut self, table: &Table) -> Result<()> {
        let Some(w) = self.placement.worker_of(table.id) else {
            return Ok(());
        };
        let Some(sql) = self.placement.take_build(table.id) else {
            return Ok(());
        };
        let what = format!("building the indexes of {}", table.qualified());
        let pool = self.pool.as_mut().expect("open until complete");
        pool.send_to(w, Work::Run { what, sql })
    }

    fn blob(&mut self, oid: u32, _size: u64, data: &mut dyn Read) -> Result<()> {
        self.begin_data()?;
        if !self.blobs_wanted() {
            return Ok(());
        }
        self.start_blobs()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off: i64 = 0;
        loop {
            let n = crate::plumbing::read_full(data, &mut buf)?;
            if n == 0 {
                break;
            }
            self.main()
                .execute(
                    "SELECT pg_catalog.lo_put($1, $2, $3)",
                    &[&oid, &off, &&buf[..n]],
                )
                .with_context(|| format!("writing large object {oid}"))?;
            off += n as i64;
        }
        Ok(())
    }

    fn trailer(&mut self, _t: &Trailer) -> Result<()> {
        self.begin_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_metadata_follows_no_owner_and_clean() {
        let sql = "SELECT pg_catalog.lo_create('16400');\nALTER LARGE OBJECT 16400 OWNER TO app;\n";
        assert_eq!(blob_statements(sql, false, false), sql);
        let s = blob_statements(sql, true, true);
        assert!(!s.contains("OWNER TO"), "{s}");
        let unlink =
            s.find("lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '16400'");
        assert!(
            unlink.is_some_and(|u| u < s.find("lo_create").unwrap()),
            "{s}"
        );
    }
}
