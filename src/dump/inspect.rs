//! `weir-inspect`: lists an archive, verifies it completely without a database, or prints one
//! table's rows as COPY text or CSV.

use crate::archive::{self, Manifest, Table, Trailer, Visitor};
use crate::pg::copy_text::{Chunk, chunk_to_csv, write_csv_field};
use crate::plumbing::{Output, human_bytes};
use anyhow::Result;
use std::io::{Read, Write};

#[derive(Clone, Debug, Default)]
pub struct InspectOptions {
    pub input: Option<String>,
    pub verify: bool,
    pub json: bool,
    pub table: Option<String>,
    pub csv: bool,
}

struct Printer {
    table: Option<String>,
    table_id: Option<u32>,
    single_column: bool,
    csv: bool,
    out: Option<Output>,
}

impl Visitor for Printer {
    fn manifest(&mut self, m: &Manifest) -> Result<()> {
        if let Some(name) = &self.table {
            let t = archive::find_table(m, name)?;
            if !t.data {
                anyhow::bail!("table {} has no data in this archive", t.qualified());
            }
            self.table_id = Some(t.id);
            self.single_column = t.columns.len() == 1;
            let mut out = Output::open(None, false)?;
            if self.csv {
                let mut first = true;
                for c in &t.columns {
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    write_csv_field(Some(c.name.as_bytes()), t.columns.len() == 1, &mut out)?;
                }
                out.write_all(b"\n")?;
            }
            self.out = Some(out);
        }
        Ok(())
    }

    fn file(&mut self, _name: &str, _data: Vec<u8>) -> Result<()> {
        Ok(())
    }

    fn chunk(&mut self, table: &Table, _no: u64, chunk: Chunk) -> Result<()> {
        if Some(table.id) != self.table_id {
            return Ok(());
        }
        let out = self.out.as_mut().expect("opened with the manifest");
        if self.csv {
            chunk_to_csv(&chunk.data, self.single_column, out)?;
        } else {
            out.write_all(&chunk.data)?;
        }
        Ok(())
    }

    fn blob(&mut self, _oid: u32, _size: u64, _data: &mut dyn Read) -> Result<()> {
        Ok(())
    }

    fn trailer(&mut self, _t: &Trailer) -> Result<()> {
        Ok(())
    }
}

pub fn run(opts: &InspectOptions) -> Result<()> {
    let input = crate::plumbing::open_input(opts.input.as_deref())?;
    let mut p = Printer {
        table: opts.table.clone(),
        table_id: None,
        single_column: false,
        csv: opts.csv,
        out: None,
    };
    // Rows printed with --table may precede the discovery of a corrupt tail; the exit status
    // says whether what was printed is trustworthy.
    let (m, t) = archive::read_archive(input, &mut p)?;
    if let Some(out) = p.out.take() {
        return Ok(out.finish()?);
    }
    let mut out = Output::open(None, false)?;
    if opts.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "manifest": m, "trailer": t, "verified": true }),
        )?;
        out.write_all(b"\n")?;
    } else if opts.verify {
        let rows: u64 = t.tables.iter().map(|x| x.rows).sum();
        let bytes: u64 = t.tables.iter().map(|x| x.bytes).sum();
        writeln!(
            out,
            "OK: archive {} of database {} ({}), {} tables, {} rows, {} of data, {} large objects, {} entries verified",
            m.archive_id,
            m.database,
            m.created,
            m.tables.len(),
            rows,
            human_bytes(bytes),
            t.blobs.count,
            t.entries + 1
        )?;
    } else {
        list(&mut out, &m, &t)?;
    }
    Ok(out.finish()?)
}

fn list(out: &mut impl Write, m: &Manifest, t: &Trailer) -> Result<()> {
    writeln!(
        out,
        "archive:   {} (format {})",
        m.archive_id, m.format_version
    )?;
    writeln!(
        out,
        "database:  {} ({}, PostgreSQL {})",
        m.database, m.encoding, m.server_version
    )?;
    writeln!(out, "created:   {} by weir {}", m.created, m.weir_version)?;
    writeln!(out, "snapshot:  {}", m.snapshot)?;
    writeln!(out, "masked:    {}", masked_line(m, t.blobs.count))?;
    writeln!(out, "globals:   {}", if m.globals { "yes" } else { "no" })?;
    if let Some(s) = &m.subset {
        let dependents = if s.dependents {
            ", with dependents"
        } else {
            ""
        };
        writeln!(out, "subset:    {}{dependents}", s.seeds.join("; "))?;
    }
    writeln!(
        out,
        "sequences: {}   large objects: {} ({})   materialized views: {}",
        m.sequences.len(),
        t.blobs.count,
        human_bytes(t.blobs.bytes),
        m.matviews.len()
    )?;
    writeln!(out)?;
    writeln!(out, "{:>12} {:>10} {:>7}  table", "rows", "bytes", "chunks")?;
    for ts in &t.tables {
        let Some(tb) = m.tables.iter().find(|x| x.id == ts.id) else {
            continue;
        };
        let mut note = String::new();
        if !tb.data {
            note.push_str(if tb.relkind == "p" {
                "  (partitioned: rows are in its partitions)"
            } else {
                "  (data excluded)"
            });
        }
        if let Some(f) = &tb.filter {
            note.push_str(&format!("  (rows where {f})"));
        }
        writeln!(
            out,
            "{:>12} {:>10} {:>7}  {}.{}{note}",
            ts.rows,
            human_bytes(ts.bytes),
            ts.chunks,
            tb.schema,
            tb.name
        )?;
    }
    let rows: u64 = t.tables.iter().map(|x| x.rows).sum();
    let bytes: u64 = t.tables.iter().map(|x| x.bytes).sum();
    writeln!(
        out,
        "{:>12} {:>10}          total, verified",
        rows,
        human_bytes(bytes)
    )?;
    Ok(())
}
/// `yes`, with what the masking did not cover: large objects (when there are any) pass
/// through as they are, and role passwords may have been kept on request.
fn masked_line(m: &Manifest, blobs: u64) -> String {
    let Some(info) = m.mask.as_ref().filter(|_| m.masked) else {
        return if m.masked { "yes".into() } else { "no".into() };
    };
    let mut notes = Vec::new();
    if blobs > 0 && info.unmasked.iter().any(|u| u == "large objects") {
        match info.large_objects.as_deref() {
            Some("kept") => notes.push(format!("{blobs} large objects NOT masked (kept by rule)")),
            _ => notes.push(format!("{blobs} large objects NOT masked")),
        }
    }
    match info.large_objects.as_deref() {
        Some("dropped") => notes.push("large objects dropped".into()),
        Some("replaced") => notes.push(format!("{blobs} large objects replaced")),
        _ => {}
    }
    if !info.removed.is_empty() {
        notes.push(format!("credentials removed: {}", info.removed.join(", ")));
    }
    if info.comments_dropped {
        notes.push("comments dropped".into());
    }
    match info.role_passwords.as_deref() {
        Some("kept") => notes.push("role password hashes KEPT".to_string()),
        Some(r) => notes.push(format!("role passwords {r}")),
        None => {}
    }
    let how = if info.deterministic {
        "keyed"
    } else {
        "random key"
    };
    if notes.is_empty() {
        format!("yes ({how})")
    } else {
        format!("yes ({how}; {})", notes.join("; "))
    }
}
