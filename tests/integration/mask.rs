//! weir-mask: every transformer on a real database round trip (extract, mask, load), keys that
//! still join after masking, determinism with a key and without, no original value left in a
//! masked column, untouched tables carried with their digests, rule errors that name the rule,
//! the preview, and the COPY text codec against PostgreSQL itself.

use crate::harness::*;
use std::process::Command;

const KEY: (&str, &str) = ("WEIR_MASK_KEY", "test-mask-key");

fn write_rules(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("mask.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn mask(rules: &str, archive: &[u8], env: &[(&str, &str)]) -> std::process::Output {
    stage("weir-mask", &["-c", rules], archive, env)
}

fn load(db: &str, archive: &[u8]) {
    let c = cluster();
    c.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    ok(weir("weir-load", &["-q", "--create", db], archive));
}

const SHOP: &str = "
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, name text, phone text,
                    born date, salary numeric(10,2), vip bool, meta jsonb);
CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users(id), email text,
                     amount numeric(10,2), placed timestamptz);
CREATE TABLE audit (id int, what text);
INSERT INTO users SELECT g, 'person' || g || '@corp.example', 'Person Number ' || g, '+1 555 01' || g,
       date '1970-01-01' + g * 40, 1000 + g * 13.37, g % 5 = 0, jsonb_build_object('ssn', 'SSN-' || g, 'plan', 'gold')
  FROM generate_series(1, 500) g;
INSERT INTO orders SELECT g, 1 + g % 500, 'person' || (1 + g % 500) || '@corp.example', g % 700, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series(1, 3000) g;
INSERT INTO audit SELECT g, 'secret ' || g FROM generate_series(1, 100) g;
";

const SHOP_RULES: &str = r#"
[tables."public.users"]
columns.id = "permute"
columns.email = "email"
columns.name = "full_name"
columns.phone = "phone"
columns.born = { type = "noise", interval = "30 days" }
columns.salary = { type = "bucket", size = 1000 }
columns.meta = [{ type = "json_delete", path = "ssn" }]

[tables."public.orders"]
columns.user_id = "permute"
columns.email = "email"
drop_rows = { column = "amount", equals = "0.00" }

[tables."public.audit"]
data = false
"#;

#[test]
fn masked_keys_still_join_and_no_original_value_survives() {
    let c = cluster();
    c.create_db("mask_src", SHOP);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(&dir, SHOP_RULES);
    let archive = extract("mask_src", &[]);
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    // The output verifies end to end and says it was masked.
    let info = String::from_utf8(ok(weir("weir-inspect", &["--json"], &masked))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["manifest"]["masked"], true, "{info}");
    assert_eq!(v["manifest"]["mask"]["deterministic"], true);
    load("mask_dst", &masked);
    let q = |sql: &str| c.psql("mask_dst", sql).trim().to_string();
    // Every order still finds its user, and the e-mail copied into orders still matches.
    assert_eq!(
        q("SELECT count(*) FROM orders"),
        (3000 - 3000 / 700).to_string()
    );
    assert_eq!(
        q("SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id"),
        q("SELECT count(*) FROM orders")
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id WHERE o.email <> u.email"
        ),
        "0"
    );
    assert_eq!(q("SELECT count(*) FROM users"), "500");
    assert_eq!(q("SELECT count(DISTINCT email) FROM users"), "500");
    // No original value of a masked column survives.
    for (col, pat) in [
        ("email", "%@corp.example"),
        ("name", "Person Number%"),
        ("phone", "+1 555 01%"),
    ] {
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM users WHERE {col} LIKE '{pat}'"
            )),
            "0",
            "{col}"
        );
    }
    assert_eq!(q("SELECT count(*) FROM users WHERE meta ? 'ssn'"), "0");
    assert_eq!(
        q("SELECT count(*) FROM users WHERE meta->>'plan' = 'gold'"),
        "500"
    );
    assert_eq!(
        q("SELECT count(*) FROM users WHERE salary::numeric % 1000 <> 0"),
        "0"
    );
    // Ids are a permutation: same count, different values, all in range.
    assert_ne!(
        q("SELECT sum(id::bigint) FROM users"),
        c.psql("mask_src", "SELECT sum(id::bigint) FROM users")
            .trim()
    );
    // The audit table's schema stays, its rows do not.
    assert_eq!(q("SELECT count(*) FROM audit"), "0");
    // Deterministic: the same key gives the same bytes; another key other bytes.
    let again = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask again");
    assert!(again == masked, "two runs with one key differ");
    let other = run_ok(
        mask(&rules, &archive, &[("WEIR_MASK_KEY", "another")]),
        "other key",
    );
    assert!(other != masked);
    // Without a key: consistent within the run (keys still join), different across runs.
    let r1 = mask(&rules, &archive, &[]);
    assert!(stderr(&r1).contains("no key"), "{}", stderr(&r1));
    let r1 = run_ok(r1, "no key");
    let r2 = run_ok(mask(&rules, &archive, &[]), "no key again");
    assert!(r1 != r2);
    let info = String::from_utf8(ok(weir("weir-inspect", &["--json"], &r1))).unwrap();
    assert!(info.contains("\"deterministic\": false"), "{info}");
    load("mask_dst2", &r1);
    assert_eq!(
        c.psql(
            "mask_dst2",
            "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id"
        )
        .trim(),
        q("SELECT count(*) FROM orders")
    );
}

