//! `--delta --from`: a delta restore that reads only what differs. The stored object is read
//! by range (see [`crate::stream::ranged`]): first the trailer at its end, whose index says
//! where each member starts, then the header and the backup manifest; then every file the
//! directory holds with the manifest's size and CRC-32C is kept as it is, unread in the
//! backup; a longer file that differs in some 1 MiB pieces (the trailer's `pieces` give each
//! one's CRC-32C, FORMAT.md section 12) is patched: only those pieces are read, once the
//! directory was made unstartable; and the stream handed to the ordinary delta walk holds
//! only the other members (the files that differ throughout or are missing, every directory
//! and link, the manifest and the trailer). The walk counts the files kept and patched as
//! seen, so the manifest check still covers every file, and removes what the manifest does
//! not list, as before.
//!
//! The object must be random-accessible: a local file or an S3 object (one ranged GET per run
//! of members), written by weir-compress (its end mark lists its frames), encrypted or not
//! (binary age), of a full backup whose trailer has the index. Anything else (zstd's own
//! compression, armored age, an incremental, a stream from before the index) is restored by
//! reading the stream whole, as without.

use super::basebackup::{DATA, HEADER, Header, MANIFEST, TRAILER, Trailer};
use super::index::{self, Entry};
use super::manifest::{self, Seen};
use super::restore::{RestoreOptions, destination, tablespace_locations};
use crate::stream::ranged::{Ranged, Unframed, Unsealed};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// What to restore: the members to read, the files kept as the directory holds them, and
/// the files where only some pieces differ.
pub struct Plan {
    /// Read on a thread of its own, so a failed ranged read (a lost connection, a replaced
    /// object) is the error reported, with its own exit code, not a damaged archive.
    pub stream: crate::plumbing::pipe::Pipe,
    pub kept: Kept,
}

/// The files a delta restore does not read whole from the backup.
#[derive(Default)]
pub struct Kept {
    /// The same as the manifest lists them (size and CRC-32C): left as they are.
    pub unchanged: Seen,
    /// Differing in some pieces (see [`index::PIECE`]): those are read and written, after
    /// the directory was made unstartable (see [`Kept::patch`]).
    patches: Vec<Patch>,
    content: Option<Arc<dyn Ranged>>,
}

/// A file to bring to the backup's content piece by piece.
struct Patch {
    dest: std::path::PathBuf,
    listed: String,
    size: u64,
    /// Where its data starts in the backup's content, and the CRC-32C of each piece there.
    data_at: u64,
    crcs: Vec<u32>,
    /// The pieces that differ from what the directory holds, in order.
    changed: Vec<u32>,
}

impl Patch {
    /// Bytes read from the backup: the pieces that differ (the rest stays unread).
    fn read(&self) -> u64 {
        let lens = self
            .changed
            .iter()
            .map(|&i| piece_len(self.size, i as usize));
        lens.sum()
    }
}

/// The plan for `url`, or `None` when it has to be read whole. Nothing is written before a
/// plan is made, so any failure making one (an object this cannot read by range, a header
/// too large for the first read) leaves the whole read to restore it, or to say what is
/// wrong with it; the reason is printed.
pub fn plan(o: &RestoreOptions, url: &str) -> Result<Option<Plan>> {
    match by_range(o, url) {
        Ok(plan) => Ok(plan),
        Err(e) => {
            eprintln!(
                "{}: reading {url} whole, not by range: {e:#}",
                crate::plumbing::program()
            );
            Ok(None)
        }
    }
}

