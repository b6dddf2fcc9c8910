//! [`ArchiveWriter`]: entries in the order they are added, each chunk's digest folded into its
//! table's, and the trailer last.

use super::{
    Algo, BlobAcc, FileSum, HashingReader, MANIFEST, Manifest, Sum, TRAILER, TableAcc, Trailer,
    blob_name, chunk_name, done_name, has_done_entries,
};
use crate::pg::copy_text::Chunk;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

/// Writes a weir archive. Entries go out in the order the methods are called; `finish` writes
/// the trailer and the tar end-of-archive marker and hands back the inner writer unflushed.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    /// The manifest's version's hash: chunks given to the writer carry digests made with it.
    algo: Algo,
    archive_id: String,
    mtime: u64,
    entries: u64,
    files: Vec<FileSum>,
    tables: BTreeMap<u32, TableAcc>,
    /// The tables with data, when the version ends each one's rows with a done entry.
    to_end: BTreeSet<u32>,
    blobs: BlobAcc,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, manifest: &Manifest) -> Result<ArchiveWriter<W>> {
        let algo = Algo::of(manifest.format_version);
        let mut w = ArchiveWriter {
            tar: tar::Builder::new(out),
            algo,
            archive_id: manifest.archive_id.clone(),
            mtime: manifest.created_unix,
            entries: 0,
            files: Vec::new(),
            tables: BTreeMap::new(),
            to_end: BTreeSet::new(),
            blobs: BlobAcc::new(algo),
        };
        for t in &manifest.tables {
            w.tables.insert(t.id, TableAcc::new(algo));
        }
        if has_done_entries(manifest.format_version) {
            w.to_end = manifest
                .tables
                .iter()
                .filter(|t| t.data)
                .map(|t| t.id)
                .collect();
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
            sum: Sum::of(self.algo, data),
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
        if acc.done {
            bail!("table {table}: a chunk after its done entry");
        }
        if acc.carried != carried && !acc.digests.is_empty() {
            bail!("table {table}: chunks both carried and rewritten");
        }
        acc.carried = carried;
        let digest = if carried { [0; 32] } else { chunk.digest };
        if acc.digests.insert(no, digest).is_some() {
            bail!("table {table}: chunk {no} twice");
        }
        acc.rows += chunk.rows;
        acc.bytes += chunk.data.len() as u64;
        let name = chunk_name(table, no);
        self.append(&name, chunk.data.len() as u64, &chunk.data[..])
    }

    /// Ends the rows of `table` with its done entry, giving it an empty chunk first if it has
    /// none (a table with data always has one). Nothing for an archive version without done
    /// entries, or a table without data.
    pub fn end_table(&mut self, table: u32) -> Result<()> {
        if !self.to_end.contains(&table) {
            return Ok(());
        }
        if self.chunks_of(table) == 0 {
            self.add_chunk(table, &Chunk::new(Vec::new(), self.algo))?;
        }
        let acc = self
            .tables
            .get_mut(&table)
            .expect("to_end lists manifest tables");
        if acc.done {
            bail!("table {table}: its rows ended twice");
        }
        acc.done = true;
        let json = serde_json::to_vec(&acc.done())?;
        self.append(&done_name(table), json.len() as u64, &json[..])
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
            acc.carried_sum = Some(ts.sum.clone());
        }
        Ok(())
    }

    /// The hash the chunks given to this writer must carry (the manifest's version's).
    pub fn algo(&self) -> Algo {
        self.algo
    }

    /// Number of chunks written so far for a table.
    pub fn chunks_of(&self, table: u32) -> u64 {
        self.tables
            .get(&table)
            .map_or(0, |a| a.digests.len() as u64)
    }

    /// Streams one large object of exactly `size` bytes from `data`.
    pub fn add_blob(&mut self, oid: u32, size: u64, data: impl Read) -> Result<()> {
        let mut hr = HashingReader::new(data, self.algo);
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
        for id in self.to_end.clone() {
            if !self.tables[&id].done {
                self.end_table(id)?;
            }
        }
        if let Some(id) = self
            .tables
            .iter()
            .find(|(_, a)| a.carried && a.carried_sum.is_none())
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
