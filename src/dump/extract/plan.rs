//! What an extraction takes: the catalog read inside the snapshot (tables, partitions,
//! materialized views, columns, what each table owns, foreign, unique and partition keys,
//! sequences), pg_dump's selection rules applied to it, the chosen tables locked, and the work
//! cut into COPY items.

use super::subset;
use super::{ExtractOptions, Source};
use crate::archive::{
    self, Column, ForeignKey, Manifest, MatView, Sequence, SubsetInfo, Table, UniqueKey,
};
use crate::pg::lock_table::LockTable;
use crate::pg::page_ranges::{self, RANGE_PAGES};
use crate::pg::pattern::Pattern;
use crate::pg::sql::quote_ident;
use crate::plumbing::{random_bytes, rfc3339, unix_seconds};
use anyhow::{Result, anyhow, bail};
use std::collections::{HashMap, HashSet};

/// One COPY for a worker: a table, or a page range of one.
pub struct WorkItem {
    pub table: u32,
    pub query: String,
}

/// Tables a worker copies in one transaction before it commits and imports the snapshot
/// again: its locks stay bounded however many tables there are (the leader's lock keeps
/// each table safe meanwhile).
pub const WORKER_TABLES: usize = 32;

/// The archive's manifest and the work.
pub struct Plan {
    pub manifest: Manifest,
    pub work: Vec<WorkItem>,
    /// The leader let its locks go again so that pg_dump can take its own (see [`plan`]):
    /// it must take them back, with [`lock`], after pg_dump and before the data.
    pub relock: bool,
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

/// What of a chosen table's rows goes in: `--exclude-table-data` leaves them out, `--where`
/// and an extension configuration table's own condition filter them.
struct Filters {
    no_data: Vec<Pattern>,
    wheres: Vec<(Pattern, String)>,
    /// Leave out the rows of unlogged tables (a standby, or --no-unlogged-table-data).
    no_unlogged: bool,
    /// How many tables' rows that left out.
    unlogged_left_out: std::cell::Cell<usize>,
}

impl Filters {
    fn new(opts: &ExtractOptions) -> Result<Filters> {
        let no_data = opts
            .exclude_table_data
            .iter()
            .map(|p| Pattern::table(p))
            .collect::<Result<_>>()?;
        let mut wheres = Vec::new();
        for w in &opts.wheres {
            let (t, cond) = w
                .split_once(':')
                .ok_or_else(|| anyhow!("--where {w:?}: expected TABLE:CONDITION"))?;
            wheres.push((Pattern::table(t)?, cond.to_string()));
        }
        Ok(Filters {
            no_data,
            wheres,
            no_unlogged: false,
            unlogged_left_out: Default::default(),
        })
    }

    fn keeps_data(&self, schema: &str, name: &str, visible: bool, unlogged: bool) -> bool {
        if self
            .no_data
            .iter()
            .any(|p| p.matches_table(schema, name, visible))
        {
            return false;
        }
        if unlogged && self.no_unlogged {
            self.unlogged_left_out.set(self.unlogged_left_out.get() + 1);
            return false;
        }
        true
    }