fn by_range(o: &RestoreOptions, url: &str) -> Result<Option<Plan>> {
    // An object that cannot be opened is left to the whole read, which reports why.
    let opened = crate::storage::Location::parse(url)
        .and_then(|loc| crate::storage::open_ranged(&loc, &o.s3));
    let Ok(mut src) = opened else {
        return Ok(None);
    };
    if let Some(plain) = Unsealed::open(
        src.clone(),
        &super::source::decrypting(o.identity.as_deref()),
    )? {
        src = Arc::new(plain);
    }
    let Some(content) = Unframed::open(src)? else {
        return Ok(None);
    };
    let content: Arc<dyn Ranged> = Arc::new(content);
    let Some((trailer_at, trailer)) = find_trailer(content.as_ref())? else {
        return Ok(None);
    };
    let entries = index::parse(&trailer.index).unwrap_or_default();
    let span = |i: usize| -> (u64, u64) {
        let end = entries.get(i + 1).map_or(trailer_at, |e| e.at);
        (entries[i].at, end)
    };
    let Some(first) = entries.first().filter(|e| e.name == HEADER) else {
        return Ok(None);
    };
    let header: Header = serde_json::from_slice(&member(content.as_ref(), span(0), &first.name)?)
        .context("the stream's header")?;
    if header.parent.is_some() {
        return Ok(None);
    }
    let manifest_name = format!("{DATA}{MANIFEST}");
    let Some(m) = entries.iter().position(|e| e.name == manifest_name) else {
        return Ok(None);
    };
    let sums = manifest::sums(&member(content.as_ref(), span(m), &manifest_name)?)?;
    let locations = tablespace_locations(&header, &o.tablespace_mapping)?;
    let pieces = index::parse_pieces(&trailer.pieces).unwrap_or_default();
    let Some(mut kept) = kept(&entries, &sums, &pieces, |name| {
        destination(name, &o.pgdata, &locations).ok()
    })?
    else {
        return Ok(None);
    };
    let patched: std::collections::HashSet<&str> =
        kept.patches.iter().map(|p| p.listed.as_str()).collect();
    let mut wanted = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let same = e.kind == 'f'
            && destination(&e.name, &o.pgdata, &locations).is_ok_and(|(_, listed)| {
                kept.unchanged.contains_key(&listed) || patched.contains(listed.as_str())
            });
        if !same {
            wanted.push(span(i));
        }
    }
    wanted.push((trailer_at, content.len()));
    kept.content = Some(content.clone());
    Ok(Some(Plan {
        stream: members(content, wanted),
        kept,
    }))
}

impl Kept {
    /// Writes the pieces that differ into each patched file (see [`write_pieces`]). Returns
    /// the files kept and patched as seen (a patched one with the CRC-32C its pieces add up
    /// to), for the manifest check; `written` counts what was written and what stayed unread.
    pub fn patch(self, written: &super::chain::Written) -> Result<Seen> {
        let Kept {
            unchanged: mut seen,
            patches,
            content,
        } = self;
        for (size, _) in seen.values() {
            written.add_kept(*size, 0, 0);
        }
        let Some(content) = content else {
            return Ok(seen);
        };
        let wrote = write_pieces(content.as_ref(), &patches)?;
        for (p, wrote) in patches.iter().zip(wrote) {
            let pieces: Vec<(u32, u64)> = (p.crcs.iter().enumerate())
                .map(|(i, c)| (*c, piece_len(p.size, i)))
                .collect();
            written.add_kept(p.size, p.read(), wrote);
            seen.insert(p.listed.clone(), (p.size, combined(&pieces)));
        }
        Ok(seen)
    }
}

/// Reads the pieces that differ from `content`, decoded on every core, in runs of up to
/// eight neighbours (two frames), checks each against its CRC-32C, and writes the blocks
/// that differ into its file (cut or extended to the backup's length first). Returns the
/// bytes written to each file.
fn write_pieces(content: &dyn Ranged, patches: &[Patch]) -> Result<Vec<u64>> {
    let mut runs: Vec<(usize, u32, u32)> = Vec::new();
    for (k, p) in patches.iter().enumerate() {
        for &i in &p.changed {
            match runs.last_mut() {
                Some((pk, first, n)) if *pk == k && *first + *n == i && *n < 8 => *n += 1,
                _ => runs.push((k, i, 1)),
            }
        }
    }
    let mut each = runs.into_iter();
    let mut open: Option<(usize, std::fs::File)> = None;
    let mut wrote = vec![0u64; patches.len()];
    let mut old = Vec::new();
    crate::plumbing::parallel::ordered(
        super::object::cores(),
        || Ok(each.next()),
        || Ok(()),
        |_, (k, first, n)| {
            let (p, at) = (&patches[k], u64::from(first) * index::PIECE);
            let len = (u64::from(n) * index::PIECE).min(p.size - at);
            Ok((k, first, content.read_at(p.data_at + at, len as usize)?))
        },
        |(k, first, data)| {
            let p = &patches[k];
            for (j, piece) in data.chunks(index::PIECE as usize).enumerate() {
                let i = first as usize + j;
                if manifest::crc32c(piece) != p.crcs[i] {
                    let m = format!(
                        "{}: piece {i} read from the backup does not match its index: the backup is damaged",
                        p.listed
                    );
                    return Err(crate::plumbing::bad_input(m));
                }
            }
            if open.as_ref().is_none_or(|(ok, _)| *ok != k) {
                open = Some((k, resized(&p.dest, p.size)?));
            }
            let f = &open.as_ref().expect("opened").1;
            let at = u64::from(first) * index::PIECE;
            wrote[k] += super::chain::write_differing(f, at, &data, &mut old)
                .with_context(|| format!("cannot write {}", p.dest.display()))?;
            Ok(())
        },
    )?;
    Ok(wrote)
}

