//! The server's lock table: how many relation locks all sessions together can hold. It has
//! `max_locks_per_transaction × (MaxBackends + max_prepared_transactions)` entries (PostgreSQL's
//! lock.c, NLOCKENTS; MaxBackends is max_connections + autovacuum_max_workers + 1 +
//! max_worker_processes + max_wal_senders), and a session that needs one more fails with "out
//! of shared memory". weir-load and weir-extract plan their transactions against it.

use anyhow::{Context, Result};

/// The server's lock table.
#[derive(Debug, Clone, Copy)]
pub struct LockTable {
    pub per_transaction: u64,
    pub slots: u64,
}

impl LockTable {
    pub fn read(c: &mut postgres::Client) -> Result<LockTable> {
        let setting = "pg_catalog.current_setting";
        let row = c
            .query_one(
                &format!(
                    "SELECT {setting}('max_locks_per_transaction')::int8,
                            {setting}('max_connections')::int8 + {setting}('autovacuum_max_workers')::int8 + 1
                            + {setting}('max_worker_processes')::int8 + {setting}('max_wal_senders')::int8
                            + {setting}('max_prepared_transactions')::int8"
                ),
                &[],
            )
            .context("reading the server's lock settings")?;
        let (per, backends): (i64, i64) = (row.get(0), row.get(1));
        Ok(LockTable {
            per_transaction: per as u64,
            slots: (per * backends) as u64,
        })
    }

    /// What one weir job may take at once: half the table, so that the sessions already
    /// running keep room.
    pub fn budget(&self) -> u64 {
        self.slots / 2
    }
}
