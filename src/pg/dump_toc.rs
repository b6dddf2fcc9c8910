//! The table of contents of a `pg_dump --format=custom` file, read entry by entry with the
//! byte span of each entry's definition, so that a definition can be replaced while every
//! other byte is copied as it was. weir-mask uses it to take credentials out of the schema.
//!
//! The layout is pg_dump's (src/bin/pg_dump/pg_backup_archiver.c: WriteHead, WriteToc, WriteInt,
//! WriteStr; pg_backup_custom.c: _WriteExtraToc). An integer is a sign byte and then `intSize`
//! bytes, least significant first; a string is its length as such an integer (-1 for NULL)
//! and then its bytes. Archive versions 1.14 (pg_dump 12 to 15), 1.15 (16: the compression
//! algorithm as one byte) and 1.16 (17: each entry's relkind) are read; others are refused,
//! since a field we did not expect would shift every span after it.

use crate::plumbing::bad_input;
use anyhow::Result;
use std::ops::Range;

/// One entry of the table of contents, as far as weir needs it.
#[derive(Debug)]
pub struct Entry {
    pub desc: String,
    pub tag: String,
    /// The entry's SQL (`None` when pg_dump wrote NULL).
    pub defn: Option<Vec<u8>>,
    /// Where the defn string (its length and bytes) lies in the file.
    defn_span: Range<usize>,
}

/// A parsed custom-format file: its entries, in file order.
#[derive(Debug)]
pub struct Toc {
    pub entries: Vec<Entry>,
    int_size: usize,
}

/// The lowest and highest archive versions (minor, with major 1) that [`read`] knows.
const OLDEST: u8 = 14;
const NEWEST: u8 = 16;

/// Byte cursor over the file with pg_dump's integer and string encodings.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end =
            end.ok_or_else(|| bad_input("the schema (pg_dump custom format) is cut short"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn int(&mut self) -> Result<i64> {
        let sign = self.byte()?;
        let n = self.int_size;
        let v = self
            .bytes(n)?
            .iter()
            .rev()
            .fold(0i64, |v, &b| (v << 8) | b as i64);
        Ok(if sign == 0 { v } else { -v })
    }

    fn str(&mut self) -> Result<Option<Vec<u8>>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.bytes(len as usize)?.to_vec()))
    }

    fn text(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.str()?.unwrap_or_default()).into_owned())
    }
}

/// Reads the header and the table of contents of a custom-format file.
pub fn read(file: &[u8]) -> Result<Toc> {
    let mut c = Cursor {
        b: file,
        at: 0,
        int_size: 4,
    };
    if c.bytes(5)? != b"PGDMP" {
        return Err(bad_input("the schema is not a pg_dump custom-format file"));
    }
    let (major, minor, _rev) = (c.byte()?, c.byte()?, c.byte()?);
    if major != 1 || !(OLDEST..=NEWEST).contains(&minor) {
        return Err(bad_input(format!(
            "the schema is pg_dump archive version {major}.{minor}; weir reads 1.{OLDEST} to 1.{NEWEST}"
        )));
    }
    c.int_size = c.byte()? as usize;
    let off_size = c.byte()? as usize;
    if c.byte()? != 1 {
        return Err(bad_input("the schema is not in pg_dump's custom format"));
    }
    if minor >= 15 {
        c.byte()?; // the compression algorithm
    } else {
        c.int()?; // the compression level
    }
    for _ in 0..7 {
        c.int()?; // the creation time, field by field
    }
    for _ in 0..3 {
        c.str()?; // database, server version, pg_dump version
    }
    let count = c.int()?;
    let mut entries = Vec::with_capacity(count.clamp(0, 1 << 16) as usize);
    for _ in 0..count {
        entries.push(entry(&mut c, minor, off_size)?);
    }
    Ok(Toc {
        entries,
        int_size: c.int_size,
    })
}

/// One entry, in WriteToc's order, then the custom format's data offset.
fn entry(c: &mut Cursor, minor: u8, off_size: usize) -> Result<Entry> {
    c.int()?; // dump id
    c.int()?; // had a data dumper
    c.str()?; // catalog table oid
    c.str()?; // object oid
    let tag = c.text()?;
    let desc = c.text()?;
    c.int()?; // section
    let start = c.at;
    let defn = c.str()?;
    let defn_span = start..c.at;
    for _ in 0..5 {
        c.str()?; // drop statement, copy statement, namespace, tablespace, table access method
    }
    if minor >= 16 {
        c.int()?; // relkind
    }
    c.str()?; // owner
    c.str()?; // "false": WITH OIDS, long gone
    while c.str()?.is_some() {} // dependencies, up to a NULL
    let state = c.byte()?;
    c.bytes(off_size)?;
    // K_OFFSET_POS_SET: the data lies at a recorded offset, which a changed definition
    // would move. pg_dump writing to a pipe (as weir-extract runs it) never records one.
    if state == 2 {
        return Err(bad_input(
            "the schema records data offsets; weir cannot rewrite such a file",
        ));
    }
    Ok(Entry {
        desc,
        tag,
        defn,
        defn_span,
    })
}

