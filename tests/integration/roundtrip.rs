//! The outcome users care about: the restored database equals the source.

use crate::harness::*;

const HARD: &str = include_str!("../fixtures/hard_cases.sql");

/// Archives of format version 1 (SHA-256 digests) and 2 (BLAKE3, no done entries), written by
/// weir-extract before the next version, and the database both were made from.
const V1_ARCHIVE: &[u8] = include_bytes!("../fixtures/format-v1.weir");
const V2_ARCHIVE: &[u8] = include_bytes!("../fixtures/format-v2.weir");
const V1_SOURCE: &str = include_str!("../fixtures/format-v1.sql");

const TRIGGER_FN: &str = "CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trigger fired'; END $$;";

fn hard_source(db: &str) {
    cluster().create_db(db, HARD);
}

#[test]
fn round_trip_of_every_type_and_hard_case_equals_the_source() {
    let c = cluster();
    hard_source("rt_src");
    // Small chunks and page ranges force many chunks, split tables and interleaving.
    let archive = extract(
        "rt_src",
        &["-j", "3", "--chunk-size", "4096", "--split-pages", "2"],
    );
    let out = weir("weir-inspect", &["--verify"], &archive);
    assert!(String::from_utf8(ok(out)).unwrap().starts_with("OK: "));
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS rt_dst");
    ok(weir(
        "weir-load",
        &["-q", "--create", "-j", "3", "rt_dst"],
        &archive,
    ));
    assert_eq!(c.schema_dump("rt_src"), c.schema_dump("rt_dst"));
    let (src, dst) = (c.content("rt_src"), c.content("rt_dst"));
    assert_eq!(src, dst);
    // The comparison covered what it should.
    assert!(src.contains_key("table public.tricky_text"));
    assert!(src.contains_key("table public.order_totals_top"));
    assert!(src["large objects"].contains("424243:app_owner:"));
    assert_eq!(src["table public.no_columns"].split(':').next(), Some("3"));
    assert_eq!(src["sequence public.standalone_seq"], "10,true");
    // The unpopulated materialized view stays unpopulated.
    assert_eq!(
        c.psql(
            "rt_dst",
            "SELECT relispopulated FROM pg_class WHERE relname = 'never_filled'"
        )
        .trim(),
        "f"
    );
}

#[test]
fn inspect_lists_and_prints_csv_like_copy_csv() {
    let c = cluster();
    hard_source("csv_src");
    let archive = extract("csv_src", &[]);
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &archive))).unwrap();
    assert!(listing.contains("database:  csv_src"), "{listing}");
    assert!(listing.contains("3000 "), "{listing}");
    assert!(listing.contains("public.orders"), "{listing}");
    for table in [
        "public.all_types",
        "public.tricky_text",
        "\"Odd Schema\".\"Täble \"\"quoted\"\"\"",
    ] {
        let name = if table.starts_with('"') {
            "Odd Schema.Täble \"quoted\""
        } else {
            table
        };
        let csv = ok(weir("weir-inspect", &["--table", name, "--csv"], &archive));
        let mut cmd = std::process::Command::new(c.bindir.join("psql"));
        // weir, like pg_dump, reads with an empty search_path, so regclass values come out
        // schema-qualified; compare with the same setting.
        cmd.args(["-X", "-q", "-d", "csv_src", "-c"]).arg(format!(
            "SET search_path = ''; COPY (SELECT * FROM {table} ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER)"
        ));
        let want = ok(run_with_input(scrub(&mut cmd, &c.env()), b""));
        assert_eq!(
            String::from_utf8_lossy(&csv),
            String::from_utf8_lossy(&want),
            "{table}"
        );
    }
}