    /// The table's row filter, `(a) AND (b)`, if any.
    fn condition(
        &self,
        schema: &str,
        name: &str,
        visible: bool,
        ext: Option<String>,
    ) -> Option<String> {
        let mut filters: Vec<String> = Vec::new();
        if let Some(c) = ext.filter(|c| !c.trim().is_empty()) {
            let c = c.trim();
            let c = c
                .strip_prefix("WHERE ")
                .or_else(|| c.strip_prefix("where "))
                .unwrap_or(c);
            filters.push(c.to_string());
        }
        for (p, cond) in &self.wheres {
            if p.matches_table(schema, name, visible) {
                filters.push(cond.clone());
            }
        }
        (!filters.is_empty()).then(|| {
            let parts: Vec<String> = filters.iter().map(|f| format!("({f})")).collect();
            parts.join(" AND ")
        })
    }
}

/// Reads the catalog inside the snapshot and decides what goes into the archive.
///
/// The leader locks every chosen table, and `pg_dump --schema-only` locks them again on its
/// own connection: two locks a table. Where that does not fit the server's lock table
/// (thousands of tables on default settings; pg_dump alone needs one a table), the leader
/// takes its locks in a savepoint and lets them go by rolling it back, and takes them again
/// once pg_dump has finished ([`Plan::relock`]). Each handover is checked by [`lock`].
pub fn plan(src: &mut Source, opts: &ExtractOptions, pg_dump_version: &str) -> Result<Plan> {
    let sel = Selection::new(opts)?;
    let filters = Filters::new(opts)?;
    let c = &mut src.client;
    c.batch_execute("SAVEPOINT weir_plan")?;
    // Unqualified patterns match what the user's search path makes visible, so the catalog is
    // read with the default search path, as pg_dump does (expand_table_name_patterns); every
    // name in these queries is qualified.
    c.batch_execute("RESET search_path")?;
    let mut filters = filters;
    // On a standby the unlogged tables' files are empty placeholders (PostgreSQL docs,
    // CREATE TABLE: UNLOGGED), so reading them fails: pg_dump leaves their rows out there
    // (dumpTableData, --no-unlogged-table-data), and so do we.
    let standby: bool = c
        .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])?
        .get(0);
    filters.no_unlogged = opts.no_unlogged_table_data || standby;
    let (mut tables, matviews, block_size) = read_relations(c, &sel, &filters)?;
    if standby && !opts.quiet {
        let n = filters.unlogged_left_out.get();
        if n > 0 {
            eprintln!(
                "weir-extract: the server is a standby: the rows of {n} unlogged tables are left out (their definitions stay), as pg_dump does"
            );
        }
    }
    check_schemas(c, &sel)?;
    let by_oid: HashMap<u32, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    read_details(c, &mut tables, &by_oid, src.server_num)?;
    let subset = subset::plan(&tables, &opts.subset)?;
    if let Some(s) = &subset {
        if src.server_num < 140000 {
            bail!("--subset needs PostgreSQL 14 or newer (it hashes row addresses)");
        }
        for t in &mut tables {
            t.subset = s.role(t.id).map(str::to_string);
            // Planned now, so a mistake in a condition stops us before the archive starts.
            if let Some(q) = s.select(t) {
                c.batch_execute(&format!("EXPLAIN {q}")).map_err(|e| {
                    let m = e
                        .as_db_error()
                        .map_or(e.to_string(), |d| d.message().into());
                    anyhow!("--subset: {m} (planning the rows of {})", t.qualified())
                })?;
            }
        }
    }
    lock(c, &tables)?;
    let sequences = read_sequences(c, &sel, &by_oid)?;
    // Ours and pg_dump's, and the workers' in their transactions (three at most a table).
    let locks = 2 * (tables.len() + sequences.len()) + 3 * WORKER_TABLES * opts.jobs.max(1);
    let relock = locks as u64 > LockTable::read(c)?.budget();
    if relock {
        // Rolling back a savepoint releases the locks taken in it (PostgreSQL docs,
        // ROLLBACK TO SAVEPOINT); the exported snapshot belongs to the transaction and stays.
        c.batch_execute("ROLLBACK TO SAVEPOINT weir_plan")?;
    }
    c.batch_execute("RELEASE SAVEPOINT weir_plan")?;
    c.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
    let blobs = opts.blobs.unwrap_or(!sel.narrowed());
    let range = if opts.split_pages > 0 {
        opts.split_pages
    } else {
        RANGE_PAGES
    };
    let work = work_items(&tables, subset.as_ref(), src.server_num, block_size, range);
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
        large_objects: None,
        subset: (!opts.subset.seeds.is_empty()).then(|| SubsetInfo {
            seeds: opts.subset.seeds.clone(),
            virtual_fks: opts.subset.virtual_fks.clone(),
            dependents: opts.subset.dependents,
        }),
        tables,
        sequences,
        matviews,
    };
    Ok(Plan {
        manifest,
        work,
        relock,
    })
}

