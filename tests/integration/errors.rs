//! Bad input: a clear one-line error, a non-zero exit, and nothing committed.

use crate::harness::*;

const SMALL: &str = "CREATE TABLE t (id int PRIMARY KEY, v text); \
    INSERT INTO t SELECT g, repeat('v', 50) || g FROM generate_series(1, 5000) g; \
    CREATE TABLE u (id int); INSERT INTO u SELECT generate_series(1, 10);";

fn small_archive(db: &str) -> Vec<u8> {
    cluster().create_db(db, SMALL);
    extract(db, &["--chunk-size", "16384"])
}

/// Asserts a failed load: exit code, one-line message with `needle`, and no rows committed.
fn assert_load_fails(archive: &[u8], db: &str, code: i32, needle: &str) {
    let c = cluster();
    c.create_db(db, "");
    let o = weir("weir-load", &["-q", "-j", "2", db], archive);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("weir-load: "), "{err}");
    let rows = c.psql(
        db,
        "SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables",
    );
    let has_t = c.psql(db, "SELECT count(*) FROM pg_class WHERE relname = 't'");
    if has_t.trim() == "1" {
        assert_eq!(
            c.psql(db, "SELECT count(*) FROM t").trim(),
            "0",
            "rows committed"
        );
    }
    let _ = rows;
}

/// Byte offsets of each tar entry's data: (name, start, size).
fn entries(archive: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= archive.len() {
        let h = &archive[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..135]).trim_matches(|c| c == '\0' || c == ' '),
            8,
        )
        .unwrap();
        out.push((name, pos + 512, size));
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn truncated_streams_fail_and_commit_nothing() {
    let archive = small_archive("trunc_src");
    let ents = entries(&archive);
    let trailer = ents.iter().find(|e| e.0 == "weir/trailer.json").unwrap();
    let chunk = ents
        .iter()
        .filter(|e| e.0.starts_with("data/"))
        .nth(3)
        .unwrap();
    // Cut inside a data chunk, exactly at an entry boundary before the trailer, and inside it.
    for (cut, needle) in [
        (chunk.1 + chunk.2 / 2, "truncated"),
        (trailer.1 - 512, "without a trailer"),
        (trailer.1 + 10, "truncated"),
    ] {
        assert_load_fails(&archive[..cut], "trunc_dst", 3, needle);
        let v = weir("weir-inspect", &["--verify"], &archive[..cut]);
        assert_eq!(v.status.code(), Some(3), "{}", stderr(&v));
    }
    // With --create, the half-made database is dropped again.
    let c = cluster();
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS trunc_created");
    let o = weir(
        "weir-load",
        &["-q", "--create", "trunc_created"],
        &archive[..trailer.1 - 512],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!c.db_exists("trunc_created"));
}

#[test]
fn a_flipped_byte_in_a_chunk_is_detected() {
    let mut archive = small_archive("flip_src");
    let ents = entries(&archive);
    let chunk = ents
        .iter()
        .filter(|e| e.0.starts_with("data/"))
        .nth(1)
        .unwrap();
    // Flip a letter, not a newline: the row count stays, only the digest can tell.
    let pos = (chunk.1..chunk.1 + chunk.2)
        .find(|i| archive[*i] == b'v')
        .unwrap();
    archive[pos] = b'w';
    assert_load_fails(&archive, "flip_dst", 3, "digest mismatch");
    let v = weir("weir-inspect", &["--verify"], &archive);
    assert_eq!(v.status.code(), Some(3));
    assert!(stderr(&v).contains("digest mismatch"), "{}", stderr(&v));
}

#[test]
fn reordered_or_foreign_streams_are_refused() {
    let a = small_archive("mix_src");
    let b = extract("mix_src", &["--chunk-size", "16384"]);
    let ea = entries(&a);
    let eb = entries(&b);
    // a's body with b's trailer: the archive ids differ.
    let ta = ea.iter().find(|e| e.0 == "weir/trailer.json").unwrap().1 - 512;
    let tb = eb.iter().find(|e| e.0 == "weir/trailer.json").unwrap().1 - 512;
    let mut mixed = a[..ta].to_vec();
    mixed.extend_from_slice(&b[tb..]);
    assert_load_fails(&mixed, "mix_dst", 3, "streams were mixed");
    // Manifest moved after the schema: not a weir archive any more.
    let m = &ea[0];
    let s = &ea[1];
    let m_end = m.1 + m.2.div_ceil(512) * 512;
    let s_end = s.1 + s.2.div_ceil(512) * 512;
    let mut reordered = a[m_end..s_end].to_vec();
    reordered.extend_from_slice(&a[..m_end]);
    reordered.extend_from_slice(&a[s_end..]);
    assert_load_fails(&reordered, "mix_dst", 3, "first entry");
}