#[test]
fn every_transformer_does_what_it_says() {
    let c = cluster();
    c.create_db(
        "mask_kinds",
        "CREATE TABLE t (id int PRIMARY KEY, s text, v varchar(12), d date, ts timestamp, n numeric(8,2), f float8,
                         i int, b bool, u uuid, ip inet, mac macaddr, j jsonb, k text, big bigint, d2 date,
                         ri int, rb bool, ru uuid, rep text, ip4 inet, country text);
         INSERT INTO t SELECT g, 'secret-' || g || E'\\ttab\\\\back\\nline', 'vvvvvvvvvv' || g % 10,
                date '2020-05-17' + g, timestamp '2021-03-04 05:06:07' + g * interval '1 day', g * 1.25, g / 3.0,
                g, g % 2 = 0, md5(g::text)::uuid, '10.0.0.1', '08:00:2b:01:02:03', '{\"a\": {\"b\": 1}, \"c\": [1,2]}', 'k' || g % 3, g * 1000000000000, date '2020-05-17' + g,
                g, g % 2 = 1, md5(g::text)::uuid, 'a-b-c ' || g, '192.168.0.1', 'Nowhere'
           FROM generate_series(1, 50) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let dict = dir.path().join("dict.csv");
    std::fs::write(&dict, "k0,zero\nk1,\"one, quoted\"\n").unwrap();
    let rules = write_rules(
        &dir,
        &format!(
            r##"
[tables.t]
columns.s = [{{ type = "regex_replace", pattern = "[0-9]", with = "#" }}, {{ type = "mask", keep_first = 2, keep_last = 1 }}]
columns.v = {{ type = "truncate", length = 3, when = {{ column = "b", equals = "t" }} }}
columns.d = {{ type = "date_trunc", to = "month" }}
columns.ts = {{ type = "random", min = "2000-01-01", max = "2000-12-31" }}
columns.n = {{ type = "random", min = 10, max = 20 }}
columns.f = {{ type = "noise", relative = 0.5 }}
columns.i = {{ type = "choice", values = [7, 8, 9] }}
columns.b = "null"
columns.u = "permute"
columns.ip = "ipv6"
columns.mac = "mac"
columns.j = [{{ type = "json_set", path = "a.b", value = "x" }}, {{ type = "json_delete", path = "c.0" }}]
columns.k = {{ type = "dictionary", file = "{}", missing = "null" }}
columns.big = {{ type = "set", value = 42 }}
columns.d2 = {{ type = "noise", interval = "30 days" }}
columns.ri = {{ type = "random", min = -5, max = 5 }}
columns.rb = "random"
columns.ru = "random"
columns.rep = {{ type = "replace", from = "-", to = "+" }}
columns.ip4 = "ipv4"
columns.country = "country"
"##,
            dict.display()
        ),
    );
    let archive = extract("mask_kinds", &[]);
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    load("mask_kinds_dst", &masked);
    let q = |sql: &str| c.psql("mask_kinds_dst", sql).trim().to_string();
    assert_eq!(
        q("SELECT count(*) FROM t WHERE s !~ '^se\\*+[0-9a-z]$' OR s ~ '[0-9]'"),
        "0",
        "{}",
        q("SELECT s FROM t LIMIT 3")
    );
    assert_eq!(q("SELECT count(*) FROM t WHERE b IS NOT NULL"), "0");
    // truncate applied only where the (original) condition held: even ids had b = true.
    assert_eq!(
        q("SELECT count(*) FROM t WHERE id % 2 = 0 AND length(v) <> 3"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM t WHERE id % 2 = 1 AND length(v) = 3"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM t WHERE extract(day FROM d) <> 1"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM t WHERE ts < '2000-01-01' OR ts >= '2001-01-01'"),
        "0"
    );
    assert_eq!(q("SELECT count(*) FROM t WHERE n < 10 OR n > 20"), "0");
    assert_eq!(
        q(
            "SELECT count(*) FROM t WHERE f < (id / 3.0) * 0.5 - 1e-9 OR f > (id / 3.0) * 1.5 + 1e-9"
        ),
        "0"
    );
    assert_eq!(q("SELECT count(*) FROM t WHERE i NOT IN (7, 8, 9)"), "0");
    assert_eq!(q("SELECT count(DISTINCT u) FROM t"), "50");
    assert_eq!(q("SELECT count(*) FROM t WHERE family(ip) <> 6"), "0");
    assert_eq!(q("SELECT count(DISTINCT j::text) FROM t"), "1");
    assert_eq!(
        q("SELECT j::text FROM t LIMIT 1"),
        r#"{"a": {"b": "x"}, "c": [2]}"#
    );
    assert_eq!(
        q(
            "SELECT string_agg(DISTINCT coalesce(k, 'NULL'), '|' ORDER BY coalesce(k, 'NULL')) FROM t"
        ),
        "NULL|one, quoted|zero"
    );
    assert_eq!(q("SELECT count(*) FROM t WHERE big <> 42"), "0");
    assert_eq!(
        q("SELECT count(*) FROM t WHERE abs(d2 - (date '2020-05-17' + id)) > 30"),
        "0"
    );
    assert_ne!(
        q("SELECT count(*) FROM t WHERE d2 = date '2020-05-17' + id"),
        "50"
    );
    assert_eq!(
        q("SELECT count(*) FROM t WHERE ri NOT BETWEEN -5 AND 5"),
        "0"
    );
    assert_ne!(q("SELECT count(DISTINCT ri) FROM t"), "1");
    // Deterministic: equal originals (id % 2 decided rb) give equal outputs.
    assert_eq!(
        q("SELECT max(c) FROM (SELECT count(DISTINCT rb) AS c FROM t GROUP BY id % 2) x"),
        "1"
    );
    assert_eq!(
        q("SELECT count(DISTINCT ru) FROM t WHERE ru <> md5(id::text)::uuid"),
        "50"
    );
    assert_eq!(q("SELECT count(*) FROM t WHERE rep <> 'a+b+c ' || id"), "0");
    assert_eq!(
        q("SELECT count(*) FROM t WHERE family(ip4) <> 4 OR ip4 = '192.168.0.1'"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM t WHERE country = 'Nowhere' OR country = ''"),
        "0"
    );
}

#[test]
fn pseudonyms_templates_and_commands() {
    let c = cluster();
    c.create_db(
        "mask_fake",
        "CREATE TABLE p (id int, first text, last text, login text, card text, iban text, city text, company text, addr text, display text, shout text);
         INSERT INTO p SELECT g, 'F' || g, 'L' || g, 'l' || g, '', '', '', '', '', '', 'quiet ' || g FROM generate_series(1, 40) g;
         CREATE TABLE parts (id int, email text) PARTITION BY RANGE (id);
         CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100);
         CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (100) TO (200);
         INSERT INTO parts SELECT g, 'e' || g || '@corp.example' FROM generate_series(1, 199) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        r#"
[tables.p]
columns.first = "first_name"
columns.last = "last_name"
columns.login = "username"
columns.card = "card_number"
columns.iban = "iban"
columns.city = "city"
columns.company = "company"
columns.addr = "street_address"
columns.display = { type = "template", template = "{first} {last} (was {first:original})" }
columns.shout = { type = "command", run = "sed -u 's/.*/\\U&/'" }

[tables."public.parts"]
columns.email = "email"
"#,
    );
    let archive = extract("mask_fake", &[]);
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    load("mask_fake_dst", &masked);
    let q = |sql: &str| c.psql("mask_fake_dst", sql).trim().to_string();
    assert_eq!(
        q(
            "SELECT count(*) FROM p WHERE first ~ '^F[0-9]' OR last ~ '^L[0-9]' OR login ~ '^l[0-9]+$'"
        ),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM p WHERE display <> first || ' ' || last || ' (was F' || id || ')'"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM p WHERE shout <> 'QUIET ' || id"),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM p WHERE city = '' OR company = '' OR addr = ''"),
        "0"
    );
    // Check digits: Luhn for cards, mod 97 for IBANs, computed in SQL.
    let cards: Vec<String> = q("SELECT card FROM p")
        .lines()
        .map(str::to_string)
        .collect();
    for card in &cards {
        let digits: Vec<u32> = card.chars().map(|c| c.to_digit(10).unwrap()).collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| {
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    *d
                }
            })
            .sum();
        assert_eq!(sum % 10, 0, "{card}");
    }
    for iban in q("SELECT iban FROM p").lines() {
        // ISO 13616: move the first four characters to the end, letters to numbers, mod 97 = 1.
        let moved = format!("{}{}", &iban[4..], &iban[..4]);
        let digits: String = moved
            .chars()
            .map(|c| c.to_digit(36).unwrap().to_string())
            .collect();
        let rem = digits
            .chars()
            .fold(0u32, |r, d| (r * 10 + d.to_digit(10).unwrap()) % 97);
        assert_eq!(rem, 1, "{iban}");
    }
    // Rules for a partitioned table reach every partition.
    assert_eq!(
        q("SELECT count(*) FROM parts WHERE email LIKE '%corp.example'"),
        "0"
    );
    assert_eq!(q("SELECT count(DISTINCT email) FROM parts"), "199");
}

