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
        "SET synchronous_commit = local; SELECT 1 FROM pg_logical_emit_message(true, 'weir', 'hello')",
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
    use weir::cdc::wire::{FromServer, Positions, parse, status_update};
    use weir::pg::lsn::Lsn;
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
        "SET synchronous_commit = local; INSERT INTO t VALUES (1, 'streamed')",
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
    let at = Lsn(end);
    let p = Positions {
        written: at,
        flushed: at,
        applied: at,
    };
    conn.put_copy_data(&status_update(p, false)).unwrap();
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

/// Issue 16, test 1: weir-cdc's lines against wal2json's format-version 2 over the same changes
/// (Debian's postgresql-15-wal2json, through pg_recvlogical), the documented differences
/// normalised away: wal2json's begin line carries `nextlsn`, weir's cannot (pgoutput's Begin
/// does not say where the transaction ends).
#[test]
fn weir_cdc_lines_equal_wal2json_format_version_2() {
    use crate::harness::{bin, run_with_input, scrub, stderr};
    let c = cluster();
    let lib = String::from_utf8(
        std::process::Command::new("pg_config")
            .arg("--pkglibdir")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    if !std::path::Path::new(lib.trim())
        .join("wal2json.so")
        .exists()
    {
        panic!("wal2json is not installed (scripts/test.sh installs postgresql-NN-wal2json)");
    }
    c.create_db(
        "cdc_golden",
        "CREATE TYPE \"Mood\" AS ENUM ('ok', 'sad');
         CREATE TABLE kinds (id int PRIMARY KEY, n numeric(12,3), f real, b bool, t text, by bytea,
                             at timestamptz, j jsonb, u uuid, a int[], m \"Mood\", v varchar(10));
         CREATE TABLE full_rows (k int, note text);
         ALTER TABLE full_rows REPLICA IDENTITY FULL;
         CREATE PUBLICATION golden FOR TABLE kinds, full_rows;",
    );
    let env: Vec<(String, String)> = c
        .env()
        .into_iter()
        .chain([("PGOPTIONS".to_string(), "-c timezone=UTC".to_string())])
        .collect();
    let cdc = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("weir-cdc"));
        cmd.args(["-d", "cdc_golden", "-S", "golden_weir"])
            .args(args);
        run_with_input(scrub(&mut cmd, &env), b"")
    };
    let o = cdc(&["--create-slot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.psql(
        "cdc_golden",
        "SELECT 1 FROM pg_create_logical_replication_slot('golden_w2j', 'wal2json')",
    );
    for sql in [
        "INSERT INTO kinds VALUES (1, 'NaN', 1.5, true, E'quote \" back\\\\ new\\nline ü', '\\x00ff', '2026-12-04 01:02:03.5+00',
                                   '{\"a\": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', 'sad', 'short'),
                                  (2, -12.5, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "UPDATE kinds SET t = 'changed' WHERE id = 1",
        "UPDATE kinds SET id = 3 WHERE id = 2",
        "DELETE FROM kinds WHERE id = 3",
        "INSERT INTO full_rows VALUES (1, 'a'), (2, 'b')",
        "UPDATE full_rows SET note = 'c' WHERE k = 1",
        "DELETE FROM full_rows WHERE k = 2",
        "BEGIN; INSERT INTO kinds (id) VALUES (4); SELECT pg_logical_emit_message(true, 'weir', 'in a transaction'); COMMIT",
        "TRUNCATE full_rows",
        "SET synchronous_commit = local; INSERT INTO kinds (id) VALUES (5)",
    ] {
        c.psql("cdc_golden", sql);
    }
    let end = c.psql("cdc_golden", "SELECT pg_current_wal_lsn()");
    let end = end.trim();
    // A transaction past the end position, so that pg_recvlogical sees one and stops (idle,
    // it waits for the server's keepalive, wal_sender_timeout / 2).
    c.psql(
        "cdc_golden",
        "SET synchronous_commit = local; CREATE TABLE past_the_end (x int)",
    );
    let o = cdc(&["-q", "--publication", "golden", "--stream", "-E", end]);
    assert!(o.status.success(), "weir-cdc: {}", stderr(&o));
    let ours = String::from_utf8(o.stdout).unwrap();

    let mut cmd = std::process::Command::new(c.bindir.join("pg_recvlogical"));
    cmd.args([
        "-d",
        "cdc_golden",
        "-S",
        "golden_w2j",
        "--start",
        "--no-loop",
    ]);
    cmd.args(["-E", end, "-f", "-"]);
    for opt in [
        "format-version=2",
        "include-xids=1",
        "include-timestamp=1",
        "include-lsn=1",
        "add-tables=public.kinds,public.full_rows",
    ] {
        cmd.args(["-o", opt]);
    }
    let o = run_with_input(scrub(&mut cmd, &env), b"");
    assert!(o.status.success(), "pg_recvlogical: {}", stderr(&o));
    let theirs: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["action"] == "B" {
                v.as_object_mut().unwrap().remove("nextlsn");
            }
            v
        })
        .collect();
    let mut theirs = theirs;
    // pg_recvlogical stops at the first message past the end position, which can be the
    // commit of the transaction past the end when its begin sits exactly at that position
    // (its first record starts where pg_current_wal_lsn() pointed): that transaction's lone
    // "B" is not part of the comparison (seen once in CI-sized runs, 2026-12-05).
    if theirs.last().is_some_and(|v| v["action"] == "B") {
        theirs.pop();
    }
    let ours: Vec<serde_json::Value> = ours.lines().map(as_wal2json_2_5).collect();
    assert!(ours.len() > 20, "{ours:#?}");
    for (i, (a, b)) in ours.iter().zip(theirs.iter()).enumerate() {
        assert_eq!(a, b, "line {i} differs");
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "weir:\n{ours:#?}\nwal2json:\n{theirs:#?}"
    );

    // The slot confirmed what was written; dropping it leaves none behind.
    let confirmed = c.psql(
        "cdc_golden",
        &format!("SELECT confirmed_flush_lsn >= '{end}' FROM pg_replication_slots WHERE slot_name = 'golden_weir'"),
    );
    assert_eq!(confirmed.trim(), "t");
    let o = cdc(&["--drop-slot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.psql(
        "cdc_golden",
        "SELECT pg_drop_replication_slot('golden_w2j')",
    );
    let left = c.psql(
        "postgres",
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'golden%'",
    );
    assert_eq!(left.trim(), "0");
}

