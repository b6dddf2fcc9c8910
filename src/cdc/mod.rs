//! Change data capture: logical replication as a stream (the CDC issues). So far the decoder
//! of `pgoutput`, the built-in plugin weir-cdc will stream from, and the streaming protocol's
//! messages around it ([`wire`]); the replication connection is [`crate::pg::replication`]'s.

pub mod pgoutput;
pub mod wire;
