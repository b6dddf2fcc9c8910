//! Physical backups and point-in-time recovery, the way WAL-G and pgBackRest test theirs: a
//! cluster archiving through weir-wal, a base backup through weir-compress and weir-encrypt
//! while pgbench writes, then sentinel rows around a time, an LSN, an xid and a restore point.
//! The cluster is wiped and restored by weir-restore-physical to each target, checked on both
//! sides of it, with pg_verifybackup, pg_amcheck and, for the latest WAL, pg_dumpall; a
//! tablespace outside the data directory comes back too. A cut-off or damaged stream restores
//! nothing, a backup whose server went away fails, and a segment missing from the archive
//! ends in a refused restore or a failed recovery, never in a server that opened early.

use crate::harness::*;
use crate::wal::{q, server_copy_of, switch, wait_archived};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Pitr {
    c: Cluster,
    repo: PathBuf,
    key: PathBuf,
    recipient: String,
    bin: PathBuf,
    tablespace: PathBuf,
}

fn setup(name: &str) -> Pitr {
    let c = Cluster::start_with(
        name,
        "wal_level = replica\narchive_mode = on\narchive_command = 'sh archive.sh %p'\nmax_wal_senders = 4",
    );
    let bin = c.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in [
        "weir-wal",
        "weir-restore-physical",
        "weir-encrypt",
        "weir-compress",
        "weir-basebackup",
        "weir-extract",
        "weir-put",
        "weir-get",
        "weir-ls",
        "weir-catalog",
        "weir-prune",
    ] {
        let copied = server_copy_of(&c, b);
        std::fs::rename(&copied, bin.join(b)).unwrap();
    }
    let repo = c.dir.join("repo");
    let tablespace = c.dir.join("ts1");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&tablespace).unwrap();
    let key = c.dir.join("key.txt");
    assert!(
        tool("age-keygen", &["-o", key.to_str().unwrap()], b"")
            .status
            .success()
    );
    let recipient =
        String::from_utf8(tool("age-keygen", &["-y", key.to_str().unwrap()], b"").stdout)
            .unwrap()
            .trim()
            .to_string();
    std::fs::write(
        c.data().join("archive.sh"),
        format!(
            "exec {} push --repo {} -r {recipient} \"$1\"\n",
            bin.join("weir-wal").display(),
            repo.display()
        ),
    )
    .unwrap();
    sh(&format!(
        "chown -R postgres {0} {1} {2} {3} 2>/dev/null || true; chmod 644 {2}",
        repo.display(),
        tablespace.display(),
        key.display(),
        bin.display()
    ));
    Pitr {
        c,
        repo,
        key,
        recipient,
        bin,
        tablespace,
    }
}

/// A shell command as the cluster's owner (restored files must be the server's), with the
/// cluster's connection environment.
fn owner_sh(p: &Pitr, script: &str) -> Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "bash", "-c", script]);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-c", script]);
        c
    };
    let mut env = p.c.env();
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    scrub(&mut cmd, &env).output().unwrap()
}

fn pgbench(c: &Cluster, args: &[&str]) -> Command {
    let mut env = c.env();
    env.push(("PGDATABASE".into(), "postgres".into()));
    let mut cmd = Command::new(c.bindir.join("pgbench"));
    scrub(&mut cmd, &env).args(args);
    cmd
}

/// The sentinel rows a restored server holds.
fn sentinels(c: &Cluster) -> String {
    q(
        c,
        "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM sentinel",
    )
}

fn server(p: &Pitr, action: &str) -> Output {
    let log = p.c.dir.join("restored.log");
    let opts = format!(
        "-p {} -k {} -c archive_mode=off -c listen_addresses=''",
        p.c.port,
        p.c.dir.display()
    );
    as_owner(
        &p.c.bindir.join("pg_ctl"),
        &[
            "-D",
            p.c.data().to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "120",
            action,
        ],
    )
}

fn log(p: &Pitr) -> String {
    std::fs::read_to_string(p.c.dir.join("restored.log")).unwrap_or_default()
}

/// Restores the stored backup (decrypt, decompress, restore) into the wiped data directory.
fn restore(p: &Pitr, stored: &Path, args: &str) -> Output {
    restore_into(p, stored, &p.c.data(), &format!("--clear {args}"))
}

/// The same pipeline into `dir`, with only `args` added.
fn restore_into(p: &Pitr, stored: &Path, dir: &Path, args: &str) -> Output {
    let b = p.bin.display();
    owner_sh(
        p,
        &format!(
            "set -o pipefail; {b}/weir-encrypt -d -i {key} < {stored} | {b}/weir-compress -d | {b}/weir-restore-physical -D {dir} --repo {repo} -i {key} {args}",
            key = p.key.display(),
            stored = stored.display(),
            dir = dir.display(),
            repo = p.repo.display(),
        ),
    )
}

