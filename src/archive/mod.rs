//! The weir archive: a POSIX tar stream with a manifest first, the schema as `pg_dump` custom
//! format, COPY text chunks, sequence states, large objects, and a trailer last that carries the
//! counts and digests of everything before it. Written and read in one pass with bounded memory.
//! `docs/FORMAT.md` is the specification; this module is its reference implementation.

use crate::pg::copy_text::Chunk;
use crate::pg::sql::{quote_ident, quote_literal};
use crate::plumbing::bad_input;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

/// Bumped on any change a reader of the previous version could not read correctly.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_NAME: &str = "weir-archive";

pub const MANIFEST: &str = "weir/manifest.json";
pub const GLOBALS: &str = "weir/globals.sql";
pub const SEQUENCES: &str = "weir/sequences.sql";
pub const BLOBS_SQL: &str = "weir/blobs.sql";
pub const TRAILER: &str = "weir/trailer.json";
pub const SCHEMA_PREFIX: &str = "schema/schema.dump.";

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
    /// Source size on disk, for progress estimates.
    pub bytes_on_disk: u64,
    /// OIDs of the schema objects that belong to this table (indexes, constraints, triggers,
    /// policies, column defaults, owned sequences), used to restore only some tables.
    pub owned_oids: Vec<u32>,
    /// OIDs of the foreign-key constraints of this table and the tables they reference.
    pub foreign_keys: Vec<ForeignKey>,
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForeignKey {
    pub oid: u32,
    pub references_oid: u32,
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
    pub populated: bool,
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
    pub sha256: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSum {
    pub id: u32,
    pub rows: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// SHA-256 over the 32-byte SHA-256 of every chunk, in chunk-number order.
    pub sha256: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobSum {
    pub count: u64,
    pub bytes: u64,
    /// SHA-256 over, for each blob in archive order, its OID in decimal, a newline, and the
    /// 32-byte SHA-256 of its contents.
    pub sha256: String,
}

/// Running counts for one table's chunks, shared by the writer and the reader.
#[derive(Default)]
struct TableAcc {
    rows: u64,
    bytes: u64,
    digests: BTreeMap<u64, [u8; 32]>,
    /// The chunks are not hashed here: they pass through a stage unchanged, under their own
    /// numbers, and their table's digest is carried over from the input's trailer
    /// ([`Visitor::carries`]). `digests` then holds only the chunk numbers.
    carried: bool,
    /// Writer: the carried digest, once the input's trailer gave it.
    carried_sha256: Option<String>,
}

impl TableAcc {
    fn sum(&self, id: u32) -> TableSum {
        let sha256 = self.carried_sha256.clone().unwrap_or_else(|| {
            let mut h = Sha256::new();
            for d in self.digests.values() {
                h.update(d);
            }
            hex::encode(h.finalize())
        });
        TableSum {
            id,
            rows: self.rows,
            bytes: self.bytes,
            chunks: self.digests.len() as u64,
            sha256,
        }
    }
}

#[derive(Default)]
struct BlobAcc {
    count: u64,
    bytes: u64,
    hasher: Sha256,
}

impl BlobAcc {
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
            sha256: hex::encode(self.hasher.clone().finalize()),
        }
    }
}

pub fn chunk_name(table: u32, chunk: u64) -> String {
    format!("data/{table:06}/{chunk:08}.copy")
}

pub fn blob_name(oid: u32) -> String {
    format!("blobs/{oid}")
}