/// The length of piece `i` of a file of `size` bytes.
fn piece_len(size: u64, i: usize) -> u64 {
    (size - i as u64 * index::PIECE).min(index::PIECE)
}

/// The file at `path`, opened for writing at `size` bytes (cut, or extended with zeros that
/// the pieces written next replace).
fn resized(path: &Path, size: u64) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.set_len(size)
        .with_context(|| format!("cannot resize {}", path.display()))?;
    Ok(f)
}

/// The spans of `content` in order, read on a thread of their own and decoded (decrypted,
/// decompressed) piece by piece on every core, since one thread decoding was most of a delta
/// restore's time where a table changed (perf: zstd and its copies, 2026-12-05).
fn members(content: Arc<dyn Ranged>, wanted: Vec<(u64, u64)>) -> crate::plumbing::pipe::Pipe {
    let mut spans = Spans::new(wanted);
    crate::plumbing::pipe::spawn(move |out| {
        crate::plumbing::parallel::ordered(
            super::object::cores(),
            || Ok(spans.next_piece()),
            || Ok(()),
            |_, (at, len)| content.read_at(at, len),
            |piece| out.write_all(&piece).context("handing the members on"),
        )
    })
}

/// The files the directory already holds as the manifest lists them (size and CRC-32C), and
/// those where only some pieces differ from the backup's (when its trailer has their CRCs),
/// summed on every core; `None` when too little of the backup can stay unread for reading by
/// range to pay (see [`worth_it`]).
fn kept(
    entries: &[Entry],
    sums: &std::collections::BTreeMap<String, (u64, Option<String>)>,
    pieces: &std::collections::HashMap<u64, index::Pieces>,
    place: impl Fn(&str) -> Option<(std::path::PathBuf, String)>,
) -> Result<Option<Kept>> {
    let mut candidates = Vec::new();
    for e in entries.iter().filter(|e| e.kind == 'f') {
        let Some((dest, listed)) = place(&e.name) else {
            continue;
        };
        // pg_control always comes from the backup: the walk removes it first, so that no
        // server starts on a half-restored directory, and writes it back from the stream.
        if listed == "global/pg_control" {
            continue;
        }
        if let Some((size, Some(want))) = sums.get(&listed) {
            let Some(on_disk) = std::fs::symlink_metadata(&dest)
                .ok()
                .filter(|m| m.is_file())
            else {
                continue;
            };
            let split = pieces.get(&e.at);
            if on_disk.len() == *size || split.is_some() {
                candidates.push((dest, listed, *size, want.clone(), split));
            }
        }
    }
    let total: u64 = sums.values().map(|(n, _)| n).sum();
    let (mut kept, mut summed, mut same) = (Kept::default(), 0u64, 0u64);
    let mut each = candidates.into_iter();
    let r = crate::plumbing::parallel::ordered(
        super::object::cores(),
        || Ok(each.next()),
        || Ok(vec![0u8; index::PIECE as usize]),
        |buf, (dest, listed, size, want, split)| {
            let on_disk = pieces_of(&dest, buf)?;
            Ok(compare(dest, listed, size, &want, split, &on_disk))
        },
        |(size, found)| {
            summed += size;
            match found {
                Found::Same(listed, crc) => {
                    same += size;
                    kept.unchanged.insert(listed, (size, crc));
                }
                Found::Pieces(p) => {
                    same += size - p.read();
                    kept.patches.push(p);
                }
                Found::Differs => {}
            }
            if !worth_it(total, summed, same) {
                return Err(NotWorthIt.into());
            }
            Ok(())
        },
    );
    match r {
        Err(e) if e.is::<NotWorthIt>() => Ok(None),
        Err(e) => Err(e),
        Ok(()) if worth_it(total, total, same) => Ok(Some(kept)),
        Ok(()) => Ok(None),
    }
}

/// What the directory holds of one file, against the backup.
enum Found {
    Same(String, u32),
    Pieces(Patch),
    Differs,
}

