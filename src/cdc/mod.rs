//! Change data capture: logical replication as a stream (the CDC issues). So far the decoder
//! of `pgoutput`, the built-in plugin weir-cdc will stream from; the replication connection
//! is [`crate::pg::replication`]'s.

pub mod pgoutput;
