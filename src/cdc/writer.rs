//! weir-cdc's output on a thread of its own. The streaming loop hands it whole buffers and
//! goes on talking to the server while a slow reader holds the pipe: the walsender ends a
//! connection that sends no status update for `wal_sender_timeout` (60 s by default,
//! walsender.c, WalSndCheckTimeOut), and a blocked `write` would send none.
//!
//! Positions travel with the bytes: a buffer handed with a position is written, flushed, and
//! only then is the position "written", so confirm-on-write confirms what really left.

use crate::pg::lsn::Lsn;
use crate::plumbing::Output;
use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{SendTimeoutError, Sender, bounded};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A buffer of lines, and the position that is written once it is (none in the middle of a
/// transaction: then it is not flushed either).
pub type Item = (Vec<u8>, Option<Lsn>);

pub struct Writer {
    tx: Option<Sender<Item>>,
    thread: Option<JoinHandle<Result<Output>>>,
    written: Arc<AtomicU64>,
}

/// What [`Writer::offer`] did.
pub enum Offer {
    Taken,
    /// The queue stayed full for the whole wait: the item comes back.
    Full(Item),
}

impl Writer {
    /// At most `depth` buffers wait (each up to about 1 MiB, see the streaming loop).
    pub fn spawn(mut out: Output, depth: usize) -> Writer {
        let (tx, rx) = bounded::<Item>(depth);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let thread = std::thread::spawn(move || -> Result<Output> {
            for (buf, at) in rx {
                out.write_all(&buf).context("writing the output")?;
                if let Some(at) = at {
                    out.flush().context("writing the output")?;
                    w.fetch_max(at.0, Ordering::SeqCst);
                }
            }
            Ok(out)
        });
        Writer {
            tx: Some(tx),
            thread: Some(thread),
            written,
        }
    }

    /// Everything handed up to this position is written and flushed.
    pub fn written(&self) -> Lsn {
        Lsn(self.written.load(Ordering::SeqCst))
    }

    /// Hands `item` over, waiting for room as long as it takes.
    pub fn send(&mut self, item: Item) -> Result<()> {
        let tx = self.tx.as_ref().expect("not finished");
        match tx.send(item) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure()),
        }
    }

    /// Hands `item` over, waiting at most `wait` for room.
    pub fn offer(&mut self, item: Item, wait: Duration) -> Result<Offer> {
        let tx = self.tx.as_ref().expect("not finished");
        match tx.send_timeout(item, wait) {
            Ok(()) => Ok(Offer::Taken),
            Err(SendTimeoutError::Timeout(item)) => Ok(Offer::Full(item)),
            Err(SendTimeoutError::Disconnected(_)) => Err(self.failure()),
        }
    }

    /// Waits until everything handed is written; the output, to finish.
    pub fn finish(&mut self) -> Result<Output> {
        self.tx = None;
        self.join()
    }

    /// The writer thread stopped early: its error.
    fn failure(&mut self) -> anyhow::Error {
        self.tx = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => anyhow!("the output writer stopped"),
        }
    }

    fn join(&mut self) -> Result<Output> {
        let t = self.thread.take().expect("joined once");
        t.join()
            .map_err(|_| anyhow!("the output writer panicked"))?
    }
}
