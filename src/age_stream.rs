//! The payload layer of the age format, STREAM (age-encryption.org/v1, "Payload"), encrypted
//! and decrypted on several threads. The age crate does the header (recipient stanzas, header
//! MAC, armor); it only does the payload on one thread, at about 60% of the Go `age`'s speed.
//! STREAM chunks are independent (each has its own nonce: a 11-byte big-endian counter and a
//! last-chunk flag), so a batch of chunks is sealed or opened in parallel and written in order.
//!
//! Rules kept exactly, as the CCTV vectors check: plaintext chunks are 64 KiB, the last one is
//! flagged and may be full but only empty when it is the only chunk; nothing may follow it.
//! A batch is written only after every chunk in it authenticated, so no unauthenticated byte
//! ever leaves.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::io::{self, Read, Write};

pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// Chunks per batch: 4 MiB of plaintext, enough to keep every thread busy for a while.
const BATCH: usize = 64;

/// Derives the payload key from the file key and the 16-byte payload nonce.
pub fn payload_key(file_key: &[u8; 16], nonce: &[u8]) -> [u8; 32] {
    age_core::primitives::hkdf(nonce, b"payload", file_key)
}

fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// Reads until `buf` holds `want` bytes or the input ends, straight into `buf`.
fn fill(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    while buf.len() < want {
        let need = (want - buf.len()) as u64;
        match r.take(need).read_to_end(buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(buf.len())
}

/// Runs `work` over the pieces on up to `threads()` threads, keeping their order.
fn parallel<T: Send>(pieces: &mut [T], work: impl Fn(&mut T) + Sync) {
    let n = threads().min(pieces.len()).max(1);
    if n == 1 {
        pieces.iter_mut().for_each(&work);
        return;
    }
    let per = pieces.len().div_ceil(n);
    std::thread::scope(|s| {
        for part in pieces.chunks_mut(per) {
            let work = &work;
            s.spawn(move || part.iter_mut().for_each(work));
        }
    });
}

/// Reads `input` in blocks of `size` bytes on a second thread, so reading overlaps the work on
/// the block before, and calls `work(block, last)` for each block in order. Every block but
/// the last is full; the last may be short, or empty when the input is empty. Memory: three
/// blocks at most (one being read, one queued, one being worked on).
fn pipelined<E: From<io::Error>>(
    input: &mut (dyn Read + Send),
    size: usize,
    mut work: impl FnMut(&mut [u8], bool) -> Result<(), E>,
) -> Result<(), E> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(1);
        s.spawn(move || {
            loop {
                let mut block = Vec::with_capacity(size);
                let r = fill(input, &mut block, size);
                let end = !matches!(r, Ok(n) if n == size);
                if tx.send(r.map(|_| block)).is_err() || end {
                    return;
                }
            }
        });
        let mut cur = rx.recv().expect("the reader sends at least once")?;
        loop {
            if cur.len() < size {
                return work(&mut cur, true);
            }
            // A full block: the next one (possibly empty) says whether this one is the last.
            let next = rx.recv().expect("the reader sends until a short block")?;
            if next.is_empty() {
                return work(&mut cur, true);
            }
            work(&mut cur, false)?;
            cur = next;
        }
    })
}

/// Encrypts everything from `input` as a STREAM payload to `out`.
pub fn encrypt(
    key: &[u8; 32],
    input: &mut (dyn Read + Send),
    out: &mut dyn Write,
) -> io::Result<()> {
    let aead = ChaCha20Poly1305::new(Key::from_slice(key));
    let mut counter: u64 = 0;
    pipelined(input, BATCH * CHUNK, |block, last| {
        // Chunks are sealed in place; each one's tag goes out after it.
        let mut pieces: Vec<(u64, bool, &mut [u8], [u8; TAG])> = block
            .chunks_mut(CHUNK)
            .enumerate()
            .map(|(i, c)| (counter + i as u64, false, c, [0u8; TAG]))
            .collect();
        if pieces.is_empty() {
            // An empty file is one empty, last chunk.
            pieces.push((counter, false, &mut [], [0u8; TAG]));
        }
        if last {
            pieces.last_mut().expect("at least one").1 = true;
        }
        parallel(&mut pieces, |(ctr, last, data, tag)| {
            let t = aead
                .encrypt_in_place_detached(&chunk_nonce(*ctr, *last), b"", data)
                .expect("a chunk is far below ChaCha20-Poly1305's length limit");
            tag.copy_from_slice(&t);
        });
        for (_, _, data, tag) in &pieces {
            out.write_all(data)?;
            out.write_all(tag)?;
        }
        counter += pieces.len() as u64;
        Ok(())
    })
}

