//! `--delta --from`: a delta restore that reads only what differs. The stored object is read
//! by range (see [`crate::stream::ranged`]): first the trailer at its end, whose index says
//! where each member starts, then the header and the backup manifest; then every file the
//! directory holds with the manifest's size and CRC-32C is kept as it is, unread in the
//! backup, and the stream handed to the ordinary delta walk holds only the other members
//! (the files that differ or are missing, every directory and link, the manifest and the
//! trailer). The walk counts the files kept as seen, so the manifest check still covers
//! every file, and removes what the manifest does not list, as before.
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

/// What to restore: the members to read, and the files kept as the directory holds them.
pub struct Plan {
    /// Read on a thread of its own, so a failed ranged read (a lost connection, a replaced
    /// object) is the error reported, with its own exit code, not a damaged archive.
    pub stream: crate::plumbing::pipe::Pipe,
    pub unchanged: Seen,
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
    let Some(unchanged) = kept(&entries, &sums, |name| {
        destination(name, &o.pgdata, &locations).ok()
    })?
    else {
        return Ok(None);
    };
    let mut wanted = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let same = e.kind == 'f'
            && destination(&e.name, &o.pgdata, &locations)
                .is_ok_and(|(_, listed)| unchanged.contains_key(&listed));
        if !same {
            wanted.push(span(i));
        }
    }
    wanted.push((trailer_at, content.len()));
    Ok(Some(Plan {
        stream: members(content, wanted),
        unchanged,
    }))
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

/// The files the directory already holds as the manifest lists them (size and CRC-32C),
/// summed on two threads; `None` when too few of them are the same for reading by range to
/// pay (see [`worth_it`]).
fn kept(
    entries: &[Entry],
    sums: &std::collections::BTreeMap<String, (u64, Option<String>)>,
    place: impl Fn(&str) -> Option<(std::path::PathBuf, String)>,
) -> Result<Option<Seen>> {
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
            let on_disk = std::fs::symlink_metadata(&dest).ok();
            if on_disk.is_some_and(|m| m.is_file() && m.len() == *size) {
                candidates.push((dest, listed, *size, want.clone()));
            }
        }
    }
    let total: u64 = sums.values().map(|(n, _)| n).sum();
    let (mut unchanged, mut summed, mut same) = (Seen::new(), 0u64, 0u64);
    let mut each = candidates.into_iter();
    let r = crate::plumbing::parallel::ordered(
        2,
        || Ok(each.next()),
        || Ok(()),
        |_, (dest, listed, size, want): (std::path::PathBuf, String, u64, String)| {
            let crc = crc_of(&dest)?;
            Ok((listed, size, manifest::same_crc(&want, crc).then_some(crc)))
        },
        |(listed, size, crc)| {
            summed += size;
            if let Some(crc) = crc {
                same += size;
                unchanged.insert(listed, (size, crc));
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
        Ok(()) if worth_it(total, total, same) => Ok(Some(unchanged)),
        Ok(()) => Ok(None),
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

fn crc_of(path: &Path) -> Result<u32> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut summed = manifest::Summing::new(std::io::BufReader::with_capacity(1 << 20, f));
    std::io::copy(&mut summed, &mut std::io::sink())
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(summed.sum().1)
}

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

/// Bytes read at once: two of weir-compress's 4 MiB frames (each worker holds a few pieces).
const PIECE: u64 = 2 * crate::stream::frames::FRAME as u64;

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
    /// the last. Pieces end at multiples of [`PIECE`], where frames end, so that no frame is
    /// decompressed for two pieces.
    fn next_piece(&mut self) -> Option<(u64, usize)> {
        let (a, b) = self.spans.pop_front()?;
        let end = b.min((a / PIECE + 1) * PIECE);
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
    fn a_failed_ranged_read_is_the_error_reported_with_its_code() {
        let mut stream = members(Arc::new(Flaky), vec![(0, 20 << 20), (20 << 20, 40 << 20)]);
        let mut got = Vec::new();
        assert!(std::io::copy(&mut stream, &mut got).is_err());
        assert_eq!(got.len(), PIECE as usize);
        let e = stream.error().expect("the read's own error");
        assert_eq!(exit_code_of(&e), ExitCode::NotFound, "{e:#}");
    }
}