#[test]
fn rule_errors_name_the_rule_before_any_output() {
    let c = cluster();
    c.create_db("mask_err", "CREATE TABLE users (id int, email varchar(8), n int); INSERT INTO users VALUES (1, 'a@b.c', 1);");
    let archive = extract("mask_err", &[]);
    let dir = tempfile::tempdir().unwrap();
    for (rules, want) in [
        (
            "[tables.usres]\ncolumns.email = \"email\"",
            "did you mean public.users?",
        ),
        (
            "[tables.users]\ncolumns.emial = \"email\"",
            "did you mean \"email\"?",
        ),
        (
            "[tables.users]\ncolumns.n = \"email\"",
            "users.n[0] (email): email cannot produce a value of type integer",
        ),
        (
            "[tables.users]\ncolumns.email = { type = \"set\", value = \"far too long\" }",
            "does not fit in 8 characters",
        ),
        (
            "[tables.users]\ncolumns.email = \"emali\"",
            "did you mean \"email\"?",
        ),
        (
            "[tables.users]\ncolumns.email = { type = \"mask\", keep = 1 }",
            "unknown parameter keep",
        ),
        (
            "[tables.users]\ncolumn.email = \"email\"",
            "unknown field `column`",
        ),
    ] {
        let path = write_rules(&dir, rules);
        let o = mask(&path, &archive, &[KEY]);
        assert_eq!(o.status.code(), Some(2), "{rules}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{rules}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{rules}: output written");
    }
    // A value that does not fit is found at the row: an error naming the rule, and a stream
    // without a trailer, which weir-load refuses.
    let path = write_rules(&dir, "[tables.users]\ncolumns.email = \"full_name\"");
    let o = mask(&path, &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("public.users.email[0] (full_name)")
            && stderr(&o).contains("8 characters"),
        "{}",
        stderr(&o)
    );
    let v = weir("weir-inspect", &["--verify"], &o.stdout);
    assert_eq!(v.status.code(), Some(3));
    // A corrupt input is exit 3, as everywhere.
    let mut bad = archive.clone();
    let n = bad.len();
    bad.truncate(n - 2000);
    let o = mask(
        &write_rules(&dir, "[tables.users]\ncolumns.n = \"null\""),
        &bad,
        &[KEY],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// Tables without rules go through unhashed, under the digests weir-extract computed: the
/// output still verifies end to end, a byte flipped in such a table fails the load (not the
/// mask, unless --verify), and a table that is rewritten is always verified first.
#[test]
fn untouched_tables_carry_their_digests_to_the_load() {
    let c = cluster();
    c.create_db(
        "mask_carry",
        "CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users SELECT g, 'u' || g || '@corp.example' FROM generate_series(1, 300) g;
         CREATE TABLE notes (id int, body text);
         INSERT INTO notes SELECT g, 'note-' || g || '-kept' FROM generate_series(1, 300) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(&dir, "[tables.users]\ncolumns.email = \"email\"");
    let archive = extract("mask_carry", &[]);
    let digests = |a: &[u8]| -> serde_json::Value {
        let j = String::from_utf8(ok(weir("weir-inspect", &["--json"], a))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        v["trailer"]["tables"].clone()
    };
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    let (before, after) = (digests(&archive), digests(&masked));
    let find = |v: &serde_json::Value, id: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    // users is table 0 or 1; whichever it is, its digest changed and the other's did not.
    let (u, n) = (find(&before, 0), find(&before, 1));
    let (u2, n2) = (find(&after, 0), find(&after, 1));
    assert!(
        u["blake3"].is_string() && n2["blake3"].is_string(),
        "{before} {after}"
    );
    assert!(
        (u["blake3"] == u2["blake3"]) != (n["blake3"] == n2["blake3"]),
        "{before} {after}"
    );
    // --verify hashes everything and writes the same archive.
    let verified = run_ok(
        stage("weir-mask", &["-c", &rules, "--verify"], &archive, &[KEY]),
        "weir-mask --verify",
    );
    assert!(verified == masked);

    // A flipped byte in the untouched table: weir-mask passes it on, weir-load refuses it and
    // leaves no database behind; with --verify weir-mask refuses it itself.
    let flip = |a: &[u8], needle: &[u8]| {
        let mut a = a.to_vec();
        let at = a.windows(needle.len()).position(|w| w == needle).unwrap();
        a[at] ^= 0x01;
        a
    };
    let bad = flip(&archive, b"note-150-kept");
    let passed = run_ok(
        mask(&rules, &bad, &[KEY]),
        "weir-mask of a corrupt untouched table",
    );
    let v = weir("weir-inspect", &["--verify"], &passed);
    assert_eq!(v.status.code(), Some(3));
    assert!(
        stderr(&v).contains("notes\": data digest mismatch"),
        "{}",
        stderr(&v)
    );
    let l = weir("weir-load", &["-q", "--create", "mask_carry_dst"], &passed);
    assert_eq!(l.status.code(), Some(3), "{}", stderr(&l));
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'mask_carry_dst'"
        )
        .trim(),
        "0"
    );
    let o = stage("weir-mask", &["-c", &rules, "--verify"], &bad, &[KEY]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("notes\": data digest mismatch"),
        "{}",
        stderr(&o)
    );
    // A flipped byte in the masked table is refused by weir-mask, with or without --verify.
    let o = mask(&rules, &flip(&archive, b"u150@corp"), &[KEY]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("users\": data digest mismatch"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn preview_shows_before_and_after() {
    let c = cluster();
    c.create_db("mask_prev", "CREATE TABLE users (id int, email text); INSERT INTO users SELECT g, 'u' || g || '@corp.example' FROM generate_series(1, 20) g;");
    let archive = extract("mask_prev", &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_rules(
        &dir,
        "[tables.users]\ncolumns.email = \"email\"\ndrop_rows = { column = \"id\", equals = 2 }",
    );
    let out = String::from_utf8(run_ok(
        stage(
            "weir-mask",
            &["-c", &path, "--preview", "3"],
            &archive,
            &[KEY],
        ),
        "preview",
    ))
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "public.users", "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("  row 1: email: \"u1@corp.example\" -> \"")
            && !lines[1].ends_with("corp.example\""),
        "{out}"
    );
    assert_eq!(lines[2], "  row 2: dropped by the row filter");
}

#[test]
fn the_copy_codec_round_trips_arbitrary_values_through_postgres() {
    let c = cluster();
    c.create_db("codec", "CREATE TABLE v (id int, t text)");
    // Values from every byte class PostgreSQL's text type accepts: control bytes, escapes'
    // letters after backslashes, \N and \. as text, multi-byte characters.
    let alphabet: Vec<char> = "\\\t\n\r\x08\x0b\x0c\x01\x1f Nn.abxX01789é€😀\"',"
        .chars()
        .collect();
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut values: Vec<String> = vec![String::new(), "\\N".into(), "\\.".into(), "\\".into()];
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 12) as usize;
        values.push(
            (0..len)
                .map(|i| alphabet[((x >> (i * 5)) % alphabet.len() as u64) as usize])
                .collect(),
        );
    }
    let mut input = Vec::new();
    for (i, v) in values.iter().enumerate() {
        input.extend_from_slice(format!("{i}\t").as_bytes());
        weir::pg::copy_text::encode_field(Some(v.as_bytes()), &mut input);
        input.push(b'\n');
    }
    input.extend_from_slice(b"99999\t\\N\n");
    let psql = |sql: &str, stdin: &[u8]| {
        let mut cmd = Command::new(c.bindir.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "codec",
            "-c",
            sql,
        ]);
        ok(run_with_input(scrub(&mut cmd, &c.env()), stdin))
    };
    psql("COPY v FROM STDIN", &input);
    let back = psql("COPY (SELECT * FROM v ORDER BY id) TO STDOUT", b"");
    // PostgreSQL writes exactly what the encoder wrote, and the decoder reads it back.
    assert!(
        back == input,
        "PostgreSQL's COPY output differs from weir's encoding"
    );
    for (line, v) in back.split(|b| *b == b'\n').zip(values.iter()) {
        let field = &line[line.iter().position(|b| *b == b'\t').unwrap() + 1..];
        assert_eq!(
            weir::pg::copy_text::decode_field(field).unwrap().as_deref(),
            Some(v.as_bytes())
        );
    }
    assert_eq!(
        c.psql("codec", "SELECT count(*) FROM v WHERE t IS NULL")
            .trim(),
        "1"
    );
}

/// Issue 13, item 3: a masked archive holds no role's password verifier (the roles stay, as
/// pg_dumpall --no-role-passwords writes them), --keep-role-passwords keeps them and says so,
/// and large objects, which no rule reaches, are named as unmasked.
#[test]
fn a_masked_archive_holds_no_role_password_hashes() {
    let c = cluster();
    c.psql(
        "postgres",
        "DROP ROLE IF EXISTS mask_pw_role; CREATE ROLE mask_pw_role LOGIN PASSWORD 'hunter2-mask';",
    );
    c.create_db(
        "mask_pw_src",
        "CREATE TABLE t (x int, note text); INSERT INTO t VALUES (1, 'a'), (2, 'b');
         SELECT lo_from_bytea(0, 'a large object'::bytea);",
    );
    let verifier = c.psql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'mask_pw_role'",
    );
    let verifier = verifier.trim();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let archive = extract("mask_pw_src", &["--globals", "-b"]);
    assert!(tar_entry(&archive, "weir/globals.sql").contains(verifier));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(&dir, "[tables.\"public.t\"]\ncolumns.note = \"null\"\n");

    let masked = ok(mask(&rules, &archive, &[KEY]));
    let globals = tar_entry(&masked, "weir/globals.sql");
    assert!(
        !globals.contains("SCRAM-SHA-256$") && !globals.contains(verifier),
        "{globals}"
    );
    assert!(globals.contains("CREATE ROLE mask_pw_role;"), "{globals}");
    let line = globals
        .lines()
        .find(|l| l.starts_with("ALTER ROLE mask_pw_role "));
    assert!(
        line.is_some_and(|l| l.contains("LOGIN") && !l.contains("PASSWORD")),
        "{line:?}"
    );
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &masked))).unwrap();
    assert!(listing.contains("role passwords removed"), "{listing}");
    assert!(listing.contains("1 large objects NOT masked"), "{listing}");
    // The archive still verifies and restores with its roles.
    ok(weir("weir-inspect", &["--verify"], &masked));
    c.psql(
        "postgres",
        "DROP DATABASE IF EXISTS mask_pw_dst WITH (FORCE)",
    );
    ok(weir(
        "weir-load",
        &["-q", "--create", "--globals", "mask_pw_dst"],
        &masked,
    ));

    let kept = stage(
        "weir-mask",
        &["-c", &rules, "--keep-role-passwords"],
        &archive,
        &[KEY],
    );
    let kept = ok(kept);
    assert!(tar_entry(&kept, "weir/globals.sql").contains(verifier));
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &kept))).unwrap();
    assert!(listing.contains("role password hashes KEPT"), "{listing}");
}

/// Issue 13, items 1 and 2: a key permutes to the same value whatever the width of its column
/// (an integer key and its bigint and smallint-referencing foreign keys still join, so the
/// restore's foreign keys validate), and a sequence feeding a permuted key continues above
/// every masked key (10,000 inserts with the default after the restore all succeed).
#[test]
fn permuted_keys_join_across_widths_and_sequences_continue_past_them() {
    let c = cluster();
    c.create_db(
        "mask_keys_src",
        "CREATE TABLE parent (id serial PRIMARY KEY, name text);
         INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 100000) g;
         CREATE TABLE child (id bigserial PRIMARY KEY, parent_id int8 NOT NULL REFERENCES parent (id));
         INSERT INTO child (parent_id) SELECT 1 + (g * 7919) % 100000 FROM generate_series(1, 20000) g;
         CREATE TABLE tiny (id smallint PRIMARY KEY);
         INSERT INTO tiny SELECT g FROM generate_series(1, 32767) g;
         CREATE TABLE tiny_ref (tiny_id int4 REFERENCES tiny (id), big_id int8);
         INSERT INTO tiny_ref SELECT g, 5000000000 + g FROM generate_series(1, 32767, 7) g;",
    );
    let archive = extract("mask_keys_src", &[]);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        r#"
