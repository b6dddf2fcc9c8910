//! weir-compress and weir-encrypt: round trips, interoperability both ways with the reference
//! CLIs (zstd, lz4, gzip, bzip2, age), the official age test vectors, and refusal of
//! truncated, corrupt or wrongly keyed input.

use crate::harness::*;
use sha2::{Digest, Sha256};

/// A few megabytes that compress somewhat, like an archive: text runs and noise.
fn sample(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x: u32 = 2463534242;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x % 3 == 0 {
            v.extend_from_slice(format!("row {x}\tsome text\\N\n").as_bytes());
        } else {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v.truncate(len);
    v
}

#[test]
fn zstd_output_is_read_by_zstd_and_zstd_output_by_us() {
    let data = sample(3 << 20);
    for args in [
        &[][..],
        &["-1"],
        &["-19"],
        &["--fast=3"],
        &["-T1"],
        &["-T2", "-9"],
    ] {
        let z = run_ok(stage("weir-compress", args, &data, &[]), "weir-compress");
        let back = run_ok(tool("zstd", &["-d", "-c"], &z), "zstd -d");
        assert!(back == data, "zstd -d of weir-compress {args:?}");
    }
    // An output that cannot be synced (a device, as pg_dump -f /dev/null allows) is fine.
    run_ok(
        stage("weir-compress", &["-o", "/dev/null"], &data, &[]),
        "weir-compress -o /dev/null",
    );
    // --long needs zstd -d --long=27, as documented.
    let z = run_ok(
        stage("weir-compress", &["--long"], &data, &[]),
        "weir-compress --long",
    );
    assert!(
        run_ok(
            tool("zstd", &["-d", "-c", "--long=27"], &z),
            "zstd -d --long"
        ) == data
    );
    for args in [&["-3"][..], &["-19", "--long=27"], &["-T2"]] {
        let z = run_ok(
            tool("zstd", &[&["-c", "-q"][..], args].concat(), &data),
            "zstd",
        );
        assert!(run_ok(stage("weir-compress", &["-d"], &z, &[]), "weir-compress -d") == data);
    }
    // The content checksum is on: zstd -lv reports it.
    let z = run_ok(stage("weir-compress", &[], &data, &[]), "weir-compress");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.zst"), &z).unwrap();
    let info = tool(
        "zstd",
        &["-lv", dir.path().join("x.zst").to_str().unwrap()],
        b"",
    );
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("XXH64"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
}

/// weir-compress writes independent frames, which `zstd -d` reads as one stream and
/// `weir-compress -d -T N` decompresses on N threads; a cut between two frames is still a
/// truncation (the end mark is missing), not a shorter stream.
#[test]
fn zstd_frames_decompress_in_parallel_and_a_cut_between_them_is_caught() {
    let data = sample(10 << 20);
    let z = run_ok(
        stage("weir-compress", &["-T2"], &data, &[]),
        "weir-compress",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.zst");
    std::fs::write(&file, &z).unwrap();
    let list = String::from_utf8_lossy(&tool("zstd", &["-l", file.to_str().unwrap()], b"").stdout)
        .into_owned();
    // Frames (zstd counts the skippable ones too), then skippable frames: three frames of
    // 4 MiB and the two marks.
    let counts: Vec<&str> = list
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .take(2)
        .collect();
    assert_eq!(counts, ["5", "2"], "{list}");
    for t in ["-T1", "-T2", "-T4"] {
        assert!(
            run_ok(
                stage("weir-compress", &["-d", t], &z, &[]),
                "weir-compress -d"
            ) == data,
            "-d {t}"
        );
    }
    // The first frame alone, the mark before it included: a valid zstd stream, which zstd -d
    // takes for the whole; weir-compress -d does not.
    let first = frame_end(&z, 16);
    let o = stage("weir-compress", &["-d"], &z[..first], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("end mark"), "{}", stderr(&o));
    assert!(
        o.stdout.len() == 4 << 20,
        "what came before the cut is written"
    );
}

/// Where the zstd frame starting at `at` ends (RFC 8878: header, blocks, checksum).
fn frame_end(z: &[u8], at: usize) -> usize {
    let d = z[at + 4];
    let single = d & 0x20 != 0;
    let fcs = [usize::from(single), 2, 4, 8][usize::from(d >> 6)];
    let mut p = at + 5 + usize::from(!single) + [0, 1, 2, 4][usize::from(d & 3)] + fcs;
    loop {
        let h = u32::from_le_bytes([z[p], z[p + 1], z[p + 2], 0]);
        p += 3 + if (h >> 1) & 3 == 1 {
            1
        } else {
            (h >> 3) as usize
        };
        if h & 1 == 1 {
            return p + if d & 4 != 0 { 4 } else { 0 };
        }
    }
}

#[test]
fn lz4_gzip_and_bzip2_both_ways_and_concatenated_frames() {
    let data = sample(1 << 20);
    for (format, tool_name) in [("lz4", "lz4"), ("gzip", "gzip")] {
        let c = run_ok(
            stage("weir-compress", &["--format", format], &data, &[]),
            format,
        );
        assert!(
            run_ok(tool(tool_name, &["-d", "-c"], &c), tool_name) == data,
            "{tool_name} reads ours"
        );
        let theirs = run_ok(tool(tool_name, &["-c"], &data), tool_name);
        assert!(
            run_ok(stage("weir-compress", &["-d"], &theirs, &[]), "-d") == data,
            "we read {tool_name}"
        );
        // Two frames back to back decompress to both parts, as the reference tools do.
        let mut two = theirs.clone();
        two.extend_from_slice(&run_ok(tool(tool_name, &["-c"], b"tail"), tool_name));
        let mut want = data.clone();
        want.extend_from_slice(b"tail");
        assert!(
            run_ok(
                stage("weir-compress", &["-d"], &two, &[]),
                "-d concatenated"
            ) == want,
            "{format} concatenated"
        );
    }
    let bz = run_ok(tool("bzip2", &["-c"], &data), "bzip2");
    assert!(run_ok(stage("weir-compress", &["-d"], &bz, &[]), "-d bzip2") == data);
    let mut two = run_ok(tool("zstd", &["-c", "-q"], b"first "), "zstd");
    two.extend_from_slice(&run_ok(
        stage("weir-compress", &[], b"second", &[]),
        "weir-compress",
    ));
    assert_eq!(
        run_ok(stage("weir-compress", &["-d"], &two, &[]), "-d"),
        b"first second"
    );
    // Empty input compresses to a frame that decompresses to nothing.
    let empty = run_ok(stage("weir-compress", &[], b"", &[]), "weir-compress");
    assert!(run_ok(tool("zstd", &["-d", "-c"], &empty), "zstd -d").is_empty());
}

#[test]
fn truncated_corrupt_and_foreign_compressed_input_is_refused() {
    let data = sample(2 << 20);
    for format in ["zstd", "lz4", "gzip"] {
        let c = run_ok(
            stage("weir-compress", &["--format", format], &data, &[]),
            format,
        );
        for cut in [c.len() / 2, c.len() - 1] {
            let o = stage("weir-compress", &["-d"], &c[..cut], &[]);
            assert_eq!(
                o.status.code(),
                Some(3),
                "{format} cut at {cut}: {}",
                stderr(&o)
            );
            assert!(
                stderr(&o).contains("truncated or corrupt"),
                "{format}: {}",
                stderr(&o)
            );
        }
        let mut bad = c.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let o = stage("weir-compress", &["-d"], &bad, &[]);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{format} flipped byte: {}",
            stderr(&o)
        );
    }
    let o = stage("weir-compress", &["-d"], b"", &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = stage("weir-compress", &["-d"], b"plain text, not compressed", &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("weir-compress: unknown format"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_truncated_compressed_backup_never_restores() {
    let c = cluster();
    c.create_db("ztrunc_src", "CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;");
    let archive = extract("ztrunc_src", &[]);
    let z = run_ok(stage("weir-compress", &[], &archive, &[]), "compress");
    c.create_db("ztrunc_dst", "");
    // The pipeline as a user writes it, with pipefail.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cut.zst"), &z[..z.len() * 2 / 3]).unwrap();
    let script = format!(
        "set -o pipefail; '{}' -d < '{}' | '{}' -q ztrunc_dst",
        bin("weir-compress").display(),
        dir.path().join("cut.zst").display(),
        bin("weir-load").display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c").arg(script);
    let o = run_with_input(scrub(&mut cmd, &c.env()), b"");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("weir-compress: zstd data is truncated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        c.psql(
            "ztrunc_dst",
            "SELECT count(*) FROM pg_class WHERE relname = 't' AND reltuples > 0"
        )
        .trim(),
        "0"
    );
    let rows = c.psql(
        "ztrunc_dst",
        "SELECT count(*) FROM pg_tables WHERE tablename = 't'",
    );
    if rows.trim() == "1" {
        assert_eq!(c.psql("ztrunc_dst", "SELECT count(*) FROM t").trim(), "0");
    }
}

#[test]
fn age_recipients_interoperate_both_ways_binary_and_armored() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "k.txt");
    let (key2, public2) = keypair(dir.path(), "k2.txt");
    let data = sample(300_000);
    for armor in [false, true] {
        let mut args = vec!["-r", public.as_str(), "-r", public2.as_str()];
        if armor {
            args.push("--armor");
        }
        let ct = run_ok(stage("weir-encrypt", &args, &data, &[]), "weir-encrypt");
        if armor {
            assert!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        } else {
            assert!(ct.starts_with(b"age-encryption.org/v1\n"));
        }
        assert!(
            run_ok(tool("age", &["-d", "-i", &key2], &ct), "age -d") == data,
            "age reads ours (armor {armor})"
        );
        let mut targs = vec!["-r", public.as_str()];
        if armor {
            targs.push("-a");
        }
        let theirs = run_ok(tool("age", &targs, &data), "age");
        assert!(
            run_ok(
                stage("weir-encrypt", &["-d", "-i", &key], &theirs, &[]),
                "-d"
            ) == data,
            "we read age (armor {armor})"
        );
    }
    // Recipients from a file and from the environment; the identity from the environment.
    let rfile = dir.path().join("recipients.txt");
    std::fs::write(&rfile, format!("# backup keys\n{public}\n\n")).unwrap();
    let ct = run_ok(
        stage("weir-encrypt", &["-R", rfile.to_str().unwrap()], &data, &[]),
        "-R",
    );
    assert!(
        run_ok(
            stage(
                "weir-encrypt",
                &["-d"],
                &ct,
                &[("WEIR_AGE_IDENTITY_FILE", &key)]
            ),
            "env identity"
        ) == data
    );
    let ct = run_ok(
        stage(
            "weir-encrypt",
            &[],
            &data,
            &[("WEIR_AGE_RECIPIENTS", &format!("{public2},{public}"))],
        ),
        "env recipients",
    );
    assert!(run_ok(tool("age", &["-d", "-i", &key], &ct), "age -d") == data);
}

#[test]
fn ssh_recipients_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(100_000);
    for kind in ["ed25519", "rsa"] {
        let key = dir.path().join(format!("id_{kind}"));
        let mut args = vec!["-q", "-t", kind, "-N", "", "-f", key.to_str().unwrap()];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        run_ok(tool("ssh-keygen", &args, b""), "ssh-keygen");
        let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
        let ct = run_ok(
            stage("weir-encrypt", &["-r", public.trim()], &data, &[]),
            "weir-encrypt ssh",
        );
        assert!(
            run_ok(
                tool("age", &["-d", "-i", key.to_str().unwrap()], &ct),
                "age -d ssh"
            ) == data,
            "{kind}"
        );
        assert!(
            run_ok(
                stage(
                    "weir-encrypt",
                    &["-d", "-i", key.to_str().unwrap()],
                    &ct,
                    &[]
                ),
                "-d ssh"
            ) == data
        );
        let theirs = run_ok(
            tool("age", &["-R", &format!("{}.pub", key.display())], &data),
            "age -R",
        );
        assert!(
            run_ok(
                stage(
                    "weir-encrypt",
                    &["-d", "-i", key.to_str().unwrap()],
                    &theirs,
                    &[]
                ),
                "-d"
            ) == data
        );
    }
}

/// Drives `age` (which insists on a terminal for passphrases) through a pseudo-terminal.
fn age_with_passphrase(
    args: &[&str],
    input: &std::path::Path,
    output: &std::path::Path,
    pass: &str,
    prompts: usize,
) {
    with_terminal("age", args, input, output, pass, prompts)
}

/// Runs `program args -o output input` on a pseudo-terminal, answering its passphrase
/// prompts with `pass`.
fn with_terminal(
    program: &str,
    args: &[&str],
    input: &std::path::Path,
    output: &std::path::Path,
    pass: &str,
    prompts: usize,
) {
    let script = r#"
import os, pty, sys, time
args, inp, out, pw, prompts, prog = sys.argv[1].split(), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(prog, [prog] + args + ["-o", out, inp])
buf = b""
for _ in range(prompts):
    # Answer only once the whole prompt is there (it ends with a colon and a space).
    while not (b"passphrase" in buf.lower() and buf.rstrip().endswith(b":")):
        buf += os.read(fd, 1024)
    buf = b""
    time.sleep(0.1)
    os.write(fd, pw.encode() + b"\n")
try:
    while os.read(fd, 1024):
        pass
except OSError:
    pass
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let o = tool(
        "python3",
        &[
            "-c",
            script,
            &args.join(" "),
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            pass,
            &prompts.to_string(),
            program,
        ],
        b"",
    );
    assert!(
        o.status.success(),
        "{program} {args:?} through a pty: {}",
        stderr(&o)
    );
}

#[test]
fn passphrase_mode_works_unattended_and_with_age() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(200_000);
    let pass = "correct horse battery staple";
    let pfile = dir.path().join("pass");
    std::fs::write(&pfile, format!("{pass}\n")).unwrap();
    // From the environment and from a file, no terminal involved.
    let ct = run_ok(
        stage("weir-encrypt", &["-p"], &data, &[("WEIR_PASSPHRASE", pass)]),
        "-p env",
    );
    assert!(ct.windows(9).any(|w| w == b"-> scrypt"));
    assert!(
        run_ok(
            stage(
                "weir-encrypt",
                &["-d", "--passphrase-file", pfile.to_str().unwrap()],
                &ct,
                &[]
            ),
            "-d file"
        ) == data
    );
    let o = stage(
        "weir-encrypt",
        &["-d"],
        &ct,
        &[("WEIR_PASSPHRASE", "wrong")],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));
    // age decrypts ours, and we decrypt age's, through its terminal prompt.
    let ours = dir.path().join("ours.age");
    std::fs::write(&ours, &ct).unwrap();
    let plain = dir.path().join("plain");
    age_with_passphrase(&["-d"], &ours, &plain, pass, 1);
    assert!(
        std::fs::read(&plain).unwrap() == data,
        "age -d of our passphrase file"
    );
    std::fs::write(dir.path().join("data"), &data).unwrap();
    let theirs = dir.path().join("theirs.age");
    age_with_passphrase(&["-p"], &dir.path().join("data"), &theirs, pass, 2);
    let ct = std::fs::read(&theirs).unwrap();
    assert!(
        run_ok(
            stage("weir-encrypt", &["-d"], &ct, &[("WEIR_PASSPHRASE", pass)]),
            "-d age -p"
        ) == data
    );
    // Our own prompt on the terminal: asked twice when encrypting, once when decrypting.
    let via_tty = dir.path().join("tty.age");
    let weir_bin = bin("weir-encrypt").display().to_string();
    with_terminal(
        &weir_bin,
        &["-p"],
        &dir.path().join("data"),
        &via_tty,
        pass,
        2,
    );
    let ct = std::fs::read(&via_tty).unwrap();
    assert!(
        run_ok(
            stage("weir-encrypt", &["-d"], &ct, &[("WEIR_PASSPHRASE", pass)]),
            "-d"
        ) == data
    );
    let back = dir.path().join("back");
    with_terminal(&weir_bin, &["-d"], &via_tty, &back, pass, 1);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "decrypted with the passphrase typed at the prompt"
    );
    // Passphrase and recipients do not mix; no recipients at all is a usage error.
    let o = stage("weir-encrypt", &[], &data, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no recipients"), "{}", stderr(&o));
}

#[test]
fn wrong_key_truncated_and_tampered_ciphertext_fail_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "k.txt");
    let (other, _) = keypair(dir.path(), "other.txt");
    let data = sample(500_000);
    let ct = run_ok(
        stage("weir-encrypt", &["-r", &public], &data, &[]),
        "encrypt",
    );
    let o = stage("weir-encrypt", &["-d", "-i", &other], &ct, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no identity matches"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    // Cut at a 64 KiB chunk boundary of the payload and in the middle of a chunk: both are
    // refused (the last chunk is marked, so a boundary cut is caught too).
    let header_len = ct.windows(4).position(|w| w == b"--- ").unwrap() + 48 + 16;
    for cut in [header_len + 2 * (65536 + 16), ct.len() - 100] {
        let o = stage("weir-encrypt", &["-d", "-i", &key], &ct[..cut], &[]);
        assert_eq!(o.status.code(), Some(3), "cut at {cut}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("truncated or was tampered"),
            "{}",
            stderr(&o)
        );
    }
    // A flipped byte in the first chunk: nothing at all reaches stdout.
    let mut bad = ct.clone();
    bad[header_len + 10] ^= 1;
    let o = stage("weir-encrypt", &["-d", "-i", &key], &bad, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no unauthenticated plaintext");
    // A flipped byte in the header.
    let mut bad = ct.clone();
    bad[30] ^= 1;
    let o = stage("weir-encrypt", &["-d", "-i", &key], &bad, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
}

/// Vectors weir does not handle, with the reason.
const CCTV_SKIPPED: &[(&str, &str)] = &[(
    "hybrid",
    "post-quantum hybrid (ML-KEM-768 + X25519) recipients are not implemented by the age crate 0.12 weir builds on",
)];

#[test]
fn official_age_test_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/age-cctv");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("the age test vectors are expected at {}", dir.display());
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut passed, mut skipped) = (0, Vec::new());
    let mut failures = Vec::new();
    let mut names: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "README.md" {
            continue;
        }
        if let Some((_, why)) = CCTV_SKIPPED.iter().find(|(p, _)| name.contains(p)) {
            skipped.push(format!("{name}: {why}"));
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        let split = raw.windows(2).position(|w| w == b"\n\n").unwrap();
        let header = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut body = raw[split + 2..].to_vec();
        if header.contains("compressed: zlib") {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&body[..]), &mut plain)
                .unwrap();
            body = plain;
        }
        let body = &body[..];
        let field = |k: &'static str| -> Vec<String> {
            header
                .lines()
                .filter_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .collect()
        };
        let expect = field("expect:").remove(0);
        let idfile = tmp.path().join(format!("{name}.key"));
        std::fs::write(&idfile, field("identity:").join("\n") + "\n").unwrap();
        let pass = field("passphrase:").into_iter().next();
        let o = match &pass {
            Some(p) => stage("weir-encrypt", &["-d"], body, &[("WEIR_PASSPHRASE", p)]),
            None => stage(
                "weir-encrypt",
                &["-d", "-i", idfile.to_str().unwrap()],
                body,
                &[],
            ),
        };
        let ok = if expect == "success" {
            let want = field("payload:").remove(0);
            o.status.success() && hex::encode(Sha256::digest(&o.stdout)) == want
        } else {
            // Refused; and for anything before the payload, nothing written at all.
            !o.status.success() && (expect == "payload failure" || o.stdout.is_empty())
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!(
                "{name} (expect {expect}): exit {:?}, {}",
                o.status.code(),
                stderr(&o).trim()
            ));
        }
    }
    eprintln!(
        "age CCTV: {passed} passed, {} skipped:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed > 80, "only {passed} vectors ran");
}

#[test]
fn a_closed_output_pipe_is_exit_141_for_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "k.txt");
    let data = sample(16 << 20);
    let z = run_ok(stage("weir-compress", &["-1"], &data, &[]), "compress");
    let a = run_ok(
        stage("weir-encrypt", &["-r", &public], &data, &[]),
        "encrypt",
    );
    for (name, args, input) in [
        ("weir-compress", vec!["-1"], &data),
        ("weir-compress", vec!["-d"], &z),
        ("weir-encrypt", vec!["-r", public.as_str()], &data),
        ("weir-encrypt", vec!["-d", "-i", key.as_str()], &a),
    ] {
        let input_file = dir.path().join("input");
        std::fs::write(&input_file, input).unwrap();
        let mut cmd = std::process::Command::new(bin(name));
        cmd.args(&args);
        let input = std::fs::File::open(&input_file).unwrap();
        let o = with_output_closed_early(scrub(&mut cmd, &[]), input.into());
        assert_eq!(
            o.status.code(),
            Some(141),
            "{name} {args:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("pipe"), "{name}: {}", stderr(&o));
    }
}
