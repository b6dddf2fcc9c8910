//! `weir-cdc --verify` with weir-apply: is the target equal to its source at one position?
//!
//! weir-cdc creates a temporary slot exporting its snapshot: the snapshot holds exactly the
//! transactions whose commit record starts before the slot's consistent point C (the rule
//! by which that slot would decode the rest; PostgreSQL's snapbuild.c). It reads the
//! publication's tables in that snapshot, and in its stream it writes a `point` message
//! after the last transaction that commits before C and ahead of the first at or after it.
//! weir-apply, reaching the point, has applied exactly those transactions: it exports a
//! snapshot of the target there and reads the same tables in it while it goes on applying.
//! Neither side holds a lock but ACCESS SHARE, so both run on live databases.
//!
//! Each table is read ordered by its key (the primary key, else the replica identity index)
//! in chunks of `chunk_rows` rows; a chunk is its first key, its row count and a digest of its
//! rows as COPY text under fixed output settings. weir-cdc sends its chunks in `table`
//! messages as they are ready and an `end` message after the last; weir-apply compares and
//! names, for each table that differs, the first key range where it does. A table without a
//! key is one order-free chunk: the sum of its rows' digests.
//!
//! All three travel as non-transactional messages with the prefix [`PREFIX`] (docs/FORMAT.md,
//! 13), so stages that pass messages on pass these on too.

use crate::pg::conn::ConnParams;
use crate::pg::copy_text;
use crate::pg::lsn::Lsn;
use crate::pg::replication::ReplConn;
use crate::pg::sql::{pg_error, quote_ident, quote_literal};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::BufRead;
use std::sync::Arc;

/// The prefix of the stream's verify messages.
pub const PREFIX: &str = "weir.verify";

/// Rows in a chunk unless asked otherwise.
pub const CHUNK_ROWS: u64 = 10_000;

/// A table as both sides read it: the columns the stream carries, and the key it is ordered by
/// (empty: none).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Spec {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub key: Vec<String>,
}

impl Spec {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// A run of rows in key order: the key of its first row, how many, and their digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Chunk {
    pub first: Vec<Option<String>>,
    pub rows: u64,
    pub digest: String,
}

/// One verify message's content.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "verify", rename_all = "lowercase")]
pub enum Notice {
    /// Everything before this line commits before `at`, nothing after it does.
    Point {
        at: String,
        chunk_rows: u64,
        tables: Vec<Spec>,
    },
    /// The source's chunks of `tables[index]`.
    Table {
        at: String,
        index: usize,
        chunks: Vec<Chunk>,
    },
    /// Every table was sent.
    End { at: String, tables: usize },
}

impl Notice {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a notice serializes")
    }

    pub fn parse(content: &str) -> Result<Notice> {
        serde_json::from_str(content).context("a weir.verify message that does not parse")
    }
}

/// Text output that is the same whatever the server's or role's defaults (COPY writes values
/// as their output functions do under these settings).
const SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; \
     SET extra_float_digits = 3; SET bytea_output = hex; SET TimeZone = 'UTC'; \
     SET statement_timeout = 0";

/// A connection reading in `snapshot` (exported by another session, which must still be
/// open and idle until this returns).
pub fn reader(params: &ConnParams, snapshot: &str) -> Result<postgres::Client> {
    let mut c = params.connect()?;
    let q = format!(
        "{SETTINGS}; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot)
    );
    c.batch_execute(&q).map_err(|e| pg_error(e, &q))?;
    Ok(c)
}

/// The publication's tables, their columns as the stream carries them, and their keys.
pub fn tables(c: &mut postgres::Client, publication: &str) -> Result<Vec<Spec>> {
    let q = "SELECT schemaname::text, tablename::text, \
                    pg_catalog.format('%I.%I', schemaname, tablename)::regclass::oid \
             FROM pg_catalog.pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2";
    let rows = c.query(q, &[&publication]).map_err(|e| pg_error(e, q))?;
    if rows.is_empty() {
        bail!("publication {publication} has no tables (or does not exist)");
    }
    let mut specs = Vec::with_capacity(rows.len());
    for r in rows {
        let oid: u32 = r.get(2);
        let columns: Vec<String> = super::copy::columns(c, oid)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let mut key = key(c, oid)?;
        if !key.iter().all(|k| columns.contains(k)) {
            key.clear();
        }
        specs.push(Spec {
            schema: r.get(0),
            table: r.get(1),
            columns,
            key,
        });
    }
    Ok(specs)
}

