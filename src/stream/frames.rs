//! zstd as independent frames, both ways on several threads.
//!
//! Compressing: the input is cut into [`FRAME`]-byte pieces, each compressed as a frame of its
//! own (content size and checksum in it) by one of the workers, and written in order.
//! Concatenated frames are one valid zstd stream (RFC 8878, section 3.1), so `zstd -d` reads
//! the result as it reads its own.
//!
//! A stream of frames cut exactly between two frames would still be a valid zstd stream, and
//! a shorter one. So the frames sit between two skippable frames (3.1.2, which `zstd -d`
//! skips): a start mark, and an end mark holding the content's length. weir-compress -d reads
//! a stream that has the start mark only to its end mark, with that length, or it is
//! truncated; streams without the marks (zstd's own) read as zstd reads them.
//!
//! Decompressing: frames are told apart by walking their headers and block headers, which
//! needs no decompression (RFC 8878, 3.1.1), and each whole frame goes to a worker. A frame
//! whose header declares no size or a large one (what `zstd` writes from a pipe) is decoded
//! in the stream instead, as before, so every zstd stream still reads, in parallel or not.

use crate::plumbing::bad_input;
use crate::plumbing::parallel::ordered;
use anyhow::{Context, Result};
use std::io::{self, BufRead, Read, Write};

/// Compression pieces: zstd level 3 keeps a 2 MiB window, so 4 MiB frames lose few matches
/// (measured on the bench archive: see docs/BENCHMARKS.md), and two workers hold about eight
/// pieces and their frames at once.
pub const FRAME: usize = 4 << 20;

/// Frames declaring more than this decode in the stream instead of whole in memory.
const WHOLE_FRAME: u64 = 64 << 20;

const MAGIC: u32 = 0xFD2F_B528;

/// The marks' skippable-frame magic (one of the sixteen RFC 8878 leaves to users).
const MARK_MAGIC: u32 = 0x184D_2A5E;
const START: &[u8; 8] = b"WEIRZS01";
pub(crate) const END: &[u8; 8] = b"WEIREND1";
/// The end mark's fixed tail: the number of frames, the content's length, then [`END`].
pub(crate) const END_TAIL: usize = 4 + 8 + 8;
/// End marks up to this size are read (a 64 MiB table lists frames for 32 TiB of content).
const MOST_END: u32 = 64 << 20;

/// One frame as the end mark lists it: its compressed size and its content's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub compressed: u32,
    pub content: u32,
}

/// The start mark: the skippable frame's magic and size, then [`START`].
pub(crate) fn start_mark() -> Vec<u8> {
    [&MARK_MAGIC.to_le_bytes()[..], &8u32.to_le_bytes(), START].concat()
}

/// The end mark: every frame's sizes in order, their number, the content's length, [`END`].
/// With it a reader finds any byte of the content without reading what comes before it.
fn end_mark(frames: &[Listed], total: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(frames.len() * 8 + END_TAIL);
    for f in frames {
        body.extend_from_slice(&f.compressed.to_le_bytes());
        body.extend_from_slice(&f.content.to_le_bytes());
    }
    body.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    body.extend_from_slice(&total.to_le_bytes());
    body.extend_from_slice(END);
    let size = u32::try_from(body.len()).expect("an end mark under 4 GiB");
    [&MARK_MAGIC.to_le_bytes()[..], &size.to_le_bytes(), &body].concat()
}

/// Reads an end mark's body (what follows its magic and size): the frames it lists and the
/// content's length.
pub fn parse_end(body: &[u8]) -> Option<(Vec<Listed>, u64)> {
    let tail = body.len().checked_sub(END_TAIL)?;
    if &body[body.len() - 8..] != END {
        return None;
    }
    let n = u32::from_le_bytes(body[tail..tail + 4].try_into().ok()?) as usize;
    let total = u64::from_le_bytes(body[tail + 4..tail + 12].try_into().ok()?);
    if n.checked_mul(8)? != tail {
        return None;
    }
    let frames = body[..tail]
        .chunks_exact(8)
        .map(|c| Listed {
            compressed: u32::from_le_bytes(c[..4].try_into().expect("4")),
            content: u32::from_le_bytes(c[4..].try_into().expect("4")),
        })
        .collect();
    Some((frames, total))
}

