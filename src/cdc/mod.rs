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

/// `WEIR_CDC_TRACE=FILE`: weir-cdc's backfill decisions (where a run started, each chunk's
/// range and watermarks, each held change's classes) and weir-apply's transactions (applied
/// or skipped as replayed) appended to FILE, a line each after the process id, to find which
/// rule let a change through or dropped it. Off unless set; for debugging, not a format.
pub const ENV_TRACE: &str = "WEIR_CDC_TRACE";

pub(crate) fn trace(line: std::fmt::Arguments) {
    use std::sync::{Mutex, OnceLock};
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os(ENV_TRACE).filter(|p| !p.is_empty())?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        f.ok().map(Mutex::new)
    });
    if let Some(f) = file {
        use std::io::Write;
        // One write a line: both stages append to one file (O_APPEND keeps each write whole).
        let text = format!("{} {line}\n", std::process::id());
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(text.as_bytes());
    }
}
