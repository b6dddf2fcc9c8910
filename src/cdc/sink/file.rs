//! `file:///DIR`: the stream as JSON-lines files in DIR, each starting at a transaction, named
//! by the commit LSN of its first (`000000000ABC1234.jsonl`, so names sort in stream order),
//! a new one once the current file is `--rotate-size` bytes or `--rotate-age` old.
//!
//! `DIR/position` ([`state`]) says what is durable: the end of the last transaction whose
//! lines are synced, and where in which file they end. It is written after the data is synced,
//! so it never names bytes a crash could lose. On start weir-sink cuts the
//! named file back to that offset and removes later files: what a crash left half-written goes,
//! whole lines and whole transactions remain, and the replay from the slot continues exactly
//! there. A reader takes files in name order, and the last up to `offset`.

use super::SinkOptions;
use super::state::{self, Position};
use crate::pg::lsn::Lsn;
use crate::plumbing::durable::sync_dir;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn is_segment(name: &str) -> bool {
    name.len() == 22
        && name.ends_with(".jsonl")
        && name[..16].bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct FileSink {
    dir: PathBuf,
    /// The file being written, its name, size, when it started and whether its name is synced.
    current: Option<(File, String, u64, Instant)>,
    /// What is synced and recorded.
    durable: Position,
    /// The end of the last transaction written (not yet synced).
    written: Option<(Lsn, u64)>,
    new_names: bool,
    last_sync: Instant,
    rotate_bytes: u64,
    rotate_age: Duration,
    sync_interval: Duration,
    buf: Vec<u8>,
}

impl super::Target for FileSink {
    fn position(&self) -> Lsn {
        self.durable.lsn()
    }

    fn begin(&mut self, commit: Lsn) -> Result<()> {
        FileSink::begin(self, commit)
    }

    fn line(&mut self, raw: &[u8]) -> Result<()> {
        FileSink::line(self, raw)
    }

    fn commit(&mut self, end: Lsn) -> Result<()> {
        FileSink::commit(self, end)
    }

    /// A message outside any transaction goes into the current file, recorded with the next
    /// transaction's end.
    fn lone(&mut self, at: Lsn, raw: &[u8]) -> Result<()> {
        FileSink::begin(self, at)?;
        FileSink::line(self, raw)
    }

    fn finish(self: Box<Self>) -> Result<Lsn> {
        FileSink::finish(*self)
    }
}

impl FileSink {
    /// Opens DIR (created if missing), cutting back whatever a crash left past the position.
    pub fn open(dir: &Path, o: &SinkOptions) -> Result<FileSink> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let durable = state::read(dir)?.unwrap_or_default();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| is_segment(n))
            .collect();
        names.sort();
        let mut current = None;
        for name in names {
            let path = dir.join(&name);
            if name.as_str() > durable.file.as_str() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            } else if name == durable.file {
                let f = OpenOptions::new().append(true).open(&path)?;
                f.set_len(durable.offset)?;
                f.sync_all()?;
                current = Some((f, name, durable.offset, Instant::now()));
            }
        }
        sync_dir(dir)?;
        Ok(FileSink {
            dir: dir.to_path_buf(),
            current,
            durable,
            written: None,
            new_names: false,
            last_sync: Instant::now(),
            rotate_bytes: o.rotate_bytes,
            rotate_age: o.rotate_age,
            sync_interval: o.sync_interval,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// A transaction starts: a new file when the current one is full or old enough.
    pub fn begin(&mut self, commit: Lsn) -> Result<()> {
        let rotate = match &self.current {
            None => true,
            Some((_, _, size, started)) => {
                *size >= self.rotate_bytes || started.elapsed() >= self.rotate_age
            }
        };
        if rotate {
            // The position names a file and an offset in it: record the old file's end first.
            self.sync()?;
            let name = format!("{:016X}.jsonl", commit.0);
            let path = self.dir.join(&name);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            // A file of that name can only be a leftover past the position: start it afresh.
            f.set_len(0)?;
            self.current = Some((f, name, 0, Instant::now()));
            self.new_names = true;
        }
        Ok(())
    }

    pub fn line(&mut self, raw: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(raw);
        self.buf.push(b'\n');
        if let Some((_, _, size, _)) = &mut self.current {
            *size += raw.len() as u64 + 1;
        }
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    /// A transaction ended at `end`: durable, and reported, within the sync interval.
    pub fn commit(&mut self, end: Lsn) -> Result<()> {
        let size = self.current.as_ref().map_or(0, |c| c.2);
        self.written = Some((end, size));
        if self.last_sync.elapsed() >= self.sync_interval {
            self.sync()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some((f, name, ..)) = &mut self.current {
            f.write_all(&self.buf)
                .with_context(|| format!("writing {name}"))?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Syncs what was written and records the end of the last whole transaction in it.
    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.last_sync = Instant::now();
        let (Some((end, offset)), Some((f, name, ..))) = (self.written.take(), &self.current)
        else {
            return Ok(());
        };
        f.sync_data().with_context(|| format!("syncing {name}"))?;
        if std::mem::take(&mut self.new_names) {
            sync_dir(&self.dir)?;
        }
        let p = Position {
            lsn: end.to_string(),
            file: name.clone(),
            offset,
        };
        state::write(&self.dir, &p)?;
        self.durable = p;
        Ok(())
    }

    /// Syncs and records what is whole, cuts off a transaction left open, and says where the
    /// durable position ends.
    pub fn finish(mut self) -> Result<Lsn> {
        self.sync()?;
        if let Some((f, name, _, _)) = &self.current {
            let keep = if *name == self.durable.file {
                self.durable.offset
            } else {
                0
            };
            f.set_len(keep)?;
            f.sync_all()?;
        }
        Ok(self.durable.lsn())
    }
}