/// Compresses `input` to `out` as [`FRAME`]-byte frames on `threads` workers.
pub fn compress<W: Write>(
    input: &mut dyn Read,
    mut out: W,
    level: i32,
    threads: usize,
) -> Result<W> {
    out.write_all(&start_mark()).context("writing the output")?;
    let (mut ended, mut total, mut listed) = (false, 0u64, Vec::new());
    ordered(
        threads,
        || {
            if ended {
                return Ok(None);
            }
            let mut piece = Vec::with_capacity(FRAME);
            (&mut *input)
                .take(FRAME as u64)
                .read_to_end(&mut piece)
                .context("reading the input")?;
            ended = piece.len() < FRAME;
            total += piece.len() as u64;
            // An empty input still gets one (empty) frame, as zstd writes for it.
            Ok((!piece.is_empty() || total == 0).then_some(piece))
        },
        || {
            let mut z = zstd::bulk::Compressor::new(level)?;
            z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
            Ok(z)
        },
        |z, piece: Vec<u8>| Ok((z.compress(&piece)?, piece.len() as u32)),
        |(frame, content)| {
            listed.push(Listed {
                compressed: frame.len() as u32,
                content,
            });
            out.write_all(&frame).context("writing the output")
        },
    )?;
    out.write_all(&end_mark(&listed, total))
        .context("writing the output")?;
    Ok(out)
}

/// What comes next in a zstd stream.
enum Next {
    /// A whole frame, and the size of its content.
    Whole(Vec<u8>, usize),
    /// A frame to decode in the stream: its header, already read.
    Streamed(Vec<u8>),
    /// weir-compress's start mark.
    Start,
    /// weir-compress's end mark: the frames it lists, and the content's length.
    End(Vec<Listed>, u64),
    /// The end of the input, between frames.
    Eof,
}

/// Decompresses the zstd stream on `input` to `out`, whole frames on `threads` workers.
pub fn decompress(input: &mut dyn BufRead, out: &mut dyn Write, threads: usize) -> Result<()> {
    // Inside weir-compress's marks; the bytes written and the frames read since the start mark
    // (a frame decoded in the stream is listed with a compressed size of 0: not compared).
    let (mut marked, mut since, mut read) = (false, 0u64, Vec::new());
    // Output buffers go back to the workers once written: fresh 4 MiB ones would cost a page
    // fault and a page clear per 4 KiB.
    let spare = std::sync::Mutex::new(Vec::<Vec<u8>>::new());
    loop {
        let mut stop = Next::Eof;
        ordered(
            threads,
            || match next_frame(input, spare.lock().unwrap().pop().unwrap_or_default())? {
                Next::Whole(frame, len) => {
                    read.push(Listed {
                        compressed: frame.len() as u32,
                        content: len as u32,
                    });
                    Ok(Some((frame, len)))
                }
                other => {
                    stop = other;
                    Ok(None)
                }
            },
            || Ok(zstd::bulk::Decompressor::new()?),
            |z, (frame, len): (Vec<u8>, usize)| {
                let mut buf = spare.lock().unwrap().pop().unwrap_or_default();
                buf.clear();
                buf.reserve(len);
                z.decompress_to_buffer(&frame, &mut buf)
                    .map_err(|e| truncated(&e))?;
                if buf.len() != len {
                    return Err(truncated(&"a frame is shorter than its header says"));
                }
                let mut spare = spare.lock().unwrap();
                if spare.len() < 2 * threads {
                    spare.push(frame);
                }
                Ok(buf)
            },
            |data| {
                since += data.len() as u64;
                out.write_all(&data).map_err(output_error)?;
                let mut spare = spare.lock().unwrap();
                if spare.len() < 2 * threads {
                    spare.push(data);
                }
                Ok(())
            },
        )?;
        match stop {
            Next::Streamed(header) => {
                let n = stream_one(header, input, out)?;
                since += n;
                read.push(Listed {
                    compressed: 0,
                    content: n as u32,
                });
            }
            Next::Start => (marked, since, read) = (true, 0, Vec::new()),
            Next::End(listed, len) if marked => {
                check_end(&listed, len, &read, since)?;
                marked = false;
            }
            // An end mark without a start: not ours to check.
            Next::End(..) => {}
            Next::Eof if marked => {
                return Err(truncated(&"the input ends before weir-compress's end mark"));
            }
            Next::Eof | Next::Whole(..) => return Ok(()),
        }
    }
}

/// The end mark must list the frames that were read, and the length they held.
fn check_end(listed: &[Listed], len: u64, read: &[Listed], since: u64) -> Result<()> {
    if len != since || listed.len() != read.len() {
        return Err(truncated(&format!(
            "the end mark says {len} bytes in {} frames and the stream held {since} in {}",
            listed.len(),
            read.len()
        )));
    }
    let differs = listed
        .iter()
        .zip(read)
        .position(|(l, r)| l.content != r.content || (r.compressed != 0 && l != r));
    if let Some(i) = differs {
        return Err(truncated(&format!(
            "frame {i} is not the one the end mark lists"
        )));
    }
    Ok(())
}

