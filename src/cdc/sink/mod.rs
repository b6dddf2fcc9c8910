//! `weir-sink`: weir-cdc's change stream delivered somewhere durable, with the position it
//! made durable reported where `weir-cdc --confirm-from` reads it, so the slot never passes
//! what the sink holds (the design of weir-apply's replication origin, for other targets).
//!
//! The loop is the same for every target: transactions are delivered whole and in order; one
//! whose commit is before the durable position is already there and skipped (at-least-once
//! on the wire, each transaction once at the target); a stream that ends inside a
//! transaction delivers nothing of it and exits 3. Targets: [`file`] (`file:///DIR`); formats:
//! weir-cdc's lines as they are, or [`debezium`]'s envelope.

pub mod debezium;
pub mod file;

use super::line::Reader;
use crate::pg::lsn::Lsn;
use crate::plumbing::{ExitCode, coded, open_input};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub url: String,
    pub input: Option<String>,
    /// Start a new file once the current one holds this many bytes.
    pub rotate_bytes: u64,
    /// Start a new file once the current one is this old.
    pub rotate_age: Duration,
    /// Make what was written durable, and report it, at most this long after it was written.
    pub sync_interval: Duration,
    /// Debezium's envelope instead of weir-cdc's lines.
    pub debezium: bool,
    pub quiet: bool,
}

/// What the loop needs of a line: its kind and positions (the rest passes as bytes).
#[derive(Deserialize)]
struct Head<'a> {
    action: &'a str,
    xid: Option<u32>,
    lsn: Option<&'a str>,
    nextlsn: Option<&'a str>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(o: &SinkOptions) -> Result<()> {
    let dir = o.url.strip_prefix("file://").ok_or_else(|| {
        coded(
            ExitCode::Usage,
            format!(
                "{}: weir-sink delivers to file:///DIR (webhooks and NATS JetStream are not built yet)",
                o.url
            ),
        )
    })?;
    let mut sink = file::FileSink::open(std::path::Path::new(dir), o)?;
    let durable = sink.position();
    let mut lines = Reader::new(std::io::BufReader::new(open_input(o.input.as_deref())?));
    let (mut open, mut skip, mut delivered, mut skipped) = (None::<u32>, false, 0u64, 0u64);
    while lines.advance()? {
        let h: Head = serde_json::from_slice(lines.raw()).map_err(|e| {
            coded(
                ExitCode::BadArchive,
                format!("not a weir-cdc change line ({e})"),
            )
        })?;
        match h.action {
            "B" => {
                let commit = Lsn::parse(h.lsn.context("a begin line without lsn")?)?;
                // As in weir-apply: everything that ended at or before the durable position is
                // there, and this transaction's commit starts before its end.
                skip = commit < durable;
                open = h.xid;
                if !skip {
                    sink.begin(commit)?;
                }
            }
            "C" if open.is_none() => anyhow::bail!("a commit outside a transaction"),
            "C" => {
                let end = Lsn::parse(h.nextlsn.context("a commit line without nextlsn")?)?;
                if skip {
                    skipped += 1;
                } else {
                    if !o.debezium {
                        sink.line(lines.raw())?;
                    }
                    sink.commit(end)?;
                    delivered += 1;
                }
                (open, skip) = (None, false);
                continue;
            }
            _ if open.is_none() => {
                // A message outside any transaction goes into the current file.
                let at = Lsn::parse(h.lsn.context("a line without lsn")?)?;
                sink.begin(at)?;
            }
            _ => {}
        }
        // Set at a begin line, cleared at its commit: a line of a transaction already there.
        if skip {
            continue;
        }
        if !o.debezium {
            sink.line(lines.raw())?;
        } else if let Some(e) = debezium::event(&lines.line()?, now_ms())? {
            sink.line(&e)?;
        }
    }
    if let Some(xid) = open {
        sink.finish()?;
        return Err(coded(
            ExitCode::BadArchive,
            format!("the stream ended inside transaction {xid}: nothing of it was delivered"),
        ));
    }
    let at = sink.finish()?;
    if !o.quiet {
        eprintln!(
            "weir-sink: {delivered} transactions delivered, {skipped} already there skipped; durable at {at}"
        );
    }
    Ok(())
}
