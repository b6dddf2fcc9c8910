//! weir-put, weir-get, weir-ls and weir-rm against a real S3-compatible server (s3s-fs, which
//! checks signatures) and the local-directory backend: byte-for-byte round trips at the part
//! boundaries, a 1 GiB stream within a small memory budget, server crashes mid-transfer,
//! SIGTERM, wrong credentials, missing buckets and keys, and a full disk.

use crate::harness::*;
use crate::objstore::{S3Server, shared};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Incompressible, reproducible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn s3_round_trips_at_every_part_boundary() {
    let s3 = shared();
    let b = s3.bucket("sizes");
    let data = noise(3 * 8 * MIB + 12345, 1);
    // Empty, tiny, one byte short of a part, exactly one part (a single PUT: the second read
    // finds nothing), one byte over (two parts), and several parts.
    for n in [0, 1, 1000, 8 * MIB - 1, 8 * MIB, 8 * MIB + 1, data.len()] {
        let url = format!("s3://{b}/size-{n}.bin");
        let o = s3.run("weir-put", &["--memory", "44M", &url], &data[..n]);
        run_ok(o, &format!("weir-put of {n} bytes"));
        assert_eq!(
            s3.stored(&b, &format!("size-{n}.bin")).as_deref(),
            Some(&data[..n]),
            "the server holds exactly the {n} bytes"
        );
        let got = run_ok(s3.run("weir-get", &["-j", "3", &url], b""), "weir-get");
        assert!(got == data[..n], "weir-get returned other bytes for {n}");
    }
    // -o writes a file; --if-none-match refuses to replace and leaves the object alone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.bin");
    let url = format!("s3://{b}/size-1000.bin");
    run_ok(
        s3.run("weir-get", &["-o", file.to_str().unwrap(), &url], b""),
        "weir-get -o",
    );
    assert_eq!(std::fs::read(&file).unwrap(), &data[..1000]);
    let o = s3.run("weir-put", &["--if-none-match", &url], b"other");
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(s3.stored(&b, "size-1000.bin").unwrap(), &data[..1000]);
    // Metadata and content type reach the server.
    let o = s3.run(
        "weir-put",
        &[
            "--metadata",
            "source=prod",
            "--content-type",
            "application/x-weir",
            &format!("s3://{b}/meta"),
        ],
        b"x",
    );
    run_ok(o, "weir-put --metadata");
    let attrs: String = std::fs::read_dir(&s3.root)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(
        attrs.contains("application/x-weir") && attrs.contains("prod"),
        "{attrs}"
    );
}

#[test]
fn local_directory_round_trips_listing_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let data = noise(5 * MIB + 3, 2);
    for (n, url) in [
        (0, format!("{root}/a/empty.bin")),
        (10, format!("file://{root}/a/ten.bin")),
        (data.len(), format!("{root}/b/big.bin")),
    ] {
        run_ok(
            stage("weir-put", &[&url], &data[..n], &[]),
            "weir-put local",
        );
        let got = run_ok(stage("weir-get", &[&url], b"", &[]), "weir-get local");
        assert!(got == data[..n]);
    }
    // No temporary file is left beside the objects.
    let listing = run_ok(stage("weir-ls", &[&root], b"", &[]), "weir-ls");
    let listing = String::from_utf8(listing).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(lines[0].ends_with("/a/empty.bin") && lines[2].ends_with("/b/big.bin"));
    assert!(lines[2].contains(&data.len().to_string()));
    assert!(!listing.contains("weir-tmp"));
    // A prefix that is not a directory matches by name, as in S3.
    let json = run_ok(
        stage("weir-ls", &["--json", &format!("{root}/a/t")], b"", &[]),
        "weir-ls --json",
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["size"], 10);
    // Create-only, missing objects, removal.
    let o = stage(
        "weir-put",
        &["--if-none-match", &format!("{root}/a/ten.bin")],
        b"new",
        &[],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(format!("{root}/a/ten.bin")).unwrap(),
        &data[..10]
    );
    let o = stage("weir-get", &[&format!("{root}/nope")], b"", &[]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("no such object"));
    assert!(o.stdout.is_empty());
    run_ok(
        stage("weir-rm", &["-q", &format!("{root}/a/ten.bin")], b"", &[]),
        "weir-rm",
    );
    assert_eq!(
        code(&stage("weir-rm", &[&format!("{root}/a/ten.bin")], b"", &[])),
        4
    );
    run_ok(
        stage("weir-rm", &["-f", &format!("{root}/a/ten.bin")], b"", &[]),
        "weir-rm -f",
    );
    run_ok(stage("weir-rm", &["-r", &root], b"", &[]), "weir-rm -r");
    assert!(!dir.path().join("b").exists());
}