/// Waits until recovery has ended (promoted) or paused at its target.
fn wait_recovered(p: &Pitr, paused: bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = if paused {
            q(&p.c, "SELECT pg_get_wal_replay_pause_state()")
        } else {
            q(&p.c, "SELECT pg_is_in_recovery()")
        };
        if state == if paused { "paused" } else { "f" } {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "recovery did not end: {}",
            log(p)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn restore_and_start(p: &Pitr, stored: &Path, args: &str, paused: bool) {
    let out = restore(p, stored, args);
    assert!(out.status.success(), "restore {args}: {}", stderr(&out));
    let out = server(p, "start");
    assert!(
        out.status.success(),
        "start after restore {args}: {}",
        log(p)
    );
    wait_recovered(p, paused);
}

fn stop(p: &Pitr) {
    let _ = server(p, "stop");
}

/// pg_verifybackup -n on the data directory, before any server ran on it.
fn verifybackup(p: &Pitr) {
    let c = &p.c;
    let verify = scrub(
        &mut Command::new(c.bindir.join("pg_verifybackup")),
        &c.env(),
    )
    .args(["-n", c.data().to_str().unwrap()])
    .output()
    .unwrap();
    assert!(
        verify.status.success(),
        "pg_verifybackup: {}",
        stderr(&verify)
    );
}

/// Every table and index of every database checks out.
fn amcheck(p: &Pitr) {
    let out = scrub(&mut Command::new(p.c.bindir.join("pg_amcheck")), &p.c.env())
        .args(["--all", "--heapallindexed", "--install-missing"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_amcheck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

fn dumpall(c: &Cluster) -> Vec<u8> {
    let out = scrub(&mut Command::new(c.bindir.join("pg_dumpall")), &c.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dumpall: {}", stderr(&out));
    // Without the per-run \restrict keys, which differ every time.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// The lines that differ between two dumps, for the failure message.
fn scratch_diff(p: &Pitr, a: &[u8], b: &[u8]) -> String {
    let (fa, fb) = (p.c.dir.join("want.sql"), p.c.dir.join("got.sql"));
    std::fs::write(&fa, a).unwrap();
    std::fs::write(&fb, b).unwrap();
    let out = Command::new("diff").arg(&fa).arg(&fb).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .chars()
        .take(4000)
        .collect()
}

/// What the test recorded while the primary ran.
struct Marks {
    time: String,
    lsn: String,
    xid: String,
    /// The segment written between the xid and the restore point.
    middle: String,
    dump: Vec<u8>,
}

/// Sentinel n commits before each target and n+1 after it, each stage in its own segment.
fn mark(p: &Pitr) -> Marks {
    let c = &p.c;
    c.psql("postgres", "INSERT INTO sentinel VALUES (1)");
    let time = q(c, "SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(50));
    c.psql("postgres", "INSERT INTO sentinel VALUES (2)");
    switch(c);
    c.psql("postgres", "INSERT INTO sentinel VALUES (3)");
    let lsn = q(c, "SELECT pg_current_wal_insert_lsn()");
    c.psql("postgres", "INSERT INTO sentinel VALUES (4)");
    switch(c);
    let xid = q(
        c,
        "BEGIN; INSERT INTO sentinel VALUES (5); SELECT txid_current(); COMMIT;",
    );
    c.psql("postgres", "INSERT INTO sentinel VALUES (6)");
    let middle = switch(c);
    c.psql("postgres", "INSERT INTO sentinel VALUES (7)");
    q(c, "SELECT pg_create_restore_point('before_eight')");
    c.psql("postgres", "INSERT INTO sentinel VALUES (8)");
    switch(c);
    c.psql("postgres", "INSERT INTO sentinel VALUES (9)");
    let last = switch(c);
    wait_archived(c, &last);
    Marks {
        time,
        lsn,
        xid,
        middle,
        dump: dumpall(c),
    }
}

#[test]
fn a_base_backup_restores_to_every_kind_of_target_and_damage_never_restores() {
    let p = setup("pitr");
    let c = &p.c;
    c.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE ts1 LOCATION '{}'; CREATE TABLE in_ts TABLESPACE ts1 AS SELECT generate_series(1, 10000) AS i; CREATE TABLE sentinel (n int)",
            p.tablespace.display()
        ),
    );
    let out = pgbench(c, &["-i", "-q", "-s", "10"]).output().unwrap();
    assert!(out.status.success(), "pgbench -i: {}", stderr(&out));
    // The backup runs while pgbench writes.
    let mut load = pgbench(c, &["-T", "6", "-c", "2", "-n"]).spawn().unwrap();
    let stored = c.dir.join("base.tar.zst.age");
    let stats = c.dir.join("base.json");
    let b = p.bin.display();
    let out = owner_sh(
        &p,
        &format!(
            "set -o pipefail; {b}/weir-basebackup -c fast --repo {repo} --stats {stats} | {b}/weir-compress | {b}/weir-encrypt -r {rcpt} > {stored}",
            repo = p.repo.display(),
            stats = stats.display(),
            rcpt = p.recipient,
            stored = stored.display()
        ),
    );
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(load.wait().unwrap().success());
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["timeline"], 1);
    assert!(s["files"].as_u64().unwrap() > 900, "{s}");
    assert_eq!(
        s["tablespaces"][0]["location"],
        p.tablespace.display().to_string()
    );
    let marks = mark(&p);
    broken_streams(&p, &stored);
    c.kill();

    // To a time, with pg_verifybackup before the server starts: 1 is in, 2 is not.
    let out = restore(
        &p,
        &stored,
        &format!("--target-time '{}' --target-action promote", marks.time),
    );
    assert!(out.status.success(), "restore: {}", stderr(&out));
    verifybackup(&p);
    assert!(server(&p, "start").status.success(), "{}", log(&p));
    wait_recovered(&p, false);
    assert_eq!(sentinels(c), "1");
    assert_eq!(q(c, "SELECT count(*) FROM in_ts"), "10000");
    assert!(std::fs::read_dir(&p.tablespace).unwrap().next().is_some());
    amcheck(&p);
    stop(&p);

    for (args, want) in [
        (
            format!("--target-lsn {} --target-action promote", marks.lsn),
            "1,2,3",
        ),
        (
            format!("--target-xid {} --target-action promote", marks.xid),
            "1,2,3,4,5",
        ),
        ("--target-immediate --target-action promote".to_string(), ""),
    ] {
        restore_and_start(&p, &stored, &args, false);
        assert_eq!(sentinels(c), want, "{args}");
        stop(&p);
    }
    // A restore point, with PostgreSQL's default action: paused there, readable.
    restore_and_start(&p, &stored, "--target-name before_eight", true);
    assert_eq!(sentinels(c), "1,2,3,4,5,6,7");
    // Fetched ahead into pg_wal/weir-prefetch while recovery runs; removed when it ends.
    let spool = c.data().join("pg_wal/weir-prefetch");
    assert!(spool.is_dir(), "no prefetch spool during recovery");
    q(c, "SELECT pg_wal_replay_resume()");
    wait_recovered(&p, false);
    assert!(!spool.exists(), "the spool outlived recovery: {}", log(&p));
    stop(&p);
    // All the WAL there is: the same database as at the end of the load.
    restore_and_start(&p, &stored, "", false);
    assert_eq!(sentinels(c), "1,2,3,4,5,6,7,8,9");
    let after = dumpall(c);
    if after != marks.dump {
        let diff = scratch_diff(&p, &marks.dump, &after);
        panic!("pg_dumpall differs after recovery to the end:\n{diff}");
    }
    amcheck(&p);
    stop(&p);
    by_hand(&p, &stored, &marks, &s);
    missing_segment(&p, &stored, &marks);
}

/// docs/restore-by-hand.md's recipe for restoring a base backup, run as it is written there (its paths
/// replaced by the test's), into an emptied data directory and tablespace: pg_verifybackup
/// passes where the recipe runs it, and the server recovers to the time and pauses there.
fn by_hand(p: &Pitr, stored: &Path, marks: &Marks, stats: &serde_json::Value) {
    let recipe = guide_block("docs/restore-by-hand.md", 2);
    let recipe = recipe.as_str();
    let c = &p.c;
    let dir = c.dir.join("byhand");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    sh(&format!(
        "chown -R postgres {0} 2>/dev/null || true",
        dir.display()
    ));
    let oid = stats["tablespaces"][0]["oid"].as_str().unwrap();
    let data = c.data().display().to_string();
    let ts = p.tablespace.display().to_string();
    let key = p.key.display().to_string();
    let time = marks.time.trim();
    let verify = c.bindir.join("pg_verifybackup").display().to_string();
    let restore = dir.join("restore").display().to_string();
    let wal_by_hand = dir.join("bin/wal-by-hand").display().to_string();
    let script = recipe
        .replace("/var/lib/postgresql/15/main", &data)
        .replace("/srv/ts1", &ts)
        .replace("/restore", &restore)
        .replace("16384", oid)
        .replace("/etc/weir/key.txt", &key)
        .replace(" key.txt ", &format!(" {key} "))
        .replace("base.tar.zst.age", &stored.display().to_string())
        .replace("/archive/", &format!("{}/", p.repo.display()))
        .replace("/usr/local/bin/wal-by-hand", &wal_by_hand)
        .replace("'wal-by-hand %f %p'", &format!("'{wal_by_hand} %f %p'"))
        .replace("pg_verifybackup", &verify)
        .replace("2026-12-01 10:00:00+00", time);
    // The recipe starts from an empty place: no data directory, an empty tablespace.
    let out = owner_sh(
        p,
        &format!("rm -rf {data} && find {ts} -mindepth 1 -delete && set -e\n{script}"),
    );
    assert!(
        out.status.success(),
        "the recipe as docs/restore-by-hand.md has it:\n{script}\n{}",
        stderr(&out)
    );
    assert!(server(p, "start").status.success(), "{}", log(p));
    wait_recovered(p, true);
    assert_eq!(sentinels(c), "1");
    assert_eq!(q(c, "SELECT count(*) FROM in_ts"), "10000");
    stop(p);
}

/// A stream cut off, or with one byte of one file changed, restores nothing and leaves the
/// data directory empty; so does a flipped byte in the stored (encrypted) backup; a backup
/// whose connection the server ends fails.
fn broken_streams(p: &Pitr, stored: &Path) {
    let scratch = p.c.dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    sh(&format!(
        "chown postgres {} 2>/dev/null || true",
        scratch.display()
    ));
    let plain = scratch.join("plain.tar");
    let out = owner_sh(
        p,
        &format!(
            "{b}/weir-encrypt -d -i {key} < {stored} | {b}/weir-compress -d > {plain}",
            b = p.bin.display(),
            key = p.key.display(),
            stored = stored.display(),
            plain = plain.display()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&plain).unwrap();
    let into = scratch.join("into");
    // The stream's tablespace is the running primary's: restore it elsewhere (-T).
    let moved = scratch.join("ts-moved");
    let try_restore = |input: &[u8], what: &str| {
        let f = scratch.join("input.tar");
        std::fs::write(&f, input).unwrap();
        sh(&format!(
            "chown postgres {} 2>/dev/null || true",
            f.display()
        ));
        let out = owner_sh(
            p,
            &format!(
                "{}/weir-restore-physical -D {} --clear --input {} --restore-command true -T {}={}",
                p.bin.display(),
                into.display(),
                f.display(),
                p.tablespace.display(),
                moved.display()
            ),
        );
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        for d in [&into, &moved] {
            let left: Vec<_> = std::fs::read_dir(d)
                .map(|d| d.flatten().collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{what} left {left:?} in {}", d.display());
        }
        stderr(&out)
    };
    let e = try_restore(&bytes[..bytes.len() / 2], "a stream cut in half");
    assert!(e.contains("ends early") || e.contains("ends inside"), "{e}");
    let trailer_at = member(&bytes, |name| name == "weir-basebackup.end.json").0;
    let e = try_restore(&bytes[..trailer_at], "a stream without its trailer");
    assert!(e.contains("ends early") || e.contains("manifest"), "{e}");
    let mut flipped = bytes.clone();
    let at = biggest_file_offset(&bytes);
    flipped[at] ^= 0x40;
    let e = try_restore(&flipped, "a changed byte");
    assert!(e.contains("damaged") || e.contains("checksum"), "{e}");
    // A flipped byte in what is stored: the decryption fails, and the restore with it.
    let mut stored_bytes = std::fs::read(stored).unwrap();
    let n = stored_bytes.len();
    stored_bytes[n / 2] ^= 1;
    let damaged = scratch.join("damaged.age");
    std::fs::write(&damaged, &stored_bytes).unwrap();
    sh(&format!(
        "chown postgres {} 2>/dev/null || true",
        damaged.display()
    ));
    let out = owner_sh(
        p,
        &format!(
            "set -o pipefail; {b}/weir-encrypt -d -i {key} < {d} | {b}/weir-compress -d | {b}/weir-restore-physical -D {into} --clear --restore-command true -T {ts}={moved}",
            b = p.bin.display(),
            key = p.key.display(),
            d = damaged.display(),
            into = into.display(),
            ts = p.tablespace.display(),
            moved = moved.display()
        ),
    );
    assert!(!out.status.success());
    let left: Vec<_> = std::fs::read_dir(&into)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a damaged stored backup left {left:?}");
    backup_cut_by_the_server(p);
}

/// The first member of a tar stream whose name `pick` takes: where its header and its content
/// start, and its size.
fn member(tar_bytes: &[u8], pick: impl Fn(&str) -> bool) -> (usize, usize, usize) {
    let mut a = tar::Archive::new(tar_bytes);
    let e = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| pick(&e.path().unwrap().to_string_lossy()))
        .expect("a member the stream holds");
    let size = e.size() as usize;
    (
        e.raw_header_position() as usize,
        e.raw_file_position() as usize,
        size,
    )
}

/// Where the middle of the stream's biggest file lies.
fn biggest_file_offset(tar_bytes: &[u8]) -> usize {
    let mut a = tar::Archive::new(tar_bytes);
    let mut best = (0u64, 0u64);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let size = e.header().size().unwrap();
        if size > best.1 {
            best = (e.raw_file_position(), size);
        }
    }
    (best.0 + best.1 / 2) as usize
}

/// The server ends the replication connection mid-stream: weir-basebackup fails, and what it
/// wrote does not restore.
fn backup_cut_by_the_server(p: &Pitr) {
    let c = &p.c;
    let killer = {
        let env = c.env();
        let psql = c.bindir.join("psql");
        std::thread::spawn(move || {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(100));
                let out = scrub(&mut Command::new(&psql), &env)
                    .args(["-X", "-A", "-t", "-d", "postgres", "-c"])
                    .arg("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'walsender'")
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).trim() != "0" {
                    return true;
                }
            }
            false
        })
    };
    let cut = p.c.dir.join("scratch/cut.tar");
    // A slow reader keeps the backup running long enough to be cut.
    let out = owner_sh(
        p,
        &format!(
            "set -o pipefail; {}/weir-basebackup -c fast | (sleep 3; cat > {})",
            p.bin.display(),
            cut.display()
        ),
    );
    assert!(
        killer.join().unwrap(),
        "the backup's walsender was never seen"
    );
    assert!(
        !out.status.success(),
        "a backup whose connection was cut succeeded"
    );
    let out2 = owner_sh(
        p,
        &format!("{}/weir-basebackup -c fast -f /dev/null", p.bin.display()),
    );
    assert!(
        out2.status.success(),
        "a second backup after the cut: {}",
        stderr(&out2)
    );
    let restored = owner_sh(
        p,
        &format!(
            "{}/weir-restore-physical -D {} --clear --input {} --restore-command true -T {}={}",
            p.bin.display(),
            p.c.dir.join("scratch/into").display(),
            cut.display(),
            p.tablespace.display(),
            p.c.dir.join("scratch/ts-moved").display()
        ),
    );
    assert_eq!(
        restored.status.code(),
        Some(3),
        "{} / {}",
        stderr(&out),
        stderr(&restored)
    );
}

/// A segment between the backup and the restore point is gone from the archive: recovery to
/// the end is refused before anything is written, and recovery to the restore point past
/// the gap fails in the server instead of opening without the rows after the gap.
fn missing_segment(p: &Pitr, stored: &Path, marks: &Marks) {
    let object = std::fs::read_dir(p.repo.join("wal"))
        .unwrap()
        .flatten()
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .map(|r| r.flatten().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .map(|e| e.path())
        .find(|f| f.file_name().unwrap().to_string_lossy() == marks.middle)
        .unwrap_or_else(|| panic!("{} is not in the repository", marks.middle));
    std::fs::remove_file(&object).unwrap();
    let out = restore(p, stored, "");
    assert!(
        !out.status.success(),
        "a restore to the end over a gap succeeded"
    );
    assert!(stderr(&out).contains(&marks.middle), "{}", stderr(&out));
    let out = restore(
        p,
        stored,
        "--target-name before_eight --target-action promote",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let _ = std::fs::remove_file(p.c.dir.join("restored.log"));
    let _ = server(p, "start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log(p).contains("recovery ended before configured recovery target was reached") {
        assert!(
            Instant::now() < deadline,
            "recovery did not fail: {}",
            log(p)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server(p, "status").status.success() {
        assert!(
            Instant::now() < deadline,
            "the server still runs: {}",
            log(p)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !log(p).contains("database system is ready to accept connections"),
        "{}",
        log(p)
    );
}

/// A shell word for `value`.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Runs scripts/NAME (copied where the cluster's owner can read it) as that owner, with the
/// cluster's connection, the copied weir binaries and `vars`.
fn job(p: &Pitr, name: &str, vars: &[(&str, String)]) -> Output {
    let scripts = p.c.dir.join("scripts");
    if !scripts.exists() {
        sh(&format!(
            "cp -r {} {1} && chmod -R a+rX {1}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .display(),
            scripts.display()
        ));
    }
    let mut line = format!(
        "env POSTGRES_HOST={} POSTGRES_PORT={} POSTGRES_USER=postgres WEIR_BIN_DIR={} PATH={}:$PATH",
        quoted(&p.c.dir.display().to_string()),
        p.c.port,
        quoted(&p.bin.display().to_string()),
        quoted(&p.c.bindir.display().to_string())
    );
    for (k, v) in vars {
        line.push_str(&format!(" {k}={}", quoted(v)));
    }
    line.push_str(&format!(" bash {}", scripts.join(name).display()));
    owner_sh(p, &line)
}

#[test]
fn backup_sh_and_restore_sh_run_the_physical_job_with_retention() {
    let p = setup("pitr-jobs");
    let c = &p.c;
    let backups = c.dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // The archive where the physical job looks for it by default: BACKUP_DIR/_wal.
    let repo = backups.join("_wal");
    sh(&format!(
        "rm -rf {0} && ln -s {1} {0} && chown -R postgres {2} 2>/dev/null || true",
        repo.display(),
        p.repo.display(),
        backups.display()
    ));
    let metrics = c.dir.join("backup.prom");
    let base = vec![
        ("BACKUP_MODE", "physical".to_string()),
        ("BACKUP_DIR", backups.display().to_string()),
        ("AGE_RECIPIENTS", p.recipient.clone()),
        ("METRICS_FILE", metrics.display().to_string()),
    ];
    c.psql(
        "postgres",
        "CREATE TABLE sentinel (n int); INSERT INTO sentinel VALUES (1)",
    );
    let ok = |out: Output, what: &str| assert!(out.status.success(), "{what}: {}", stderr(&out));
    ok(job(&p, "backup.sh", &base), "first backup");
    c.psql("postgres", "INSERT INTO sentinel VALUES (2)");
    ok(job(&p, "backup.sh", &base), "second backup");
    c.psql("postgres", "INSERT INTO sentinel VALUES (3)");
    let time = q(c, "SELECT clock_timestamp()");
    c.psql("postgres", "INSERT INTO sentinel VALUES (4)");
    let mut keep = base.clone();
    keep.push(("KEEP_LAST", "2".into()));
    ok(job(&p, "backup.sh", &keep), "third backup, keeping two");
    c.psql("postgres", "INSERT INTO sentinel VALUES (5)");
    let last = switch(c);
    wait_archived(c, &last);
    let m = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("weir_backup_success{database=\"(physical)\"} 1"),
        "{m}"
    );
    // Every complete segment was archived when the backup ended.
    assert!(
        m.contains("weir_backup_wal_lag_segments{database=\"(physical)\"} 0\n"),
        "{m}"
    );

    // Two base backups are left, and the WAL from the older one's start on.
    let ls = owner_sh(
        &p,
        &format!(
            "{}/weir-ls --catalog --json {}/_physical/",
            p.bin.display(),
            backups.display()
        ),
    );
    assert!(ls.status.success(), "{}", stderr(&ls));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let kept_start = entries[0]["physical"]["start_wal"]
        .as_str()
        .unwrap()
        .to_string();
    let second = entries[0]["url"].as_str().unwrap().to_string();
    let mut segments: Vec<String> = walk_names(&p.repo.join("wal"));
    segments.retain(|n| n.len() == 24);
    segments.sort();
    assert_eq!(
        segments.first(),
        Some(&kept_start),
        "WAL before the oldest kept backup remains"
    );
    let text = owner_sh(
        &p,
        &format!(
            "{}/weir-ls --catalog {}/_physical/",
            p.bin.display(),
            backups.display()
        ),
    );
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.starts_with("TIME") && text.contains("START LSN") && text.contains(&kept_start),
        "{text}"
    );
    c.kill();

    // To the time between 3 and 4: the older kept backup is picked, the server opened there.
    let restore_vars = |extra: &[(&'static str, String)]| {
        let mut v = vec![
            ("RESTORE_MODE", "physical".to_string()),
            ("RESTORE_PGDATA", c.data().display().to_string()),
            ("RESTORE_CLEAR", "1".into()),
            ("BACKUP_DIR", backups.display().to_string()),
            ("AGE_IDENTITY_FILE", p.key.display().to_string()),
            (
                "RESTORE_PG_OPTS",
                "-c archive_mode=off -c listen_addresses=''".into(),
            ),
            (
                "RESTORE_LOG",
                c.dir.join("recovery.log").display().to_string(),
            ),
        ];
        v.extend_from_slice(extra);
        v
    };
    let out = job(
        &p,
        "restore.sh",
        &restore_vars(&[
            ("RESTORE_TARGET_TIME", time.clone()),
            ("RESTORE_TARGET_ACTION", "promote".into()),
        ]),
    );
    assert!(
        out.status.success(),
        "restore.sh to a time: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&second),
        "not the older kept backup: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("recovery stopped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sentinels(c), "1,2,3");
    stop(&p);
    // Before every kept backup ended: nothing can reach it.
    let early = entries[0]["time"]
        .as_str()
        .unwrap()
        .replace('T', " ")
        .replace('Z', "+00");
    let out = job(
        &p,
        "restore.sh",
        &restore_vars(&[("RESTORE_TARGET_TIME", early)]),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // All the WAL there is.
    let out = job(&p, "restore.sh", &restore_vars(&[]));
    assert!(
        out.status.success(),
        "restore.sh to the end: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("whole archive"), "{}", stderr(&out));
    assert_eq!(sentinels(c), "1,2,3,4,5");
    stop(&p);
}

/// The file names under a directory tree.
fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk_names(&path));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// `weir-basebackup --pgdata`: the files read from the data directory by three readers
/// while pgbench writes, instead of through BASE_BACKUP. The stream holds what the server's
/// would (no WAL, no postmaster.pid, the backup_label, only the init fork of an unlogged
/// table), and restores like it: pg_verifybackup passes on weir's own manifest, recovery to a
/// time has the rows before it (the unlogged table empty), to the end equals pg_dumpall, and
/// amcheck is clean. A directory that is not the server's is refused (exit 6).
#[test]
fn a_backup_read_from_the_data_directory_restores_like_the_servers() {
    let p = setup("pitr_local");
    let c = &p.c;
    c.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE ts1 LOCATION '{}'; CREATE TABLE in_ts TABLESPACE ts1 AS SELECT generate_series(1, 10000) AS i; CREATE TABLE sentinel (n int); CREATE UNLOGGED TABLE scratch AS SELECT generate_series(1, 50000) AS i",
            p.tablespace.display()
        ),
    );
    let unlogged = q(c, "SELECT pg_relation_filepath('scratch')");
    let out = pgbench(c, &["-i", "-q", "-s", "5"]).output().unwrap();
    assert!(out.status.success(), "pgbench -i: {}", stderr(&out));
    let mut load = pgbench(c, &["-T", "4", "-c", "2", "-n"]).spawn().unwrap();
    let plain = c.dir.join("local.tar");
    let stored = c.dir.join("local.tar.zst.age");
    let stats = c.dir.join("local.json");
    let b = p.bin.display();
    let out = owner_sh(
        &p,
        &format!(
            "set -o pipefail; {b}/weir-basebackup --pgdata {data} -j 3 -c fast --repo {repo} --stats {stats} | tee {plain} | {b}/weir-compress | {b}/weir-encrypt -r {rcpt} > {stored}",
            data = c.data().display(),
            repo = p.repo.display(),
            stats = stats.display(),
            plain = plain.display(),
            rcpt = p.recipient,
            stored = stored.display()
        ),
    );
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(load.wait().unwrap().success());
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert!(s["files"].as_u64().unwrap() > 900, "{s}");
    let names = tar_names(&std::fs::read(&plain).unwrap());
    let has = |n: &str| names.iter().any(|m| m == n);
    assert!(has("data/backup_label") && has("data/backup_manifest"));
    assert!(has("data/pg_wal") && has("data/global/pg_control"));
    assert!(has(&format!("data/{unlogged}_init")), "{unlogged}_init");
    assert!(
        !has(&format!("data/{unlogged}")),
        "the unlogged table's data"
    );
    assert!(!has("data/postmaster.pid"));
    assert!(!names.iter().any(|n| n.starts_with("data/pg_wal/0")));
    assert!(names.iter().any(|n| n.starts_with("tablespaces/")));

    let other = owner_sh(
        &p,
        &format!(
            "{b}/weir-basebackup --pgdata {} > /dev/null",
            p.repo.display()
        ),
    );
    assert_eq!(other.status.code(), Some(6), "{}", stderr(&other));

    c.psql("postgres", "INSERT INTO sentinel VALUES (1)");
    let time = q(c, "SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(50));
    c.psql(
        "postgres",
        "INSERT INTO sentinel VALUES (2); DROP TABLE scratch",
    );
    let last = switch(c);
    wait_archived(c, &last);
    let dump = dumpall(c);
    c.kill();

    let out = restore(
        &p,
        &stored,
        &format!("--target-time '{time}' --target-action promote"),
    );
    assert!(out.status.success(), "restore: {}", stderr(&out));
    verifybackup(&p);
    assert!(server(&p, "start").status.success(), "{}", log(&p));
    wait_recovered(&p, false);
    assert_eq!(sentinels(c), "1");
    assert_eq!(q(c, "SELECT count(*) FROM in_ts"), "10000");
    assert_eq!(q(c, "SELECT count(*) FROM scratch"), "0");
    amcheck(&p);
    stop(&p);
    restore_and_start(&p, &stored, "", false);
    assert_eq!(sentinels(c), "1,2");
    let after = dumpall(c);
    if after != dump {
        panic!("pg_dumpall differs:\n{}", scratch_diff(&p, &dump, &after));
    }
    amcheck(&p);

    // --delta over a copy that diverged (rows changed, a table's file gone, a stray file):
    // the same database as a full restore, with a fraction of the bytes written.
    let accounts = c
        .data()
        .join(q(c, "SELECT pg_relation_filepath('pgbench_accounts')"));
    c.psql(
        "postgres",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0; DROP TABLE in_ts",
    );
    stop(&p);
    std::fs::write(c.data().join("base/stray"), b"not the server's").unwrap();
    // By --from the object is read by range when at least half its bytes can stay unread
    // (the files the copy holds unchanged); else whole, as from a pipe.
    let delta = |from: bool, by_range: bool| {
        let out = if from {
            owner_sh(
                &p,
                &format!(
                    "{b}/weir-restore-physical -D {dir} --repo {repo} -i {key} --delta --target-action promote --from {stored}",
                    key = p.key.display(),
                    stored = stored.display(),
                    dir = c.data().display(),
                    repo = p.repo.display(),
                ),
            )
        } else {
            restore_into(&p, &stored, &c.data(), "--delta --target-action promote")
        };
        assert!(out.status.success(), "--delta: {}", stderr(&out));
        let said = stderr(&out);
        eprintln!("--delta: {said}");
        assert_eq!(by_range, said.contains("unread"), "{said}");
        let percent: f64 = said
            .rsplit_once('(')
            .and_then(|(_, p)| p.split('%').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{said}"));
        percent
    };
    // Refused, with the directory as it was: a running server's, and another cluster's.
    let other = c.dir.join("other");
    let initdb = as_owner(
        &c.bindir.join("initdb"),
        &["-D", other.to_str().unwrap(), "-U", "postgres"],
    );
    assert!(initdb.status.success(), "{}", stderr(&initdb));
    for (dir, code) in [(c.data(), 1), (other.clone(), 6)] {
        if code == 1 {
            assert!(server(&p, "start").status.success(), "{}", log(&p));
        }
        let out = restore_into(&p, &stored, &dir, "--delta");
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        // One line from the restore (the stages before it then see a closed pipe).
        let said = stderr(&out);
        let lines = said
            .lines()
            .filter(|l| l.starts_with("weir-restore-physical:"));
        assert_eq!(lines.count(), 1, "{said}");
        assert!(dir.join("global/pg_control").exists());
        if code == 1 {
            stop(&p);
        }
    }
    // The copy ran after its recovery: every page it read has hint bits set since, and
    // every page recovery replayed differs from the backup's, so much is written (and most
    // files differ: --from reads the object whole); a second delta over the result writes
    // next to nothing and, by --from, reads next to nothing of the backup.
    assert!(delta(true, false) < 100.0);
    assert!(delta(false, false) < 1.0);
    // By range last, so the server below starts on what it left (pg_control included).
    assert!(delta(true, true) < 1.0);
    // A big file that differs in one place and is longer than the backup's: by range, only
    // the 1 MiB piece that differs is read (its differing block written), and the file is
    // cut back to the backup's length.
    let len = std::fs::metadata(&accounts).unwrap().len();
    assert!(len > 4 << 20, "{len}");
    let restored = std::fs::read(&accounts).unwrap();
    let mut on_disk = restored.clone();
    on_disk[(3 << 20) + 100] ^= 0xff;
    on_disk.extend_from_slice(&[0; 8192]);
    std::fs::write(&accounts, &on_disk).unwrap();
    // One 8 KiB block written of the piece read (the percentage rounds to 0.0).
    assert!(delta(true, true) < 0.1);
    assert!(std::fs::read(&accounts).unwrap() == restored);
    damaged_pieces(&p, &stored);
    // The same by range from S3 (s3s-fs): one ranged GET per run of members.
    let s3 = crate::objstore::shared();
    let url = format!("s3://{}/local.tar.zst.age", s3.bucket("pitr-delta"));
    let put = s3.run("weir-put", &["-q", &url], &std::fs::read(&stored).unwrap());
    assert!(put.status.success(), "weir-put: {}", stderr(&put));
    let env: String = s3
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={} ", quoted(v)))
        .collect();
    let out = owner_sh(
        &p,
        &format!(
            "env {env}{b}/weir-restore-physical -D {dir} --repo {repo} -i {key} --delta --target-action promote --from {url}",
            key = p.key.display(),
            dir = c.data().display(),
            repo = p.repo.display(),
        ),
    );
    assert!(out.status.success(), "--delta from S3: {}", stderr(&out));
    assert!(stderr(&out).contains("left unread"), "{}", stderr(&out));
    assert!(!c.data().join("base/stray").exists());
    assert!(server(&p, "start").status.success(), "{}", log(&p));
    wait_recovered(&p, false);
    let after = dumpall(c);
    if after != dump {
        panic!(
            "pg_dumpall differs after --delta:\n{}",
            scratch_diff(&p, &dump, &after)
        );
    }
    amcheck(&p);
    stop(&p);
}

/// A backup whose trailer gives one piece a CRC-32C its data does not have (the object
/// otherwise sound: compressed again, frames and checksums whole): over a directory equal to
/// the backup, a delta by range takes that piece for changed, reads it, finds it does not
/// match, and exits 3 with no startable server left.
fn damaged_pieces(p: &Pitr, stored: &Path) {
    let b = p.bin.display();
    let (plain, damaged) = (p.c.dir.join("plain.tar"), p.c.dir.join("damaged.tar.zst"));
    let out = owner_sh(
        p,
        &format!(
            "set -o pipefail; {b}/weir-encrypt -d -i {key} < {stored} | {b}/weir-compress -d > {plain}",
            key = p.key.display(),
            stored = stored.display(),
            plain = plain.display(),
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut tar = std::fs::read(&plain).unwrap();
    let key = b"\"pieces\": \"";
    let at = tar
        .windows(key.len())
        .rposition(|w| w == key)
        .expect("a trailer with pieces")
        + key.len();
    // "OFFSET DATA_OFFSET CRC...": the first CRC's first hex digit, changed.
    let spaces = tar[at..].iter().enumerate().filter(|(_, c)| **c == b' ');
    let crc = at + spaces.map(|(i, _)| i).nth(1).unwrap() + 1;
    tar[crc] = if tar[crc] == b'0' { b'1' } else { b'0' };
    std::fs::write(&plain, &tar).unwrap();
    let out = owner_sh(
        p,
        &format!(
            "{b}/weir-compress < {plain} > {damaged} && {b}/weir-restore-physical -D {dir} --repo {repo} -i {key} --delta --from {damaged}",
            plain = plain.display(),
            damaged = damaged.display(),
            dir = p.c.data().display(),
            repo = p.repo.display(),
            key = p.key.display(),
        ),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not match its index"),
        "{}",
        stderr(&out)
    );
    assert!(!p.c.data().join("global/pg_control").exists());
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&damaged);
}

/// The member names of a tar stream.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// One step of a chain restore: a stored (zstd) stream into the data directory.
fn restore_step(p: &Pitr, stored: &Path, args: &str) -> Output {
    let b = p.bin.display();
    owner_sh(
        p,
        &format!(
            "set -o pipefail; {b}/weir-compress -d < {stored} | {b}/weir-restore-physical -D {data} --repo {repo} -i {key} {args}",
            key = p.key.display(),
            stored = stored.display(),
            data = p.c.data().display(),
            repo = p.repo.display(),
        ),
    )
}

/// A base backup through `--pgdata`, full or incremental against `parent` (a manifest file),
/// stored zstd-compressed as NAME.tar.zst with its manifest beside it as NAME.manifest.
fn local_backup(p: &Pitr, name: &str, parent: Option<&Path>) -> PathBuf {
    let stored = p.c.dir.join(format!("{name}.tar.zst"));
    let incr = parent.map_or(String::new(), |f| {
        format!("--incremental-from {}", f.display())
    });
    let b = p.bin.display();
    let out = owner_sh(
        p,
        &format!(
            "set -o pipefail; {b}/weir-basebackup --pgdata {data} -c fast --repo {repo} {incr} --manifest-file {dir}/{name}.manifest | {b}/weir-compress > {stored}",
            data = p.c.data().display(),
            repo = p.repo.display(),
            dir = p.c.dir.display(),
            stored = stored.display()
        ),
    );
    assert!(out.status.success(), "backup {name}: {}", stderr(&out));
    stored
}

/// Incremental base backups (issue 34): a full backup, then pgbench and DDL (a table created,
/// one dropped, one truncated, one extended, one vacuumed so its file shrinks), an
/// incremental, more of it, a second incremental. The chain restores in order to a time
/// target (sentinels on both sides, pg_verifybackup on the result, amcheck clean) and to the
/// end (pg_dumpall equal). An incremental restored onto the wrong parent, or onto nothing, is
/// exit 3 with the directory as it was; a damaged one is exit 3 and leaves a directory no
/// server can start.
#[test]
fn an_incremental_chain_restores_to_a_time_and_to_the_end() {
    let p = setup("pitr_incr");
    let c = &p.c;
    c.psql(
        "postgres",
        &format!(
            "CREATE TABLE sentinel (n int);
             CREATE TABLE dropme AS SELECT generate_series(1, 20000) AS i;
             CREATE TABLE trunc AS SELECT generate_series(1, 20000) AS i;
             CREATE TABLE grow AS SELECT generate_series(1, 1000) AS i;
             CREATE TABLE shrink AS SELECT generate_series(1, 100000) AS i;
             CREATE TABLESPACE ts1 LOCATION '{}';
             CREATE TABLE in_ts TABLESPACE ts1 AS SELECT generate_series(1, 50000) AS i;
             CREATE TABLE gone_ts TABLESPACE ts1 AS SELECT generate_series(1, 5000) AS i;",
            p.tablespace.display()
        ),
    );
    let out = pgbench(c, &["-i", "-q", "-s", "5"]).output().unwrap();
    assert!(out.status.success(), "pgbench -i: {}", stderr(&out));
    let full = local_backup(&p, "full", None);

    let out = pgbench(c, &["-t", "300", "-c", "2", "-n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench: {}", stderr(&out));
    c.psql(
        "postgres",
        "DROP TABLE dropme, gone_ts; UPDATE in_ts SET i = -i WHERE i % 50 = 0;
         TRUNCATE trunc; INSERT INTO grow SELECT generate_series(1, 200000);
         DELETE FROM shrink WHERE i > 1000; VACUUM shrink;
         CREATE TABLE created AS SELECT generate_series(1, 5000) AS i;",
    );
    // A parent manifest that was altered, or an incremental without --pgdata: refused.
    let text = std::fs::read_to_string(c.dir.join("full.manifest")).unwrap();
    let altered = c.dir.join("altered.manifest");
    std::fs::write(&altered, text.replacen("\"Size\": ", "\"Size\": 1", 1)).unwrap();
    let b = p.bin.display();
    for (args, code) in [
        (
            format!(
                "--pgdata {} --incremental-from {}",
                c.data().display(),
                altered.display()
            ),
            3,
        ),
        (
            format!(
                "--incremental-from {}",
                c.dir.join("full.manifest").display()
            ),
            2,
        ),
    ] {
        let out = owner_sh(
            &p,
            &format!(
                "{b}/weir-basebackup {args} > {}/refused.tar",
                c.dir.display()
            ),
        );
        assert_eq!(out.status.code(), Some(code), "{args}: {}", stderr(&out));
        assert_eq!(
            len(&c.dir.join("refused.tar")),
            0,
            "{args}: a stream was written"
        );
    }
    let i1 = local_backup(&p, "i1", Some(&c.dir.join("full.manifest")));
    let (full_len, i1_len) = (len(&full), len(&i1));
    assert!(
        i1_len * 3 < full_len,
        "incremental {i1_len} bytes, full {full_len}"
    );
    let names = tar_names(&decompressed(&p, &i1));
    assert!(
        names.iter().any(|n| n.contains("/INCREMENTAL.")),
        "{names:?}"
    );

    let out = pgbench(c, &["-t", "300", "-c", "2", "-n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench: {}", stderr(&out));
    c.psql(
        "postgres",
        "CREATE INDEX ON grow (i); UPDATE created SET i = -i WHERE i % 10 = 0",
    );
    let i2 = local_backup(&p, "i2", Some(&c.dir.join("i1.manifest")));
    c.psql("postgres", "INSERT INTO sentinel VALUES (1)");
    let time = q(c, "SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(50));
    c.psql("postgres", "INSERT INTO sentinel VALUES (2)");
    let last = switch(c);
    wait_archived(c, &last);
    let dump = dumpall(c);
    c.kill();

    // Out of order, or onto nothing: refused before anything changes.
    let out = restore_step(&p, &i1, "");
    assert_eq!(out.status.code(), Some(3), "onto nothing: {}", stderr(&out));
    let out = restore_step(&p, &full, "--clear");
    assert!(out.status.success(), "full: {}", stderr(&out));
    let out = restore_step(&p, &i2, "");
    assert_eq!(out.status.code(), Some(3), "i2 onto full: {}", stderr(&out));
    assert!(
        stderr(&out).contains("restore the chain in order"),
        "{}",
        stderr(&out)
    );
    // The parent's files under another cluster's pg_control: exit 6, nothing changed.
    let other = c.dir.join("other");
    let initdb = as_owner(
        &c.bindir.join("initdb"),
        &["-D", other.to_str().unwrap(), "-U", "postgres"],
    );
    assert!(initdb.status.success(), "{}", stderr(&initdb));
    let control = c.data().join("global/pg_control");
    let ours = std::fs::read(&control).unwrap();
    std::fs::copy(other.join("global/pg_control"), &control).unwrap();
    let out = restore_step(&p, &i1, "");
    assert_eq!(
        out.status.code(),
        Some(6),
        "another cluster: {}",
        stderr(&out)
    );
    assert!(c.data().join("backup_manifest").exists());
    std::fs::write(&control, ours).unwrap();
    assert!(
        c.data().join("global/pg_control").exists() && c.data().join("backup_manifest").exists()
    );

    let target = format!("--target-time '{time}' --target-action promote");
    for (stored, args) in [(&i1, ""), (&i2, target.as_str())] {
        let out = restore_step(&p, stored, args);
        assert!(
            out.status.success(),
            "{}: {}",
            stored.display(),
            stderr(&out)
        );
    }
    verifybackup(&p);
    assert!(server(&p, "start").status.success(), "{}", log(&p));
    wait_recovered(&p, false);
    assert_eq!(sentinels(c), "1");
    assert_eq!(q(c, "SELECT count(*) FROM grow"), "201000");
    assert_eq!(q(c, "SELECT count(*) FROM shrink"), "1000");
    assert_eq!(q(c, "SELECT to_regclass('dropme') IS NULL"), "t");
    assert_eq!(q(c, "SELECT count(*) FROM in_ts WHERE i < 0"), "1000");
    amcheck(&p);
    stop(&p);

    // The same chain in one command, each backup read by weir-restore-physical itself; an
    // object that is not there is exit 4 before anything changed.
    let b = p.bin.display();
    let from = |args: &str| {
        owner_sh(
            &p,
            &format!(
                "{b}/weir-restore-physical -D {data} --repo {repo} -i {key} {args}",
                key = p.key.display(),
                data = c.data().display(),
                repo = p.repo.display(),
            ),
        )
    };
    let out = from(&format!("--from {}.missing --clear", full.display()));
    assert_eq!(out.status.code(), Some(4), "missing: {}", stderr(&out));
    assert!(
        c.data().join("backup_manifest").exists(),
        "the directory changed"
    );
    let out = from(&format!(
        "--clear --target-action promote --from {} --from {} --from {}",
        full.display(),
        i1.display(),
        i2.display()
    ));
    assert!(out.status.success(), "--from the chain: {}", stderr(&out));
    assert!(server(&p, "start").status.success(), "{}", log(&p));
    wait_recovered(&p, false);
    assert_eq!(sentinels(c), "1,2");
    let after = dumpall(c);
    if after != dump {
        panic!("pg_dumpall differs:\n{}", scratch_diff(&p, &dump, &after));
    }
    amcheck(&p);
    stop(&p);

    chain_by_hand(&p, &full, &[&i1, &i2], &dump);

    // A flipped byte in an incremental member: exit 3, and no server could start on it.
    for (stored, args) in [(&full, "--clear"), (&i1, "")] {
        assert!(restore_step(&p, stored, args).status.success());
    }
    let mut tar = decompressed(&p, &i2);
    let (_, content, size) = member(&tar, |name| name.contains("/INCREMENTAL."));
    let at = content + size / 2;
    tar[at] ^= 1;
    let damaged = c.dir.join("damaged.tar.zst");
    std::fs::write(&damaged, zstd::encode_all(&tar[..], 1).unwrap()).unwrap();
    let out = restore_step(&p, &damaged, "");
    assert_eq!(out.status.code(), Some(3), "damaged: {}", stderr(&out));
    assert!(!c.data().join("global/pg_control").exists());
    assert!(
        !server(&p, "start").status.success(),
        "a server started on a damaged chain"
    );
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn decompressed(p: &Pitr, stored: &Path) -> Vec<u8> {
    let out = owner_sh(
        p,
        &format!(
            "{}/weir-compress -d < {}",
            p.bin.display(),
            stored.display()
        ),
    );
    assert!(out.status.success());
    out.stdout
}

/// docs/restore-by-hand.md's recipe for a chain, run as written there (paths replaced) for
/// each incremental in turn over a full backup weir restored: pg_verifybackup passes, and the
/// server recovers to the end with the same pg_dumpall.
fn chain_by_hand(p: &Pitr, full: &Path, incrementals: &[&Path], dump: &[u8]) {
    let recipe = guide_block("docs/restore-by-hand.md", 4);
    let recipe = recipe.as_str();
    let c = &p.c;
    let out = restore_step(p, full, "--clear");
    assert!(out.status.success(), "full: {}", stderr(&out));
    let data = c.data().display().to_string();
    let incr = c.dir.join("incr").display().to_string();
    let ts = p.tablespace.display().to_string();
    let oid = std::fs::read_dir(c.data().join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let verify = c.bindir.join("pg_verifybackup").display().to_string();
    for stored in incrementals {
        let sealed = stored.with_extension("zst.age");
        let b = p.bin.display();
        let out = owner_sh(
            p,
            &format!(
                "{b}/weir-encrypt -r {} < {} > {}",
                p.recipient,
                stored.display(),
                sealed.display()
            ),
        );
        assert!(out.status.success());
        let script = recipe
            .replace("/var/lib/postgresql/15/main", &data)
            .replace("/incr", &incr)
            .replace(" key.txt ", &format!(" {} ", p.key.display()))
            .replace("i1.tar.zst.age", &sealed.display().to_string())
            .replace("16384", &oid)
            .replace("/srv/ts1", &ts)
            .replace("pg_verifybackup", &verify);
        let out = owner_sh(p, &format!("set -e\n{script}"));
        assert!(
            out.status.success(),
            "the chain recipe as docs/restore-by-hand.md has it:\n{script}\n{}",
            stderr(&out)
        );
    }
    let settings = format!(
        "restore_command = '{} fetch --repo {} -i {} %f %p'\nrecovery_target_action = 'promote'\n",
        p.bin.join("weir-wal").display(),
        p.repo.display(),
        p.key.display()
    );
    let auto = c.data().join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap();
    conf.push_str(&settings);
    std::fs::write(&auto, conf).unwrap();
    std::fs::write(c.data().join("recovery.signal"), "").unwrap();
    sh(&format!(
        "chown postgres {} {}",
        auto.display(),
        c.data().join("recovery.signal").display()
    ));
    assert!(server(p, "start").status.success(), "{}", log(p));
    wait_recovered(p, false);
    let after = dumpall(c);
    if after != dump {
        panic!(
            "pg_dumpall differs after the chain by hand:\n{}",
            scratch_diff(p, dump, &after)
        );
    }
    stop(p);
}

/// backup.sh with BASEBACKUP_PGDATA takes a full backup, then incrementals
/// (BASEBACKUP_TYPE=incr), each against the newest base backup, keeping each manifest for the
/// next; the catalog links them, retention counts the full one only, and restore.sh restores
/// the newest as its chain (full, then each incremental) to the end: the same database.
/// Runs backup.sh with `vars` and kills it (its whole process group, -9) while the server
/// waits in pg_backup_stop for WAL it cannot archive (archive_command broken meanwhile); then
/// mends archiving.
fn killed_backup(p: &Pitr, vars: &[(&str, String)]) {
    use std::os::unix::process::CommandExt;
    let c = &p.c;
    let archiving = q(c, "SHOW archive_command");
    c.psql("postgres", "ALTER SYSTEM SET archive_command = 'false'");
    c.psql("postgres", "SELECT pg_reload_conf()");
    let scripts = c.dir.join("scripts");
    // What the killed job leaves in TMPDIR goes with the cluster's directory.
    let tmp = c.dir.join("killed-tmp");
    sh(&format!(
        "mkdir -p {0} && chown postgres {0} 2>/dev/null || true",
        tmp.display()
    ));
    let mut line = format!(
        "exec env TMPDIR={} POSTGRES_HOST={} POSTGRES_PORT={} POSTGRES_USER=postgres WEIR_BIN_DIR={} PATH={}:$PATH",
        quoted(&tmp.display().to_string()),
        quoted(&c.dir.display().to_string()),
        c.port,
        quoted(&p.bin.display().to_string()),
        quoted(&c.bindir.display().to_string())
    );
    for (k, v) in vars {
        line.push_str(&format!(" {k}={}", quoted(v)));
    }
    line.push_str(&format!(" bash {}", scripts.join("backup.sh").display()));
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "bash", "-c", &line])
        .process_group(0)
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while q(
        c,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_backup_stop%' AND pid <> pg_backend_pid()",
    ) == "0"
    {
        assert!(
            Instant::now() < deadline,
            "the backup never reached pg_backup_stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // procps kill, which takes a process group (dash's builtin does not).
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(!child.wait().unwrap().success());
    c.psql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            archiving.replace('\'', "''")
        ),
    );
    c.psql("postgres", "SELECT pg_reload_conf()");
}

#[test]
fn backup_sh_takes_incrementals_and_restore_sh_restores_their_chain() {
    let p = setup("pitr-incr-jobs");
    let c = &p.c;
    let backups = c.dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let repo = backups.join("_wal");
    sh(&format!(
        "rm -rf {0} && ln -s {1} {0} && chown -R postgres {2} 2>/dev/null || true",
        repo.display(),
        p.repo.display(),
        backups.display()
    ));
    let vars = |kind: &str| {
        vec![
            ("BACKUP_MODE", "physical".to_string()),
            ("BACKUP_DIR", backups.display().to_string()),
            ("AGE_RECIPIENTS", p.recipient.clone()),
            ("BASEBACKUP_PGDATA", c.data().display().to_string()),
            ("BASEBACKUP_TYPE", kind.to_string()),
            (
                "BASEBACKUP_MANIFEST_DIR",
                c.dir.join("manifests").display().to_string(),
            ),
            ("KEEP_LAST", "1".to_string()),
        ]
    };
    let ok = |out: Output, what: &str| assert!(out.status.success(), "{what}: {}", stderr(&out));
    let out = pgbench(c, &["-i", "-q", "-s", "3"]).output().unwrap();
    assert!(out.status.success(), "pgbench -i: {}", stderr(&out));
    c.psql("postgres", "CREATE TABLE sentinel (n int)");
    // The first incremental has no parent yet: a full backup.
    let out = job(&p, "backup.sh", &vars("incr"));
    ok(out, "first backup");
    for n in 1..=2 {
        let out = pgbench(c, &["-t", "200", "-n"]).output().unwrap();
        assert!(out.status.success(), "pgbench: {}", stderr(&out));
        c.psql("postgres", &format!("INSERT INTO sentinel VALUES ({n})"));
        let out = job(&p, "backup.sh", &vars("incr"));
        assert!(
            stderr(&out).contains("incremental base backup"),
            "{}",
            stderr(&out)
        );
        ok(out, "an incremental");
    }
    // A backup killed part-way adds nothing to the catalog, and the next incremental's
    // parent is the last whole backup.
    killed_backup(&p, &vars("incr"));
    let out = job(&p, "backup.sh", &vars("incr"));
    ok(out, "the incremental after the killed one");
    let ls = owner_sh(
        &p,
        &format!(
            "{}/weir-ls --catalog --json {}/_physical/",
            p.bin.display(),
            backups.display()
        ),
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(listed.len(), 4, "retention kept the chain: {listed:?}");
    assert_eq!(
        listed[3]["physical"]["parent"]["manifest_checksum"],
        listed[2]["physical"]["manifest_checksum"]
    );
    let size = |i: usize| listed[i]["object"]["size"].as_u64().unwrap();
    assert!(listed[0]["physical"]["parent"].is_null());
    assert_eq!(
        listed[1]["physical"]["parent"]["manifest_checksum"],
        listed[0]["physical"]["manifest_checksum"]
    );
    assert_eq!(
        listed[2]["physical"]["parent"]["manifest_checksum"],
        listed[1]["physical"]["manifest_checksum"]
    );
    assert!(size(1) * 3 < size(0) && size(2) * 3 < size(0), "{listed:?}");
    c.psql("postgres", "INSERT INTO sentinel VALUES (3)");
    let last = switch(c);
    wait_archived(c, &last);
    let dump = dumpall(c);
    c.kill();

    let out = job(
        &p,
        "restore.sh",
        &[
            ("RESTORE_MODE", "physical".to_string()),
            ("RESTORE_PGDATA", c.data().display().to_string()),
            ("RESTORE_CLEAR", "1".into()),
            ("BACKUP_DIR", backups.display().to_string()),
            ("AGE_IDENTITY_FILE", p.key.display().to_string()),
            (
                "RESTORE_PG_OPTS",
                format!(
                    "-p {} -k {} -c archive_mode=off -c listen_addresses=''",
                    c.port,
                    c.dir.display()
                ),
            ),
            (
                "RESTORE_LOG",
                c.dir.join("recovery.log").display().to_string(),
            ),
        ],
    );
    // The chain, in order, found by weir-restore-physical in the catalog: the full backup,
    // then each incremental over it.
    let said = stderr(&out);
    let steps: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split("weir-restore-physical: restoring ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let urls: Vec<&str> = listed.iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert_eq!(steps, urls, "{said}");
    ok(out, "restore.sh");
    assert_eq!(sentinels(c), "1,2,3");
    let after = dumpall(c);
    if after != dump {
        panic!("pg_dumpall differs:\n{}", scratch_diff(&p, &dump, &after));
    }
    stop(&p);
}
