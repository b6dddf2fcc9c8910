//! `weir-sink`: weir-cdc's change stream delivered somewhere durable, with the position it
//! made durable reported where `weir-cdc --confirm-from` reads it, so the slot never passes
//! what the sink holds (the design of weir-apply's replication origin, for other targets).
//!
//! The loop is the same for every target ([`Target`]): transactions are delivered whole and
//! in order; one whose commit is before the durable position is already there and skipped
//! (at-least-once on the wire, each transaction once at the target); a stream that ends inside
//! a transaction delivers nothing more of it and exits 3. Targets: [`file`] (`file:///DIR`),
//! [`webhook`] (`http://` and `https://`) and [`nats`] (`nats://HOST/SUBJECT?stream=NAME`);
//! formats: weir-cdc's lines as they are, or [`debezium`]'s envelope. [`state`] holds the
//! durable position weir-cdc `--confirm-from file:///DIR` reads.

pub mod debezium;
pub mod file;
pub mod nats;
pub mod state;
pub mod webhook;

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
    /// Where a webhook or NATS sink records its durable position (`file://` keeps it in DIR).
    pub state: Option<std::path::PathBuf>,
    /// How long one request (a POST, a publish's acknowledgement) may take.
    pub timeout: Duration,
    /// How long a webhook retries a failing delivery before giving up.
    pub retry_for: Duration,
    /// The largest webhook body: a bigger transaction goes in parts.
    pub max_body: usize,
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

/// A place the stream is delivered to, fed whole transactions in stream order.
pub trait Target {
    /// The end of the last transaction the target holds durably (0/0: nothing yet).
    fn position(&self) -> Lsn;
    /// A transaction that commits at `commit` starts.
    fn begin(&mut self, commit: Lsn) -> Result<()>;
    /// One line of it (without its newline).
    fn line(&mut self, raw: &[u8]) -> Result<()>;
    /// The transaction ended at `end`: deliver what is left of it, durable within the sync
    /// interval.
    fn commit(&mut self, end: Lsn) -> Result<()>;
    /// A message outside any transaction, at `at`.
    fn lone(&mut self, at: Lsn, raw: &[u8]) -> Result<()>;
    /// Makes everything delivered durable and recorded, drops a transaction left open, and
    /// says where the durable position ends.
    fn finish(self: Box<Self>) -> Result<Lsn>;
}

fn open(o: &SinkOptions) -> Result<Box<dyn Target>> {
    let (scheme, rest) = o.url.split_once("://").unwrap_or(("", ""));
    Ok(match scheme {
        "file" => Box::new(file::FileSink::open(std::path::Path::new(rest), o)?),
        "http" | "https" => Box::new(webhook::Webhook::open(o)?),
        "nats" => Box::new(nats::Nats::open(o)?),
        _ => {
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "{}: weir-sink delivers to file:///DIR, http(s)://... or nats://HOST/SUBJECT?stream=NAME",
                    o.url
                ),
            ));
        }
    })
}

/// The current line as the target takes it: as it is, or as its Debezium event (none for
/// begin, commit and message lines).
fn rendered<'r>(
    o: &SinkOptions,
    lines: &'r Reader<impl std::io::BufRead>,
) -> Result<Option<std::borrow::Cow<'r, [u8]>>> {
    if !o.debezium {
        return Ok(Some(std::borrow::Cow::Borrowed(lines.raw())));
    }
    Ok(debezium::event(&lines.line()?, now_ms())?.map(std::borrow::Cow::Owned))
}

pub fn run(o: &SinkOptions) -> Result<()> {
    let mut sink = open(o)?;
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
                    if let Some(r) = rendered(o, &lines)? {
                        sink.line(&r)?;
                    }
                }
            }
            "C" if open.is_none() => anyhow::bail!("a commit outside a transaction"),
            "C" => {
                let end = Lsn::parse(h.nextlsn.context("a commit line without nextlsn")?)?;
                if skip {
                    skipped += 1;
                } else {
                    if let Some(r) = rendered(o, &lines)? {
                        sink.line(&r)?;
                    }
                    sink.commit(end)?;
                    delivered += 1;
                }
                (open, skip) = (None, false);
            }
            _ if open.is_none() => {
                let at = Lsn::parse(h.lsn.context("a line without lsn")?)?;
                if at < durable {
                    continue;
                }
                if let Some(r) = rendered(o, &lines)? {
                    sink.lone(at, &r)?;
                }
            }
            // Set at a begin line, cleared at its commit: a line of a transaction already there.
            _ if skip => {}
            _ => {
                if let Some(r) = rendered(o, &lines)? {
                    sink.line(&r)?;
                }
            }
        }
    }
    let at = sink.finish()?;
    if let Some(xid) = open {
        return Err(coded(
            ExitCode::BadArchive,
            format!("the stream ended inside transaction {xid}: nothing more of it was delivered"),
        ));
    }
    if !o.quiet {
        eprintln!(
            "weir-sink: {delivered} transactions delivered, {skipped} already there skipped; durable at {at}"
        );
    }
    Ok(())
}