/// The tables (with their filters) and materialized views the selection takes, and the
/// server's block size. Every include pattern must match.
fn read_relations(
    c: &mut postgres::Client,
    sel: &Selection,
    filters: &Filters,
) -> Result<(Vec<Table>, Vec<MatView>, i64)> {
    let rows = c.query(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                pg_catalog.pg_table_is_visible(c.oid), \
                CASE WHEN c.relkind = 'r' THEN pg_catalog.pg_relation_size(c.oid) ELSE 0 END, \
                x.cond, c.relispopulated, \
                pg_catalog.current_setting('block_size')::int8, \
                (SELECT ARRAY[rn.nspname::text, rc.relname::text] FROM pg_catalog.pg_class rc \
                   JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
                  WHERE c.relispartition AND rc.oid = pg_catalog.pg_partition_root(c.oid)), \
                c.relpersistence = 'u' \
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
        let size: i64 = r.get(5);
        let root: Option<Vec<String>> = r.get(9);
        tables.push(Table {
            id: tables.len() as u32,
            filter: filters.condition(&schema, &name, visible, r.get(6)),
            subset: None,
            data: kind == "r" && filters.keeps_data(&schema, &name, visible, r.get(10)),
            schema,
            name,
            oid,
            relkind: kind,
            columns: Vec::new(),
            bytes_on_disk: size.max(0) as u64,
            owned_oids: Vec::new(),
            foreign_keys: Vec::new(),
            unique: Vec::new(),
            partition_key: Vec::new(),
            checks: Vec::new(),
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
    Ok((tables, matviews, block_size))
}

/// Every `-n` pattern must match a schema.
fn check_schemas(c: &mut postgres::Client, sel: &Selection) -> Result<()> {
    if sel.schemas.is_empty() {
        return Ok(());
    }
    {
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
    Ok(())
}

/// Columns, what each table owns (for partial restores), and its keys and constraints.
fn read_details(
    c: &mut postgres::Client,
    tables: &mut [Table],
    by_oid: &HashMap<u32, usize>,
    server_num: u32,
) -> Result<()> {
    let mut cat = Catalog {
        c,
        tables,
        by_oid,
        oids: Vec::new(),
    };
    cat.oids = cat.tables.iter().map(|t| t.oid).collect();
    cat.read_columns()?;
    cat.read_owned()?;
    cat.read_foreign_keys()?;
    cat.read_unique_keys(server_num)?;
    cat.read_partition_keys()?;
    cat.read_checks()
}

/// The chosen tables and the connection their details are read on: every query takes their
/// OIDs as `$1` and returns the table's OID first.
struct Catalog<'a> {
    c: &'a mut postgres::Client,
    tables: &'a mut [Table],
    by_oid: &'a HashMap<u32, usize>,
    oids: Vec<u32>,
}

impl Catalog<'_> {
    /// Runs `q` and hands each row to `f` with the table it is about.
    fn each(&mut self, q: &str, mut f: impl FnMut(&mut Table, &postgres::Row)) -> Result<()> {
        for r in self.c.query(q, &[&self.oids])? {
            let i = self.by_oid[&r.get::<_, u32>(0)];
            f(&mut self.tables[i], &r);
        }
        Ok(())
    }

    /// Columns, leaving out generated ones as pg_dump does (they are recomputed on load).
    fn read_columns(&mut self) -> Result<()> {
        let q = format!(
            "SELECT a.attrelid, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), b.base, b.labels, \
                    a.attnotnull \
             FROM pg_catalog.pg_attribute a LEFT JOIN LATERAL ({BASE_TYPE}) b ON true \
             WHERE a.attrelid = ANY ($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attrelid, a.attnum"
        );
        self.each(&q, |t, r| {
            let labels: Option<Vec<String>> = r.get(4);
            t.columns.push(Column {
                name: r.get(1),
                type_name: r.get(2),
                base: r.get(3),
                labels: labels.unwrap_or_default(),
                not_null: r.get(5),
            });
        })
    }

    /// Indexes, constraints, triggers, policies, defaults and owned sequences.
    fn read_owned(&mut self) -> Result<()> {
        self.each(
            "SELECT indrelid, indexrelid FROM pg_catalog.pg_index WHERE indrelid = ANY ($1) \
             UNION ALL SELECT conrelid, oid FROM pg_catalog.pg_constraint WHERE conrelid = ANY ($1) AND contype <> 'f' \
             UNION ALL SELECT tgrelid, oid FROM pg_catalog.pg_trigger WHERE tgrelid = ANY ($1) AND NOT tgisinternal \
             UNION ALL SELECT polrelid, oid FROM pg_catalog.pg_policy WHERE polrelid = ANY ($1) \
             UNION ALL SELECT adrelid, oid FROM pg_catalog.pg_attrdef WHERE adrelid = ANY ($1) \
             UNION ALL SELECT d.refobjid, d.objid FROM pg_catalog.pg_depend d \
               JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
               WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                 AND d.refobjid = ANY ($1) AND d.deptype IN ('a', 'i')",
            |t, r| t.owned_oids.push(r.get(1)),
        )
    }

    fn read_foreign_keys(&mut self) -> Result<()> {
        let q = format!(
            "SELECT conrelid, oid, confrelid, conname::text, {}, {} \
             FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conrelid = ANY ($1) ORDER BY conrelid, conname",
            key_names("conkey", "conrelid"),
            key_names("confkey", "confrelid")
        );
        self.each(&q, |t, r| {
            t.foreign_keys.push(ForeignKey {
                oid: r.get(1),
                references_oid: r.get(2),
                name: r.get(3),
                columns: r.get(4),
                references_columns: r.get(5),
            })
        })
    }

    /// Primary keys, unique constraints and indexes, exclusion constraints. The columns are
    /// the plain key columns, then those that key expressions and a partial index's predicate
    /// read (from the index's dependencies on its table's columns, recorded for both).
    fn read_unique_keys(&mut self, server_num: u32) -> Result<()> {
        let nulls = if server_num >= 150000 {
            "i.indnullsnotdistinct"
        } else {
            "false"
        };
        let q = format!(
            "SELECT i.indrelid, ic.relname::text, \
                    CASE WHEN i.indisprimary THEN 'primary' WHEN i.indisexclusion THEN 'exclusion' \
                         WHEN con.oid IS NOT NULL THEN 'unique' ELSE 'index' END, \
                    {} || ARRAY(SELECT a.attname::text FROM pg_catalog.pg_depend d \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid \
                      WHERE i.indexprs IS NOT NULL AND d.classid = 'pg_catalog.pg_class'::regclass \
                        AND d.objid = i.indexrelid AND d.refobjid = i.indrelid AND d.refobjsubid > 0 \
                        AND d.refobjsubid <> ALL (i.indkey::int2[]) ORDER BY a.attnum), \
                    i.indpred IS NOT NULL, {nulls} \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'u' \
             WHERE i.indrelid = ANY ($1) AND (i.indisunique OR i.indisexclusion) \
             ORDER BY i.indrelid, NOT i.indisprimary, ic.relname",
            key_names("i.indkey::int2[]", "i.indrelid")
        );
        self.each(&q, |t, r| {
            t.unique.push(UniqueKey {
                name: r.get(1),
                kind: r.get(2),
                columns: r.get(3),
                partial: r.get(4),
                nulls_not_distinct: r.get(5),
            })
        })
    }

    /// For each partition, the columns its ancestors partition by. PostgreSQL records every
    /// column a partition key reads, expressions included, as an internal dependency of the
    /// partitioned table on its own column (StorePartitionKey in src/backend/catalog/heap.c).
    fn read_partition_keys(&mut self) -> Result<()> {
        self.each(
            "SELECT t.oid, ARRAY(SELECT DISTINCT a.attname::text \
               FROM pg_catalog.pg_partition_ancestors(t.oid) p(relid) \
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass \
                AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.objid = p.relid \
                AND d.refobjid = p.relid AND d.objsubid > 0 AND d.deptype = 'i' \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attname = \
                    (SELECT pa.attname FROM pg_catalog.pg_attribute pa WHERE pa.attrelid = p.relid AND pa.attnum = d.objsubid) \
               ORDER BY 1) \
             FROM pg_catalog.pg_class t WHERE t.oid = ANY ($1) AND t.relispartition",
            |t, r| t.partition_key = r.get(1),
        )
    }

    fn read_checks(&mut self) -> Result<()> {
        let q = format!(
            "SELECT conrelid, conname::text, {}, pg_catalog.pg_get_constraintdef(oid) \
             FROM pg_catalog.pg_constraint WHERE contype = 'c' AND conrelid = ANY ($1) ORDER BY conrelid, conname",
            key_names("conkey", "conrelid")
        );
        self.each(&q, |t, r| {
            t.checks.push(archive::Check {
                name: r.get(1),
                columns: r.get(2),
                definition: r.get(3),
            })
        })
    }
}

/// For a column `a` whose type is a domain, an enum, or an array of one of these: the type
/// under every domain (`base`, NULL when there is no domain) and the enum's labels (NULL for
/// no enum). The walk descends through domains (a domain's type modifier applies to its base
/// type unless an outer one was given), from the array's element type for an array.
const BASE_TYPE: &str = "WITH RECURSIVE start(oid, typmod, arr) AS ( \
        SELECT CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END, a.atttypmod, t.typcategory = 'A' \
        FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid), \
    walk(oid, typmod, n) AS ( \
        SELECT oid, typmod, 0 FROM start \
        UNION ALL SELECT t.typbasetype, CASE WHEN w.typmod >= 0 THEN w.typmod ELSE t.typtypmod END, w.n + 1 \
        FROM walk w JOIN pg_catalog.pg_type t ON t.oid = w.oid WHERE t.typtype = 'd') \
    SELECT CASE WHEN w.n > 0 THEN pg_catalog.format_type(w.oid, w.typmod) \
                || CASE WHEN (SELECT arr FROM start) THEN '[]' ELSE '' END END AS base, \
           (SELECT pg_catalog.array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
              FROM pg_catalog.pg_enum e WHERE e.enumtypid = w.oid) AS labels \
    FROM walk w ORDER BY w.n DESC LIMIT 1";

/// The names of a constraint's columns in key order: `conkey` or `confkey` of `rel`.
const KEY_NAMES: &str = "ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(KEY) WITH ORDINALITY k(n, o) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = REL AND a.attnum = k.n ORDER BY k.o)";

fn key_names(key: &str, rel: &str) -> String {
    KEY_NAMES.replace("KEY", key).replace("REL", rel)
}

/// Holds the tables against concurrent DROP or ALTER for the whole run, as pg_dump does, and
/// checks that none changed between the snapshot and the lock.
///
/// A table truncated or rewritten (TRUNCATE, VACUUM FULL, CLUSTER, ALTER TABLE ... TYPE) by a
/// transaction that committed after our snapshot reads as empty through it: the catalog points
/// COPY at the new file, whose rows the snapshot cannot see (PostgreSQL docs, 13.6 "Caveats":
/// TRUNCATE and table rewrites are not MVCC-safe). pg_dump has that window between its
/// snapshot and its locks and does not look. Once we hold the lock nothing can change the
/// table any more, so the file the snapshot's catalog names must be the one the table has now.
pub fn lock(c: &mut postgres::Client, tables: &[Table]) -> Result<()> {
    for batch in tables.chunks(500) {
        let names: Vec<String> = batch.iter().map(|t| t.qualified()).collect();
        lock_batch(
            c,
            &format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", ")),
        )?;
    }
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    // pg_class as the snapshot saw it; pg_relation_filenode() reads the catalog as it is now.
    let changed = c.query(
        "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = ANY ($1) AND c.relkind IN ('r', 'm') \
           AND pg_catalog.pg_relation_filenode(c.oid) IS DISTINCT FROM c.relfilenode LIMIT 1",
        &[&oids],
    )?;
    if let Some(r) = changed.first() {
        let oid: u32 = r.get(0);
        let name = tables.iter().find(|t| t.oid == oid).map(Table::qualified);
        bail!(
            "table {} was dropped, truncated or rewritten by a transaction that committed after weir-extract took its snapshot; run weir-extract again",
            name.unwrap_or_default()
        );
    }
    Ok(())
}

