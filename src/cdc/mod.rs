//! Change data capture: logical replication as a stream (the CDC issues). `weir-cdc`
//! ([`stream`]) reads a slot over the streaming protocol ([`wire`]), decodes `pgoutput`
//! ([`pgoutput`]) and writes JSON lines ([`json`]); the replication connection is
//! [`crate::pg::replication`]'s. [`line`] reads those lines back, for weir-apply ([`apply`]),
//! weir-sink ([`sink`]) and weir-mask.

pub mod apply;
pub mod backfill;
pub mod copy;
pub mod ddl;
pub mod health;
pub mod json;
pub mod line;
pub mod members;
pub mod pgoutput;
pub mod sink;
pub mod spill;
pub mod stream;
pub mod verify;
pub mod wire;
pub mod writer;