/// A weir-cdc line as Debian's wal2json 2.5 writes it (it lacks numeric-data-types-as-string):
/// numbers unquoted, NaN and Infinity as null (weir keeps them, as strings).
fn as_wal2json_2_5(line: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    for list in ["columns", "identity"] {
        let Some(cols) = v.get_mut(list).and_then(|c| c.as_array_mut()) else {
            continue;
        };
        for c in cols {
            let ty = c["type"].as_str().unwrap_or("").to_string();
            let numeric = [
                "integer",
                "bigint",
                "smallint",
                "real",
                "double precision",
                "oid",
            ]
            .contains(&ty.as_str())
                || ty.starts_with("numeric");
            if let (true, Some(s)) = (numeric, c["value"].as_str().map(str::to_string)) {
                c["value"] = serde_json::from_str(&s).unwrap_or(serde_json::Value::Null);
            }
        }
    }
    v
}

/// weir-cdc's usage errors: nothing to do, or streaming without a publication, is exit 2 with
/// one line, before any connection; a slot that exists is refused by --create-slot alone.
#[test]
fn weir_cdc_says_what_is_missing() {
    use crate::harness::{bin, run_with_input, scrub, stderr};
    let c = cluster();
    c.create_db("cdc_usage", "");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("weir-cdc"));
        cmd.args(["-d", "cdc_usage", "-S", "usage_slot"]).args(args);
        run_with_input(scrub(&mut cmd, &c.env()), b"")
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    let o = run(&["--stream"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--copy-and-stream and --resync need --publication"),
        "{}",
        stderr(&o)
    );
    assert!(run(&["--create-slot"]).status.success());
    let o = run(&["--create-slot"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("slot usage_slot exists already"),
        "{}",
        stderr(&o)
    );
    assert!(run(&["--create-slot", "--if-not-exists"]).status.success());
    assert!(run(&["--drop-slot"]).status.success());
    // Failover slots are PostgreSQL 17's; this server says so and creates nothing.
    let version: u32 = c
        .psql("postgres", "SHOW server_version_num")
        .trim()
        .parse()
        .unwrap();
    if version < 170000 {
        let o = run(&["--create-slot", "--failover"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("--failover needs PostgreSQL 17"),
            "{}",
            stderr(&o)
        );
    }
    let left = c.psql(
        "postgres",
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'usage_slot'",
    );
    assert_eq!(left.trim(), "0");
}

/// A reader that stops reading for longer than the server's wal_sender_timeout: weir-cdc keeps
/// sending status updates while its output is blocked, so the server keeps the connection,
/// and every change arrives once the reader reads again.
#[test]
fn a_blocked_reader_does_not_cost_the_replication_connection() {
    use crate::harness::{bin, scrub, stderr};
    use std::io::Read;
    let c = cluster();
    c.create_db(
        "cdc_blocked",
        "CREATE TABLE wide (id int PRIMARY KEY, v text); CREATE PUBLICATION blocked FOR TABLE wide;",
    );
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("weir-cdc"));
        cmd.args(["-d", "cdc_blocked", "-S", "blocked_slot"])
            .args(args);
        scrub(&mut cmd, &c.env())
            .env("PGOPTIONS", "-c wal_sender_timeout=2s")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    assert!(run(&["--create-slot"]).wait().unwrap().success());
    // About 30 MB of lines: more than the pipe and weir-cdc's queue hold.
    c.psql(
        "cdc_blocked",
        "INSERT INTO wide SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g",
    );
    let end = c
        .psql("cdc_blocked", "SELECT pg_current_wal_insert_lsn()")
        .trim()
        .to_string();
    let mut cdc = run(&[
        "--publication",
        "blocked",
        "--stream",
        "-q",
        "-s",
        "1",
        "-E",
        &end,
    ]);
    std::thread::sleep(std::time::Duration::from_secs(6));
    let mut out = Vec::new();
    cdc.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let o = cdc.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let inserts = out
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"{\"action\":\"I\""))
        .count();
    assert_eq!(inserts, 100000);
    let mut cmd = std::process::Command::new(bin("weir-cdc"));
    cmd.args(["-d", "cdc_blocked", "-S", "blocked_slot", "--drop-slot"]);
    assert!(scrub(&mut cmd, &c.env()).status().unwrap().success());
}