#[test]
fn a_table_s_rows_must_end_with_its_done_entry() {
    let a = small_archive("done_src");
    let ea = entries(&a);
    let block = |e: &(String, usize, usize)| (e.1 - 512, e.1 + e.2.div_ceil(512) * 512);
    let done = ea
        .iter()
        .position(|e| e.0.starts_with("weir/done/"))
        .unwrap();
    let id = &ea[done].0["weir/done/".len()..][..6];
    assert!(ea[done - 1].0.starts_with(&format!("data/{id}/")), "{ea:?}");
    // The table's last chunk moved after its done entry.
    let (c0, c1) = block(&ea[done - 1]);
    let (d0, d1) = block(&ea[done]);
    let mut moved = a[..c0].to_vec();
    moved.extend_from_slice(&a[d0..d1]);
    moved.extend_from_slice(&a[c0..c1]);
    moved.extend_from_slice(&a[d1..]);
    assert_load_fails(&moved, "done_dst", 3, "done entry");
    // The done entry left out: the rows never end.
    let mut dropped = a[..d0].to_vec();
    dropped.extend_from_slice(&a[d1..]);
    assert_load_fails(&dropped, "done_dst", 3, "never ended");
    let v = weir("weir-inspect", &["--verify"], &dropped);
    assert_eq!(v.status.code(), Some(3), "{}", stderr(&v));
}

#[test]
fn garbage_on_stdin_is_not_an_archive() {
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_load_fails(&garbage, "garbage_dst", 3, "not a weir archive");
    let o = weir("weir-inspect", &[], b"");
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
}

#[test]
fn missing_target_database_without_create() {
    let archive = small_archive("nodb_src");
    let o = weir("weir-load", &["-q", "no_such_db"], &archive);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("\"no_such_db\" does not exist") && err.contains("--create"),
        "{err}"
    );
}

