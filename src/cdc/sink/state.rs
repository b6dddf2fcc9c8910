//! A sink's durable position: `DIR/position`, `{"lsn":"0/ABC1234","file":"...","offset":N}`,
//! the end of the last transaction the target holds durably (`file` and `offset` only for
//! `file:///DIR`, saying where in which file that transaction ends). weir-cdc
//! `--confirm-from file:///DIR` reads it, whichever target wrote it.
//!
//! It is written through a synced temporary file and a rename ([`durable_write`]), after what
//! it names is durable at the target, so it never names what a crash could lose.

use crate::pg::lsn::Lsn;
use crate::plumbing::durable::{durable_write, sync_dir};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name of the position file in DIR.
pub const POSITION: &str = "position";

#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
pub struct Position {
    pub lsn: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Position {
    pub fn at(lsn: Lsn) -> Position {
        Position {
            lsn: lsn.to_string(),
            ..Position::default()
        }
    }

    /// The position's LSN (nothing delivered yet: 0/0).
    pub fn lsn(&self) -> Lsn {
        Lsn::parse(&self.lsn).unwrap_or(Lsn::ZERO)
    }
}

/// Reads DIR's durable position: what `weir-cdc --confirm-from file:///DIR` confirms. None
/// when nothing was delivered yet.
pub fn durable(dir: &Path) -> Result<Option<Lsn>> {
    read(dir)?.map(|p| Lsn::parse(&p.lsn)).transpose()
}

pub fn read(dir: &Path) -> Result<Option<Position>> {
    let path = dir.join(POSITION);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{}: not a weir-sink position", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records `p` in DIR, durably.
pub fn write(dir: &Path, p: &Position) -> Result<()> {
    let mut text = serde_json::to_vec(p)?;
    text.push(b'\n');
    durable_write(&dir.join(POSITION), &text)?;
    sync_dir(dir)
}

/// The position of a target that keeps none itself (a webhook, NATS), recorded in `--state
/// DIR` at most every `interval`, and on [`Recorder::finish`].
pub struct Recorder {
    dir: Option<PathBuf>,
    recorded: Lsn,
    interval: Duration,
    last: Instant,
}

impl Recorder {
    /// Reads DIR's position (created if missing); without DIR nothing is recorded.
    pub fn open(dir: Option<&Path>, interval: Duration) -> Result<Recorder> {
        let recorded = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                read(d)?.unwrap_or_default().lsn()
            }
            None => Lsn::ZERO,
        };
        Ok(Recorder {
            dir: dir.map(Path::to_path_buf),
            recorded,
            interval,
            last: Instant::now(),
        })
    }

    /// What DIR said at start.
    pub fn recorded(&self) -> Lsn {
        self.recorded
    }

    /// Records `at` if the interval has passed since the last time.
    pub fn offer(&mut self, at: Lsn) -> Result<()> {
        if self.last.elapsed() >= self.interval {
            self.finish(at)?;
        }
        Ok(())
    }

    /// Records `at` now, if it moved.
    pub fn finish(&mut self, at: Lsn) -> Result<()> {
        self.last = Instant::now();
        match &self.dir {
            Some(dir) if at != self.recorded => {
                write(dir, &Position::at(at))?;
                self.recorded = at;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