/// Decodes one frame whose `header` was read from `input` through zstd's streaming decoder.
/// Returns how many bytes it wrote.
fn stream_one(header: Vec<u8>, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<u64> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(io::Cursor::new(header).chain(input))?
        .single_frame();
    // Frames made with --long up to the format's largest window, as `zstd -d --long=31` would.
    dec.window_log_max(31)?;
    let (mut buf, mut done) = (vec![0u8; 1 << 20], 0u64);
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(truncated(&e)),
        };
        out.write_all(&buf[..n]).map_err(output_error)?;
        done += n as u64;
    }
}

fn truncated(e: &dyn std::fmt::Display) -> anyhow::Error {
    bad_input(format!("zstd data is truncated or corrupt: {e}"))
}

fn output_error(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing the output")
}

/// Reads the next frame (skipping skippable frames other than weir-compress's marks), whole
/// when its header declares a size up to [`WHOLE_FRAME`].
fn next_frame(input: &mut dyn BufRead, mut frame: Vec<u8>) -> Result<Next> {
    loop {
        if input.fill_buf().context("reading the input")?.is_empty() {
            return Ok(Next::Eof);
        }
        frame.clear();
        take(input, &mut frame, 4)?;
        let magic = u32::from_le_bytes(frame[..4].try_into().expect("four bytes"));
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            // A skippable frame (RFC 8878, 3.1.2): a size, then that many bytes.
            take(input, &mut frame, 4)?;
            let size = u32::from_le_bytes(frame[4..8].try_into().expect("four bytes"));
            if magic == MARK_MAGIC && size <= MOST_END {
                take(input, &mut frame, size as usize)?;
                let body = &frame[8..];
                if body == START {
                    return Ok(Next::Start);
                }
                if let Some((listed, len)) = parse_end(body) {
                    return Ok(Next::End(listed, len));
                }
                continue;
            }
            io::copy(&mut (&mut *input).take(size.into()), &mut io::sink())?;
            continue;
        }
        if magic != MAGIC {
            return Err(truncated(&format!(
                "unknown frame magic {}",
                hex::encode(&frame[..4])
            )));
        }
        let len = header(input, &mut frame)?;
        let Some(len) = len.filter(|&l| l <= WHOLE_FRAME) else {
            return Ok(Next::Streamed(frame));
        };
        blocks(input, &mut frame, len)?;
        return Ok(Next::Whole(frame, len as usize));
    }
}

/// Reads the rest of a frame header (RFC 8878, 3.1.1.1) after its magic into `frame`, and
/// returns the content size it declares, if it does.
fn header(input: &mut dyn BufRead, frame: &mut Vec<u8>) -> Result<Option<u64>> {
    take(input, frame, 1)?;
    let d = frame[4];
    if d & 0x08 != 0 {
        return Err(truncated(&"a frame header sets its reserved bit"));
    }
    let single_segment = d & 0x20 != 0;
    let window = usize::from(!single_segment);
    let dict = [0, 1, 2, 4][usize::from(d & 0x03)];
    let fcs = match d >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    take(input, frame, window + dict + fcs)?;
    let field = &frame[5 + window + dict..];
    Ok(match fcs {
        0 => None,
        1 => Some(u64::from(field[0])),
        // The two-byte field is offset by 256 (3.1.1.1.4).
        2 => Some(u64::from(u16::from_le_bytes([field[0], field[1]])) + 256),
        4 => Some(u64::from(u32::from_le_bytes(field.try_into().expect("4")))),
        _ => Some(u64::from_le_bytes(field.try_into().expect("8"))),
    })
}

/// Reads a frame's blocks (RFC 8878, 3.1.1.2) and its checksum into `frame`. A frame holding
/// `len` bytes of content cannot take more than its raw blocks would, which bounds what a
/// corrupt block header can make us read.
fn blocks(input: &mut dyn BufRead, frame: &mut Vec<u8>, len: u64) -> Result<()> {
    let most = frame.len() as u64 + len + 3 * (len / (1 << 10) + 1) + 4;
    loop {
        let at = frame.len();
        take(input, frame, 3)?;
        let h = u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], 0]);
        let (last, kind, size) = (h & 1 == 1, (h >> 1) & 3, (h >> 3) as usize);
        let body = match kind {
            0 | 2 => size,
            1 => 1,
            _ => return Err(truncated(&"a block of the reserved type")),
        };
        if frame.len() as u64 + body as u64 > most {
            return Err(truncated(&"a frame is longer than its content allows"));
        }
        take(input, frame, body)?;
        if last {
            break;
        }
    }
    if frame[4] & 0x04 != 0 {
        take(input, frame, 4)?;
    }
    Ok(())
}

