//! The initial copy of `weir-cdc --copy` and `--copy-and-stream`: the slot is created with an
//! exported snapshot (CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT: the snapshot in which the
//! slot's first change is the first one not visible), `-j N` connections import it and COPY
//! the publication's tables, and every row becomes an insert line marked `"snapshot":true`,
//! all inside one transaction whose end is the slot's consistent point. Streaming then starts
//! at that point: a change is either in the snapshot or in the stream, never both, never
//! neither. weir-apply applies the copy as one target transaction, so an interrupted copy
//! leaves nothing behind (PostgreSQL docs, "Streaming Replication Protocol",
//! CREATE_REPLICATION_SLOT; the initial table synchronization of logical replication works
//! the same way).

use super::json::{self, Col, Rel, Txn};
use super::pgoutput::Value;
use crate::pg::conn::ConnParams;
use crate::pg::copy_text;
use crate::pg::lsn::Lsn;
use crate::pg::page_ranges;
use crate::pg::replication::ReplConn;
use crate::pg::sql::{pg_error, quote_ident, quote_literal};
use anyhow::{Context, Result, anyhow, bail};
use std::io::BufRead;
use std::sync::Arc;

/// The slot's exported snapshot and its consistent point.
pub struct Snapshot {
    pub name: String,
    pub at: Lsn,
}

/// A buffer of lines is handed on once it holds this much.
const BUFFER: usize = 1 << 20;

/// Creates `slot` (pgoutput) exporting its snapshot; valid until the connection's next command.
/// A temporary slot goes when the connection does.
pub fn create_slot_exporting(
    repl: &mut ReplConn,
    slot: &str,
    temporary: bool,
    failover: bool,
) -> Result<Snapshot> {
    if super::stream::existing_slot(repl, slot)?.is_some() {
        bail!(
            "slot {slot} exists: a copy starts with a new slot (if its copy was interrupted, go on with --stream --backfill-all, or drop it with --drop-slot and copy again; if the copy completed, resume with --stream)"
        );
    }
    let options = super::stream::slot_options(repl, "export", failover)?;
    let rows = repl
        .query(&format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput {options}",
            quote_ident(slot),
            if temporary { " TEMPORARY" } else { "" }
        ))
        .with_context(|| format!("creating slot {slot}"))?;
    let r = rows
        .first()
        .context("CREATE_REPLICATION_SLOT returned nothing")?;
    let field = |i: usize| {
        r.get(i)
            .cloned()
            .flatten()
            .context("CREATE_REPLICATION_SLOT's reply is short")
    };
    Ok(Snapshot {
        at: Lsn::parse(&field(1)?)?,
        name: field(2)?,
    })
}

/// One COPY for a worker: a table, or a page range of one, with the table as the stream
/// names it.
pub struct Item {
    pub rel: Arc<Rel>,
    pub query: String,
}

