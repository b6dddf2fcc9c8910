//! The physical half: WAL archiving to a repository (`weir-wal`), as PostgreSQL's
//! `archive_command` and `restore_command` need it. Base backups and point-in-time recovery
//! build on the same repository.

pub mod inventory;
pub mod metrics;
pub mod object;
pub mod repo;
pub mod wal;
pub mod walfile;
