//! `weir-cdc`: a logical replication slot's changes as JSON lines ([`super::json`]), over a
//! replication connection (START_REPLICATION with pgoutput, protocol version 1), with slot
//! creation and removal as pg_recvlogical does them.
//!
//! Confirmation (the standby status update's flush position, which the slot may advance to)
//! comes from one of two places ([`Confirm`]):
//! - `--confirm-from CONNINFO`: the replication origin weir-apply commits its progress to, on
//!   the target, read with `flush = true` (only what the target's WAL made durable), at each
//!   status interval. The slot never passes what the last stage holds.
//! - otherwise "confirm on write": a transaction's end once its lines were written and
//!   flushed. A later stage that crashes before making them durable loses them, so weir-cdc
//!   says so when it starts.
//!
//! Between transactions the server's keepalive position is confirmed too once everything
//! written is confirmed, so that an idle slot (or one whose publication's tables are quiet
//! while others are busy) does not hold WAL forever.

use super::json::{self, Col, Rel, Txn};
use super::members::{self, Members};
use super::pgoutput::{Message, decode};
use super::wire::{FromServer, Positions, parse, status_update};
use super::writer::{Offer, Writer};
use crate::pg::conn::ConnParams;
use crate::pg::lsn::Lsn;
use crate::pg::replication::{Polled, ReplConn, format_lsn};
use crate::pg::sql::{quote_ident, quote_literal};
use crate::plumbing::{ExitCode, Output, coded};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct CdcOptions {
    pub conninfo: Option<String>,
    pub slot: String,
    pub create_slot: bool,
    pub if_not_exists: bool,
    pub drop_slot: bool,
    pub stream: bool,
    /// Create the slot with an exported snapshot and copy the publication's tables first.
    pub copy: bool,
    /// After the copy, stream (else stop, the slot kept for a later --stream).
    pub copy_and_stream: bool,
    pub jobs: usize,
    /// Tables above twice this many pages are copied in ranges of this many pages.
    pub split_pages: i64,
    pub publication: Option<String>,
    pub startpos: Option<u64>,
    pub endpos: Option<u64>,
    pub status_interval: Duration,
    pub output: Option<String>,
    /// The target whose replication origin says what is durable.
    pub confirm_from: Option<String>,
    pub origin: String,
    /// Where to write the slot's metrics ([`super::health`]).
    pub metrics: Option<std::path::PathBuf>,
    /// Write a heartbeat message into the source's WAL this often.
    pub heartbeat: Option<Duration>,
    /// pgoutput's protocol version (default: 2 where the server has it, so big transactions in
    /// progress are streamed rather than spilled by the server).
    pub proto_version: Option<u32>,
    /// Rebuild the target after a lost or dropped slot: a new slot, a copy behind a TRUNCATE
    /// of every published table, then the stream.
    pub resync: bool,
    /// Install, or remove, the DDL event triggers ([`super::ddl`]).
    pub track_ddl: bool,
    pub untrack_ddl: bool,
    /// Check the target against the source at this run's start ([`super::verify`]).
    pub verify: bool,
    pub verify_chunk_rows: u64,
    /// Copy this table into the stream while it flows ([`super::backfill`]).
    /// (Every table of the publication when empty and `backfill_all`.)
    pub backfill: Vec<String>,
    pub backfill_all: bool,
    pub backfill_chunk_rows: usize,
    /// Create the slot as a failover slot (PostgreSQL 17).
    pub failover: bool,
    pub quiet: bool,
}

/// Where the confirmed position comes from.
enum Confirm {
    /// Whatever was written and flushed to the output.
    OnWrite,
    /// A weir-sink directory's durable position (`file:///DIR`).
    File {
        dir: std::path::PathBuf,
        durable: Lsn,
    },
    /// A replication origin's durable progress on the target.
    Origin {
        target: Box<postgres::Client>,
        origin: String,
        /// Its last reading.
        durable: Lsn,
    },
}

impl Confirm {
    fn open(o: &CdcOptions) -> Result<Confirm> {
        let Some(conninfo) = &o.confirm_from else {
            if !o.quiet {
                eprintln!(
                    "weir-cdc: confirming each transaction once it is written: a later stage that fails before making it durable loses it (--confirm-from names the target that makes it durable)"
                );
            }
            return Ok(Confirm::OnWrite);
        };
        if let Some(dir) = conninfo.strip_prefix("file://") {
            let mut c = Confirm::File {
                dir: dir.into(),
                durable: Lsn::ZERO,
            };
            c.refresh()?;
            return Ok(c);
        }
        let params = ConnParams::resolve(Some(conninfo), "weir-cdc")?;
        let target = params
            .connect()
            .context("connecting to the --confirm-from target")?;
        let mut c = Confirm::Origin {
            target: Box::new(target),
            origin: o.origin.clone(),
            durable: Lsn::ZERO,
        };
        c.refresh()?;
        Ok(c)
    }

    /// Reads the durable position again (a missing origin or position file is nothing
    /// delivered yet).
    fn refresh(&mut self) -> Result<()> {
        if let Confirm::File { dir, durable } = self {
            *durable = super::sink::state::durable(dir)?.unwrap_or_default();
            return Ok(());
        }
        if let Confirm::Origin {
            target,
            origin,
            durable,
        } = self
        {
            let q = "SELECT pg_catalog.pg_replication_origin_progress($1::text, true)::text \
                     WHERE pg_catalog.pg_replication_origin_oid($1::text) IS NOT NULL";
            let row = target
                .query_opt(q, &[&*origin])
                .context("reading the --confirm-from target's replication origin")?;
            let lsn: Option<String> = row.and_then(|r| r.get(0));
            *durable = lsn
                .as_deref()
                .map(Lsn::parse)
                .transpose()?
                .unwrap_or_default();
        }
        Ok(())
    }