/// The primary key's columns, else the replica identity index's, in index order.
pub(super) fn key(c: &mut postgres::Client, oid: u32) -> Result<Vec<String>> {
    let q = "SELECT a.attname::text \
             FROM (SELECT indrelid, indkey FROM pg_catalog.pg_index \
                   WHERE indrelid = $1 AND (indisprimary OR indisreplident) \
                   ORDER BY indisprimary DESC LIMIT 1) i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             ORDER BY k.n";
    let rows = c.query(q, &[&oid]).map_err(|e| pg_error(e, q))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The chunks of `spec` as this connection's snapshot has it; `None` when the table is
/// missing.
pub fn digest(
    c: &mut postgres::Client,
    spec: &Spec,
    chunk_rows: u64,
) -> Result<Option<Vec<Chunk>>> {
    let rel = format!("{}.{}", quote_ident(&spec.schema), quote_ident(&spec.table));
    let q = "SELECT c.relkind = 'p' FROM pg_catalog.pg_class c \
             WHERE c.oid = pg_catalog.to_regclass($1)";
    let Some(row) = c.query_opt(q, &[&rel]).map_err(|e| pg_error(e, q))? else {
        return Ok(None);
    };
    // A table's own rows; a partitioned one's are its partitions' (as copy.rs reads them).
    let only = if row.get(0) { "" } else { "ONLY " };
    let columns: Vec<String> = spec.columns.iter().map(|c| quote_ident(c)).collect();
    let order = match spec.key.is_empty() {
        true => String::new(),
        false => {
            let key: Vec<String> = spec.key.iter().map(|c| quote_ident(c)).collect();
            format!(" ORDER BY {}", key.join(", "))
        }
    };
    let q = format!(
        "COPY (SELECT {} FROM {only}{rel}{order}) TO STDOUT",
        columns.join(", ")
    );
    let reader = c.copy_out(q.as_str()).map_err(|e| pg_error(e, &q))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let mut chunker = Chunker::new(spec, chunk_rows)?;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", spec.name()))?;
        if n == 0 {
            break;
        }
        chunker.row(&line)?;
    }
    Ok(Some(chunker.finish()))
}

/// Cuts rows into chunks as they come.
struct Chunker {
    /// Where the key's fields are in a row.
    key_at: Vec<usize>,
    chunk_rows: u64,
    chunks: Vec<Chunk>,
    open: Option<(Sha256, Vec<Option<String>>, u64)>,
    /// Without a key: the rows' digests summed, in any order.
    sum: u128,
    rows: u64,
}

impl Chunker {
    fn new(spec: &Spec, chunk_rows: u64) -> Result<Chunker> {
        let key_at = spec
            .key
            .iter()
            .map(|k| spec.columns.iter().position(|c| c == k))
            .collect::<Option<Vec<_>>>()
            .context("a key column the stream does not carry")?;
        Ok(Chunker {
            key_at,
            chunk_rows: chunk_rows.max(1),
            chunks: Vec::new(),
            open: None,
            sum: 0,
            rows: 0,
        })
    }

    /// One COPY text line, with its newline.
    fn row(&mut self, line: &[u8]) -> Result<()> {
        self.rows += 1;
        if self.key_at.is_empty() {
            let d = Sha256::digest(line);
            let bytes: [u8; 16] = d[..16].try_into().expect("16 bytes");
            self.sum = self.sum.wrapping_add(u128::from_le_bytes(bytes));
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some((Sha256::new(), first_key(line, &self.key_at)?, 0));
        }
        let (h, _, n) = self.open.as_mut().expect("opened");
        h.update(line);
        *n += 1;
        if *n == self.chunk_rows {
            self.close();
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some((h, first, rows)) = self.open.take() {
            let digest = hex::encode(&h.finalize()[..16]);
            self.chunks.push(Chunk {
                first,
                rows,
                digest,
            });
        }
    }

    fn finish(mut self) -> Vec<Chunk> {
        if self.key_at.is_empty() {
            return vec![Chunk {
                first: Vec::new(),
                rows: self.rows,
                digest: format!("{:032x}", self.sum),
            }];
        }
        self.close();
        self.chunks
    }
}

/// The key's values in a COPY text line.
fn first_key(line: &[u8], key_at: &[usize]) -> Result<Vec<Option<String>>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
    key_at
        .iter()
        .map(|&i| {
            let f = fields.get(i).context("a row shorter than its columns")?;
            let v = copy_text::field(f)?;
            Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
        })
        .collect()
}

