//! One archived WAL file as stored: `age(zstd(file))`, or any subset of the two, so that
//! `age -d | zstd -d` (or either alone) recovers it by hand. The reader tells the layers
//! apart by their magic (`age-encryption.org/v1`, the zstd frame magic), so objects written
//! with other settings stay readable. The digest kept beside each object is the SHA-256 of the
//! file itself, which a re-push can compare without decrypting (age ciphertext differs every
//! time).

use crate::plumbing::bad_input;
use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileExt;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// No archived file is larger than a 1 GiB segment; a corrupt size field cannot make the
/// decompressor allocate more.
const MAX_FILE: u64 = 1 << 30;

pub type Recipient = Box<dyn age::Recipient + Send>;
pub type Identity = Box<dyn age::Identity>;

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The cores to compress and decompress with.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a file is stored: zstd level (none: as it is), the recipients (none: not
/// encrypted), and how many threads compress it.
pub struct Encoding<'a> {
    pub level: Option<i32>,
    pub recipients: &'a [Recipient],
    pub threads: usize,
}

/// Writes the stored form of `file` to `out` and returns it. Frames are written (and
/// encrypted) in order as they come out of the compressors, so writing overlaps compressing
/// and no whole copy of the stored form is held.
pub fn encode_to<W: Write>(file: &[u8], how: &Encoding, out: W) -> Result<W> {
    let (level, recipients, threads) = (how.level, how.recipients, how.threads);
    if recipients.is_empty() {
        return write_layers(file, level, threads, out);
    }
    let enc = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let sealed = write_layers(file, level, threads, enc.wrap_output(out)?)?;
    Ok(sealed.finish()?)
}

fn write_layers<W: Write>(
    file: &[u8],
    level: Option<i32>,
    threads: usize,
    mut out: W,
) -> Result<W> {
    match level {
        Some(l) => compress(file, l, threads, |frame| Ok(out.write_all(frame)?))?,
        None => out.write_all(file)?,
    }
    Ok(out)
}

/// Compression pieces: zstd level 3 keeps a 2 MiB window, so frames of 4 MiB lose almost no
/// matches, and a 16 MiB segment gives each of two cores two pieces, the first of which is
/// written while the last is still compressing.
const PIECE: usize = 4 << 20;

/// The file as zstd frames of [`PIECE`] bytes, handed to `each` in order (concatenated frames
/// are one valid zstd stream: `zstd -d` reads them as one), each with its content size and
/// checksum, so `zstd -d` alone detects damage. The archiver waits for every segment, so the
/// pieces are compressed by up to `threads` workers.
fn compress(
    file: &[u8],
    level: i32,
    threads: usize,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut pieces = file.chunks(PIECE);
    let workers = threads.min(file.len().div_ceil(PIECE)).max(1);
    // One context per worker: a new one per piece would fault its tables in again.
    crate::plumbing::parallel::ordered(
        workers,
        || Ok(pieces.next()),
        || compressor(level),
        |z, piece: &[u8]| Ok(z.compress(piece)?),
        |frame| each(&frame),
    )
}

fn compressor(level: i32) -> Result<zstd::bulk::Compressor<'static>> {
    let mut z = zstd::bulk::Compressor::new(level)?;
    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(z)
}

/// What decoding wrote, and whether a layer already verified every byte of it.
pub struct Decoded {
    pub len: u64,
    /// Every zstd frame carried a content checksum, and it matched.
    pub checksummed: bool,
}

/// Writes the file inside a stored object to `out` from offset 0, every layer verified (age
/// authenticates each chunk and the end; each zstd frame carries its checksum). The frames
/// decompress in parallel, each straight to its place in `out` through its worker's buffer
/// of one frame: a whole decompressed copy in memory would cost a page fault per 4 KiB of it.
pub fn decode_to(mut object: impl BufRead, identities: &[Identity], out: &File) -> Result<Decoded> {
    let mut data = Vec::new();
    if object
        .fill_buf()?
        .starts_with(crate::stream::encrypt::AGE_BINARY)
    {
        if identities.is_empty() {
            return Err(crate::plumbing::coded(
                crate::plumbing::ExitCode::Usage,
                "the object is encrypted: give -i FILE or WEIR_AGE_IDENTITY_FILE",
            ));
        }
        let dec = age::Decryptor::new_buffered(object)
            .map_err(|e| bad_input(format!("not a readable age file: {e}")))?;
        let mut r = dec
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| bad_input(format!("cannot decrypt: {e}")))?;
        r.read_to_end(&mut data)
            .map_err(|e| bad_input(format!("the ciphertext is truncated or altered: {e}")))?;
    } else {
        object.read_to_end(&mut data)?;
    }
    if !data.starts_with(&ZSTD_MAGIC) {
        out.write_all_at(&data, 0)?;
        return Ok(Decoded {
            len: data.len() as u64,
            checksummed: false,
        });
    }
    let checksummed = all_frames_checksummed(&data);
    let len = decompress_to(&data, out)?;
    Ok(Decoded { len, checksummed })
}

/// The file inside a stored object, in memory (tests).
#[cfg(test)]
fn decode(object: Vec<u8>, identities: &[Identity]) -> Result<Vec<u8>> {
    let f = tempfile::tempfile()?;
    let d = decode_to(&object[..], identities, &f)?;
    let mut back = vec![0; d.len as usize];
    f.read_exact_at(&mut back, 0)?;
    Ok(back)
}