[tables."public.parent"]
columns.id = "permute"
[tables."public.child"]
columns.parent_id = "permute"
[tables."public.tiny"]
columns.id = "permute"
[tables."public.tiny_ref"]
columns.tiny_id = "permute"
columns.big_id = "permute"
"#,
    );
    let masked = ok(mask(&rules, &archive, &[KEY]));
    // The load validates every foreign key in post-data: it fails if a key and its FK differ.
    load("mask_keys_dst", &masked);
    let q = |sql: &str| c.psql("mask_keys_dst", sql).trim().to_string();
    assert_eq!(
        q("SELECT count(*) FROM child JOIN parent ON parent.id = child.parent_id"),
        "20000"
    );
    assert_eq!(
        q("SELECT count(*) FROM tiny_ref JOIN tiny ON tiny.id = tiny_ref.tiny_id"),
        "4681"
    );
    // Really permuted, each within its magnitude, the bigints above 2^32 among them.
    let fixed: u32 = q("SELECT count(*) FROM parent WHERE name = 'p' || id")
        .parse()
        .unwrap();
    assert!(fixed < 100, "{fixed} of 100000 keys kept their value");
    assert_eq!(
        q("SELECT count(*) FROM parent WHERE id BETWEEN 65536 AND 131071"),
        q("SELECT count(*) FROM generate_series(65536, 100000)")
    );
    assert_eq!(
        q("SELECT count(*) FROM tiny_ref WHERE big_id BETWEEN 4294967296 AND 8589934591"),
        "4681"
    );
    assert_ne!(
        q("SELECT count(*) FROM tiny_ref WHERE big_id - 5000000000 = tiny_id::int8"),
        "4681"
    );
    // The sequence continues above the masked keys: 10,000 default inserts, no collision.
    c.psql(
        "mask_keys_dst",
        "INSERT INTO parent (name) SELECT 'new' || g FROM generate_series(1, 10000) g",
    );
    assert_eq!(q("SELECT count(*) FROM parent"), "110000");
    assert_eq!(
        q("SELECT min(id) FROM parent WHERE name LIKE 'new%'"),
        "131072"
    );
}

/// Issue 13, item 10: a dictionary's empty key does not map NULL, and `mask` of a value no
/// longer than keep_first + keep_last masks it whole instead of passing it through.
#[test]
fn dictionaries_leave_null_alone_and_short_values_are_masked_whole() {
    let c = cluster();
    c.create_db(
        "mask_edges",
        "CREATE TABLE t (id int PRIMARY KEY, k text, s text);
         INSERT INTO t VALUES (1, NULL, 'ab'), (2, '', 'abc'), (3, 'x', 'abcdefgh');",
    );
    let dir = tempfile::tempdir().unwrap();
    let dict = dir.path().join("dict.csv");
    std::fs::write(&dict, "\"\",empty\nx,ex\n").unwrap();
    let rules = write_rules(
        &dir,
        &format!(
            "[tables.t]\ncolumns.k = {{ type = \"dictionary\", file = \"{}\" }}\n\
             columns.s = {{ type = \"mask\", keep_first = 2, keep_last = 1 }}\n",
            dict.display()
        ),
    );
    let masked = ok(mask(&rules, &extract("mask_edges", &[]), &[KEY]));
    load("mask_edges_dst", &masked);
    let rows = c.psql(
        "mask_edges_dst",
        "SELECT id, coalesce(k, '<null>'), s FROM t ORDER BY id",
    );
    assert_eq!(
        rows.trim(),
        "1|<null>|**\n2|empty|***\n3|ex|ab*****h",
        "{rows}"
    );
}

