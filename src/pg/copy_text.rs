//! PostgreSQL COPY text format: cutting a COPY stream into chunks on row boundaries, counting
//! rows, and decoding and encoding fields (CSV output, weir-mask).
//!
//! In COPY text format every raw newline byte ends a row, because a newline inside a value is
//! written as the two bytes `\n` (PostgreSQL documentation, COPY, "Text Format"). So a chunk
//! cut after a raw `0x0A` never splits a row, and rows are counted by counting `0x0A` bytes.

use crate::archive::Algo;
use anyhow::{Result, bail};

/// One chunk of COPY text: whole rows only, with its row count and digest (the archive's
/// hash, [`Algo`]).
pub struct Chunk {
    pub data: Vec<u8>,
    pub rows: u64,
    pub digest: [u8; 32],
}

impl Chunk {
    pub fn new(data: Vec<u8>, algo: Algo) -> Chunk {
        let rows = count_rows(&data);
        Chunk::with_rows(data, rows, algo)
    }

    /// A chunk whose rows the caller counted as it wrote them.
    pub fn with_rows(data: Vec<u8>, rows: u64, algo: Algo) -> Chunk {
        debug_assert_eq!(rows, count_rows(&data));
        let digest = algo.digest(&data);
        Chunk { data, rows, digest }
    }

    /// A chunk that passes through unhashed (its table's digest is carried over).
    pub fn unhashed(data: Vec<u8>) -> Chunk {
        let rows = count_rows(&data);
        Chunk {
            data,
            rows,
            digest: [0; 32],
        }
    }
}

pub fn count_rows(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}

/// The positions of the tabs and newlines of COPY text, in order: field and row ends, in one
/// pass. Fields are a dozen bytes on average, so a search call per field (memchr) costs more
/// in setup than in scanning; this tests eight bytes at a time with integer arithmetic.
pub struct Delimiters<'a> {
    data: &'a [u8],
    /// Where the next eight bytes to test start.
    next: usize,
    /// Where the tested word started, and its delimiters: the top bit of each matching byte.
    base: usize,
    found: u64,
}

impl<'a> Delimiters<'a> {
    pub fn new(data: &'a [u8]) -> Delimiters<'a> {
        Delimiters {
            data,
            next: 0,
            base: 0,
            found: 0,
        }
    }
}

impl Iterator for Delimiters<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // The top bit of each zero byte of x, exactly: no borrow crosses bytes.
        let zeros = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
        while self.found == 0 {
            let at = self.next;
            let rest = self.data.get(at..)?;
            if rest.is_empty() {
                return None;
            }
            let x = match rest.first_chunk::<8>() {
                Some(w) => u64::from_le_bytes(*w),
                None => {
                    // The last few bytes, padded with zeros (neither tab nor newline).
                    let mut w = [0u8; 8];
                    w[..rest.len()].copy_from_slice(rest);
                    u64::from_le_bytes(w)
                }
            };
            self.found =
                zeros(x ^ (ONES * u64::from(b'\t'))) | zeros(x ^ (ONES * u64::from(b'\n')));
            self.base = at;
            self.next = at + 8;
        }
        let i = self.found.trailing_zeros() as usize / 8;
        self.found &= self.found - 1;
        Some(self.base + i)
    }
}

/// Accumulates a COPY stream and cuts it into chunks of about `target` bytes, each ending at a
/// row boundary. A single row longer than `target` makes one larger chunk: rows are never split.
///
/// Where a chunk ends is decided by its rows' content, not by its size alone: past half the
/// target, each row ends the chunk with a probability proportional to its length, drawn from
/// a hash of the row (so chunks average about `target`, at most about three times it). A row
/// inserted or deleted then moves only the cut it falls near, and the chunks after it keep
/// their bytes, which is what lets weir-dedup store an unchanged stretch of a table once
/// (the same idea as content-defined chunking, at row granularity).
pub struct Chunker {
    target: usize,
    buf: Vec<u8>,
    /// Where the rows not yet looked at start in `buf`.
    scanned: usize,
    /// Buffers handed back once written: reusing them spares a page fault and a page clear
    /// per 4 KiB that fresh allocations of this size would cost.
    pool: Option<crossbeam_channel::Receiver<Vec<u8>>>,
}

