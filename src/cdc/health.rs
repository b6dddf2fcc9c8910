//! Keeping a slot safe while weir-cdc streams: a Prometheus textfile of where the slot stands
//! (`--metrics FILE`), and heartbeats (`--heartbeat SECS`) that write a message into the
//! source database's WAL so there is always something of this database to decode and confirm.
//!
//! The metrics, written at each status interval and at exit:
//! - `weir_cdc_slot_lag_bytes`: the server's WAL end minus the slot's confirmed position, the
//!   WAL the slot holds back (PostgreSQL keeps it until the slot confirms past it);
//! - `weir_cdc_slot_wal_status{status=...}`: `reserved`, `extended`, `unreserved` (the next
//!   checkpoint may remove WAL the slot needs) or `lost` (pg_replication_slots);
//! - `weir_cdc_slot_safe_wal_size_bytes`: WAL that can still be written before the slot is
//!   lost (absent without `max_slot_wal_keep_size`);
//! - `weir_cdc_last_confirmed_change_timestamp_seconds`: the source commit time of the last
//!   transaction the slot was told it may drop;
//! - `weir_cdc_metrics_timestamp_seconds`: when the file was written (a stale file is a stopped
//!   weir-cdc).

use crate::pg::lsn::Lsn;
use crate::plumbing::metrics::Textfile;
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The logical message prefix of a heartbeat (never written to the output).
pub const HEARTBEAT: &str = "weir.heartbeat";

/// Commits remembered for the last-confirmed-change time at most; past it the oldest half is
/// forgotten, which can only make the time reported older than it is.
const REMEMBERED: usize = 100_000;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH: i64 = 946_684_800;

pub struct Health {
    metrics: Option<PathBuf>,
    heartbeat: Option<Duration>,
    last_beat: Instant,
    /// Ends and commit times (PostgreSQL microseconds) of transactions not yet confirmed.
    commits: VecDeque<(Lsn, i64)>,
    last_confirmed: Option<i64>,
}

impl Health {
    pub fn new(metrics: Option<PathBuf>, heartbeat: Option<Duration>) -> Health {
        Health {
            metrics,
            heartbeat,
            last_beat: Instant::now(),
            commits: VecDeque::new(),
            last_confirmed: None,
        }
    }

    /// How long the stream may wait for the server before [`Health::beat`] is due.
    pub fn wait(&self, status_interval: Duration) -> Duration {
        self.heartbeat
            .map_or(status_interval, |h| h.min(status_interval))
    }

    /// A transaction ending at `end`, committed at `commit_time`, was written.
    pub fn committed(&mut self, end: Lsn, commit_time: i64) {
        if self.metrics.is_none() {
            return;
        }
        if self.commits.len() >= REMEMBERED {
            self.commits.drain(..REMEMBERED / 2);
        }
        self.commits.push_back((end, commit_time));
    }

    /// The slot was told it may drop everything before `at`.
    pub fn confirmed(&mut self, at: Lsn) {
        while let Some(&(end, time)) = self.commits.front() {
            if end > at {
                break;
            }
            self.last_confirmed = Some(time);
            self.commits.pop_front();
        }
    }

    /// A heartbeat message into the source's WAL, when one is due.
    pub fn beat(&mut self, c: &mut postgres::Client) -> Result<()> {
        if self.heartbeat.is_none_or(|h| self.last_beat.elapsed() < h) {
            return Ok(());
        }
        c.execute(
            "SELECT pg_catalog.pg_logical_emit_message(false, $1, '')",
            &[&HEARTBEAT],
        )
        .context("writing a heartbeat (--heartbeat) into the source's WAL")?;
        self.last_beat = Instant::now();
        Ok(())
    }

    /// Writes the metrics file, when there is one.
    pub fn write(&self, c: &mut postgres::Client, slot: &str) -> Result<()> {
        let Some(path) = &self.metrics else {
            return Ok(());
        };
        let q = "SELECT wal_status, safe_wal_size::float8, \
                        (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::float8 \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1";
        let row = c
            .query_opt(q, &[&slot])
            .context("reading the slot for --metrics")?;
        let mut t = Textfile::new();
        let s = [("slot", slot)];
        if let Some(r) = row {
            let status: Option<String> = r.get(0);
            let safe: Option<f64> = r.get(1);
            let lag: Option<f64> = r.get(2);
            t.gauge(
                "weir_cdc_slot_lag_bytes",
                "The server's WAL end minus the slot's confirmed position: WAL the slot holds back.",
                &s,
                lag.unwrap_or(0.0),
            );
            let status = status.unwrap_or_else(|| "unknown".into());
            t.gauge(
                "weir_cdc_slot_wal_status",
                "1 for the slot's wal_status (reserved, extended, unreserved, lost).",
                &[("slot", slot), ("status", &status)],
                1.0,
            );
            if let Some(safe) = safe {
                t.gauge(
                    "weir_cdc_slot_safe_wal_size_bytes",
                    "WAL that can still be written before the slot is lost (max_slot_wal_keep_size).",
                    &s,
                    safe,
                );
            }
        }
        if let Some(time) = self.last_confirmed {
            t.gauge(
                "weir_cdc_last_confirmed_change_timestamp_seconds",
                "Source commit time of the last transaction the slot was told it may drop.",
                &s,
                time as f64 / 1e6 + PG_EPOCH as f64,
            );
        }
        let now = crate::plumbing::unix_seconds(std::time::SystemTime::now());
        t.gauge(
            "weir_cdc_metrics_timestamp_seconds",
            "When weir-cdc last wrote this file.",
            &s,
            now as f64,
        );
        t.write(path)
    }
}