/// Issue 13, item 10: BC dates and years past 9999, as PostgreSQL writes them, go through the
/// date transformers and load back.
#[test]
fn bc_dates_and_five_digit_years_are_masked_and_load() {
    let c = cluster();
    c.create_db(
        "mask_years",
        "CREATE TABLE t (id int PRIMARY KEY, d date, ts timestamptz, n date);
         INSERT INTO t VALUES (1, '0044-03-15 BC', '0044-03-15 12:30:00+00 BC', '10000-06-15'),
                              (2, '12345-07-08', '12345-07-08 01:02:03.5+00', '0001-01-01 BC');",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        "[tables.t]\ncolumns.d = { type = \"date_trunc\", to = \"month\" }\n\
         columns.ts = { type = \"date_trunc\", to = \"year\" }\n\
         columns.n = { type = \"noise\", interval = \"3 days\" }\n",
    );
    let masked = ok(mask(&rules, &extract("mask_years", &[]), &[KEY]));
    load("mask_years_dst", &masked);
    let q = |sql: &str| c.psql("mask_years_dst", sql).trim().to_string();
    assert_eq!(
        q("SET TimeZone = 'UTC'; SELECT d, ts FROM t ORDER BY id"),
        "0044-03-01 BC|0044-01-01 00:00:00+00 BC\n12345-07-01|12345-01-01 00:00:00+00"
    );
    // Noise of at most three days keeps each value near its original, across year 1 too.
    assert_eq!(
        q(
            "SELECT count(*) FROM t WHERE (id = 1 AND abs(n - '10000-06-15'::date) <= 3) \
           OR (id = 2 AND abs(n - '0001-01-01 BC'::date) <= 3)"
        ),
        "2"
    );
}

/// Issue 13, item 6: a template that reads another template's column gets its masked value,
/// whatever the order of the columns; templates that read each other in a circle are refused.
#[test]
fn templates_read_masked_templates_whatever_the_column_order() {
    let c = cluster();
    c.create_db(
        "mask_tpl",
        "CREATE TABLE t (a text, b text, c text); INSERT INTO t VALUES ('a0', 'b0', 'c0');",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        "[tables.t]\ncolumns.a = { type = \"template\", template = \"{b}!\" }\n\
         columns.b = { type = \"template\", template = \"{c}?\" }\n\
         columns.c = { type = \"set\", value = \"X\" }\n",
    );
    let archive = extract("mask_tpl", &[]);
    let masked = ok(mask(&rules, &archive, &[KEY]));
    load("mask_tpl_dst", &masked);
    assert_eq!(
        c.psql("mask_tpl_dst", "SELECT a, b, c FROM t").trim(),
        "X?!|X?|X"
    );
    let circle = write_rules(
        &dir,
        "[tables.t]\ncolumns.a = { type = \"template\", template = \"{b}\" }\n\
         columns.b = { type = \"template\", template = \"{a}\" }\n",
    );
    let o = mask(&circle, &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("in a circle: public.t.a, public.t.b"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// Issue 13, item 9: a command that writes more lines than it read, or none within its
/// timeout, is an error naming the rule, and the output never becomes a complete archive.
#[test]
fn commands_that_lose_step_or_hang_fail_the_stream() {
    let c = cluster();
    c.create_db(
        "mask_cmd",
        "CREATE TABLE t (id int, s text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;",
    );
    let archive = extract("mask_cmd", &[]);
    let dir = tempfile::tempdir().unwrap();
    for (run, timeout, says) in [
        // Two answers for the first value: every later value would shift by one.
        ("sed -u 1p", 30, "more lines than it read"),
        // Reads, never answers.
        ("cat > /dev/null", 1, "no answer within 1s"),
    ] {
        let rules = write_rules(
            &dir,
            &format!(
                "[tables.t]\ncolumns.s = {{ type = \"command\", run = \"{}\", timeout = {timeout} }}\n",
                run.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        );
        let o = mask(&rules, &archive, &[KEY]);
        assert_ne!(o.status.code(), Some(0), "{run}");
        let err = stderr(&o);
        assert!(
            err.contains("public.t.s[0] (command)") && err.contains(says),
            "{run}: {err}"
        );
        let v = weir("weir-inspect", &["--verify"], &o.stdout);
        assert_eq!(
            v.status.code(),
            Some(3),
            "{run}: the output verified: {}",
            stderr(&v)
        );
    }
}

/// Issue 13, item 4: conditions compare as the column's type: `equals = true` matches a
/// boolean's `t`, `equals = 0` matches `0.00` in a numeric column, dates compare as dates; a
/// constant no value of the type can equal is a rule error (exit 2), not a silent no-op.
#[test]
fn conditions_compare_as_the_columns_type() {
    let c = cluster();
    c.create_db(
        "mask_typed",
        "CREATE TABLE t (id int, vip bool, amount numeric(10,2), born date, note text, at timestamptz, tag text);
         INSERT INTO t VALUES (1, true, 0, '2020-05-07', 'a', '2024-05-01 12:00+02', 'x'),
                              (2, false, 1.5, '2021-01-01', 'b', '2024-05-01 12:00+00', 'y'),
                              (3, true, 2.25, '2020-05-07', 'c', '2024-05-01 10:00:00.000+00', 'z');
         ALTER DATABASE mask_typed SET timezone = 'Asia/Kolkata';",
    );
    let archive = extract("mask_typed", &[]);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        r#"
[tables.t]
drop_rows = { column = "amount", equals = 0 }
columns.note = { type = "set", value = "vip", when = { column = "vip", equals = true } }
columns.id = { type = "set", value = 99, when = { column = "born", in = ["2020-5-7"] } }
columns.tag = { type = "set", value = "ten", when = { column = "at", equals = 2024-05-01T10:00:00Z } }
"#,
    );
    // The archive writes the instants in the database's zone (+05:30); the constant is UTC.
    assert!(tar_entry(&archive, "data/000000/00000000.copy").contains("15:30:00+05:30"));
    let masked = ok(mask(&rules, &archive, &[KEY]));
    load("mask_typed_dst", &masked);
    let rows = c.psql(
        "mask_typed_dst",
        "SELECT id, note, tag FROM t ORDER BY amount",
    );
    assert_eq!(rows.trim(), "2|b|y\n99|vip|ten", "{rows}");
    for (cond, says) in [
        ("{ column = \"vip\", equals = \"maybe\" }", "not a boolean"),
        (
            "{ column = \"amount\", equals = \"0.001\" }",
            "more decimals",
        ),
        ("{ column = \"id\", equals = 1.5 }", "not an integer"),
        ("{ column = \"born\", equals = \"soon\" }", "not a date"),
        (
            "{ column = \"at\", equals = \"2024-05-01 10:00\" }",
            "has no time zone",
        ),
    ] {
        let bad = write_rules(&dir, &format!("[tables.t]\ndrop_rows = {cond}\n"));
        let o = mask(&bad, &archive, &[KEY]);
        assert_eq!(o.status.code(), Some(2), "{cond}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{cond}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

const KEYED: &str = "
CREATE TABLE people (id int PRIMARY KEY, name text UNIQUE, nick text, city text, email text UNIQUE);
CREATE UNIQUE INDEX people_lower_nick ON people (lower(nick));
INSERT INTO people SELECT g, 'Person ' || g, 'nick' || g, 'City ' || (g % 7), 'p' || g || '@x.example'
  FROM generate_series(1, 5000) g;
CREATE TABLE pets (id int PRIMARY KEY, owner int REFERENCES people, owner_name text REFERENCES people (name));
INSERT INTO pets SELECT g, 1 + g % 5000, 'Person ' || (1 + g % 5000) FROM generate_series(1, 3000) g;
CREATE TABLE visits (id int, region text, at date, who int REFERENCES people) PARTITION BY LIST (region);
CREATE TABLE visits_eu PARTITION OF visits FOR VALUES IN ('eu');
CREATE TABLE visits_us PARTITION OF visits FOR VALUES IN ('us');
INSERT INTO visits SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, date '2024-01-01' + g % 300,
       1 + g % 5000 FROM generate_series(1, 2000) g;
";

/// Issue 13, items 7 and 8 and FK propagation: rules are checked against the unique, partition
/// and foreign keys the manifest records. A rule that could make two rows collide on a unique
/// key (before: the load failed at the index build), changes a partition key, or leaves a
/// foreign key pointing nowhere is refused with the constraint or column named; a key's rule
/// reaches every column that references it, and the result restores with every key valid.
#[test]
fn rules_keep_unique_partition_and_foreign_keys_valid() {
    let c = cluster();
    c.create_db("mask_constraints", KEYED);
    let archive = extract("mask_constraints", &[]);
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_entry(&archive, "weir/manifest.json")).unwrap();
    let people = &manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "people")
        .unwrap();
    assert_eq!(
        people["unique"][2],
        serde_json::json!({"name": "people_lower_nick", "kind": "index", "columns": ["nick"]})
    );
    let dir = tempfile::tempdir().unwrap();
    for (rules, want) in [
        (
            "[tables.people]\ncolumns.name = \"full_name\"",
            "public.people.name[0] (full_name): two rows could get the same name, which unique constraint people_name_key (name) refuses",
        ),
        (
            "[tables.people]\ncolumns.nick = { type = \"regex_replace\", pattern = \"\\\\d\", with = \"#\" }",
            "unique index people_lower_nick (nick)",
        ),
        (
            "[tables.people]\ncolumns.id = { type = \"permute\", when = { column = \"city\", equals = \"City 1\" } }",
            "has a condition (when), and public.pets.owner references it (pets_owner_fkey)",
        ),
        (
            "[tables.people]\ncolumns.email = { type = \"template\", template = \"{city}.{id}@x.example\" }",
            "list \"email\" in the table's assume_unique",
        ),
        (
            "[tables.visits]\ncolumns.region = \"city\"",
            "region is a partition key of public.visits",
        ),
        (
            "[tables.pets]\ncolumns.owner = \"permute\"",
            "rules mask public.pets.owner but not public.people.id, which it references (pets_owner_fkey)",
        ),
        (
            "[tables.people]\ncolumns.id = \"permute\"\n[tables.pets]\ncolumns.owner = { type = \"random\", min = 1, max = 9 }",
            "rules for public.pets.owner and public.people.id, which it references (pets_owner_fkey), differ",
        ),
        (
            "[tables.people]\ncolumns.city = { type = \"city\", unique = true }\ncolumns.id = \"permute\"\nassume_unique = [\"nick\"]",
            "assume_unique names \"nick\", which has no rule",
        ),
        (
            "[tables.people]\ncolumns.city = { type = \"phone\", unique = true }",
            "phone has a fixed form",
        ),
    ] {
        let path = write_rules(&dir, rules);
        let o = mask(&path, &archive, &[KEY]);
        assert_eq!(o.status.code(), Some(2), "{rules}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{rules}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{rules}: output written");
    }
    // Rules that keep every key: the id's permutation reaches pets.owner and visits.who, the
    // unique names reach pets.owner_name, a template of the id keeps nick unique, and the
    // user vouches for the e-mail template.
    let rules = write_rules(
        &dir,
        r#"
[tables.people]
columns.id = "permute"
columns.name = { type = "full_name", unique = true }
columns.nick = { type = "template", template = "nick_{id}" }
columns.email = { type = "template", template = "{city}.{id}@x.example" }
columns.city = "city"
assume_unique = ["email"]
[tables.pets]
columns.owner_name = { type = "full_name", unique = true }
"#,
    );
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    load("mask_constraints_dst", &masked);
    let q = |sql: &str| c.psql("mask_constraints_dst", sql).trim().to_string();
    let joins = "SELECT (SELECT count(*) FROM pets JOIN people ON people.id = pets.owner), \
                 (SELECT count(*) FROM pets JOIN people ON people.name = pets.owner_name \
                    AND people.id = pets.owner), \
                 (SELECT count(*) FROM visits JOIN people ON people.id = visits.who), \
                 (SELECT count(DISTINCT name) FROM people), \
                 (SELECT count(*) FROM people WHERE name LIKE 'Person %' OR nick = 'nick' || id)";
    assert_eq!(q(joins), "3000|3000|2000|5000|0");
    // The templates read the masked id and city.
    assert_eq!(
        q("SELECT count(*) FROM people WHERE nick = 'nick_' || id \
           AND email = city || '.' || id || '@x.example'"),
        "5000"
    );
}

/// Keyed hashing: HMAC-SHA-256 under a key derived from the mask key and the rule (checked
/// here against Python's hmac module), hex or base64, cut to a length; NULL stays NULL; the
/// same value hashes the same in every table; too short a hash is refused on a unique column.
#[test]
fn hash_is_keyed_hmac_sha256_in_hex_or_base64() {
    let c = cluster();
    c.create_db(
        "mask_hash",
        "CREATE TABLE t (id int PRIMARY KEY, token text UNIQUE, pw text, short text);
         INSERT INTO t VALUES (1, 'tok-1', 'hunter2', 'abc'), (2, 'tok-2', NULL, 'abd');
         CREATE TABLE u (token text);
         INSERT INTO u VALUES ('tok-1');",
    );
    let archive = extract("mask_hash", &[]);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        r#"
[tables.t]
columns.token = "hash"
columns.pw = { type = "hash", encoding = "base64" }
columns.short = { type = "hash", length = 16 }
[tables.u]
columns.token = "hash"
"#,
    );
    let masked = ok(mask(&rules, &archive, &[KEY]));
    load("mask_hash_dst", &masked);
    let q = |sql: &str| c.psql("mask_hash_dst", sql).trim().to_string();
    let expect = |rule: &str, value: &str, base64: bool| {
        let py = format!(
            "import hashlib, hmac, base64, sys\n\
             d = hashlib.sha256(b'weir-mask key v1\\0' + sys.argv[1].encode()).digest()\n\
             k = hashlib.sha256(b'weir-mask hash v1\\0' + d + sys.argv[2].encode()).digest()\n\
             m = hmac.new(k, sys.argv[3].encode(), hashlib.sha256).digest()\n\
             print(base64.b64encode(m).decode() if {} else m.hex())",
            if base64 { "True" } else { "False" }
        );
        let o = std::process::Command::new("python3")
            .args(["-c", &py, KEY.1, rule, value])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    assert_eq!(
        q("SELECT token FROM t WHERE id = 1"),
        expect("hash:", "tok-1", false)
    );
    assert_eq!(
        q("SELECT token FROM u"),
        q("SELECT token FROM t WHERE id = 1")
    );
    assert_eq!(
        q("SELECT pw FROM t WHERE id = 1"),
        expect("hash:encoding = \"base64\"\n", "hunter2", true)
    );
    assert_eq!(q("SELECT pw IS NULL FROM t WHERE id = 2"), "t");
    assert_eq!(
        q("SELECT string_agg(length(short)::text, ',') FROM t"),
        "16,16"
    );
    // On a unique column, fewer than 64 bits of hash could collide.
    let short = write_rules(
        &dir,
        "[tables.t]\ncolumns.token = { type = \"hash\", length = 15 }",
    );
    let o = mask(&short, &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("t_token_key"), "{}", stderr(&o));
}

/// Issue 13, item 5: json_set and json_delete keep every byte they do not edit: numbers such
/// as 1.10 and integers beyond 2^64, key order, and (in `json`) duplicate keys, every copy of
/// a deleted key going.
#[test]
fn json_edits_keep_every_byte_they_do_not_edit() {
    let c = cluster();
    c.create_db(
        "mask_json",
        r#"CREATE TABLE t (id int, j json, b jsonb);
         INSERT INTO t VALUES (1, '{"z": 1.10, "big": 18446744073709551617, "ssn": "1", "a": [1.0, {"ssn": 2}], "ssn": "3"}',
                                  '{"z": 1.10, "big": 18446744073709551617, "ssn": "1", "card": {"no": "4111"}}');"#,
    );
    let archive = extract("mask_json", &[]);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        r#"
[tables.t]
columns.j = [{ type = "json_delete", path = "ssn" }, { type = "json_set", path = "a.1.ssn", value = 0 }]
columns.b = [{ type = "json_delete", path = "ssn" }, { type = "json_set", path = "card.no", value = "xxxx" },
             { type = "json_set", path = "new.key", value = true }]
"#,
    );
    let masked = ok(mask(&rules, &archive, &[KEY]));
    load("mask_json_dst", &masked);
    let q = |sql: &str| c.psql("mask_json_dst", sql).trim().to_string();
    assert_eq!(
        q("SELECT j FROM t"),
        r#"{"z": 1.10, "big": 18446744073709551617, "a": [1.0, {"ssn": 0}]}"#
    );
    assert_eq!(
        q("SELECT b FROM t"),
        r#"{"z": 1.10, "big": 18446744073709551617, "new": {"key": true}, "card": {"no": "xxxx"}}"#
    );
}

/// Issue 13, item 11: domains through their base types (nested ones too), enums (`choice` and
/// `random` from the labels, constants checked against them), arrays (each element, NULLs
/// kept, written back as array_out writes them), timestamp(p), time and timetz, interval,
/// citext. Refusals name the type.
#[test]
fn domains_enums_arrays_and_time_types_are_masked_through_their_types() {
    let c = cluster();
    c.create_db(
        "mask_types",
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN email_d AS text CHECK (VALUE LIKE '%@%');
         CREATE DOMAIN short_d AS varchar(20);
         CREATE DOMAIN shorter_d AS short_d;
         CREATE TABLE t (id int PRIMARY KEY, e email_d, s shorter_d, m mood, ms mood[], tags text[], ids int[],
                         ts timestamp(3), tm time, tmz time(2) with time zone, iv interval, ci citext);
         INSERT INTO t SELECT g, 'person' || g || '@corp.example', 'Someone ' || g, 'sad', '{sad,NULL,ok}',
                '{\"secret one\",NULL,b}', ARRAY[g, 2 * g, 300], timestamp '2024-05-01 12:00:00.123' + g * interval '1 hour',
                time '08:00' + g * interval '1 minute', timetz '23:30:00.25+02', interval '3 days', 'Mixed' || g || '@Case.example'
           FROM generate_series(1, 200) g;",
    );
    let archive = extract("mask_types", &[]);
    let dir = tempfile::tempdir().unwrap();
    for (rules, want) in [
        (
            "columns.iv = { type = \"noise\", interval = \"1 day\" }",
            "noise cannot produce a value of type interval",
        ),
        (
            "columns.m = { type = \"set\", value = \"meh\" }",
            "\"meh\" is not a label of the enum (sad, ok, happy)",
        ),
        (
            "columns.ms = { type = \"choice\", values = [\"sad\", \"meh\"] }",
            "not a label of the enum (sad, ok, happy) (on each element of an array of enum (sad, ok, happy))",
        ),
        (
            "columns.ids = \"email\"",
            "email cannot produce a value of type integer (it works on text) (on each element of an array of integer)",
        ),
        (
            "drop_rows = { column = \"m\", equals = \"meh\" }",
            "meh is not a label of the enum",
        ),
        (
            "columns.s = { type = \"set\", value = \"abcdefghijklmnopqrstuvwxyz\" }",
            "does not fit in 20 characters",
        ),
        (
            "columns.tm = { type = \"set\", value = \"25:00\" }",
            "is not a time of day",
        ),
    ] {
        let path = write_rules(&dir, &format!("[tables.t]\n{rules}"));
        let o = mask(&path, &archive, &[KEY]);
        assert_eq!(o.status.code(), Some(2), "{rules}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{rules}: {}", stderr(&o));
    }
    let rules = write_rules(
        &dir,
        r#"
[tables.t]
columns.e = "email"
columns.s = "first_name"
columns.m = "choice"
columns.ms = "random"
columns.tags = { type = "mask", keep_first = 1 }
columns.ids = "permute"
columns.ts = { type = "noise", interval = "1 day" }
columns.tm = { type = "random", min = "09:00:00", max = "17:00:00" }
columns.tmz = { type = "noise", interval = "2 hours" }
columns.iv = { type = "set", value = "1 day 02:00:00" }
columns.ci = "email"
"#,
    );
    let masked = run_ok(mask(&rules, &archive, &[KEY]), "weir-mask");
    load("mask_types_dst", &masked);
    let q = |sql: &str| c.psql("mask_types_dst", sql).trim().to_string();
    let checks = [
        "SELECT count(*) FROM t WHERE e LIKE '%@example.%' AND e NOT LIKE 'person%'",
        "SELECT count(*) FROM t WHERE s NOT LIKE 'Someone%'",
        "SELECT count(*) FROM t WHERE cardinality(ms) = 3 AND ms[2] IS NULL AND ms[1] IS NOT NULL",
        "SELECT count(*) FROM t WHERE tags = '{s*********,NULL,*}'",
        "SELECT count(*) FROM t WHERE cardinality(ids) = 3 AND ids[3] BETWEEN 256 AND 511 \
           AND ids[1] BETWEEN 2 ^ floor(log(2, id)) AND 2 ^ (floor(log(2, id)) + 1) - 1",
        "SELECT count(*) FROM t WHERE abs(extract(epoch FROM ts - (timestamp '2024-05-01 12:00:00.123' + id * interval '1 hour'))) <= 86400 \
           AND extract(milliseconds FROM ts)::numeric % 1000 = 123",
        "SELECT count(*) FROM t WHERE tm BETWEEN '09:00' AND '17:00'",
        "SELECT count(*) FROM t WHERE extract(timezone FROM tmz) = 7200 AND extract(microseconds FROM tmz)::int % 1000000 = 250000",
        "SELECT count(*) FROM t WHERE iv = interval '26 hours' AND ci LIKE '%@example.%'",
    ];
    for sql in checks {
        assert_eq!(q(sql), "200", "{sql}");
    }
    // Every row had 'sad': with a key, one value always draws the same label.
    assert_eq!(q("SELECT count(DISTINCT m) FROM t"), "1");
    assert!(
        q("SELECT count(*) FROM t WHERE ids[1] = id")
            .parse::<u32>()
            .unwrap()
            < 50
    );
}

/// `--validate` reports, per table, the rules, the columns kept on purpose, those without a
/// rule (marked when they look personal) and the constraints a rule may break, then a sample;
/// on a `--schema-only` archive too. `--strict` refuses an unruled personal column and any
/// column the rules of its table do not name, before any output. `null` on a NOT NULL column
/// is refused.
#[test]
fn validate_reports_unmasked_columns_and_strict_refuses_them() {
    let c = cluster();
    c.create_db(
        "mask_validate",
        "CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, phone text, created date NOT NULL,
                             price int CHECK (price > 0));
         INSERT INTO users SELECT g, 'u' || g || '@corp.example', '555-' || g, date '2024-01-01', g FROM generate_series(1, 10) g;
         CREATE TABLE logs (id int, client inet, msg text);
         INSERT INTO logs VALUES (1, '10.0.0.1', 'hello');",
    );
    let archive = extract("mask_validate", &[]);
    let schema = extract("mask_validate", &["--schema-only"]);
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        &dir,
        "[tables.users]\ncolumns.email = \"email\"\ncolumns.price = { type = \"random\", min = -5, max = 5 }\nkeep = [\"id\"]\n",
    );
    let report = String::from_utf8(ok(stage(
        "weir-mask",
        &["-c", &rules, "--validate"],
        &archive,
        &[KEY],
    )))
    .unwrap();
    for want in [
        "public.users\n  keep     id\n  rule     email: email\n  NO RULE  phone (looks like a phone number)\n  no rule  created\n  rule     price: random\n",
        "  unique   users_email_key (email): the rules keep distinct values distinct\n",
        "  check    users_price_check (price): CHECK ((price > 0)) reads a masked column",
        "public.logs\n  no rule  id\n  NO RULE  client (looks like an IP address)\n",
        "public.users\n  row 1: email: \"u1@corp.example\" -> ",
    ] {
        assert!(report.contains(want), "{want:?} not in:\n{report}");
    }
    let on_schema = String::from_utf8(ok(stage(
        "weir-mask",
        &["-c", &rules, "--validate"],
        &schema,
        &[KEY],
    )))
    .unwrap();
    assert!(on_schema.contains("NO RULE  phone"), "{on_schema}");
    // --strict: the report's complaints become a rule error, and no archive is written.
    let o = stage("weir-mask", &["-c", &rules, "--strict"], &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    for want in [
        "public.users.phone looks like a phone number and has no rule",
        "public.users.created is not named in the rules of its table",
        "public.logs.client looks like an IP address and has no rule",
    ] {
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
    }
    let complete = write_rules(
        &dir,
        "[tables.users]\ncolumns.email = \"email\"\ncolumns.phone = \"phone\"\nkeep = [\"id\", \"created\", \"price\"]\n\
         [tables.logs]\ncolumns.client = { type = \"set\", value = \"10.0.0.0\" }\nkeep = [\"id\", \"msg\"]\n",
    );
    let masked = run_ok(
        stage(
            "weir-mask",
            &["-c", &complete, "--strict"],
            &archive,
            &[KEY],
        ),
        "weir-mask --strict",
    );
    load("mask_validate_dst", &masked);
    // NOT NULL columns cannot take null.
    let nulls = write_rules(&dir, "[tables.users]\ncolumns.created = \"null\"\n");
    let o = mask(&nulls, &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("created is NOT NULL"), "{}", stderr(&o));
}

/// The secrets of issue 29: a user mapping's password, a server option holding a token, a
/// subscription's connection password, a comment with an address, and a large object.
const SECRETS: [&str; 5] = [
    "um-secret-7f3a",
    "srv-token-91c2",
    "sub-secret-55e1",
    "alice-comment@corp.example",
    "lo-bytes-c0ffee",
];

const SECRETS_DB: &str = "
CREATE EXTENSION postgres_fdw;
CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.example', dbname 'app');
CREATE USER MAPPING FOR postgres SERVER remote OPTIONS (user 'app', password 'um-secret-7f3a');
CREATE FOREIGN DATA WRAPPER plain_fdw;
CREATE SERVER tokens FOREIGN DATA WRAPPER plain_fdw OPTIONS (host 'h', api_token 'srv-token-91c2');
CREATE TABLE users (id int PRIMARY KEY, email text, name text);
INSERT INTO users SELECT g, 'u' || g || '@corp.example', 'Name ' || g FROM generate_series(1, 20) g;
COMMENT ON TABLE users IS 'ask alice-comment@corp.example for access';
SELECT lo_from_bytea(0, 'lo-bytes-c0ffee'::bytea);
";

/// Issue 29: a masked archive carries no credential of the source and no large object no rule
/// looked at; --strict refuses unruled large objects; the unmasked archive stays faithful.
#[test]
fn a_masked_archive_holds_no_credential_and_no_unruled_large_object() {
    let c = cluster();
    c.create_db("mask_secrets", SECRETS_DB);
    // CREATE SUBSCRIPTION refuses to run in the transaction create_db uses.
    c.psql(
        "mask_secrets",
        "CREATE SUBSCRIPTION sub CONNECTION 'host=db.example dbname=app password=sub-secret-55e1' \
         PUBLICATION p WITH (connect = false)",
    );
    let archive = extract("mask_secrets", &[]);
    for s in SECRETS {
        assert!(holds(&archive, s), "the unmasked archive lost {s}");
    }
    let dir = tempfile::tempdir().unwrap();
    let users = "[tables.users]\ncolumns.email = \"email\"\ncolumns.name = \"full_name\"\nkeep = [\"id\"]\n";

    // No rule for the large object: --strict refuses, naming them, before any output.
    let rules = write_rules(&dir, users);
    let o = stage("weir-mask", &["-c", &rules, "--strict"], &archive, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("the archive carries 1 large objects and no rule covers them"),
        "{}",
        stderr(&o)
    );
    // --validate shows what would travel: the comment, the credentials, the large object.
    let report = String::from_utf8(ok(stage(
        "weir-mask",
        &["-c", &rules, "--validate"],
        &archive,
        &[KEY],
    )))
    .unwrap();
    for want in [
        "schema: option password of user mapping for postgres on server remote: removed",
        "schema: option api_token of server tokens: removed",
        "schema: password in the connection of subscription sub: removed",
        "schema: 2 comments, kept as written",
        "COMMENT ON TABLE public.users IS 'ask alice-comment@corp.example for access';",
        "large objects: 1, no rule: pass through UNMASKED",
    ] {
        assert!(report.contains(want), "{want:?} not in:\n{report}");
    }

    // Contents replaced, comments dropped: none of the secrets is left anywhere in the stream.
    // weir-mask --strict with the users' rules and `more`, which must succeed.
    let strict = |more: &str| {
        let rules = write_rules(&dir, &format!("{users}{more}"));
        let o = stage("weir-mask", &["-c", &rules, "--strict"], &archive, &[KEY]);
        run_ok(o, &format!("weir-mask --strict with {more:?}"))
    };
    let masked = strict(
        "[large_objects]\naction = \"replace\"\nwith = \"(masked)\"\n[schema]\ncomments = \"drop\"\n",
    );
    for s in SECRETS {
        assert!(!holds(&masked, s), "the masked archive still holds {s}");
    }
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &masked))).unwrap();
    for want in [
        "1 large objects replaced",
        "credentials removed: option password of user mapping for postgres on server remote, option api_token of server tokens, password in the connection of subscription sub",
        "comments dropped",
    ] {
        assert!(listing.contains(want), "{want:?} not in:\n{listing}");
    }
    // The copy loads: the mapping and the server without their secrets, the subscription
    // disabled without its password, the large object with the replacement contents.
    load("mask_secrets_dst", &masked);
    let q = |sql: &str| c.psql("mask_secrets_dst", sql).trim().to_string();
    assert_eq!(
        q("SELECT array_to_string(umoptions, ',') FROM pg_user_mappings WHERE srvname = 'remote'"),
        "user=app"
    );
    assert_eq!(
        q(
            "SELECT array_to_string(srvoptions, ',') FROM pg_foreign_server WHERE srvname = 'tokens'"
        ),
        "host=h"
    );
    assert_eq!(
        q(
            "SELECT subenabled || ' ' || subconninfo FROM pg_subscription \
           WHERE subname = 'sub' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        "false host='db.example' dbname='app'"
    );
    assert_eq!(
        q("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata"),
        "(masked)"
    );
    assert_eq!(
        q("SELECT coalesce(obj_description('users'::regclass), 'none')"),
        "none"
    );
    assert_eq!(q("SELECT count(*) FROM users"), "20");

    // DROP DATABASE refuses a database with subscriptions: leave each one droppable.
    let unsubscribe = |db: &str| {
        c.psql(
            db,
            "ALTER SUBSCRIPTION sub SET (slot_name = NONE); DROP SUBSCRIPTION sub;",
        );
    };
    unsubscribe("mask_secrets_dst");

    // Dropped: no large object in the archive or the copy; kept: there, and said so.
    let dropped = strict("[large_objects]\naction = \"drop\"\n");
    assert!(!holds(&dropped, "lo-bytes-c0ffee") && !holds(&dropped, "um-secret-7f3a"));
    load("mask_secrets_dst", &dropped);
    assert_eq!(q("SELECT count(*) FROM pg_largeobject_metadata"), "0");
    unsubscribe("mask_secrets_dst");
    let kept = strict("[large_objects]\naction = \"keep\"\n");
    assert!(holds(&kept, "lo-bytes-c0ffee") && !holds(&kept, "sub-secret-55e1"));
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &kept))).unwrap();
    assert!(
        listing.contains("1 large objects NOT masked (kept by rule)"),
        "{listing}"
    );
    unsubscribe("mask_secrets");
}