impl Chunker {
    pub fn new(target: usize) -> Chunker {
        Chunker {
            target,
            buf: Vec::with_capacity(target + (target >> 3)),
            scanned: 0,
            pool: None,
        }
    }

    /// A chunker that takes its buffers from `pool` when it has one.
    pub fn with_pool(target: usize, pool: crossbeam_channel::Receiver<Vec<u8>>) -> Chunker {
        let mut c = Chunker::new(0);
        c.target = target;
        c.pool = Some(pool);
        c.buf = c.fresh();
        c
    }

    fn fresh(&self) -> Vec<u8> {
        match self.pool.as_ref().and_then(|p| p.try_recv().ok()) {
            Some(mut v) => {
                v.clear();
                v
            }
            None => Vec::with_capacity(self.target + (self.target >> 3)),
        }
    }

    /// Appends bytes; returns a full chunk when one is ready.
    pub fn push(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let cut = self.find_cut()?;
        let mut rest = self.fresh();
        rest.extend_from_slice(&self.buf[cut..]);
        self.buf.truncate(cut);
        self.scanned = 0;
        Some(std::mem::replace(&mut self.buf, rest))
    }

    /// The end of the row that ends the chunk, if one has arrived.
    fn find_cut(&mut self) -> Option<usize> {
        let (min, max) = (self.target / 2, self.target.saturating_mul(3));
        let span = (self.target - min).max(1) as u128;
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let (start, end) = (self.scanned, self.scanned + i + 1);
            self.scanned = end;
            if end < min {
                continue;
            }
            // P(cut) = row length / span: the hash below row length x 2^64 / span.
            let row = &self.buf[start..end];
            if end >= max || u128::from(row_hash(row)) * span < (row.len() as u128) << 64 {
                return Some(end);
            }
        }
        None
    }

    /// Returns what is left at the end of the stream. A COPY stream always ends with a newline;
    /// anything after the last one means the stream was cut short.
    pub fn finish(self) -> Result<Option<Vec<u8>>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            bail!("COPY data ended in the middle of a row");
        }
        Ok(Some(self.buf))
    }
}

/// A hash of a row's first and last 16 bytes and its length, read as 64-bit words and mixed
/// by multiplication (the finalizer of MurmurHash3, Appleby): a few nanoseconds a row, and
/// enough to tell rows apart, since a row's first field is usually its key.
fn row_hash(row: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        u64::from_le_bytes(w)
    };
    let n = row.len();
    let head = &row[..n.min(16)];
    let tail = &row[n.saturating_sub(16)..];
    let mut h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for w in [
        word(head),
        word(head.get(8..).unwrap_or(&[])),
        word(tail),
        word(tail.get(8..).unwrap_or(&[])),
    ] {
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
    }
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Decodes one COPY text field. `None` is SQL NULL (`\N`).
pub fn decode_field(f: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    Ok(decode_field_into(f, &mut out)?.then_some(out))
}

/// Decodes one COPY text field, borrowing it when it holds no escape (most fields); `None`
/// for SQL NULL (`\N`).
pub fn field(f: &[u8]) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
    if memchr::memchr(b'\\', f).is_none() {
        return Ok(Some(std::borrow::Cow::Borrowed(f)));
    }
    Ok(decode_field(f)?.map(std::borrow::Cow::Owned))
}

