//! Where each member of a base backup stream starts, recorded as the stream is written, so
//! that a restore holding the stored object can read one member without reading the ones
//! before it (a delta restore fetches only the files that differ). The list goes into the
//! stream's trailer as `index` (FORMAT.md section 12).
//!
//! The writer watches the tar stream it passes on rather than being told at each append: it
//! reads each 512-byte header as the tar crate writes it, skips the member's data and padding
//! by the header's size, and takes a GNU long-name record ('L', then the name, then the real
//! header) as part of the member it names.

use std::io::{self, Write};

/// Regular files longer than this also get a CRC-32C for each piece of this size (the last
/// may be shorter), in the trailer's `pieces`: a delta restore compares a changed file's
/// pieces with what the directory holds and reads only those that differ.
pub const PIECE: u64 = 1 << 20;

/// A file's pieces: where its member starts (as in the index), where its data starts, and
/// the CRC-32C of each piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pieces {
    pub at: u64,
    pub data_at: u64,
    pub crcs: Vec<u32>,
}

/// The pieces of the file whose data is passing, summed as they pass.
struct PieceSums {
    pieces: Pieces,
    /// Bytes of the file (not of its padding) still to come.
    content_left: u64,
    digest: crc_fast::Digest,
    filled: u64,
}

impl PieceSums {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = ((PIECE - self.filled) as usize).min(data.len());
            self.digest.update(&data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == PIECE {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        self.pieces.crcs.push(self.digest.finalize() as u32);
        self.digest.reset();
        self.filled = 0;
    }
}

/// One member: where its first header starts in the stream, its kind, its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub at: u64,
    /// `f` a regular file, `d` a directory, `l` a symbolic link, `o` anything else.
    pub kind: char,
    pub name: String,
}

/// A writer that passes every byte on and lists the tar members in what it passed.
pub struct Indexed<W> {
    inner: W,
    at: u64,
    /// The header being gathered, or the bytes of data still to skip (and to keep, for a
    /// long name).
    state: State,
    long: Option<(u64, Vec<u8>)>,
    entries: Vec<Entry>,
    summing: Option<PieceSums>,
    pieces: Vec<Pieces>,
}

enum State {
    Header(Vec<u8>),
    Data { left: u64, name: bool },
    End,
}

impl<W: Write> Indexed<W> {
    pub fn new(inner: W) -> Indexed<W> {
        Indexed {
            inner,
            at: 0,
            state: State::Header(Vec::with_capacity(512)),
            long: None,
            entries: Vec::new(),
            summing: None,
            pieces: Vec::new(),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn into_inner(self) -> W {
        self.inner
    }

    /// The index as the trailer holds it: one line per member, `OFFSET KIND NAME`.
    pub fn text(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("{} {} {}\n", e.at, e.kind, e.name))
            .collect()
    }

    /// The pieces as the trailer holds them: one line per file longer than [`PIECE`],
    /// `OFFSET DATA_OFFSET CRC...`, each CRC-32C in hexadecimal.
    pub fn pieces_text(&self) -> String {
        let mut text = String::new();
        for p in &self.pieces {
            text.push_str(&format!("{} {}", p.at, p.data_at));
            for c in &p.crcs {
                text.push_str(&format!(" {c:08x}"));
            }
            text.push('\n');
        }
        text
    }

    fn watch(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::End => return,
                State::Header(h) => {
                    let n = (512 - h.len()).min(data.len());
                    h.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if h.len() == 512 {
                        let h = std::mem::take(h);
                        self.header(&h, self.at + n as u64 - 512);
                    }
                    self.at += n as u64;
                }
                State::Data { left, name } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    if *name {
                        if let Some((_, long)) = &mut self.long {
                            long.extend_from_slice(&data[..n]);
                        }
                    }
                    if let Some(s) = &mut self.summing {
                        let content = (s.content_left.min(n as u64)) as usize;
                        s.update(&data[..content]);
                        s.content_left -= content as u64;
                        if s.content_left == 0 {
                            if s.filled > 0 {
                                s.close();
                            }
                            let done = self.summing.take().expect("summing");
                            self.pieces.push(done.pieces);
                        }
                    }
                    *left -= n as u64;
                    data = &data[n..];
                    self.at += n as u64;
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(512));
                    }
                }
            }
        }
    }

    /// A whole header, which started at `start`.
    fn header(&mut self, raw: &[u8], start: u64) {
        if raw.iter().all(|&b| b == 0) {
            self.state = State::End;
            return;
        }
        let h = tar::Header::from_byte_slice(raw);
        let size = h.entry_size().unwrap_or(0);
        let padded = size.div_ceil(512) * 512;
        let kind = h.entry_type();
        let next = |left: u64, name: bool| match left {
            0 => State::Header(Vec::with_capacity(512)),
            _ => State::Data { left, name },
        };
        if kind.is_gnu_longname() {
            self.long = Some((start, Vec::new()));
            self.state = next(padded, true);
            return;
        }
        let (first, name) = match self.long.take() {
            Some((at, mut long)) => {
                // The long name's data ends with a NUL and padding.
                long.truncate(size_of_name(&long));
                (at, String::from_utf8_lossy(&long).into_owned())
            }
            None => (start, String::from_utf8_lossy(&h.path_bytes()).into_owned()),
        };
        if kind == tar::EntryType::Regular && size > PIECE {
            self.summing = Some(PieceSums {
                pieces: Pieces {
                    at: first,
                    data_at: start + 512,
                    crcs: Vec::new(),
                },
                content_left: size,
                digest: crc_fast::Digest::new(super::manifest::CRC32C),
                filled: 0,
            });
        }
        let kind = match kind {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            _ => 'o',
        };
        self.entries.push(Entry {
            at: first,
            kind,
            name: name.trim_end_matches('/').to_string(),
        });
        self.state = next(padded, false);
    }
}