#[test]
fn unknown_table_pattern_is_an_error() {
    cluster().create_db("pat_src", SMALL);
    let o = weir("weir-extract", &["-t", "public.nosuch*", "pat_src"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no table matches pattern \"public.nosuch*\""),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "nothing written");
    // -n: a schema that does not exist is an error; one with only a view is not.
    let o = weir("weir-extract", &["-q", "-n", "nosuch", "pat_src"], b"");
    assert!(
        stderr(&o).contains("no schema matches pattern \"nosuch\""),
        "{}",
        stderr(&o)
    );
    cluster().psql(
        "pat_src",
        "CREATE SCHEMA views_only; CREATE VIEW views_only.v AS SELECT 1 AS one",
    );
    let a = extract("pat_src", &["-n", "views_only"]);
    cluster().create_db("pat_views", "");
    ok(weir("weir-load", &["-q", "pat_views"], &a));
    assert_eq!(
        cluster()
            .psql("pat_views", "SELECT one FROM views_only.v")
            .trim(),
        "1"
    );
    // An unqualified pattern matches through the search path, as in pg_dump.
    let a = extract("pat_src", &["-t", "u"]);
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &a))).unwrap();
    assert!(
        listing.contains("public.u") && !listing.contains("public.t\n"),
        "{listing}"
    );
    let archive = small_archive("pat_src2");
    let o = weir("weir-load", &["-t", "nosuch", "pat_dst"], &archive);
    assert!(
        stderr(&o).contains("no table in the archive matches pattern"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_closed_pipe_is_exit_141_not_success() {
    // More than the 1 MiB a stage widens its output pipe to, so the writer must block.
    cluster().create_db(
        "pipe_src",
        "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 4) AS v FROM generate_series(1, 40000) g",
    );
    let c = cluster();
    let mut cmd = std::process::Command::new(bin("weir-extract"));
    cmd.arg("pipe_src");
    let o = with_output_closed_early(scrub(&mut cmd, &c.env()), std::process::Stdio::null());
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert!(stderr(&o).contains("pipe"), "{}", stderr(&o));
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_naming_both_versions() {
    cluster().create_db("old_src", SMALL);
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n").unwrap();
    sh(&format!("chmod +x {}", fake.display()));
    let o = weir_env(
        "weir-extract",
        &["old_src"],
        b"",
        &[("WEIR_PG_BINDIR", dir.path().to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("pg_dump 11.22 is older than the server (15.")
            || err.contains("older than the server ("),
        "{err}"
    );
    assert!(err.contains("11.22"), "{err}");
}

#[test]
fn row_security_is_never_silently_applied() {
    let c = cluster();
    c.create_db(
        "rls_src",
        "CREATE ROLE rls_reader LOGIN; \
         CREATE TABLE secrets (id int, owner text); INSERT INTO secrets VALUES (1, 'a'), (2, 'b'); \
         ALTER TABLE secrets OWNER TO rls_reader; ALTER TABLE secrets ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE secrets FORCE ROW LEVEL SECURITY; CREATE POLICY mine ON secrets USING (owner = 'a');",
    );
    let o = weir_env(
        "weir-extract",
        &["-q", "rls_src"],
        b"",
        &[("PGUSER", "rls_reader")],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a filtered dump must fail: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("row-level security"), "{}", stderr(&o));
    c.psql("rls_src", "DROP TABLE secrets; DROP OWNED BY rls_reader");
    c.psql("postgres", "DROP OWNED BY rls_reader; DROP ROLE rls_reader");
}

#[test]
fn sigterm_during_a_load_drops_the_database_it_created() {
    use std::os::unix::process::ExitStatusExt;
    let c = cluster();
    let archive = small_archive("sig_src");
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS sig_dst");
    let mut cmd = std::process::Command::new(bin("weir-load"));
    cmd.args(["-q", "--create", "sig_dst"]);
    // Its own TMPDIR, to see that the spooled schema goes too (issue 28).
    let tmp = tempfile::tempdir().unwrap();
    let mut child = scrub(&mut cmd, &c.env())
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Half the stream, then silence: the load is in progress and waiting for more.
    std::io::Write::write_all(&mut stdin, &archive[..archive.len() / 2]).unwrap();
    let mut waited = 0;
    while !c.db_exists("sig_dst") && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    assert!(
        c.db_exists("sig_dst"),
        "the load should have created the database"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    sh(&format!("kill -TERM {}", child.id()));
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(
        o.status.signal(),
        Some(15),
        "re-raised SIGTERM: {:?} {}",
        o.status,
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("interrupted by SIGTERM"),
        "{}",
        stderr(&o)
    );
    assert!(
        !c.db_exists("sig_dst"),
        "the half-loaded database must be gone"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A table truncated by a transaction that commits after weir-extract took its snapshot but
/// before it could lock the table reads as empty through that snapshot (TRUNCATE is not
/// MVCC-safe). weir-extract must stop rather than write the empty table as the truth.
#[test]
fn a_table_truncated_after_the_snapshot_stops_the_extract() {
    let c = cluster();
    c.create_db("trunc_race", SMALL);
    let mut psql = std::process::Command::new(c.bindir.join("psql"));
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "trunc_race"]);
    let mut session = scrub(&mut psql, &c.env())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql = session.stdin.take().unwrap();
    use std::io::Write;
    writeln!(sql, "BEGIN; TRUNCATE u; INSERT INTO u VALUES (42);").unwrap();
    let waiting =
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'public.u'::regclass";
    let granted = "SELECT count(*) FROM pg_locks WHERE granted AND mode = 'AccessExclusiveLock' AND relation = 'public.u'::regclass";
    wait_until("the TRUNCATE's lock", 30, || {
        c.psql("trunc_race", granted).trim() == "1"
    });

    let mut cmd = std::process::Command::new(bin("weir-extract"));
    cmd.args(["-q", "trunc_race"]);
    let extract = scrub(&mut cmd, &c.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // weir-extract has its snapshot and waits for the table: now the TRUNCATE commits.
    wait_until("weir-extract waiting for the lock", 30, || {
        c.psql("trunc_race", waiting).trim() == "1"
    });
    writeln!(sql, "COMMIT;").unwrap();
    drop(sql);
    assert!(session.wait().unwrap().success());

    let o = extract.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("table \"public\".\"u\" was dropped, truncated or rewritten")
            && err.contains("run weir-extract again"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}
