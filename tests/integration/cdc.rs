//! Change data capture. pgoutput as the server produces it, read through
//! `pg_logical_slot_get_binary_changes` (the SQL face of the decoding a walsender streams) from
//! the shared cluster, which runs with `wal_level = logical`, and decoded by weir's parser:
//! each change made comes back, in order, with its values, the old keys of updates and deletes,
//! and an untouched TOASTed value marked unchanged rather than sent.

use crate::harness::cluster;
use weir::cdc::pgoutput::{Message, OldKind, Value, decode};

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Unchanged => "unchanged".into(),
        Value::Text(t) if t.len() > 20 => format!("text of {} bytes", t.len()),
        Value::Text(t) => String::from_utf8_lossy(t).into_owned(),
        Value::Binary(b) => format!("binary of {} bytes", b.len()),
    }
}

fn row(t: &[Value]) -> String {
    t.iter().map(show).collect::<Vec<_>>().join(",")
}

/// One line per message, with what a test can compare.
fn describe(m: &Message) -> String {
    match m {
        Message::Begin { .. } => "begin".into(),
        Message::Commit { .. } => "commit".into(),
        Message::Relation(r) => {
            let cols: Vec<String> = r
                .columns
                .iter()
                .map(|c| format!("{}{}:{}", c.name, if c.key { "*" } else { "" }, c.type_oid))
                .collect();
            format!("relation {}.{} {}", r.namespace, r.name, cols.join(" "))
        }
        Message::Insert { new, .. } => format!("insert {}", row(new)),
        Message::Update { old, new, .. } => match old {
            Some((k, o)) => format!("update {k:?} {} -> {}", row(o), row(new)),
            None => format!("update {}", row(new)),
        },
        Message::Delete { old: (k, o), .. } => format!("delete {k:?} {}", row(o)),
        Message::Truncate {
            relations,
            cascade,
            restart_identity,
        } => format!(
            "truncate {} cascade={cascade} restart={restart_identity}",
            relations.len()
        ),
        Message::Message {
            prefix, content, ..
        } => format!("message {prefix} {}", String::from_utf8_lossy(content)),
        other => format!("{other:?}"),
    }
}

#[test]
fn pgoutput_from_the_server_decodes_to_the_changes_made() {
    let c = cluster();
    c.create_db(
        "cdc_decode",
        "CREATE TABLE t (id int PRIMARY KEY, name text, big text);
         CREATE PUBLICATION p FOR TABLE t;
         SELECT 1 FROM pg_create_logical_replication_slot('cdc_decode', 'pgoutput');",
    );
    // Each statement its own transaction. The big value is stored out of line (hex digits
    // compress only to half), so an update that leaves it alone does not send it.
    for sql in [
        "INSERT INTO t SELECT 1, 'one', string_agg(md5(g::text), '') FROM generate_series(1, 1000) g",
        "UPDATE t SET name = 'uno' WHERE id = 1",
        "UPDATE t SET id = 2 WHERE id = 1",
        "DELETE FROM t WHERE id = 2",
        "TRUNCATE t RESTART IDENTITY",
        // The harness runs with synchronous_commit = off, and decoding stops at the WAL
        // flushed so far: this commit waits for its flush, and with it every one before.
        "SET synchronous_commit = on; SELECT 1 FROM pg_logical_emit_message(true, 'weir', 'hello')",
    ] {
        c.psql("cdc_decode", sql);
    }
    let hex = c.psql(
        "cdc_decode",
        "SELECT encode(data, 'hex') FROM pg_logical_slot_get_binary_changes('cdc_decode', NULL, NULL,
           'proto_version', '1', 'publication_names', 'p', 'messages', 'true');
         SELECT pg_drop_replication_slot('cdc_decode');",
    );
    let mut got = Vec::new();
    for line in hex.lines().filter(|l| !l.is_empty()) {
        let bytes: Vec<u8> = (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect();
        got.push(describe(&decode(&bytes).unwrap()));
    }
    // The relation's OID-free description: int4 is type 23, text 25.
    let want = [
        "begin",
        "relation public.t id*:23 name:25 big:25",
        "insert 1,one,text of 32000 bytes",
        "commit",
        "begin",
        "update 1,uno,unchanged",
        "commit",
        "begin",
        &format!("update {:?} 1,null,null -> 2,uno,unchanged", OldKind::Key),
        "commit",
        "begin",
        &format!("delete {:?} 2,null,null", OldKind::Key),
        "commit",
        // A truncate invalidates the relation's cache entry: its schema is sent again.
        "begin",
        "relation public.t id*:23 name:25 big:25",
        "truncate 1 cascade=false restart=true",
        "commit",
        "begin",
        "message weir hello",
        "commit",
    ];
    assert_eq!(got, want);
}

/// The slot's guarantee rests on this: over a logical replication connection, START_REPLICATION
/// streams the changes as XLogData, and a standby status update's flush position is what the
/// server records as the slot's confirmed position, no further.
#[test]
fn a_streamed_change_and_the_flush_position_the_slot_keeps() {
    use weir::cdc::wire::{FromServer, parse, status_update};
    use weir::pg::replication::{ReplConn, Reply};
    let c = cluster();
    c.create_db(
        "cdc_stream",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE PUBLICATION p FOR TABLE t;
         SELECT 1 FROM pg_create_logical_replication_slot('cdc_stream', 'pgoutput');",
    );
    let before = c.psql(
        "cdc_stream",
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_stream'",
    );
    c.psql(
        "cdc_stream",
        "SET synchronous_commit = on; INSERT INTO t VALUES (1, 'streamed')",
    );
    let env: std::collections::BTreeMap<String, String> = c.env().into_iter().collect();
    let params =
        weir::pg::conn::ConnParams::resolve_with(Some("dbname=cdc_stream"), "weir-test", &env)
            .unwrap();
    let mut conn = ReplConn::connect_logical(&params).unwrap();
    conn.send(
        "START_REPLICATION SLOT cdc_stream LOGICAL 0/0 (proto_version '1', publication_names 'p')",
    )
    .unwrap();
    assert!(matches!(conn.next_result().unwrap(), Some(Reply::CopyBoth)));
    let mut seen = Vec::new();
    let end = loop {
        let data = conn.copy_data().unwrap().expect("the stream ended");
        match parse(&data).unwrap() {
            FromServer::XLogData { data, .. } => match decode(data).unwrap() {
                Message::Insert { new, .. } => seen.push(row(&new)),
                Message::Commit { end_lsn, .. } => break end_lsn,
                _ => {}
            },
            FromServer::Keepalive { .. } => {}
        }
    };
    assert_eq!(seen, ["1,streamed"]);
    // Written and flushed up to the commit's end: the slot confirms exactly that.
    conn.put_copy_data(&status_update(end, end, end, false))
        .unwrap();
    let want = weir::pg::replication::format_lsn(end);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = c.psql(
            "cdc_stream",
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_stream'",
        );
        if now.trim() == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "confirmed_flush_lsn {} (before {}), not {want}",
            now.trim(),
            before.trim()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(conn);
    // The walsender lets go of the slot a moment after the connection closes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let drop_idle = "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
                     WHERE slot_name = 'cdc_stream' AND NOT active";
    while c.psql("cdc_stream", drop_idle).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot stays active"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