/// Writes a weir archive. Entries go out in the order the methods are called; `finish` writes
/// the trailer and the tar end-of-archive marker and hands back the inner writer unflushed.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    archive_id: String,
    mtime: u64,
    entries: u64,
    files: Vec<FileSum>,
    tables: BTreeMap<u32, TableAcc>,
    blobs: BlobAcc,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, manifest: &Manifest) -> Result<ArchiveWriter<W>> {
        let mut w = ArchiveWriter {
            tar: tar::Builder::new(out),
            archive_id: manifest.archive_id.clone(),
            mtime: manifest.created_unix,
            entries: 0,
            files: Vec::new(),
            tables: BTreeMap::new(),
            blobs: BlobAcc::default(),
        };
        for t in &manifest.tables {
            w.tables.insert(t.id, TableAcc::default());
        }
        let json = serde_json::to_vec_pretty(manifest)?;
        w.add_file(MANIFEST, &json)?;
        Ok(w)
    }

    fn header(&self, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    fn append(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        let mut h = self.header(size);
        self.tar
            .append_data(&mut h, name, data)
            .with_context(|| format!("writing archive entry {name}"))?;
        self.entries += 1;
        Ok(())
    }

    /// Adds a whole non-data entry (manifest, schema part, globals, sequences, blob metadata).
    pub fn add_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.append(name, data.len() as u64, data)?;
        self.files.push(FileSum {
            name: name.to_string(),
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        });
        Ok(())
    }

    /// Adds one COPY chunk of table `table`; the chunk number is the next free one for it.
    pub fn add_chunk(&mut self, table: u32, chunk: &Chunk) -> Result<()> {
        let no = self.chunks_of(table);
        self.put_chunk(table, no, chunk, false)
    }

    /// Adds a chunk that passes through unchanged under its input number `no`, unhashed: its
    /// table's digest is taken from the input's trailer by [`carry_digests`](Self::carry_digests).
    pub fn add_carried_chunk(&mut self, table: u32, no: u64, chunk: &Chunk) -> Result<()> {
        self.put_chunk(table, no, chunk, true)
    }

    /// Writes chunk `no` of `table` and counts it; a table's chunks are either all carried or
    /// all hashed here.
    fn put_chunk(&mut self, table: u32, no: u64, chunk: &Chunk, carried: bool) -> Result<()> {
        let acc = self
            .tables
            .get_mut(&table)
            .ok_or_else(|| anyhow!("chunk for table {table}, which the manifest does not list"))?;
        if acc.carried != carried && !acc.digests.is_empty() {
            bail!("table {table}: chunks both carried and rewritten");
        }
        acc.carried = carried;
        let digest = if carried { [0; 32] } else { chunk.sha256 };
        if acc.digests.insert(no, digest).is_some() {
            bail!("table {table}: chunk {no} twice");
        }
        acc.rows += chunk.rows;
        acc.bytes += chunk.data.len() as u64;
        let name = chunk_name(table, no);
        self.append(&name, chunk.data.len() as u64, &chunk.data[..])
    }

    /// Takes the digests of the tables whose chunks were carried from the input's trailer,
    /// which the reader checked the counts of: the same chunks under the same numbers have the
    /// same digest, so whoever verifies this archive verifies those chunks against the digest
    /// computed where they were written.
    pub fn carry_digests(&mut self, input: &Trailer) -> Result<()> {
        for (id, acc) in self.tables.iter_mut().filter(|(_, a)| a.carried) {
            let ts = input
                .tables
                .iter()
                .find(|t| t.id == *id)
                .ok_or_else(|| anyhow!("table {id}: not in the input's trailer"))?;
            if (ts.rows, ts.bytes, ts.chunks) != (acc.rows, acc.bytes, acc.digests.len() as u64) {
                bail!("table {id}: the carried chunks do not match the input's trailer");
            }
            acc.carried_sha256 = Some(ts.sha256.clone());
        }
        Ok(())
    }

    /// Number of chunks written so far for a table.
    pub fn chunks_of(&self, table: u32) -> u64 {
        self.tables
            .get(&table)
            .map_or(0, |a| a.digests.len() as u64)
    }

    /// Streams one large object of exactly `size` bytes from `data`.
    pub fn add_blob(&mut self, oid: u32, size: u64, data: impl Read) -> Result<()> {
        let mut hr = HashingReader::new(data);
        self.append(&blob_name(oid), size, &mut hr)?;
        if hr.count != size {
            bail!("large object {oid} changed size while being read");
        }
        let digest = hr.hasher.finalize();
        self.blobs.add(oid, size, &digest);
        Ok(())
    }

    /// Writes the trailer and the end-of-archive marker. The caller still has to finish the
    /// returned writer (flush, and so on).
    pub fn finish(self) -> Result<W> {
        Ok(self.finish_with_trailer()?.0)
    }

    /// [`finish`](Self::finish), also handing back the trailer that went out (for `--stats`).
    pub fn finish_with_trailer(mut self) -> Result<(W, Trailer)> {
        if let Some(id) = self
            .tables
            .iter()
            .find(|(_, a)| a.carried && a.carried_sha256.is_none())
            .map(|(id, _)| id)
        {
            bail!("table {id}: carried chunks without a carried digest");
        }
        let trailer = Trailer {
            archive_id: self.archive_id.clone(),
            entries: self.entries,
            files: std::mem::take(&mut self.files),
            tables: self.tables.iter().map(|(id, a)| a.sum(*id)).collect(),
            blobs: self.blobs.sum(),
        };
        let json = serde_json::to_vec_pretty(&trailer)?;
        self.append(TRAILER, json.len() as u64, &json[..])?;
        let out = self.tar.into_inner().context("finishing the tar stream")?;
        Ok((out, trailer))
    }
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
    pub hasher: Sha256,
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
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

