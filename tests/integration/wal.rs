//! weir-wal: PostgreSQL archiving through `weir-wal push` (a real server with
//! `archive_mode = on`, under pgbench load), every archived segment fetched back
//! byte-identical, the contracts of both commands exit code by exit code, and a restored copy
//! recovering through `weir-wal fetch` to the primary's last archived segment.

use crate::harness::*;
use crate::objstore;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A cluster archiving to a directory repository through weir-wal, compressed and encrypted.
struct Archiving {
    c: Cluster,
    repo: PathBuf,
    key: PathBuf,
    recipient: String,
    bin: PathBuf,
}

/// The binaries the server runs must be reachable by its user: copied into its directory.
pub(crate) fn server_copy_of(c: &Cluster, name: &str) -> PathBuf {
    let to = c.dir.join(name);
    std::fs::copy(bin(name), &to).unwrap();
    sh(&format!(
        "chmod 755 {0} && (chown postgres {0} 2>/dev/null || true)",
        to.display()
    ));
    to
}

fn archiving() -> Archiving {
    // The settings are written before the start; the command is filled in through a file the
    // server reads at each call, since the cluster's own directory is only known now.
    let probe = Cluster::start_with(
        "wal",
        "wal_level = replica\narchive_mode = on\narchive_command = 'sh archive.sh %p'\nmax_wal_senders = 4\narchive_timeout = 0",
    );
    let repo = probe.dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let key = probe.dir.join("key.txt");
    let out = tool("age-keygen", &["-o", key.to_str().unwrap()], b"");
    assert!(out.status.success());
    let recipient =
        String::from_utf8(tool("age-keygen", &["-y", key.to_str().unwrap()], b"").stdout)
            .unwrap()
            .trim()
            .to_string();
    let bin = server_copy_of(&probe, "weir-wal");
    std::fs::write(
        probe.data().join("archive.sh"),
        format!(
            "exec {} push --repo {} -r {recipient} --parallel 2 --spool {} --metrics {} \"$1\"\n",
            bin.display(),
            repo.display(),
            probe.dir.join("spool-push").display(),
            probe.dir.join("wal.prom").display()
        ),
    )
    .unwrap();
    sh(&format!(
        "chown -R postgres {0} {1} 2>/dev/null || true; chmod 644 {2}",
        repo.display(),
        probe.data().join("archive.sh").display(),
        key.display()
    ));
    Archiving {
        c: probe,
        repo,
        key,
        recipient,
        bin,
    }
}

pub(crate) fn q(c: &Cluster, sql: &str) -> String {
    c.psql("postgres", sql).trim().to_string()
}

