//! A stream cut into the pieces a recipe lists: content-defined chunks (FastCDC, Xia et al.,
//! USENIX ATC 2016, in the `fastcdc` crate's 2020 form), cut so that the same bytes give the
//! same chunks whatever surrounds them.
//!
//! A tar stream (a weir archive, a base backup) is read as its members: each member's 512-byte
//! header is kept whole in the recipe (it holds the name and, in a weir archive, a chunk number
//! and a time that change from run to run), and each member's content, with its padding, is
//! chunked on its own, with a cut where it starts and where it ends. So members that come in
//! another order (weir-extract's workers finish in any order), or whose neighbours changed,
//! still give the chunks they gave before. What does not read as tar (another stream, or the
//! zero blocks at a tar stream's end) is chunked as it comes. How the stream is cut decides only
//! how well it deduplicates, never what `cat` gives back: the pieces are its bytes in order.

use anyhow::Result;
use std::collections::VecDeque;
use std::io::Read;

/// Chunk sizes: at least 16 KiB, about 64 KiB on average, at most 256 KiB. Measured on the
/// benchmark's daily changes (scripts/lib/bench-dedup.sh, a 700 MB archive, days 3 to 8): each
/// day stored 1.85 MB of new chunks with these sizes, where 512 KiB chunks stored 4.3 MB and
/// 1 MiB 7.0 MB. Each place where rows changed costs the chunk or two around it, so smaller
/// chunks store less of what did not change; packs (see push.rs) keep them from costing an
/// object, and lists a recipe line, each. Version 1 repositories used 128 KiB, 512 KiB, 2 MiB.
pub const MIN: usize = 16 << 10;
pub const AVG: usize = 64 << 10;
pub const MAX: usize = 256 << 10;

const BLOCK: usize = 512;

/// Read ahead: four of the largest chunk, so that what is left after cutting moves to the
/// front once per megabyte read rather than once per chunk (at 64 KiB chunks, moving it after
/// each cut had copied the stream three times over).
const AHEAD: usize = 4 * MAX;

/// What the recipe lists, in stream order.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// Bytes kept in the recipe itself (a tar header).
    Inline(Vec<u8>),
    /// A chunk, stored once under its keyed hash.
    Chunk(Vec<u8>),
}

enum State {
    /// A tar header comes next.
    Header,
    /// Inside a member's content: this many bytes of it are still to read.
    Content(u64),
    /// No tar structure (any more): chunked to the end.
    Raw,
}

pub struct Chunker<R: Read> {
    r: R,
    state: State,
    /// Read and not yet cut.
    buf: Vec<u8>,
    ready: VecDeque<Piece>,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(r: R) -> Chunker<R> {
        Chunker {
            r,
            state: State::Header,
            buf: Vec::with_capacity(AHEAD),
            ready: VecDeque::new(),
            eof: false,
        }
    }

    /// The next piece; `None` at the stream's end.
    pub fn next_piece(&mut self) -> Result<Option<Piece>> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            match self.state {
                State::Header => self.header()?,
                State::Content(left) => self.content(Some(left))?,
                State::Raw => {
                    if self.eof && self.buf.is_empty() {
                        return Ok(None);
                    }
                    self.content(None)?
                }
            }
        }
    }

    /// Reads a header block: a tar header goes out inline and its content follows; anything
    /// else (an end-of-archive block, not tar at all) starts the raw part.
    fn header(&mut self) -> Result<()> {
        let mut block = vec![0u8; BLOCK];
        let n = crate::plumbing::read_full(&mut self.r, &mut block)?;
        block.truncate(n);
        match (n == BLOCK).then(|| member_size(&block)).flatten() {
            Some(size) => {
                self.ready.push_back(Piece::Inline(block));
                self.state = Self::after(size.div_ceil(BLOCK as u64) * BLOCK as u64);
            }
            None => {
                self.eof = n < BLOCK;
                self.buf = block;
                self.state = State::Raw;
            }
        }
        Ok(())
    }

    fn after(content: u64) -> State {
        match content {
            0 => State::Header,
            n => State::Content(n),
        }
    }

    /// Fills the buffer to `AHEAD` from the member's content (`left` bytes of it remain) or,
    /// raw, from the stream, and cuts what can be cut: every chunk that has `MAX` bytes after
    /// its start (all FastCDC looks at), or all of it when its segment ended.
    fn content(&mut self, left: Option<u64>) -> Result<()> {
        let want = (AHEAD - self.buf.len()) as u64;
        let want = left.map_or(want, |l| l.min(want)) as usize;
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let n = crate::plumbing::read_full(&mut self.r, &mut self.buf[start..])?;
        self.buf.truncate(start + n);
        if n < want {
            self.eof = true;
        }
        let left = left.map(|l| l - n as u64);
        // The segment ends here: a member's content is all in, or the stream ended.
        let ends = left == Some(0) || self.eof;
        self.cut(if ends { 0 } else { MAX });
        self.state = match left {
            Some(_) if self.eof => State::Raw,
            Some(0) => State::Header,
            Some(l) => State::Content(l),
            None => State::Raw,
        };
        Ok(())
    }

    /// Cuts chunks from the front while more than `keep` bytes are left, then moves the rest
    /// to the front, once.
    fn cut(&mut self, keep: usize) {
        let mut at = 0;
        while self.buf.len() - at > keep {
            let len = first_cut(&self.buf[at..]);
            self.ready
                .push_back(Piece::Chunk(self.buf[at..at + len].to_vec()));
            at += len;
        }
        self.buf.drain(..at);
    }
}

