//! `weir-load`: restores a weir archive read from a stream.
//!
//! Order, as `pg_restore` does it: the schema's pre-data section (types, tables) through
//! `pg_restore`, then the rows through COPY on `-j N` connections, then the post-data section
//! (indexes, constraints, triggers) through `pg_restore -j N`, then sequences and materialized
//! views. Triggers and foreign keys are created after the rows, so they neither fire nor check
//! during the load.
//!
//! Nothing is committed before the archive proved complete: every worker keeps its COPYs in
//! one open transaction, and all of them commit only after the trailer arrived and every count
//! and digest matched. A truncated or corrupt stream rolls back every row, and a database that
//! `--create` made for this load is dropped again.

use crate::archive::{self, Manifest, Table, Trailer, Visitor};
use crate::pg::conn::ConnParams;
use crate::pg::copy_text::Chunk;
use crate::pg::pattern::Pattern;
use crate::pg::sql::{pg_error, quote_ident};
use crate::pg::tools;
use crate::plumbing::{ExitCode, Progress, coded, human_bytes, signals};
use anyhow::{Context, Result, anyhow, bail};
use async_channel::{Receiver, Sender};
use std::collections::HashSet;
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

/// A database we created, dropped again if the load fails (also on SIGINT/SIGTERM).
struct CreatedDb {
    admin: ConnParams,
    name: String,
    cleanup: u64,
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    params: ConnParams,
    manifest: Option<Manifest>,
    created: Option<CreatedDb>,
    main: Option<postgres::Client>,
    schema_file: Option<tempfile::NamedTempFile>,
    schema_bytes: u64,
    pre_data_done: bool,
    /// Table ids whose data we restore.
    selected: HashSet<u32>,
    /// The `-n` patterns, parsed once.
    schema_patterns: Vec<Pattern>,
    partial: bool,
    toc_list: Option<tempfile::NamedTempFile>,
    workers: Vec<Worker>,
    /// Chunks, taken by whichever worker is free.
    queue_tx: Option<Sender<Job>>,
    queue_rx: Option<Receiver<Job>>,
    blobs_sql: Option<Vec<u8>>,
    blobs_started: bool,
    progress: Progress,
    rows: u64,
    bytes: u64,
}

