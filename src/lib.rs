//! weir: PostgreSQL backup, restore and anonymization as Unix pipeline stages.
//!
//! Each `src/bin/weir-*.rs` binary is a thin command line over one module here:
//! [`extract`] (`weir-extract`), [`load`] (`weir-load`), [`inspect`] (`weir-inspect`).
//! [`archive`] is the stream format they share, [`conn`] resolves connections the libpq way,
//! [`pgtools`] runs `pg_dump`/`pg_restore`, and [`plumbing`] owns stdin/stdout, exit codes,
//! signals and progress for every binary. [`mask`] is `weir-mask`; [`compress`] and
//! [`encrypt`] are the byte-stream stages; [`storage`] is `weir-put`, `weir-get`, `weir-ls`
//! and `weir-rm`; [`catalog`] is `weir-ls --catalog` and `weir-prune`; [`schedule`] is
//! `weir-schedule`.
#![forbid(unsafe_code)]

pub mod age_stream;
pub mod archive;
pub mod catalog;
pub mod cli;
pub mod compress;
pub mod conn;
pub mod copy_text;
pub mod encrypt;
pub mod extract;
pub mod inspect;
pub mod load;
pub mod mask;
pub mod pattern;
pub mod pgtools;
pub mod plumbing;
pub mod schedule;
pub mod storage;
