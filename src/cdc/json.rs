//! weir-cdc's output: one JSON object per line in the shape of wal2json's format-version 2
//! (wal2json.c: pg_decode_begin_txn_v2, pg_decode_write_change, pg_decode_write_value), as
//! `pg_recvlogical -P wal2json -o format-version=2 -o include-xids=1 -o include-timestamp=1
//! -o include-lsn=1 -o numeric-data-types-as-string=1` prints it, so the two can be diffed.
//! docs/FORMAT.md, section 13, lists the differences.

use super::pgoutput::{Tuple, Value};
use crate::pg::replication::format_lsn;
use std::io::Write;

/// A relation as the stream names it: from pgoutput's Relation message, with each column's
/// type as `format_type` writes it.
#[derive(Debug, Clone)]
pub struct Rel {
    pub schema: String,
    pub table: String,
    pub columns: Vec<Col>,
}

#[derive(Debug, Clone)]
pub struct Col {
    pub name: String,
    pub type_name: String,
    pub type_oid: u32,
    /// Part of the replica identity (every column under REPLICA IDENTITY FULL).
    pub key: bool,
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Txn {
    pub xid: u32,
    /// Microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
}

/// `s` as a JSON string, escaped as serde_json escapes (RFC 8259, section 7: `"`, `\\` and
/// the control characters; nothing else). Most values need no escape: they are copied whole.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut from = 0;
    // A table lookup a byte: the common case (no escape) is one tight loop and one copy.
    while let Some(i) = b[from..].iter().position(|&c| ESCAPE[c as usize]) {
        let i = from + i;
        out.extend_from_slice(&b[from..i]);
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            8 => b"\\b",
            12 => b"\\f",
            _ => b"",
        };
        if esc.is_empty() {
            let _ = write!(out, "\\u{c:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&b[from..]);
    out.push(b'"');
}

/// The bytes [`string`] escapes.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 32 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

fn head(out: &mut Vec<u8>, action: &str, t: &Txn) {
    let _ = write!(
        out,
        "{{\"action\":\"{action}\",\"xid\":{},\"timestamp\":\"",
        t.xid
    );
    // Every line of a transaction carries its commit time: formatted once, not per line.
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != t.commit_time {
            (*at, *text) = (t.commit_time, timestamp(t.commit_time));
        }
        out.extend_from_slice(text.as_bytes());
    });
    out.push(b'"');
}

/// `{"action":"B",...}`; the begin message holds the commit's LSN, and its end comes only
/// with the commit, so there is no `nextlsn` here.
pub fn begin(out: &mut Vec<u8>, t: &Txn, final_lsn: u64) {
    head(out, "B", t);
    let _ = writeln!(out, ",\"lsn\":\"{}\"}}", format_lsn(final_lsn));
}

pub fn commit(out: &mut Vec<u8>, t: &Txn, commit_lsn: u64, end_lsn: u64) {
    head(out, "C", t);
    let (l, n) = (format_lsn(commit_lsn), format_lsn(end_lsn));
    let _ = writeln!(out, ",\"lsn\":\"{l}\",\"nextlsn\":\"{n}\"}}");
}