/// The length of the first content-defined chunk of `buf` (all of it when shorter than the
/// smallest chunk).
fn first_cut(buf: &[u8]) -> usize {
    fastcdc::v2020::FastCDC::new(buf, MIN, AVG, MAX)
        .next()
        .map_or(buf.len(), |c| c.length)
}

/// The content size a tar header announces, if `block` is a header (its checksum holds and it
/// is not all zeros; POSIX.1-2017, pax, "ustar Interchange Format"). A size in GNU's base-256
/// form (a first byte with its high bit set) is read too.
fn member_size(block: &[u8]) -> Option<u64> {
    if block.iter().all(|b| *b == 0) {
        return None;
    }
    let recorded = octal(&block[148..156])?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u64
            }
        })
        .sum();
    if sum != recorded {
        return None;
    }
    let field = &block[124..136];
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    octal(field)
}

/// A NUL- or space-terminated octal field.
fn octal(field: &[u8]) -> Option<u64> {
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(data: &[u8]) -> Vec<Piece> {
        let mut c = Chunker::new(data);
        let mut out = Vec::new();
        while let Some(p) = c.next_piece().unwrap() {
            out.push(p);
        }
        out
    }

    fn join(ps: &[Piece]) -> Vec<u8> {
        ps.iter()
            .flat_map(|p| match p {
                Piece::Inline(b) | Piece::Chunk(b) => b.clone(),
            })
            .collect()
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn chunks(ps: &[Piece]) -> Vec<&[u8]> {
        ps.iter()
            .filter_map(|p| match p {
                Piece::Chunk(c) => Some(&c[..]),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_pieces_are_the_stream_in_order() {
        for data in [
            Vec::new(),
            noise(100, 1),
            noise(9 << 20, 2),
            tar(&[("a", &noise(5 << 20, 3)), ("b", b""), ("c", &noise(700, 4))]),
        ] {
            let ps = pieces(&data);
            assert_eq!(join(&ps), data);
            assert!(chunks(&ps).iter().all(|c| c.len() <= MAX && !c.is_empty()));
        }
    }

    #[test]
    fn members_in_another_order_give_the_same_chunks() {
        let (a, b) = (noise(3 << 20, 5), noise(2 << 20, 6));
        let one = pieces(&tar(&[("a", &a), ("b", &b)]));
        let two = pieces(&tar(&[("b", &b), ("a", &a)]));
        let mut c1 = chunks(&one);
        let mut c2 = chunks(&two);
        c1.sort();
        c2.sort();
        assert_eq!(c1, c2);
        // Raw, the same two streams share little.
        assert!(matches!(
            pieces(&[&a[..], &b[..]].concat())[0],
            Piece::Chunk(_)
        ));
    }

    #[test]
    fn a_change_inside_a_big_member_leaves_most_chunks_alone() {
        let mut a = noise(12 << 20, 7);
        let before = pieces(&tar(&[("a", &a)]));
        a.splice(6 << 20..6 << 20, b"an inserted row\n".iter().copied());
        let after = pieces(&tar(&[("a", &a)]));
        let old: std::collections::HashSet<&[u8]> = chunks(&before).into_iter().collect();
        let new = chunks(&after);
        let changed = new.iter().filter(|c| !old.contains(*c)).count();
        assert!(new.len() >= 8, "{} chunks", new.len());
        assert!(changed <= 2, "{changed} of {} chunks changed", new.len());
    }

    #[test]
    fn a_damaged_header_makes_the_rest_raw_and_still_whole() {
        let mut data = tar(&[("a", &noise(1 << 20, 8)), ("b", &noise(1 << 20, 9))]);
        data[3] ^= 0xff;
        let ps = pieces(&data);
        assert_eq!(join(&ps), data);
        assert!(ps.iter().all(|p| matches!(p, Piece::Chunk(_))));
    }

    #[test]
    fn sizes_read_as_tar_writes_them() {
        let mut h = tar::Header::new_gnu();
        h.set_size(10 << 30);
        h.set_cksum();
        assert_eq!(member_size(h.as_bytes()), Some(10 << 30));
        let mut h = tar::Header::new_ustar();
        h.set_size(1234);
        h.set_cksum();
        assert_eq!(member_size(h.as_bytes()), Some(1234));
        assert_eq!(member_size(&[0; 512]), None);
    }
}