impl Toc {
    /// The file with the definitions of some entries replaced (by entry index); everything
    /// else is copied byte for byte.
    pub fn rewrite(&self, file: &[u8], defns: &[(usize, Vec<u8>)]) -> Vec<u8> {
        let mut sorted: Vec<&(usize, Vec<u8>)> = defns.iter().collect();
        sorted.sort_by_key(|(i, _)| *i);
        let mut out = Vec::with_capacity(file.len());
        let mut copied = 0;
        for (i, defn) in sorted {
            let span = &self.entries[*i].defn_span;
            out.extend_from_slice(&file[copied..span.start]);
            self.put_str(&mut out, defn);
            copied = span.end;
        }
        out.extend_from_slice(&file[copied..]);
        out
    }

    fn put_str(&self, out: &mut Vec<u8>, s: &[u8]) {
        out.push(0);
        let len = s.len() as u64;
        out.extend((0..self.int_size).map(|i| (len >> (8 * i)) as u8));
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal version 1.14 file by the same rules pg_dump writes them.
    fn file(defns: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
        let int = |o: &mut Vec<u8>, v: i64| {
            o.push((v < 0) as u8);
            o.extend((0..4).map(|i| (v.unsigned_abs() >> (8 * i)) as u8));
        };
        let s = |o: &mut Vec<u8>, v: Option<&str>| match v {
            None => int(o, -1),
            Some(t) => {
                int(o, t.len() as i64);
                o.extend_from_slice(t.as_bytes());
            }
        };
        let mut o = b"PGDMP".to_vec();
        o.extend([1, 14, 0, 4, 8, 1]);
        int(&mut o, 0);
        (0..7).for_each(|_| int(&mut o, 1));
        ["db", "15.1", "15.1"]
            .iter()
            .for_each(|v| s(&mut o, Some(v)));
        int(&mut o, defns.len() as i64);
        for (n, (desc, tag, defn)) in defns.iter().enumerate() {
            int(&mut o, n as i64 + 1);
            int(&mut o, 0);
            s(&mut o, Some("0"));
            s(&mut o, Some("0"));
            s(&mut o, Some(tag));
            s(&mut o, Some(desc));
            int(&mut o, 1);
            s(&mut o, *defn);
            [Some(""), None, None, None, Some("")]
                .iter()
                .for_each(|v| s(&mut o, *v));
            s(&mut o, Some("postgres"));
            s(&mut o, Some("false"));
            s(&mut o, Some("3"));
            s(&mut o, None);
            o.push(3);
            o.extend([0; 8]);
        }
        o
    }

    #[test]
    fn reads_entries_and_replaces_one_definition_only() {
        let f = file(&[
            ("SCHEMA", "app", Some("CREATE SCHEMA app;\n")),
            (
                "USER MAPPING",
                "USER MAPPING u SERVER s",
                Some("CREATE USER MAPPING x;\n"),
            ),
            ("ACL", "acl", None),
        ]);
        let toc = read(&f).unwrap();
        assert_eq!(toc.entries.len(), 3);
        assert_eq!(toc.entries[1].desc, "USER MAPPING");
        assert_eq!(toc.entries[2].defn, None);
        let out = toc.rewrite(&f, &[(1, b"CREATE USER MAPPING y_longer;\n".to_vec())]);
        let again = read(&out).unwrap();
        assert_eq!(
            again.entries[1].defn.as_deref(),
            Some(&b"CREATE USER MAPPING y_longer;\n"[..])
        );
        assert_eq!(again.entries[0].defn, toc.entries[0].defn);
        assert_eq!(toc.rewrite(&f, &[]), f);
    }

    #[test]
    fn refuses_what_it_cannot_read_safely() {
        let f = file(&[("SCHEMA", "app", Some("CREATE SCHEMA app;\n"))]);
        assert!(read(&f[..f.len() - 3]).is_err());
        let mut newer = f.clone();
        newer[6] = 17;
        let e = read(&newer).unwrap_err().to_string();
        assert!(e.contains("version 1.17"), "{e}");
        assert!(read(b"PGDMX").is_err());
    }
}