/// What the digest workers send: a table's index and its chunks (`None`: missing).
pub type Digested = (usize, Result<Option<Vec<Chunk>>>);

/// Reads `specs` in `snapshot` on `jobs` connections; returns once every connection has
/// imported the snapshot (its exporter may go then), the results coming on the receiver as
/// each table is done.
pub fn start(
    params: &ConnParams,
    snapshot: &str,
    specs: Arc<Vec<Spec>>,
    jobs: usize,
    chunk_rows: u64,
) -> Result<crossbeam_channel::Receiver<Digested>> {
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<usize>();
    (0..specs.len()).for_each(|i| work_tx.send(i).expect("receiver alive"));
    drop(work_tx);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Digested>();
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Result<()>>();
    let jobs = jobs.clamp(1, specs.len().max(1));
    for _ in 0..jobs {
        let (params, snapshot, specs) = (params.clone(), snapshot.to_string(), specs.clone());
        let (work_rx, done_tx, ready_tx) = (work_rx.clone(), done_tx.clone(), ready_tx.clone());
        std::thread::spawn(move || {
            let mut c = match reader(&params, &snapshot) {
                Ok(c) => c,
                Err(e) => return ready_tx.send(Err(e)),
            };
            ready_tx.send(Ok(()))?;
            for i in work_rx.iter() {
                let result = digest(&mut c, &specs[i], chunk_rows)
                    .with_context(|| format!("reading {} for the check", specs[i].name()));
                if done_tx.send((i, result)).is_err() {
                    break;
                }
            }
            Ok(())
        });
    }
    for _ in 0..jobs {
        ready_rx.recv().context("a check connection ended")??;
    }
    Ok(done_rx)
}

/// weir-cdc's side of a check: the point, and the source's chunks as they are read.
pub struct SourceCheck {
    pub at: Lsn,
    chunk_rows: u64,
    specs: Arc<Vec<Spec>>,
    results: crossbeam_channel::Receiver<Digested>,
    /// The point message is written.
    pub point_sent: bool,
    /// Tables whose chunks are written.
    sent: usize,
}

impl SourceCheck {
    /// Takes the snapshot (a temporary slot's, its consistent point the check's position) and
    /// starts reading the publication's tables in it on `jobs` connections.
    pub fn begin(
        params: &ConnParams,
        publication: &str,
        jobs: usize,
        chunk_rows: u64,
    ) -> Result<SourceCheck> {
        let mut repl = ReplConn::connect_logical(params)?;
        let slot = format!("weir_verify_{}", std::process::id());
        let snap = super::copy::create_slot_exporting(&mut repl, &slot, true, false)?;
        let mut c = reader(params, &snap.name)?;
        let specs = Arc::new(tables(&mut c, publication)?);
        let results = start(params, &snap.name, specs.clone(), jobs, chunk_rows)?;
        // Every reader holds the snapshot now: the slot (and the WAL it keeps) can go.
        drop((c, repl));
        Ok(SourceCheck {
            at: snap.at,
            chunk_rows,
            specs,
            results,
            point_sent: false,
            sent: 0,
        })
    }

    /// The point message's content.
    pub fn point(&mut self) -> String {
        self.point_sent = true;
        Notice::Point {
            at: self.at.to_string(),
            chunk_rows: self.chunk_rows,
            tables: self.specs.to_vec(),
        }
        .to_json()
    }

    /// The next message that is ready (waiting up to `wait` for one), the end message after
    /// the last table; `None` once that was given, or when nothing is ready yet.
    pub fn next(&mut self, wait: std::time::Duration) -> Result<Option<String>> {
        if self.sent == self.specs.len() {
            self.sent += 1;
            let end = Notice::End {
                at: self.at.to_string(),
                tables: self.specs.len(),
            };
            return Ok(Some(end.to_json()));
        }
        if self.sent > self.specs.len() {
            return Ok(None);
        }
        let (index, chunks) = match self.results.recv_timeout(wait) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Ok(None),
            Err(_) => bail!("the check's connections ended early"),
        };
        let chunks = chunks?
            .with_context(|| format!("{} went away during the check", self.specs[index].name()))?;
        self.sent += 1;
        let at = self.at.to_string();
        Ok(Some(Notice::Table { at, index, chunks }.to_json()))
    }

    /// Every message was given.
    pub fn done(&self) -> bool {
        self.sent > self.specs.len()
    }
}

