//! `weir-extract`: one consistent snapshot of a database, written as a weir archive.
//!
//! The leader connection opens a REPEATABLE READ transaction, exports its snapshot, reads the
//! catalog and locks the chosen tables (as `pg_dump` does, so no table can be dropped under
//! us). `pg_dump --schema-only --snapshot` and `-j N` worker connections import that same
//! snapshot, so schema and data describe one instant. Workers COPY tables (big ones in ctid
//! page ranges on PostgreSQL 14 and later) and hand row-aligned chunks to the single writer
//! through a bounded channel, which bounds memory whatever the table sizes.

use crate::archive::{self, ArchiveWriter, Column, ForeignKey, Manifest, MatView, Sequence, Table};
use crate::pg::conn::ConnParams;
use crate::pg::copy_text::{Chunk, Chunker};
use crate::pg::pattern::Pattern;
use crate::pg::sql::{pg_error, quote_ident, quote_literal};
use crate::pg::tools;
use crate::plumbing::{Output, Progress, human_bytes, random_bytes, rfc3339, unix_seconds};
use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
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
    pub globals: bool,
    /// `Some(true)` forces large objects in, `Some(false)` leaves them out; `None` is pg_dump's
    /// default (in unless tables or schemas were selected).
    pub blobs: Option<bool>,
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

/// Tables above twice this many pages (128 MiB of 8 kB pages) are split into ranges, on
/// servers with TID range scans.
pub const RANGE_PAGES: i64 = 16384;