/// Compares a file's pieces on disk with the manifest's CRC-32C and the backup's pieces.
fn compare(
    dest: std::path::PathBuf,
    listed: String,
    size: u64,
    want: &str,
    split: Option<&index::Pieces>,
    on_disk: &[(u32, u64)],
) -> (u64, Found) {
    let len: u64 = on_disk.iter().map(|(_, n)| n).sum();
    let split = split.filter(|p| p.crcs.len() as u64 == size.div_ceil(index::PIECE));
    let Some(split) = split else {
        // No pieces (a file of one piece, or a backup from before them): the file's
        // CRC-32C against the manifest's.
        let crc = combined(on_disk);
        return match len == size && manifest::same_crc(want, crc) {
            true => (size, Found::Same(listed, crc)),
            false => (size, Found::Differs),
        };
    };
    let mut changed: Vec<u32> = (0..split.crcs.len())
        .filter(|&i| on_disk.get(i) != Some(&(split.crcs[i], piece_len(size, i))))
        .map(|i| i as u32)
        .collect();
    if changed.is_empty() {
        // Every piece the backup's, each checked by a CRC-32C of its own (closer than the
        // file's one): the file is the backup's, its CRC-32C the manifest's. Combining the
        // pieces' instead took a sixth of a delta's CPU (perf).
        match (len == size, manifest::crc_of_manifest(want)) {
            (true, Some(crc)) => return (size, Found::Same(listed, crc)),
            // Longer on disk: the last piece is read again, and the file cut after it.
            (false, _) => changed.push(split.crcs.len() as u32 - 1),
            (true, None) => return (size, Found::Differs),
        }
    }
    if changed.len() == split.crcs.len() {
        return (size, Found::Differs);
    }
    let patch = Patch {
        dest,
        listed,
        size,
        data_at: split.data_at,
        crcs: split.crcs.clone(),
        changed,
    };
    (size, Found::Pieces(patch))
}

/// The CRC-32C of a file from its pieces' (0 for an empty one).
fn combined(pieces: &[(u32, u64)]) -> u32 {
    let mut crc = 0u64;
    for (i, (c, n)) in pieces.iter().enumerate() {
        crc = match i {
            0 => u64::from(*c),
            _ => crc_fast::checksum_combine(manifest::CRC32C, crc, u64::from(*c), *n),
        };
    }
    crc as u32
}

/// The CRC-32C and length of each [`index::PIECE`] of the file at `path`, read through
/// `buf` (a piece long: one per worker, since most files are far shorter than a piece).
fn pieces_of(path: &Path, buf: &mut [u8]) -> Result<Vec<(u32, u64)>> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    loop {
        let n = crate::plumbing::read_full(&mut f, buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(out);
        }
        out.push((manifest::crc32c(&buf[..n]), n as u64));
    }
}

/// Reading by range pays when at least half the backup's file bytes can stay unread: past
/// that, reading the object whole (on every core, in the order it is stored) is faster than
/// fetching most of it member by member. Judged after the first tenth of the files summed,
/// so a copy that differs everywhere (one that ran VACUUM over every table) costs a tenth
/// of a pass over its files, not a whole one (measured: docs/BENCHMARKS.md).
fn worth_it(total: u64, summed: u64, same: u64) -> bool {
    summed * 10 < total || same * 2 >= summed.min(total)
}

#[derive(Debug)]
struct NotWorthIt;

impl std::fmt::Display for NotWorthIt {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("too few files unchanged to read by range")
    }
}

impl std::error::Error for NotWorthIt {}

/// The trailer (the stream's last member) and where it starts, found by reading back from the
/// end of the content in growing windows: a header block at a 512-byte boundary named
/// [`TRAILER`].
fn find_trailer(content: &dyn Ranged) -> Result<Option<(u64, Trailer)>> {
    let len = content.len();
    let mut window = (1u64 << 20).min(len);
    loop {
        let from = len - window;
        let tail = content.read_at(from, window as usize)?;
        let mut at = (len.saturating_sub(512) / 512) * 512;
        while at >= from {
            let raw = &tail[(at - from) as usize..(at - from) as usize + 512];
            let h = tar::Header::from_byte_slice(raw);
            if h.path_bytes().as_ref() == TRAILER.as_bytes() {
                let size = h.entry_size()?;
                let data = (at - from + 512) as usize;
                if data as u64 + size <= window {
                    let t: Trailer = serde_json::from_slice(&tail[data..data + size as usize])
                        .map_err(|e| {
                            super::restore::bad(format!("the stream's {TRAILER} is not valid: {e}"))
                        })?;
                    return Ok(Some((at, t)));
                }
            }
            if at < 512 {
                break;
            }
            at -= 512;
        }
        if window == len || window >= 64 << 20 {
            return Ok(None);
        }
        window = (window * 8).min(len);
    }
}

