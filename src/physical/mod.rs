//! The physical half: WAL archiving to a repository (`weir-wal`), as PostgreSQL's
//! `archive_command` and `restore_command` need it (`wal`, `repo`, `object`), base backups as
//! one stream (`basebackup`, checked against PostgreSQL's `manifest`), and restoring them for
//! point-in-time recovery through the same repository (`restore`).

pub mod basebackup;
pub mod chain;
pub mod delta;
pub mod index;
pub mod inventory;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod object;
pub mod restore;
pub mod source;
pub mod wal;
pub mod walfile;
