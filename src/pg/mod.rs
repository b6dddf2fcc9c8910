//! Everything that speaks PostgreSQL's languages: connections resolved the libpq way
//! ([`conn`]), the client tools `pg_dump`, `pg_restore` and `psql` ([`tools`]), SQL quoting
//! and server errors ([`sql`]), psql name patterns ([`pattern`]) and COPY text
//! ([`copy_text`]), page ranges for reading one table on several connections
//! ([`page_ranges`]), and replication connections through libpq ([`replication`]). The jobs in `dump` (and later the physical and CDC halves) build on these.

pub mod conn;
pub mod copy_binary;
pub mod copy_text;
pub mod dump_toc;
pub mod lock_table;
pub mod lsn;
pub mod page_ranges;
pub mod pattern;
#[allow(unsafe_code)]
pub mod replication;
pub mod sql;
pub mod tools;
