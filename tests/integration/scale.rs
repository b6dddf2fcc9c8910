//! Issue 30: where pg_dump and pg_restore work, weir works too. Many tables restored on a
//! server whose lock table cannot hold one transaction's locks on all of them.

use crate::harness::*;
use std::process::Command;

/// Tables of the many-tables database; each has a TOAST table (text), so one transaction
/// creating them all holds three locks a table.
const TABLES: usize = 1500;

fn many_tables() -> String {
    format!(
        "DO $$ BEGIN FOR i IN 1..{TABLES} LOOP
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
           EXECUTE format('INSERT INTO t%s SELECT g, %L || g FROM generate_series(1, 3) g', i, 'row ' || i || ' ');
           IF i % 200 = 0 THEN COMMIT; END IF;
         END LOOP; END $$;"
    )
}

/// Every table's rows and primary key, a line each: equal databases give equal digests. Each
/// table is read in a transaction of its own (psql's \gexec), so the digest fits a small lock
/// table too.
fn digest(c: &Cluster, db: &str) -> String {
    let each = "SELECT pg_catalog.format('SELECT %L || '':'' || count(*) || '':'' \
          || coalesce(md5(string_agg(x::text, '','' ORDER BY x::text)), '''') || '':'' \
          || (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = %s AND i.indisprimary) \
          FROM %I x', c.relname, c.oid, c.relname) \
        FROM pg_catalog.pg_class c WHERE c.relname ~ '^t[0-9]+$' AND c.relkind = 'r' ORDER BY c.relname \\gexec";
    c.psql(db, each)
}

fn same(got: String, want: &str, what: &str) {
    assert!(got == want, "{what} differs from the source");
}

fn load(target: &Cluster, args: &[&str], archive: &[u8]) -> std::process::Output {
    run_on(target, "weir-load", args, archive)
}