/// A load connection on its own thread and runtime. It loads until its queues close, reports
/// on `ready` whether everything it was given went in, then waits on `decide`: `true` commits,
/// `false` (or the sender going away) rolls back.
struct Worker {
    ready: std::sync::mpsc::Receiver<Result<()>>,
    decide: Option<std::sync::mpsc::Sender<bool>>,
    handle: Option<std::thread::JoinHandle<Result<()>>>,
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions, params: ConnParams) -> Loader<'o> {
        Loader {
            opts,
            params,
            manifest: None,
            created: None,
            main: None,
            schema_file: None,
            schema_bytes: 0,
            pre_data_done: false,
            selected: HashSet::new(),
            schema_patterns: Vec::new(),
            partial: false,
            toc_list: None,
            workers: Vec::new(),
            queue_tx: None,
            queue_rx: None,
            blobs_sql: None,
            blobs_started: false,
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

    /// Decides which tables to restore (`-t`, `-n`).
    fn select(&mut self, m: &Manifest) -> Result<()> {
        let tables: Vec<Pattern> = self
            .opts
            .tables
            .iter()
            .map(|p| Pattern::table(p))
            .collect::<Result<_>>()?;
        let schemas: Vec<Pattern> = self
            .opts
            .schemas
            .iter()
            .map(|p| Pattern::schema(p))
            .collect::<Result<_>>()?;
        self.partial = !tables.is_empty() || !schemas.is_empty();
        for p in &tables {
            if !m
                .tables
                .iter()
                .any(|t| p.matches_table(&t.schema, &t.name, true))
            {
                bail!("no table in the archive matches pattern \"{}\"", p.text);
            }
        }
        for p in &schemas {
            if !m.tables.iter().any(|t| p.matches_schema(&t.schema)) {
                bail!(
                    "no table in the archive is in a schema matching \"{}\"",
                    p.text
                );
            }
        }
        for t in &m.tables {
            // An unqualified -t pattern matches a table of any schema: the archive has no
            // search path to say which tables would be "visible".
            let by_table = tables.is_empty()
                || tables
                    .iter()
                    .any(|p| p.matches_table(&t.schema, &t.name, true));
            let by_schema =
                schemas.is_empty() || schemas.iter().any(|p| p.matches_schema(&t.schema));
            if by_table && by_schema {
                self.selected.insert(t.id);
            }
        }
        self.schema_patterns = schemas;
        Ok(())
    }

    fn connect_target(&mut self, m: &Manifest) -> Result<()> {
        if self.opts.create {
            self.create_database(m)?;
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

    fn create_database(&mut self, m: &Manifest) -> Result<()> {
        let name = self.params.dbname().to_string();
        let mut last = None;
        for maint in ["postgres", "template1"] {
            let admin = self.params.with_dbname(maint);
            match admin.connect() {
                Ok(mut c) => {
                    let enc = if m.data_encoding == "SQL_ASCII" {
                        "SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C".to_string()
                    } else {
                        m.encoding.replace('\'', "")
                    };
                    let sql = format!(
                        "CREATE DATABASE {} TEMPLATE template0 ENCODING '{enc}'",
                        quote_ident(&name)
                    );
                    c.batch_execute(&sql)
                        .map_err(|e| pg_error(e, &sql))
                        .with_context(|| format!("creating database \"{name}\""))?;
                    let drop_admin = admin.clone();
                    let drop_name = name.clone();
                    let cleanup = signals::on_cleanup(move || {
                        let _ = drop_database(&drop_admin, &drop_name);
                    });
                    self.created = Some(CreatedDb {
                        admin,
                        name,
                        cleanup,
                    });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once")).context("connecting to create the database")
    }

    /// Spools the schema (pg_dump custom format) to a private temporary file: `pg_restore`
    /// needs to read it twice (pre-data, post-data) and to seek in it for `-j`.
    fn schema_part(&mut self, data: &[u8]) -> Result<()> {
        if self.pre_data_done {
            bail!("schema part after the data began: the stream is out of order");
        }
        if self.schema_file.is_none() {
            self.schema_file = Some(tempfile::Builder::new().prefix("weir-schema-").tempfile()?);
        }
        let f = self.schema_file.as_mut().expect("just made");
        f.write_all(data)?;
        self.schema_bytes += data.len() as u64;
        Ok(())
    }

    /// pg_restore options shared by every section.
    fn restore_args(&self, section: &str) -> Vec<String> {
        let mut a = vec![format!("--section={section}"), "--exit-on-error".into()];
        if self.opts.no_owner {
            a.push("--no-owner".into());
        }
        if self.opts.no_acl {
            a.push("--no-acl".into());
        }
        for s in &self.opts.schemas {
            a.push(format!("--schema={s}"));
        }
        if let Some(l) = &self.toc_list {
            a.push(format!("--use-list={}", l.path().display()));
        }
        a
    }

    fn schema_path(&self) -> Result<String> {
        Ok(self
            .schema_file
            .as_ref()
            .ok_or_else(|| anyhow!("the archive has no schema"))?
            .path()
            .display()
            .to_string())
    }

    /// Runs the pre-data section and starts the data workers; called once, at the first entry
    /// after the schema.
    fn begin_data(&mut self) -> Result<()> {
        if self.pre_data_done {
            return Ok(());
        }
        self.pre_data_done = true;
        let m = &self.manifest.clone().expect("manifest comes first");
        if let Some(f) = self.schema_file.as_mut() {
            f.flush()?;
        }
        if self.partial && !self.opts.tables.is_empty() {
            self.write_toc_list(m)?;
        }
        if !self.opts.data_only {
            if self.partial {
                let schemas: HashSet<&str> = m
                    .tables
                    .iter()
                    .filter(|t| self.selected.contains(&t.id))
                    .map(|t| t.schema.as_str())
                    .collect();
                for s in schemas {
                    self.main().batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS {}",
                        quote_ident(s)
                    ))?;
                }
            }
            if self.opts.clean {
                self.clean()?;
            }
            let mut args = self.restore_args("pre-data");
            args.push("--single-transaction".into());
            args.push(format!("--dbname={}", self.params.dbname_conninfo()));
            args.push(self.schema_path()?);
            tools::spawn("pg_restore", &args, &self.params, Stdio::null(), false)?
                .wait()
                .context("restoring the schema (pre-data)")?;
            self.note("schema (pre-data) restored");
        }
        self.main().batch_execute("BEGIN")?;
        if !self.opts.schema_only {
            let jobs = self.opts.jobs.max(1);
            // Bounded: the reader waits when the workers fall behind, which bounds memory.
            let (tx, rx) = async_channel::bounded::<Job>(2 * jobs);
            self.queue_tx = Some(tx);
            self.queue_rx = Some(rx);
            for _ in 0..jobs {
                let w = self.spawn_worker()?;
                self.workers.push(w);
            }
        }
        Ok(())
    }

    /// `--clean`: drops what the archive will create, with the DROP statements pg_restore
    /// writes for the whole archive (all sections, so foreign keys go before their tables).
    fn clean(&mut self) -> Result<()> {
        let mut args = vec![
            "--clean".to_string(),
            "--if-exists".into(),
            "--file=-".into(),
        ];
        // Every section, and the same filters as the restore itself.
        args.extend(self.restore_args("pre-data").into_iter().skip(2));
        args.push(self.schema_path()?);
        let mut p = tools::spawn("pg_restore", &args, &self.params, Stdio::null(), true)?;
        let mut script = String::new();
        p.stdout().expect("piped").read_to_string(&mut script)?;
        p.wait().context("preparing --clean")?;
        // The DROPs come first, before the first object's "-- Name:" header.
        let drops: String = script
            .split("\n--\n-- Name: ")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect();
        self.main()
            .batch_execute(&format!("BEGIN; {drops}; COMMIT"))
            .map_err(|e| pg_error(e, "DROP statements of --clean"))?;
        self.main()
            .batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
        Ok(())
    }

    /// For `-t`: a pg_restore list of the chosen tables and what belongs to them (indexes,
    /// constraints, triggers, policies, defaults, owned sequences, and foreign keys whose
    /// referenced table is chosen too), found by object OID in the archive's table of contents.
    fn write_toc_list(&mut self, m: &Manifest) -> Result<()> {
        let chosen = self.chosen_oids(m);
        let mut wanted: HashSet<u32> = chosen.clone();
        for t in m.tables.iter().filter(|t| chosen.contains(&t.oid)) {
            wanted.extend(t.owned_oids.iter().copied());
            for fk in &t.foreign_keys {
                if chosen.contains(&fk.references_oid) {
                    wanted.insert(fk.oid);
                }
            }
        }
        for s in &m.sequences {
            if s.owner_table_oid.is_some_and(|o| chosen.contains(&o)) {
                wanted.insert(s.oid);
            }
        }
        let args = vec!["--list".to_string(), self.schema_path()?];
        let mut p = tools::spawn("pg_restore", &args, &self.params, Stdio::null(), true)?;
        let mut toc = String::new();
        p.stdout().expect("piped").read_to_string(&mut toc)?;
        p.wait().context("listing the schema")?;
        let mut list = tempfile::Builder::new().prefix("weir-list-").tempfile()?;
        for line in toc.lines() {
            if line.starts_with(';') {
                continue;
            }
            // "ID; CATALOG-OID OBJECT-OID TYPE SCHEMA NAME OWNER"
            let oid = line
                .split_once(';')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|o| o.parse::<u32>().ok());
            if oid.is_some_and(|o| wanted.contains(&o)) {
                writeln!(list, "{line}")?;
            }
        }
        list.flush()?;
        self.toc_list = Some(list);
        Ok(())
    }

    fn spawn_worker(&mut self) -> Result<Worker> {
        let queue = self.queue_rx.clone().expect("made before the workers");
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (decide, decide_rx) = std::sync::mpsc::channel::<bool>();
        let params = self.params.clone();
        let disable_triggers = self.opts.disable_triggers;
        // Connect before returning, so a refused connection is reported at once.
        let (started_tx, started) = std::sync::mpsc::channel::<Result<()>>();
        let handle = std::thread::spawn(move || -> Result<()> {
            // The connection's I/O is driven by this runtime whenever the worker awaits, also
            // while it waits for the next chunk, so the server never waits for our socket.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(async {
                let c = params.connect_async().await?;
                c.batch_execute("SELECT pg_catalog.set_config('search_path', '', false); BEGIN")
                    .await?;
                if disable_triggers {
                    // Disables user triggers and foreign-key checks for this session only;
                    // needs a superuser, as pg_restore --disable-triggers does.
                    c.batch_execute("SET LOCAL session_replication_role = replica")
                        .await
                        .context("--disable-triggers")?;
                }
                Ok::<_, anyhow::Error>(c)
            });
            let client = match client {
                Ok(c) => {
                    let _ = started_tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return Ok(());
                }
            };
            let loaded = rt.block_on(load_worker(&client, &queue));
            let ok = loaded.is_ok();
            let _ = ready_tx.send(loaded);
            if ok && decide_rx.recv() == Ok(true) {
                rt.block_on(client.batch_execute("COMMIT"))
                    .context("committing loaded rows")?;
            }
            Ok(())
        });
        started
            .recv()
            .map_err(|_| anyhow!("a load worker failed to start"))??;
        Ok(Worker {
            ready,
            decide: Some(decide),
            handle: Some(handle),
        })
    }

    fn close_channels(&mut self) {
        self.queue_tx.take();
        self.queue_rx.take();
    }

    /// Tells every worker to roll back, and waits for them.
    fn roll_back_workers(&mut self) {
        self.close_channels();
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
        self.close_channels();
        let mut err = None;
        for w in &mut self.workers {
            if let Ok(Err(e)) = w.ready.recv() {
                err.get_or_insert(e);
            }
        }
        self.roll_back_workers();
        err.unwrap_or_else(|| anyhow!("a load worker stopped"))
    }

    fn complete(&mut self, m: &Manifest, _t: &Trailer) -> Result<()> {
        // Commit only now: the trailer matched, every row of every table is accounted for.
        self.close_channels();
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
            self.roll_back_workers();
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
        self.main()
            .batch_execute("COMMIT")
            .context("committing large objects")?;
        self.note("data verified and committed");
        if let Some(created) = &self.created {
            signals::forget(created.cleanup);
        }
        let created = self.created.take();
        let finish = (|| -> Result<()> {
            if !self.opts.schema_only {
                self.set_sequences(m)?;
            }
            if !self.opts.data_only {
                let mut args = self.restore_args("post-data");
                args.push(format!("--jobs={}", self.opts.jobs.max(1)));
                args.push(format!("--dbname={}", self.params.dbname_conninfo()));
                args.push(self.schema_path()?);
                tools::spawn("pg_restore", &args, &self.params, Stdio::null(), false)?
                    .wait()
                    .context("restoring indexes, constraints and triggers (post-data)")?;
                self.note("indexes, constraints, triggers (post-data) restored");
            }
            if !self.opts.schema_only {
                self.refresh_matviews(m)?;
                self.note("sequences set, materialized views refreshed");
            }
            Ok(())
        })();
        if let Err(e) = finish {
            // The rows are in, but the schema is not complete: a database we created for this
            // load is of no use half-built, so it goes; otherwise the user sees what failed.
            if let Some(c) = created {
                let _ = drop_database(&c.admin, &c.name);
            }
            return Err(e);
        }
        self.progress.clear();
        if !self.opts.quiet {
            let secs = self.progress.elapsed().as_secs_f64();
            eprintln!(
                "weir-load: {} tables, {} rows, {} in {:.1} s ({}/s)",
                m.tables
                    .iter()
                    .filter(|t| t.data && self.selected.contains(&t.id))
                    .count(),
                self.rows,
                human_bytes(self.bytes),
                secs,
                human_bytes((self.bytes as f64 / secs.max(0.001)) as u64)
            );
        }
        Ok(())
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

    /// The source OIDs of the tables being restored.
    fn chosen_oids(&self, m: &Manifest) -> HashSet<u32> {
        m.tables
            .iter()
            .filter(|t| self.selected.contains(&t.id))
            .map(|t| t.oid)
            .collect()
    }

    /// With `-n` and no `-t`, objects that belong to no table (sequences, materialized
    /// views) come along when their schema was chosen.
    fn schema_only_choice(&self, schema: &str) -> bool {
        self.opts.tables.is_empty()
            && self
                .schema_patterns
                .iter()
                .any(|p| p.matches_schema(schema))
    }

    fn set_sequences(&mut self, m: &Manifest) -> Result<()> {
        let chosen = self.chosen_oids(m);
        let partial = self.partial;
        let mut sql = String::new();
        for s in &m.sequences {
            let owned_by_chosen = s.owner_table_oid.is_some_and(|o| chosen.contains(&o));
            if !partial || owned_by_chosen || self.schema_only_choice(&s.schema) {
                sql.push_str(&s.setval_sql());
            }
        }
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
        let mut todo: Vec<String> = m
            .matviews
            .iter()
            .filter(|v| v.populated)
            .filter(|v| !self.partial || self.schema_only_choice(&v.schema))
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
        self.roll_back_workers();
        self.main.take();
        if let Some(c) = self.created.take() {
            signals::forget(c.cleanup);
            let _ = drop_database(&c.admin, &c.name);
        }
    }

    fn start_blobs(&mut self) -> Result<()> {
        if self.blobs_started {
            return Ok(());
        }
        self.blobs_started = true;
        let sql = String::from_utf8(self.blobs_sql.take().unwrap_or_default())
            .map_err(|_| anyhow!("blob metadata is not UTF-8"))?;
        let no_owner = self.opts.no_owner;
        let clean = self.opts.clean;
        let mut stmts = String::new();
        for line in sql.lines() {
            if no_owner && line.starts_with("ALTER LARGE OBJECT ") {
                continue;
            }
            if clean {
                if let Some(oid) = line
                    .strip_prefix("SELECT pg_catalog.lo_create('")
                    .and_then(|r| r.strip_suffix("');"))
                {
                    stmts.push_str(&format!(
                        "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '{oid}';\n"
                    ));
                }
            }
            stmts.push_str(line);
            stmts.push('\n');
        }
        self.main()
            .batch_execute(&stmts)
            .map_err(|e| pg_error(e, "large object metadata"))?;
        Ok(())
    }

    fn blobs_wanted(&self) -> bool {
        !self.partial && !self.opts.schema_only
    }
}

impl Visitor for Loader<'_> {
    fn manifest(&mut self, m: &Manifest) -> Result<()> {
        if self.opts.globals && !m.globals {
            bail!(
                "--globals: the archive holds no roles or tablespaces (extract it with --globals)"
            );
        }
        self.select(m)?;
        let total: u64 = m
            .tables
            .iter()
            .filter(|t| self.selected.contains(&t.id))
            .map(|t| t.bytes_on_disk)
            .sum();
        self.progress = Progress::new(Some(total), self.opts.progress, self.opts.quiet);
        self.manifest = Some(m.clone());
        self.connect_target(m)
    }

    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()> {
        if name.starts_with(archive::SCHEMA_PREFIX) {
            return self.schema_part(&data);
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
            archive::BLOBS_SQL => self.blobs_sql = Some(data),
            // Sequence states come from the manifest; the SQL copy is for the hand-restore path.
            archive::SEQUENCES => {}
            other => bail!("unexpected archive entry {other:?}"),
        }
        Ok(())
    }

    fn chunk(&mut self, table: &Table, _no: u64, chunk: Chunk) -> Result<()> {
        self.begin_data()?;
        if self.opts.schema_only || !self.selected.contains(&table.id) || chunk.data.is_empty() {
            return Ok(());
        }
        self.rows += chunk.rows;
        self.bytes += chunk.data.len() as u64;
        self.progress.update(self.bytes, self.rows);
        let msg = Job {
            // With one connection, every table is loaded by the transaction that TRUNCATEs
            // it, so COPY FREEZE is valid (PostgreSQL docs, COPY: only for a table created or
            // truncated in the same transaction). With several, chunks of a table go to
            // whichever connection is free: measured faster than one table per connection,
            // because the archive's interleaving of tables rarely matches the speeds at which
            // they load, and an idle connection then waits for its table's next chunk. The
            // TRUNCATE's exclusive lock would make FREEZE and sharing exclusive.
            freeze: self.opts.jobs <= 1 && !self.opts.data_only,
            table: table.id,
            copy: if table.columns.is_empty() {
                table.qualified()
            } else {
                format!("{} ({})", table.qualified(), table.column_list())
            },
            target: table.qualified(),
            chunk,
        };
        let tx = self.queue_tx.as_ref().expect("open until complete");
        if tx.send_blocking(msg).is_err() {
            return Err(self.worker_error());
        }
        Ok(())
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
            let n = read_full(data, &mut buf)?;
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

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// One load connection: runs COPY for each run of chunks of one table, all in one transaction
/// that the leader commits only after the archive verified.
async fn load_worker(client: &tokio_postgres::Client, queue: &Receiver<Job>) -> Result<()> {
    use futures_util::SinkExt;
    let mut truncated: HashSet<u32> = HashSet::new();
    let mut pending = queue.recv().await.ok();
    while let Some(job) = pending.take() {
        // The table is new and empty, so TRUNCATE costs nothing, and the rows land frozen:
        // no later hint-bit rewrite or anti-wraparound vacuum of them.
        let with = if job.freeze {
            if truncated.insert(job.table) {
                let sql = format!("TRUNCATE ONLY {}", job.target);
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| pg_error(e, &sql))?;
            }
            " (FREEZE)"
        } else {
            ""
        };
        let sql = format!("COPY {} FROM STDIN{with}", job.copy);
        let sink = client
            .copy_in::<_, bytes::Bytes>(sql.as_str())
            .await
            .map_err(|e| pg_error(e, &sql))?;
        let mut sink = std::pin::pin!(sink);
        // The chunk's buffer becomes the message as it is: no copy.
        let mut sent = sink.send(bytes::Bytes::from(job.chunk.data)).await;
        while sent.is_ok() {
            match queue.recv().await.ok() {
                Some(next) if next.table == job.table => {
                    sent = sink.send(bytes::Bytes::from(next.chunk.data)).await;
                }
                Some(next) => {
                    pending = Some(next);
                    break;
                }
                None => break,
            }
        }
        sent.map_err(|e| pg_error(e, &sql))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| pg_error(e, &sql))?;
    }
    Ok(())
}

/// One chunk of COPY data for a worker.
struct Job {
    table: u32,
    /// TRUNCATE first (once per table and worker) and COPY with FREEZE.
    freeze: bool,
    /// `schema.table (columns)` for COPY.
    copy: String,
    /// `schema.table` for TRUNCATE.
    target: String,
    chunk: Chunk,
}

fn drop_database(admin: &ConnParams, name: &str) -> Result<()> {
    let mut c = admin.connect()?;
    let v: i32 = c
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int4",
            &[],
        )?
        .get(0);
    let force = if v >= 130000 { " WITH (FORCE)" } else { "" };
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}{force}",
        quote_ident(name)
    ))?;
    Ok(())
}
