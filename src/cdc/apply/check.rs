//! weir-apply's side of a check (`weir-cdc --verify`, see [`crate::cdc::verify`]): at the
//! stream's point message the target holds exactly the source transactions that commit
//! before the check's position, so a snapshot exported there is the target at that
//! position. Its tables are read in it on their own connections while applying goes on; the
//! source's chunks arrive in later messages, and at the end message the two are compared.

use crate::cdc::verify::{self, Chunk, Digested, Spec};
use crate::pg::conn::ConnParams;
use crate::pg::lsn::Lsn;
use crate::pg::sql::pg_error;
use crate::plumbing::{ExitCode, coded};
use anyhow::{Context, Result, bail};
use std::sync::Arc;

pub struct Check {
    pub at: Lsn,
    specs: Arc<Vec<Spec>>,
    target: crossbeam_channel::Receiver<Digested>,
    source: Vec<Option<Vec<Chunk>>>,
}

impl Check {
    /// Exports a snapshot of the target as it is now and starts reading `tables` in it.
    pub fn begin(
        params: &ConnParams,
        at: Lsn,
        chunk_rows: u64,
        tables: Vec<Spec>,
        jobs: usize,
    ) -> Result<Check> {
        let mut holder = params.connect()?;
        let q = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SELECT pg_catalog.pg_export_snapshot()";
        let replies = holder.simple_query(q).map_err(|e| pg_error(e, q))?;
        let snapshot = replies
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .context("pg_export_snapshot returned nothing")?;
        let specs = Arc::new(tables);
        let target = verify::start(params, &snapshot, specs.clone(), jobs, chunk_rows)?;
        Ok(Check {
            at,
            source: vec![None; specs.len()],
            specs,
            target,
        })
    }

    /// The source's chunks of table `index`.
    pub fn source(&mut self, index: usize, chunks: Vec<Chunk>) -> Result<()> {
        match self.source.get_mut(index) {
            Some(slot) => *slot = Some(chunks),
            None => bail!("a check's table {index} that its point did not name"),
        }
        Ok(())
    }

    /// Waits for the target's side, then compares: each table that differs is named with
    /// its first differing key range, and the check fails with its own exit code.
    pub fn finish(self, quiet: bool) -> Result<()> {
        let n = self.specs.len();
        let mut target: Vec<Option<Option<Vec<Chunk>>>> = vec![None; n];
        for _ in 0..n {
            let (i, r) = self
                .target
                .recv()
                .context("the check's connections to the target ended early")?;
            target[i] = Some(r?);
        }
        let (mut differ, mut rows) = (0, 0);
        for (i, spec) in self.specs.iter().enumerate() {
            let source = self.source[i]
                .as_deref()
                .with_context(|| format!("the stream lacks the source's {}", spec.name()))?;
            rows += source.iter().map(|c| c.rows).sum::<u64>();
            let target = target[i]
                .as_ref()
                .expect("every table came back")
                .as_deref();
            if let Some(d) = verify::compare(spec, source, target) {
                eprintln!("weir-apply: check at {}: {d}", self.at);
                differ += 1;
            }
        }
        if differ > 0 {
            return Err(coded(
                ExitCode::Differs,
                format!(
                    "the target differs from the source at {} in {differ} of {n} tables",
                    self.at
                ),
            ));
        }
        if !quiet {
            eprintln!(
                "weir-apply: checked at {}: the target equals the source in {n} tables ({rows} rows)",
                self.at
            );
        }
        Ok(())
    }
}
