//! weir: PostgreSQL backup, restore and anonymization as Unix pipeline stages.
//!
//! Each `src/bin/weir-*.rs` binary is a thin command line (defined in [`cli`]) over one module
//! here. The folders are the architecture, from the bottom up:
//! - [`plumbing`], stdin/stdout, exit codes, signals and progress, for every binary;
//! - [`pg`], what speaks PostgreSQL: libpq-style connections, `pg_dump`/`pg_restore`/`psql`,
//!   SQL quoting and errors, name patterns, COPY text;
//! - [`archive`], the weir archive format, written and read with verification;
//! - [`dump`], the logical-dump jobs, `weir-extract`, `weir-load`, `weir-inspect`;
//! - [`mask`], `weir-mask`, anonymization inside the archive stream;
//! - [`stream`], the byte-stream stages, `weir-compress` and `weir-encrypt`;
//! - [`storage`], `weir-put`, `weir-get`, `weir-ls`, `weir-rm` over S3 or a directory;
//! - [`catalog`], catalog entries, `weir-ls --catalog`, `weir-prune`;
//! - [`physical`], `weir-wal`, `weir-basebackup`, `weir-restore-physical`;
//! - [`cdc`], change data capture: the `pgoutput` decoder so far;
//! - [`schedule`], `weir-schedule`.
//!
//! No unsafe code, but in one module: [`pg::replication`], the libpq calls behind replication
//! connections, each with the invariant that makes it sound.
#![deny(unsafe_code)]

pub mod archive;
pub mod catalog;
pub mod cdc;
pub mod cli;
pub mod dedup;
pub mod dump;
pub mod mask;
pub mod pg;
pub mod physical;
pub mod plumbing;
pub mod schedule;
pub mod storage;
pub mod stream;
