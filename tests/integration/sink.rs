//! weir-sink: the change stream in files, with the position weir-cdc --confirm-from reads.

use crate::harness::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The lines a reader of DIR takes: files in name order, the position's file up to its offset.
fn delivered(dir: &Path) -> Vec<String> {
    let pos: serde_json::Value = match std::fs::read(dir.join("position")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => return Vec::new(),
    };
    let (last, offset) = (
        pos["file"].as_str().unwrap(),
        pos["offset"].as_u64().unwrap(),
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl") && n.as_str() <= last)
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let mut bytes = std::fs::read(dir.join(&n)).unwrap();
        if n == last {
            bytes.truncate(offset as usize);
        }
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{n}: a partial line"
        );
        out.extend(String::from_utf8(bytes).unwrap().lines().map(String::from));
    }
    out
}

/// The ledger ids the delivered inserts hold, each transaction whole (every line JSON, every
/// begin with its commit).
fn ids(lines: &[String]) -> Vec<i64> {
    let mut open = false;
    let mut ids = Vec::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        match v["action"].as_str().unwrap() {
            "B" => {
                assert!(!open, "a begin inside a transaction");
                open = true;
            }
            "C" => {
                assert!(open, "a commit outside a transaction");
                open = false;
            }
            "I" => ids.push(v["columns"][0]["value"].as_str().unwrap().parse().unwrap()),
            _ => {}
        }
    }
    assert!(!open, "the last transaction is not whole");
    ids
}

fn pipeline(c: &Cluster, dir: &Path, end: Option<&str>) -> (Child, Child) {
    let url = format!("file://{}", dir.display());
    let mut args = vec![
        "-q",
        "-d",
        "sink_src",
        "-S",
        "sink_slot",
        "--publication",
        "pub",
    ];
    args.extend(["--stream", "-s", "1", "--confirm-from", &url]);
    if let Some(e) = end {
        args.extend(["-E", e]);
    }
    let mut cmd = Command::new(bin("weir-cdc"));
    cmd.args(&args);
    let mut cdc = scrub(&mut cmd, &c.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cmd = Command::new(bin("weir-sink"));
    cmd.args(["-q", &url, "--rotate-size", "1", "--sync-interval", "1000"]);
    let sink = scrub(&mut cmd, &c.env())
        .stdin(Stdio::from(cdc.stdout.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (cdc, sink)
}

/// Transactions of one to 500 rows until `stop`; after each commit the WAL insert position
/// (at or past its end) goes into `ledger_lsn`.
fn write_until(env: &[(String, String)], stop: &std::sync::atomic::AtomicBool) {
    let mut c = connect_with(env, "sink_src");
    let mut id = 0i64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let n = if id % 40 == 0 { 500 } else { 1 + id % 3 };
        c.batch_execute(&format!(
            "INSERT INTO ledger SELECT g, repeat('x', 50) FROM generate_series({}, {}) g;
             INSERT INTO ledger_lsn SELECT g, pg_current_wal_insert_lsn() FROM generate_series({}, {}) g",
            id + 1,
            id + n,
            id + 1,
            id + n
        ))
        .unwrap();
        id += n;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `weir-cdc --confirm-from file:///DIR | weir-sink file:///DIR`, one stage killed with SIGKILL
/// six times while a writer runs: after each kill every transaction at or before the slot's
/// confirmed position is in the files; at the end the files hold every row exactly once, in
/// whole lines and whole transactions. weir-sink syncs once a second, so without
/// --confirm-from (the slot confirming what was merely written) the first round fails.
#[test]
fn the_file_sink_survives_kill_9_with_nothing_lost_or_doubled() {
    let c = cluster();
    c.create_db(
        "sink_src",
        "CREATE TABLE ledger (id bigint PRIMARY KEY, pad text);
         CREATE TABLE ledger_lsn (id bigint, lsn pg_lsn);
         CREATE PUBLICATION pub FOR TABLE ledger;",
    );
    let o = run_on(
        c,
        "weir-cdc",
        &["-d", "sink_src", "-S", "sink_slot", "--create-slot"],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, env) = (stop.clone(), c.env());
        std::thread::spawn(move || write_until(&env, &stop))
    };
    let mut rand = clock_seeded_rand();
    for round in 0..6 {
        let (mut cdc, mut sink) = pipeline(c, dir.path(), None);
        std::thread::sleep(std::time::Duration::from_millis(1000 + rand(1500)));
        let victim = if rand(2) == 0 { &mut cdc } else { &mut sink };
        victim.kill().unwrap();
        let _ = cdc.kill();
        let _ = (cdc.wait(), sink.wait());
        let confirmed = c.psql(
            "postgres",
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'sink_slot'",
        );
        let have: std::collections::HashSet<i64> =
            ids(&delivered(dir.path())).into_iter().collect();
        let due = c.psql(
            "sink_src",
            &format!(
                "SELECT id FROM ledger_lsn WHERE lsn <= '{}'",
                confirmed.trim()
            ),
        );
        let missing = due
            .split_whitespace()
            .filter(|id| !have.contains(&id.parse().unwrap()))
            .count()
            .to_string();
        assert_eq!(
            missing.trim(),
            "0",
            "round {round}: confirmed {} but rows before it are not in the files",
            confirmed.trim()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let end = c.psql("sink_src", "SELECT pg_current_wal_insert_lsn()");
    let (cdc, sink) = pipeline(c, dir.path(), Some(end.trim()));
    let (cdc, sink) = (
        cdc.wait_with_output().unwrap(),
        sink.wait_with_output().unwrap(),
    );
    assert!(cdc.status.success(), "{}", stderr(&cdc));
    assert!(sink.status.success(), "{}", stderr(&sink));
    let mut have = ids(&delivered(dir.path()));
    let n = have.len();
    have.sort();
    have.dedup();
    assert_eq!(have.len(), n, "a row delivered twice");
    let rows: usize = c
        .psql("sink_src", "SELECT count(*) FROM ledger")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, rows);
    assert!(rows > 1000, "the writer wrote: {rows}");
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files > 2, "the files rotated: {files}");

    // The same lines in Debezium's envelope: one create event a row, nothing for begin and
    // commit, the source position carried.
    let lines = delivered(dir.path()).join("\n") + "\n";
    let saved = dir.path().join("all.jsonl.saved");
    std::fs::write(&saved, &lines).unwrap();
    let dbz = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dbz.path().display());
    let o = run_on(
        c,
        "weir-sink",
        &[
            "-q",
            &url,
            "--format",
            "debezium",
            "-f",
            saved.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let events = delivered(dbz.path());
    assert_eq!(events.len(), rows);
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["op"], "c", "{e}");
        assert!(v["before"].is_null() && v["after"]["id"].is_string(), "{e}");
        assert!(v["source"]["lsn"].as_u64().unwrap() > 0, "{e}");
    }
    let o = run_on(
        c,
        "weir-cdc",
        &["-d", "sink_src", "-S", "sink_slot", "--drop-slot"],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