/// Why a payload did not decrypt; both mean the ciphertext cannot be trusted.
#[derive(Debug)]
pub enum PayloadError {
    /// Reading the ciphertext failed (including armor errors).
    Input(io::Error),
    /// Writing the plaintext failed (a closed pipe, a full disk).
    Output(io::Error),
    /// A chunk did not authenticate, the stream ended without its last chunk, or data
    /// follows the last chunk.
    Invalid(String),
}

impl From<io::Error> for PayloadError {
    fn from(e: io::Error) -> Self {
        PayloadError::Input(e)
    }
}

/// Decrypts a STREAM payload from `input` to `out`, verifying every chunk and the end.
pub fn decrypt(
    key: &[u8; 32],
    input: &mut (dyn Read + Send),
    out: &mut dyn Write,
) -> Result<(), PayloadError> {
    let aead = ChaCha20Poly1305::new(Key::from_slice(key));
    let sealed = CHUNK + TAG;
    let mut counter: u64 = 0;
    pipelined(input, BATCH * sealed, |block, last| {
        if block.is_empty() {
            // Every payload has at least one chunk; none means a truncated file.
            return Err(PayloadError::Invalid(if counter == 0 {
                "the payload is missing".into()
            } else {
                "the stream ends without its last chunk".into()
            }));
        }
        let n = block.len().div_ceil(sealed);
        // Chunks are opened in place; `ok` records whether each authenticated.
        let mut pieces: Vec<(u64, bool, &mut [u8], bool)> = block
            .chunks_mut(sealed)
            .enumerate()
            .map(|(i, c)| (counter + i as u64, last && i == n - 1, c, false))
            .collect();
        if pieces.iter().any(|p| p.2.len() < TAG) {
            return Err(PayloadError::Invalid(
                "a chunk is shorter than its tag".into(),
            ));
        }
        parallel(&mut pieces, |(ctr, last, data, ok)| {
            let (ct, tag) = data.split_at_mut(data.len() - TAG);
            let tag = chacha20poly1305::Tag::clone_from_slice(tag);
            *ok = aead
                .decrypt_in_place_detached(&chunk_nonce(*ctr, *last), b"", ct, &tag)
                .is_ok();
        });
        for (ctr, last, data, ok) in &pieces {
            if !ok {
                return Err(PayloadError::Invalid(if *last {
                    format!(
                        "chunk {ctr} does not authenticate as the last chunk (truncated or altered)"
                    )
                } else {
                    format!("chunk {ctr} does not authenticate (altered, or data after the end)")
                }));
            }
            if *last && data.len() == TAG && *ctr != 0 {
                return Err(PayloadError::Invalid("the last chunk is empty".into()));
            }
        }
        // Only now, with the whole batch authenticated, does any of it go out.
        for (_, _, data, _) in &pieces {
            out.write_all(&data[..data.len() - TAG])
                .map_err(PayloadError::Output)?;
        }
        counter += pieces.len() as u64;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        let key = [7u8; 32];
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            BATCH * CHUNK,
            BATCH * CHUNK + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut ct = Vec::new();
            encrypt(&key, &mut &data[..], &mut ct).unwrap();
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(ct.len(), len + chunks * TAG, "len {len}");
            let mut back = Vec::new();
            decrypt(&key, &mut &ct[..], &mut back).unwrap();
            assert!(back == data, "len {len}");
            if len > CHUNK {
                // Cut at a chunk boundary: the remaining last chunk is not flagged last.
                let cut = CHUNK + TAG;
                let mut out = Vec::new();
                assert!(
                    decrypt(&key, &mut &ct[..cut], &mut out).is_err(),
                    "len {len}"
                );
            }
        }
    }
}
