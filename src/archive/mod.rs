//! The weir archive: a POSIX tar stream with a manifest first, the schema as `pg_dump` custom
//! format, COPY text chunks, sequence states, large objects, and a trailer last that carries the
//! counts and digests of everything before it. Written and read in one pass with bounded memory.
//! `docs/FORMAT.md` is the specification; this module is its reference implementation: the
//! types here, [`ArchiveWriter`] in `writer.rs`, the verifying [`read_archive`] in `reader.rs`.

pub mod digest;
mod reader;
mod writer;

pub use digest::{Algo, Sum};
pub use reader::{Visitor, read_archive, read_manifest_only};
pub use writer::ArchiveWriter;

use crate::pg::sql::{quote_ident, quote_literal};
use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

/// Bumped on any change a reader of the previous version could not read correctly: 2 made the
/// digests BLAKE3 (version 1's are SHA-256; both are read, see [`digest`]); 3 added the entry
/// that ends each table's rows ([`done_name`]), which weir-load builds the table's indexes on.
pub const FORMAT_VERSION: u32 = 3;
pub const FORMAT_NAME: &str = "weir-archive";

pub const MANIFEST: &str = "weir/manifest.json";
pub const GLOBALS: &str = "weir/globals.sql";
pub const SEQUENCES: &str = "weir/sequences.sql";
pub const BLOBS_SQL: &str = "weir/blobs.sql";
pub const TRAILER: &str = "weir/trailer.json";
pub const SCHEMA_PREFIX: &str = "schema/schema.dump.";
/// `weir/done/TTTTTT.json`: every row of table `TTTTTT` is in the entries before it (format 3).
pub const DONE_PREFIX: &str = "weir/done/";

/// Size of one schema part: `pg_dump` output is split so it never has to be held whole.
pub const SCHEMA_PART: usize = 4 << 20;

/// The largest entry a reader accepts into memory: above any COPY row PostgreSQL can produce
/// (1 GB) plus a chunk's target size, so a corrupt size field cannot make us allocate wildly.
const MAX_ENTRY: u64 = (1 << 30) + (64 << 20);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub archive_id: String,
    pub weir_version: String,
    /// Seconds since the Unix epoch, and the same time in RFC 3339 for people.
    pub created_unix: u64,
    pub created: String,
    pub server_version: String,
    pub server_version_num: u32,
    pub pg_dump_version: String,
    pub database: String,
    /// The source database's encoding; COPY data in the archive is always UTF-8 (or raw bytes
    /// for an SQL_ASCII source).
    pub encoding: String,
    pub data_encoding: String,
    pub snapshot: String,
    /// True once weir-mask rewrote the archive; `mask` then says how.
    pub masked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskInfo>,
    pub globals: bool,
    pub blobs: bool,
    /// How many large objects the archive carries (absent in archives of older weir), so
    /// that a reader knows before their entries arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<u64>,
    /// How `--subset` chose the rows, when it did; each table's `subset` says its part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetInfo>,
    pub tables: Vec<Table>,
    pub sequences: Vec<Sequence>,
    pub matviews: Vec<MatView>,
}

/// How an archive was masked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MaskInfo {
    /// SHA-256 of the rules file as given.
    pub rules_sha256: String,
    /// True when a key made every pseudonym reproducible; false when a random key was used.
    pub deterministic: bool,
    pub weir_version: String,
    /// With globals in the archive: `removed` (the roles' password verifiers were taken out,
    /// as `pg_dumpall --no-role-passwords` leaves them out) or `kept` (`--keep-role-passwords`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_passwords: Option<String>,
    /// What passed through unmasked although it may hold personal data (`large objects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmasked: Vec<String>,
    /// The credentials taken out of the schema, one line each (`option password of user
    /// mapping for app on server remote`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// What became of the large objects by rule: `dropped`, `replaced` or `kept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<String>,
    /// True when every `COMMENT ON` of the schema was emptied (`[schema] comments = "drop"`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub comments_dropped: bool,
}

