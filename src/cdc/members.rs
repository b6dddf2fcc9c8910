//! Which of the publication's tables the target holds whole, kept on the target beside the
//! replication origin it describes, so that a table added to the publication while weir-cdc
//! runs (or while it is stopped) is copied into the stream rather than joining it half-way.
//!
//! PostgreSQL's own subscriptions keep the same fact per table in `pg_subscription_rel` on
//! the subscriber (its `srsubstate`: being copied, or ready), for the same reason: only the
//! side that holds the rows can say, after a crash, whether a copy finished. Here it is the
//! table `weir_cdc.tables`, one row per (origin, source table):
//! - `copying`: a backfill ([`super::backfill`]) is under way; after a crash it goes on after
//!   the greatest key the target holds;
//! - `ready`: the target holds the table whole up to its origin's position; its changes pass.
//!
//! A table becomes `copying` before any of its changes is dropped, and `ready` only once the
//! origin shows the transaction of its last chunk durable. A published table with no row is
//! new: one listed by name (`ALTER PUBLICATION ... ADD TABLE`) may have had rows before it was
//! added, so it is backfilled; one published by `FOR ALL TABLES` (or a schema) has had every
//! row of its life in the stream, so it is ready at once. The first run for an origin takes
//! every table published then as ready, as weir-cdc did before this state existed.

use crate::pg::lsn::Lsn;
use crate::pg::sql::pg_error;
use anyhow::{Context, Result};
use std::collections::HashSet;

const SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS weir_cdc; \
     CREATE TABLE IF NOT EXISTS weir_cdc.tables ( \
         origin text NOT NULL, \
         relid oid NOT NULL, \
         name text NOT NULL, \
         state text NOT NULL CHECK (state IN ('copying', 'ready')), \
         since timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (origin, relid))";

/// A table of the publication, as the source's catalog has it now.
#[derive(Clone, Debug)]
pub struct Published {
    pub oid: u32,
    /// `schema.table`, quoted where it needs to be.
    pub name: String,
    /// Listed by name (or through a partitioned ancestor) rather than by `FOR ALL TABLES` or a
    /// schema: it may have held rows before it was published.
    pub listed: bool,
}

/// The publication's tables now.
pub fn published(source: &mut postgres::Client, publication: &str) -> Result<Vec<Published>> {
    let q = "SELECT c.oid, pg_catalog.format('%I.%I', t.schemaname, t.tablename), \
                    EXISTS (SELECT FROM pg_catalog.pg_publication_rel r \
                            WHERE r.prpubid = p.oid AND r.prrelid IN \
                              (SELECT c.oid UNION ALL \
                               SELECT relid FROM pg_catalog.pg_partition_ancestors(c.oid))) \
             FROM pg_catalog.pg_publication p \
             JOIN pg_catalog.pg_publication_tables t ON t.pubname = p.pubname \
             JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname \
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename \
             WHERE p.pubname = $1 ORDER BY 2";
    let rows = source
        .query(q, &[&publication])
        .map_err(|e| pg_error(e, q))
        .context("listing the publication's tables")?;
    Ok(rows
        .iter()
        .map(|r| Published {
            oid: r.get(0),
            name: r.get(1),
            listed: r.get(2),
        })
        .collect())
}

/// The state of one origin's tables, and the completed copies waiting to be durable.
pub struct Members {
    origin: String,
    /// Every table weir-cdc has placed: ready, being copied, or waiting to be ready.
    known: HashSet<u32>,
    /// Tables copying when this run started: their backfill goes on.
    pub copying: Vec<String>,
    /// Copies written out, ready once the origin passes their position.
    pending: Vec<(u32, String, Lsn)>,
}

