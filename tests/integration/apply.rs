//! weir-apply: weir-cdc's stream applied to a second database, exactly once. The source and
//! the target are databases of the shared cluster (a replication origin, like a slot, is the
//! cluster's); each test has its own slot, origin and databases.

use crate::harness::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SCHEMA: &str = "CREATE TABLE acct (id int PRIMARY KEY, name text, balance numeric, big text,
                          flags bool[], at timestamptz, raw bytea);
     CREATE TABLE item (acct_id int REFERENCES acct (id), n int, note text,
                        doc json DEFAULT '{\"k\": [1, 2.50]}', at point DEFAULT '(1,2)');
     ALTER TABLE item REPLICA IDENTITY FULL;
     CREATE TABLE ledger (id bigint PRIMARY KEY);
     CREATE TABLE ledger_lsn (id bigint, lsn pg_lsn);
     CREATE TABLE slow (id bigint);";

/// Every table's rows, ordered: equal databases give equal digests.
fn digest(c: &Cluster, db: &str) -> String {
    c.psql(
        db,
        "SELECT string_agg(t || ' ' || d, E'\\n' ORDER BY t) FROM (
           SELECT 'acct' t, md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) d FROM acct x
           UNION ALL SELECT 'item', md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM item x
           UNION ALL SELECT 'ledger', count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ledger x) s",
    )
}

fn source_and_target(c: &Cluster, src: &str, dst: &str, slot: &str) {
    c.create_db(
        src,
        &format!("{SCHEMA} CREATE PUBLICATION pub FOR ALL TABLES;"),
    );
    c.create_db(dst, SCHEMA);
    cdc_slot(c, src, slot, "--create-slot");
}

fn current_lsn(c: &Cluster, db: &str) -> String {
    c.psql(db, "SELECT pg_current_wal_insert_lsn()")
        .trim()
        .to_string()
}