/// Every table's rows, ordered: equal databases give equal digests.
fn shop_digest(db: &str) -> String {
    cluster().psql(
        db,
        "SELECT string_agg(t || ' ' || d, E'\\n' ORDER BY t) FROM (
           SELECT 'users' t, md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) d FROM users x
           UNION ALL SELECT 'orders', count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM orders x
           UNION ALL SELECT 'audit', count(*) || '' FROM audit x) s",
    )
}

/// Issue 17: a masked dump restored, plus the change stream after it masked with the same
/// rules and key and applied, equals a masked copy of the final source. The changes cross the
/// rules every way: inserts, updates of masked columns, a key change, rows that leave and
/// enter a row filter (a delete and an insert downstream), deletes of kept and of filtered
/// rows, a table whose data is dropped.
#[test]
fn a_masked_dump_plus_the_masked_stream_equals_a_masked_copy_of_the_final_source() {
    let c = cluster();
    c.create_db(
        "ms_src",
        &format!(
            "{SHOP} ALTER TABLE orders REPLICA IDENTITY FULL; CREATE PUBLICATION pub FOR ALL TABLES;"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(&dir, SHOP_RULES);
    cdc_slot(c, "ms_src", "ms_slot", "--create-slot");
    // No write between the slot and the dump: the stream starts where the dump's data ends.
    let masked = ok(mask(&rules, &extract("ms_src", &[]), &[KEY]));
    load("ms_dst", &masked);
    let schema = dir.path().join("schema.weir");
    std::fs::write(&schema, extract("ms_src", &["-s"])).unwrap();
    c.psql(
        "ms_src",
        "INSERT INTO users VALUES (501, 'new@corp.example', 'New Person', '+1 555 0999', '1999-09-09', 5000, true, '{\"ssn\": \"SSN-501\"}');
         INSERT INTO orders VALUES (3001, 501, 'new@corp.example', 5, now()), (3002, 501, 'x@corp.example', 0, now());
         UPDATE users SET email = 'changed@corp.example', name = 'Changed Name', meta = '{\"ssn\": \"SSN-X\", \"plan\": \"basic\"}' WHERE id = 7;
         UPDATE orders SET id = 5000 WHERE id = 10;
         UPDATE orders SET amount = 0 WHERE id = 20;
         UPDATE orders SET amount = 9 WHERE id IN (700, 1400);
         DELETE FROM orders WHERE id IN (30, 2100);
         DELETE FROM orders WHERE user_id = 9;
         DELETE FROM users WHERE id = 9;
         INSERT INTO audit VALUES (101, 'secret 101');",
    );
    let end = c.psql("ms_src", "SELECT pg_current_wal_insert_lsn()");
    let args = [
        "-d",
        "ms_src",
        "-S",
        "ms_slot",
        "--publication",
        "pub",
        "--stream",
        "-q",
    ];
    let o = run_on(
        c,
        "weir-cdc",
        &[&args[..], &["-E", end.trim()]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stream = o.stdout;
    let schema = schema.display().to_string();
    let o = stage(
        "weir-mask",
        &["-c", &rules, "--schema-from", &schema],
        &stream,
        &[KEY],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let masked_stream = o.stdout;
    let text = String::from_utf8_lossy(&masked_stream);
    for secret in [
        "changed@corp.example",
        "Changed Name",
        "SSN-X",
        "new@corp.example",
        "secret 101",
    ] {
        assert!(!text.contains(secret), "{secret} passed the mask");
    }
    let o = run_on(
        c,
        "weir-apply",
        &["-q", "-d", "ms_dst", "--origin", "ms_o"],
        &masked_stream,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    load("ms_exp", &ok(mask(&rules, &extract("ms_src", &[]), &[KEY])));
    assert_eq!(shop_digest("ms_dst"), shop_digest("ms_exp"));
    assert_ne!(shop_digest("ms_dst"), shop_digest("ms_src"));

    // A stream without the archive to compile against, and a row filter on a column that
    // an update's old key (REPLICA IDENTITY DEFAULT: the key only) does not carry.
    let o = stage("weir-mask", &["-c", &rules], &stream, &[KEY]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--schema-from"), "{}", stderr(&o));
    let vip = write_rules(
        &dir,
        "[tables.\"public.users\"]\ndrop_rows = { column = \"vip\", equals = true }",
    );
    let o = stage(
        "weir-mask",
        &["-c", &vip, "--schema-from", &schema],
        &stream,
        &[KEY],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("column vip") && stderr(&o).contains("REPLICA IDENTITY FULL"),
        "{}",
        stderr(&o)
    );
    // A rule whose `when` reads a column an update left out (as it leaves out an unchanged
    // TOAST value) is refused, not applied as if the column were NULL.
    let text = String::from_utf8(stream.clone()).unwrap();
    let vip = r#"{"name":"vip","type":"boolean","value":false},"#;
    let cut = text
        .lines()
        .find(|l| l.contains("changed@corp.example"))
        .unwrap();
    assert!(cut.contains(vip), "{cut}");
    let text = text.replace(cut, &cut.replacen(vip, "", 1));
    let when = write_rules(
        &dir,
        "[tables.\"public.users\"]\ncolumns.name = { type = \"truncate\", length = 3, when = { column = \"vip\", equals = true } }",
    );
    let o = stage(
        "weir-mask",
        &["-c", &when, "--schema-from", &schema],
        text.as_bytes(),
        &[KEY],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("column name reads column vip"),
        "{}",
        stderr(&o)
    );
    cdc_slot(c, "ms_src", "ms_slot", "--drop-slot");
}

/// pg_flo's rule kinds on a change stream, applied by weir-apply to a target laid out as the
/// rules route it: a typed `gt` filter (99.99 is not above 100, though its text sorts after
/// it) with updates that cross it both ways, an excluded column, a table and a column renamed,
/// and `operations` that let only inserts of one table through (its updates, deletes and
/// truncate dropped). The target ends holding exactly what the rules say it should, and no
/// excluded value is in the stream. Rules that cannot hold are refused before any line.
#[test]
fn routing_rules_filter_rename_exclude_and_pick_operations_on_a_stream() {
    let c = cluster();
    c.create_db(
        "rt_src",
        "CREATE TYPE state AS ENUM ('new', 'paid', 'sent');
         CREATE TABLE orders (id int PRIMARY KEY, total numeric(10,2), note text, secret text, st state);
         CREATE TABLE events (id int PRIMARY KEY, kind text, meta jsonb);
         ALTER TABLE orders REPLICA IDENTITY FULL;
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO orders VALUES (1, 99.99, 'one', 'sec-1', 'new'), (2, 150, 'two', 'sec-2', 'paid');
         CREATE PUBLICATION pub FOR ALL TABLES;",
    );
    c.create_db(
        "rt_dst",
        "CREATE TYPE state AS ENUM ('new', 'paid', 'sent'); CREATE SCHEMA copy;
         CREATE TABLE copy.big_orders (id int PRIMARY KEY, total numeric(10,2), remark text, st state);
         CREATE TABLE events (id int PRIMARY KEY, kind text, meta jsonb);
         INSERT INTO copy.big_orders VALUES (2, 150, 'two', 'paid');",
    );
    cdc_slot(c, "rt_src", "rt_slot", "--create-slot");
    c.psql(
        "rt_src",
        "INSERT INTO orders VALUES (3, 100, 'three', 'sec-3', 'new'), (4, 1000, 'four', 'sec-4', 'new'),
                                  (5, 100.01, 'five', 'sec-5', 'sent');
         UPDATE orders SET total = 250 WHERE id = 1;
         UPDATE orders SET total = 50 WHERE id = 2;
         UPDATE orders SET note = 'four!', secret = 'sec-4b', st = 'paid' WHERE id = 4;
         DELETE FROM orders WHERE id IN (3, 5);
         INSERT INTO events VALUES (1, 'payment', '{}'), (2, 'login', '{}'), (3, 'repay', '{}');
         UPDATE events SET kind = 'payment!' WHERE id = 1;
         DELETE FROM events WHERE id = 3;
         TRUNCATE events;",
    );
    let end = c.psql("rt_src", "SELECT pg_current_wal_insert_lsn()");
    let args = [
        "-q",
        "-d",
        "rt_src",
        "-S",
        "rt_slot",
        "--publication",
        "pub",
        "--stream",
        "-E",
        end.trim(),
        // A check's messages in the stream: weir-mask drops them, or weir-apply would compare
        // the renamed and filtered target with the source and fail.
        "--verify",
    ];
    let o = run_on(c, "weir-cdc", &args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let stream = o.stdout;
    assert!(holds(&stream, "weir.verify"));
    cdc_slot(c, "rt_src", "rt_slot", "--drop-slot");

    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.weir");
    std::fs::write(&schema, extract("rt_src", &["-s"])).unwrap();
    let schema = schema.display().to_string();
    let rules = write_rules(
        &dir,
        r#"
[tables."public.orders"]
keep_rows = { column = "total", gt = 100 }
exclude = ["secret"]
rename = "copy.big_orders"
rename_columns = { note = "remark" }
columns.note = { type = "regex_replace", pattern = "!", with = "" }

[tables."public.events"]
operations = ["insert"]
keep_rows = { column = "kind", contains = "pay" }
"#,
    );
    let o = stage(
        "weir-mask",
        &["-c", &rules, "--schema-from", &schema],
        &stream,
        &[KEY],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reads total, outside the primary key"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("dropping weir-cdc --verify's messages"));
    let routed = o.stdout;
    assert!(!holds(&routed, "sec-"), "an excluded value passed");
    assert!(!holds(&routed, "weir.verify"));
    let o = run_on(
        c,
        "weir-apply",
        &["-q", "-d", "rt_dst", "--origin", "rt_o"],
        &routed,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        c.psql(
            "rt_dst",
            "SELECT id, total, remark, st FROM copy.big_orders ORDER BY id"
        ),
        "1|250.00|one|new\n4|1000.00|four|paid\n"
    );
    assert_eq!(
        c.psql("rt_dst", "SELECT id, kind FROM events ORDER BY id"),
        "1|payment\n3|repay\n"
    );

    // Rules that cannot hold, refused with the reason before any line is written.
    for (text, says) in [
        (
            "[tables.\"public.orders\"]\nexclude = [\"id\"]",
            "primary key",
        ),
        (
            "[tables.\"public.events\"]\nkeep_rows = { column = \"meta\", gt = 1 }",
            "jsonb",
        ),
        (
            "[tables.\"public.orders\"]\nrename_columns = { note = \"total\" }",
            "two columns",
        ),
        (
            "[tables.\"public.orders\"]\nkeep_rows = { column = \"total\", gt = \"lots\" }",
            "lots",
        ),
        (
            "[tables.\"public.events\"]\noperations = [\"upsert\"]",
            "upsert",
        ),
    ] {
        let bad = write_rules(&dir, text);
        let o = stage(
            "weir-mask",
            &["-c", &bad, "--schema-from", &schema],
            &stream,
            &[KEY],
        );
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{text}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{text}: output written");
    }
}
