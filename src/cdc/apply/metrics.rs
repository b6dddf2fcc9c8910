//! `weir-apply --metrics FILE`: what the target took, as a Prometheus textfile (the one
//! writer, [`crate::plumbing::metrics`]), at most every few seconds and at exit.

use crate::pg::lsn::Lsn;
use crate::plumbing::metrics::Textfile;
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Written at most this often while transactions keep coming.
const EVERY: Duration = Duration::from_secs(5);

pub struct Metrics {
    path: PathBuf,
    last: Option<Instant>,
}

/// The counts the file reports.
pub struct Counts<'a> {
    pub origin: &'a str,
    pub applied: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    pub progress: Lsn,
    /// The source commit time of the last transaction applied, as the stream writes it.
    pub last_commit: Option<&'a str>,
}

impl Metrics {
    pub fn new(path: PathBuf) -> Metrics {
        Metrics { path, last: None }
    }

    /// Writes the file if it is due (or `now`).
    pub fn write(&mut self, c: &Counts, now: bool) -> Result<()> {
        if !now && self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return Ok(());
        }
        let mut t = Textfile::new();
        let o = c.origin;
        let help = "Source transactions weir-apply read, by what became of them (applied, skipped as already applied, dead_lettered).";
        for (outcome, n) in [
            ("applied", c.applied),
            ("skipped", c.skipped),
            ("dead_lettered", c.dead_lettered),
        ] {
            let labels = [("origin", o), ("outcome", outcome)];
            t.sample(
                "weir_apply_transactions_total",
                "counter",
                help,
                &labels,
                n as f64,
            );
        }
        t.gauge(
            "weir_apply_progress_lsn",
            "Where in the source's WAL the target's replication origin stands, as a number.",
            &[("origin", o)],
            c.progress.0 as f64,
        );
        let last = c
            .last_commit
            .and_then(|s| chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").ok());
        if let Some(last) = last {
            t.gauge(
                "weir_apply_last_commit_timestamp_seconds",
                "Source commit time of the last transaction applied.",
                &[("origin", o)],
                last.timestamp_micros() as f64 / 1e6,
            );
        }
        let now = crate::plumbing::unix_seconds(std::time::SystemTime::now());
        t.gauge(
            "weir_apply_metrics_timestamp_seconds",
            "When weir-apply last wrote this file.",
            &[("origin", o)],
            now as f64,
        );
        t.write(&self.path)?;
        self.last = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_streams_commit_times_parse() {
        for s in ["2026-12-04 01:02:03.5+00", "2026-12-04 01:02:03+00"] {
            let t = chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").unwrap();
            assert_eq!(t.timestamp(), 1_796_346_123, "{s}");
        }
    }
}