#[test]
fn many_tables_restore_where_one_transaction_cannot_lock_them_all() {
    let src = cluster();
    src.create_db("many_src", &many_tables());
    let want = digest(src, "many_src");
    assert_eq!(want.lines().count(), TABLES);
    let archive = extract("many_src", &["-j2"]);
    // 10 locks a transaction: a lock table of 10 x 82 backends = 820 entries (the server
    // finds room for twice that), where creating the tables in one transaction takes 4,500
    // and two workers loading all of them 9,000.
    let small = Cluster::start_with("locks", "max_locks_per_transaction = 10");

    // With --create the database is weir-load's: it commits in batches, and the copy is whole.
    let o = load(&small, &["-q", "-j2", "--create", "many_copy"], &archive);
    assert!(o.status.success(), "{}", stderr(&o));
    same(digest(&small, "many_copy"), &want, "the copy");

    // And back out of the small server: pg_dump's schema dump locks every table, as does
    // weir-extract's own connection, and the two together (3,000) do not fit; weir-extract
    // lets its locks go while pg_dump runs and takes them back after.
    let o = run_on(&small, "weir-extract", &["-q", "-j2", "many_copy"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = load(src, &["-q", "-j2", "--create", "many_back"], &o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    same(
        digest(src, "many_back"),
        &want,
        "the copy extracted from the small server",
    );

    // A stream cut short leaves nothing behind, batches committed or not.
    let cut = &archive[..archive.len() * 2 / 3];
    let o = load(&small, &["-q", "-j2", "--create", "many_cut"], cut);
    assert!(!o.status.success());
    assert!(
        !small.db_exists("many_cut"),
        "a cut stream left its database"
    );

    // Into a database with contents of its own: refused before anything is touched, with the
    // numbers and the ways out.
    small.create_db(
        "many_existing",
        "CREATE TABLE mine (x int); INSERT INTO mine VALUES (1);",
    );
    let o = load(&small, &["-q", "-j2", "many_existing"], &archive);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for want in [
        "takes about 9000 locks",
        "holds 820",
        "max_locks_per_transaction to 220 or more",
        "--create",
        "--transaction-size",
    ] {
        assert!(stderr(&o).contains(want), "{want:?} not in: {}", stderr(&o));
    }
    let tables = "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace";
    assert_eq!(small.psql("many_existing", tables).trim(), "1");
    // --transaction-size: the user's choice of batches.
    let o = load(
        &small,
        &["-q", "-j2", "--transaction-size", "50", "many_existing"],
        &archive,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    same(
        digest(&small, "many_existing"),
        &want,
        "the copy into many_existing",
    );
    assert_eq!(
        small.psql("many_existing", "SELECT x FROM mine").trim(),
        "1"
    );
}

/// A hot standby of `primary`, made with `pg_basebackup -R` and started on a port of its own;
/// stopped when dropped.
struct Standby(Cluster);

impl Standby {
    fn start(primary: &Cluster) -> Standby {
        let dir = primary.dir.join("standby");
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!(
            "chmod 755 {0}; chown postgres {0} 2>/dev/null || true",
            dir.display()
        ));
        let mut cmd = Command::new(primary.bindir.join("pg_basebackup"));
        cmd.args([
            "-D",
            data.to_str().unwrap(),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]);
        let o = scrub(&mut cmd, &primary.env()).output().unwrap();
        assert!(o.status.success(), "pg_basebackup: {}", stderr(&o));
        sh(&format!(
            "chown -R postgres {0} 2>/dev/null || true; chmod 700 {0}",
            data.display()
        ));
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=''", dir.display());
        let log = dir.join("log");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ];
        let o = as_owner(&primary.bindir.join("pg_ctl"), &args);
        assert!(o.status.success(), "standby start: {}", stderr(&o));
        Standby(Cluster {
            dir,
            port,
            bindir: primary.bindir.clone(),
            ca_cert: primary.ca_cert.clone(),
        })
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let data = self.0.data();
        as_owner(
            &self.0.bindir.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

/// Issue 30: backing up from a hot standby, where an unlogged table's files are empty
/// placeholders: weir-extract leaves its rows out (as pg_dump does there) and says so, and the
/// copy equals the primary but for them; weir-basebackup works from the standby too.
#[test]
fn a_standby_with_an_unlogged_table_backs_up() {
    let primary = Cluster::start_with("standby-primary", "full_page_writes = on");
    primary.create_db(
        "app",
        "CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'v' || g FROM generate_series(1, 5000) g;
         CREATE UNLOGGED TABLE scratch (id int, note text); INSERT INTO scratch SELECT g, 'tmp' FROM generate_series(1, 100) g;",
    );
    let standby = Standby::start(&primary);
    let on = |c: &Cluster, name: &str, args: &[&str]| {
        let mut cmd = Command::new(bin(name));
        cmd.args(args);
        run_with_input(scrub(&mut cmd, &c.env()), b"")
    };
    let o = on(&standby.0, "weir-extract", &["-j2", "app"]);
    assert!(
        o.status.success(),
        "weir-extract on the standby: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the server is a standby: the rows of 1 unlogged tables are left out"),
        "{}",
        stderr(&o)
    );
    let o2 = load(&primary, &["-q", "--create", "app_from_standby"], &o.stdout);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let mut want = primary.content("app");
    want.insert("table public.scratch".into(), "0:".into());
    assert_eq!(primary.content("app_from_standby"), want);
    // On the primary the rows go in, unless asked to stay out.
    let all = on(&primary, "weir-extract", &["-q", "app"]);
    assert!(
        all.status.success() && stderr(&all).is_empty(),
        "{}",
        stderr(&all)
    );
    let o2 = load(&primary, &["-q", "--create", "app_all"], &all.stdout);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(primary.content("app_all"), primary.content("app"));
    let without = on(
        &primary,
        "weir-extract",
        &["-q", "--no-unlogged-table-data", "app"],
    );
    let o2 = load(
        &primary,
        &["-q", "--create", "app_without"],
        &without.stdout,
    );
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(primary.content("app_without"), want);
    // weir-cdc on the standby: decoding there is PostgreSQL 16's; before it, a clear refusal.
    let version: u32 = primary
        .psql("postgres", "SHOW server_version_num")
        .trim()
        .parse()
        .unwrap();
    let o = on(
        &standby.0,
        "weir-cdc",
        &["-d", "app", "-S", "s", "--create-slot"],
    );
    if version < 160000 {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("decoding on a standby needs PostgreSQL 16"),
            "{}",
            stderr(&o)
        );
    }
    // weir-basebackup from the standby: a whole base backup stream.
    let o = on(&standby.0, "weir-basebackup", &["-q"]);
    assert!(
        o.status.success(),
        "weir-basebackup on the standby: {}",
        stderr(&o)
    );
    assert!(holds(&o.stdout, "PG_VERSION") && o.stdout.len() > 1 << 20);
}