/// An insert (`I`, new only), update (`U`, new and maybe old) or delete (`D`, old only).
pub fn change(
    out: &mut Vec<u8>,
    action: &str,
    t: &Txn,
    lsn: u64,
    rel: &Rel,
    new: Option<&Tuple>,
    old: Option<&Tuple>,
) {
    head(out, action, t);
    let _ = write!(out, ",\"lsn\":\"{}\",\"schema\":", format_lsn(lsn));
    string(out, &rel.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, &rel.table);
    if let Some(new) = new {
        out.extend_from_slice(b",\"columns\":[");
        columns(out, rel, new, false);
        out.push(b']');
    }
    // The old key when the server sent it, else (an update that kept its key) the key's
    // columns of the new row, as wal2json does.
    let identity = old.or(new.filter(|_| action == "U"));
    if let Some(row) = identity.filter(|_| rel.columns.iter().any(|c| c.key)) {
        out.extend_from_slice(b",\"identity\":[");
        columns(out, rel, row, true);
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// An insert of a row read from a table rather than decoded from WAL (the copy, a backfill's
/// chunk), marked `"snapshot":true`.
pub fn snapshot_insert(out: &mut Vec<u8>, t: &Txn, lsn: u64, rel: &Rel, row: &Tuple) {
    change(out, "I", t, lsn, rel, Some(row), None);
    // `}\n` becomes `,"snapshot":true}\n` (docs/FORMAT.md, 13).
    out.truncate(out.len() - 2);
    out.extend_from_slice(b",\"snapshot\":true}\n");
}

/// `{"name":..,"type":..,"value":..}` for each column sent (an unchanged TOAST value is not),
/// only the replica identity's with `keys`.
fn columns(out: &mut Vec<u8>, rel: &Rel, row: &Tuple, keys: bool) {
    let mut first = true;
    for (c, v) in rel.columns.iter().zip(row.iter()) {
        if (keys && !c.key) || matches!(v, Value::Unchanged) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"name\":");
        string(out, &c.name);
        out.extend_from_slice(b",\"type\":");
        type_name(out, &c.type_name);
        out.extend_from_slice(b",\"value\":");
        value(out, c.type_oid, v);
        out.push(b'}');
    }
}

/// format_type's output; a quoted identifier is written as it is (its quotes become the JSON
/// string's), as wal2json does.
fn type_name(out: &mut Vec<u8>, t: &str) {
    if t.starts_with('"') && !t.ends_with(']') {
        out.extend_from_slice(t.as_bytes());
    } else {
        string(out, t);
    }
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;

/// A value as wal2json writes it with numeric-data-types-as-string: booleans as JSON booleans,
/// bytea's hex without `\x`, everything else (numbers, NaN and Infinity included) as a string.
fn value(out: &mut Vec<u8>, type_oid: u32, v: &Value) {
    let text = match v {
        Value::Null | Value::Unchanged => {
            out.extend_from_slice(b"null");
            return;
        }
        // Valid UTF-8 is borrowed as it is (from_utf8 checks faster than from_utf8_lossy).
        Value::Text(t) | Value::Binary(t) => match std::str::from_utf8(t) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(t),
        },
    };
    match type_oid {
        BOOL => out.extend_from_slice(if text == "t" { b"true" } else { b"false" }),
        BYTEA => string(out, text.strip_prefix("\\x").unwrap_or(&text)),
        _ => string(out, &text),
    }
}

pub fn truncate(out: &mut Vec<u8>, t: &Txn, lsn: u64, rel: &Rel) {
    head(out, "T", t);
    let _ = write!(out, ",\"lsn\":\"{}\",\"schema\":", format_lsn(lsn));
    string(out, &rel.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, &rel.table);
    out.extend_from_slice(b"}\n");
}

/// A `pg_logical_emit_message` message; a non-transactional one has no transaction.
pub fn message(out: &mut Vec<u8>, t: Option<&Txn>, lsn: u64, prefix: &str, content: &[u8]) {
    match t {
        Some(t) => head(out, "M", t),
        None => out.extend_from_slice(b"{\"action\":\"M\",\"xid\":null,\"timestamp\":null"),
    }
    let _ = write!(
        out,
        ",\"lsn\":\"{}\",\"transactional\":{},\"prefix\":",
        format_lsn(lsn),
        t.is_some()
    );
    string(out, prefix);
    out.extend_from_slice(b",\"content\":");
    string(out, &String::from_utf8_lossy(content));
    out.extend_from_slice(b"}\n");
}

/// PostgreSQL's microseconds as `timestamptz_to_str` writes them in UTC with DateStyle ISO:
/// `2026-12-04 01:35:48.12+00` (trailing zeros of the fraction dropped, none without one).
pub fn timestamp(pg_micros: i64) -> String {
    const PG_EPOCH: i64 = 946_684_800;
    let secs = pg_micros.div_euclid(1_000_000) + PG_EPOCH;
    let micros = pg_micros.rem_euclid(1_000_000);
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if micros > 0 {
        let f = format!(".{micros:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str("+00");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel() -> Rel {
        let col = |name: &str, ty: &str, oid, key| Col {
            name: name.into(),
            type_name: ty.into(),
            type_oid: oid,
            key,
        };
        Rel {
            schema: "public".into(),
            table: "t".into(),
            columns: vec![
                col("id", "integer", 23, true),
                col("ok", "boolean", 16, false),
                col("b", "bytea", 17, false),
                col("note", "\"Mood\"", 99999, false),
            ],
        }
    }

    #[test]
    fn lines_in_wal2json_shape() {
        let t = Txn {
            xid: 7,
            commit_time: 1_000_000 * 86400 + 120_000,
        };
        let mut out = Vec::new();
        begin(&mut out, &t, 0x16B_3748);
        let new = vec![
            Value::Text(b"1"),
            Value::Text(b"t"),
            Value::Text(b"\\x0aff"),
            Value::Unchanged,
        ];
        change(&mut out, "U", &t, 0x16B_3700, &rel(), Some(&new), None);
        let old = vec![Value::Text(b"1"), Value::Null, Value::Null, Value::Null];
        change(&mut out, "D", &t, 0x16B_3710, &rel(), None, Some(&old));
        commit(&mut out, &t, 0x16B_3748, 0x16B_3778);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"action":"B","xid":7,"timestamp":"2000-01-02 00:00:00.12+00","lsn":"0/16B3748"}"#
        );
        assert_eq!(
            lines[1],
            r#"{"action":"U","xid":7,"timestamp":"2000-01-02 00:00:00.12+00","lsn":"0/16B3700","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":"1"},{"name":"ok","type":"boolean","value":true},{"name":"b","type":"bytea","value":"0aff"}],"identity":[{"name":"id","type":"integer","value":"1"}]}"#
        );
        assert!(
            lines[2].ends_with(
                r#""table":"t","identity":[{"name":"id","type":"integer","value":"1"}]}"#
            ),
            "{}",
            lines[2]
        );
        assert!(lines[3].ends_with(r#""lsn":"0/16B3748","nextlsn":"0/16B3778"}"#));
        assert_eq!(timestamp(0), "2000-01-01 00:00:00+00");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u8..128).map(char::from).chain("é€😀".chars()).collect();
        for s in [all.as_str(), "", "plain", "a\"b\\c"] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}