/// Appends exactly `n` bytes of `input` to `buf`; an early end is the truncation error.
fn take(input: &mut dyn BufRead, buf: &mut Vec<u8>, n: usize) -> Result<()> {
    let got = (&mut *input)
        .take(n as u64)
        .read_to_end(buf)
        .context("reading the input")?;
    if got < n {
        return Err(truncated(&"the input ends inside a frame"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[(i / 7) % 2] % 17)
            .collect()
    }

    #[test]
    fn frames_round_trip_and_zstd_reads_them() {
        for n in [0, 1, FRAME - 1, FRAME, 3 * FRAME + 5] {
            let data = sample(n);
            let z = compress(&mut &data[..], Vec::new(), 3, 2).unwrap();
            // The standard decoder reads the frames as one stream.
            assert_eq!(zstd::decode_all(&z[..]).unwrap(), data, "{n} bytes");
            let mut back = Vec::new();
            decompress(&mut &z[..], &mut back, 3).unwrap();
            assert_eq!(back, data, "{n} bytes");
        }
    }

    #[test]
    fn headers_parse_as_zstd_reads_them() {
        // Every field size: tiny, 2-byte (offset 256), 4-byte, and none (a streamed frame).
        for n in [0, 200, 300, 70_000] {
            let data = sample(n);
            let z = zstd::bulk::compress(&data, 3).unwrap();
            let mut frame = z[..4].to_vec();
            let len = header(&mut &z[4..], &mut frame).unwrap();
            assert_eq!(
                len,
                zstd::zstd_safe::get_frame_content_size(&z).unwrap(),
                "{n}"
            );
        }
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        enc.write_all(&sample(100_000)).unwrap();
        enc.finish().unwrap();
        let mut frame = streamed[..4].to_vec();
        assert_eq!(header(&mut &streamed[4..], &mut frame).unwrap(), None);
    }

    #[test]
    fn mixed_streams_decode_whole_and_streamed_frames_in_order() {
        let (a, b, c) = (sample(5 << 20), sample(100_000), sample(9));
        let mut z = compress(&mut &a[..], Vec::new(), 3, 2).unwrap();
        let mut enc = zstd::stream::write::Encoder::new(&mut z, 3).unwrap();
        enc.write_all(&b).unwrap();
        enc.finish().unwrap();
        // A skippable frame between them is ignored, as zstd -d ignores it.
        z.extend_from_slice(&[0x5a, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7]);
        z.extend(zstd::bulk::compress(&c, 1).unwrap());
        let mut back = Vec::new();
        decompress(&mut &z[..], &mut back, 2).unwrap();
        assert_eq!(back, [a, b, c].concat());
    }

    #[test]
    fn truncated_or_damaged_frames_are_errors() {
        // Three frames that compress to different sizes.
        let mut last = sample(FRAME);
        last.reverse();
        let data = [sample(FRAME), vec![0; FRAME], last].concat();
        let z = compress(&mut &data[..], Vec::new(), 3, 2).unwrap();
        for cut in [z.len() - 1, z.len() / 2, 5] {
            let mut back = Vec::new();
            let e = decompress(&mut &z[..cut], &mut back, 2).unwrap_err();
            assert!(e.to_string().contains("truncated or corrupt"), "{cut}: {e}");
        }
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        let e = decompress(&mut &bad[..], &mut Vec::new(), 2).unwrap_err();
        assert!(e.to_string().contains("truncated or corrupt"), "{e}");
        // Cut exactly after a whole frame, and with the end mark gone: still truncated.
        let end = 8 + 3 * 8 + END_TAIL;
        let first = 16 + zstd::zstd_safe::find_frame_compressed_size(&z[16..]).unwrap();
        for cut in [first, z.len() - end] {
            let e = decompress(&mut &z[..cut], &mut Vec::new(), 2).unwrap_err();
            assert!(
                e.to_string().contains("before weir-compress's end mark"),
                "{cut}: {e}"
            );
        }
        // A whole frame dropped from the middle: the end mark's length says so.
        let second = zstd::zstd_safe::find_frame_compressed_size(&z[first..]).unwrap();
        let dropped = [&z[..first], &z[first + second..]].concat();
        let e = decompress(&mut &dropped[..], &mut Vec::new(), 2).unwrap_err();
        assert!(e.to_string().contains("the end mark says"), "{e}");
        // Two frames swapped: the lengths add up, the end mark's list does not.
        let third = zstd::zstd_safe::find_frame_compressed_size(&z[first + second..]).unwrap();
        let swapped = [
            &z[..16],
            &z[first + second..first + second + third],
            &z[first..first + second],
            &z[16..first],
            &z[first + second + third..],
        ]
        .concat();
        assert_ne!(second, third);
        let e = decompress(&mut &swapped[..], &mut Vec::new(), 2).unwrap_err();
        assert!(
            e.to_string().contains("is not the one the end mark lists"),
            "{e}"
        );
        let mut tail = z;
        tail.extend_from_slice(b"garbage!");
        let e = decompress(&mut &tail[..], &mut Vec::new(), 2).unwrap_err();
        assert!(e.to_string().contains("unknown frame magic"), "{e}");
    }
}
