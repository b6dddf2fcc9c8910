//! `weir-compress`: a byte-stream compression stage whose output the standard tools read
//! (`zstd -d`, `lz4 -d`, `gzip -d`), and a decompressor that takes theirs.
//!
//! zstd by default: content checksum on (so corruption is detected on decompression), the
//! window no larger than what `zstd -d` accepts without flags (levels up to 19 use at most
//! 8 MiB; `--long` raises it to 128 MiB and then `zstd -d --long=27` is needed), and the
//! stream cut into independent frames (see [`super::frames`]) so that both directions run on
//! several threads. Decompression detects the format from the magic bytes, reads concatenated
//! frames, and treats a stream that ends inside a frame as an error, never as success.

use crate::plumbing::{Output, bad_input, open_input};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Zstd,
    Lz4,
    Gzip,
}

#[derive(Clone, Debug)]
pub struct CompressOptions {
    pub decompress: bool,
    pub format: Format,
    /// zstd level; negative is `--fast=N`. For gzip, clamped to 1..=9.
    pub level: i32,
    pub threads: u32,
    /// zstd window log for `--long`.
    pub long: Option<u32>,
    pub input: Option<String>,
    pub output: Option<String>,
}

/// Threads by default: the number of cores, at most 4 (more rarely helps a pipeline stage that
/// shares the machine with PostgreSQL and the other stages).
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .min(4)
}

/// Read and write in blocks this large: big enough that system calls do not matter.
const BLOCK: usize = 1 << 20;

pub fn run(o: &CompressOptions) -> Result<()> {
    let input = open_input(o.input.as_deref())?;
    let out = Output::open(o.output.as_deref(), !o.decompress)?;
    if o.decompress {
        decompress(input, out, o.threads.max(1) as usize)
    } else {
        compress(input, out, o)
    }
}

fn compress(mut input: Box<dyn Read + Send>, out: Output, o: &CompressOptions) -> Result<()> {
    let out = match o.format {
        Format::Zstd if o.long.is_none() => {
            super::frames::compress(&mut input, out, o.level, o.threads.max(1) as usize)?
        }
        Format::Zstd => {
            // Long-distance matching finds its matches across the whole window, so the
            // stream stays one frame, compressed by zstd's own workers.
            let mut enc = zstd::stream::write::Encoder::new(out, o.level)?;
            enc.include_checksum(true)?;
            if o.threads > 1 {
                enc.multithread(o.threads)?;
            }
            enc.long_distance_matching(true)?;
            enc.window_log(o.long.unwrap_or(27))?;
            copy(&mut input, &mut enc)?;
            enc.finish().context("finishing the zstd frame")?
        }
        Format::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .content_checksum(true)
                .block_size(lz4_flex::frame::BlockSize::Max4MB);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            copy(&mut input, &mut enc)?;
            enc.finish().context("finishing the lz4 frame")?
        }
        Format::Gzip => {
            let level = o.level.clamp(1, 9) as u32;
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            copy(&mut input, &mut enc)?;
            enc.finish().context("finishing the gzip member")?
        }
    };
    out.finish().context("writing the output")
}

fn copy(input: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
    crate::plumbing::copy(input, out, &mut |_| {}).map(|_| ())
}

/// What the first bytes say the input is: a format `decompress_into` reads, or none.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    match head {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        // zstd skippable frames (0x184D2A50..5F), which `zstd -d` reads and skips.
        [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Some("zstd"),
        [0x04, 0x22, 0x4d, 0x18, ..] => Some("lz4"),
        [0x1f, 0x8b, ..] => Some("gzip"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        _ => None,
    }
}

fn decompress(input: Box<dyn Read + Send>, mut out: Output, threads: usize) -> Result<()> {
    decompress_into(input, &mut out, threads)?;
    out.finish().context("writing the output")
}

/// Decompresses `input` (zstd on `threads` threads, lz4, gzip or bzip2, told by its first
/// bytes) to `out`: weir-compress -d's work, for a stage that reads an object itself.
pub fn decompress_into(input: impl Read + Send, out: &mut dyn Write, threads: usize) -> Result<()> {
    let mut input: BufReader<Box<dyn Read + Send + '_>> =
        BufReader::with_capacity(BLOCK, Box::new(input));
    let head = input.fill_buf().context("reading the input")?;
    if head.is_empty() {
        return Err(bad_input(
            "unexpected end of input: it is empty, not compressed data",
        ));
    }
    let head = head.get(..4.min(head.len())).unwrap_or_default().to_vec();
    let format = sniff(&head).ok_or_else(|| {
        bad_input(format!(
            "unknown format: input starts with {} (not zstd, lz4, gzip or bzip2 data)",
            hex::encode(&head)
        ))
    })?;
    let result = match format {
        "zstd" => return super::frames::decompress(&mut input, out, threads),
        "lz4" => copy_lz4_frames(input, out),
        "gzip" => copy_decoded(&mut flate2::bufread::MultiGzDecoder::new(input), out),
        _ => copy_decoded(&mut bzip2::bufread::MultiBzDecoder::new(input), out),
    };
    result.map_err(|e| match e {
        Decode::Input(e) => bad_input(format!("{format} data is truncated or corrupt: {e}")),
        Decode::Output(e) => anyhow::Error::new(e).context("writing the output"),
    })
}

/// lz4_flex reads one frame; `lz4 -d` reads concatenated frames, so we do too.
fn copy_lz4_frames(
    mut input: BufReader<Box<dyn Read + Send + '_>>,
    out: &mut dyn Write,
) -> std::result::Result<(), Decode> {
    loop {
        let mut dec = lz4_flex::frame::FrameDecoder::new(input);
        copy_decoded(&mut dec, out)?;
        input = dec.into_inner();
        if input.fill_buf().map_err(Decode::Input)?.is_empty() {
            return Ok(());
        }
    }
}

enum Decode {
    Input(std::io::Error),
    Output(std::io::Error),
}

/// Copies a decoder's output, keeping errors of the compressed input (truncation, a bad
/// checksum) apart from errors writing the result (a closed pipe).
fn copy_decoded(dec: &mut dyn Read, out: &mut dyn Write) -> std::result::Result<(), Decode> {
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Decode::Input(e)),
        };
        out.write_all(&buf[..n]).map_err(Decode::Output)?;
    }
}

/// Rewrites zstd-style level flags (`-3`, `-19`) into `--level=N` so the command line parser
/// sees ordinary options; everything after `--` is left alone.
pub fn normalize_level_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        match a.strip_prefix('-') {
            Some(d) if !d.is_empty() && d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()) => {
                out.push(format!("--level={d}"))
            }
            _ => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_flags_become_options() {
        let v = normalize_level_args(["x", "-19", "-d", "-T2", "-3", "--", "-5"].map(String::from));
        assert_eq!(v, ["x", "--level=19", "-d", "-T2", "--level=3", "--", "-5"]);
    }

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Some("zstd"));
        assert_eq!(sniff(&[0x04, 0x22, 0x4d, 0x18]), Some("lz4"));
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some("gzip"));
        assert_eq!(sniff(b"BZh9"), Some("bzip2"));
        assert_eq!(sniff(b"weir"), None);
    }
}