/// One LOCK statement, tried again while the lock table is full: after a handover, pg_dump's
/// server process may still be releasing its locks when pg_dump itself has exited (a backend
/// releases them as it exits, after its client is gone).
fn lock_batch(c: &mut postgres::Client, statement: &str) -> Result<()> {
    let mut wait = std::time::Duration::from_millis(20);
    loop {
        c.batch_execute("SAVEPOINT weir_lock")?;
        match c.batch_execute(statement) {
            Ok(()) => return Ok(c.batch_execute("RELEASE SAVEPOINT weir_lock")?),
            Err(e)
                if e.code() == Some(&postgres::error::SqlState::OUT_OF_MEMORY)
                    && wait < std::time::Duration::from_secs(3) =>
            {
                c.batch_execute("ROLLBACK TO SAVEPOINT weir_lock")?;
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_sequences(
    c: &mut postgres::Client,
    sel: &Selection,
    tables: &HashMap<u32, usize>,
) -> Result<Vec<Sequence>> {
    let mut out = Vec::new();
    for r in c.query(
        "SELECT c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_table_is_visible(c.oid), \
                (SELECT d.refobjid FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                   AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   AND d.deptype IN ('a', 'i') LIMIT 1), \
                (SELECT a.attname::text FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a \
                   ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid \
                   AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) \
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
            owner_column: owner.filter(|t| tables.contains_key(t)).and(r.get(5)),
        };
        out.push(s);
    }
    Ok(out)
}

/// Splits the data into work: one COPY per table, or page ranges for big tables on servers
/// with TID range scans (14+). The order takes the first range of every table (biggest table
/// first), then the second ranges, and so on: workers then read different tables at the same
/// time, so the archive interleaves them and `weir-load` can load them in parallel, each on
/// one connection with COPY FREEZE.
/// A subset table is one COPY: each query computes the closure, which a split would repeat.
fn work_items(
    tables: &[Table],
    subset: Option<&subset::Subset>,
    server_num: u32,
    block_size: i64,
    range: i64,
) -> Vec<WorkItem> {
    // (round, table size, item)
    let mut items: Vec<(usize, u64, WorkItem)> = Vec::new();
    for t in tables.iter().filter(|t| t.data) {
        if let Some(query) = subset.and_then(|s| s.copy_query(t)) {
            items.push((0, t.bytes_on_disk, WorkItem { table: t.id, query }));
            continue;
        }
        let pages = t.bytes_on_disk as i64 / block_size.max(1);
        let cols = t.column_list();
        if let Some(ranges) = page_ranges::split(pages, range, server_num) {
            for (round, mut cond) in ranges.into_iter().enumerate() {
                if let Some(f) = &t.filter {
                    cond.push_str(&format!(" AND {f}"));
                }
                items.push((
                    round,
                    t.bytes_on_disk,
                    WorkItem {
                        table: t.id,
                        query: format!(
                            "COPY (SELECT {cols} FROM ONLY {} WHERE {cond}) TO STDOUT",
                            t.qualified()
                        ),
                    },
                ));
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

fn random_id() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    hex::encode(b)
}