#[test]
fn s3_listing_and_recursive_removal() {
    let s3 = shared();
    let b = s3.bucket("listing");
    for (k, n) in [("keep/x", 3), ("p/1", 1), ("p/2", 2), ("p/sub/3", 3000)] {
        run_ok(
            s3.run("weir-put", &[&format!("s3://{b}/{k}")], &noise(n, 3)),
            "put",
        );
    }
    let out = String::from_utf8(run_ok(
        s3.run("weir-ls", &[&format!("s3://{b}/p/")], b""),
        "ls",
    ))
    .unwrap();
    let keys: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            format!("s3://{b}/p/1"),
            format!("s3://{b}/p/2"),
            format!("s3://{b}/p/sub/3")
        ]
    );
    assert!(out.lines().nth(2).unwrap().contains(" 3000 "), "{out}");
    let json = run_ok(
        s3.run("weir-ls", &["--json", &format!("s3://{b}/")], b""),
        "ls --json",
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    let o = s3.run("weir-rm", &["--recursive", &format!("s3://{b}/p/")], b"");
    assert_eq!(stderr(&run_ok_keep(o)).lines().count(), 3);
    let out = String::from_utf8(run_ok(
        s3.run("weir-ls", &[&format!("s3://{b}/")], b""),
        "ls",
    ))
    .unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    let o = s3.run("weir-rm", &[&format!("s3://{b}/p/1")], b"");
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

fn run_ok_keep(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

#[test]
fn errors_name_the_problem_and_exit_non_zero() {
    let s3 = shared();
    let b = s3.bucket("errors");
    run_ok(
        s3.run("weir-put", &[&format!("s3://{b}/k")], b"data"),
        "put",
    );
    let wrong = [("AWS_SECRET_ACCESS_KEY", "not-the-secret")];
    for (tool, input) in [("weir-put", &b"x"[..]), ("weir-get", &b""[..])] {
        let o = s3.run_env(tool, &[&format!("s3://{b}/k")], input, &wrong);
        assert_eq!(code(&o), 1, "{tool}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("access denied"),
            "{tool}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    // No credentials anywhere (no variables, no files, no instance metadata).
    let mut cmd = s3.command("weir-get", &[&format!("s3://{b}/k")]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let o = run_with_input(&mut cmd, b"");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    // What to set, not the last complaint of the SDK's provider chain; -v adds that back.
    let err = stderr(&o);
    assert!(
        err.contains("no usable AWS credentials") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(!err.contains("provider"), "SDK detail without -v: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut cmd = s3.command("weir-get", &["-v", &format!("s3://{b}/k")]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let o = run_with_input(&mut cmd, b"");
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("the SDK said:"), "{}", stderr(&o));
    // (s3s-fs creates a bucket on the first PUT into it, so only readers can be asked here.)
    for tool in ["weir-get", "weir-ls"] {
        let o = s3.run(tool, &["s3://no-such-bucket/k"], b"");
        assert_eq!(code(&o), 1, "{tool}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("bucket does not exist"),
            "{tool}: {}",
            stderr(&o)
        );
    }
    let o = s3.run("weir-get", &[&format!("s3://{b}/missing")], b"");
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("no such object") && o.stdout.is_empty());
    // -o creates nothing for a missing object, and leaves no temporary file.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("seg");
    let o = s3.run(
        "weir-get",
        &[&format!("s3://{b}/missing"), "-o", target.to_str().unwrap()],
        b"",
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let o = s3.run("weir-put", &["gs://bucket/key"], b"");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = s3.run("weir-put", &[&format!("s3://{b}/")], b"");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

/// Drives `weir-put` by hand: writes `data` in two halves with `between` run in the middle.
fn put_with_pause(
    s3: &S3Server,
    url: &str,
    args: &[&str],
    data: &[u8],
    between: impl FnOnce(&mut std::process::Child),
) -> std::process::Output {
    let mut a = args.to_vec();
    a.push(url);
    let mut child = s3
        .command("weir-put", &a)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let half = data.len() / 2;
    stdin.write_all(&data[..half]).unwrap();
    stdin.flush().unwrap();
    // Let the first parts reach the server before the interruption.
    std::thread::sleep(Duration::from_millis(500));
    between(&mut child);
    let _ = stdin.write_all(&data[half..]);
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn an_upload_is_retried_across_a_server_restart() {
    let s3 = S3Server::start();
    let b = s3.bucket("restart");
    let data = noise(40 * MIB, 4);
    let url = format!("s3://{b}/obj");
    let o = put_with_pause(&s3, &url, &["--memory", "36M", "-j", "1"], &data, |_| {
        s3.stop();
        std::thread::sleep(Duration::from_millis(700));
        s3.resume();
    });
    run_ok(o, "weir-put across a restart");
    assert!(s3.stored(&b, "obj").unwrap() == data);
}

#[test]
fn a_dead_server_fails_the_upload_and_no_object_appears() {
    let s3 = S3Server::start();
    let b = s3.bucket("dead");
    let data = noise(40 * MIB, 5);
    let url = format!("s3://{b}/obj");
    let o = put_with_pause(
        &s3,
        &url,
        &["--memory", "36M", "--attempts", "2"],
        &data,
        |_| s3.stop(),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    s3.resume();
    assert!(s3.stored(&b, "obj").is_none());
    let o = s3.run("weir-get", &[&url], b"");
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

#[test]
fn sigterm_aborts_the_multipart_upload() {
    let s3 = S3Server::start();
    let b = s3.bucket("term");
    let data = noise(40 * MIB, 6);
    let url = format!("s3://{b}/obj");
    let o = put_with_pause(&s3, &url, &["--memory", "36M"], &data, |child| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while s3.open_uploads() == 0 {
            assert!(Instant::now() < deadline, "no multipart upload started");
            std::thread::sleep(Duration::from_millis(20));
        }
        sh(&format!("kill -TERM {}", child.id()));
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(15), "{}", stderr(&o));
    assert!(s3.stored(&b, "obj").is_none());
    assert_eq!(s3.open_uploads(), 0, "the multipart upload was not aborted");
}

#[test]
fn a_download_is_retried_across_a_server_restart() {
    let s3 = S3Server::start();
    let b = s3.bucket("download");
    let data = noise(40 * MIB, 7);
    let url = format!("s3://{b}/obj");
    run_ok(s3.run("weir-put", &[&url], &data), "put");
    let mut child = s3
        .command("weir-get", &["--memory", "36M", "-j", "1", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = vec![0u8; 4 * MIB];
    out.read_exact(&mut got).unwrap();
    s3.stop();
    std::thread::sleep(Duration::from_millis(700));
    s3.resume();
    out.read_to_end(&mut got).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(got == data, "the bytes differ after the restart");
}

/// Peak RSS in KiB of a command run under /usr/bin/time, fed from `feed` and read by `sink`.
fn peak_rss(
    cmd: Command,
    feed: impl FnOnce(std::process::ChildStdin) + Send + 'static,
    sink: impl FnOnce(std::process::ChildStdout) -> u64,
) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("time");
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M", "-o", report.to_str().unwrap()]);
    timed.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let mut child = timed
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || feed(stdin));
    let result = sink(child.stdout.take().unwrap());
    writer.join().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let kb: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (kb, result)
}

#[test]
fn a_1gib_stream_stays_within_a_36mib_budget() {
    let s3 = shared();
    let b = s3.bucket("big");
    let url = format!("s3://{b}/1g");
    const TOTAL: usize = 1 << 30;
    // The same reproducible 1 GiB is generated on the fly for the upload and the check.
    let block = noise(MIB + 1, 8);
    let stream_crc = {
        let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        for i in 0..TOTAL / MIB {
            d.update(&block[i % 2..i % 2 + MIB]);
        }
        d.finalize()
    };
    let feed_block = block.clone();
    let (put_kb, _) = peak_rss(
        s3.command("weir-put", &["--memory", "36M", &url]),
        move |mut w| {
            for i in 0..TOTAL / MIB {
                w.write_all(&feed_block[i % 2..i % 2 + MIB]).unwrap();
            }
        },
        |mut r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            0
        },
    );
    let (get_kb, got_crc) = peak_rss(
        s3.command("weir-get", &["--memory", "36M", &url]),
        |_| {},
        |mut r| {
            let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
            let mut buf = vec![0u8; MIB];
            let mut n = 0;
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                n += k;
                d.update(&buf[..k]);
            }
            assert_eq!(n, TOTAL);
            d.finalize()
        },
    );
    assert_eq!(got_crc, stream_crc, "the downloaded GiB differs");
    // --memory is the whole process's budget.
    for (what, kb) in [("weir-put", put_kb), ("weir-get", get_kb)] {
        eprintln!("{what}: peak RSS {kb} KiB for 1 GiB with --memory 36M");
        assert!(
            kb < 36 * 1024,
            "{what} peak RSS {kb} KiB exceeds --memory 36M"
        );
    }
    run_ok(s3.run("weir-rm", &["-q", &url], b""), "rm");
}

#[test]
fn a_full_disk_fails_the_local_put_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // A 1 MiB tmpfs gives a real ENOSPC; without the right to mount, a file-size limit gives
    // the kernel's EFBIG instead, through the same write path.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let target = mnt.join("x.bin");
    let data = noise(4 * MIB, 9);
    let o = if mounted {
        stage("weir-put", &[target.to_str().unwrap()], &data, &[])
    } else {
        let cmd = format!(
            "trap '' XFSZ; ulimit -f 1024; exec {} {}",
            bin("weir-put").display(),
            target.display()
        );
        run_with_input(Command::new("sh").args(["-c", &cmd]), &data)
    };
    let leftovers: Vec<_> = std::fs::read_dir(&mnt).unwrap().collect();
    if mounted {
        let _ = Command::new("umount").arg(&mnt).status();
    }
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("No space left on device") || err.contains("File too large"),
        "{err}"
    );
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn a_backup_through_s3_restores_the_database() {
    let c = cluster();
    c.create_db(
        "s3_src",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    );
    let s3 = shared();
    let b = s3.bucket("backups");
    let url = format!("s3://{b}/s3_src.weir.zst");
    let archive = extract("s3_src", &[]);
    let compressed = run_ok(stage("weir-compress", &[], &archive, &[]), "compress");
    run_ok(s3.run("weir-put", &[&url], &compressed), "put");
    let fetched = run_ok(s3.run("weir-get", &[&url], b""), "get");
    let plain = run_ok(stage("weir-compress", &["-d"], &fetched, &[]), "decompress");
    c.psql("postgres", "DROP DATABASE IF EXISTS s3_dst");
    ok(weir("weir-load", &["-q", "--create", "s3_dst"], &plain));
    assert_eq!(c.content("s3_src"), c.content("s3_dst"));
}
