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

/// `weir-cdc --confirm-from file:///DIR | weir-sink URL` (with `--state DIR` unless URL is
/// that directory), until `end` if given.
fn pipeline(c: &Cluster, db: &str, dir: &Path, sink: &str, end: Option<&str>) -> (Child, Child) {
    let slot = format!("{db}_slot");
    let url = format!("file://{}", dir.display());
    let mut args = vec!["-q", "-d", db, "-S", &slot, "--publication", "pub"];
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
    cmd.args(["-q", sink, "--rotate-size", "1", "--sync-interval", "1000"]);
    if sink != url {
        cmd.args(["--state", dir.to_str().unwrap()]);
    }
    let sink = scrub(&mut cmd, &c.env())
        .stdin(Stdio::from(cdc.stdout.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (cdc, sink)
}

/// Transactions of one to 500 rows until `stop`; after each commit the WAL insert position
/// (at or past its end) goes into `ledger_lsn`.
fn write_until(env: &[(String, String)], db: &str, stop: &std::sync::atomic::AtomicBool) {
    let mut c = connect_with(env, db);
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

/// A database `db` with the ledger the writer fills, its publication and the slot `{db}_slot`.
fn ledger_db(c: &Cluster, db: &str) {
    c.create_db(
        db,
        "CREATE TABLE ledger (id bigint PRIMARY KEY, pad text);
         CREATE TABLE ledger_lsn (id bigint, lsn pg_lsn);
         CREATE PUBLICATION pub FOR TABLE ledger;",
    );
    create_slot(c, db);
}

fn create_slot(c: &Cluster, db: &str) {
    cdc_slot(c, db, &format!("{db}_slot"), "--create-slot");
}

/// `pipeline` started `rounds` times while a writer inserts into the ledger, one stage killed
/// with SIGKILL at a random moment each time: after each kill every row at or before the
/// slot's confirmed position is among `have()`. Then the writer stops and one more run
/// delivers everything up to the end of the WAL.
fn kill_rounds(
    c: &Cluster,
    db: &str,
    dir: &Path,
    sink: &str,
    rounds: usize,
    have: impl Fn() -> Vec<i64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, env, db) = (stop.clone(), c.env(), db.to_string());
        std::thread::spawn(move || write_until(&env, &db, &stop))
    };
    let mut rand = clock_seeded_rand();
    for round in 0..rounds {
        let (mut cdc, mut sink) = pipeline(c, db, dir, sink, None);
        std::thread::sleep(std::time::Duration::from_millis(1000 + rand(1500)));
        let victim = if rand(2) == 0 { &mut cdc } else { &mut sink };
        victim.kill().unwrap();
        let _ = cdc.kill();
        let _ = (cdc.wait(), sink.wait());
        let confirmed = c.psql(
            "postgres",
            &format!(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{db}_slot'"
            ),
        );
        let have: std::collections::HashSet<i64> = have().into_iter().collect();
        let due = c.psql(
            db,
            &format!(
                "SELECT id FROM ledger_lsn WHERE lsn <= '{}'",
                confirmed.trim()
            ),
        );
        let missing = due
            .split_whitespace()
            .filter(|id| !have.contains(&id.parse().unwrap()))
            .count();
        assert_eq!(
            missing,
            0,
            "round {round}: confirmed {} but rows before it are not delivered",
            confirmed.trim()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let end = c.psql(db, "SELECT pg_current_wal_insert_lsn()");
    let (cdc, sink) = pipeline(c, db, dir, sink, Some(end.trim()));
    let (cdc, sink) = (
        cdc.wait_with_output().unwrap(),
        sink.wait_with_output().unwrap(),
    );
    assert!(cdc.status.success(), "{}", stderr(&cdc));
    assert!(sink.status.success(), "{}", stderr(&sink));
}

/// `weir-cdc --confirm-from file:///DIR | weir-sink file:///DIR`, one stage killed with SIGKILL
/// six times while a writer runs: after each kill every transaction at or before the slot's
/// confirmed position is in the files; at the end the files hold every row exactly once, in
/// whole lines and whole transactions. weir-sink syncs once a second, so without
/// --confirm-from (the slot confirming what was merely written) the first round fails.
#[test]
fn the_file_sink_survives_kill_9_with_nothing_lost_or_doubled() {
    let c = cluster();
    ledger_db(c, "sink_src");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    kill_rounds(c, "sink_src", dir.path(), &url, 6, || {
        ids(&delivered(dir.path()))
    });
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
    drop_slot(c, "sink_src");
}

fn drop_slot(c: &Cluster, db: &str) {
    cdc_slot(c, db, &format!("{db}_slot"), "--drop-slot");
}

/// A change stream to deliver: a fresh slot's changes for `sql`, written by weir-cdc to a file.
fn saved_stream(c: &Cluster, db: &str, setup: &str, sql: &str) -> tempfile::NamedTempFile {
    c.create_db(db, setup);
    create_slot(c, db);
    let slot = format!("{db}_slot");
    c.psql(db, sql);
    let end = c.psql(db, "SELECT pg_current_wal_insert_lsn()");
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    let args = [
        "-q",
        "-d",
        db,
        "-S",
        &slot,
        "--publication",
        "pub",
        "--stream",
    ];
    let o = run_on(
        c,
        "weir-cdc",
        &[&args[..], &["-E", end.trim(), "-o", path]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    drop_slot(c, db);
    file
}

/// How the test webhook answers one request.
enum Answer {
    Ok,
    Status(u16, &'static str),
    /// Answers 503 only after the client's timeout has passed.
    Slow,
}

/// A request the test webhook answered 2xx: its headers (lower-cased names) and body.
type Taken = (std::collections::HashMap<String, String>, Vec<u8>);

/// A webhook on 127.0.0.1 that answers the n-th request (from 1) as `policy` says and keeps
/// the requests it answered 2xx, in order. HTTP/1.1 with keep-alive, as hyper's client uses it.
fn webhook(
    policy: impl Fn(usize, &[u8]) -> Answer + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Taken>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex, atomic::AtomicUsize, atomic::Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let taken: Arc<Mutex<Vec<Taken>>> = Arc::default();
    let (policy, count) = (Arc::new(policy), Arc::new(AtomicUsize::new(0)));
    let kept = taken.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let (policy, count, kept) = (policy.clone(), count.clone(), kept.clone());
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut headers = std::collections::HashMap::new();
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    assert!(line.starts_with("POST /hook "), "{line}");
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        let Some((k, v)) = line.trim_end().split_once(':') else {
                            break;
                        };
                        headers.insert(k.to_lowercase(), v.trim().to_string());
                    }
                    let mut body = vec![0; headers["content-length"].parse().unwrap()];
                    r.read_exact(&mut body).unwrap();
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    let (code, text) = match policy(n, &body) {
                        Answer::Ok => {
                            kept.lock().unwrap().push((headers, body));
                            (200, "")
                        }
                        Answer::Status(code, text) => (code, text),
                        Answer::Slow => {
                            std::thread::sleep(std::time::Duration::from_millis(1500));
                            (503, "")
                        }
                    };
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, taken)
}

/// The transactions of a stream, each its lines with newlines.
fn transactions(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for l in stream.split_inclusive(|&b| b == b'\n') {
        cur.extend_from_slice(l);
        if l.starts_with(b"{\"action\":\"C\"") {
            out.push(std::mem::take(&mut cur));
        }
    }
    assert!(cur.is_empty(), "a stream that ends inside a transaction");
    out
}

/// weir-sink to a webhook that fails every third request with a 503 and lets every tenth
/// run past the client's timeout: each transaction arrives exactly once among the requests
/// answered 2xx, in stream order, a big one in parts under --max-body; run again with the
/// same --state, nothing is sent. A receiver that answers 400 stops weir-sink with the
/// status and the body named, and the state names the last transaction it took.
#[test]
fn the_webhook_sink_delivers_every_transaction_once_in_order_through_failures() {
    let c = cluster();
    let stream = saved_stream(
        c,
        "hook_src",
        "CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE PUBLICATION pub FOR TABLE t;",
        &(1..=20)
            .map(|i| format!("INSERT INTO t VALUES ({i}, 'row {i}');"))
            .chain([
                "INSERT INTO t SELECT g, repeat('y', 100) FROM generate_series(100, 30000) g;"
                    .into(),
                "UPDATE t SET pad = 'last' WHERE id = 1;".into(),
            ])
            .collect::<String>(),
    );
    let bytes = std::fs::read(stream.path()).unwrap();
    let txns = transactions(&bytes);
    assert_eq!(txns.len(), 22);
    let (url, taken) = webhook(|n, _| match n {
        n if n % 3 == 1 => Answer::Status(503, "busy"),
        n if n % 10 == 0 => Answer::Slow,
        _ => Answer::Ok,
    });
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let input = stream.path().to_str().unwrap();
    let args = [
        "-q",
        "-f",
        input,
        "--state",
        state_arg,
        "--timeout",
        "1",
        "--max-body",
        "1",
        &url,
    ];
    let o = run_on(c, "weir-sink", &args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let got = taken.lock().unwrap().clone();
    let mut whole: Vec<Vec<u8>> = Vec::new();
    let mut part = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for (h, body) in &got {
        assert!(
            keys.insert(h["idempotency-key"].clone()),
            "{} twice",
            h["idempotency-key"]
        );
        assert_eq!(h["content-type"], "application/x-ndjson");
        assert!(
            body.len() <= 1 << 20,
            "a body over --max-body: {}",
            body.len()
        );
        part.extend_from_slice(body);
        if h["weir-last-part"] == "true" {
            whole.push(std::mem::take(&mut part));
        }
    }
    assert!(got.len() > whole.len(), "the big transaction went in parts");
    assert_eq!(whole.len(), txns.len(), "transactions delivered");
    for (i, (a, b)) in whole.iter().zip(&txns).enumerate() {
        assert!(
            a == b,
            "transaction {i} differs: {}",
            String::from_utf8_lossy(&a[..a.len().min(300)])
        );
    }
    let end = transactions_end(&bytes);
    let pos: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("position")).unwrap()).unwrap();
    assert_eq!(pos["lsn"], end);

    // Again from the start of the stream: all of it is there already.
    let o = run_on(c, "weir-sink", &args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(taken.lock().unwrap().len(), got.len(), "a repeat was sent");

    // A receiver that refuses the update.
    let (url, taken) = webhook(|_, body| match holds(body, "\"U\"") {
        true => Answer::Status(400, "no such table: t"),
        false => Answer::Ok,
    });
    let fresh = tempfile::tempdir().unwrap();
    let state_arg = fresh.path().to_str().unwrap();
    let args = ["-f", input, "--state", state_arg, "--max-body", "1", &url];
    let o = run_on(c, "weir-sink", &args, b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("400") && err.contains("no such table: t"),
        "{err}"
    );
    let taken = taken.lock().unwrap();
    let last_taken = taken.last().unwrap();
    let pos: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fresh.path().join("position")).unwrap()).unwrap();
    assert_eq!(
        txns.len() - 1,
        taken
            .iter()
            .filter(|t| t.0["weir-last-part"] == "true")
            .count()
    );
    assert!(holds(&last_taken.1, "\"C\""));
    assert_eq!(
        pos["lsn"].as_str().unwrap(),
        transactions_end(&txns[..21].concat())
    );
}

/// The nextlsn of a stream's last commit line.
fn transactions_end(stream: &[u8]) -> String {
    let last = stream
        .split(|&b| b == b'\n')
        .rfind(|l| l.starts_with(b"{\"action\":\"C\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(last).unwrap();
    v["nextlsn"].as_str().unwrap().to_string()
}

/// A JetStream server on a free port for the life of the value (Debian's nats-server).
struct NatsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server) runs");
        wait_until("nats-server listening", 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        NatsServer {
            child,
            port,
            _dir: dir,
        }
    }

    /// Every message stream `stream` holds, in order, as a consumer reads them.
    fn messages(&self, stream: &str) -> Vec<String> {
        use weir::cdc::sink::nats::Conn;
        let addr = format!("127.0.0.1:{}", self.port);
        let mut conn = Conn::connect(&addr, std::time::Duration::from_secs(10)).unwrap();
        let info = conn
            .api(&format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
            .unwrap();
        let last = info["state"]["last_seq"].as_u64().unwrap();
        (1..=last)
            .map(|seq| {
                let m = conn
                    .api(
                        &format!("STREAM.MSG.GET.{stream}"),
                        &serde_json::json!({ "seq": seq }),
                    )
                    .unwrap();
                let data = m["message"]["data"].as_str().unwrap();
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap();
                String::from_utf8(bytes).unwrap()
            })
            .collect()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weir-cdc --confirm-from file:///STATE | weir-sink --state STATE nats://...`, one stage
/// killed with SIGKILL four times while a writer runs: after each kill every row at or before
/// the slot's confirmed position is in the stream; at the end a consumer reading the stream
/// from its first message gets every row exactly once, in commit order, every transaction
/// whole, though the sink was killed mid-transaction.
#[test]
fn nats_jetstream_holds_every_change_once_after_the_sink_is_killed_and_restarted() {
    let c = cluster();
    ledger_db(c, "nats_src");
    let nats = NatsServer::start();
    // The server's duplicate window cut to 0.1 s: what keeps a replay out is weir-sink's own
    // resume after the last message, not the window.
    let mut conn = weir::cdc::sink::nats::Conn::connect(
        &format!("127.0.0.1:{}", nats.port),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let config = serde_json::json!({"name": "LEDGER", "subjects": ["cdc.ledger"],
        "storage": "file", "duplicate_window": 100_000_000});
    let made = conn.api("STREAM.CREATE.LEDGER", &config).unwrap();
    assert!(made.get("error").is_none(), "{made}");
    let state = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}/cdc.ledger?stream=LEDGER", nats.port);
    kill_rounds(c, "nats_src", state.path(), &url, 4, || {
        // The stream may end inside a transaction the sink was killed in: what the slot
        // confirmed ends before it.
        let m = nats.messages("LEDGER");
        let whole = m
            .iter()
            .rposition(|l| l.starts_with("{\"action\":\"C\""))
            .map_or(0, |i| i + 1);
        ids(&m[..whole])
    });
    let got = ids(&nats.messages("LEDGER"));
    let rows: Vec<i64> = c
        .psql("nats_src", "SELECT id FROM ledger ORDER BY id")
        .split_whitespace()
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(rows.len() > 1000, "the writer wrote: {}", rows.len());
    drop_slot(c, "nats_src");
    assert!(
        got == rows,
        "{} rows in the stream for {} in the table, or out of order",
        got.len(),
        rows.len()
    );
}