/// How `target`'s chunks of `spec` differ from `source`'s, said in a line; `None`: equal.
pub fn compare(spec: &Spec, source: &[Chunk], target: Option<&[Chunk]>) -> Option<String> {
    let name = spec.name();
    let Some(target) = target else {
        return Some(format!("{name} is missing on the target"));
    };
    let rows = |c: &[Chunk]| c.iter().map(|c| c.rows).sum::<u64>();
    let totals = format!("source {} rows, target {}", rows(source), rows(target));
    let i = (0..source.len().max(target.len())).find(|&i| source.get(i) != target.get(i))?;
    if spec.key.is_empty() {
        return Some(format!(
            "{name} differs (no key, so compared whole: {totals})"
        ));
    }
    let key = format!("({})", spec.key.join(", "));
    let (s, t) = (source.get(i), target.get(i));
    let from = match (s, t) {
        (Some(s), Some(t)) if s.first != t.first => {
            format!(
                "from {key}=({}) (the target's from ({}))",
                values(&s.first),
                values(&t.first)
            )
        }
        (Some(c), _) | (None, Some(c)) => format!("from {key}=({})", values(&c.first)),
        (None, None) => unreachable!("one side has chunk {i}"),
    };
    let to = match source.get(i + 1).or(target.get(i + 1)) {
        Some(next) => format!(" up to ({})", values(&next.first)),
        None => " to the end".into(),
    };
    let counts = |c: Option<&Chunk>| c.map_or(0, |c| c.rows);
    Some(format!(
        "{name} differs in the rows {from}{to}: source {} rows there, target {} ({totals} in all)",
        counts(s),
        counts(t)
    ))
}

fn values(v: &[Option<String>]) -> String {
    let v: Vec<&str> = v.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &[&str]) -> Spec {
        Spec {
            schema: "public".into(),
            table: "t".into(),
            columns: vec!["id".into(), "v".into()],
            key: key.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn chunks(rows: &[&str], n: u64, key: &[&str]) -> Vec<Chunk> {
        let mut c = Chunker::new(&spec(key), n).unwrap();
        for r in rows {
            c.row(format!("{r}\n").as_bytes()).unwrap();
        }
        c.finish()
    }

    #[test]
    fn the_first_differing_chunk_is_named_by_its_keys() {
        let a = chunks(&["1\ta", "2\tb", "3\tc", "4\td", "5\te"], 2, &["id"]);
        assert_eq!(a.len(), 3);
        assert_eq!(a[1].first, vec![Some("3".to_string())]);
        assert_eq!(compare(&spec(&["id"]), &a, Some(&a)), None);
        let b = chunks(&["1\ta", "2\tb", "3\tc", "4\tX", "5\te"], 2, &["id"]);
        let said = compare(&spec(&["id"]), &a, Some(&b)).unwrap();
        assert!(said.contains("from (id)=(3) up to (5)"), "{said}");
        let c = chunks(&["1\ta", "2\tb", "3\tc", "4\td"], 2, &["id"]);
        let said = compare(&spec(&["id"]), &a, Some(&c)).unwrap();
        assert!(
            said.contains("from (id)=(5) to the end: source 1 rows there, target 0"),
            "{said}"
        );
        assert!(
            compare(&spec(&["id"]), &a, None)
                .unwrap()
                .contains("missing")
        );
    }

    #[test]
    fn a_table_without_a_key_is_compared_whole_in_any_order() {
        let a = chunks(&["1\ta", "2\tb", "2\tb"], 2, &[]);
        let b = chunks(&["2\tb", "1\ta", "2\tb"], 2, &[]);
        assert_eq!(a, b);
        let c = chunks(&["2\tb", "1\ta", "1\ta"], 2, &[]);
        let said = compare(&spec(&[]), &a, Some(&c)).unwrap();
        assert!(said.contains("no key"), "{said}");
    }

    #[test]
    fn escaped_key_values_are_read_as_text() {
        let key = first_key(b"a\\tb\tz\n", &[0]).unwrap();
        assert_eq!(key, vec![Some("a\tb".to_string())]);
        assert_eq!(first_key(b"\\N\tz\n", &[0]).unwrap(), vec![None]);
    }
}
