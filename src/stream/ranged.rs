//! Random access into a stored stream: any byte range of `age(weir-compress(bytes))` read
//! without reading what comes before it. age's payload is a sequence of 64 KiB chunks, each
//! authenticated on its own with its counter and a last-chunk flag in its nonce (age's
//! specification, "Payload"), so a range decrypts from the chunks that hold it; weir-compress's
//! end mark lists every frame's sizes (FORMAT.md section 15), so a range decompresses from the
//! frames that hold it. A stream either layer did not write (zstd's own, armored age) is not
//! random-accessible: `open` says `None` and the caller reads it whole instead.

use super::frames::{self, Listed};
use crate::plumbing::bad_input;
use anyhow::{Result, bail};

/// Bytes readable at any offset: a stored object, or one of weir's layers undone over one.
pub trait Ranged: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Exactly the `len` bytes from `at`; a range past the end is an error.
    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>>;
}

impl Ranged for std::sync::Arc<dyn Ranged> {
    fn len(&self) -> u64 {
        self.as_ref().len()
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        self.as_ref().read_at(at, len)
    }
}

/// Where the range of `len` bytes from `at` ends, `None` for an empty one; past `total` it is
/// an error.
fn end_of(at: u64, len: usize, total: u64) -> Result<Option<u64>> {
    if len == 0 {
        return Ok(None);
    }
    let end = at + len as u64;
    if end > total {
        bail!("a range past the end ({end} of {total} bytes)");
    }
    Ok(Some(end))
}

/// The plaintext of a binary age file, given its payload key.
pub struct Unsealed<R> {
    inner: R,
    key: [u8; 32],
    /// Where the payload's first chunk starts.
    payload: u64,
    chunks: u64,
    len: u64,
}

const CHUNK: u64 = super::age_stream::CHUNK as u64;
const SEALED: u64 = CHUNK + super::age_stream::TAG as u64;

impl<R: Ranged> Unsealed<R> {
    /// `None` unless `inner` is a binary age file. The header is read (up to 64 KiB) and
    /// opened with the identities or passphrase `o` names, as weir-encrypt -d opens it.
    pub fn open(inner: R, o: &super::encrypt::EncryptOptions) -> Result<Option<Unsealed<R>>> {
        let head = inner.read_at(0, inner.len().min(64 << 10) as usize)?;
        if !head.starts_with(super::encrypt::AGE_BINARY) {
            return Ok(None);
        }
        let mut cursor = std::io::Cursor::new(&head[..]);
        let key = super::encrypt::open_header(o, &mut cursor)?;
        let payload = cursor.position();
        let sealed = inner.len() - payload;
        if sealed < super::age_stream::TAG as u64 {
            return Err(bad_input("the age file's payload is missing"));
        }
        let chunks = sealed.div_ceil(SEALED);
        let len = sealed - chunks * super::age_stream::TAG as u64;
        Ok(Some(Unsealed {
            inner,
            key,
            payload,
            chunks,
            len,
        }))
    }
}

impl<R: Ranged> Ranged for Unsealed<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let Some(end) = end_of(at, len, self.len)? else {
            return Ok(Vec::new());
        };
        let (first, last) = (at / CHUNK, (end - 1) / CHUNK);
        let from = self.payload + first * SEALED;
        let to = (self.payload + (last + 1) * SEALED).min(self.inner.len());
        let sealed = self.inner.read_at(from, (to - from) as usize)?;
        let mut plain = Vec::with_capacity(((last - first + 1) * CHUNK) as usize);
        for (i, ct) in (first..).zip(sealed.chunks(SEALED as usize)) {
            let opened = super::age_stream::open_chunk(&self.key, i, i + 1 == self.chunks, ct)
                .ok_or_else(|| {
                    bad_input(format!(
                        "the ciphertext is damaged or was tampered with (chunk {i})"
                    ))
                })?;
            plain.extend_from_slice(&opened);
        }
        let skip = (at - first * CHUNK) as usize;
        Ok(plain[skip..skip + len].to_vec())
    }
}

/// The content of a weir-compress stream, through its end mark's frame table.
pub struct Unframed<R> {
    inner: R,
    /// Each frame: where its content starts, where it starts in `inner`, and its sizes.
    frames: Vec<(u64, u64, Listed)>,
    len: u64,
}

