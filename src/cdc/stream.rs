//! `weir-cdc`: a logical replication slot's changes as JSON lines ([`super::json`]), over a
//! replication connection (START_REPLICATION with pgoutput, protocol version 1), with slot
//! creation and removal as pg_recvlogical does them.
//!
//! Confirmation, in this first slice: a transaction's end is confirmed to the server (the
//! standby status update's flush position) once its lines were written to the output and
//! flushed. That is "confirm on write": a later stage that crashes before making them durable
//! loses them, so weir-cdc says so when it starts. When no transaction is open, the server's
//! keepalive position is confirmed too, so that an idle slot does not hold WAL forever.

use super::json::{self, Col, Rel, Txn};
use super::pgoutput::{Message, decode};
use super::wire::{FromServer, parse, status_update};
use crate::pg::conn::ConnParams;
use crate::pg::replication::{ReplConn, format_lsn};
use crate::pg::sql::quote_literal;
use crate::plumbing::{ExitCode, Output, coded};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct CdcOptions {
    pub conninfo: Option<String>,
    pub slot: String,
    pub create_slot: bool,
    pub if_not_exists: bool,
    pub drop_slot: bool,
    pub stream: bool,
    pub publication: Option<String>,
    pub startpos: Option<u64>,
    pub endpos: Option<u64>,
    pub status_interval: Duration,
    pub output: Option<String>,
    pub quiet: bool,
}

pub fn run(o: &CdcOptions) -> Result<()> {
    if !(o.create_slot || o.drop_slot || o.stream) {
        return Err(coded(
            ExitCode::Usage,
            "nothing to do: give --create-slot, --stream or --drop-slot",
        ));
    }
    if o.stream && o.publication.is_none() {
        return Err(coded(ExitCode::Usage, "--stream needs --publication NAME"));
    }
    let params = ConnParams::resolve(o.conninfo.as_deref(), "weir-cdc")?;
    let mut repl = ReplConn::connect_logical(&params)?;
    if o.create_slot {
        create_slot(&mut repl, &o.slot, o.if_not_exists)?;
    }
    if o.stream {
        let mut types = params.connect()?;
        // Type names as the walsender writes them (wal2json too): qualified unless in
        // pg_catalog.
        types.batch_execute("SELECT pg_catalog.set_config('search_path', '', false)")?;
        Streamer::new(o, types)?.run(&mut repl)?;
    }
    if o.drop_slot {
        repl.query(&format!("DROP_REPLICATION_SLOT {}", ident(&o.slot)))
            .with_context(|| format!("dropping slot {}", o.slot))?;
    }
    Ok(())
}

/// A slot name as the replication grammar takes it.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn create_slot(repl: &mut ReplConn, slot: &str, if_not_exists: bool) -> Result<()> {
    let exists = repl.query(&format!(
        "SELECT plugin FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
        quote_literal(slot)
    ))?;
    match exists.first() {
        Some(row) if if_not_exists && row[0].as_deref() == Some("pgoutput") => return Ok(()),
        Some(row) if if_not_exists => bail!(
            "slot {slot} exists with plugin {}, not pgoutput",
            row[0].as_deref().unwrap_or("none (a physical slot)")
        ),
        Some(_) => bail!("slot {slot} exists already (--if-not-exists takes it as it is)"),
        None => {}
    }
    repl.query(&format!(
        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
        ident(slot)
    ))
    .with_context(|| format!("creating slot {slot}"))?;
    Ok(())
}

/// The streaming loop's state.
struct Streamer<'o> {
    o: &'o CdcOptions,
    out: Output,
    /// format_type, by (type, modifier), from a normal connection.
    types: postgres::Client,
    type_names: HashMap<(u32, i32), String>,
    relations: HashMap<u32, Rel>,
    /// The open transaction, if any.
    txn: Option<Txn>,
    /// Received up to here, and confirmed up to here.
    received: u64,
    confirmed: u64,
    last_status: Instant,
    buf: Vec<u8>,
}