/// What a reader of an archive is told, entry by entry. Every method sees an entry only after
/// its own bytes were read in full; nothing is trustworthy until `trailer` has been called,
/// which happens only after every count and digest matched.
pub trait Visitor {
    fn manifest(&mut self, m: &Manifest) -> Result<()>;
    /// A non-data entry other than the manifest and trailer (schema part, globals, ...).
    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()>;
    fn chunk(&mut self, table: &Table, chunk_no: u64, chunk: Chunk) -> Result<()>;
    /// Whether the visitor passes `table`'s chunks on unchanged, under their own numbers, and
    /// carries the table's digest over from the trailer ([`ArchiveWriter::carry_digests`]).
    /// The reader then spares hashing them: their `sha256` is zero, their counts are still
    /// checked, and whoever reads the output verifies the bytes.
    fn carries(&self, _table: &Table) -> bool {
        false
    }
    /// A large object. The visitor may read `data` (which hashes as it goes); whatever it leaves
    /// unread is read and hashed afterwards.
    fn blob(&mut self, oid: u32, size: u64, data: &mut dyn Read) -> Result<()>;
    fn trailer(&mut self, t: &Trailer) -> Result<()>;
}

/// Reads and verifies a whole archive from `input`, calling the visitor for each entry.
/// Returns the verified trailer. Any mismatch, truncation or stray entry is an error with exit
/// code [`ExitCode::BadArchive`].
pub fn read_archive(input: impl Read, v: &mut dyn Visitor) -> Result<(Manifest, Trailer)> {
    let mut ar = tar::Archive::new(input);
    let mut entries = ar
        .entries()
        .map_err(|e| bad_input(format!("not a weir archive: {e}")))?;
    // The manifest must be the first entry.
    let first = match entries.next() {
        None => return Err(bad_input("not a weir archive: the input is empty")),
        Some(Err(e)) => {
            return Err(bad_input(format!(
                "not a weir archive (not a tar stream): {e}"
            )));
        }
        Some(Ok(e)) => e,
    };
    let first_name = entry_name(&first)?;
    if first_name != MANIFEST {
        return Err(bad_input(format!(
            "not a weir archive: the first entry is {first_name:?}, not {MANIFEST}"
        )));
    }
    let manifest_bytes = read_entry(first, &first_name)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad_input(format!("not a weir archive: unreadable manifest: {e}")))?;
    if manifest.format != FORMAT_NAME {
        return Err(bad_input(format!(
            "not a weir archive: manifest format is {:?}",
            manifest.format
        )));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(bad_input(format!(
            "archive format version {} is newer than this weir reads ({FORMAT_VERSION}); upgrade weir",
            manifest.format_version
        )));
    }
    v.manifest(&manifest)?;
    let by_id: HashMap<u32, &Table> = manifest.tables.iter().map(|t| (t.id, t)).collect();
    let mut tables: BTreeMap<u32, TableAcc> = manifest
        .tables
        .iter()
        .map(|t| {
            let acc = TableAcc {
                carried: v.carries(t),
                ..TableAcc::default()
            };
            (t.id, acc)
        })
        .collect();
    let mut files = vec![FileSum {
        name: MANIFEST.into(),
        bytes: manifest_bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&manifest_bytes)),
    }];
    let mut blobs = BlobAcc::default();
    let mut count: u64 = 1;
    let mut trailer: Option<Trailer> = None;

    for entry in entries {
        let entry = entry.map_err(|e| truncated_or_corrupt(e, count))?;
        let name = entry_name(&entry)?;
        if trailer.is_some() {
            return Err(bad_input(format!(
                "entry {name:?} follows the trailer: the stream was altered or concatenated"
            )));
        }
        if name == TRAILER {
            let bytes = read_entry(entry, &name)?;
            let t: Trailer = serde_json::from_slice(&bytes)
                .map_err(|e| bad_input(format!("unreadable trailer: {e}")))?;
            trailer = Some(t);
            continue;
        }
        count += 1;
        if let Some(rest) = name.strip_prefix("data/") {
            let (id, no) = parse_chunk_name(rest)
                .ok_or_else(|| bad_input(format!("malformed data entry name {name:?}")))?;
            let table = by_id.get(&id).ok_or_else(|| {
                bad_input(format!(
                    "data entry {name:?} names table {id}, which the manifest does not list"
                ))
            })?;
            let data = read_entry(entry, &name)?;
            if !data.is_empty() && data.last() != Some(&b'\n') {
                return Err(bad_input(format!(
                    "data entry {name:?} ends in the middle of a row"
                )));
            }
            let acc = tables.get_mut(&id).expect("same ids as by_id");
            let chunk = if acc.carried {
                let rows = crate::pg::copy_text::count_rows(&data);
                Chunk {
                    data,
                    rows,
                    sha256: [0; 32],
                }
            } else {
                Chunk::new(data)
            };
            if acc.digests.insert(no, chunk.sha256).is_some() {
                return Err(bad_input(format!("data entry {name:?} appears twice")));
            }
            acc.rows += chunk.rows;
            acc.bytes += chunk.data.len() as u64;
            v.chunk(table, no, chunk)?;
        } else if let Some(oid) = name.strip_prefix("blobs/") {
            let oid: u32 = oid
                .parse()
                .map_err(|_| bad_input(format!("malformed large object entry name {name:?}")))?;
            let size = entry
                .header()
                .size()
                .map_err(|e| bad_input(e.to_string()))?;
            let mut hr = HashingReader::new(entry);
            v.blob(oid, size, &mut hr)?;
            std::io::copy(&mut hr, &mut std::io::sink())
                .map_err(|e| truncated_or_corrupt(e, count))?;
            if hr.count != size {
                return Err(bad_input(format!(
                    "large object entry {name:?} is truncated"
                )));
            }
            blobs.add(oid, size, &hr.hasher.finalize());
        } else {
            let data = read_entry(entry, &name)?;
            files.push(FileSum {
                name: name.clone(),
                bytes: data.len() as u64,
                sha256: hex::encode(Sha256::digest(&data)),
            });
            v.file(&name, data)?;
        }
    }
    let Some(t) = trailer else {
        return Err(bad_input(
            "archive is incomplete: it ends without a trailer (truncated stream, or the writer failed)",
        ));
    };
    verify_trailer(&manifest, &t, count, &files, &tables, &blobs)?;
    v.trailer(&t)?;
    Ok((manifest, t))
}