/// A slot whose WAL the server removed (max_slot_wal_keep_size) has lost changes: weir-cdc
/// stops with exit status 7 and says what to do, rather than stream from a gap.
#[test]
fn a_lost_slot_has_its_own_exit_status() {
    use crate::harness::{Cluster, bin, run_with_input, scrub, stderr};
    let c = Cluster::start_with(
        "lost",
        "wal_level = logical\nmax_slot_wal_keep_size = 1MB\nmin_wal_size = 32MB",
    );
    c.create_db(
        "cdc_lost",
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION lost FOR TABLE t;",
    );
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("weir-cdc"));
        cmd.args(["-d", "cdc_lost", "-S", "lost_slot"]).args(args);
        run_with_input(scrub(&mut cmd, &c.env()), b"")
    };
    let o = run(&["--create-slot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["--publication", "lost", "--stream", "-E", "0/1"]);
    assert!(stderr(&o).contains("wal_status reserved"), "{}", stderr(&o));
    for _ in 0..4 {
        c.psql(
            "cdc_lost",
            "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g ON CONFLICT (id) DO UPDATE SET v = 'y'; SELECT pg_switch_wal();",
        );
    }
    c.psql("postgres", "CHECKPOINT");
    let status = c.psql(
        "postgres",
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'",
    );
    assert_eq!(status.trim(), "lost");
    let o = run(&["--publication", "lost", "--stream"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("slot lost_slot is lost"),
        "{}",
        stderr(&o)
    );
    assert!(run(&["--drop-slot"]).status.success());
}

/// A slot on a database whose tables are quiet while another database writes: with
/// `--heartbeat 1` weir-cdc writes heartbeat messages into the quiet database's WAL (a
/// test_decoding slot beside it sees them), the slot's confirmed position passes the busy
/// database's writes, no heartbeat reaches the output, and `--metrics` holds the slot's lag,
/// wal_status and the commit time of the last confirmed change.
#[test]
fn a_quiet_databases_slot_moves_with_heartbeats_and_its_health_is_in_the_metrics() {
    use crate::harness::{bin, cdc_slot, scrub, wait_until};
    let c = cluster();
    c.create_db(
        "hb_quiet",
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t;
         SELECT pg_create_logical_replication_slot('hb_peek', 'test_decoding');",
    );
    c.create_db("hb_busy", "CREATE TABLE b (id int, pad text);");
    cdc_slot(c, "hb_quiet", "hb_slot", "--create-slot");
    let dir = tempfile::tempdir().unwrap();
    let (metrics, out) = (dir.path().join("cdc.prom"), dir.path().join("out.jsonl"));
    let mut cmd = std::process::Command::new(bin("weir-cdc"));
    cmd.args([
        "-q",
        "-d",
        "hb_quiet",
        "-S",
        "hb_slot",
        "--publication",
        "pub",
        "--stream",
    ])
    .args([
        "-s",
        "1",
        "--heartbeat",
        "1",
        "--metrics",
        metrics.to_str().unwrap(),
    ])
    .args(["-o", out.to_str().unwrap()]);
    let mut cdc = scrub(&mut cmd, &c.env()).spawn().unwrap();
    c.psql("hb_quiet", "INSERT INTO t VALUES (1)");
    c.psql(
        "hb_busy",
        "INSERT INTO b SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    );
    let busy = c.psql("hb_busy", "SELECT pg_current_wal_lsn()");
    let confirmed = || {
        c.psql(
            "postgres",
            &format!(
                "SELECT confirmed_flush_lsn >= '{}' FROM pg_replication_slots WHERE slot_name = 'hb_slot'",
                busy.trim()
            ),
        )
    };
    wait_until(
        "the quiet slot passes the busy database's writes",
        30,
        || confirmed().trim() == "t",
    );
    wait_until(
        "the metrics say when the last change was confirmed",
        30,
        || {
            std::fs::read_to_string(&metrics)
                .is_ok_and(|m| m.contains("weir_cdc_last_confirmed_change_timestamp_seconds"))
        },
    );
    let beats = || {
        c.psql(
            "hb_quiet",
            "SELECT count(*) FROM pg_logical_slot_peek_changes('hb_peek', NULL, NULL)
              WHERE data LIKE 'message: transactional: 0 prefix: weir.heartbeat%'",
        )
    };
    wait_until("heartbeats in the quiet database's WAL", 20, || {
        beats().trim().parse::<u32>().unwrap() >= 2
    });
    // The lag is measured against the whole server's WAL, which the other tests on this
    // cluster write too: some write of the metrics within the wait sees the slot close behind.
    let lag = |m: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix("weir_cdc_slot_lag_bytes{slot=\"hb_slot\"} "))
            .map_or(f64::MAX, |v| v.parse().unwrap())
    };
    let mut m = String::new();
    wait_until(
        "the metrics show the slot less than 4 MB behind",
        30,
        || {
            m = std::fs::read_to_string(&metrics).unwrap_or_default();
            lag(&m) < 4e6
        },
    );
    let _ = cdc.kill();
    let _ = cdc.wait();
    assert!(
        m.contains("weir_cdc_slot_wal_status{slot=\"hb_slot\",status=\"reserved\"} 1"),
        "{m}"
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(!written.contains("weir.heartbeat"), "{written}");
    assert!(written.contains("\"action\":\"I\""), "{written}");
    c.psql("hb_quiet", "SELECT pg_drop_replication_slot('hb_peek')");
    cdc_slot(c, "hb_quiet", "hb_slot", "--drop-slot");
}

/// Protocol 2: with logical_decoding_work_mem cut to 64kB, a big transaction is streamed to
/// weir-cdc while in progress (pg_stat_replication_slots counts it), with small transactions
/// committing around it, a subtransaction rolled back inside it, and another big transaction
/// that aborts. weir-cdc's output is line for line the one protocol 1 gives (each transaction
/// whole, in commit order), and nothing of the aborted work is in it.
#[test]
fn big_transactions_stream_in_progress_and_come_out_in_commit_order() {
    use crate::harness::{bin, cdc_slot, connect_with, run_with_input, scrub, stderr, wait_until};
    let c = cluster();
    c.create_db(
        "streamed_src",
        "CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE TABLE s (id int);
         CREATE PUBLICATION pub FOR ALL TABLES;",
    );
    for slot in ["streamed_v2", "streamed_v1"] {
        cdc_slot(c, "streamed_src", slot, "--create-slot");
    }
    let mut big = connect_with(&c.env(), "streamed_src");
    big.batch_execute(
        "BEGIN; INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
         SAVEPOINT a; INSERT INTO t SELECT g, 'gone' FROM generate_series(100001, 105000) g;
         ROLLBACK TO a;",
    )
    .unwrap();
    c.psql("streamed_src", "INSERT INTO s VALUES (1)");
    big.batch_execute(
        "INSERT INTO t SELECT g, 'after' FROM generate_series(20001, 30000) g; COMMIT",
    )
    .unwrap();
    let mut aborted = connect_with(&c.env(), "streamed_src");
    aborted
        .batch_execute(
            "BEGIN; INSERT INTO t SELECT g, 'aborted' FROM generate_series(200001, 230000) g; ROLLBACK",
        )
        .unwrap();
    c.psql("streamed_src", "INSERT INTO s VALUES (2)");
    let end = c.psql("streamed_src", "SELECT pg_current_wal_insert_lsn()");
    let stream = |slot: &str, proto: &str| {
        let mut cmd = std::process::Command::new(bin("weir-cdc"));
        cmd.args([
            "-q",
            "-d",
            "streamed_src",
            "-S",
            slot,
            "--publication",
            "pub",
            "--stream",
        ])
        .args(["-E", end.trim(), "--proto-version", proto]);
        let cmd = scrub(&mut cmd, &c.env()).env("PGOPTIONS", "-c logical_decoding_work_mem=64kB");
        let o = run_with_input(cmd, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let (v2, v1) = (stream("streamed_v2", "2"), stream("streamed_v1", "1"));
    wait_until("the slot's statistics", 10, || {
        c.psql(
            "streamed_src",
            "SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = 'streamed_v2'",
        )
        .trim()
            == "t"
    });
    assert!(v2 == v1, "protocol 2's output differs from protocol 1's");
    assert!(!v2.contains("gone") && !v2.contains("aborted"));
    let inserts = v2.lines().filter(|l| l.contains("\"table\":\"t\"")).count();
    assert_eq!(inserts, 30000);
    let (s1, s2, big_at) = (
        v2.find("\"table\":\"s\"").unwrap(),
        v2.rfind("\"table\":\"s\"").unwrap(),
        v2.find("\"table\":\"t\"").unwrap(),
    );
    assert!(s1 < big_at && big_at < s2, "not in commit order");
    for slot in ["streamed_v2", "streamed_v1"] {
        cdc_slot(c, "streamed_src", slot, "--drop-slot");
    }
}