/// The `--subset` arguments an archive was extracted with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubsetInfo {
    /// `TABLE:CONDITION`, as given.
    pub seeds: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_fks: Vec<String>,
    pub dependents: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// The table's number in this archive; data entries are named after it, never after the
    /// table's name, so any name is safe.
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub oid: u32,
    /// `r` table (including a partition leaf), `p` partitioned parent (never has data).
    pub relkind: String,
    pub columns: Vec<Column>,
    /// False when the table's data was excluded (`--exclude-table-data`).
    pub data: bool,
    /// The row filter applied at extraction (`--where`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// With `--subset`: `seed` (rows that satisfy a subset condition, and those the closure
    /// reached), `referenced` (rows the closure reached), `restricted` (every row except those
    /// that reference a row left out); absent: every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Source size on disk, for progress estimates.
    pub bytes_on_disk: u64,
    /// OIDs of the schema objects that belong to this table (indexes, constraints, triggers,
    /// policies, column defaults, owned sequences), used to restore only some tables.
    pub owned_oids: Vec<u32>,
    /// OIDs of the foreign-key constraints of this table and the tables they reference.
    pub foreign_keys: Vec<ForeignKey>,
    /// The primary key, unique constraints, unique indexes and exclusion constraints: what a
    /// rule must not make two rows collide on (weir-mask checks its rules against them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<UniqueKey>,
    /// The columns that decide which partition a row belongs to, at every level above this
    /// table (a rule that changed one would send rows to a partition that refuses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_key: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// For a partition: the schema and name of the partitioned table at the top of its tree
    /// (weir-mask rules for a partitioned table apply to all its partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_root: Option<[String; 2]>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// For a domain (or an array of one): the type underneath every domain, as `format_type`
    /// writes it (`character varying(20)`, `text[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// For an enum (or an array of one, or a domain over one): its labels in sort order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// NOT NULL (written only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_null: bool,
}

impl Column {
    /// The type its values have: the one underneath a domain, else its own.
    pub fn underlying_type(&self) -> &str {
        self.base.as_deref().unwrap_or(&self.type_name)
    }
}

/// A CHECK constraint of a table: a rule that changes a column it reads may break it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub columns: Vec<String>,
    /// `pg_get_constraintdef`: `CHECK ((price > 0))`.
    pub definition: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForeignKey {
    pub oid: u32,
    pub references_oid: u32,
    /// The constraint's name, its columns, and the referenced columns in the same order
    /// (absent from archives of earlier weir versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references_columns: Vec<String>,
}

/// One index that refuses duplicates (or, for an exclusion constraint, conflicts).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UniqueKey {
    /// The index's name, which is also the constraint's for a primary key or UNIQUE constraint.
    pub name: String,
    /// `primary`, `unique` (a constraint), `index` (a unique index alone) or `exclusion`.
    pub kind: String,
    /// Every column the key reads: plain key columns in key order, then the columns that key
    /// expressions read.
    pub columns: Vec<String>,
    /// A partial index: only rows that satisfy its WHERE clause are checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// NULLS NOT DISTINCT (PostgreSQL 15): two NULLs collide too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nulls_not_distinct: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    pub oid: u32,
    pub last_value: i64,
    pub is_called: bool,
    /// The table that owns the sequence (serial and identity columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_table_oid: Option<u32>,
    /// And the column it feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_column: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
    pub populated: bool,
}

impl Manifest {
    /// `weir/sequences.sql`: the `setval` of every sequence, in manifest order, for the
    /// hand-restore path (weir-load itself sets them from the manifest).
    pub fn sequences_sql(&self) -> String {
        self.sequences.iter().map(Sequence::setval_sql).collect()
    }
}