impl<R: Ranged> Unframed<R> {
    /// `None` unless `inner` is a weir-compress stream (its start mark first, its end mark
    /// last); an end mark that does not add up is bad input.
    pub fn open(inner: R) -> Result<Option<Unframed<R>>> {
        let n = inner.len();
        let start = frames::start_mark();
        let tail = frames::END_TAIL as u64;
        if n < start.len() as u64 + 8 + tail || inner.read_at(0, start.len())? != start {
            return Ok(None);
        }
        let foot = inner.read_at(n - tail, tail as usize)?;
        if foot[12..] != frames::END[..] {
            return Ok(None);
        }
        let count = u64::from(u32::from_le_bytes(foot[..4].try_into().expect("4")));
        let mark = 8 + count * 8 + tail;
        let damaged = || bad_input("the weir-compress stream's end mark does not match it");
        if mark + start.len() as u64 > n {
            return Err(damaged());
        }
        let bytes = inner.read_at(n - mark, mark as usize)?;
        let (listed, len) = frames::parse_end(&bytes[8..]).ok_or_else(damaged)?;
        let (mut content, mut at) = (0u64, start.len() as u64);
        let mut table = Vec::with_capacity(listed.len());
        for f in listed {
            table.push((content, at, f));
            content += u64::from(f.content);
            at += u64::from(f.compressed);
        }
        if content != len || at != n - mark {
            return Err(damaged());
        }
        Ok(Some(Unframed {
            inner,
            frames: table,
            len,
        }))
    }
}

impl<R: Ranged> Ranged for Unframed<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let Some(end) = end_of(at, len, self.len)? else {
            return Ok(Vec::new());
        };
        let first = self
            .frames
            .partition_point(|(c, _, f)| c + u64::from(f.content) <= at);
        let last = self.frames.partition_point(|(c, _, _)| *c < end) - 1;
        let (_, from, _) = self.frames[first];
        let (_, to, f) = self.frames[last];
        // The frames are contiguous in `inner`: one read, then each decompressed in turn.
        let sealed = self
            .inner
            .read_at(from, (to + u64::from(f.compressed) - from) as usize)?;
        let mut out = Vec::with_capacity(len);
        let mut z = zstd::bulk::Decompressor::new()?;
        let mut rest = &sealed[..];
        for (c, _, f) in &self.frames[first..=last] {
            let (frame, more) = rest.split_at(f.compressed as usize);
            rest = more;
            let data = z
                .decompress(frame, f.content as usize)
                .map_err(|e| bad_input(format!("zstd data is truncated or corrupt: {e}")))?;
            if data.len() != f.content as usize {
                return Err(bad_input("a frame holds less than the end mark says"));
            }
            let lo = at.saturating_sub(*c) as usize;
            let hi = ((end - c) as usize).min(data.len());
            out.extend_from_slice(&data[lo..hi]);
        }
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);

    impl Ranged for Mem {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
            Ok(self.0[at as usize..at as usize + len].to_vec())
        }
    }

    #[test]
    fn any_range_of_a_compressed_stream_reads_back() {
        let data: Vec<u8> = (0..(9 << 20) + 77u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 31)
            .collect();
        let z = frames::compress(&mut &data[..], Vec::new(), 3, 2).unwrap();
        let u = Unframed::open(Mem(z.clone())).unwrap().unwrap();
        assert_eq!(u.len(), data.len() as u64);
        let n = data.len() as u64;
        for (at, len) in [
            (0, 10),
            (4 << 20, 1),
            ((4 << 20) - 3, 9),
            (1000, 8 << 20),
            (n - 5, 5),
            (0, n as usize),
        ] {
            assert!(
                u.read_at(at, len).unwrap() == data[at as usize..at as usize + len],
                "{at} +{len}"
            );
        }
        assert!(u.read_at(n - 1, 2).is_err());
        // zstd's own stream is not random-accessible; a damaged table is an error.
        let theirs = zstd::bulk::compress(&data, 3).unwrap();
        assert!(Unframed::open(Mem(theirs)).unwrap().is_none());
        let mut bad = z;
        let at = bad.len() - frames::END_TAIL - 3;
        bad[at] ^= 1;
        assert!(Unframed::open(Mem(bad)).is_err());
    }
}