    /// The position to confirm: with everything `written` up to `last_end` (the last
    /// transaction's end) and nothing beyond it but WAL without changes up to `written`.
    fn flushed(&self, written: Lsn, last_end: Lsn) -> Lsn {
        match self {
            Confirm::OnWrite => written,
            Confirm::Origin { durable, .. } | Confirm::File { durable, .. }
                if *durable >= last_end =>
            {
                written.max(*durable)
            }
            Confirm::Origin { durable, .. } | Confirm::File { durable, .. } => *durable,
        }
    }
}

pub fn run(o: &CdcOptions) -> Result<()> {
    let reads = o.stream || o.copy || o.copy_and_stream || o.resync;
    if !(o.create_slot || o.drop_slot || reads || o.track_ddl || o.untrack_ddl) {
        return Err(coded(
            ExitCode::Usage,
            "nothing to do: give --create-slot, --stream, --copy, --copy-and-stream, --resync, --drop-slot, --track-ddl or --untrack-ddl",
        ));
    }
    if reads && o.publication.is_none() {
        return Err(coded(
            ExitCode::Usage,
            "--stream, --copy, --copy-and-stream and --resync need --publication NAME",
        ));
    }
    let params = ConnParams::resolve(o.conninfo.as_deref(), "weir-cdc")?;
    if o.track_ddl || o.untrack_ddl {
        let mut c = params.connect()?;
        match o.track_ddl {
            true => super::ddl::install(&mut c)?,
            false => super::ddl::remove(&mut c)?,
        }
        if !o.quiet {
            let what = if o.track_ddl { "installed" } else { "removed" };
            eprintln!("weir-cdc: DDL event triggers {what}");
        }
        if !(o.create_slot || o.drop_slot || reads) {
            return Ok(());
        }
    }
    let mut repl = ReplConn::connect_logical(&params)?;
    on_a_standby(&mut repl, o)?;
    if o.resync {
        drop_for_resync(&mut repl, &o.slot, o.quiet)?;
    }
    let snapshot = match o.copy || o.copy_and_stream || o.resync {
        true => Some(super::copy::create_slot_exporting(
            &mut repl, &o.slot, false, o.failover,
        )?),
        false => None,
    };
    if o.create_slot && snapshot.is_none() {
        create_slot(&mut repl, &o.slot, o.if_not_exists, o.failover)?;
    }
    if reads {
        let mut types = params.connect()?;
        // Type names as the walsender writes them (wal2json too): qualified unless in
        // pg_catalog.
        types.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
        let mut s = Streamer::new(o, types, params.clone())?;
        if let Some(snap) = &snapshot {
            s.copy(&params, snap)?;
        }
        s.open_members()?;
        s.begin_backfill()?;
        if o.verify {
            let check = begin_check(o, &params)?;
            // The check needs the stream to reach its position.
            s.endpos = s.endpos.map(|e| e.max(check.at.0));
            s.check = Some(check);
        }
        match o.stream || o.copy_and_stream || o.resync {
            true => s.run(&mut repl)?,
            false => s.finish_copy()?,
        }
    }
    if o.drop_slot {
        drop_slot(&mut repl, &o.slot).with_context(|| format!("dropping slot {}", o.slot))?;
    }
    Ok(())
}