fn verify_trailer(
    m: &Manifest,
    t: &Trailer,
    count: u64,
    files: &[FileSum],
    tables: &BTreeMap<u32, TableAcc>,
    blobs: &BlobAcc,
) -> Result<()> {
    if t.archive_id != m.archive_id {
        return Err(bad_input(format!(
            "trailer belongs to archive {}, but the manifest is of archive {}: streams were mixed",
            t.archive_id, m.archive_id
        )));
    }
    if t.files != files {
        let want: BTreeMap<_, _> = t.files.iter().map(|f| (&f.name, f)).collect();
        for f in files {
            match want.get(&f.name) {
                None => {
                    return Err(bad_input(format!(
                        "entry {:?} is not listed in the trailer",
                        f.name
                    )));
                }
                Some(w) if *w != f => {
                    return Err(bad_input(format!(
                        "entry {:?} does not match the trailer: corrupt stream",
                        f.name
                    )));
                }
                _ => {}
            }
        }
        return Err(bad_input(
            "entries listed in the trailer are missing or out of order",
        ));
    }
    for ts in &t.tables {
        let acc = tables.get(&ts.id).ok_or_else(|| {
            bad_input(format!(
                "trailer lists table {}, which the manifest does not",
                ts.id
            ))
        })?;
        let got = acc.sum(ts.id);
        let name = m
            .tables
            .iter()
            .find(|x| x.id == ts.id)
            .map(|x| x.qualified())
            .unwrap_or_default();
        if got.chunks != ts.chunks
            || acc
                .digests
                .keys()
                .last()
                .is_some_and(|k| *k + 1 != ts.chunks)
        {
            return Err(bad_input(format!(
                "table {name}: {} of {} data chunks present",
                got.chunks, ts.chunks
            )));
        }
        if got.rows != ts.rows || got.bytes != ts.bytes {
            return Err(bad_input(format!(
                "table {name}: {} rows / {} bytes read, trailer says {} / {}",
                got.rows, got.bytes, ts.rows, ts.bytes
            )));
        }
        if !acc.carried && got.sha256 != ts.sha256 {
            return Err(bad_input(format!(
                "table {name}: data digest mismatch: corrupt stream"
            )));
        }
    }
    if t.tables.len() != tables.len() {
        return Err(bad_input(
            "trailer does not account for every table of the manifest",
        ));
    }
    let b = blobs.sum();
    if b != t.blobs {
        return Err(bad_input(format!(
            "large objects: {} ({} bytes) read, trailer says {} ({} bytes), or digest mismatch",
            b.count, b.bytes, t.blobs.count, t.blobs.bytes
        )));
    }
    if count != t.entries {
        return Err(bad_input(format!(
            "{count} entries read, trailer says {}",
            t.entries
        )));
    }
    Ok(())
}