/// Waits until the archiver has archived `name` (or later) with no failure since.
pub(crate) fn wait_archived(c: &Cluster, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = q(
            c,
            "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver",
        );
        let last = row.split('|').next().unwrap_or("").to_string();
        if last.as_str() >= name && last.len() == 24 {
            return;
        }
        assert!(Instant::now() < deadline, "archiving stalled: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Switches to a new segment and returns the name of the one just finished.
pub(crate) fn switch(c: &Cluster) -> String {
    q(c, "SELECT pg_walfile_name(pg_switch_wal())")
}

fn fetch(a: &Archiving, name: &str, dest: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "fetch",
        "--repo",
        a.repo.to_str().unwrap(),
        "-i",
        a.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend([name, dest.to_str().unwrap()]);
    weir("weir-wal", &args, b"")
}

fn push(repo: &str, path: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["push", "--repo", repo];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    weir_env("weir-wal", &args, b"", env)
}

#[test]
fn the_archive_holds_every_segment_and_both_commands_keep_their_contracts() {
    let a = archiving();
    let c = &a.c;
    // Load: pgbench's tables and a few seconds of its transactions, across segment switches.
    let pgbench = c.bindir.join("pgbench");
    let mut env = c.env();
    env.push(("PGDATABASE".into(), "postgres".into()));
    let run = |args: &[&str]| {
        let out = scrub(&mut Command::new(&pgbench), &env)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-i", "-q", "-s", "4"]);
    for _ in 0..3 {
        run(&["-T", "1", "-c", "2", "-n"]);
        switch(c);
    }
    let last = switch(c);
    wait_archived(c, &last);
    assert_eq!(q(c, "SELECT failed_count FROM pg_stat_archiver"), "0");
    let metrics = std::fs::read_to_string(c.dir.join("wal.prom")).unwrap();
    assert!(
        metrics.contains(&format!("file=\"{last}\"}} 1\n")),
        "{metrics}"
    );
    assert!(metrics.contains("weir_wal_push_success{"), "{metrics}");
    assert!(
        metrics.contains("} 0\n") && metrics.contains("weir_wal_push_failures_total{"),
        "{metrics}"
    );
    // Every segment the archiver counted is in the repository, and every one still in pg_wal
    // fetches back byte-identical.
    let archived: usize = q(c, "SELECT archived_count FROM pg_stat_archiver")
        .parse()
        .unwrap();
    let objects = files(&a.repo.join("wal"));
    assert_eq!(objects.len(), archived, "{objects:?}");
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("RECOVERYXLOG");
    let mut compared = 0;
    for done in std::fs::read_dir(c.data().join("pg_wal/archive_status")).unwrap() {
        let done = done.unwrap().file_name().to_string_lossy().to_string();
        let Some(name) = done.strip_suffix(".done") else {
            continue;
        };
        let Ok(original) = std::fs::read(c.data().join("pg_wal").join(name)) else {
            continue;
        };
        let o = fetch(&a, name, &dest, &["-D", c.data().to_str().unwrap()]);
        assert!(o.status.success(), "fetch {name}: {}", stderr(&o));
        assert!(std::fs::read(&dest).unwrap() == original, "{name} differs");
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} segments compared");
    // Stored objects are age(zstd(segment)): age and zstd recover one by hand.
    let one = &objects[0];
    let by_hand = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i {} < {} | zstd -d -c | wc -c",
            a.key.display(),
            one.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&by_hand.stdout).trim(),
        (16 << 20).to_string()
    );
    inventory(&a, archived);
    ahead_of_the_server(&a, &last);
    push_contracts(&a, &last);
    fetch_contracts(&a, &last, scratch.path());
    recovers_a_restored_copy(&a);
}

/// ls lists what the archiver archived; verify passes on the whole archive and on a range,
/// names a missing segment (exit 4), and with --deep finds a damaged one (exit 3).
fn inventory(a: &Archiving, archived: usize) {
    let repo = a.repo.to_str().unwrap();
    let ls =
        String::from_utf8(ok(weir("weir-wal", &["ls", "--repo", repo, "--json"], b""))).unwrap();
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let names: Vec<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), archived);
    let key = a.key.to_str().unwrap();
    let o = weir(
        "weir-wal",
        &["verify", "--repo", repo, "--deep", "-i", key],
        b"",
    );
    assert!(
        o.status.success(),
        "{} {}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    let range = format!("{}..{}", names[0], names[names.len() - 1]);
    assert!(
        weir(
            "weir-wal",
            &["verify", "--repo", repo, "--range", &range],
            b""
        )
        .status
        .success()
    );
    // A copy of the repository with a hole and a damaged segment.
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("repo");
    sh(&format!("cp -a {} {}", a.repo.display(), copy.display()));
    let copy_s = copy.to_str().unwrap();
    let hole = &names[1];
    std::fs::remove_file(copy.join("wal").join(&hole[..16]).join(hole)).unwrap();
    let o = weir("weir-wal", &["verify", "--repo", copy_s], b"");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains(hole.as_str()), "{}", stderr(&o));
    let beyond = format!("{}..{}", names[2], names[names.len() - 1]);
    assert!(
        weir(
            "weir-wal",
            &["verify", "--repo", copy_s, "--range", &beyond],
            b""
        )
        .status
        .success()
    );
    let bad = &names[2];
    let path = copy.join("wal").join(&bad[..16]).join(bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let o = weir(
        "weir-wal",
        &[
            "verify", "--repo", copy_s, "--range", &beyond, "--deep", "-i", key,
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(bad.as_str()), "{}", stderr(&o));
}

/// push --parallel pushes the next .ready files too, and the server's calls for them return
/// at once, unless the file changed since (then the usual checks decide); fetch --prefetch
/// leaves the next segments, verified, in its spool.
fn ahead_of_the_server(a: &Archiving, last: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let wal = scratch.path().join("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    let seg = std::fs::read(a.c.data().join("pg_wal").join(last)).unwrap();
    let names = [
        "0000000100000000000000C0",
        "0000000100000000000000C1",
        "0000000100000000000000C2",
    ];
    for (i, n) in names.iter().enumerate() {
        let mut b = moved_to(&seg, n);
        b[8192 * 3] = i as u8;
        std::fs::write(wal.join(n), b).unwrap();
        std::fs::write(wal.join("archive_status").join(format!("{n}.ready")), "").unwrap();
    }
    let spool = scratch.path().join("spool");
    let repo = a.repo.to_str().unwrap();
    let r = [
        "-r",
        a.recipient.as_str(),
        "--parallel",
        "3",
        "--spool",
        spool.to_str().unwrap(),
    ];
    let o = push(repo, &wal.join(names[0]), &r, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The call pushed C0 itself; a background process pushes C1 and C2 and notes them.
    assert!(a.repo.join("wal/0000000100000000").join(names[0]).exists());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names[1..]
        .iter()
        .all(|n| spool.join(format!("{n}.pushed")).exists())
    {
        assert!(Instant::now() < deadline, "nothing pushed ahead");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in names {
        assert!(
            a.repo.join("wal/0000000100000000").join(n).exists(),
            "{n} not pushed"
        );
    }
    assert!(spool.join(format!("{}.pushed", names[1])).exists());
    assert!(push(repo, &wal.join(names[1]), &r, &[]).status.success());
    assert!(!spool.join(format!("{}.pushed", names[1])).exists());
    // Changed since it was pushed ahead: the note does not apply, and the content differs.
    let mut changed = std::fs::read(wal.join(names[2])).unwrap();
    changed[8192 * 4] ^= 1;
    std::fs::write(wal.join(names[2]), changed).unwrap();
    assert_eq!(
        push(repo, &wal.join(names[2]), &r, &[]).status.code(),
        Some(5)
    );
    // Prefetch: fetching C0 leaves C1 and C2 in the spool, byte for byte what was pushed.
    let fspool = scratch.path().join("fetch-spool");
    let dest = scratch.path().join("RECOVERYXLOG");
    let o = fetch(
        a,
        names[0],
        &dest,
        &["--prefetch", "3", "--spool", fspool.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(fspool.join(names[1]).exists() && fspool.join(names[2]).exists()) {
        assert!(Instant::now() < deadline, "nothing prefetched");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut want = moved_to(&seg, names[1]);
    want[8192 * 3] = 1;
    assert!(std::fs::read(fspool.join(names[1])).unwrap() == want);
    let o = fetch(
        a,
        names[1],
        &dest,
        &["--prefetch", "3", "--spool", fspool.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == want);
    assert!(!fspool.join(names[1]).exists());
    // Each fetch started a prefetcher in the background. One still starting could find the
    // spool marked as from an earlier boot by the lines below, clear it, mark it as this
    // boot's, and so make the torn file look whole: let them finish first.
    let spool = fspool.to_str().unwrap().to_string();
    wait_until("the background prefetchers to finish", 30, || {
        !running_with_arg(&spool)
    });
    // The spool's files are not synced, so a spool from before a restart of the machine (as
    // its .boot says) is never taken: here a torn C2 is ignored and fetched again whole.
    let boot = std::fs::read_to_string(fspool.join(".boot")).unwrap();
    assert_eq!(
        boot,
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap()
    );
    std::fs::write(fspool.join(".boot"), "an earlier boot\n").unwrap();
    std::fs::write(fspool.join(names[2]), b"torn by a power cut").unwrap();
    let o = fetch(
        a,
        names[2],
        &dest,
        &["--prefetch", "3", "--spool", fspool.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut want = moved_to(&seg, names[2]);
    want[8192 * 3] = 2;
    assert!(
        std::fs::read(&dest).unwrap() == want,
        "a torn spool file was taken"
    );
    // clear-spool (recovery_end_command) waits for the prefetcher and removes the spool; a
    // second call, with nothing left, succeeds too; a prefetcher still starting finds the
    // spool gone and does not make it again.
    for _ in 0..2 {
        let o = weir("weir-wal", &["clear-spool", &spool], b"");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!fspool.exists());
    }
    wait_until("the prefetchers to stop", 30, || !running_with_arg(&spool));
    assert!(!fspool.exists(), "a prefetcher made the spool again");
}

/// A copy of a segment whose first page says it starts where `name` does (16 MiB segments),
/// as a real segment of that name would; push and fetch check it.
fn moved_to(seg: &[u8], name: &str) -> Vec<u8> {
    let n = u64::from_str_radix(&name[8..16], 16).unwrap() * 256
        + u64::from_str_radix(&name[16..], 16).unwrap();
    let mut b = seg.to_vec();
    b[8..16].copy_from_slice(&(n << 24).to_le_bytes());
    b
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if !p.to_string_lossy().ends_with(".sha256") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// push: identical again is 0; other bytes under an archived name and a changed .history are
/// exit 5 and leave the object; a segment of another cluster is exit 6; a torn file is exit 3.
fn push_contracts(a: &Archiving, last: &str) {
    let repo = a.repo.to_str().unwrap();
    let r = ["-r", a.recipient.as_str()];
    let seg = a.c.data().join("pg_wal").join(last);
    let o = push(repo, &seg, &r, &[]);
    assert!(o.status.success(), "identical re-push: {}", stderr(&o));
    let scratch = tempfile::tempdir().unwrap();
    let forged = scratch.path().join(last);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[9000] ^= 0xff;
    std::fs::write(&forged, &bytes).unwrap();
    let o = push(repo, &forged, &r, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already archived with different content"),
        "{}",
        stderr(&o)
    );
    let back = scratch.path().join("back");
    assert!(fetch(a, last, &back, &[]).status.success());
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&seg).unwrap());
    // --no-sync skips only the sync: the same bytes, through a rename.
    let unsynced = scratch.path().join("unsynced");
    assert!(fetch(a, last, &unsynced, &["--no-sync"]).status.success());
    assert!(std::fs::read(&unsynced).unwrap() == std::fs::read(&seg).unwrap());
    let leftovers = std::fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".weir-tmp."));
    assert!(!leftovers, "a temporary file was left beside %p");
    // A history file is written once.
    let hist = scratch.path().join("00000009.history");
    std::fs::write(&hist, "1\t0/3000000\tno recovery target specified\n").unwrap();
    assert!(push(repo, &hist, &r, &[]).status.success());
    assert!(push(repo, &hist, &r, &[]).status.success());
    std::fs::write(&hist, "1\t0/4000000\tno recovery target specified\n").unwrap();
    assert_eq!(push(repo, &hist, &r, &[]).status.code(), Some(5));
    // A .partial segment (a promotion's last one) and a .backup file go and come back under
    // their names.
    let partial = scratch.path().join(format!("{last}.partial"));
    std::fs::copy(&seg, &partial).unwrap();
    let backup = scratch.path().join(format!("{last}.00000028.backup"));
    std::fs::write(&backup, "START WAL LOCATION: 0/5000028\nLABEL: weir\n").unwrap();
    for f in [&partial, &backup] {
        let o = push(repo, f, &r, &[]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        let name = f.file_name().unwrap().to_str().unwrap();
        let o = fetch(a, name, &back, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            std::fs::read(&back).unwrap() == std::fs::read(f).unwrap(),
            "{name}"
        );
    }
    // Another initdb's segment: the shared cluster's.
    let other = cluster();
    let name = q(other, "SELECT pg_walfile_name(pg_switch_wal())");
    std::thread::sleep(Duration::from_millis(200));
    let theirs = other.data().join("pg_wal").join(&name);
    // Our own archive may hold a segment of that name: it must stay as it was.
    let ours = a.repo.join("wal").join(&name[..16]).join(&name);
    let before = std::fs::read(&ours).ok();
    let o = push(repo, &theirs, &r, &[]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("belongs to another cluster"),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::read(&ours).ok() == before);
    // A segment under another segment's name is refused: its header says where it starts.
    let renamed = scratch.path().join("0000000100000000000000D0");
    std::fs::copy(&seg, &renamed).unwrap();
    let o = push(repo, &renamed, &r, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not where this name starts"),
        "{}",
        stderr(&o)
    );
    // A torn segment (a short copy) is not archived.
    let torn = scratch.path().join("000000010000000000000099");
    std::fs::write(&torn, &bytes[..8192 * 3]).unwrap();
    assert_eq!(push(repo, &torn, &r, &[]).status.code(), Some(3));
    // A crash after the digest and before the object left the digest alone: the retry wins.
    let next = "0000000100000000000000A0";
    let dir = a.repo.join("wal/0000000100000000");
    std::fs::write(dir.join(format!("{next}.sha256")), "0000\n").unwrap();
    let mut seg_a0 = moved_to(&std::fs::read(&seg).unwrap(), next);
    seg_a0[8192 * 2] ^= 1;
    std::fs::write(scratch.path().join(next), &seg_a0).unwrap();
    let o = push(repo, &scratch.path().join(next), &r, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fetch(a, next, &back, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&back).unwrap() == seg_a0);
}

/// fetch: absent is exit 1 with nothing at %p; damage, a wrong key, truncation, no
/// repository, another cluster's data directory and an unreachable S3 service are exit 255.
fn fetch_contracts(a: &Archiving, last: &str, scratch: &Path) {
    let dest = scratch.join("RECOVERYXLOG");
    let _ = std::fs::remove_file(&dest);
    let o = fetch(a, "0000000100000000000000FE", &dest, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dest.exists());
    let o = fetch(a, "00000005.history", &dest, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let object = a.repo.join("wal").join(&last[..16]).join(last);
    let good = std::fs::read(&object).unwrap();
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n / 2] ^= 1;
    for (what, bytes) in [
        ("flipped", flipped),
        ("truncated", good[..n - 1000].to_vec()),
    ] {
        std::fs::write(&object, &bytes).unwrap();
        let o = fetch(a, last, &dest, &[]);
        assert_eq!(o.status.code(), Some(255), "{what}: {}", stderr(&o));
        assert!(!dest.exists(), "{what}: a file was left");
    }
    std::fs::write(&object, &good).unwrap();
    let other_key = scratch.join("other.txt");
    tool("age-keygen", &["-o", other_key.to_str().unwrap()], b"");
    let o = weir(
        "weir-wal",
        &[
            "fetch",
            "--repo",
            a.repo.to_str().unwrap(),
            "-i",
            other_key.to_str().unwrap(),
            last,
            dest.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(255), "wrong key: {}", stderr(&o));
    // What waiting cannot mend fails at once, with one line and no "retrying" (issue 34).
    let repo = a.repo.to_str().unwrap();
    let dest_s = dest.to_str().unwrap();
    for (what, args) in [
        ("no identity", ["fetch", "--repo", repo, last, dest_s]),
        (
            "a malformed URL",
            ["fetch", "--repo", "s3:///wal", last, dest_s],
        ),
        (
            "another scheme",
            ["fetch", "--repo", "ftp://host/wal", last, dest_s],
        ),
    ] {
        let o = weir("weir-wal", &args, b"");
        assert_eq!(o.status.code(), Some(255), "{what}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim().lines().count(),
            1,
            "{what}: {}",
            stderr(&o)
        );
    }
    let o = weir(
        "weir-wal",
        &[
            "fetch",
            "--repo",
            "/nonexistent/repo",
            "--retry-for",
            "1",
            last,
            dest.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(255), "no repository: {}", stderr(&o));
    let o = weir(
        "weir-wal",
        &[
            "fetch",
            "--repo",
            a.repo.to_str().unwrap(),
            "--bogus",
            last,
            "x",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(255), "a usage error: {}", stderr(&o));
    let o = fetch(a, last, &dest, &["-D", cluster().data().to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(255),
        "another cluster: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the repository holds"),
        "{}",
        stderr(&o)
    );
    assert!(!dest.exists());
    s3_contracts(a, last, scratch);
}

/// The same through S3: push and fetch back; a stopped service is exit 255 after the retry
/// time, a push killed while it waits leaves no object, and its retry succeeds; SIGTERM
/// during a fetch leaves nothing.
fn s3_contracts(a: &Archiving, last: &str, scratch: &Path) {
    let s3 = objstore::S3Server::start();
    let bucket = s3.bucket("wal");
    let env: Vec<(String, String)> = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let repo = format!("s3://{bucket}/cluster1");
    let seg = a.c.data().join("pg_wal").join(last);
    let o = push(&repo, &seg, &["-r", &a.recipient], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        push(&repo, &seg, &["-r", &a.recipient], &env)
            .status
            .success()
    );
    let dest = scratch.join("from-s3");
    let fetch_s3 = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "fetch",
            "--repo",
            repo.as_str(),
            "-i",
            a.key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend([name, dest.to_str().unwrap()]);
        weir_env("weir-wal", &args, b"", &env)
    };
    let o = fetch_s3(last, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&seg).unwrap());
    std::fs::remove_file(&dest).unwrap();
    assert_eq!(
        fetch_s3("0000000100000000000000FE", &[]).status.code(),
        Some(1)
    );
    s3.stop();
    let o = fetch_s3(last, &["--retry-for", "1", "--attempts", "1"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(!dest.exists());
    // SIGTERM while fetch retries: nothing at %p, and not exit 1.
    let mut child = s3_command(
        &env,
        &[
            "fetch",
            "--repo",
            &repo,
            "-i",
            a.key.to_str().unwrap(),
            last,
            dest.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    sh(&format!("kill -TERM {}", child.id()));
    let status = child.wait().unwrap();
    assert!(status.code().is_none_or(|c| c > 125), "{status:?}");
    assert!(!dest.exists());
    // SIGKILL while push waits for the service: no object; the retried push succeeds.
    let next = scratch.join("0000000100000000000000B0");
    let mut other = moved_to(&std::fs::read(&seg).unwrap(), "0000000100000000000000B0");
    other[8192 * 5] ^= 1;
    std::fs::write(&next, &other).unwrap();
    let mut child = s3_command(
        &env,
        &[
            "push",
            "--repo",
            &repo,
            "-r",
            &a.recipient,
            next.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    let _ = child.wait();
    s3.resume();
    assert!(
        s3.stored(
            &bucket,
            "cluster1/wal/0000000100000000/0000000100000000000000B0"
        )
        .is_none()
    );
    let o = push(&repo, &next, &["-r", &a.recipient], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fetch_s3("0000000100000000000000B0", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == other);
    // ls and verify under an S3 prefix: both segments, and the gap between them.
    let ls = weir_env("weir-wal", &["ls", "--repo", &repo, "--json"], b"", &env);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [last, "0000000100000000000000B0"]);
    let o = weir_env("weir-wal", &["verify", "--repo", &repo], b"", &env);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

fn s3_command(env: &[(&str, &str)], args: &[&str]) -> std::process::Child {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    scrub(&mut Command::new(bin("weir-wal")), &env)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A base backup without WAL, then rows written after it: a copy started from the backup
/// recovers through weir-wal fetch alone, up to the primary's last archived segment.
fn recovers_a_restored_copy(a: &Archiving) {
    let c = &a.c;
    c.psql("postgres", "CREATE TABLE after_backup (id int)");
    let copy = c.dir.join("copy");
    let out = scrub(&mut Command::new(c.bindir.join("pg_basebackup")), &c.env())
        .args(["-D", copy.to_str().unwrap(), "-X", "none", "-c", "fast"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.psql(
        "postgres",
        "INSERT INTO after_backup SELECT generate_series(1, 50000)",
    );
    let last = switch(c);
    wait_archived(c, &last);
    let want = q(c, "SELECT count(*), sum(id) FROM after_backup");
    let port = free_port();
    std::fs::write(
        copy.join("postgresql.auto.conf"),
        format!(
            "restore_command = '{} fetch --repo {} -i {} --retry-for 5 --prefetch 4 --spool {} %f %p'\narchive_mode = off\nport = {port}\n",
            a.bin.display(),
            a.repo.display(),
            a.key.display(),
            c.dir.join("spool-fetch").display()
        ),
    )
    .unwrap();
    std::fs::write(copy.join("recovery.signal"), "").unwrap();
    sh(&format!(
        "rm -f {0}/archive.sh; chown -R postgres {0} 2>/dev/null || true; chmod 700 {0}",
        copy.display()
    ));
    let log = c.dir.join("copy.log");
    let out = as_owner(
        &c.bindir.join("pg_ctl"),
        &[
            "-D",
            copy.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &format!("-k {}", c.dir.display()),
            "-w",
            "-t",
            "120",
            "start",
        ],
    );
    assert!(
        out.status.success(),
        "start the copy: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let copy_env = vec![
        ("PGHOST".to_string(), c.dir.display().to_string()),
        ("PGPORT".to_string(), port.to_string()),
        ("PGUSER".to_string(), "postgres".to_string()),
    ];
    let psql = |sql: &str| {
        let out = scrub(&mut Command::new(c.bindir.join("psql")), &copy_env)
            .args(["-X", "-A", "-t", "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql("SELECT pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "recovery did not finish: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(psql("SELECT count(*), sum(id) FROM after_backup"), want);
    let _ = as_owner(
        &c.bindir.join("pg_ctl"),
        &["-D", copy.to_str().unwrap(), "-m", "immediate", "stop"],
    );
}

/// Whether a process of this machine has `arg` on its command line.
fn running_with_arg(arg: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
    })
}