impl<'o> Streamer<'o> {
    fn new(o: &'o CdcOptions, types: postgres::Client) -> Result<Streamer<'o>> {
        if !o.quiet {
            eprintln!(
                "weir-cdc: confirming each transaction once it is written: a later stage that fails before making it durable loses it"
            );
        }
        Ok(Streamer {
            o,
            out: Output::open(o.output.as_deref(), false)?,
            types,
            type_names: HashMap::new(),
            relations: HashMap::new(),
            txn: None,
            received: 0,
            confirmed: 0,
            last_status: Instant::now(),
            buf: Vec::with_capacity(1 << 16),
        })
    }

    fn run(mut self, repl: &mut ReplConn) -> Result<()> {
        let start = self.o.startpos.map_or("0/0".to_string(), format_lsn);
        let publication = self.o.publication.as_deref().expect("checked");
        // pg_logical_emit_message's messages come only when asked for (PostgreSQL 14 on).
        let messages = match repl.server_version() >= 140000 {
            true => ", messages 'true'",
            false => "",
        };
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '1', publication_names {}{messages})",
            ident(&self.o.slot),
            quote_literal(&ident(publication))
        );
        repl.send(&sql)?;
        match repl
            .next_result()
            .with_context(|| format!("starting slot {}", self.o.slot))?
        {
            Some(crate::pg::replication::Reply::CopyBoth) => {}
            _ => bail!("the server did not start streaming slot {}", self.o.slot),
        }
        while let Some(data) = repl.copy_data()? {
            let done = match parse(&data)? {
                FromServer::XLogData { start, data, .. } => self.xlog(start, data)?,
                FromServer::Keepalive { end, reply, .. } => self.keepalive(repl, end, reply)?,
            };
            if self.last_status.elapsed() >= self.o.status_interval {
                self.status(repl, false)?;
            }
            if done {
                self.status(repl, false)?;
                return self.out.finish().context("writing the output");
            }
        }
        bail!("the server ended the stream of slot {}", self.o.slot)
    }

    /// Past the end position: stop before anything beyond it is written.
    fn past_end(&self, lsn: u64) -> bool {
        self.o.endpos.is_some_and(|e| lsn > e)
    }

    /// One pgoutput message; true when the end position is reached.
    fn xlog(&mut self, lsn: u64, data: &[u8]) -> Result<bool> {
        self.received = self.received.max(lsn);
        match decode(data)? {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                if self.past_end(final_lsn) {
                    return Ok(true);
                }
                let t = Txn { xid, commit_time };
                json::begin(&mut self.buf, &t, final_lsn);
                self.txn = Some(t);
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                let t = self.txn.take().context("a commit outside a transaction")?;
                json::commit(&mut self.buf, &t, commit_lsn, end_lsn);
                self.flush()?;
                self.confirmed = self.confirmed.max(end_lsn);
                return Ok(self.o.endpos.is_some_and(|e| end_lsn > e));
            }
            Message::Relation(r) => {
                let rel = self.relation(&r)?;
                self.relations.insert(r.id, rel);
            }
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
            Message::Truncate { relations, .. } => {
                for id in relations {
                    let (t, rel) = context(self.txn, &self.relations, id)?;
                    json::truncate(&mut self.buf, &t, lsn, rel);
                }
            }
            Message::Message {
                transactional,
                prefix,
                content,
                ..
            } => {
                let t = self.txn.filter(|_| transactional);
                json::message(&mut self.buf, t.as_ref(), lsn, prefix, content);
                if !transactional {
                    self.flush()?;
                }
            }
            Message::Origin { .. } | Message::Type { .. } => {}
        }
        if self.buf.len() >= 1 << 20 {
            self.out
                .write_all(&self.buf)
                .context("writing the output")?;
            self.buf.clear();
        }
        Ok(false)
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

    /// Writes what is buffered and flushes the output.
    fn flush(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .context("writing the output")?;
        self.buf.clear();
        self.out.flush().context("writing the output")
    }

    /// A keepalive: with no transaction open, everything before the server's end is written,
    /// so it may be confirmed; true when that passes the end position.
    fn keepalive(&mut self, repl: &mut ReplConn, end: u64, reply: bool) -> Result<bool> {
        self.received = self.received.max(end);
        if self.txn.is_none() {
            self.confirmed = self.confirmed.max(end);
        }
        let idle = self.txn.is_none();
        if idle && self.o.endpos.is_some_and(|e| end >= e) {
            return Ok(true);
        }
        if reply {
            self.status(repl, false)?;
        } else if idle && self.o.endpos.is_some() {
            // Short of the end position with nothing to do: ask the server for its position
            // again soon, rather than waiting for its next keepalive (wal_sender_timeout / 2).
            std::thread::sleep(Duration::from_millis(50));
            self.status(repl, true)?;
        }
        Ok(false)
    }

    fn status(&mut self, repl: &mut ReplConn, reply: bool) -> Result<()> {
        let (w, f) = (self.received.max(self.confirmed), self.confirmed);
        repl.put_copy_data(&status_update(w, f, f, reply))?;
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