/// Whether each frame's header sets Content_Checksum_flag (RFC 8878, 3.1.1.1.1: bit 2 of the
/// descriptor after the magic). Decompression verifies those checksums.
fn all_frames_checksummed(data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Ok(size) = zstd::zstd_safe::find_frame_compressed_size(rest) else {
            return false;
        };
        if !rest.starts_with(&ZSTD_MAGIC) || rest.get(4).is_none_or(|d| d & 0x04 == 0) {
            return false;
        }
        rest = &rest[size..];
    }
    true
}

/// One frame: its bytes, where its content goes, and how long its header says it is.
struct Frame<'a> {
    bytes: &'a [u8],
    at: u64,
    len: u64,
}

/// The frames' contents, each to its place in `out` (the offsets their headers' sizes give),
/// one worker per core; frames without a declared size are streamed in order instead.
/// Returns the length written, bounded by [`MAX_FILE`].
fn decompress_to(data: &[u8], out: &File) -> Result<u64> {
    let mut frames = Vec::new();
    let (mut rest, mut at) = (data, 0u64);
    while !rest.is_empty() {
        let size = zstd::zstd_safe::find_frame_compressed_size(rest)
            .map_err(|_| bad_input("the compressed data is damaged (a frame is cut short)"))?;
        let Ok(Some(len)) = zstd::zstd_safe::get_frame_content_size(&rest[..size]) else {
            return decompress_streaming(data, out);
        };
        frames.push(Frame {
            bytes: &rest[..size],
            at,
            len,
        });
        at += len;
        rest = &rest[size..];
        if at > MAX_FILE {
            return Err(bad_input("the object decompresses to more than 1 GiB"));
        }
    }
    let workers = cores().clamp(1, frames.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    // One context and one buffer per worker, reused frame after frame.
                    let mut z = zstd::bulk::Decompressor::new()?;
                    let mut buf = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = frames.get(i) else {
                            return Ok(());
                        };
                        decompress_frame(f, out, &mut z, &mut buf)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("decompression thread"))
    })?;
    Ok(at)
}

/// Frames up to this size decompress whole into a worker's buffer (no window copy); larger
/// ones, which only other writers make, stream through a small one.
const WHOLE_FRAME: u64 = 64 << 20;

/// One frame to its offset; it must hold exactly what its header declares.
fn decompress_frame(
    f: &Frame,
    out: &File,
    z: &mut zstd::bulk::Decompressor,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let damaged = |e: std::io::Error| bad_input(format!("the compressed data is damaged: {e}"));
    if f.len > WHOLE_FRAME {
        return decompress_frame_streaming(f, out);
    }
    buf.resize(buf.len().max(f.len as usize), 0);
    let n = z
        .decompress_to_buffer(f.bytes, &mut buf[..f.len as usize])
        .map_err(damaged)?;
    if n as u64 != f.len {
        return Err(bad_input("a frame is shorter than its header says"));
    }
    out.write_all_at(&buf[..n], f.at)?;
    Ok(())
}

fn decompress_frame_streaming(f: &Frame, out: &File) -> Result<()> {
    let z = zstd::stream::read::Decoder::with_buffer(f.bytes)?.single_frame();
    let done = stream_to(
        z,
        out,
        f.at,
        f.len,
        "a frame is longer than its header says",
    )?;
    if done != f.len {
        return Err(bad_input("a frame is shorter than its header says"));
    }
    Ok(())
}

fn decompress_streaming(data: &[u8], out: &File) -> Result<u64> {
    let z = zstd::stream::Decoder::new(data)?;
    stream_to(
        z,
        out,
        0,
        MAX_FILE,
        "the object decompresses to more than 1 GiB",
    )
}

/// What `z` decompresses, to `out` from offset `at` through a small buffer; more than
/// `limit` bytes is the error `too_long`. Returns how many bytes it wrote.
fn stream_to(mut z: impl Read, out: &File, at: u64, limit: u64, too_long: &str) -> Result<u64> {
    let damaged = |e: std::io::Error| bad_input(format!("the compressed data is damaged: {e}"));
    let mut buf = vec![0u8; 256 << 10];
    let mut done = 0u64;
    loop {
        let n = z.read(&mut buf).map_err(damaged)?;
        if n == 0 {
            return Ok(done);
        }
        if done + n as u64 > limit {
            return Err(bad_input(too_long));
        }
        out.write_all_at(&buf[..n], at + done)?;
        done += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn every_layer_round_trips_and_damage_is_refused() {
        // Three pieces, the last a short one, so frames must come back in order.
        let file: Vec<u8> = (0..(9 << 20) / 4 + 1000u32)
            .flat_map(|i| (i.wrapping_mul(2654435761) % 65521).to_le_bytes())
            .collect();
        let id = age::x25519::Identity::generate();
        let r: Recipient =
            Box::new(age::x25519::Recipient::from_str(&id.to_public().to_string()).unwrap());
        let ids: Vec<Identity> = vec![Box::new(id)];
        for (level, recipients) in [(None, vec![]), (Some(3), vec![]), (Some(3), vec![r])] {
            let how = Encoding {
                level,
                recipients: &recipients,
                threads: 2,
            };
            let obj = encode_to(&file, &how, Vec::new()).unwrap();
            assert_eq!(decode(obj.clone(), &ids).unwrap(), file);
            let checked = decode_to(&obj[..], &ids, &tempfile::tempfile().unwrap()).unwrap();
            assert_eq!(checked.checksummed, level.is_some());
            if level.is_some() || !recipients.is_empty() {
                let mut bad = obj.clone();
                let n = bad.len();
                bad[n - 10] ^= 1;
                assert!(decode(bad, &ids).is_err());
                assert!(decode(obj[..n - 100].to_vec(), &ids).is_err());
            }
        }
    }
}
