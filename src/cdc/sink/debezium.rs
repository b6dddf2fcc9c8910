//! `--format debezium`: each change as Debezium's PostgreSQL connector envelopes it for Kafka
//! Connect consumers (Debezium documentation, "PostgreSQL connector", "Data change events"):
//! `before`, `after`, `source` (`lsn`, `txId`, `schema`, `table`, `ts_ms`, `snapshot`), `op`
//! (`c` insert, `u` update, `d` delete, `r` a row of the initial copy, `t` truncate) and
//! `ts_ms`. Values stay as weir-cdc writes them (the types' text output as strings, booleans as
//! booleans, bytea as hex), not converted to Debezium's typed schemas; `before` holds what the
//! stream has of the old row (the key, or every column under REPLICA IDENTITY FULL). Begin,
//! commit and message lines have no event.

use crate::cdc::json;
use crate::cdc::line::{Field, Line, Value};
use anyhow::{Context, Result};
use std::io::Write;

/// The event for `l` (one line of JSON, without its newline), or `None` for a line that has
/// none.
pub fn event(l: &Line, now_ms: i64) -> Result<Option<Vec<u8>>> {
    let op = match (l.action, l.snapshot) {
        ("I", true) => "r",
        ("I", false) => "c",
        ("U", _) => "u",
        ("D", _) => "d",
        ("T", _) => "t",
        _ => return Ok(None),
    };
    let lsn = crate::pg::lsn::Lsn::parse(l.lsn.context("a change without lsn")?)?;
    let ts = millis(l.timestamp.context("a change without timestamp")?)?;
    // Written directly, in the stream's column order (a serde_json map would sort them and
    // cost twice the decoding).
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"before\":");
    row(&mut out, &l.identity);
    out.extend_from_slice(b",\"after\":");
    row(&mut out, &l.columns);
    out.extend_from_slice(
        b",\"source\":{\"connector\":\"postgresql\",\"name\":\"weir\",\"schema\":",
    );
    nullable(&mut out, l.schema.as_deref());
    out.extend_from_slice(b",\"table\":");
    nullable(&mut out, l.table.as_deref());
    let _ = write!(out, ",\"lsn\":{},\"txId\":", lsn.0);
    match l.xid {
        Some(x) => {
            let _ = write!(out, "{x}");
        }
        None => out.extend_from_slice(b"null"),
    }
    let snapshot = if l.snapshot { "true" } else { "false" };
    let _ = write!(
        out,
        ",\"ts_ms\":{ts},\"snapshot\":\"{snapshot}\"}},\"op\":\"{op}\",\"ts_ms\":{now_ms}}}"
    );
    Ok(Some(out))
}

/// A row as a JSON object of its columns' values; `null` for none.
fn row(out: &mut Vec<u8>, fields: &[Field]) {
    if fields.is_empty() {
        return out.extend_from_slice(b"null");
    }
    out.push(b'{');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::string(out, &f.name);
        out.push(b':');
        match &f.value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Text(t) => json::string(out, t),
        }
    }
    out.push(b'}');
}

fn nullable(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json::string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `2026-12-04 07:07:20.422709+00` (the stream's commit time) in milliseconds since 1970;
/// every change of a transaction has the same, so the last one is kept.
fn millis(ts: &str) -> Result<i64> {
    thread_local! {
        static LAST: std::cell::RefCell<(String, i64)> = const { std::cell::RefCell::new((String::new(), 0)) };
    }
    if let Some(ms) = LAST.with_borrow(|(t, ms)| (t == ts).then_some(*ms)) {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_str(&format!("{ts}00"), "%Y-%m-%d %H:%M:%S%.f%z")
        .with_context(|| format!("not a commit time: {ts}"))?;
    let ms = t.timestamp_millis();
    LAST.with_borrow_mut(|last| *last = (ts.to_string(), ms));
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_become_debezium_envelopes() {
        let line = br#"{"action":"U","xid":7,"timestamp":"2026-12-04 07:07:20.422709+00","lsn":"0/16B3700","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":"1"},{"name":"ok","type":"boolean","value":true},{"name":"n\"q","type":"text","value":"a\"b\n"},{"name":"z","type":"text","value":null}],"identity":[{"name":"id","type":"integer","value":"1"}]}"#;
        let l: Line = serde_json::from_slice(line).unwrap();
        let e: serde_json::Value = serde_json::from_slice(&event(&l, 5).unwrap().unwrap()).unwrap();
        assert_eq!(e["op"], "u");
        assert_eq!(
            e["after"],
            json!({"id": "1", "ok": true, "n\"q": "a\"b\n", "z": null})
        );
        assert_eq!(e["before"], json!({"id": "1"}));
        assert_eq!(e["source"]["lsn"], 0x16B3700);
        assert_eq!(e["source"]["txId"], 7);
        assert_eq!(e["source"]["ts_ms"], 1_796_368_040_422i64);
        assert_eq!(e["ts_ms"], 5);
        let begin: Line = serde_json::from_slice(br#"{"action":"B","xid":7,"lsn":"0/1"}"#).unwrap();
        assert!(event(&begin, 5).unwrap().is_none());
    }
}