/// DROP_REPLICATION_SLOT, waiting up to 10 s while the slot is still active: the walsender of
/// a consumer that just stopped (this process's own stream at `-E`, or a pipeline killed a
/// moment ago) releases its slot only when it notices the client is gone and exits
/// (walsender.c), and a drop in between fails with "is active for PID". Longer than that, the
/// slot is in use, and the server's error stands.
fn drop_slot(repl: &mut ReplConn, slot: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match repl.query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(slot))) {
            Ok(_) => return Ok(()),
            Err(e) if format!("{e:#}").contains("is active for PID") => {
                if Instant::now() >= until {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `--verify`: the source's side of the check, at a position the stream has not passed yet
/// (the slot cannot be ahead of the server's WAL).
fn begin_check(o: &CdcOptions, params: &ConnParams) -> Result<super::verify::SourceCheck> {
    let publication = o.publication.as_deref().expect("checked");
    let check = super::verify::SourceCheck::begin(params, publication, o.jobs, o.verify_chunk_rows)
        .context("starting the check (--verify)")?;
    if let Some(end) = o.endpos.filter(|e| *e < check.at.0 && !o.quiet) {
        eprintln!(
            "weir-cdc: streaming to {}, the check's position, past --endpos {}",
            check.at,
            format_lsn(end)
        );
    }
    if !o.quiet {
        eprintln!(
            "weir-cdc: checking the target against the source at {}",
            check.at
        );
    }
    Ok(check)
}

/// `--resync`: what is left of the slot goes (a lost one, or none after it was dropped), said
/// out loud, so the copy that follows starts from a new one.
fn drop_for_resync(repl: &mut ReplConn, slot: &str, quiet: bool) -> Result<()> {
    let rows = repl.query(&format!(
        "SELECT coalesce(wal_status, '-'), coalesce(confirmed_flush_lsn::text, '-') \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        quote_literal(slot)
    ))?;
    let state = rows.first().map(|r| {
        let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        (get(0), get(1))
    });
    if let Some((status, at)) = &state {
        drop_slot(repl, slot).with_context(|| format!("dropping slot {slot} for --resync"))?;
        if !quiet {
            eprintln!(
                "weir-cdc: resync: dropped slot {slot} (wal_status {status}, confirmed at {at})"
            );
        }
    } else if !quiet {
        eprintln!("weir-cdc: resync: slot {slot} does not exist; creating it afresh");
    }
    Ok(())
}

/// Says where the slot stands (its confirmed position, how far the server's WAL is ahead,
/// `wal_status`), and stops with its own exit code on a lost slot: its changes are gone, and
/// only a new copy repairs what depends on it.
fn slot_health(repl: &mut ReplConn, slot: &str, quiet: bool) -> Result<()> {
    let rows = repl.query(&format!(
        "SELECT wal_status, confirmed_flush_lsn::text, \
                pg_catalog.pg_size_pretty(pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn), \
                pg_catalog.pg_size_pretty(safe_wal_size) \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        quote_literal(slot)
    ))?;
    let Some(r) = rows.first() else {
        return Err(coded(
            ExitCode::SlotLost,
            format!(
                "slot {slot} does not exist: create it with --create-slot; if it fed a target and was dropped, changes since are missing there, and --resync rebuilds it"
            ),
        ));
    };
    let get = |i: usize| r[i].as_deref().unwrap_or("-");
    if get(0) == "lost" {
        return Err(coded(
            ExitCode::SlotLost,
            format!(
                "slot {slot} is lost (wal_status = lost): the server removed WAL it still needed, so changes after {} are gone; --resync rebuilds the target from a fresh copy",
                get(1)
            ),
        ));
    }
    if !quiet {
        let room = match get(3) {
            "-" => "no max_slot_wal_keep_size".to_string(),
            left => format!("{left} more before max_slot_wal_keep_size loses it"),
        };
        eprintln!(
            "weir-cdc: slot {slot} confirmed at {}, {} behind the server's WAL (wal_status {}, {room})",
            get(1),
            get(2),
            get(0),
        );
    }
    Ok(())
}

/// The plugin of slot `slot` if it exists (`Some(None)`: a physical slot).
pub(super) fn existing_slot(repl: &mut ReplConn, slot: &str) -> Result<Option<Option<String>>> {
    let rows = repl.query(&format!(
        "SELECT plugin FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        quote_literal(slot)
    ))?;
    Ok(rows.into_iter().next().map(|mut r| r.swap_remove(0)))
}

/// What PostgreSQL 16 and 17 add: decoding on a hot standby (16: the slot lives on the standby,
/// which needs `hot_standby_feedback` and the primary's `wal_level = logical`), and failover
/// slots (17). On a standby nothing can be written, so what writes to the source's WAL
/// (heartbeats, backfill watermarks, the DDL triggers) needs the primary.
fn on_a_standby(repl: &mut ReplConn, o: &CdcOptions) -> Result<()> {
    let rows = repl.query("SELECT pg_catalog.pg_is_in_recovery()")?;
    let standby = rows.first().and_then(|r| r[0].as_deref()) == Some("t");
    if !standby {
        return Ok(());
    }
    let version = repl.server_version();
    if version < 160000 {
        bail!(
            "the server is a standby, and decoding on a standby needs PostgreSQL 16 or later (this one is {}): point weir-cdc at the primary",
            version / 10000
        );
    }
    let writes = [
        (o.heartbeat.is_some(), "--heartbeat"),
        (!o.backfill.is_empty() || o.backfill_all, "--backfill"),
        (o.track_ddl || o.untrack_ddl, "--track-ddl"),
    ];
    if let Some((_, flag)) = writes.iter().find(|(on, _)| *on) {
        bail!(
            "{flag} writes into the source's WAL, which a standby cannot: give it on the primary"
        );
    }
    Ok(())
}

/// The options of CREATE_REPLICATION_SLOT (PostgreSQL 15's parenthesized form): what becomes
/// of the snapshot (`export`, `nothing`), and `FAILOVER` (17 and later: the slot is
/// synchronized to standbys with `sync_replication_slots`, so it survives a failover).
pub(super) fn slot_options(repl: &ReplConn, snapshot: &str, failover: bool) -> Result<String> {
    let version = repl.server_version();
    if failover && version < 170000 {
        bail!(
            "--failover needs PostgreSQL 17 or later (this server is {})",
            version / 10000
        );
    }
    let failover = if failover { ", FAILOVER" } else { "" };
    Ok(match version >= 150000 {
        true => format!("(SNAPSHOT '{snapshot}'{failover})"),
        false if snapshot == "export" => "EXPORT_SNAPSHOT".into(),
        false => "NOEXPORT_SNAPSHOT".into(),
    })
}

fn create_slot(repl: &mut ReplConn, slot: &str, if_not_exists: bool, failover: bool) -> Result<()> {
    match existing_slot(repl, slot)? {
        Some(plugin) if if_not_exists && plugin.as_deref() == Some("pgoutput") => return Ok(()),
        Some(plugin) if if_not_exists => bail!(
            "slot {slot} exists with plugin {}, not pgoutput",
            plugin.as_deref().unwrap_or("none (a physical slot)")
        ),
        Some(_) => bail!("slot {slot} exists already (--if-not-exists takes it as it is)"),
        None => {}
    }
    let options = slot_options(repl, "nothing", failover)?;
    repl.query(&format!(
        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {options}",
        quote_ident(slot)
    ))
    .with_context(|| format!("creating slot {slot}"))?;
    Ok(())
}

/// The streaming loop's state.
struct Streamer<'o> {
    o: &'o CdcOptions,
    out: Writer,
    /// format_type, by (type, modifier), from a normal connection.
    types: postgres::Client,
    type_names: HashMap<(u32, i32), String>,
    relations: HashMap<u32, Rel>,
    /// The open transaction, if any.
    txn: Option<Txn>,
    /// Received up to here.
    received: u64,
    /// Handed to the writer up to here (a transaction's end, or a position passed without
    /// changes); the writer says what of it is written.
    handed: Lsn,
    /// The end of the last transaction handed to the writer.
    last_end: Lsn,
    confirm: Confirm,
    last_status: Instant,
    buf: Vec<u8>,
    /// Where streaming starts when a copy came first: the slot's consistent point.
    copied_to: Option<Lsn>,
    health: super::health::Health,
    /// Streamed transactions in progress (protocol 2), each in a file of its own, and the one
    /// whose block is open.
    streamed: HashMap<u32, super::spill::Spill>,
    in_stream: Option<u32>,
    /// `--verify`: the check whose messages are still to be written.
    check: Option<super::verify::SourceCheck>,
    /// Where the stream stops: `--endpos`, or the check's position if that is later.
    endpos: Option<u64>,
    /// `--backfill`: the table being copied in, and its changes in the open transaction.
    backfill: Option<super::backfill::Backfills>,
    /// The source, for a backfill's reads.
    params: ConnParams,
    /// Which tables the target holds whole ([`super::members`]), with a database target.
    members: Option<Members>,
    last_poll: Instant,
}

impl<'o> Streamer<'o> {
    fn new(o: &'o CdcOptions, types: postgres::Client, params: ConnParams) -> Result<Streamer<'o>> {
        let confirm = Confirm::open(o)?;
        Ok(Streamer {
            o,
            out: Writer::spawn(Output::open(o.output.as_deref(), false)?, 8),
            types,
            type_names: HashMap::new(),
            relations: HashMap::new(),
            txn: None,
            received: 0,
            handed: Lsn::ZERO,
            last_end: Lsn::ZERO,
            confirm,
            last_status: Instant::now(),
            buf: Vec::with_capacity(1 << 16),
            copied_to: None,
            health: super::health::Health::new(o.metrics.clone(), o.heartbeat),
            streamed: HashMap::new(),
            in_stream: None,
            check: None,
            endpos: o.endpos,
            backfill: None,
            params,
            members: None,
            last_poll: Instant::now(),
        })
    }

    /// The publication's tables as they are in the slot's snapshot, as one transaction of
    /// insert lines that ends at the slot's consistent point (see [`super::copy`]).
    fn copy(&mut self, params: &ConnParams, snap: &super::copy::Snapshot) -> Result<()> {
        let publication = self.o.publication.as_deref().expect("checked");
        let (items, n) = super::copy::items(&mut self.types, publication, self.o.split_pages)?;
        let txn = Txn {
            xid: 0,
            commit_time: super::wire::pg_now(),
        };
        json::begin(&mut self.buf, &txn, snap.at.0);
        if self.o.resync {
            self.replaced(&items, &txn, snap.at)?;
        }
        // Before streaming starts no status update is due, so the writer may make us wait.
        self.out.send((std::mem::take(&mut self.buf), None))?;
        let out = &mut self.out;
        let rows = super::copy::copy(params, snap, items, self.o.jobs, txn, |b| {
            out.send((b, None))
        })?;
        json::commit(&mut self.buf, &txn, snap.at.0, snap.at.0);
        self.out
            .send((std::mem::take(&mut self.buf), Some(snap.at)))?;
        (self.handed, self.last_end, self.copied_to) = (snap.at, snap.at, Some(snap.at));
        if !self.o.quiet {
            eprintln!(
                "weir-cdc: copied {rows} rows of {n} tables in the snapshot of slot {} (consistent point {})",
                self.o.slot, snap.at
            );
        }
        Ok(())
    }

    /// `--resync`: a truncate line for each published table ahead of its copy, all at one
    /// position, so weir-apply empties them in one statement, in the copy's transaction: the
    /// target's tables are replaced whole or not at all.
    fn replaced(&mut self, items: &[super::copy::Item], txn: &Txn, at: Lsn) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut names = Vec::new();
        for item in items {
            let rel = &item.rel;
            if seen.insert((rel.schema.clone(), rel.table.clone())) {
                json::truncate(&mut self.buf, txn, at.0, rel);
                names.push(format!("{}.{}", rel.schema, rel.table));
            }
        }
        if !self.o.quiet {
            eprintln!(
                "weir-cdc: resync: the target's {} replaced by a copy at {at}: {}",
                if names.len() == 1 {
                    "table is"
                } else {
                    "tables are"
                },
                names.join(", ")
            );
        }
        Ok(())
    }

    /// After `--copy` alone: everything written; the slot stays for a later `--stream`.
    fn finish_copy(mut self) -> Result<()> {
        self.out.finish()?.finish().context("writing the output")?;
        if !self.o.quiet {
            eprintln!(
                "weir-cdc: slot {} keeps the changes after the copy: --stream resumes there",
                self.o.slot
            );
        }
        Ok(())
    }

    fn run(mut self, repl: &mut ReplConn) -> Result<()> {
        slot_health(repl, &self.o.slot, self.o.quiet)?;
        let start = match (self.o.startpos, self.copied_to) {
            (Some(p), _) => format_lsn(p),
            (None, Some(at)) => at.to_string(),
            (None, None) => "0/0".into(),
        };
        let publication = self.o.publication.as_deref().expect("checked");
        // pg_logical_emit_message's messages come only when asked for, and big transactions
        // in progress are streamed only under protocol 2 (both PostgreSQL 14 on).
        let v14 = repl.server_version() >= 140000;
        let proto = self.o.proto_version.unwrap_or(if v14 { 2 } else { 1 });
        let messages = if v14 { ", messages 'true'" } else { "" };
        let streaming = if proto >= 2 { ", streaming 'on'" } else { "" };
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '{proto}', publication_names {}{messages}{streaming})",
            quote_ident(&self.o.slot),
            quote_literal(&quote_ident(publication))
        );
        repl.send(&sql)?;
        let started = repl.next_result().map_err(|e| {
            // The slot was lost between the check and the start (slot.c: "can no longer get
            // changes from replication slot").
            match e.to_string().contains("can no longer get changes") {
                true => coded(
                    ExitCode::SlotLost,
                    format!("slot {} is lost: {e}", self.o.slot),
                ),
                false => e.context(format!("starting slot {}", self.o.slot)),
            }
        })?;
        match started {
            Some(crate::pg::replication::Reply::CopyBoth) => {}
            _ => bail!("the server did not start streaming slot {}", self.o.slot),
        }
        let wait = self.health.wait(self.o.status_interval);
        loop {
            let data = match repl.copy_data_within(wait)? {
                Polled::Data(d) => d,
                Polled::Timeout => {
                    self.tick(repl)?;
                    self.check_messages(repl, Duration::ZERO)?;
                    self.backfill_step()?;
                    self.follow()?;
                    continue;
                }
                Polled::End => bail!("the server ended the stream of slot {}", self.o.slot),
            };
            let done = match parse(&data)? {
                FromServer::XLogData { start, data, .. } => self.xlog(repl, start, data)?,
                FromServer::Keepalive { end, reply, .. } => self.keepalive(repl, end, reply)?,
            };
            self.tick(repl)?;
            self.check_messages(repl, Duration::ZERO)?;
            self.backfill_step()?;
            self.follow()?;
            if done {
                self.finish_check(repl)?;
                let out = self.out.finish()?;
                self.confirm.refresh()?;
                self.status(repl, false)?;
                self.health.write(&mut self.types, &self.o.slot)?;
                return out.finish().context("writing the output");
            }
        }
    }

    /// A status update (and the metrics) when the interval has passed; a heartbeat when due.
    fn tick(&mut self, repl: &mut ReplConn) -> Result<()> {
        if self.last_status.elapsed() >= self.o.status_interval {
            self.confirm.refresh()?;
            self.ready()?;
            self.status(repl, false)?;
            self.health.write(&mut self.types, &self.o.slot)?;
        }
        self.health.beat(&mut self.types)
    }

    /// Hands the buffered lines to the writer (`at`: the position they complete), sending
    /// status updates while its queue stays full.
    fn hand(&mut self, repl: &mut ReplConn, at: Option<Lsn>) -> Result<()> {
        let mut item = (std::mem::take(&mut self.buf), at);
        loop {
            match self.out.offer(item, Duration::from_millis(200))? {
                Offer::Taken => break,
                Offer::Full(back) => {
                    item = back;
                    self.tick(repl)?;
                }
            }
        }
        if let Some(at) = at {
            self.handed = self.handed.max(at);
        }
        self.buf = Vec::with_capacity(1 << 16);
        Ok(())
    }

    /// Past the end position: stop before anything beyond it is written.
    fn past_end(&self, lsn: u64) -> bool {
        self.endpos.is_some_and(|e| lsn > e)
    }

    /// One pgoutput message; true when the end position is reached.
    fn xlog(&mut self, repl: &mut ReplConn, lsn: u64, data: &[u8]) -> Result<bool> {
        self.received = self.received.max(lsn);
        if let Some(top) = self.in_stream {
            return self.streamed_block(top, lsn, data).map(|()| false);
        }
        match decode(data)? {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            } => return self.begin(repl, Txn { xid, commit_time }, final_lsn),
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => return self.commit(repl, commit_lsn, end_lsn),
            Message::StreamStart { xid, .. } => {
                if let std::collections::hash_map::Entry::Vacant(e) = self.streamed.entry(xid) {
                    e.insert(super::spill::Spill::new()?);
                }
                self.in_stream = Some(xid);
            }
            Message::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let spill = self.streamed.remove(&xid);
                if self.begin(repl, Txn { xid, commit_time }, commit_lsn)? {
                    return Ok(true);
                }
                if let Some(spill) = spill {
                    spill.replay(|at, msg| {
                        let (_, m) = super::pgoutput::decode_streamed(msg)?;
                        self.change(repl, at, m)
                    })?;
                }
                return self.commit(repl, commit_lsn, end_lsn);
            }
            Message::StreamAbort { xid, subxid } if xid == subxid => {
                self.streamed.remove(&xid);
            }
            Message::StreamAbort { xid, subxid } => {
                if let Some(s) = self.streamed.get_mut(&xid) {
                    s.abort(subxid)?;
                }
            }
            Message::StreamStop => bail!("a stream stop outside a streamed block"),
            m => self.change(repl, lsn, m)?,
        }
        Ok(false)
    }

    /// A transaction whose commit is at `commit_lsn` begins: its begin line, unless it commits
    /// past the end position (true: stop). A check's point goes before it when it is due.
    fn begin(&mut self, repl: &mut ReplConn, t: Txn, commit_lsn: u64) -> Result<bool> {
        self.check_point(repl, commit_lsn)?;
        if self.past_end(commit_lsn) {
            return Ok(true);
        }
        json::begin(&mut self.buf, &t, commit_lsn);
        self.txn = Some(t);
        Ok(false)
    }

    /// A message of the streamed transaction `top`'s open block: kept in its file (a
    /// relation's description is taken now too), the block closed at Stream Stop.
    fn streamed_block(&mut self, top: u32, lsn: u64, data: &[u8]) -> Result<()> {
        let (xid, m) = super::pgoutput::decode_streamed(data)?;
        match m {
            Message::StreamStop => self.in_stream = None,
            Message::Type { .. } => {}
            m => {
                if let Message::Relation(r) = &m {
                    let rel = self.relation(r)?;
                    self.relations.insert(r.id, rel);
                }
                let spill = self
                    .streamed
                    .get_mut(&top)
                    .context("a block of an unknown stream")?;
                spill.push(xid.unwrap_or(top), lsn, data)?;
            }
        }
        Ok(())
    }

    /// The open transaction commits: its lines handed on with its end.
    fn commit(&mut self, repl: &mut ReplConn, commit_lsn: u64, end_lsn: u64) -> Result<bool> {
        let t = self.txn.context("a commit outside a transaction")?;
        self.settle()?;
        self.txn = None;
        json::commit(&mut self.buf, &t, commit_lsn, end_lsn);
        self.last_end = Lsn(end_lsn);
        self.health.committed(Lsn(end_lsn), t.commit_time);
        self.hand(repl, Some(Lsn(end_lsn)))?;
        Ok(self.endpos.is_some_and(|e| end_lsn > e))
    }

    /// A change, relation, truncate or message of the open transaction (or a message outside
    /// any), as lines.
    fn change(&mut self, repl: &mut ReplConn, lsn: u64, m: Message) -> Result<()> {
        match m {
            Message::Relation(r) => {
                let rel = self.relation(&r)?;
                self.relations.insert(r.id, rel);
                // Before the first change of a table new to the publication.
                self.place(r.id)?;
            }
            Message::Message {
                transactional: false,
                ..
            } if self
                .check
                .as_ref()
                .is_some_and(|c| !c.point_sent && lsn >= c.at.0) =>
            {
                self.check_point(repl, lsn)?;
                return self.change(repl, lsn, m);
            }
            Message::Insert { relation, .. }
            | Message::Update { relation, .. }
            | Message::Delete { relation, .. }
                if self.backfill.as_ref().is_some_and(|b| b.holds(relation)) =>
            {
                self.hold(lsn, m)?;
            }
            Message::Truncate { relations, .. } => {
                if let (Some(b), Some(t)) = (&mut self.backfill, self.txn) {
                    b.truncating(&relations, &t, &mut self.buf)?;
                }
                for id in relations {
                    let (t, rel) = context(self.txn, &self.relations, id)?;
                    json::truncate(&mut self.buf, &t, lsn, rel);
                }
            }
            Message::Message {
                transactional: false,
                prefix: super::backfill::PREFIX,
                content,
                ..
            } if self.txn.is_none() => self.watermark(repl, lsn, content)?,
            Message::Insert { relation, new } => {
                let (t, rel) = context(self.txn, &self.relations, relation)?;
                json::change(&mut self.buf, "I", &t, lsn, rel, Some(&new), None);
            }
            Message::Update { relation, old, new } => {
                let (t, rel) = context(self.txn, &self.relations, relation)?;
                let old = old.as_ref().map(|(_, o)| o);
                json::change(&mut self.buf, "U", &t, lsn, rel, Some(&new), old);
            }
            Message::Delete { relation, old } => {
                let (t, rel) = context(self.txn, &self.relations, relation)?;
                json::change(&mut self.buf, "D", &t, lsn, rel, None, Some(&old.1));
            }
            // A heartbeat only moves the position: nothing before it remains to be written.
            Message::Message {
                transactional: false,
                prefix: super::health::HEARTBEAT,
                ..
            } if self.txn.is_none() => self.hand(repl, Some(Lsn(lsn).max(self.handed)))?,
            Message::Message {
                transactional,
                prefix,
                content,
                ..
            } => {
                let t = self.txn.filter(|_| transactional);
                json::message(&mut self.buf, t.as_ref(), lsn, prefix, content);
                if !transactional {
                    self.hand(repl, Some(self.handed))?;
                }
            }
            Message::Origin { .. } | Message::Type { .. } => {}
            other => bail!("unexpected pgoutput message {other:?}"),
        }
        if self.buf.len() >= 1 << 20 {
            self.hand(repl, None)?;
        }
        Ok(())
    }

    /// With a database target: the state of the publication's tables on it, opened (and
    /// made, on the first run), the tables a copy just wrote waiting to be durable there.
    /// Without it no table new to the publication is copied, and weir-cdc says so.
    fn open_members(&mut self) -> Result<()> {
        let Confirm::Origin { target, .. } = &mut self.confirm else {
            return Ok(());
        };
        let publication = self.o.publication.as_deref().expect("checked");
        let now = members::published(&mut self.types, publication)?;
        let mut m = match Members::open(target, &self.o.origin, &now, self.copied_to.is_some()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "weir-cdc: warning: a table added to publication {publication} will not be copied into the stream ({e:#}); --backfill TABLE copies one"
                );
                return Ok(());
            }
        };
        if let Some(at) = self.copied_to {
            now.into_iter().for_each(|p| m.copied(p.oid, p.name, at));
        }
        self.members = Some(m);
        Ok(())
    }

    /// `--backfill`, and the tables an earlier run was copying: each from where the target's
    /// copy of it stands (the --confirm-from database's greatest key), recorded as copying.
    fn begin_backfill(&mut self) -> Result<()> {
        let mut names = self.o.backfill.clone();
        if let Some(m) = &self.members {
            // A name given twice (or by --backfill too) is copied once: Backfills::add.
            names.extend(m.copying.iter().cloned());
        }
        if names.is_empty() && !self.o.backfill_all {
            return Ok(());
        }
        let publication = self.o.publication.as_deref().expect("checked");
        let Confirm::Origin { target, .. } = &mut self.confirm else {
            return Err(coded(
                ExitCode::Usage,
                "--backfill needs --confirm-from CONNINFO: the target's copy of each table says where to go on from",
            ));
        };
        let names = if self.o.backfill_all {
            Vec::new()
        } else {
            names
        };
        let b = super::backfill::Backfills::start(
            &self.params,
            &names,
            publication,
            target,
            self.o.backfill_chunk_rows,
            self.o.quiet,
        )?;
        if let Some(m) = &mut self.members {
            for (oid, name) in b.tables() {
                let p = members::Published {
                    oid,
                    name,
                    listed: true,
                };
                m.set(target, &p, "copying")?;
            }
        }
        self.backfill = Some(b);
        Ok(())
    }

    /// Between transactions: the backfill's next chunk is read when none is under way; a
    /// table whose copy went out in full is ready once the target holds it durably.
    fn backfill_step(&mut self) -> Result<()> {
        let Some(b) = self.backfill.as_mut().filter(|_| self.txn.is_none()) else {
            return Ok(());
        };
        let done = b.step()?;
        if b.is_empty() {
            self.backfill = None;
        }
        if let Some(m) = &mut self.members {
            done.into_iter()
                .for_each(|(oid, name)| m.copied(oid, name, self.last_end));
        }
        Ok(())
    }

    /// The copies the target now holds durably, recorded as ready.
    fn ready(&mut self) -> Result<()> {
        let (
            Some(m),
            Confirm::Origin {
                target, durable, ..
            },
        ) = (&mut self.members, &mut self.confirm)
        else {
            return Ok(());
        };
        for name in m.settle(target, *durable)? {
            if !self.o.quiet {
                eprintln!("weir-cdc: {name} is ready: the target holds it whole");
            }
        }
        Ok(())
    }

    /// Between transactions, once per status interval: tables added to the publication are
    /// placed (the stream carries no event for a table added without a change to it yet),
    /// and tables that left it are forgotten.
    fn follow(&mut self) -> Result<()> {
        if self.txn.is_some() || self.last_poll.elapsed() < self.o.status_interval {
            return Ok(());
        }
        let Some(m) = &self.members else {
            return Ok(());
        };
        self.last_poll = Instant::now();
        let publication = self.o.publication.as_deref().expect("checked");
        let now = members::published(&mut self.types, publication)?;
        let (added, gone) = m.changes(&now);
        for p in added {
            self.adopt(p)?;
        }
        let copying = |oid: &u32| self.backfill.as_ref().is_some_and(|b| b.holds(*oid));
        let gone: Vec<u32> = gone.into_iter().filter(|o| !copying(o)).collect();
        if let (Some(m), Confirm::Origin { target, .. }) = (&mut self.members, &mut self.confirm) {
            for oid in gone {
                m.forget(target, oid)?;
            }
        }
        Ok(())
    }

    /// A relation the stream describes: one new to the publication is placed before its
    /// first change.
    fn place(&mut self, oid: u32) -> Result<()> {
        let Some(m) = &mut self.members else {
            return Ok(());
        };
        if m.knows(oid) || self.backfill.as_ref().is_some_and(|b| b.holds(oid)) {
            return Ok(());
        }
        let publication = self.o.publication.as_deref().expect("checked");
        let now = members::published(&mut self.types, publication)?;
        match now.into_iter().find(|p| p.oid == oid) {
            Some(p) => self.adopt(p),
            // Published at this point of the stream, not any more: its changes pass as the
            // stream has them, as before it left.
            None => {
                m.pass(oid);
                Ok(())
            }
        }
    }

    /// A table new to the publication: ready at once when every row of its life is in the
    /// stream (published by `FOR ALL TABLES` or its schema); otherwise recorded as copying
    /// and backfilled from its start after the tables being copied now.
    fn adopt(&mut self, p: members::Published) -> Result<()> {
        let (Some(m), Confirm::Origin { target, .. }) = (&mut self.members, &mut self.confirm)
        else {
            return Ok(());
        };
        let quiet = self.o.quiet;
        let publication = self.o.publication.as_deref().expect("checked");
        if !p.listed {
            m.set(target, &p, "ready")?;
            if !quiet {
                eprintln!(
                    "weir-cdc: {} joined publication {publication} with every row in the stream (it is published by FOR ALL TABLES or its schema)",
                    p.name
                );
            }
            return Ok(());
        }
        let b = super::backfill::Backfill::start(
            &self.params,
            &p.name,
            publication,
            target,
            self.o.backfill_chunk_rows,
            true,
        )?;
        m.set(target, &p, "copying")?;
        if !quiet {
            eprintln!(
                "weir-cdc: {} joined publication {publication}: it is copied into the stream",
                p.name
            );
        }
        self.backfill
            .get_or_insert_with(|| super::backfill::Backfills::empty(quiet))
            .add(b);
        Ok(())
    }

    /// A change of a table being backfilled, kept until its transaction's keys are placed.
    fn hold(&mut self, lsn: u64, m: Message) -> Result<()> {
        use super::backfill::{Held, owned_row};
        let (action, relation, new, old) = match &m {
            Message::Insert { relation, new } => ('I', *relation, Some(new), None),
            Message::Update { relation, old, new } => {
                ('U', *relation, Some(new), old.as_ref().map(|(_, o)| o))
            }
            Message::Delete { relation, old } => ('D', *relation, None, Some(&old.1)),
            _ => bail!("not a change: {m:?}"),
        };
        let (t, rel) = context(self.txn, &self.relations, relation)?;
        let mut line = Vec::new();
        json::change(&mut line, &action.to_string(), &t, lsn, rel, new, old);
        let held = Held {
            action,
            lsn,
            new: new.map(|r| owned_row(r)),
            old: old.map(|r| owned_row(r)),
            line,
        };
        if let Some(b) = &mut self.backfill {
            b.hold(relation, held);
        }
        Ok(())
    }

    /// The held changes of backfilled tables, placed: written, kept in a chunk, or dropped.
    fn settle(&mut self) -> Result<()> {
        let (Some(b), Some(t)) = (&mut self.backfill, self.txn) else {
            return Ok(());
        };
        b.settle(&t, &mut self.buf)
    }

    /// A backfill watermark: at a chunk's high one, the chunk goes out as a transaction
    /// ending at the watermark's position.
    fn watermark(&mut self, repl: &mut ReplConn, lsn: u64, content: &[u8]) -> Result<()> {
        let Some(b) = &mut self.backfill else {
            return Ok(());
        };
        if let Some(mut lines) = b.watermark(&String::from_utf8_lossy(content), Lsn(lsn))? {
            while lines.next(&mut self.buf)? {
                self.hand(repl, None)?;
            }
            self.last_end = Lsn(lsn);
            self.hand(repl, Some(Lsn(lsn).max(self.handed)))?;
        }
        Ok(())
    }

    /// The relation with its columns' type names (format_type, as wal2json writes them).
    fn relation(&mut self, r: &super::pgoutput::Relation) -> Result<Rel> {
        let mut columns = Vec::with_capacity(r.columns.len());
        for c in &r.columns {
            let key = (c.type_oid, c.type_modifier);
            if !self.type_names.contains_key(&key) {
                let row = self.types.query_one(
                    "SELECT pg_catalog.format_type($1, NULLIF($2, -1))",
                    &[&c.type_oid, &c.type_modifier],
                )?;
                self.type_names.insert(key, row.get(0));
            }
            columns.push(Col {
                name: c.name.to_string(),
                type_name: self.type_names[&key].clone(),
                type_oid: c.type_oid,
                key: c.key,
            });
        }
        Ok(Rel {
            schema: r.namespace.to_string(),
            table: r.name.to_string(),
            columns,
        })
    }

    /// A keepalive: with no transaction open, nothing before the server's end remains to be
    /// written; true when that passes the end position.
    fn keepalive(&mut self, repl: &mut ReplConn, end: u64, reply: bool) -> Result<bool> {
        self.received = self.received.max(end);
        // Idle: no transaction being written and none streamed in progress (the server is
        // still decoding one, and will send more of it).
        let idle = self.txn.is_none() && self.streamed.is_empty();
        if idle && Lsn(end) > self.handed {
            // Nothing before `end` remains to be written: it is written once what was handed
            // before it is.
            self.hand(repl, Some(Lsn(end)))?;
        }
        if idle {
            self.check_point(repl, end)?;
        }
        if idle && self.endpos.is_some_and(|e| end >= e) {
            return Ok(true);
        }
        if reply {
            self.status(repl, false)?;
        } else if idle && self.endpos.is_some() {
            // Short of the end position with nothing to do: ask the server for its position
            // again soon, rather than waiting for its next keepalive (wal_sender_timeout / 2).
            std::thread::sleep(Duration::from_millis(50));
            self.status(repl, true)?;
        }
        Ok(false)
    }

    /// `--verify`: the point message goes out once the stream reaches the check's position
    /// (`lsn`, a commit or a position with nothing before it left to write): every transaction
    /// that commits before it is written, none after.
    fn check_point(&mut self, repl: &mut ReplConn, lsn: u64) -> Result<()> {
        let Some(check) = self
            .check
            .as_mut()
            .filter(|c| !c.point_sent && lsn >= c.at.0)
        else {
            return Ok(());
        };
        let at = check.at;
        let content = check.point();
        json::message(
            &mut self.buf,
            None,
            at.0,
            super::verify::PREFIX,
            content.as_bytes(),
        );
        self.hand(repl, Some(self.handed))
    }

    /// The check's messages that are ready, between transactions, after its point.
    fn check_messages(&mut self, repl: &mut ReplConn, wait: Duration) -> Result<()> {
        if self.txn.is_some() {
            return Ok(());
        }
        let Some(check) = self.check.as_mut().filter(|c| c.point_sent) else {
            return Ok(());
        };
        let at = check.at;
        while let Some(content) = check.next(wait)? {
            json::message(
                &mut self.buf,
                None,
                at.0,
                super::verify::PREFIX,
                content.as_bytes(),
            );
        }
        if check.done() {
            self.check = None;
            if !self.o.quiet {
                eprintln!("weir-cdc: the source's side of the check at {at} is written");
            }
        }
        if !self.buf.is_empty() {
            self.hand(repl, Some(self.handed))?;
        }
        Ok(())
    }

    /// At the end position: the rest of the check is waited for (status updates going on),
    /// so the stream carries all of it. Everything before the end is written, so the point
    /// may go now if it has not.
    fn finish_check(&mut self, repl: &mut ReplConn) -> Result<()> {
        self.check_point(repl, u64::MAX)?;
        while self.check.is_some() {
            self.check_messages(repl, Duration::from_millis(200))?;
            self.tick(repl)?;
        }
        Ok(())
    }

    fn status(&mut self, repl: &mut ReplConn, reply: bool) -> Result<()> {
        let written = self.out.written();
        let flushed = self.confirm.flushed(written, self.last_end);
        self.health.confirmed(flushed);
        let p = Positions {
            written: Lsn(self.received).max(written),
            flushed,
            applied: flushed,
        };
        repl.put_copy_data(&status_update(p, reply))?;
        self.last_status = Instant::now();
        Ok(())
    }
}

/// The open transaction and the relation a change belongs to.
fn context(txn: Option<Txn>, relations: &HashMap<u32, Rel>, relation: u32) -> Result<(Txn, &Rel)> {
    let t = txn.context("a change outside a transaction")?;
    let rel = relations
        .get(&relation)
        .with_context(|| format!("a change of relation {relation}, never described"))?;
    Ok((t, rel))
}