impl Sequence {
    /// The statement that restores the sequence's state, exactly as the archive stores it.
    pub fn setval_sql(&self) -> String {
        let name = format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name));
        format!(
            "SELECT pg_catalog.setval({}, {}, {});\n",
            quote_literal(&name),
            self.last_value,
            self.is_called
        )
    }
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The column list for `COPY ... (cols)`; empty for a table with no columns.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statement that loads this table's data, as the hand-restore path uses it.
    pub fn copy_from_sql(&self) -> String {
        if self.columns.is_empty() {
            format!("COPY {} FROM STDIN", self.qualified())
        } else {
            format!(
                "COPY {} ({}) FROM STDIN",
                self.qualified(),
                self.column_list()
            )
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trailer {
    pub archive_id: String,
    /// Every entry before the trailer, counted.
    pub entries: u64,
    /// Each non-data entry, by name.
    pub files: Vec<FileSum>,
    pub tables: Vec<TableSum>,
    pub blobs: BlobSum,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub name: String,
    pub bytes: u64,
    #[serde(flatten)]
    pub sum: Sum,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSum {
    pub id: u32,
    pub rows: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// The digest over the 32-byte digest of every chunk, in chunk-number order.
    #[serde(flatten)]
    pub sum: Sum,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobSum {
    pub count: u64,
    pub bytes: u64,
    /// The digest over, for each blob in archive order, its OID in decimal, a newline, and
    /// the 32-byte digest of its contents.
    #[serde(flatten)]
    pub sum: Sum,
}

/// Running counts for one table's chunks, shared by the writer and the reader.
struct TableAcc {
    algo: Algo,
    rows: u64,
    bytes: u64,
    digests: BTreeMap<u64, [u8; 32]>,
    /// The chunks are not hashed here: they pass through a stage unchanged, under their own
    /// numbers, and their table's digest is carried over from the input's trailer
    /// ([`Visitor::carries`]). `digests` then holds only the chunk numbers.
    carried: bool,
    /// Writer: the carried digest, once the input's trailer gave it.
    carried_sum: Option<Sum>,
    /// Its done entry went by: no chunk of it may follow.
    done: bool,
}

impl TableAcc {
    fn new(algo: Algo) -> TableAcc {
        TableAcc {
            algo,
            rows: 0,
            bytes: 0,
            digests: BTreeMap::new(),
            carried: false,
            carried_sum: None,
            done: false,
        }
    }

    /// What the table's done entry says: its counts so far.
    fn done(&self) -> Done {
        Done {
            chunks: self.digests.len() as u64,
            rows: self.rows,
            bytes: self.bytes,
        }
    }

    fn sum(&self, id: u32) -> TableSum {
        let sum = self.carried_sum.clone().unwrap_or_else(|| {
            let mut h = self.algo.hasher();
            for d in self.digests.values() {
                h.update(d);
            }
            Sum::new(self.algo, &h.finalize())
        });
        TableSum {
            id,
            rows: self.rows,
            bytes: self.bytes,
            chunks: self.digests.len() as u64,
            sum,
        }
    }
}

struct BlobAcc {
    algo: Algo,
    count: u64,
    bytes: u64,
    hasher: digest::Hasher,
}

impl BlobAcc {
    fn new(algo: Algo) -> BlobAcc {
        BlobAcc {
            algo,
            count: 0,
            bytes: 0,
            hasher: algo.hasher(),
        }
    }

    fn add(&mut self, oid: u32, size: u64, digest: &[u8]) {
        self.count += 1;
        self.bytes += size;
        self.hasher.update(format!("{oid}\n").as_bytes());
        self.hasher.update(digest);
    }
    fn sum(&self) -> BlobSum {
        BlobSum {
            count: self.count,
            bytes: self.bytes,
            sum: Sum::new(self.algo, &self.hasher.finalize()),
        }
    }
}

pub fn chunk_name(table: u32, chunk: u64) -> String {
    format!("data/{table:06}/{chunk:08}.copy")
}

/// The content of a table's done entry (format 3): how many chunks, rows and bytes came before
/// it, all of the table's. Not in the trailer's `files`: the trailer's counts for the table
/// check the same numbers again.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Done {
    pub chunks: u64,
    pub rows: u64,
    pub bytes: u64,
}

pub fn done_name(table: u32) -> String {
    format!("{DONE_PREFIX}{table:06}.json")
}

/// Whether archives of `format_version` end every table's rows with a done entry.
pub fn has_done_entries(format_version: u32) -> bool {
    format_version >= 3
}

pub fn blob_name(oid: u32) -> String {
    format!("blobs/{oid}")
}

/// What one finished archive holds, in a line of JSON: written by `weir-extract --stats` and
/// `weir-mask --stats` once the archive is complete, and nested into catalog entries by
/// `scripts/backup.sh` (docs/FORMAT.md, "Stats and catalog entries").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub archive_id: String,
    pub format_version: u32,
    pub weir_version: String,
    pub database: String,
    pub server_version: String,
    pub created: String,
    pub created_unix: u64,
    /// Tables with data in the archive, their rows and COPY bytes; large objects.
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
    pub blobs: u64,
    pub globals: bool,
    pub masked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskInfo>,
}

impl Stats {
    pub fn new(m: &Manifest, t: &Trailer) -> Stats {
        Stats {
            archive_id: m.archive_id.clone(),
            format_version: m.format_version,
            weir_version: m.weir_version.clone(),
            database: m.database.clone(),
            server_version: m.server_version.clone(),
            created: m.created.clone(),
            created_unix: m.created_unix,
            tables: m.tables.iter().filter(|t| t.data).count() as u64,
            rows: t.tables.iter().map(|s| s.rows).sum(),
            bytes: t.tables.iter().map(|s| s.bytes).sum(),
            blobs: t.blobs.count,
            globals: m.globals,
            masked: m.masked,
            mask: m.mask.clone(),
        }
    }

    /// Writes the stats to `path` through a temporary file and a rename, so a reader never
    /// sees half a file, and a failed run leaves none.
    pub fn write(&self, path: &str) -> Result<()> {
        crate::plumbing::write_json_line(path, self)
    }
}

/// A reader wrapper that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    pub hasher: digest::Hasher,
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algo: Algo) -> Self {
        HashingReader {
            inner,
            hasher: algo.hasher(),
            count: 0,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Finds tables in the manifest by name for `--table`: `schema.name` or a bare name.
pub fn find_table<'a>(m: &'a Manifest, name: &str) -> Result<&'a Table> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, name),
    };
    let hits: Vec<&Table> = m
        .tables
        .iter()
        .filter(|t| t.name == table && schema.is_none_or(|s| t.schema == s))
        .collect();
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(anyhow!("table {name:?} is not in this archive")),
        _ => Err(anyhow!(
            "table name {name:?} is ambiguous; qualify it with its schema"
        )),
    }
}