/// The publication's tables with the columns the stream carries (no generated ones), their
/// types as `format_type` writes them on `c` (search_path '', as the stream has them), cut
/// into work: tables above twice `range` pages in page ranges (see [`page_ranges`]), the
/// first range of every table first, biggest table first, so that every worker stays busy.
pub fn items(
    c: &mut postgres::Client,
    publication: &str,
    range: i64,
) -> Result<(Vec<Item>, usize)> {
    let q = "SELECT schemaname::text, tablename::text, c.oid, c.relkind = 'p', \
                    pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int8 \
             FROM pg_catalog.pg_publication_tables p \
             JOIN pg_catalog.pg_class c \
               ON c.oid = pg_catalog.format('%I.%I', p.schemaname, p.tablename)::regclass \
             WHERE pubname = $1 ORDER BY 1, 2";
    let rows = c.query(q, &[&publication]).map_err(|e| pg_error(e, q))?;
    if rows.is_empty() {
        bail!("publication {publication} has no tables (or does not exist)");
    }
    let server_num = c
        .query_one("SHOW server_version_num", &[])?
        .get::<_, String>(0);
    let server_num: u32 = server_num.parse().context("server_version_num")?;
    // (round, pages, item)
    let mut items: Vec<(usize, i64, Item)> = Vec::new();
    for r in &rows {
        let (schema, table, oid, partitioned, pages): (String, String, u32, bool, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let rel = Arc::new(Rel {
            columns: columns(c, oid)?,
            schema,
            table,
        });
        let names: Vec<String> = rel.columns.iter().map(|c| quote_ident(&c.name)).collect();
        // A table's own rows only: an inheritance child is in the publication on its own.
        // A partitioned table is there when the publication publishes through the root,
        // and its rows are its partitions' (as in PostgreSQL's tablesync.c).
        let from = format!(
            "SELECT {} FROM {}{}.{}",
            names.join(", "),
            if partitioned { "" } else { "ONLY " },
            quote_ident(&rel.schema),
            quote_ident(&rel.table)
        );
        let Some(conds) = page_ranges::split(pages, range, server_num) else {
            let query = format!("COPY ({from}) TO STDOUT");
            items.push((0, pages, Item { rel, query }));
            continue;
        };
        for (round, cond) in conds.into_iter().enumerate() {
            let query = format!("COPY ({from} WHERE {cond}) TO STDOUT");
            items.push((
                round,
                pages,
                Item {
                    rel: rel.clone(),
                    query,
                },
            ));
        }
    }
    items.sort_by_key(|(round, pages, _)| (*round, std::cmp::Reverse(*pages)));
    Ok((items.into_iter().map(|(_, _, i)| i).collect(), rows.len()))
}

pub(super) fn columns(c: &mut postgres::Client, oid: u32) -> Result<Vec<Col>> {
    let q = "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod), atttypid \
             FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 \
               AND NOT attisdropped AND attgenerated = '' ORDER BY attnum";
    Ok(c.query(q, &[&oid])
        .map_err(|e| pg_error(e, q))?
        .iter()
        .map(|a| Col {
            name: a.get(0),
            type_name: a.get(1),
            type_oid: a.get(2),
            key: false,
        })
        .collect())
}

/// Copies `items` in the snapshot on `jobs` connections; `out` receives buffers of insert
/// lines (whole lines, about 1 MiB each) as they fill. Returns the rows copied.
pub fn copy(
    params: &ConnParams,
    snapshot: &Snapshot,
    items: Vec<Item>,
    jobs: usize,
    txn: Txn,
    mut out: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<u64> {
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<Item>();
    for t in items {
        work_tx.send(t).expect("receiver alive");
    }
    drop(work_tx);
    let (buf_tx, buf_rx) = crossbeam_channel::bounded::<Result<(Vec<u8>, u64)>>(jobs * 2);
    let mut rows = 0;
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..jobs.max(1) {
            let (work_rx, buf_tx) = (work_rx.clone(), buf_tx.clone());
            scope.spawn(move || {
                if let Err(e) = worker(params, snapshot, txn, &work_rx, &buf_tx) {
                    let _ = buf_tx.send(Err(e));
                }
            });
        }
        drop(buf_tx);
        let result = buf_rx.iter().try_for_each(|m| {
            let (buf, n) = m?;
            rows += n;
            out(buf)
        });
        if result.is_err() {
            // Stop the workers: nothing more is read.
            drop(buf_rx);
            while work_rx.try_recv().is_ok() {}
        }
        result
    })?;
    Ok(rows)
}

type Sent = crossbeam_channel::Sender<Result<(Vec<u8>, u64)>>;

fn worker(
    params: &ConnParams,
    snapshot: &Snapshot,
    txn: Txn,
    work: &crossbeam_channel::Receiver<Item>,
    out: &Sent,
) -> Result<()> {
    let mut c = params.connect()?;
    c.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(&snapshot.name)
    ))?;
    let (mut buf, mut n) = (Vec::with_capacity(BUFFER + (64 << 10)), 0u64);
    for t in work.iter() {
        let reader = c
            .copy_out(t.query.as_str())
            .map_err(|e| pg_error(e, &t.query))?;
        for line in std::io::BufReader::new(reader).split(b'\n') {
            let line = line.with_context(|| format!("reading {}.{}", t.rel.schema, t.rel.table))?;
            insert_line(&mut buf, &t.rel, &line, txn, snapshot.at)?;
            n += 1;
            if buf.len() >= BUFFER {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(BUFFER + (64 << 10)));
                if out.send(Ok((full, std::mem::take(&mut n)))).is_err() {
                    return Ok(());
                }
            }
        }
    }
    c.batch_execute("COMMIT")?;
    if !buf.is_empty() {
        let _ = out.send(Ok((buf, n)));
    }
    Ok(())
}

/// One COPY text row as an insert line marked as a snapshot row.
fn insert_line(out: &mut Vec<u8>, rel: &Rel, line: &[u8], txn: Txn, at: Lsn) -> Result<()> {
    let fields: Vec<_> = line
        .split(|b| *b == b'\t')
        .map(copy_text::field)
        .collect::<Result<_>>()?;
    if fields.len() != rel.columns.len() {
        return Err(anyhow!(
            "a row of {}.{} with {} fields, {} columns expected",
            rel.schema,
            rel.table,
            fields.len(),
            rel.columns.len()
        ));
    }
    let tuple: Vec<Value> = fields
        .iter()
        .map(|f| f.as_deref().map_or(Value::Null, Value::Text))
        .collect();
    json::snapshot_insert(out, &txn, at.0, rel, &tuple);
    Ok(())
}
