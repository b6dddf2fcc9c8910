//! How many locks a load holds at once, against what the server's lock table holds, and the
//! transactions chosen from that (issue 30: 5,000 tables in one transaction overflow a default
//! server's lock table, "out of shared memory", where pg_restore, committing each object,
//! succeeds).
//!
//! Every relation a transaction creates, truncates or copies into keeps a lock until it ends:
//! the pre-data transaction one per table, sequence and view, two more per table with a TOAST
//! table (it and its index); each load worker one per table it copied into, two more where the
//! rows were toasted. weir-load plans to take at most half of the server's lock table
//! ([`LockTable`]), so that the sessions already running keep room.

use crate::archive::Manifest;
pub use crate::pg::lock_table::LockTable;
use anyhow::Result;

/// The locks of the two phases that hold many at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need {
    /// The pre-data transaction.
    pub pre_data: u64,
    /// All load workers together, each having copied into every table (chunks of a table go
    /// to whichever worker is free).
    pub data: u64,
}

/// Types whose values are never toasted; a table of these alone has no TOAST table.
const FIXED: [&str; 16] = [
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "boolean",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "time with time zone",
    "uuid",
    "oid",
    "money",
    "interval",
    "\"char\"",
];

/// Locks per table: itself, and its TOAST table and index when a column can be toasted.
pub fn per_table(t: &crate::archive::Table) -> u64 {
    let toast = t.columns.iter().any(|c| {
        let ty = c.underlying_type();
        !FIXED.contains(&ty.split('(').next().unwrap_or(ty).trim())
    });
    if toast { 3 } else { 1 }
}

/// The locks a load of `m` (the tables `wanted` says) needs with `jobs` workers; `views` is the
/// number of views in the schema, which the manifest does not list.
pub fn need(m: &Manifest, wanted: impl Fn(u32) -> bool, jobs: usize, views: u64) -> Need {
    let tables = m.tables.iter().filter(|t| wanted(t.id));
    let pre: u64 = tables.clone().map(per_table).sum();
    let loaded: u64 = tables
        .filter(|t| t.data && t.relkind == "r")
        .map(per_table)
        .sum();
    let others = m.sequences.len() as u64 + 3 * m.matviews.len() as u64 + views;
    Need {
        pre_data: pre + others,
        data: loaded * jobs.max(1) as u64,
    }
}

/// How the load commits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transactions {
    /// The pre-data section in one transaction (else each statement commits, as pg_restore
    /// does by default).
    pub single_pre_data: bool,
    /// The most tables a worker copies into in one transaction; `None`: one transaction each,
    /// committed after the archive verified.
    pub tables_per_worker: Option<usize>,
}

/// The most tables a worker may copy into in one transaction: each counted at its worst (3
/// locks), the budget shared by the workers.
fn tables_that_fit(budget: u64, jobs: usize) -> usize {
    (budget / 3 / jobs.max(1) as u64).max(1) as usize
}

/// The transactions for a load: one each when everything fits; in batches when weir-load owns
/// the database (`owned`: it created it and drops it if the stream turns out bad) or the user
/// gave `--transaction-size`; otherwise an error naming the numbers and the ways out.
pub fn plan(
    need: Need,
    table: LockTable,
    jobs: usize,
    owned: bool,
    given: Option<usize>,
) -> Result<Transactions> {
    let budget = table.budget();
    if given.is_some() {
        return Ok(Transactions {
            single_pre_data: false,
            tables_per_worker: given,
        });
    }
    let (pre_fits, data_fits) = (need.pre_data <= budget, need.data <= budget);
    if owned || (pre_fits && data_fits) {
        return Ok(Transactions {
            single_pre_data: pre_fits,
            tables_per_worker: (!data_fits).then(|| tables_that_fit(budget, jobs)),
        });
    }
    let most = need.pre_data.max(need.data);
    let per = most
        .div_ceil(table.slots / table.per_transaction)
        .max(table.per_transaction)
        * 2;
    Err(crate::plumbing::coded(
        crate::plumbing::ExitCode::Usage,
        format!(
            "loading this archive in one transaction takes about {most} locks and this server's \
             lock table holds {} (max_locks_per_transaction = {}), of which weir-load takes at \
             most half; nothing was changed. Raise max_locks_per_transaction to {per} or more \
             (a restart), restore into a new database with --create (weir-load then commits in \
             batches and drops it if the stream is bad), or pass --transaction-size N to commit \
             N tables at a time (a bad stream then leaves the rows before it committed)",
            table.slots, table.per_transaction
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: LockTable = LockTable {
        per_transaction: 64,
        slots: 64 * 122,
    };

    #[test]
    fn one_transaction_when_it_fits_batches_when_owned_else_refused() {
        let small = Need {
            pre_data: 1000,
            data: 2000,
        };
        let t = plan(small, DEFAULT, 2, false, None).unwrap();
        assert_eq!((t.single_pre_data, t.tables_per_worker), (true, None));
        let big = Need {
            pre_data: 5000,
            data: 10000,
        };
        let t = plan(big, DEFAULT, 2, true, None).unwrap();
        assert!(!t.single_pre_data);
        assert_eq!(t.tables_per_worker, Some(3904 / 3 / 2));
        let e = plan(big, DEFAULT, 2, false, None).unwrap_err().to_string();
        assert!(
            e.contains("about 10000 locks") && e.contains("holds 7808"),
            "{e}"
        );
        assert!(
            e.contains("max_locks_per_transaction to 164 or more"),
            "{e}"
        );
        let t = plan(big, DEFAULT, 2, false, Some(100)).unwrap();
        assert_eq!(t.tables_per_worker, Some(100));
    }
}
