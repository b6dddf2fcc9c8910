//! A stage of a pipeline run on a thread of its own inside one process, read as a [`Read`]:
//! what `weir-get | weir-encrypt -d | weir-compress -d |` does with processes and pipes, for a
//! binary that reads a stored object itself. Each stage still does its own work on its own
//! threads; the pipe only carries bytes, a few MiB at a time.
//!
//! The end of a pipe is reported as the end of the stream only when its stage succeeded: a
//! failed stage is a read error, and [`Pipe::error`] gives back the stage's own error (with its
//! exit code), the first of the pipeline's.

use anyhow::{Result, anyhow};
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, mpsc};

/// What goes through: bytes, then `None` once the stage finished well.
type Piece = Option<Vec<u8>>;

const PIECE: usize = 1 << 20;

/// The reading end of a stage.
pub struct Pipe {
    rx: mpsc::Receiver<Piece>,
    /// Pieces read go back to the writer to be filled again: a fresh 1 MiB buffer per piece
    /// costs a page fault and a page clear per 4 KiB, as much again as the copy itself.
    back: mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    ended: bool,
    failed: Arc<Mutex<Option<anyhow::Error>>>,
}

/// Runs `work` on a new thread, writing into the returned pipe.
pub fn spawn(work: impl FnOnce(&mut (dyn Write + Send)) -> Result<()> + Send + 'static) -> Pipe {
    // Four pieces in the pipe, one being written and one being read: 6 MiB at most.
    let (tx, rx) = mpsc::sync_channel(4);
    let (back, free) = mpsc::sync_channel(6);
    let failed = Arc::new(Mutex::new(None));
    let slot = failed.clone();
    std::thread::spawn(move || {
        let mut w = Writer {
            tx,
            free,
            buf: Vec::with_capacity(PIECE),
        };
        match work(&mut w) {
            // Only a reader that stopped makes this fail, and it reads no more.
            Ok(()) => {
                if let Err(e) = w.end() {
                    *slot.lock().unwrap() = Some(e);
                }
            }
            // The error is in place before the pipe closes (with `w`), so the reader that
            // sees the pipe closed finds it.
            Err(e) => {
                *slot.lock().unwrap() = Some(e);
                drop(w);
            }
        }
    });
    Pipe {
        rx,
        back,
        cur: Vec::new(),
        at: 0,
        ended: false,
        failed,
    }
}

/// Runs `work` on what `input` carries, on a new thread: a stage after another. When `work`
/// fails because `input` did, the error kept is `input`'s, the cause.
pub fn then(
    input: Pipe,
    work: impl FnOnce(&mut Pipe, &mut (dyn Write + Send)) -> Result<()> + Send + 'static,
) -> Pipe {
    spawn(move |out| {
        let mut input = input;
        work(&mut input, out).map_err(|e| input.error().unwrap_or(e))
    })
}

impl Pipe {
    /// The stage's error, once it failed (taken: asked again, it is `None`).
    pub fn error(&mut self) -> Option<anyhow::Error> {
        self.failed.lock().unwrap().take()
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Some(piece)) => {
                    let used = std::mem::replace(&mut self.cur, piece);
                    self.at = 0;
                    if used.capacity() == PIECE {
                        let _ = self.back.try_send(used);
                    }
                }
                Ok(None) => self.ended = true,
                // The stage stopped without saying it finished: it failed.
                Err(_) => {
                    let why = self.failed.lock().unwrap();
                    let why = why
                        .as_ref()
                        .map_or("it stopped".into(), |e| format!("{e:#}"));
                    return Err(io::Error::other(format!("an input stage failed: {why}")));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The writing end: buffers up to a piece, then sends it.
struct Writer {
    tx: mpsc::SyncSender<Piece>,
    free: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl Writer {
    fn send(&mut self) -> io::Result<()> {
        let next = match self.free.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(PIECE),
        };
        let piece = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(Some(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader stopped"))
    }

    fn end(mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx
            .send(None)
            .map_err(|_| anyhow!("the reader stopped"))
    }
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_in_order_through_stages() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let copy = data.clone();
        let first = spawn(move |w| Ok(w.write_all(&copy)?));
        let mut second = then(first, |r, w| {
            io::copy(r, w)?;
            Ok(())
        });
        let mut back = Vec::new();
        second.read_to_end(&mut back).unwrap();
        assert!(back == data);
    }

    #[test]
    fn a_failed_stage_is_an_error_not_an_end_and_its_cause_is_kept() {
        let first = spawn(|w| {
            w.write_all(b"some bytes")?;
            Err(crate::plumbing::bad_input("the object is damaged"))
        });
        let mut second = then(first, |r, w| {
            io::copy(r, w)?;
            Ok(())
        });
        let mut back = Vec::new();
        let e = second.read_to_end(&mut back).unwrap_err();
        assert!(e.to_string().contains("the object is damaged"), "{e}");
        let cause = second.error().unwrap();
        assert_eq!(cause.to_string(), "the object is damaged");
        assert_eq!(
            crate::plumbing::exit_code_of(&cause),
            crate::plumbing::ExitCode::BadArchive
        );
    }
}