#[test]
fn weir_apply_makes_the_target_equal_and_a_replay_changes_nothing() {
    let c = cluster();
    source_and_target(c, "apply_src", "apply_dst", "apply_slot");
    // Every kind of change weir-apply must get right: types and awkward text, an update that
    // leaves a TOASTed value alone (the stream omits it), a key change under REPLICA IDENTITY
    // DEFAULT, duplicates under FULL (one changes), a TRUNCATE ... CASCADE across a foreign
    // key, rows after it. item's identity is FULL and holds json and point, types without
    // an equality operator.
    c.psql(
        "apply_src",
        "INSERT INTO acct VALUES
           (1, 'a''b\tc\nd\\e', 'NaN', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g),
            '{t,f,NULL}', '2026-01-02 03:04:05.678+01', '\\x00ff0a'),
           (2, NULL, '-Infinity', NULL, NULL, NULL, NULL),
           (3, 'three', 3.25, 'x', '{}', 'infinity', '\\x');
         INSERT INTO item VALUES (1, 1, 'dup'), (1, 1, 'dup'), (3, 7, NULL);
         UPDATE acct SET balance = 10 WHERE id = 1;
         UPDATE acct SET id = 20, name = 'moved' WHERE id = 2;
         UPDATE item SET note = 'one of two' WHERE note = 'dup' AND ctid = (SELECT min(ctid) FROM item WHERE note = 'dup');
         DELETE FROM item WHERE n = 7;
         DELETE FROM acct WHERE id = 3;
         BEGIN; INSERT INTO ledger SELECT generate_series(1, 5000); UPDATE acct SET name = 'in a big one' WHERE id = 20; COMMIT;",
    );
    let before_truncate = digest(c, "apply_src");
    c.psql(
        "apply_src",
        "TRUNCATE acct CASCADE;
         INSERT INTO acct VALUES (5, 'after', 1, NULL, NULL, NULL, NULL);
         INSERT INTO item VALUES (5, 2, 'after');",
    );
    let end = current_lsn(c, "apply_src");
    let o = run_on(
        c,
        "weir-cdc",
        &[
            "-d",
            "apply_src",
            "-S",
            "apply_slot",
            "--publication",
            "pub",
            "--stream",
            "-E",
            &end,
            "-q",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stream = o.stdout;
    assert_ne!(before_truncate, digest(c, "apply_src"));

    let o = run_on(
        c,
        "weir-apply",
        &["-d", "apply_dst", "--origin", "apply_o"],
        &stream,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest(c, "apply_dst"), digest(c, "apply_src"));
    let progress = c.psql(
        "postgres",
        "SELECT pg_replication_origin_progress('apply_o', true)",
    );
    assert!(!progress.trim().is_empty());

    // The same stream again: every transaction is already there, and nothing changes.
    c.psql("apply_dst", "INSERT INTO ledger VALUES (-1)");
    let marked = digest(c, "apply_dst");
    let o = run_on(
        c,
        "weir-apply",
        &["-d", "apply_dst", "--origin", "apply_o"],
        &stream,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0 transactions applied"),
        "{}",
        stderr(&o)
    );
    assert_eq!(digest(c, "apply_dst"), marked);

    // A stream cut inside a transaction: the transactions before it apply, nothing of it
    // does, exit 3 names it; the whole stream then completes the copy.
    let text = String::from_utf8_lossy(&stream).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let big = lines
        .iter()
        .position(|l| l.contains("\"table\":\"ledger\""))
        .unwrap();
    let cut = lines[..big + 100].join("\n") + "\n";
    c.create_db("apply_cut", SCHEMA);
    let o = run_on(
        c,
        "weir-apply",
        &["-d", "apply_cut", "--origin", "apply_cut_o"],
        cut.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the stream ended inside transaction"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        c.psql("apply_cut", "SELECT count(*) FROM ledger").trim(),
        "0"
    );
    assert_eq!(c.psql("apply_cut", "SELECT count(*) FROM item").trim(), "2");
    let o = run_on(
        c,
        "weir-apply",
        &["-d", "apply_cut", "--origin", "apply_cut_o"],
        &stream,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest(c, "apply_cut"), digest(c, "apply_src"));

    cdc_slot(c, "apply_src", "apply_slot", "--drop-slot");
}

/// The pipeline `weir-cdc --confirm-from | weir-apply`, one stage killed with SIGKILL ten
/// times while writers run; after each stop, every source transaction that ended at or before
/// the slot's confirmed position is on the target, and at the end the two are equal.
#[test]
fn kill_9_anywhere_in_the_pipeline_loses_nothing_and_applies_nothing_twice() {
    let c = cluster();
    source_and_target(c, "kill_src", "kill_dst", "kill_slot");
    // On the target, a row of `slow` takes 5 ms (a trigger that fires in replica sessions
    // too): a transaction with 150 of them keeps weir-apply busy for most of a second while weir-cdc
    // runs ahead, a window in which confirming what was merely written would lose it (without
    // --confirm-from this test fails: the slot confirms transactions the target lacks).
    c.psql(
        "kill_dst",
        "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.005); RETURN NEW; END $$;
         CREATE TRIGGER nap BEFORE INSERT ON slow FOR EACH ROW EXECUTE FUNCTION nap();
         ALTER TABLE slow ENABLE ALWAYS TRIGGER nap;",
    );
    c.psql(
        "kill_src",
        "INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 50) g",
    );
    let writer = Writer::ledger(c, "kill_src");
    let mut rand = clock_seeded_rand();
    for round in 0..10 {
        let (mut cdc, mut apply) = kill_pipeline(c, None);
        std::thread::sleep(std::time::Duration::from_millis(1500 + rand(1500)));
        let victim = if rand(2) == 0 { &mut cdc } else { &mut apply };
        victim.kill().unwrap();
        // The other stage sees its pipe close; a supervisor would restart both.
        for p in [&mut cdc, &mut apply] {
            wait_or_kill(p);
        }
        let confirmed = c.psql(
            "postgres",
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'kill_slot'",
        );
        let on_target = c.psql("kill_dst", "SELECT count(*) FROM ledger");
        // Every ledger row committed at or before the confirmed position must be there.
        let missing = c.psql(
            "kill_src",
            &format!(
                "SELECT count(*) FROM ledger_lsn WHERE lsn <= '{}' AND id NOT IN ({})",
                confirmed.trim(),
                ids_on(c, "kill_dst")
            ),
        );
        assert_eq!(
            missing.trim(),
            "0",
            "round {round}: the slot confirmed {} but the target misses transactions before it ({} ledger rows there)",
            confirmed.trim(),
            on_target.trim()
        );
    }
    writer.stop();
    let end = current_lsn(c, "kill_src");
    let (cdc, apply) = kill_pipeline(c, Some(&end));
    let (cdc, apply) = (
        cdc.wait_with_output().unwrap(),
        apply.wait_with_output().unwrap(),
    );
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert!(cdc.status.success(), "{}", stderr(&cdc));
    assert_eq!(digest(c, "kill_dst"), digest(c, "kill_src"));
    let rows = c.psql("kill_dst", "SELECT count(*) FROM ledger");
    assert!(
        rows.trim().parse::<u64>().unwrap() > 10,
        "the writers wrote: {rows}"
    );
    cdc_slot(c, "kill_src", "kill_slot", "--drop-slot");
}

/// The ids the target's ledger holds, as an SQL list.
fn ids_on(c: &Cluster, db: &str) -> String {
    let ids = c.psql(
        db,
        "SELECT coalesce(string_agg(id::text, ','), '-1') FROM ledger",
    );
    ids.trim().to_string()
}

/// `weir-cdc ARGS --confirm-from dbname=TARGET --origin ORIGIN | weir-apply`, quiet, with
/// status updates every second.
fn pipeline(c: &Cluster, cdc_args: &[&str], target: &str, origin: &str) -> (Child, Child) {
    spawn_pipeline(c, cdc_args, target, origin, true, &[])
}

/// [`pipeline`], with what the stages say on standard error kept (neither is quiet).
fn pipeline_said(c: &Cluster, cdc_args: &[&str], target: &str, origin: &str) -> (Child, Child) {
    spawn_pipeline(c, cdc_args, target, origin, false, &[])
}

/// `weir-cdc ARGS -s 1 --confirm-from dbname=TARGET --origin ORIGIN | weir-apply -d TARGET
/// --origin ORIGIN APPLY_ARGS`, both with `-q` when `quiet`.
fn spawn_pipeline(
    c: &Cluster,
    cdc_args: &[&str],
    target: &str,
    origin: &str,
    quiet: bool,
    apply_args: &[&str],
) -> (Child, Child) {
    spawn_traced(c, cdc_args, target, origin, (quiet, apply_args), None)
}

/// [`spawn_pipeline`], both stages tracing their decisions into `trace` (WEIR_CDC_TRACE).
fn spawn_traced(
    c: &Cluster,
    cdc_args: &[&str],
    target: &str,
    origin: &str,
    (quiet, apply_args): (bool, &[&str]),
    trace: Option<&Path>,
) -> (Child, Child) {
    let mut env = c.env();
    if let Some(t) = trace {
        env.push(("WEIR_CDC_TRACE".into(), t.display().to_string()));
    }
    let confirm = format!("dbname={target}");
    let q: &[&str] = if quiet { &["-q"] } else { &[] };
    let mut cmd = Command::new(bin("weir-cdc"));
    cmd.args(cdc_args)
        .args(q)
        .args(["-s", "1", "--confirm-from", &confirm, "--origin", origin]);
    let mut cdc = scrub(&mut cmd, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cmd = Command::new(bin("weir-apply"));
    cmd.args(q)
        .args(["-d", target, "--origin", origin])
        .args(apply_args);
    let apply = scrub(&mut cmd, &env)
        .stdin(Stdio::from(cdc.stdout.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (cdc, apply)
}

/// A bounded [`pipeline_said`] (its `-E` in `cdc_args`) run to its end within `secs`:
/// weir-apply's exit status and what both stages said.
fn run_pipeline(
    c: &Cluster,
    cdc_args: &[&str],
    target: &str,
    origin: &str,
    apply_args: &[&str],
    secs: u64,
) -> (Option<i32>, String) {
    run_traced(c, cdc_args, (target, origin), apply_args, secs, None)
}

/// [`run_pipeline`], traced into `trace` when given.
fn run_traced(
    c: &Cluster,
    cdc_args: &[&str],
    (target, origin): (&str, &str),
    apply_args: &[&str],
    secs: u64,
    trace: Option<&Path>,
) -> (Option<i32>, String) {
    let (mut cdc, mut apply) =
        spawn_traced(c, cdc_args, target, origin, (false, apply_args), trace);
    wait_until("the pipeline to end", secs, || {
        apply.try_wait().unwrap().is_some()
    });
    wait_or_kill(&mut cdc);
    let code = apply.wait().unwrap().code();
    (code, stderr_of(&mut [&mut cdc, &mut apply]))
}

/// The kill test's pipeline, streaming until killed or, with `end`, until there.
fn kill_pipeline(c: &Cluster, end: Option<&str>) -> (Child, Child) {
    let mut args = vec![
        "-d",
        "kill_src",
        "-S",
        "kill_slot",
        "--publication",
        "pub",
        "--stream",
    ];
    if let Some(e) = end {
        args.extend(["-E", e]);
    }
    pipeline(c, &args, "kill_dst", "kill_o")
}

/// What the stages wrote to standard error, once they have stopped.
fn stderr_of(stages: &mut [&mut Child]) -> String {
    use std::io::Read;
    let mut out = String::new();
    for p in stages {
        let _ = p.wait();
        if let Some(mut e) = p.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
    }
    out
}

fn wait_or_kill(p: &mut Child) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            let _ = p.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Small transactions until `stop`: each adds a ledger row and changes accounts; after its
/// commit, the WAL insert position (at or past the commit's end) goes into `ledger_lsn`.
fn write_until(env: &[(String, String)], db: &str, stop: &std::sync::atomic::AtomicBool) {
    let mut c = connect_with(env, db);
    let mut id = 0i64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        id += 1;
        let k = (id % 50) + 1;
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO ledger VALUES ({id});
             UPDATE acct SET balance = balance + 1, big = repeat(md5('{id}'), {}) WHERE id = {k};
             INSERT INTO item VALUES ({k}, {id}, 'w');
             DELETE FROM item WHERE n = {};
             INSERT INTO slow SELECT {id} FROM generate_series(1, {}); COMMIT;",
            id % 3 * 100,
            id - 5,
            if id % 100 == 0 { 150 } else { 0 }
        ))
        .unwrap();
        c.batch_execute(&format!(
            "INSERT INTO ledger_lsn SELECT {id}, pg_current_wal_insert_lsn()"
        ))
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A writer on the source on a thread of its own, until [`Writer::stop`].
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// `work(env, stop)` on its own thread; it returns once `stop` is set.
    fn spawn(
        c: &Cluster,
        work: impl FnOnce(&[(String, String)], &std::sync::atomic::AtomicBool) + Send + 'static,
    ) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, env) = (stop.clone(), c.env());
        let thread = std::thread::spawn(move || work(&env, &flag));
        Writer { stop, thread }
    }

    /// [`write_until`] on `db`.
    fn ledger(c: &Cluster, db: &str) -> Writer {
        let db = db.to_string();
        Writer::spawn(c, move |env, stop| write_until(env, &db, stop))
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// `--copy-and-stream -j 4`, a big table in page ranges, while a writer runs through the
/// slot's creation, the copy and after: the target ends equal to the source, so no row was lost or applied twice across
/// the hand-off from the snapshot to the stream.
#[test]
fn copy_and_stream_hands_over_without_losing_or_doubling_a_row() {
    let c = cluster();
    c.create_db(
        "cs_src",
        &format!("{SCHEMA} CREATE PUBLICATION pub FOR ALL TABLES;"),
    );
    c.create_db("cs_dst", SCHEMA);
    c.psql(
        "cs_src",
        "INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 50) g;
         INSERT INTO ledger SELECT generate_series(100001, 160000);",
    );
    let writer = Writer::ledger(c, "cs_src");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let args = [
        "-d",
        "cs_src",
        "-S",
        "cs_slot",
        "--publication",
        "pub",
        "--copy-and-stream",
        "-j",
        "4",
        // The ledger's 60,000 rows fill about 270 pages: copied in ranges of 20.
        "--split-pages",
        "20",
    ];
    let (mut cdc, mut apply) = pipeline(c, &args, "cs_dst", "cs_o");
    std::thread::sleep(std::time::Duration::from_secs(3));
    writer.stop();
    // The last transaction: once the target holds it, it holds everything before it.
    c.psql("cs_src", "INSERT INTO ledger VALUES (-1)");
    let caught_up = "SELECT count(*) FROM ledger WHERE id = -1";
    wait_until("the target to catch up", 60, || {
        if apply.try_wait().unwrap().is_some() || cdc.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            panic!(
                "a stage stopped early: {}",
                stderr_of(&mut [&mut cdc, &mut apply])
            );
        }
        c.psql("cs_dst", caught_up).trim() == "1"
    });
    cdc.kill().unwrap();
    let _ = (cdc.wait(), apply.wait());
    assert_eq!(digest(c, "cs_dst"), digest(c, "cs_src"));
    let copied = c.psql("cs_dst", "SELECT count(*) FROM ledger WHERE id > 100000");
    assert_eq!(copied.trim(), "60000");
    cdc_slot(c, "cs_src", "cs_slot", "--drop-slot");
}

/// A `--copy-and-stream` killed during its copy leaves the target as it was (the copy is one
/// transaction), and the same slot goes on with `--stream --backfill-all` instead of a new
/// copy: the tables are copied from where the target stands, while a writer runs, and end
/// equal to the source's.
#[test]
fn an_interrupted_copy_goes_on_with_backfill_all() {
    let c = cluster();
    c.create_db(
        "ic_src",
        &format!("{SCHEMA} CREATE PUBLICATION pub FOR ALL TABLES;"),
    );
    c.create_db("ic_dst", SCHEMA);
    c.psql(
        "ic_src",
        "INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 50) g;
         INSERT INTO item SELECT g % 50 + 1, g, 'x' FROM generate_series(1, 5000) g;
         INSERT INTO ledger SELECT generate_series(100001, 400000);",
    );
    let writer = Writer::ledger(c, "ic_src");
    let copy = [
        "-d",
        "ic_src",
        "-S",
        "ic_slot",
        "--publication",
        "pub",
        "--copy-and-stream",
    ];
    let (mut cdc, mut apply) = pipeline_said(c, &copy, "ic_dst", "ic_o");
    // The slot shows in pg_replication_slots while it is being made, and is dropped if its
    // maker dies then (it is persisted only once made); the copy starts after that.
    let copying = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = 'ic_src' AND state = 'active' AND query LIKE 'COPY %'";
    wait_until("the copy to start", 30, || {
        c.psql("ic_src", copying).trim() != "0"
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    cdc.kill().unwrap();
    let said = stderr_of(&mut [&mut cdc, &mut apply]);
    let held = "SELECT (SELECT count(*) FROM acct) + (SELECT count(*) FROM ledger)";
    assert!(
        said.contains("weir-apply: "),
        "the kill came after the copy"
    );
    assert_eq!(c.psql("ic_dst", held).trim(), "0", "{said}");

    let resume = [
        "-d",
        "ic_src",
        "-S",
        "ic_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill-all",
    ];
    let (mut cdc, mut apply) = pipeline(c, &resume, "ic_dst", "ic_o");
    std::thread::sleep(std::time::Duration::from_secs(1));
    writer.stop();
    c.psql("ic_src", "INSERT INTO ledger VALUES (-1)");
    wait_until("the target to equal the source", 120, || {
        if apply.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            panic!(
                "weir-apply stopped: {}",
                stderr_of(&mut [&mut cdc, &mut apply])
            );
        }
        digest(c, "ic_dst") == digest(c, "ic_src")
    });
    cdc.kill().unwrap();
    let _ = (cdc.wait(), apply.wait());
    cdc_slot(c, "ic_src", "ic_slot", "--drop-slot");
}

/// One transaction whose rows alone are larger than 256 MiB goes through
/// `weir-cdc | weir-apply` with each stage's peak memory under 256 MiB (GNU time's maximum
/// resident set size), and the target ends equal to the source.
#[test]
fn a_transaction_bigger_than_the_memory_cap_streams_through_under_it() {
    let c = cluster();
    let table = "CREATE TABLE big (id bigint PRIMARY KEY, pad text)";
    c.create_db(
        "big_src",
        &format!("{table}; CREATE PUBLICATION pub FOR TABLE big;"),
    );
    c.create_db("big_dst", table);
    cdc_slot(c, "big_src", "big_slot", "--create-slot");
    // 400,000 rows of 800 bytes: 305 MiB of values, in one transaction.
    c.psql(
        "big_src",
        "INSERT INTO big SELECT g, repeat(md5(g::text), 25) FROM generate_series(1, 400000) g",
    );
    let mib = c.psql("big_src", "SELECT sum(octet_length(pad)) >> 20 FROM big");
    assert!(mib.trim().parse::<u64>().unwrap() > 256, "{mib}");
    let end = current_lsn(c, "big_src");
    let dir = tempfile::tempdir().unwrap();
    let (cdc_rss, apply_rss) = (dir.path().join("cdc"), dir.path().join("apply"));
    let script = format!(
        "set -o pipefail; /usr/bin/time -f %M -o {} '{}' -q -d big_src -S big_slot --publication pub --stream -E {end} \
           --confirm-from dbname=big_dst --origin big_o \
         | /usr/bin/time -f %M -o {} '{}' -q -d big_dst --origin big_o",
        cdc_rss.display(),
        bin("weir-cdc").display(),
        apply_rss.display(),
        bin("weir-apply").display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    let o = scrub(&mut cmd, &c.env()).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let peak = |p: &std::path::Path| -> u64 {
        let text = std::fs::read_to_string(p).unwrap();
        text.trim().lines().last().unwrap().parse().unwrap()
    };
    for (stage, kib) in [
        ("weir-cdc", peak(&cdc_rss)),
        ("weir-apply", peak(&apply_rss)),
    ] {
        eprintln!("{stage}: {kib} KiB peak RSS");
        assert!(kib < 256 << 10, "{stage} peaked at {kib} KiB");
    }
    let sum = "SELECT count(*), sum(hashtext(id || pad)::bigint) FROM big";
    assert_eq!(c.psql("big_dst", sum), c.psql("big_src", sum));
    cdc_slot(c, "big_src", "big_slot", "--drop-slot");
}

/// The columns of every user table, as a user would compare two schemas.
fn columns(c: &Cluster, db: &str) -> String {
    c.psql(
        db,
        "SELECT string_agg(format('%s.%s.%s %s %s', table_schema, table_name, column_name, data_type, column_default), E'\\n' ORDER BY table_schema, table_name, ordinal_position)
           FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'weir_ddl', 'weir_cdc')",
    )
}

/// `weir-cdc --track-ddl | weir-apply --apply-ddl`: an ALTER TABLE ... ADD COLUMN between
/// inserts of one transaction, a table created in a new schema under another search_path and
/// filled, a query text holding DML and two DDL statements (a migration sent whole), and
/// temporary tables (not captured) replay in order: the target ends with the source's columns
/// and rows. Without --apply-ddl the target refuses the first row with the new column, and
/// says why. DDL inside a DO block stops weir-apply with the LSN to skip once it was applied
/// by hand, and --skip-ddl-through then goes on.
#[test]
fn ddl_arrives_in_wal_order_and_replays_at_the_target() {
    let c = cluster();
    let setup = "CREATE TABLE t (id int PRIMARY KEY, a text);";
    c.create_db(
        "ddl_src",
        &format!("{setup} CREATE PUBLICATION pub FOR ALL TABLES;"),
    );
    c.create_db("ddl_dst", setup);
    c.create_db("ddl_dst2", setup);
    let slot = ["-d", "ddl_src", "-S", "ddl_slot"];
    let o = run_on(
        c,
        "weir-cdc",
        &[&slot[..], &["--track-ddl", "--create-slot"]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    c.psql(
        "ddl_src",
        "INSERT INTO t VALUES (1, 'x');
         BEGIN;
         INSERT INTO t VALUES (2, 'y');
         ALTER TABLE t ADD COLUMN b int DEFAULT 7;
         INSERT INTO t VALUES (3, 'z', 30);
         COMMIT;
         UPDATE t SET b = 8 WHERE id = 1;
         CREATE TEMP TABLE scratch (x int); DROP TABLE scratch;
         CREATE SCHEMA s2; SET search_path = s2, public;
         CREATE TABLE u (k int PRIMARY KEY, t_id int REFERENCES t);
         INSERT INTO u VALUES (1, 2);
         RESET search_path;",
    );
    let mut client = connect_with(&c.env(), "ddl_src");
    client
        .batch_execute(
            "INSERT INTO t VALUES (4, 'w;', 1); ALTER TABLE t RENAME COLUMN a TO a2;
             INSERT INTO t VALUES (5, 'v', 2); ALTER TABLE t ALTER COLUMN b TYPE bigint",
        )
        .unwrap();
    client
        .batch_execute("UPDATE t SET a2 = 'q', b = 5000000000 WHERE id = 4")
        .unwrap();
    let end = c.psql("ddl_src", "SELECT pg_current_wal_insert_lsn()");
    let stream = |end: &str| {
        let args = ["-q", "--publication", "pub", "--stream", "-E", end];
        let o = run_on(c, "weir-cdc", &[&slot[..], &args[..]].concat(), b"");
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    };
    let changes = stream(end.trim());
    let o = run_on(
        c,
        "weir-apply",
        &["-q", "-d", "ddl_dst", "--origin", "ddl_o", "--apply-ddl"],
        &changes,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(columns(c, "ddl_dst"), columns(c, "ddl_src"));
    assert_eq!(c.content("ddl_dst"), c.content("ddl_src"));
    assert!(
        columns(c, "ddl_dst").contains("t.b bigint 7"),
        "{}",
        columns(c, "ddl_dst")
    );

    let o = run_on(
        c,
        "weir-apply",
        &["-d", "ddl_dst2", "--origin", "ddl_o2"],
        &changes,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--apply-ddl runs it"), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"b\""), "{}", stderr(&o));

    // DDL the trigger sees only as the text of a DO block.
    c.psql("ddl_src", "DO $$ BEGIN ALTER TABLE t ADD COLUMN c text; END $$; INSERT INTO t VALUES (6, 'u', 6, 'c6');");
    let end = c.psql("ddl_src", "SELECT pg_current_wal_insert_lsn()");
    let changes = stream(end.trim());
    let o = run_on(
        c,
        "weir-apply",
        &["-d", "ddl_dst", "--origin", "ddl_o", "--apply-ddl"],
        &changes,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let at = err
        .split("--skip-ddl-through ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(err.contains("DO block"), "{err}");
    c.psql("ddl_dst", "ALTER TABLE t ADD COLUMN c text");
    let o = run_on(
        c,
        "weir-apply",
        &[
            "-q",
            "-d",
            "ddl_dst",
            "--origin",
            "ddl_o",
            "--apply-ddl",
            "--skip-ddl-through",
            at,
        ],
        &changes,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.content("ddl_dst"), c.content("ddl_src"));

    let o = run_on(
        c,
        "weir-cdc",
        &[&slot[..], &["--untrack-ddl", "--drop-slot"]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        c.psql("ddl_src", "SELECT count(*) FROM pg_event_trigger")
            .trim(),
        "0"
    );
}

/// A slot dropped behind weir-cdc's back while the source goes on writing: streaming stops
/// with the lost-slot status (7) and names --resync; `weir-cdc --resync | weir-apply` then
/// replaces the target's tables with a fresh copy, in one transaction, says which, and streams
/// on: the target equals the source, and later changes keep coming.
#[test]
fn a_dropped_slot_stops_the_stream_and_resync_rebuilds_the_target() {
    let c = cluster();
    source_and_target(c, "rs_src", "rs_dst", "rs_slot");
    let pipeline = |cdc: &[&str], end: &str| {
        let args = [
            "-d",
            "rs_src",
            "-S",
            "rs_slot",
            "--publication",
            "pub",
            "-E",
            end,
        ];
        let more = ["--confirm-from", "dbname=rs_dst", "--origin", "rs_o"];
        let o = run_on(c, "weir-cdc", &[&args[..], &more[..], cdc].concat(), b"");
        assert!(o.status.success(), "{}", stderr(&o));
        let a = run_on(
            c,
            "weir-apply",
            &["-q", "-d", "rs_dst", "--origin", "rs_o"],
            &o.stdout,
        );
        assert!(a.status.success(), "{}", stderr(&a));
        stderr(&o)
    };
    c.psql(
        "rs_src",
        "INSERT INTO acct (id, name) SELECT g, 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO item (acct_id, n) SELECT g, g FROM generate_series(1, 50) g;
         INSERT INTO ledger SELECT generate_series(1, 1000);",
    );
    pipeline(&["--stream", "-q"], &current_lsn(c, "rs_src"));
    assert_eq!(digest(c, "rs_dst"), digest(c, "rs_src"));

    c.psql("postgres", "SELECT pg_drop_replication_slot('rs_slot')");
    c.psql(
        "rs_src",
        "DELETE FROM item WHERE n > 40; UPDATE acct SET name = 'missed' WHERE id < 10;
         INSERT INTO ledger SELECT generate_series(1001, 1500);",
    );
    let o = run_on(
        c,
        "weir-cdc",
        &[
            "-d",
            "rs_src",
            "-S",
            "rs_slot",
            "--publication",
            "pub",
            "--stream",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resync"), "{}", stderr(&o));
    assert_ne!(digest(c, "rs_dst"), digest(c, "rs_src"));

    let said = pipeline(&["--resync"], &current_lsn(c, "rs_src"));
    assert!(
        said.contains("replaced by a copy") && said.contains("public.acct"),
        "{said}"
    );
    assert_eq!(digest(c, "rs_dst"), digest(c, "rs_src"));
    c.psql(
        "rs_src",
        "UPDATE acct SET name = 'after' WHERE id = 20; DELETE FROM ledger WHERE id < 100;",
    );
    pipeline(&["--stream", "-q"], &current_lsn(c, "rs_src"));
    assert_eq!(digest(c, "rs_dst"), digest(c, "rs_src"));
    cdc_slot(c, "rs_src", "rs_slot", "--drop-slot");
}

/// `--on-error dead-letter=FILE`: of five source transactions the target refuses two (a key it
/// already holds, an update of a row it lacks); those two are rolled back and written whole
/// to FILE, the other three are applied, and a replay changes nothing and writes nothing more.
/// Without the option the first refusal stops weir-apply; a garbled line stops it even with it.
#[test]
fn refused_transactions_go_to_the_dead_letter_file_and_the_rest_applies() {
    let c = cluster();
    source_and_target(c, "dl_src", "dl_dst", "dl_slot");
    c.psql(
        "dl_src",
        "INSERT INTO acct (id, name) VALUES (1, 'one'), (2, 'two')",
    );
    c.psql(
        "dl_dst",
        "INSERT INTO acct (id, name) VALUES (1, 'one'), (2, 'two'), (7, 'squatter')",
    );
    let start = current_lsn(c, "dl_src");
    c.psql(
        "dl_src",
        "INSERT INTO ledger SELECT generate_series(1, 100);
         BEGIN; INSERT INTO acct (id, name) VALUES (6, 'six'), (7, 'seven'); INSERT INTO ledger VALUES (500); COMMIT;
         UPDATE acct SET name = 'uno' WHERE id = 1;
         BEGIN; INSERT INTO acct (id, name) VALUES (3, 'three'); UPDATE acct SET name = 'dos' WHERE id = 2; COMMIT;
         INSERT INTO ledger SELECT generate_series(101, 200);",
    );
    c.psql("dl_dst", "DELETE FROM acct WHERE id = 2");
    let end = current_lsn(c, "dl_src");
    let args = [
        "-q",
        "-d",
        "dl_src",
        "-S",
        "dl_slot",
        "--publication",
        "pub",
        "--stream",
    ];
    let o = run_on(
        c,
        "weir-cdc",
        &[&args[..], &["-I", &start, "-E", &end]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stream = o.stdout;

    let o = run_on(
        c,
        "weir-apply",
        &["-d", "dl_dst", "--origin", "dl_stop"],
        &stream,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("duplicate key"), "{}", stderr(&o));
    c.psql("postgres", "SELECT pg_replication_origin_drop('dl_stop')");
    c.psql("dl_dst", "TRUNCATE ledger");

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("refused.jsonl");
    let on_error = format!("dead-letter={}", dead.display());
    let metrics = dir.path().join("apply.prom");
    let apply = || {
        let m = metrics.display().to_string();
        let args = [
            "-d",
            "dl_dst",
            "--origin",
            "dl_o",
            "--on-error",
            &on_error,
            "--metrics",
            &m,
        ];
        run_on(c, "weir-apply", &args, &stream)
    };
    let o = apply();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 refused"), "{}", stderr(&o));
    // What an alert on refused transactions reads.
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for sample in [
        "weir_apply_transactions_total{origin=\"dl_o\",outcome=\"applied\"} 3\n",
        "weir_apply_transactions_total{origin=\"dl_o\",outcome=\"dead_lettered\"} 2\n",
        "weir_apply_last_commit_timestamp_seconds{origin=\"dl_o\"} ",
    ] {
        assert!(prom.contains(sample), "{sample} in {prom}");
    }
    assert_eq!(
        c.psql(
            "dl_dst",
            "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM acct"
        ),
        "1:uno,7:squatter\n"
    );
    assert_eq!(
        c.psql("dl_dst", "SELECT count(*), max(id) FROM ledger"),
        "200|200\n"
    );
    let text = std::fs::read_to_string(&dead).unwrap();
    let actions: String = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(actions, "BIIICBIUC", "{text}");
    assert!(
        text.contains("\"seven\"") && text.contains("\"dos\""),
        "{text}"
    );

    let o = apply();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap(),
        text,
        "written again on a replay"
    );

    // The check names the tables the refused transactions touched (acct by both, ledger by
    // the first), and only those.
    let now = current_lsn(c, "dl_src");
    let checked = [&args[1..], &["--verify", "-E", &now]].concat();
    let (code, said) = run_pipeline(c, &checked, "dl_dst", "dl_o", &[], 60);
    assert_eq!(code, Some(8), "{said}");
    assert!(
        said.contains("public.acct differs")
            && said.contains("public.ledger differs")
            && said.contains("in 2 of 5 tables"),
        "{said}"
    );

    let mut garbled = stream.clone();
    let cut = garbled.len() / 2;
    garbled.splice(cut..cut, b"{\"action\":\n".iter().copied());
    let o = run_on(
        c,
        "weir-apply",
        &["-d", "dl_dst", "--origin", "dl_g", "--on-error", &on_error],
        &garbled,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    c.psql(
        "postgres",
        "SELECT pg_replication_origin_drop('dl_o'); SELECT pg_replication_origin_drop('dl_g')",
    );
    cdc_slot(c, "dl_src", "dl_slot", "--drop-slot");
}

/// `weir-cdc --verify | weir-apply` while a writer runs: the point the check takes falls among
/// the writer's transactions, and the target, read when it has applied exactly those before
/// it, equals the source in every table (keyed ones in 1,000-row chunks, keyless ones whole).
/// Then rows changed on the target behind the pipeline's back: the check exits 8 and names
/// the table without a key and the key range of the keyed table that holds the missing row.
#[test]
fn a_check_at_one_position_finds_the_target_equal_and_names_where_it_differs() {
    let c = cluster();
    source_and_target(c, "vf_src", "vf_dst", "vf_slot");
    c.psql(
        "vf_src",
        "INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 50) g;
         INSERT INTO item (acct_id, n) SELECT g, -g FROM generate_series(1, 50) g;
         INSERT INTO ledger SELECT generate_series(100001, 130000);",
    );
    let writer = Writer::ledger(c, "vf_src");
    // An end before the check's position: the run goes on to that position.
    let check = || {
        let end = current_lsn(c, "vf_src");
        let args = [
            "-d",
            "vf_src",
            "-S",
            "vf_slot",
            "--publication",
            "pub",
            "--stream",
            "--verify",
            "-j",
            "2",
            "--verify-chunk-rows",
            "1000",
            "-E",
            &end,
        ];
        run_pipeline(c, &args, "vf_dst", "vf_o", &["-j", "2"], 120)
    };
    let (code, said) = check();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("the target equals the source in 5 tables"),
        "{said}"
    );

    c.psql(
        "vf_dst",
        "DELETE FROM ledger WHERE id = 112345; INSERT INTO item (acct_id, n) VALUES (1, -1000);",
    );
    let (code, said) = check();
    writer.stop();
    assert_eq!(code, Some(8), "{said}");
    assert!(
        said.contains("public.item differs (no key") && said.contains("in 2 of 5 tables"),
        "{said}"
    );
    // The range named holds the missing row, and is one chunk long.
    let range = said
        .lines()
        .find_map(|l| {
            l.split_once("public.ledger differs in the rows from (id)=(")?
                .1
                .split_once("):")
        })
        .unwrap_or_else(|| panic!("no ledger range in: {said}"))
        .0
        .to_string();
    let (from, to) = range.split_once(") up to (").unwrap();
    let (from, to): (i64, i64) = (from.parse().unwrap(), to.parse().unwrap());
    assert!(from <= 112345 && 112345 < to && to - from <= 1001, "{said}");
    cdc_slot(c, "vf_src", "vf_slot", "--drop-slot");
}

/// `weir-cdc --backfill big`: a 30,000-row table added to a running stream's publication is
/// copied in 1,000-row chunks while a writer keeps changing it (updates that leave a TOASTed
/// value alone, inserts and deletes on both sides of the copied range, keys moved forward and
/// back across it). weir-apply is killed with SIGKILL in the middle; run again with the same
/// flag the pipeline goes on after the greatest key the target holds, not from the start, and
/// weir-apply is killed again once streaming. Then `--verify`, with the writer still going,
/// finds the target equal to the source, and so do ordered digests at the end.
#[test]
fn a_table_added_to_a_running_stream_is_backfilled_in_chunks_and_resumes_after_kill_9() {
    let c = cluster();
    let big = "CREATE TABLE big (id int PRIMARY KEY, v text, pad text);";
    c.create_db(
        "bf_src",
        &format!("{SCHEMA} {big} CREATE PUBLICATION pub FOR TABLE ledger;"),
    );
    c.create_db("bf_dst", &format!("{SCHEMA} {big}"));
    cdc_slot(c, "bf_src", "bf_slot", "--create-slot");
    // Every 100th row's pad is stored out of line (random hex does not compress to 2 kB).
    c.psql(
        "bf_src",
        "INSERT INTO big SELECT g, 'v' || g, CASE WHEN g % 100 = 0
           THEN (SELECT string_agg(md5(random()::text || x), '') FROM generate_series(1, 300) x)
           ELSE 'p' || g END FROM generate_series(1, 30000) g;
         ALTER PUBLICATION pub ADD TABLE big;",
    );
    let writer = Writer::spawn(c, |env, stop| {
        let mut db = connect_with(env, "bf_src");
        let mut rand = clock_seeded_rand();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let (a, b, d) = (rand(30000) + 1, rand(30000) + 1, rand(30000) + 1);
            // Rows with an out-of-line pad never change their key: the stream does not carry
            // the pad then, and a row moved from the copied range into the chunk under way
            // after its read cannot be rebuilt (weir-cdc stops and says so; docs/cdc.md).
            let back = if b % 100 == 0 { b + 1 } else { b };
            let fwd = rand(30000) + 1;
            let fwd = if fwd % 100 == 0 { fwd + 1 } else { fwd };
            db.batch_execute(&format!(
                "BEGIN; UPDATE big SET v = 'u{i}' WHERE id = {a};
                     INSERT INTO big VALUES ({}, 'new', 'n'), ({}, 'neg', 'n');
                     DELETE FROM big WHERE id = {d};
                     UPDATE big SET id = id + 1000000 WHERE id = {} AND {i} % 7 = 0;
                     UPDATE big SET id = -id - 2000000 WHERE id = {back} AND {i} % 5 = 0;
                     INSERT INTO ledger VALUES ({i}); COMMIT;",
                100000 + i,
                -(i as i64),
                fwd,
            ))
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let args = [
        "-d",
        "bf_src",
        "-S",
        "bf_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill",
        "big",
        "--backfill-chunk-rows",
        "1000",
    ];
    let count = || {
        c.psql("bf_dst", "SELECT count(*) FROM big")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let started = |cdc: &mut Child, apply: &mut Child| {
        if apply.try_wait().unwrap().is_some() || cdc.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            panic!("a stage stopped: {}", stderr_of(&mut [cdc, apply]));
        }
    };
    // weir-apply killed with SIGKILL during the backfill (weir-cdc stops on the broken pipe).
    let (mut cdc, mut apply) = pipeline_said(c, &args, "bf_dst", "bf_o");
    wait_until("part of the table to be copied", 60, || {
        started(&mut cdc, &mut apply);
        count() >= 8000
    });
    apply.kill().unwrap();
    wait_or_kill(&mut cdc);
    let first = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(
        first.contains("backfilling public.big from its start"),
        "{first}"
    );
    assert!(count() < 25000, "the kill came too late to test a resume");

    // The same command goes on after the target's greatest key; once the backfill is over,
    // weir-apply is killed again while it streams.
    let (mut cdc, mut apply) = pipeline_said(c, &args, "bf_dst", "bf_o");
    let said = live_stderr(&mut cdc);
    wait_until("the backfill to complete", 120, || {
        assert!(
            apply.try_wait().unwrap().is_none(),
            "{}",
            said.lock().unwrap()
        );
        said.lock()
            .unwrap()
            .contains("backfill of public.big complete")
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    apply.kill().unwrap();
    wait_or_kill(&mut cdc);
    let _ = stderr_of(&mut [&mut cdc, &mut apply]);
    let second = said.lock().unwrap().clone();
    assert!(
        second.contains("backfilling public.big after key ("),
        "{second}"
    );

    // A run without --backfill, with the writer still going: the check finds the target equal
    // to the source at its position.
    let plain = &args[..7];
    let end = current_lsn(c, "bf_src");
    let checked = [plain, &["--verify", "-E", &end]].concat();
    let (code, third) = run_pipeline(c, &checked, "bf_dst", "bf_o", &[], 120);
    assert_eq!(code, Some(0), "{third}");
    assert!(
        third.contains("the target equals the source in 2 tables"),
        "{third}"
    );

    // And by ordered digests, once the writer stopped and the stream caught up.
    writer.stop();
    let end = current_lsn(c, "bf_src");
    let last = [plain, &["-E", &end]].concat();
    let (_, said) = run_pipeline(c, &last, "bf_dst", "bf_o", &[], 60);
    let same = "SELECT (SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM big b),
                       (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM ledger l)";
    assert_eq!(c.psql("bf_dst", same), c.psql("bf_src", same), "{said}");
    cdc_slot(c, "bf_src", "bf_slot", "--drop-slot");
}

/// What `p` writes to standard error, gathered as it comes.
fn live_stderr(p: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::Read;
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (mut from, to) = (p.stderr.take().unwrap(), said.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            to.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    said
}

/// `--backfill-all` as a new replica's initial copy: a fresh slot, the publication's tables
/// copied one after the other in chunks while a writer runs, weir-cdc killed with SIGKILL
/// during the copy and started again with the same command: it goes on where the target
/// stands, and the target's tables end equal to the source's. One of them (item) has no key
/// and holds duplicate rows: it is read whole while the writer inserts into it and deletes
/// from it.
#[test]
fn an_initial_copy_by_backfill_all_resumes_after_kill_9() {
    let c = cluster();
    let scratch = tempfile::tempdir().unwrap();
    let trace = scratch.path().join("trace");
    let traced =
        |args: &[&str]| spawn_traced(c, args, "ba_dst", "ba_o", (false, &[]), Some(&trace));
    c.create_db(
        "ba_src",
        &format!("{SCHEMA} CREATE PUBLICATION pub FOR TABLE acct, item, ledger;"),
    );
    c.create_db("ba_dst", SCHEMA);
    c.psql(
        "ba_src",
        "INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 50) g;
         INSERT INTO item SELECT g % 50 + 1, g % 2000, 'x' FROM generate_series(1, 40000) g;
         INSERT INTO ledger SELECT generate_series(100001, 120000);",
    );
    cdc_slot(c, "ba_src", "ba_slot", "--create-slot");
    let writer = Writer::ledger(c, "ba_src");
    let args = [
        "-d",
        "ba_src",
        "-S",
        "ba_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill-all",
        "--backfill-chunk-rows",
        "500",
    ];
    let ledger = |db: &str| {
        c.psql(db, "SELECT count(*) FROM ledger")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let (mut cdc, mut apply) = traced(&args);
    let mut stopped = false;
    wait_until("part of the ledger to be copied", 60, || {
        stopped = apply.try_wait().unwrap().is_some() || cdc.try_wait().unwrap().is_some();
        stopped || ledger("ba_dst") >= 5000
    });
    if stopped {
        panic!("stopped: {}", stderr_of(&mut [&mut cdc, &mut apply]));
    }
    cdc.kill().unwrap();
    let first = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(
        first.contains("backfill of public.acct complete")
            && first.contains("backfilling public.item whole, at one snapshot")
            && first.contains("backfill of public.item complete"),
        "{first}"
    );
    assert!(
        ledger("ba_dst") < 15000,
        "the kill came too late to test a resume"
    );

    let (mut cdc, mut apply) = traced(&args);
    std::thread::sleep(std::time::Duration::from_secs(1));
    writer.stop();
    c.psql("ba_src", "INSERT INTO ledger VALUES (-1)");
    let same = "SELECT (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM acct a),
                       (SELECT count(*) || md5(string_agg(i::text, ',' ORDER BY i::text)) FROM item i),
                       (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM ledger l)";
    let t0 = std::time::Instant::now();
    while c.psql("ba_dst", same) != c.psql("ba_src", same) {
        if t0.elapsed().as_secs() > 120 || apply.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            let _ = apply.kill();
            let said = stderr_of(&mut [&mut cdc, &mut apply]);
            let mut diffs = String::new();
            let mut keys = Vec::new();
            for q in [
                "SELECT id || ' ' || a::text FROM acct a",
                "SELECT acct_id || ':' || n || ' ' || i::text FROM item i",
                "SELECT id::text FROM ledger",
            ] {
                let (diff, k) = rows_diff(c, ("ba_src", "ba_dst"), q);
                diffs += &format!("{q}: {diff}\n");
                keys.extend(k);
            }
            let traced = traced_about(&trace, &keys);
            panic!("{diffs}first run: {first}\nsecond run: {said}\ntrace:\n{traced}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    cdc.kill().unwrap();
    let second = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(
        second.contains(
            "backfilling public.item skipped: it has no key, and the target holds its rows"
        ) && second.contains("backfilling public.ledger after key (")
            && second.contains("backfill of public.ledger complete"),
        "{second}"
    );
    cdc_slot(c, "ba_src", "ba_slot", "--drop-slot");
}

/// A table added to a running stream's publication is copied into it without a restart: the
/// plain pipeline (no --backfill) notices it, records it on the target as being copied, and
/// copies it in chunks while a writer changes it, keys moved across the copied bound included.
/// weir-apply is killed with SIGKILL during the copy; the same plain command goes on after the
/// greatest key the target holds. A second table added while the target's copy of it holds a
/// stray row is refused, with the way out named; emptied, it is copied by the next run. The
/// check, with the writer still going, then finds the target equal, and so do ordered digests.
#[test]
fn a_table_added_to_the_publication_is_copied_without_a_restart_and_resumes_after_kill_9() {
    let c = cluster();
    // Both stages trace their decisions: a failure prints those about the rows that differ.
    let scratch = tempfile::tempdir().unwrap();
    let trace = scratch.path().join("trace");
    let traced =
        |args: &[&str]| spawn_traced(c, args, "ad_dst", "ad_o", (false, &[]), Some(&trace));
    let big = "CREATE TABLE big (id int PRIMARY KEY, v text);";
    c.create_db(
        "ad_src",
        &format!("{SCHEMA} {big} CREATE PUBLICATION pub FOR TABLE ledger;"),
    );
    c.create_db("ad_dst", &format!("{SCHEMA} {big}"));
    cdc_slot(c, "ad_src", "ad_slot", "--create-slot");
    c.psql(
        "ad_src",
        "INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 20000) g;
         INSERT INTO acct SELECT g, 'n' || g, g, NULL, NULL, now(), NULL FROM generate_series(1, 300) g;",
    );
    let writer = Writer::spawn(c, |env, stop| {
        let mut db = connect_with(env, "ad_src");
        let mut rand = clock_seeded_rand();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let (a, d, m, k) = (
                rand(20000) + 1,
                rand(20000) + 1,
                rand(20000) + 1,
                rand(300) + 1,
            );
            db.batch_execute(&format!(
                "BEGIN; UPDATE big SET v = 'u{i}' WHERE id = {a};
                     INSERT INTO big VALUES ({}, 'new');
                     DELETE FROM big WHERE id = {d};
                     UPDATE big SET id = -id - 1000000 WHERE id = {m} AND {i} % 5 = 0;
                     UPDATE acct SET balance = balance + 1 WHERE id = {k};
                     INSERT INTO ledger VALUES ({i}); COMMIT;",
                100000 + i
            ))
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let args = [
        "-d",
        "ad_src",
        "-S",
        "ad_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill-chunk-rows",
        "500",
    ];
    let count = |table: &str| {
        c.psql("ad_dst", &format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let t0 = std::time::Instant::now();
    let alive = |cdc: &mut Child, apply: &mut Child, said: &str| {
        if t0.elapsed().as_secs() > 200 {
            panic!("so far: {said}");
        }
        if apply.try_wait().unwrap().is_some() || cdc.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            let _ = apply.kill();
            panic!("a stage stopped: {said}{}", stderr_of(&mut [apply]));
        }
    };

    // The stream runs (its first run records the published tables as ready), then big joins.
    let (mut cdc, mut apply) = traced(&args);
    let said = live_stderr(&mut cdc);
    wait_until("the stream to run", 30, || {
        alive(&mut cdc, &mut apply, &said.lock().unwrap());
        count("ledger") > 0
    });
    c.psql("ad_src", "ALTER PUBLICATION pub ADD TABLE big");
    wait_until("part of big to be copied", 60, || {
        alive(&mut cdc, &mut apply, &said.lock().unwrap());
        count("big") >= 3000
    });
    apply.kill().unwrap();
    wait_or_kill(&mut cdc);
    let _ = stderr_of(&mut [&mut cdc, &mut apply]);
    let first = said.lock().unwrap().clone();
    assert!(
        first.contains("public.big joined publication pub: it is copied into the stream")
            && first.contains("backfilling public.big from its start"),
        "{first}"
    );
    assert!(
        count("big") < 17000,
        "the kill came too late to test a resume"
    );
    let state = "SELECT string_agg(name || ' ' || state, ', ' ORDER BY name) FROM weir_cdc.tables";
    assert_eq!(
        c.psql("ad_dst", state).trim(),
        "public.big copying, public.ledger ready"
    );

    // The same plain command goes on after the target's greatest key.
    let (mut cdc, mut apply) = traced(&args);
    let said = live_stderr(&mut cdc);
    wait_until("big to be ready", 120, || {
        alive(&mut cdc, &mut apply, &said.lock().unwrap());
        said.lock().unwrap().contains("public.big is ready")
    });
    assert!(
        said.lock()
            .unwrap()
            .contains("backfilling public.big after key ("),
        "{}",
        said.lock().unwrap()
    );
    // acct joins while the target's copy holds a row weir did not copy: weir-cdc stops.
    c.psql("ad_dst", "INSERT INTO acct (id) VALUES (-1)");
    c.psql("ad_src", "ALTER PUBLICATION pub ADD TABLE acct");
    wait_until("weir-cdc to refuse acct", 30, || {
        cdc.try_wait().unwrap().is_some()
    });
    assert!(!cdc.wait().unwrap().success());
    wait_or_kill(&mut apply);
    let _ = stderr_of(&mut [&mut cdc, &mut apply]);
    let second = said.lock().unwrap().clone();
    assert!(
        second.contains("public.acct joined the publication and the target's copy already holds rows weir-cdc did not copy: empty it (TRUNCATE)"),
        "{second}"
    );

    // Emptied, acct is copied by the next run; weir-apply is killed again while it streams.
    c.psql("ad_dst", "DELETE FROM acct");
    let (mut cdc, mut apply) = traced(&args);
    let said = live_stderr(&mut cdc);
    wait_until("acct to be ready", 60, || {
        alive(&mut cdc, &mut apply, &said.lock().unwrap());
        said.lock().unwrap().contains("public.acct is ready")
    });
    apply.kill().unwrap();
    wait_or_kill(&mut cdc);
    let _ = stderr_of(&mut [&mut cdc, &mut apply]);

    // With the writer still going, the check finds the target equal at its position.
    let plain = &args[..7];
    let end = current_lsn(c, "ad_src");
    let checked = [plain, &["--verify", "-E", &end]].concat();
    let (code, third) = run_traced(c, &checked, ("ad_dst", "ad_o"), &[], 120, Some(&trace));
    let equal = code == Some(0) && third.contains("the target equals the source in 3 tables");
    writer.stop();
    let end = current_lsn(c, "ad_src");
    let last = [plain, &["-E", &end]].concat();
    let (_, said) = run_traced(c, &last, ("ad_dst", "ad_o"), &[], 60, Some(&trace));
    if !equal {
        // Where they differ, now that both stand still.
        let (diff, keys) = row_diff(c, "ad_src", "ad_dst", "big");
        let traced = traced_about(&trace, &keys);
        panic!("{diff}\n{third}\nfirst run: {first}\nsecond run: {second}\ntrace:\n{traced}");
    }
    let same = "SELECT (SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM big b),
                       (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM acct a),
                       (SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM ledger l)";
    assert_eq!(c.psql("ad_dst", same), c.psql("ad_src", same), "{said}");
    cdc_slot(c, "ad_src", "ad_slot", "--drop-slot");
}

/// A partitioned table published through its root is backfilled from its partitions (the
/// root holds no rows of its own), with changes to it during the copy.
#[test]
fn a_partitioned_table_is_backfilled_through_its_root() {
    let c = cluster();
    let pt = "CREATE TABLE pt (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
              CREATE TABLE pt_a PARTITION OF pt FOR VALUES FROM (MINVALUE) TO (1500);
              CREATE TABLE pt_b PARTITION OF pt FOR VALUES FROM (1500) TO (MAXVALUE);";
    c.create_db(
        "bp_src",
        &format!(
            "{pt} INSERT INTO pt SELECT g, 'v' || g FROM generate_series(1, 3000) g;
             CREATE PUBLICATION pub FOR TABLE pt WITH (publish_via_partition_root = true);"
        ),
    );
    c.create_db("bp_dst", pt);
    cdc_slot(c, "bp_src", "bp_slot", "--create-slot");
    let args = [
        "-d",
        "bp_src",
        "-S",
        "bp_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill",
        "pt",
        "--backfill-chunk-rows",
        "500",
    ];
    let (mut cdc, mut apply) = pipeline_said(c, &args, "bp_dst", "bp_o");
    c.psql(
        "bp_src",
        "UPDATE pt SET v = 'changed' WHERE id % 100 = 0; DELETE FROM pt WHERE id % 250 = 1;
         INSERT INTO pt VALUES (5000, 'late'), (-5, 'early');",
    );
    let same = "SELECT count(*), md5(string_agg(p::text, ',' ORDER BY id)) FROM pt p";
    wait_until("the partitioned table to be copied", 60, || {
        assert!(apply.try_wait().unwrap().is_none(), "weir-apply stopped");
        c.psql("bp_dst", same) == c.psql("bp_src", same)
    });
    cdc.kill().unwrap();
    let said = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(said.contains("backfill of public.pt complete"), "{said}");
    cdc_slot(c, "bp_src", "bp_slot", "--drop-slot");
}

/// A transaction can be committed in the commit log and still running for every snapshot:
/// between the two it waits for a synchronous standby (the harness names one that never
/// connects). One such delete commits before the backfill starts, so its change is in the
/// stream before the chunk's low watermark and is dropped there; the chunk's read must see it
/// too, so the backfill waits until it is visible (here, until its wait is canceled) and the
/// target ends without the deleted row. While it waits the stream goes on: a row of another
/// table inserted meanwhile reaches the target before the wait ends.
#[test]
fn a_backfill_waits_for_a_commit_that_snapshots_do_not_see_yet() {
    let c = cluster();
    let t = "CREATE TABLE held (id int PRIMARY KEY, v text);";
    c.create_db(
        "bh_src",
        &format!(
            "{t} INSERT INTO held SELECT g, 'v' || g FROM generate_series(1, 1000) g;
             CREATE TABLE other (id int PRIMARY KEY);
             CREATE PUBLICATION pub FOR TABLE held, other;"
        ),
    );
    c.create_db(
        "bh_dst",
        &format!("{t} CREATE TABLE other (id int PRIMARY KEY);"),
    );
    cdc_slot(c, "bh_src", "bh_slot", "--create-slot");
    let deleting = std::thread::spawn(move || {
        c.psql(
            "bh_src",
            "SET synchronous_commit = on; DELETE FROM held WHERE id = 5",
        )
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = 'bh_src' AND wait_event = 'SyncRep'";
    wait_until("the delete to wait for its standby", 30, || {
        c.psql("postgres", waiting).trim() == "1"
    });
    let args = [
        "-d",
        "bh_src",
        "-S",
        "bh_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill",
        "held",
    ];
    let (mut cdc, mut apply) = pipeline_said(c, &args, "bh_dst", "bh_o");
    let count = || {
        c.psql("bh_dst", "SELECT count(*) FROM held")
            .trim()
            .to_string()
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    c.psql(
        "bh_src",
        "SET synchronous_commit = local; INSERT INTO other VALUES (1)",
    );
    wait_until("the stream to go on while the backfill waits", 30, || {
        assert!(apply.try_wait().unwrap().is_none(), "weir-apply stopped");
        c.psql("bh_dst", "SELECT count(*) FROM other").trim() == "1"
    });
    assert_eq!(
        count(),
        "0",
        "the chunk was read before the delete was visible"
    );
    c.psql(
        "postgres",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'bh_src' AND wait_event = 'SyncRep'",
    );
    deleting.join().unwrap();
    let same = "SELECT count(*), md5(string_agg(h::text, ',' ORDER BY id)) FROM held h";
    wait_until("the target to equal the source", 60, || {
        assert!(apply.try_wait().unwrap().is_none(), "weir-apply stopped");
        c.psql("bh_dst", same) == c.psql("bh_src", same)
    });
    cdc.kill().unwrap();
    let said = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(said.contains("backfill of public.held complete"), "{said}");
    assert!(
        said.contains("the backfill of public.held waits for transactions"),
        "{said}"
    );
    assert_eq!(
        c.psql("bh_dst", "SELECT count(*) FROM held WHERE id = 5")
            .trim(),
        "0"
    );
    cdc_slot(c, "bh_src", "bh_slot", "--drop-slot");
}

/// Rows of `table` (`id`, `v`) that one database has and the other lacks, a few of each, and
/// their keys.
fn row_diff(c: &Cluster, a: &str, b: &str, table: &str) -> (String, Vec<String>) {
    let q = format!("SELECT id || ' ' || coalesce(v, '-') FROM {table}");
    rows_diff(c, (a, b), &q)
}

/// The rows `query` gives (one text column, its first word a key) that one database has more
/// often than the other, a few of each side with how many more, and their keys.
fn rows_diff(c: &Cluster, (a, b): (&str, &str), query: &str) -> (String, Vec<String>) {
    type Counts = std::collections::BTreeMap<String, i64>;
    let rows = |db: &str| -> Counts {
        let mut n = Counts::new();
        for r in c.psql(db, query).lines() {
            *n.entry(r.to_string()).or_default() += 1;
        }
        n
    };
    let (ra, rb) = (rows(a), rows(b));
    let more = |x: &Counts, y: &Counts| -> Vec<(String, i64)> {
        let extra = x
            .iter()
            .map(|(r, n)| (r, n - y.get(r).copied().unwrap_or(0)));
        extra
            .filter(|(_, d)| *d > 0)
            .take(10)
            .map(|(r, d)| (r.clone(), d))
            .collect()
    };
    let (in_a, in_b) = (more(&ra, &rb), more(&rb, &ra));
    let keys = in_a
        .iter()
        .chain(&in_b)
        .filter_map(|(r, _)| r.split(' ').next().map(str::to_string))
        .collect();
    let show = |v: &[(String, i64)]| {
        let each: Vec<String> = v.iter().map(|(r, d)| format!("{r} (x{d})")).collect();
        each.join("; ")
    };
    let text = format!(
        "only in {a}: [{}]; only in {b}: [{}]",
        show(&in_a),
        show(&in_b)
    );
    (text, keys)
}

/// The lines of a WEIR_CDC_TRACE file that name one of `keys`, with every start, chunk and
/// watermark line (to see where they fell).
fn traced_about(trace: &Path, keys: &[String]) -> String {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    let wanted = |l: &&str| {
        let per_change = l.contains(" change ") || l.contains(" apply xid=");
        !per_change || quoted.iter().any(|k| l.contains(k.as_str()))
    };
    text.lines().filter(wanted).collect::<Vec<_>>().join("\n")
}

/// A table added to the publication is copied while a writer updates, inserts, deletes and
/// moves its keys, and the pipeline is killed with SIGKILL again and again during the copy,
/// either stage in turn; each time the same plain command goes on. Stopped, the target
/// equals the source row for row.
#[test]
fn a_backfill_killed_again_and_again_ends_equal() {
    let c = cluster();
    let tables =
        "CREATE TABLE churn (id int PRIMARY KEY, v text); CREATE TABLE tick (id int PRIMARY KEY);";
    c.create_db(
        "kc_src",
        &format!(
            "{tables} INSERT INTO churn SELECT g, 'v' || g FROM generate_series(1, 20000) g;
             CREATE PUBLICATION pub FOR TABLE tick;"
        ),
    );
    c.create_db("kc_dst", tables);
    cdc_slot(c, "kc_src", "kc_slot", "--create-slot");
    let writer = Writer::spawn(c, |env, stop| {
        let mut db = connect_with(env, "kc_src");
        let mut rand = clock_seeded_rand();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            let (a, d, m) = (rand(20000) + 1, rand(20000) + 1, rand(20000) + 1);
            db.batch_execute(&format!(
                "BEGIN; UPDATE churn SET v = 'u{i}' WHERE id = {a};
                     INSERT INTO churn VALUES ({}, 'new');
                     DELETE FROM churn WHERE id = {d};
                     UPDATE churn SET id = -id - 1000000 WHERE id = {m} AND {i} % 3 = 0;
                     INSERT INTO tick VALUES ({i}); COMMIT;",
                100000 + i
            ))
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    });
    let args = [
        "-d",
        "kc_src",
        "-S",
        "kc_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill-chunk-rows",
        "300",
    ];
    let scratch = tempfile::tempdir().unwrap();
    let trace = scratch.path().join("trace");
    let traced =
        |args: &[&str]| spawn_traced(c, args, "kc_dst", "kc_o", (false, &[]), Some(&trace));
    let mut said = String::new();
    let mut rand = clock_seeded_rand();
    let (mut cdc, mut apply) = traced(&args);
    std::thread::sleep(std::time::Duration::from_secs(2));
    c.psql("kc_src", "ALTER PUBLICATION pub ADD TABLE churn");
    for round in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(400 + rand(1200)));
        let (first, second) = match round % 2 {
            0 => (&mut apply, &mut cdc),
            _ => (&mut cdc, &mut apply),
        };
        let _ = first.kill();
        wait_or_kill(second);
        said += &stderr_of(&mut [&mut cdc, &mut apply]);
        (cdc, apply) = traced(&args);
    }
    cdc.kill().unwrap();
    wait_or_kill(&mut apply);
    said += &stderr_of(&mut [&mut cdc, &mut apply]);
    writer.stop();
    let (mut cdc, mut apply) = traced(&args);
    let state = "SELECT string_agg(name || ' ' || state, ', ' ORDER BY name) FROM weir_cdc.tables";
    let same = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM churn t";
    let t0 = std::time::Instant::now();
    while c.psql("kc_dst", state).trim() != "public.churn ready, public.tick ready"
        || c.psql("kc_dst", same) != c.psql("kc_src", same)
    {
        if t0.elapsed().as_secs() > 120 || apply.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            let _ = apply.kill();
            said += &stderr_of(&mut [&mut cdc, &mut apply]);
            let (diff, keys) = row_diff(c, "kc_src", "kc_dst", "churn");
            let traced = traced_about(&trace, &keys);
            panic!(
                "{}: {diff}\n{said}\ntrace:\n{traced}",
                c.psql("kc_dst", state).trim()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    cdc.kill().unwrap();
    let _ = stderr_of(&mut [&mut cdc, &mut apply]);
    cdc_slot(c, "kc_src", "kc_slot", "--drop-slot");
}

/// A chunk an earlier weir-apply was committing when it was killed may commit after the next
/// weir-cdc started: here a session on the target holds rows 401-500 of the source's table,
/// inserted and not yet committed, while `--backfill` resumes after the 400 the target holds.
/// weir-cdc waits for that transaction to end before it takes its bound (had it read 400, its
/// first chunk would insert rows 401-500 again and weir-apply stop on a duplicate key), then
/// goes on after 500, and the target ends equal to the source.
#[test]
fn a_resumed_backfill_waits_for_a_chunk_still_committing_on_the_target() {
    let c = cluster();
    let t = "CREATE TABLE late (id int PRIMARY KEY, v text);";
    c.create_db(
        "bl_src",
        &format!(
            "{t} INSERT INTO late SELECT g, 'v' || g FROM generate_series(1, 1000) g;
             CREATE PUBLICATION pub FOR TABLE late;"
        ),
    );
    c.create_db(
        "bl_dst",
        &format!("{t} INSERT INTO late SELECT g, 'v' || g FROM generate_series(1, 400) g;"),
    );
    cdc_slot(c, "bl_src", "bl_slot", "--create-slot");
    let env = c.env();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let late = std::thread::spawn(move || {
        let mut db = connect_with(&env, "bl_dst");
        db.batch_execute(
            "BEGIN; INSERT INTO late SELECT g, 'v' || g FROM generate_series(401, 500) g",
        )
        .unwrap();
        held_tx.send(()).unwrap();
        rx.recv().unwrap();
        db.batch_execute("COMMIT").unwrap();
    });
    held_rx.recv().unwrap();
    let args = [
        "-d",
        "bl_src",
        "-S",
        "bl_slot",
        "--publication",
        "pub",
        "--stream",
        "--backfill",
        "late",
        "--backfill-chunk-rows",
        "300",
    ];
    let (mut cdc, mut apply) = pipeline_said(c, &args, "bl_dst", "bl_o");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    tx.send(()).unwrap();
    late.join().unwrap();
    let same = "SELECT count(*), md5(string_agg(l::text, ',' ORDER BY id)) FROM late l";
    wait_until("the target to equal the source", 60, || {
        if apply.try_wait().unwrap().is_some() {
            let _ = cdc.kill();
            panic!(
                "weir-apply stopped: {}",
                stderr_of(&mut [&mut cdc, &mut apply])
            );
        }
        c.psql("bl_dst", same) == c.psql("bl_src", same)
    });
    cdc.kill().unwrap();
    let said = stderr_of(&mut [&mut cdc, &mut apply]);
    assert!(
        said.contains("backfilling public.late after key (500)"),
        "{said}"
    );
    cdc_slot(c, "bl_src", "bl_slot", "--drop-slot");
}
