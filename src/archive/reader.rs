//! [`read_archive`]: one pass over a weir archive that checks every entry against the
//! trailer (counts, digests, order) and tells a [`Visitor`] each entry as it goes. Nothing a
//! visitor sees is trustworthy until its `trailer` method is called.

use super::{
    Algo, BlobAcc, DONE_PREFIX, Done, FORMAT_NAME, FORMAT_VERSION, FileSum, HashingReader,
    MANIFEST, MAX_ENTRY, Manifest, Sum, TRAILER, Table, TableAcc, TableSum, Trailer,
    has_done_entries,
};
use crate::pg::copy_text::Chunk;
use crate::plumbing::bad_input;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// What a reader of an archive is told, entry by entry. Every method sees an entry only after
/// its own bytes were read in full; nothing is trustworthy until `trailer` has been called,
/// which happens only after every count and digest matched.
pub trait Visitor {
    fn manifest(&mut self, m: &Manifest) -> Result<()>;
    /// A non-data entry other than the manifest and trailer (schema part, globals, ...).
    fn file(&mut self, name: &str, data: Vec<u8>) -> Result<()>;
    fn chunk(&mut self, table: &Table, chunk_no: u64, chunk: Chunk) -> Result<()>;
    /// Every row of `table` came before this (format 3 and later): its chunk numbers are
    /// complete and its counts so far are those its done entry gives. Its digest is still
    /// checked only at the trailer.
    fn table_done(&mut self, _table: &Table) -> Result<()> {
        Ok(())
    }
    /// Whether the visitor passes `table`'s chunks on unchanged, under their own numbers, and
    /// carries the table's digest over from the trailer ([`ArchiveWriter::carry_digests`]).
    /// The reader then spares hashing them: their digest is zero, their counts are still
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
/// code [`crate::plumbing::ExitCode::BadArchive`].
/// The manifest at the head of an archive, the rest unread (an archive whose data was cut off
/// still gives it: a schema-only archive is the usual one to read this way).
pub fn read_manifest_only(input: impl Read) -> Result<Manifest> {
    let mut ar = tar::Archive::new(input);
    let mut entries = ar
        .entries()
        .map_err(|e| bad_input(format!("not a weir archive: {e}")))?;
    Ok(read_manifest(entries.next())?.0)
}

pub fn read_archive(input: impl Read, v: &mut dyn Visitor) -> Result<(Manifest, Trailer)> {
    let mut ar = tar::Archive::new(input);
    let mut entries = ar
        .entries()
        .map_err(|e| bad_input(format!("not a weir archive: {e}")))?;
    let (manifest, manifest_bytes) = read_manifest(entries.next())?;
    v.manifest(&manifest)?;
    let mut seen = Seen::new(&manifest, &manifest_bytes, v);
    let by_id: HashMap<u32, &Table> = manifest.tables.iter().map(|t| (t.id, t)).collect();
    let mut trailer: Option<Trailer> = None;
    for entry in entries {
        let entry = entry.map_err(|e| truncated_or_corrupt(e, seen.count))?;
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
        seen.count += 1;
        if let Some(rest) = name.strip_prefix("data/") {
            seen.chunk(entry, &name, rest, &by_id, v)?;
        } else if let Some(rest) = name.strip_prefix(DONE_PREFIX) {
            seen.done(entry, &name, rest, &by_id, v)?;
        } else if let Some(oid) = name.strip_prefix("blobs/") {
            seen.blob(entry, &name, oid, v)?;
        } else {
            let data = read_entry(entry, &name)?;
            seen.files.push(FileSum {
                name: name.clone(),
                bytes: data.len() as u64,
                sum: Sum::of(seen.algo, &data),
            });
            v.file(&name, data)?;
        }
    }
    let Some(t) = trailer else {
        return Err(bad_input(
            "archive is incomplete: it ends without a trailer (truncated stream, or the writer failed)",
        ));
    };
    seen.verify(&manifest, &t)?;
    v.trailer(&t)?;
    Ok((manifest, t))
}

/// The first entry, which must be a manifest this weir can read.
fn read_manifest<R: Read>(
    first: Option<std::io::Result<tar::Entry<R>>>,
) -> Result<(Manifest, Vec<u8>)> {
    let first = match first {
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
    let bytes = read_entry(first, &first_name)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
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
    Ok((manifest, bytes))
}

/// What has been read so far, to check against the trailer at the end.
struct Seen {
    /// The manifest's version's hash.
    algo: Algo,
    tables: BTreeMap<u32, TableAcc>,
    files: Vec<FileSum>,
    blobs: BlobAcc,
    /// Entries before the trailer, the manifest included.
    count: u64,
    /// The version ends each table's rows with a done entry.
    ends: bool,
}

impl Seen {
    fn new(m: &Manifest, manifest_bytes: &[u8], v: &dyn Visitor) -> Seen {
        let algo = Algo::of(m.format_version);
        let tables = m.tables.iter().map(|t| {
            let mut acc = TableAcc::new(algo);
            acc.carried = v.carries(t);
            (t.id, acc)
        });
        Seen {
            algo,
            tables: tables.collect(),
            files: vec![FileSum {
                name: MANIFEST.into(),
                bytes: manifest_bytes.len() as u64,
                sum: Sum::of(algo, manifest_bytes),
            }],
            blobs: BlobAcc::new(algo),
            count: 1,
            ends: has_done_entries(m.format_version),
        }
    }

    /// `data/TABLE/CHUNK.copy`: whole rows of a table the manifest lists, each chunk once.
    fn chunk<R: Read>(
        &mut self,
        entry: tar::Entry<R>,
        name: &str,
        rest: &str,
        by_id: &HashMap<u32, &Table>,
        v: &mut dyn Visitor,
    ) -> Result<()> {
        let (id, no) = parse_chunk_name(rest)
            .ok_or_else(|| bad_input(format!("malformed data entry name {name:?}")))?;
        let table = by_id.get(&id).ok_or_else(|| {
            bad_input(format!(
                "data entry {name:?} names table {id}, which the manifest does not list"
            ))
        })?;
        let data = read_entry(entry, name)?;
        if !data.is_empty() && data.last() != Some(&b'\n') {
            return Err(bad_input(format!(
                "data entry {name:?} ends in the middle of a row"
            )));
        }
        let acc = self.tables.get_mut(&id).expect("same ids as by_id");
        if acc.done {
            return Err(bad_input(format!(
                "data entry {name:?} follows its table's done entry: the stream was altered"
            )));
        }
        let chunk = match acc.carried {
            true => Chunk::unhashed(data),
            false => Chunk::new(data, self.algo),
        };
        if acc.digests.insert(no, chunk.digest).is_some() {
            return Err(bad_input(format!("data entry {name:?} appears twice")));
        }
        acc.rows += chunk.rows;
        acc.bytes += chunk.data.len() as u64;
        v.chunk(table, no, chunk)
    }

    /// `weir/done/TABLE.json`: the table's rows are complete, and say so with their counts.
    fn done<R: Read>(
        &mut self,
        entry: tar::Entry<R>,
        name: &str,
        rest: &str,
        by_id: &HashMap<u32, &Table>,
        v: &mut dyn Visitor,
    ) -> Result<()> {
        let id = rest
            .strip_suffix(".json")
            .and_then(decimal::<u32>)
            .ok_or_else(|| bad_input(format!("malformed done entry name {name:?}")))?;
        let table = by_id.get(&id).filter(|t| t.data && self.ends);
        let table = table.ok_or_else(|| {
            bad_input(format!(
                "done entry {name:?} names no table with data of this archive version"
            ))
        })?;
        let said: Done = serde_json::from_slice(&read_entry(entry, name)?)
            .map_err(|e| bad_input(format!("unreadable done entry {name:?}: {e}")))?;
        let acc = self.tables.get_mut(&id).expect("same ids as by_id");
        let complete = acc.digests.keys().last().map_or(0, |k| k + 1) == said.chunks;
        if acc.done || said != acc.done() || !complete || said.chunks == 0 {
            return Err(bad_input(format!(
                "table {}: done entry {name:?} says {} chunks, {} rows, {} bytes; {} chunks, {} rows, {} bytes came before it{}",
                table.qualified(),
                said.chunks,
                said.rows,
                said.bytes,
                acc.digests.len(),
                acc.rows,
                acc.bytes,
                if acc.done { " (and it came twice)" } else { "" }
            )));
        }
        acc.done = true;
        v.table_done(table)
    }

    /// `blobs/OID`: streamed to the visitor and hashed on the way, never held whole.
    fn blob<R: Read>(
        &mut self,
        entry: tar::Entry<R>,
        name: &str,
        oid: &str,
        v: &mut dyn Visitor,
    ) -> Result<()> {
        let oid: u32 = oid
            .parse()
            .map_err(|_| bad_input(format!("malformed large object entry name {name:?}")))?;
        let size = entry
            .header()
            .size()
            .map_err(|e| bad_input(e.to_string()))?;
        let mut hr = HashingReader::new(entry, self.algo);
        v.blob(oid, size, &mut hr)?;
        std::io::copy(&mut hr, &mut std::io::sink())
            .map_err(|e| truncated_or_corrupt(e, self.count))?;
        if hr.count != size {
            return Err(bad_input(format!(
                "large object entry {name:?} is truncated"
            )));
        }
        self.blobs.add(oid, size, &hr.hasher.finalize());
        Ok(())
    }

    /// Everything read against the trailer: same archive, same files in the same order, every
    /// table's chunks, rows, bytes and digest, the large objects, the entry count.
    fn verify(&self, m: &Manifest, t: &Trailer) -> Result<()> {
        if t.archive_id != m.archive_id {
            return Err(bad_input(format!(
                "trailer belongs to archive {}, but the manifest is of archive {}: streams were mixed",
                t.archive_id, m.archive_id
            )));
        }
        verify_files(&t.files, &self.files)?;
        for ts in &t.tables {
            let acc = self.tables.get(&ts.id).ok_or_else(|| {
                bad_input(format!(
                    "trailer lists table {}, which the manifest does not",
                    ts.id
                ))
            })?;
            verify_table(m, ts, acc)?;
        }
        let mut unended = m
            .tables
            .iter()
            .filter(|x| x.data && !self.tables[&x.id].done);
        if let Some(x) = unended.next().filter(|_| self.ends) {
            return Err(bad_input(format!(
                "table {}: its rows were never ended by a done entry",
                x.qualified()
            )));
        }
        if t.tables.len() != self.tables.len() {
            return Err(bad_input(
                "trailer does not account for every table of the manifest",
            ));
        }
        let b = self.blobs.sum();
        if b != t.blobs {
            return Err(bad_input(format!(
                "large objects: {} ({} bytes) read, trailer says {} ({} bytes), or digest mismatch",
                b.count, b.bytes, t.blobs.count, t.blobs.bytes
            )));
        }
        if self.count != t.entries {
            return Err(bad_input(format!(
                "{} entries read, trailer says {}",
                self.count, t.entries
            )));
        }
        Ok(())
    }
}

fn verify_files(listed: &[FileSum], read: &[FileSum]) -> Result<()> {
    if listed == read {
        return Ok(());
    }
    let want: BTreeMap<_, _> = listed.iter().map(|f| (&f.name, f)).collect();
    for f in read {
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
    Err(bad_input(
        "entries listed in the trailer are missing or out of order",
    ))
}

fn verify_table(m: &Manifest, ts: &TableSum, acc: &TableAcc) -> Result<()> {
    let got = acc.sum(ts.id);
    let name = m
        .tables
        .iter()
        .find(|x| x.id == ts.id)
        .map(|x| x.qualified())
        .unwrap_or_default();
    let last = acc.digests.keys().last();
    if got.chunks != ts.chunks || last.is_some_and(|k| *k + 1 != ts.chunks) {
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
    if !acc.carried && got.sum != ts.sum {
        return Err(bad_input(format!(
            "table {name}: data digest mismatch: corrupt stream"
        )));
    }
    Ok(())
}

fn parse_chunk_name(rest: &str) -> Option<(u32, u64)> {
    let (t, c) = rest.split_once('/')?;
    Some((decimal(t)?, decimal(c.strip_suffix(".copy")?)?))
}

/// A number in an entry's name: decimal digits only (no sign, which `parse` would take).
fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| s.parse().ok()).flatten()
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