fn size_of_name(long: &[u8]) -> usize {
    long.iter().position(|&b| b == 0).unwrap_or(long.len())
}

impl<W: Write> Write for Indexed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.watch(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads an index back from the trailer's text.
pub fn parse(text: &str) -> Option<Vec<Entry>> {
    text.lines()
        .map(|l| {
            let (at, rest) = l.split_once(' ')?;
            let (kind, name) = rest.split_once(' ')?;
            Some(Entry {
                at: at.parse().ok()?,
                kind: kind.chars().next()?,
                name: name.to_string(),
            })
        })
        .collect()
}

/// Reads the pieces back from the trailer's text, by where each member starts.
pub fn parse_pieces(text: &str) -> Option<std::collections::HashMap<u64, Pieces>> {
    text.lines()
        .map(|l| {
            let mut words = l.split(' ');
            let at = words.next()?.parse().ok()?;
            let data_at = words.next()?.parse().ok()?;
            let crcs = words
                .map(|w| u32::from_str_radix(w, 16).ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((at, Pieces { at, data_at, crcs }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_is_listed_where_it_starts() {
        let mut b = tar::Builder::new(Indexed::new(Vec::new()));
        let long = format!("data/{}/file", "d".repeat(150));
        let mut put = |name: &str, kind: tar::EntryType, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o600);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        put("weir-basebackup.json", tar::EntryType::Regular, b"{}\n");
        put("data", tar::EntryType::Directory, b"");
        put(&long, tar::EntryType::Regular, &vec![7; 1300]);
        put(
            "data/global/pg_control",
            tar::EntryType::Regular,
            &[1; 8192],
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, "data/pg_tblspc/16384", "/srv/ts")
            .unwrap();
        let w = b.into_inner().unwrap();
        let index = parse(&w.text()).unwrap();
        assert_eq!(index, w.entries());
        let names: Vec<(char, &str)> = index.iter().map(|e| (e.kind, e.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ('f', "weir-basebackup.json"),
                ('d', "data"),
                ('f', long.as_str()),
                ('f', "data/global/pg_control"),
                ('l', "data/pg_tblspc/16384"),
            ]
        );
        // Each member read from where the index says it starts is that member.
        let bytes = w.into_inner();
        for e in &index {
            let mut a = tar::Archive::new(&bytes[e.at as usize..]);
            let first = a.entries().unwrap().next().unwrap().unwrap();
            let path = first.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(path.trim_end_matches('/'), e.name);
        }
    }

    #[test]
    fn a_file_longer_than_a_piece_has_a_crc_for_each_piece_where_its_data_starts() {
        let big: Vec<u8> = (0..(5 * PIECE / 2) as usize)
            .map(|i| (i / 4093) as u8)
            .collect();
        let long = format!("data/base/1/{}", "9".repeat(120));
        let mut b = tar::Builder::new(Indexed::new(Vec::new()));
        for (name, data) in [
            ("data/small", &big[..100]),
            (long.as_str(), &big[..]),
            ("data/exact", &big[..PIECE as usize * 2]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        let w = b.into_inner().unwrap();
        let pieces = parse_pieces(&w.pieces_text()).unwrap();
        let entries = w.entries().to_vec();
        let bytes = w.into_inner();
        assert!(
            !pieces.contains_key(&entries[0].at),
            "a small file has no pieces"
        );
        for (e, len) in [(&entries[1], big.len()), (&entries[2], 2 * PIECE as usize)] {
            let p = &pieces[&e.at];
            let data = &bytes[p.data_at as usize..p.data_at as usize + len];
            assert!(data == &big[..len], "{}: not where its data starts", e.name);
            let want: Vec<u32> = data
                .chunks(PIECE as usize)
                .map(crate::physical::manifest::crc32c)
                .collect();
            assert_eq!(p.crcs, want, "{}", e.name);
        }
    }
}