/// Decodes one COPY text field into `out` (cleared first), so a caller can reuse the buffer;
/// returns false for SQL NULL (`\N`).
pub fn decode_field_into(f: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    out.clear();
    if f == b"\\N" {
        return Ok(false);
    }
    if memchr::memchr(b'\\', f).is_none() {
        out.extend_from_slice(f);
        return Ok(true);
    }
    out.reserve(f.len());
    let mut i = 0;
    while i < f.len() {
        // The bytes up to the next backslash as they are, in one copy.
        let Some(at) = memchr::memchr(b'\\', &f[i..]) else {
            out.extend_from_slice(&f[i..]);
            break;
        };
        out.extend_from_slice(&f[i..i + at]);
        i += at;
        let Some(&n) = f.get(i + 1) else {
            bail!("COPY field ends with a lone backslash");
        };
        i += 2;
        match n {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                let mut k = 0;
                while k < 2 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                    v = v * 8 + u32::from(f[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            b'x' if i < f.len() && f[i].is_ascii_hexdigit() => {
                let mut v = hexval(f[i]);
                i += 1;
                if i < f.len() && f[i].is_ascii_hexdigit() {
                    v = v * 16 + hexval(f[i]);
                    i += 1;
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    Ok(true)
}

/// Encodes one value as a COPY text field, exactly as PostgreSQL's `COPY TO` does
/// (copyto.c, CopyAttributeOutText): backslash, newline, carriage return, tab, backspace, form
/// feed and vertical tab are escaped, every other byte is written as it is. `None` is `\N`.
pub fn encode_field(v: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(b"\\N");
        return;
    };
    // Most values need no escape at all: one scan, then one copy. The scan folds without an
    // early exit, which the compiler turns into SIMD compares.
    if !v.iter().fold(false, |a, &c| a | (c < 14) | (c == b'\\')) {
        out.extend_from_slice(v);
        return;
    }
    let mut start = 0;
    for (i, &c) in v.iter().enumerate() {
        let esc = match c {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            8 => b'b',
            12 => b'f',
            11 => b'v',
            _ => continue,
        };
        out.extend_from_slice(&v[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&v[start..]);
}

fn hexval(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}

/// Writes the rows of a COPY text chunk as CSV (RFC 4180, as PostgreSQL's `COPY ... CSV`
/// writes it: NULL is an empty unquoted field, an empty string is `""`).
pub fn chunk_to_csv(data: &[u8], single_column: bool, out: &mut impl std::io::Write) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let Some(rows) = data.strip_suffix(b"\n") else {
        bail!("COPY chunk does not end with a newline");
    };
    for row in rows.split(|b| *b == b'\n') {
        let mut first = true;
        if !row.is_empty() {
            for field in row.split(|b| *b == b'\t') {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                write_csv_field(decode_field(field)?.as_deref(), single_column, out)?;
            }
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes one CSV field, quoting it when it needs quotes.
pub fn write_csv_field(
    v: Option<&[u8]>,
    single_column: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let Some(v) = v else { return Ok(()) };
    // PostgreSQL quotes an empty string (to tell it from NULL), a value holding the delimiter,
    // the quote or a line break, and in a one-column row a lone `\.`, which would otherwise
    // read as end-of-data (copyto.c, CopyAttributeOutCSV).
    let needs = v.is_empty()
        || (single_column && v == b"\\.")
        || v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !needs {
        return out.write_all(v);
    }
    out.write_all(b"\"")?;
    for part in v.split_inclusive(|b| *b == b'"') {
        out.write_all(part)?;
        if part.last() == Some(&b'"') {
            out.write_all(b"\"")?;
        }
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_are_every_tab_and_newline() {
        // Every length up to three words, bytes next to the delimiters included (0x08, 0x0b,
        // 0x89, 0x8a: one bit away), so a borrow or a stray high bit would show.
        let alphabet = [b'\t', b'\n', 0x08, 0x0b, 0x89, 0x8a, 0, b'a', 0xff];
        let mut state = 12345u64;
        for len in 0..=24 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        alphabet[(state >> 33) as usize % alphabet.len()]
                    })
                    .collect();
                let want: Vec<usize> = (0..len)
                    .filter(|&i| data[i] == b'\t' || data[i] == b'\n')
                    .collect();
                assert_eq!(Delimiters::new(&data).collect::<Vec<_>>(), want, "{data:?}");
            }
        }
    }

    #[test]
    fn chunker_cuts_only_at_row_ends() {
        let mut c = Chunker::new(8);
        let mut chunks = Vec::new();
        for piece in [&b"aaaa\nbb"[..], b"bbbbbbbbbb\n", b"c\n", b"dd\n"] {
            if let Some(ch) = c.push(piece) {
                chunks.push(ch);
            }
        }
        if let Some(ch) = c.finish().unwrap() {
            chunks.push(ch);
        }
        assert_eq!(chunks.concat(), b"aaaa\nbbbbbbbbbbbb\nc\ndd\n");
        for ch in &chunks {
            assert_eq!(ch.last(), Some(&b'\n'));
        }
        let mut c = Chunker::new(100);
        c.push(b"partial");
        assert!(c.finish().is_err());
    }

    fn cut(rows: &[String], target: usize, piece: usize) -> Vec<Vec<u8>> {
        let data: Vec<u8> = rows.concat().into_bytes();
        let mut c = Chunker::new(target);
        let mut out: Vec<Vec<u8>> = data.chunks(piece).filter_map(|p| c.push(p)).collect();
        out.extend(c.finish().unwrap());
        out
    }

    #[test]
    fn a_row_inserted_moves_only_the_cut_near_it() {
        let rows: Vec<String> = (0..40_000)
            .map(|i| format!("{i}\tvalue {}\n", i * 7))
            .collect();
        let before = cut(&rows, 16 << 10, 1000);
        assert_eq!(
            before,
            cut(&rows, 16 << 10, 333),
            "cuts depend on how the bytes arrive"
        );
        let sizes: Vec<usize> = before.iter().map(|c| c.len()).collect();
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!((10 << 10..24 << 10).contains(&avg), "average chunk {avg}");
        assert!(sizes.iter().all(|&n| n <= (48 << 10) + 100));
        let mut changed = rows.clone();
        changed.insert(20_000, "inserted\trow\n".into());
        let after = cut(&changed, 16 << 10, 1000);
        let old: std::collections::HashSet<&Vec<u8>> = before.iter().collect();
        let new = after.iter().filter(|c| !old.contains(c)).count();
        assert!(new <= 2, "{new} of {} chunks changed", after.len());
    }

    #[test]
    fn decodes_every_escape() {
        let f = br"a\tb\nc\\d\101\x41\x4\b\f\r\v\q";
        assert_eq!(
            decode_field(f).unwrap().unwrap(),
            b"a\tb\nc\\dAA\x04\x08\x0c\r\x0bq"
        );
        assert_eq!(decode_field(br"\N").unwrap(), None);
        assert_eq!(decode_field(br"\\N").unwrap().unwrap(), b"\\N");
        assert!(decode_field(b"x\\").is_err());
    }

    #[test]
    fn encode_inverts_decode() {
        let values: [&[u8]; 6] = [
            b"",
            b"\\N",
            b"\\.",
            b"a\tb\nc\r\\d\x08\x0b\x0c\x01",
            "né".as_bytes(),
            b"x",
        ];
        for v in values {
            let mut enc = Vec::new();
            encode_field(Some(v), &mut enc);
            assert!(!enc.contains(&b'\n') && !enc.contains(&b'\t'));
            assert_eq!(decode_field(&enc).unwrap().unwrap(), v);
        }
        let mut enc = Vec::new();
        encode_field(None, &mut enc);
        assert_eq!(decode_field(&enc).unwrap(), None);
    }

    #[test]
    fn csv_quotes_like_postgres() {
        let mut out = Vec::new();
        chunk_to_csv(
            b"1\t\\N\t\ta,b\tsay \"hi\"\n2\tx\\ny\t\\\\\tplain\n",
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1,,\"\",\"a,b\",\"say \"\"hi\"\"\"\n2,\"x\ny\",\\,plain\n"
        );
    }
}
