//! Every integration test in one binary (one link, one PostgreSQL cluster), each test in its
//! own databases and temporary directories.

mod harness;
mod objstore;

mod apply;
mod cdc;
mod cli;
mod connections;
mod dedup;
mod errors;
mod image;
mod mask;
mod ops;
mod pitr;
mod roundtrip;
mod scale;
mod sink;
mod stages;
mod storage;
mod subset;
mod wal;