#[test]
fn hand_restore_with_tar_pg_restore_and_psql() {
    let c = cluster();
    hard_source("hand_src");
    let archive = extract("hand_src", &["-j", "2"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.weir"), &archive).unwrap();
    c.create_db("hand_dst", "");
    // The recipe docs/restore-by-hand.md gives, run as a user would run it.
    let script = format!(
        r#"set -eu
cd {dir}
mkdir x && tar -xf db.weir -C x
want=$(python3 -c 'import json; t=json.load(open("x/weir/trailer.json")); print([f["blake3"] for f in t["files"] if f["name"] == "weir/sequences.sql"][0])')
test "$(b3sum --no-names x/weir/sequences.sql)" = "$want"
cat x/schema/schema.dump.* > schema.dump
pg_restore --section=pre-data -d hand_dst schema.dump
tar -xOf db.weir weir/manifest.json > /dev/null
for d in x/data/*/; do
  copy=$(python3 -c 'import json,sys; m=json.load(open("x/weir/manifest.json")); t=[t for t in m["tables"] if t["id"]==int(sys.argv[1])][0]; q=lambda s: chr(34)+s.replace(chr(34),chr(34)*2)+chr(34); cols=",".join(q(c["name"]) for c in t["columns"]); print("COPY "+q(t["schema"])+"."+q(t["name"])+(" ("+cols+")" if cols else "")+" FROM STDIN")' "$(basename "$d")")
  cat "$d"* | psql -X -q -v ON_ERROR_STOP=1 -d hand_dst -c "$copy"
done
pg_restore --section=post-data -d hand_dst schema.dump
psql -X -q -v ON_ERROR_STOP=1 -d hand_dst -f x/weir/sequences.sql > /dev/null
psql -X -q -v ON_ERROR_STOP=1 -d hand_dst -f x/weir/blobs.sql > /dev/null
for f in x/blobs/*; do
  oid=$(basename "$f")
  psql -X -q -v ON_ERROR_STOP=1 -d hand_dst -v oid="$oid" -v f="$f" > /dev/null <<'SQL'
\lo_import :f
SELECT lo_put(:oid, 0, lo_get(:LASTOID)), lo_unlink(:LASTOID);
SQL
done
psql -X -q -d hand_dst -c 'REFRESH MATERIALIZED VIEW public.order_totals; REFRESH MATERIALIZED VIEW public.order_totals_top'
"#,
        dir = dir.path().display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c").arg(script);
    let mut env = c.env();
    env.push((
        "PATH".into(),
        format!("{}:{}", c.bindir.display(), std::env::var("PATH").unwrap()),
    ));
    ok(run_with_input(scrub(&mut cmd, &env), b""));
    assert_eq!(c.content("hand_src"), c.content("hand_dst"));
    assert_eq!(c.schema_dump("hand_src"), c.schema_dump("hand_dst"));
}

#[test]
fn partial_restore_of_one_table_brings_its_indexes_constraints_triggers_and_sequence() {
    let c = cluster();
    hard_source("part_src");
    let archive = extract("part_src", &[]);
    // As with pg_restore -t, functions the table's triggers call must exist in the target.
    c.create_db("part_dst", TRIGGER_FN);
    ok(weir(
        "weir-load",
        &["-q", "-t", "public.orders", "part_dst"],
        &archive,
    ));
    let tables = c.psql(
        "part_dst",
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    );
    assert_eq!(
        tables.trim(),
        "orders,orders_customer_idx,orders_id_seq,orders_pkey"
    );
    let src = c.content("part_src");
    let dst = c.content("part_dst");
    assert_eq!(src["table public.orders"], dst["table public.orders"]);
    assert_eq!(
        src["sequence public.orders_id_seq"],
        dst["sequence public.orders_id_seq"]
    );
    let objs = c.psql(
        "part_dst",
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = 'no_inserts') || ',' || \
                (SELECT count(*) FROM pg_policy WHERE polname = 'only_c1') || ',' || \
                (SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c')",
    );
    assert_eq!(objs.trim(), "1,1,1");
}

#[test]
fn selection_where_and_excluded_data_follow_pg_dump() {
    let c = cluster();
    hard_source("sel_src");
    let archive = extract(
        "sel_src",
        &[
            "-t",
            "public.*",
            "-T",
            "public.all_types",
            "-T",
            "public.remote_rows",
            "--exclude-table-data",
            "public.order_notes",
            "--where",
            "public.orders:id <= 10",
        ],
    );
    c.create_db("sel_dst", TRIGGER_FN);
    ok(weir("weir-load", &["-q", "sel_dst"], &archive));
    let got = c.psql(
        "sel_dst",
        "SELECT (SELECT count(*) FROM orders) || ',' || (SELECT count(*) FROM order_notes) || ',' || \
                (SELECT count(*) FROM pg_class WHERE relname = 'all_types') || ',' || \
                (SELECT count(*) FROM pg_namespace WHERE nspname = 'Odd Schema')",
    );
    assert_eq!(got.trim(), "10,0,0,0");
    // -N leaves a schema out, its tables and their rows.
    let archive = extract(
        "sel_src",
        &["-N", "\"Odd Schema\"", "-T", "public.remote_rows"],
    );
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &archive))).unwrap();
    assert!(
        !listing.contains("Odd Schema") && listing.contains("public.orders"),
        "{listing}"
    );
}

#[test]
fn clean_reload_and_data_only_with_disabled_triggers() {
    let c = cluster();
    hard_source("again_src");
    let archive = extract("again_src", &[]);
    c.create_db("again_dst", "");
    ok(weir("weir-load", &["-q", "-j", "2", "again_dst"], &archive));
    // Loading again over the same objects works with --clean --if-exists.
    ok(weir(
        "weir-load",
        &["-q", "--clean", "--if-exists", "again_dst"],
        &archive,
    ));
    assert_eq!(c.content("again_src"), c.content("again_dst"));
    // Data only into emptied tables: the refusing trigger exists now and must not fire.
    c.psql(
        "again_dst",
        "TRUNCATE orders, order_notes; SELECT lo_unlink(oid) FROM pg_largeobject_metadata",
    );
    let o = weir(
        "weir-load",
        &["-q", "--data-only", "-t", "public.orders", "again_dst"],
        &archive,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("trigger fired"), "{}", stderr(&o));
    ok(weir(
        "weir-load",
        &[
            "-q",
            "--data-only",
            "--disable-triggers",
            "-t",
            "public.orders",
            "-t",
            "public.order_notes",
            "again_dst",
        ],
        &archive,
    ));
    let (s, d) = (c.content("again_src"), c.content("again_dst"));
    assert_eq!(s["table public.orders"], d["table public.orders"]);
    assert_eq!(s["table public.order_notes"], d["table public.order_notes"]);
}

#[test]
fn globals_travel_with_the_archive_when_asked() {
    let c = cluster();
    c.create_db(
        "glob_src",
        "CREATE TABLE t (x int); ALTER TABLE t OWNER TO app_owner;",
    );
    let archive = extract("glob_src", &["--globals"]);
    assert!(tar_entry(&archive, "weir/globals.sql").contains("CREATE ROLE app_owner"));
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS glob_dst");
    // The roles exist in this cluster already; replaying them reports that and goes on.
    ok(weir(
        "weir-load",
        &["-q", "--create", "--globals", "glob_dst"],
        &archive,
    ));
    assert_eq!(
        c.psql(
            "glob_dst",
            "SELECT tableowner FROM pg_tables WHERE tablename = 't'"
        )
        .trim(),
        "app_owner"
    );
    let o = weir(
        "weir-load",
        &["-q", "--globals", "glob_dst"],
        &extract("glob_src", &[]),
    );
    assert!(stderr(&o).contains("holds no roles"), "{}", stderr(&o));
}

#[test]
fn progress_lines_and_the_closing_summary() {
    let c = cluster();
    c.create_db("prog_src", "CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50000) g;");
    let o = weir("weir-extract", &["--progress", "prog_src"], b"");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // A progress line with rows, bytes, rate, percent and ETA, then the summary.
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" rows, ") && l.contains("%, ETA")),
        "{err}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with("weir-extract: 1 tables, 50000 rows, ")
            && summary.contains(" s (")
            && summary.ends_with("/s)"),
        "{summary}"
    );
    let o = weir("weir-load", &["--create", "prog_dst"], &o.stdout);
    assert!(
        stderr(&o)
            .trim()
            .starts_with("weir-load: 1 tables, 50000 rows, "),
        "{}",
        stderr(&o)
    );
}

/// Archives of the formats before this one stay readable: version 1 (SHA-256 digests) and
/// version 2 (BLAKE3, no done entries), both kept in tests/fixtures, made from the same
/// database. Each verifies, loads into a database equal to the source (with one connection and
/// with two), and passes through weir-mask into an archive that loads the same; flipping a
/// byte of its rows is still caught by its own digests.
#[test]
fn archives_of_formats_1_and_2_still_verify_and_load() {
    let c = cluster();
    c.create_db("fv_src", V1_SOURCE);
    for (version, archive) in [(1, V1_ARCHIVE), (2, V2_ARCHIVE)] {
        old_format_loads(version, archive);
    }
}

fn old_format_loads(version: u32, archive: &[u8]) {
    let c = cluster();
    let out = ok(weir("weir-inspect", &["--json"], archive));
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["manifest"]["format_version"], version);
    for jobs in ["1", "2"] {
        let dst = format!("fv{version}_dst{jobs}");
        let _ = c.psql("postgres", &format!("DROP DATABASE IF EXISTS {dst}"));
        ok(weir(
            "weir-load",
            &["-q", "-j", jobs, "--create", &dst],
            archive,
        ));
        assert_eq!(c.schema_dump("fv_src"), c.schema_dump(&dst));
        assert_eq!(c.content("fv_src"), c.content(&dst));
    }

    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        "[tables.\"public.people\"]\ncolumns.name = \"full_name\"\n",
    )
    .unwrap();
    let masked = ok(weir(
        "weir-mask",
        &["-c", rules.path().to_str().unwrap()],
        archive,
    ));
    let dst = format!("fv{version}_masked");
    let _ = c.psql("postgres", &format!("DROP DATABASE IF EXISTS {dst}"));
    ok(weir("weir-load", &["-q", "--create", &dst], &masked));
    let count = "SELECT count(*), sum(id), count(name) FROM people";
    assert_eq!(c.psql(&dst, count), c.psql("fv_src", count));
    let names = "SELECT count(*) FROM people WHERE name LIKE 'person %'";
    assert_eq!(c.psql(&dst, names).trim(), "0");

    // A row changed inside the archive (same length) fails its chunk's digest.
    let mut bad = archive.to_vec();
    let at = bad
        .windows(10)
        .position(|w| w == b"person 250")
        .expect("a row of people");
    bad[at + 7] = b'9';
    let out = weir("weir-inspect", &["--verify"], &bad);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// With a format 3 archive and two connections, each table loads on one connection, which
/// builds its primary key and indexes in the transaction that loaded it as soon as the table's
/// done entry arrives; the foreign key waits for the commit. The result equals the source, a
/// partial restore (`-t`) builds each chosen index once, and a stream cut before its trailer
/// leaves neither rows nor the indexes built on them.
#[test]
fn indexes_built_while_loading_commit_with_the_rows_or_not_at_all() {
    let c = cluster();
    c.create_db(
        "placed_src",
        "CREATE TABLE a (id int PRIMARY KEY, v text); \
         INSERT INTO a SELECT g, repeat('a', 60) || g FROM generate_series(1, 3000) g; \
         CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a, w text); \
         INSERT INTO b SELECT g, g, repeat('b', 30) || g FROM generate_series(1, 3000) g; \
         CREATE INDEX b_w ON b (w); \
         CREATE TABLE c (id int, v text); \
         INSERT INTO c SELECT g, repeat('c', 40) || g FROM generate_series(1, 3000) g;",
    );
    let archive = extract("placed_src", &["-j", "2", "--chunk-size", "8192"]);
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS placed_dst");
    let out = weir(
        "weir-load",
        &["-v", "-j", "2", "--create", "placed_dst"],
        &archive,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("3 index and constraint entries to build while loading"),
        "{err}"
    );
    assert_eq!(c.schema_dump("placed_src"), c.schema_dump("placed_dst"));
    assert_eq!(c.content("placed_src"), c.content("placed_dst"));

    // Part of the archive: of the two tables chosen, a is more than an even share, so it is
    // shared and its key built after the commit; b is placed, and what its worker built is
    // left out of the post-data run, which still brings the foreign key between them.
    c.create_db("placed_part", "");
    let out = weir(
        "weir-load",
        &["-v", "-j", "2", "-t", "a", "-t", "b", "placed_part"],
        &archive,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 index and constraint entries to build while loading"),
        "{err}"
    );
    let objects = "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class                    WHERE relnamespace = 'public'::regnamespace";
    assert_eq!(
        c.psql("placed_part", objects).trim(),
        "a,a_pkey,b,b_pkey,b_w"
    );
    let fk = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'";
    assert_eq!(c.psql("placed_part", fk).trim(), "1");
    for t in ["table public.a", "table public.b"] {
        assert_eq!(
            c.content("placed_src")[t],
            c.content("placed_part")[t],
            "{t}"
        );
    }

    let trailer = archive
        .windows(17)
        .position(|w| w == b"weir/trailer.json")
        .unwrap();
    c.create_db("placed_cut", "");
    let o = weir(
        "weir-load",
        &["-q", "-j", "2", "placed_cut"],
        &archive[..trailer],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let left = "SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b), \
                (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')";
    assert_eq!(c.psql("placed_cut", left).trim(), "0|0");
}

/// weir-load sends a table's rows as COPY binary when it can read every value's text exactly
/// (src/pg/copy_binary.rs), and as text otherwise. Each type it converts, at its edges
/// (extremes, specials, escapes, NULLs, offsets with seconds from a zone's local mean time),
/// comes back equal to the source; the values were really sent in binary (the note counts
/// them), and a chunk with a value it does not read (a BC date) went as text, also in the
/// middle of a table whose other chunks went in binary (COPY FREEZE again, no TRUNCATE).
#[test]
fn values_sent_as_copy_binary_equal_the_source() {
    let c = cluster();
    c.create_db(
        "bin_src",
        r#"CREATE DOMAIN pos AS int CHECK (VALUE > 0);
        CREATE TABLE t (i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
            n numeric, n2 numeric(12,2), b boolean, tx text, vc varchar(5), ch char(3), j json,
            jb jsonb, by bytea, d date, ts timestamp, ts3 timestamp(3), tz timestamptz, u uuid,
            ip inet, cn cidr, ta text[], ia int[], p pos);
        INSERT INTO t VALUES
          (-32768, -2147483648, -9223372036854775808, '-Infinity', '5e-324', '-0.00012',
           '-1234567890.12', false, E'tab\there\nnew line\\back\\\\slash', 'abc', 'a',
           '{"k": [1, "x\"y"]}', '{"a": "é\t", "b": null}', '\x00ff5c0a', '0001-01-01',
           '1999-12-31 23:59:59.999999', '2000-01-01 00:00:00.123', '1900-01-01 00:00:00+00',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '::ffff:10.1.2.3', '2001:db8::/32',
           '{"a b","NULL",NULL,"x\"y","",c,"back\\slash"}', '{1,NULL,-3}', 1),
          (32767, 2147483647, 9223372036854775807, '3.4028235e+38', '1.7976931348623157e308',
           'Infinity', 'NaN', true, '', NULL, 'abc', 'null', '[]', '\x', '9999-12-31',
           'infinity', '-infinity', '2024-06-01 12:34:56.5+00',
           'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', '192.168.0.1/24', '10.0.0.0/8', '{}', '{}',
           2147483647),
          (0, 0, 0, 'NaN', '-0', '0.000', '0', NULL, 'x', 'x', 'x', NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        INSERT INTO t SELECT g % 30000, g, g::bigint * 1000003, g / 7.0, g / 3.0, g / 13.0, g / 11.0,
            g % 2 = 0, 'row ' || g, left(md5(g::text), 5), 'c', json_build_object('g', g),
            jsonb_build_object('g', g, 'm', md5(g::text)), decode(md5(g::text), 'hex'),
            date '2000-01-01' + g, timestamp '2000-01-01' + g * interval '1 minute',
            timestamp '2000-01-01' + g * interval '1.5 second', now() - g * interval '1 hour',
            md5(g::text)::uuid, ('10.0.' || g % 256 || '.1')::inet, '10.0.0.0/16',
            ARRAY['a' || g, NULL], ARRAY[g, -g], g
          FROM generate_series(1, 3000) g;
        CREATE TABLE old (d date, n int);
        INSERT INTO old VALUES ('0044-03-15 BC', 1), ('2024-01-01', 2);
        CREATE TABLE mixed (d date, v text);
        INSERT INTO mixed SELECT CASE WHEN g = 1500 THEN date '0001-01-01' - 1 ELSE
            date '2000-01-01' + g END, repeat('m', 40) FROM generate_series(1, 3000) g;
        ALTER DATABASE bin_src SET timezone TO 'Asia/Kathmandu';"#,
    );
    let archive = extract("bin_src", &["-j", "2", "--chunk-size", "65536"]);
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS bin_dst");
    let out = weir(
        "weir-load",
        &["-v", "-j", "2", "--create", "bin_dst"],
        &archive,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let note = err
        .lines()
        .find(|l| l.contains("chunks sent as COPY binary"))
        .unwrap_or_else(|| panic!("{err}"));
    let counts: Vec<u64> = note
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(counts[0] >= 4 && counts[1] == 2, "{note}");
    c.psql(
        "postgres",
        "ALTER DATABASE bin_dst SET timezone TO 'Asia/Kathmandu'",
    );
    assert_eq!(c.content("bin_src"), c.content("bin_dst"));
    let tz = "SELECT tz::text FROM t WHERE i2 = -32768";
    assert_eq!(c.psql("bin_dst", tz).trim(), "1900-01-01 05:41:16+05:41:16");
}