struct WorkItem {
    table: u32,
    query: String,
}

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
    let (manifest, work, seq_sql) = plan(&mut src, opts, &pg_dump_version)?;
    let blob_oids: Vec<(u32, String)> = if manifest.blobs {
        src.client
            .query(
                "SELECT oid, pg_catalog.pg_get_userbyid(lomowner) FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    } else {
        Vec::new()
    };
    let total_disk: u64 = manifest
        .tables
        .iter()
        .filter(|t| t.data)
        .map(|t| t.bytes_on_disk)
        .sum();
    let out = Output::open(opts.output.as_deref(), true)?;
    let mut progress = Progress::new(Some(total_disk), opts.progress, opts.quiet);
    let mut w = ArchiveWriter::new(out, &manifest)?;

    let jobs = opts.jobs.max(1);
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<WorkItem>();
    for item in work {
        work_tx.send(item).expect("receiver alive");
    }
    drop(work_tx);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<Result<(u32, Chunk)>>(jobs * 2);
    let chunk_size = if opts.chunk_size == 0 {
        4 << 20
    } else {
        opts.chunk_size
    };

    let mut rows_total = 0u64;
    let mut bytes_total = 0u64;
    // Written chunks' buffers go back to the workers (see Chunker::with_pool).
    let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(jobs * 3);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..jobs {
            let pool = pool_rx.clone();
            let work_rx = work_rx.clone();
            let chunk_tx = chunk_tx.clone();
            let params = src.params.clone();
            let snapshot = src.snapshot.clone();
            scope.spawn(move || {
                if let Err(e) = worker(&params, &snapshot, &work_rx, &chunk_tx, chunk_size, pool) {
                    let _ = chunk_tx.send(Err(e));
                }
            });
        }
        drop(chunk_tx);
        let result = (|| -> Result<()> {
            write_schema(&mut w, &src, opts)?;
            if opts.globals {
                write_globals(&mut w, &src.params)?;
            }
            w.add_file(archive::SEQUENCES, seq_sql.as_bytes())?;
            for msg in chunk_rx.iter() {
                let (table, chunk) = msg?;
                rows_total += chunk.rows;
                bytes_total += chunk.data.len() as u64;
                w.add_chunk(table, &chunk)?;
                let _ = pool_tx.try_send(chunk.data);
                progress.update(bytes_total, rows_total);
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

    // Every table with data has at least one chunk, so a reader (or `cat data/N/*`) finds it.
    let empty = Chunk::new(Vec::new());
    for t in manifest.tables.iter().filter(|t| t.data) {
        if w.chunks_of(t.id) == 0 {
            w.add_chunk(t.id, &empty)?;
        }
    }
    if manifest.blobs {
        write_blobs(&mut w, &mut src.client, &blob_oids)?;
    }
    let (out, trailer) = w.finish_with_trailer()?;
    out.finish().context("writing the archive")?;
    src.client.batch_execute("COMMIT")?;
    if let Some(path) = &opts.stats {
        archive::Stats::new(&manifest, &trailer).write(path)?;
    }
    progress.clear();
    if !opts.quiet {
        let secs = progress.elapsed().as_secs_f64();
        eprintln!(
            "weir-extract: {} tables, {} rows, {} in {:.1} s ({}/s)",
            manifest.tables.iter().filter(|t| t.data).count(),
            rows_total,
            human_bytes(bytes_total),
            secs,
            human_bytes((bytes_total as f64 / secs.max(0.001)) as u64)
        );
    }
    Ok(())
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

struct Selection {
    tables: Vec<Pattern>,
    exclude_tables: Vec<Pattern>,
    schemas: Vec<Pattern>,
    exclude_schemas: Vec<Pattern>,
}

impl Selection {
    fn new(o: &ExtractOptions) -> Result<Selection> {
        Ok(Selection {
            tables: o
                .tables
                .iter()
                .map(|p| Pattern::table(p))
                .collect::<Result<_>>()?,
            exclude_tables: o
                .exclude_tables
                .iter()
                .map(|p| Pattern::table(p))
                .collect::<Result<_>>()?,
            schemas: o
                .schemas
                .iter()
                .map(|p| Pattern::schema(p))
                .collect::<Result<_>>()?,
            exclude_schemas: o
                .exclude_schemas
                .iter()
                .map(|p| Pattern::schema(p))
                .collect::<Result<_>>()?,
        })
    }

    /// pg_dump's rules: with `-t`, exactly the matching tables (`-n`/`-N` do not apply);
    /// otherwise every table of the schemas `-n` selects and `-N` does not exclude; `-T`
    /// always excludes.
    fn wants(&self, schema: &str, name: &str, visible: bool) -> bool {
        if self
            .exclude_tables
            .iter()
            .any(|p| p.matches_table(schema, name, visible))
        {
            return false;
        }
        if !self.tables.is_empty() {
            return self
                .tables
                .iter()
                .any(|p| p.matches_table(schema, name, visible));
        }
        if !self.schemas.is_empty() && !self.schemas.iter().any(|p| p.matches_schema(schema)) {
            return false;
        }
        !self
            .exclude_schemas
            .iter()
            .any(|p| p.matches_schema(schema))
    }

    fn narrowed(&self) -> bool {
        !self.tables.is_empty() || !self.schemas.is_empty()
    }
}

/// Reads the catalog inside the snapshot and decides what goes into the archive.
fn plan(
    src: &mut Source,
    opts: &ExtractOptions,
    pg_dump_version: &str,
) -> Result<(Manifest, Vec<WorkItem>, String)> {
    let sel = Selection::new(opts)?;
    let no_data: Vec<Pattern> = opts
        .exclude_table_data
        .iter()
        .map(|p| Pattern::table(p))
        .collect::<Result<_>>()?;
    let mut wheres: Vec<(Pattern, String)> = Vec::new();
    for w in &opts.wheres {
        let (t, cond) = w
            .split_once(':')
            .ok_or_else(|| anyhow!("--where {w:?}: expected TABLE:CONDITION"))?;
        wheres.push((Pattern::table(t)?, cond.to_string()));
    }
    let c = &mut src.client;
    // Unqualified patterns match what the user's search path makes visible, so the catalog is
    // read with the default search path, as pg_dump does (expand_table_name_patterns); every
    // name in these queries is qualified.
    c.batch_execute("RESET search_path")?;
    let rows = c.query(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                pg_catalog.pg_table_is_visible(c.oid), \
                CASE WHEN c.relkind = 'r' THEN pg_catalog.pg_relation_size(c.oid) ELSE 0 END, \
                x.cond, c.relispopulated, \
                pg_catalog.current_setting('block_size')::int8, \
                (SELECT ARRAY[rn.nspname::text, rc.relname::text] FROM pg_catalog.pg_class rc \
                   JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
                  WHERE c.relispartition AND rc.oid = pg_catalog.pg_partition_root(c.oid)) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN LATERAL (SELECT e.extcondition[pg_catalog.array_position(e.extconfig, c.oid)] AS cond, true AS isconfig \
                            FROM pg_catalog.pg_extension e WHERE c.oid = ANY (e.extconfig)) x ON true \
         WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't' \
           AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
           AND (x.isconfig OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')) \
         ORDER BY n.nspname, c.relname",
        &[],
    )?;
    let mut tables = Vec::new();
    let mut matviews = Vec::new();
    let mut used_patterns: HashSet<usize> = HashSet::new();
    let mut block_size: i64 = 8192;
    for r in &rows {
        let (oid, schema, name, kind): (u32, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let visible: bool = r.get(4);
        block_size = r.get(8);
        for (i, p) in sel.tables.iter().enumerate() {
            if p.matches_table(&schema, &name, visible) {
                used_patterns.insert(i);
            }
        }
        if !sel.wants(&schema, &name, visible) {
            continue;
        }
        if kind == "m" {
            matviews.push(MatView {
                schema,
                name,
                populated: r.get(7),
            });
            continue;
        }
        let ext_cond: Option<String> = r.get(6);
        let mut filters: Vec<String> = Vec::new();
        if let Some(c) = ext_cond.filter(|c| !c.trim().is_empty()) {
            let c = c.trim();
            let c = c
                .strip_prefix("WHERE ")
                .or_else(|| c.strip_prefix("where "))
                .unwrap_or(c);
            filters.push(c.to_string());
        }
        for (p, cond) in &wheres {
            if p.matches_table(&schema, &name, visible) {
                filters.push(cond.clone());
            }
        }
        let data = kind == "r"
            && !no_data
                .iter()
                .any(|p| p.matches_table(&schema, &name, visible));
        let size: i64 = r.get(5);
        let root: Option<Vec<String>> = r.get(9);
        tables.push(Table {
            id: tables.len() as u32,
            schema,
            name,
            oid,
            relkind: kind,
            columns: Vec::new(),
            data,
            filter: (!filters.is_empty()).then(|| {
                filters
                    .iter()
                    .map(|f| format!("({f})"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            }),
            bytes_on_disk: size.max(0) as u64,
            owned_oids: Vec::new(),
            foreign_keys: Vec::new(),
            partition_root: root.and_then(|v| <[String; 2]>::try_from(v).ok()),
        });
    }
    // An include pattern that matches nothing is a mistake worth stopping for (pg_dump's
    // --strict-names behaviour, applied always: a backup that silently skips a table is worse).
    for (i, p) in sel.tables.iter().enumerate() {
        if !used_patterns.contains(&i) {
            bail!("no table matches pattern \"{}\"", p.text);
        }
    }
    if !sel.schemas.is_empty() {
        // A schema may exist with no tables (only views or functions): pg_dump accepts it.
        let names: Vec<String> = c
            .query(
                "SELECT nspname::text FROM pg_catalog.pg_namespace \
                 WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for p in &sel.schemas {
            if !names.iter().any(|n| p.matches_schema(n)) {
                bail!("no schema matches pattern \"{}\"", p.text);
            }
        }
    }
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let by_oid: HashMap<u32, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    // Columns, leaving out generated ones as pg_dump does (they are recomputed on load).
    for r in c.query(
        "SELECT a.attrelid, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = ANY ($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
         ORDER BY a.attrelid, a.attnum",
        &[&oids],
    )? {
        let i = by_oid[&r.get::<_, u32>(0)];
        tables[i].columns.push(Column {
            name: r.get(1),
            type_name: r.get(2),
        });
    }
    for r in c.query(
        "SELECT indrelid, indexrelid FROM pg_catalog.pg_index WHERE indrelid = ANY ($1) \
         UNION ALL SELECT conrelid, oid FROM pg_catalog.pg_constraint WHERE conrelid = ANY ($1) AND contype <> 'f' \
         UNION ALL SELECT tgrelid, oid FROM pg_catalog.pg_trigger WHERE tgrelid = ANY ($1) AND NOT tgisinternal \
         UNION ALL SELECT polrelid, oid FROM pg_catalog.pg_policy WHERE polrelid = ANY ($1) \
         UNION ALL SELECT adrelid, oid FROM pg_catalog.pg_attrdef WHERE adrelid = ANY ($1) \
         UNION ALL SELECT d.refobjid, d.objid FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
           WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
             AND d.refobjid = ANY ($1) AND d.deptype IN ('a', 'i')",
        &[&oids],
    )? {
        let i = by_oid[&r.get::<_, u32>(0)];
        tables[i].owned_oids.push(r.get(1));
    }
    for r in c.query(
        "SELECT conrelid, oid, confrelid FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conrelid = ANY ($1)",
        &[&oids],
    )? {
        let i = by_oid[&r.get::<_, u32>(0)];
        tables[i].foreign_keys.push(ForeignKey {
            oid: r.get(1),
            references_oid: r.get(2),
        });
    }
    if !oids.is_empty() {
        // Hold the tables against concurrent DROP or ALTER for the whole run, as pg_dump does.
        for batch in tables.chunks(500) {
            let names: Vec<String> = batch.iter().map(|t| t.qualified()).collect();
            c.batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))?;
        }
    }
    let (sequences, seq_sql) = read_sequences(c, &sel, &by_oid)?;
    c.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
    let blobs = opts.blobs.unwrap_or(!sel.narrowed());
    let range = if opts.split_pages > 0 {
        opts.split_pages
    } else {
        RANGE_PAGES
    };
    let work = work_items(&tables, src.server_num, block_size, range);
    let now = std::time::SystemTime::now();
    let manifest = Manifest {
        format: archive::FORMAT_NAME.into(),
        format_version: archive::FORMAT_VERSION,
        archive_id: random_id(),
        weir_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: unix_seconds(now),
        created: rfc3339(now),
        server_version: src.server_version.clone(),
        server_version_num: src.server_num,
        pg_dump_version: pg_dump_version.into(),
        database: src.database.clone(),
        encoding: src.encoding.clone(),
        data_encoding: if src.encoding == "SQL_ASCII" {
            "SQL_ASCII".into()
        } else {
            "UTF8".into()
        },
        snapshot: src.snapshot.clone(),
        masked: false,
        mask: None,
        globals: opts.globals,
        blobs,
        tables,
        sequences,
        matviews,
    };
    Ok((manifest, work, seq_sql))
}

fn read_sequences(
    c: &mut postgres::Client,
    sel: &Selection,
    tables: &HashMap<u32, usize>,
) -> Result<(Vec<Sequence>, String)> {
    let mut out = Vec::new();
    let mut sql = String::new();
    for r in c.query(
        "SELECT c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_table_is_visible(c.oid), \
                (SELECT d.refobjid FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                   AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   AND d.deptype IN ('a', 'i') LIMIT 1) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
         ORDER BY n.nspname, c.relname",
        &[],
    )? {
        let (oid, schema, name, visible): (u32, String, String, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let owner: Option<u32> = r.get(4);
        let wanted = match owner {
            Some(t) if tables.contains_key(&t) => true,
            _ => sel.wants(&schema, &name, visible),
        };
        if !wanted {
            continue;
        }
        let q = format!(
            "SELECT last_value, is_called FROM {}.{}",
            quote_ident(&schema),
            quote_ident(&name)
        );
        let v = c.query_one(&q, &[])?;
        let s = Sequence {
            schema,
            name,
            oid,
            last_value: v.get(0),
            is_called: v.get(1),
            owner_table_oid: owner.filter(|t| tables.contains_key(t)),
        };
        sql.push_str(&s.setval_sql());
        out.push(s);
    }
    Ok((out, sql))
}

/// Splits the data into work: one COPY per table, or page ranges for big tables on servers
/// with TID range scans (14+). The order takes the first range of every table (biggest table
/// first), then the second ranges, and so on: workers then read different tables at the same
/// time, so the archive interleaves them and `weir-load` can load them in parallel, each on
/// one connection with COPY FREEZE.
fn work_items(tables: &[Table], server_num: u32, block_size: i64, range: i64) -> Vec<WorkItem> {
    // (round, table size, item)
    let mut items: Vec<(usize, u64, WorkItem)> = Vec::new();
    for t in tables.iter().filter(|t| t.data) {
        let pages = t.bytes_on_disk as i64 / block_size.max(1);
        let cols = t.column_list();
        if server_num >= 140000 && pages > 2 * range {
            let mut start = 0;
            while start < pages {
                let end = start + range;
                let mut cond = format!("ctid >= '({start},0)'::pg_catalog.tid");
                // The last range is open-ended: pages added since the size was read still hold
                // no rows our snapshot can see, and the range costs nothing to leave open.
                if end < pages {
                    cond.push_str(&format!(" AND ctid < '({end},0)'::pg_catalog.tid"));
                }
                if let Some(f) = &t.filter {
                    cond.push_str(&format!(" AND {f}"));
                }
                items.push((
                    (start / range) as usize,
                    t.bytes_on_disk,
                    WorkItem {
                        table: t.id,
                        query: format!(
                            "COPY (SELECT {cols} FROM ONLY {} WHERE {cond}) TO STDOUT",
                            t.qualified()
                        ),
                    },
                ));
                start = end;
            }
        } else {
            let query = match &t.filter {
                Some(f) => format!(
                    "COPY (SELECT {cols} FROM ONLY {} WHERE {f}) TO STDOUT",
                    t.qualified()
                ),
                None if t.columns.is_empty() => format!("COPY {} TO STDOUT", t.qualified()),
                None => format!("COPY {} ({cols}) TO STDOUT", t.qualified()),
            };
            items.push((0, t.bytes_on_disk, WorkItem { table: t.id, query }));
        }
    }
    items.sort_by_key(|(round, size, _)| (*round, std::cmp::Reverse(*size)));
    items.into_iter().map(|(_, _, w)| w).collect()
}

fn worker(
    params: &ConnParams,
    snapshot: &str,
    work: &crossbeam_channel::Receiver<WorkItem>,
    out: &crossbeam_channel::Sender<Result<(u32, Chunk)>>,
    chunk_size: usize,
    pool: crossbeam_channel::Receiver<Vec<u8>>,
) -> Result<()> {
    // One runtime per worker, entered once for the whole run: the synchronous client would
    // enter it once per COPY row, which costs more CPU than the rest of the work together.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = params.connect_async().await?;
        c.batch_execute(SESSION_SETUP).await?;
        c.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .await?;
        // Blocking receives and sends are fine here: this runtime serves only this worker.
        for item in work.iter() {
            let stream = c
                .copy_out(item.query.as_str())
                .await
                .map_err(|e| pg_error(e, &item.query))?;
            let mut stream = std::pin::pin!(stream);
            let mut chunker = Chunker::with_pool(chunk_size, pool.clone());
            while let Some(bytes) = stream.next().await {
                let bytes = bytes.map_err(|e| pg_error(e, &item.query))?;
                if let Some(data) = chunker.push(&bytes) {
                    if out.send(Ok((item.table, Chunk::new(data)))).is_err() {
                        return Ok(());
                    }
                }
            }
            if let Some(data) = chunker.finish()? {
                if out.send(Ok((item.table, Chunk::new(data)))).is_err() {
                    return Ok(());
                }
            }
        }
        c.batch_execute("COMMIT").await?;
        Ok(())
    })
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

fn random_id() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    hex::encode(b)
}