impl Members {
    /// Reads (creating it when missing) the state of `origin`'s tables on `target`. The first
    /// run for an origin takes every table published now as ready, unless `copied` (a copy
    /// of them all is being written, and makes them ready once durable).
    pub fn open(
        target: &mut postgres::Client,
        origin: &str,
        now: &[Published],
        copied: bool,
    ) -> Result<Members> {
        target
            .batch_execute(SCHEMA)
            .context("creating weir_cdc.tables on the --confirm-from target")?;
        let q = "SELECT relid, state FROM weir_cdc.tables WHERE origin = $1";
        let rows = target.query(q, &[&origin]).map_err(|e| pg_error(e, q))?;
        let mut m = Members {
            origin: origin.to_string(),
            known: HashSet::new(),
            copying: Vec::new(),
            pending: Vec::new(),
        };
        let mut copying = HashSet::new();
        for r in &rows {
            m.known.insert(r.get(0));
            if r.get::<_, String>(1) == "copying" {
                copying.insert(r.get::<_, u32>(0));
            }
        }
        if rows.is_empty() && !copied {
            for p in now {
                m.set(target, p, "ready")?;
            }
        }
        // A table that left the publication is forgotten: added back, it is new again.
        for oid in m.changes(now).1 {
            m.forget(target, oid)?;
        }
        // By their names now (a table may have been renamed since).
        m.copying = now
            .iter()
            .filter(|p| copying.contains(&p.oid))
            .map(|p| p.name.clone())
            .collect();
        m.copying.sort();
        Ok(m)
    }

    /// Whether weir-cdc has placed this table.
    pub fn knows(&self, oid: u32) -> bool {
        self.known.contains(&oid)
    }

    /// Records `p` in `state`, committed on the target before the caller goes on.
    pub fn set(&mut self, target: &mut postgres::Client, p: &Published, state: &str) -> Result<()> {
        let q = "INSERT INTO weir_cdc.tables (origin, relid, name, state) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (origin, relid) DO UPDATE \
                 SET name = excluded.name, state = excluded.state, since = now()";
        target
            .execute(q, &[&self.origin, &p.oid, &p.name, &state])
            .map_err(|e| pg_error(e, q))
            .with_context(|| format!("recording {} as {state} in weir_cdc.tables", p.name))?;
        self.known.insert(p.oid);
        Ok(())
    }

    /// A table described by the stream that is not published now (it left the publication
    /// after that point of the stream): its changes pass, without a record.
    pub fn pass(&mut self, oid: u32) {
        self.known.insert(oid);
    }

    /// A table left the publication.
    pub fn forget(&mut self, target: &mut postgres::Client, oid: u32) -> Result<()> {
        let q = "DELETE FROM weir_cdc.tables WHERE origin = $1 AND relid = $2";
        target
            .execute(q, &[&self.origin, &oid])
            .map_err(|e| pg_error(e, q))?;
        self.known.remove(&oid);
        Ok(())
    }

    /// A table's copy went out in full, its last part ending at `at`.
    pub fn copied(&mut self, oid: u32, name: String, at: Lsn) {
        self.known.insert(oid);
        self.pending.push((oid, name, at));
    }

    /// Copies the target now holds durably (its origin at `durable`) become ready; their
    /// names are returned.
    pub fn settle(&mut self, target: &mut postgres::Client, durable: Lsn) -> Result<Vec<String>> {
        let (done, waiting) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, _, at)| *at <= durable);
        self.pending = waiting;
        let mut names = Vec::new();
        for (oid, name, _) in done {
            let p = Published {
                oid,
                name,
                listed: true,
            };
            self.set(target, &p, "ready")?;
            names.push(p.name);
        }
        Ok(names)
    }

    /// Tables of the publication weir-cdc has not placed, and placed tables no longer in it.
    pub fn changes(&self, now: &[Published]) -> (Vec<Published>, Vec<u32>) {
        let added = now.iter().filter(|p| !self.knows(p.oid)).cloned().collect();
        let published: HashSet<u32> = now.iter().map(|p| p.oid).collect();
        let gone = self
            .known
            .iter()
            .filter(|o| !published.contains(o))
            .copied()
            .collect();
        (added, gone)
    }
}