/// One member's data, read from its span.
fn member(content: &dyn Ranged, (at, end): (u64, u64), name: &str) -> Result<Vec<u8>> {
    let bytes = content.read_at(at, (end - at) as usize)?;
    let mut a = tar::Archive::new(&bytes[..]);
    let mut e = a
        .entries()?
        .next()
        .ok_or_else(|| super::restore::bad(format!("{name}: not where the index says")))??;
    if e.path()?.to_string_lossy().trim_end_matches('/') != name {
        return Err(super::restore::bad(format!(
            "{name}: not where the index says"
        )));
    }
    let mut data = Vec::new();
    e.read_to_end(&mut data)?;
    Ok(data)
}

/// The spans of the content, one after another, as one stream, read a few frames at a time.
struct Spans {
    spans: std::collections::VecDeque<(u64, u64)>,
}

/// Bytes of members read at once: two of weir-compress's 4 MiB frames (each worker holds a
/// few such reads).
const READ: u64 = 2 * crate::stream::frames::FRAME as u64;

impl Spans {
    fn new(spans: Vec<(u64, u64)>) -> Spans {
        // Neighbouring spans are read as one.
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => merged.push((a, b)),
            }
        }
        Spans {
            spans: merged.into(),
        }
    }

    /// Where the next piece of the members wanted starts and how long it is; `None` after
    /// the last. Pieces end at multiples of [`READ`], where frames end, so that no frame is
    /// decompressed for two pieces.
    fn next_piece(&mut self) -> Option<(u64, usize)> {
        let (a, b) = self.spans.pop_front()?;
        let end = b.min((a / READ + 1) * READ);
        if end < b {
            self.spans.push_front((end, b));
        }
        Some((a, (end - a) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plumbing::{ExitCode, coded, exit_code_of};

    /// An object whose first piece reads and whose second fails, as a GET that loses its
    /// connection (or finds the object replaced) half-way.
    struct Flaky;

    impl Ranged for Flaky {
        fn len(&self) -> u64 {
            64 << 20
        }
        fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
            match at {
                0 => Ok(vec![7; len]),
                _ => Err(coded(
                    ExitCode::NotFound,
                    "s3://b/base.tar.zst: no such object",
                )),
            }
        }
    }

    #[test]
    fn only_the_pieces_that_differ_or_are_missing_are_read() {
        let piece = index::PIECE as usize;
        let backup: Vec<u8> = (0..piece * 5 / 2).map(|i| (i % 251) as u8).collect();
        let sums = |d: &[u8]| -> Vec<(u32, u64)> {
            d.chunks(piece)
                .map(|c| (manifest::crc32c(c), c.len() as u64))
                .collect()
        };
        let split = index::Pieces {
            at: 0,
            data_at: 512,
            crcs: sums(&backup).iter().map(|(c, _)| *c).collect(),
        };
        let whole = hex::encode(manifest::crc32c(&backup).to_le_bytes());
        let size = backup.len() as u64;
        let found = |disk: &[u8]| {
            compare(
                "f".into(),
                "f".into(),
                size,
                &whole,
                Some(&split),
                &sums(disk),
            )
            .1
        };
        assert!(matches!(found(&backup), Found::Same(_, c) if c == manifest::crc32c(&backup)));
        let mut one = backup.clone();
        one[piece + 7] ^= 1;
        assert!(matches!(found(&one), Found::Pieces(p) if p.changed == [1]));
        // Longer on disk: the last piece differs in length; shorter: the missing ones too.
        let mut longer = backup.clone();
        longer.extend_from_slice(&[0; 8192]);
        assert!(matches!(found(&longer), Found::Pieces(p) if p.changed == [2]));
        assert!(matches!(found(&backup[..piece]), Found::Pieces(p) if p.changed == [1, 2]));
        // Every piece differs: read whole, as a file without pieces is.
        assert!(matches!(found(&vec![9; backup.len()]), Found::Differs));
    }

    #[test]
    fn a_failed_ranged_read_is_the_error_reported_with_its_code() {
        let mut stream = members(Arc::new(Flaky), vec![(0, 20 << 20), (20 << 20, 40 << 20)]);
        let mut got = Vec::new();
        assert!(std::io::copy(&mut stream, &mut got).is_err());
        assert_eq!(got.len(), READ as usize);
        let e = stream.error().expect("the read's own error");
        assert_eq!(exit_code_of(&e), ExitCode::NotFound, "{e:#}");
    }
}
