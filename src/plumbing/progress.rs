//! Progress lines on stderr, and the human-readable sizes and durations they print.

use super::program;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress on stderr: a self-rewriting line with percent and ETA when stderr is a terminal,
/// plain periodic lines when asked for with `--progress` (for logs), nothing otherwise.
pub struct Progress {
    mode: ProgressMode,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    drawn: bool,
    rows: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProgressMode {
    Off,
    Terminal,
    Lines,
}

impl Progress {
    /// `plain` asks for periodic lines even when stderr is no terminal; `quiet` silences all.
    pub fn new(total: Option<u64>, plain: bool, quiet: bool) -> Progress {
        let mode = if quiet {
            ProgressMode::Off
        } else if plain {
            ProgressMode::Lines
        } else if io::stderr().is_terminal() {
            ProgressMode::Terminal
        } else {
            ProgressMode::Off
        };
        let now = Instant::now();
        // Log lines start at once (a log shows the job began), then come every few seconds.
        let last = match mode {
            ProgressMode::Lines => now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
            _ => now,
        };
        Progress {
            mode,
            total,
            started: now,
            last,
            drawn: false,
            rows: true,
        }
    }

    /// Progress of a byte stream, where rows mean nothing: lines show bytes only.
    pub fn bytes_only(mut self) -> Progress {
        self.rows = false;
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reports `done` bytes and `rows` rows so far; draws only when enough time has passed.
    pub fn update(&mut self, done: u64, rows: u64) {
        let every = match self.mode {
            ProgressMode::Off => return,
            ProgressMode::Terminal => Duration::from_millis(250),
            ProgressMode::Lines => Duration::from_secs(5),
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let rows = if self.rows {
            format!("{rows} rows, ")
        } else {
            String::new()
        };
        let mut line = format!(
            "{} {rows}{} ({}/s)",
            program(),
            human_bytes(done),
            human_bytes(rate as u64)
        );
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let pct = (done as f64 / total as f64 * 100.0).min(99.0);
            let eta = if rate > 0.0 && done < total {
                (total - done) as f64 / rate
            } else {
                0.0
            };
            line.push_str(&format!(", ~{pct:.0}%, ETA {}", human_secs(eta)));
        }
        let mut err = io::stderr().lock();
        if self.mode == ProgressMode::Terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Clears a terminal progress line, so the summary or an error starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `1.2 GB` style sizes (decimal units, as `pg_size_pretty` does not and `zstd -v` does).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
