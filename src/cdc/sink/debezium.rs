//! `--format debezium`: each change as Debezium's PostgreSQL connector envelopes it for Kafka
//! Connect consumers (Debezium documentation, "PostgreSQL connector", "Data change events"):
//! `before`, `after`, `source` (`lsn`, `txId`, `schema`, `table`, `ts_ms`, `snapshot`), `op`
//! (`c` insert, `u` update, `d` delete, `r` a row of the initial copy, `t` truncate) and
//! `ts_ms`. Values stay as weir-cdc writes them (the types' text output as strings, booleans as
//! booleans, bytea as hex), not converted to Debezium's typed schemas; `before` holds what the
//! stream has of the old row (the key, or every column under REPLICA IDENTITY FULL). Begin,
//! commit and message lines have no event.

use crate::cdc::line::{Field, Line, Value};
use anyhow::{Context, Result};
use serde_json::{Map, json};

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
    let row = |fields: &[Field]| -> serde_json::Value {
        let mut m = Map::new();
        for f in fields {
            let v = match &f.value {
                Value::Null => serde_json::Value::Null,
                Value::Bool(b) => (*b).into(),
                Value::Text(t) => t.to_string().into(),
            };
            m.insert(f.name.to_string(), v);
        }
        m.into()
    };
    let lsn = crate::pg::lsn::Lsn::parse(l.lsn.context("a change without lsn")?)?;
    let ts = l.timestamp.context("a change without timestamp")?;
    let event = json!({
        "before": if l.identity.is_empty() { serde_json::Value::Null } else { row(&l.identity) },
        "after": if l.columns.is_empty() { serde_json::Value::Null } else { row(&l.columns) },
        "source": {
            "connector": "postgresql",
            "name": "weir",
            "schema": l.schema.as_deref(),
            "table": l.table.as_deref(),
            "lsn": lsn.0,
            "txId": l.xid,
            "ts_ms": millis(ts)?,
            "snapshot": if l.snapshot { "true" } else { "false" },
        },
        "op": op,
        "ts_ms": now_ms,
    });
    Ok(Some(serde_json::to_vec(&event)?))
}

/// `2026-12-04 07:07:20.422709+00` (the stream's commit time) in milliseconds since 1970.
fn millis(ts: &str) -> Result<i64> {
    let t = chrono::DateTime::parse_from_str(&format!("{ts}00"), "%Y-%m-%d %H:%M:%S%.f%z")
        .with_context(|| format!("not a commit time: {ts}"))?;
    Ok(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_debezium_envelopes() {
        let line = br#"{"action":"U","xid":7,"timestamp":"2026-12-04 07:07:20.422709+00","lsn":"0/16B3700","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":"1"},{"name":"ok","type":"boolean","value":true}],"identity":[{"name":"id","type":"integer","value":"1"}]}"#;
        let l: Line = serde_json::from_slice(line).unwrap();
        let e: serde_json::Value = serde_json::from_slice(&event(&l, 5).unwrap().unwrap()).unwrap();
        assert_eq!(e["op"], "u");
        assert_eq!(e["after"], json!({"id": "1", "ok": true}));
        assert_eq!(e["before"], json!({"id": "1"}));
        assert_eq!(e["source"]["lsn"], 0x16B3700);
        assert_eq!(e["source"]["txId"], 7);
        assert_eq!(e["source"]["ts_ms"], 1_796_368_040_422i64);
        assert_eq!(e["ts_ms"], 5);
        let begin: Line = serde_json::from_slice(br#"{"action":"B","xid":7,"lsn":"0/1"}"#).unwrap();
        assert!(event(&begin, 5).unwrap().is_none());
    }
}