fn parse_chunk_name(rest: &str) -> Option<(u32, u64)> {
    let (t, c) = rest.split_once('/')?;
    let c = c.strip_suffix(".copy")?;
    if t.is_empty() || c.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((t.parse().ok()?, c.parse().ok()?))
}

fn entry_name<R: Read>(e: &tar::Entry<R>) -> Result<String> {
    let p = e.path_bytes().into_owned();
    String::from_utf8(p).map_err(|_| bad_input("archive entry name is not UTF-8"))
}

fn read_entry<R: Read>(mut e: tar::Entry<R>, name: &str) -> Result<Vec<u8>> {
    let size = e
        .header()
        .size()
        .map_err(|x| bad_input(format!("{name}: {x}")))?;
    if size > MAX_ENTRY {
        return Err(bad_input(format!(
            "entry {name:?} claims {size} bytes: corrupt header"
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    e.read_to_end(&mut buf)
        .map_err(|x| bad_input(format!("archive is truncated inside entry {name:?}: {x}")))?;
    if buf.len() as u64 != size {
        return Err(bad_input(format!(
            "archive is truncated inside entry {name:?}"
        )));
    }
    Ok(buf)
}

fn truncated_or_corrupt(e: std::io::Error, after: u64) -> anyhow::Error {
    bad_input(format!(
        "archive is truncated or corrupt after entry {after}: {e}"
    ))
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
