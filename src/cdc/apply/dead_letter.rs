//! `weir-apply --on-error dead-letter=FILE`: a source transaction the target refuses (a
//! missing row for an update, a unique violation, a DDL statement that fails) is rolled back,
//! written whole to FILE (its lines as the stream had them, appended and synced), and
//! recorded as applied in the replication origin, so the stream goes on and a replay skips it.
//! What the stream itself gets wrong (a truncated or garbled line) still stops weir-apply: a
//! change is never skipped because it could not be read.
//!
//! The open transaction's lines are kept as they are read in an unnamed temporary file (not
//! memory: a transaction may be bigger than memory), emptied at each transaction's start.

use crate::plumbing::{ExitCode, exit_code_of};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::PathBuf;

pub struct DeadLetter {
    pub path: PathBuf,
    journal: BufWriter<File>,
}

impl DeadLetter {
    pub fn new(path: PathBuf) -> Result<DeadLetter> {
        let file = tempfile::tempfile().context("creating the dead-letter journal")?;
        Ok(DeadLetter {
            path,
            journal: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Errors the dead-letter file takes: the target's, not the stream's.
    pub fn takes(err: &anyhow::Error) -> bool {
        exit_code_of(err) != ExitCode::BadArchive
    }

    /// Starts a new transaction's journal.
    pub fn reset(&mut self) -> Result<()> {
        self.journal.flush()?;
        let f = self.journal.get_mut();
        f.set_len(0)?;
        f.rewind()?;
        Ok(())
    }

    /// One line of the open transaction, as read.
    pub fn keep(&mut self, raw: &[u8]) -> Result<()> {
        self.journal.write_all(raw)?;
        self.journal.write_all(b"\n")?;
        Ok(())
    }

    /// Appends the journal (the whole failed transaction) to the dead-letter file, synced.
    pub fn write(&mut self) -> Result<()> {
        self.journal.flush()?;
        let f = self.journal.get_mut();
        f.rewind()?;
        let mut out = File::options()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        std::io::copy(f, &mut out).with_context(|| format!("writing {}", self.path.display()))?;
        out.sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        f.seek(std::io::SeekFrom::End(0))?;
        Ok(())
    }
}
