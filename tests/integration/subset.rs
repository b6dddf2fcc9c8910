//! `weir-extract --subset`: the rows a condition picks, everything they reference (composite,
//! nullable and self-referencing keys, a cycle, a declared virtual key, partitions), the rows
//! that reference kept rows only where they point at kept rows, and with
//! `--subset-dependents` the rows that reference the seeds. Each archive restores with every
//! foreign key valid, and each table holds exactly the rows a plain SQL closure on the source
//! says it should.

use crate::harness::*;

const SHOP: &str = "
CREATE TABLE employees (id int PRIMARY KEY, boss int REFERENCES employees);
INSERT INTO employees SELECT g, CASE WHEN g > 1 THEN g / 2 END FROM generate_series(1, 200) g;
CREATE TABLE customers (id int PRIMARY KEY, name text, rep int REFERENCES employees);
INSERT INTO customers SELECT g, 'c' || g, 1 + (g * 7) % 200 FROM generate_series(1, 1000) g;
CREATE TABLE products (a int, b int, name text, PRIMARY KEY (a, b));
INSERT INTO products SELECT g % 10, g / 10, 'p' || g FROM generate_series(0, 499) g;
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL REFERENCES customers,
                     taken_by int REFERENCES employees);
INSERT INTO orders SELECT g, 1 + (g * 13) % 1000, CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 200 END
  FROM generate_series(1, 5000) g;
CREATE TABLE items (order_id int NOT NULL REFERENCES orders, pa int, pb int, qty int,
                    FOREIGN KEY (pa, pb) REFERENCES products);
CREATE INDEX ON items (order_id);
INSERT INTO items SELECT 1 + g % 5000, CASE WHEN g % 7 = 0 THEN NULL ELSE g % 10 END, (g / 10) % 50, g
  FROM generate_series(1, 20000) g;
CREATE TABLE reviews (id int PRIMARY KEY, customer int REFERENCES customers, reply_to int REFERENCES reviews);
INSERT INTO reviews SELECT g, 1 + g % 1000, CASE WHEN g <= 10 OR g % 50 = 0 THEN NULL WHEN g % 7 = 0 THEN g - 3 ELSE g - 10 END
  FROM generate_series(1, 3000) g;
-- A cycle: a team has a lead customer, a customer's team is optional.
CREATE TABLE teams (id int PRIMARY KEY, lead int REFERENCES customers);
INSERT INTO teams SELECT g, g * 10 FROM generate_series(1, 100) g;
ALTER TABLE customers ADD team int REFERENCES teams;
UPDATE customers SET team = 1 + id % 100 WHERE id % 20 = 1;
-- No declared key: --virtual-fk says notes.order_ref references orders.id.
CREATE TABLE notes (id int, order_ref int, txt text);
INSERT INTO notes SELECT g, g, 'n' FROM generate_series(1, 5000) g;
CREATE TABLE visits (id int, region text, customer int REFERENCES customers) PARTITION BY LIST (region);
CREATE TABLE visits_eu PARTITION OF visits FOR VALUES IN ('eu');
CREATE TABLE visits_us PARTITION OF visits FOR VALUES IN ('us');
INSERT INTO visits SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 1 + g % 1000 FROM generate_series(1, 2000) g;
CREATE TABLE settings (k text PRIMARY KEY, v text);
INSERT INTO settings VALUES ('a', 'b');
";

/// The closure, computed plainly on the source: kept orders, then what they reference up to
/// a fixed point (customers <-> teams cycle, employees' bosses), in temporary tables.
const EXPECTED: &str = "
CREATE TEMP TABLE k_orders AS SELECT * FROM orders WHERE id % 10 = 0;
CREATE TEMP TABLE k_customers AS SELECT * FROM customers WHERE id IN (SELECT customer FROM k_orders);
CREATE TEMP TABLE k_teams AS SELECT * FROM teams WHERE false;
DO $$ BEGIN
  LOOP
    INSERT INTO k_teams SELECT * FROM teams WHERE id IN (SELECT team FROM k_customers)
      AND id NOT IN (SELECT id FROM k_teams);
    INSERT INTO k_customers SELECT * FROM customers WHERE id IN (SELECT lead FROM k_teams)
      AND id NOT IN (SELECT id FROM k_customers);
    EXIT WHEN NOT FOUND;
  END LOOP;
END $$;
CREATE TEMP TABLE k_employees AS WITH RECURSIVE e(id) AS (
    SELECT taken_by FROM k_orders WHERE taken_by IS NOT NULL UNION SELECT rep FROM k_customers
    UNION SELECT employees.boss FROM e JOIN employees ON employees.id = e.id WHERE employees.boss IS NOT NULL)
  SELECT * FROM employees WHERE id IN (SELECT id FROM e);
CREATE TEMP TABLE k_reviews AS WITH RECURSIVE bad(id) AS (
    SELECT id FROM reviews WHERE customer NOT IN (SELECT id FROM k_customers)
    UNION SELECT r.id FROM bad JOIN reviews r ON r.reply_to = bad.id)
  SELECT * FROM reviews WHERE id NOT IN (SELECT id FROM bad);
";

fn ids(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql).trim().to_string()
}

#[test]
fn subsets_keep_every_row_they_reference_and_restore_with_valid_keys() {
    let c = cluster();
    c.create_db("subset_src", SHOP);
    let archive = extract(
        "subset_src",
        &[
            "-j",
            "2",
            "--subset",
            "orders:id % 10 = 0",
            "--virtual-fk",
            "public.notes(order_ref)->public.orders(id)",
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_entry(&archive, "weir/manifest.json")).unwrap();
    let role = |name: &str| {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["subset"]
            .clone()
    };
    assert_eq!(role("orders"), "seed");
    assert_eq!(role("teams"), "referenced");
    assert_eq!(role("visits_eu"), "restricted");
    assert_eq!(role("products"), serde_json::Value::Null);
    assert_eq!(manifest["subset"]["seeds"][0], "orders:id % 10 = 0");
    let listing = String::from_utf8(ok(weir("weir-inspect", &[], &archive))).unwrap();
    assert!(
        listing.contains("subset:    orders:id % 10 = 0\n"),
        "{listing}"
    );
    // The load adds every foreign key after the data: it fails if one row points nowhere.
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS subset_dst");
    ok(weir(
        "weir-load",
        &["-q", "--create", "subset_dst"],
        &archive,
    ));
    assert_eq!(
        ids(
            c,
            "subset_dst",
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        ),
        ids(
            c,
            "subset_src",
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        )
    );
    // Each table holds exactly the rows of the closure.
    let got = |table: &str, key: &str| {
        ids(
            c,
            "subset_dst",
            &format!(
                "SELECT count(*), md5(string_agg({key}::text, ',' ORDER BY {key})) FROM {table}"
            ),
        )
    };
    let want = |sql: &str| ids(c, "subset_src", &format!("{EXPECTED} {sql}"));
    let agg = |table: &str, key: &str| {
        format!("SELECT count(*), md5(string_agg({key}::text, ',' ORDER BY {key})) FROM {table}")
    };
    assert_eq!(got("orders", "id"), want(&agg("k_orders", "id")));
    assert_eq!(got("customers", "id"), want(&agg("k_customers", "id")));
    assert_eq!(got("teams", "id"), want(&agg("k_teams", "id")));
    assert_eq!(got("employees", "id"), want(&agg("k_employees", "id")));
    assert_eq!(got("reviews", "id"), want(&agg("k_reviews", "id")));
    assert_eq!(
        got("items", "qty"),
        want(&agg(
            "(SELECT * FROM items WHERE order_id IN (SELECT id FROM k_orders)) i",
            "qty"
        ))
    );
    assert_eq!(
        got("notes", "id"),
        want(&agg(
            "(SELECT * FROM notes WHERE order_ref IN (SELECT id FROM k_orders)) n",
            "id"
        ))
    );
    assert_eq!(
        got("visits", "id"),
        want(&agg(
            "(SELECT * FROM visits WHERE customer IN (SELECT id FROM k_customers)) v",
            "id"
        ))
    );
    // Tables outside the key graph keep every row; products are referenced only by items.
    assert_eq!(
        got("products", "name"),
        ids(c, "subset_src", &agg("products", "name"))
    );
    assert_eq!(
        got("settings", "k"),
        "1|".to_string() + &ids(c, "subset_src", "SELECT md5('a')")
    );
    assert!(got("orders", "id").starts_with("500|"));
}

#[test]
fn subset_dependents_bring_the_rows_that_reference_the_seeds() {
    let c = cluster();
    c.create_db("subdep_src", SHOP);
    let archive = extract(
        "subdep_src",
        &["--subset", "orders:id <= 100", "--subset-dependents"],
    );
    let _ = c.psql("postgres", "DROP DATABASE IF EXISTS subdep_dst");
    ok(weir(
        "weir-load",
        &["-q", "--create", "subdep_dst"],
        &archive,
    ));
    let q = |db: &str, sql: &str| ids(c, db, sql);
    // Every item of the seeds, and only the products they reference (NULL halves reference
    // nothing, as MATCH SIMPLE says).
    assert_eq!(
        q("subdep_dst", "SELECT count(*) FROM items"),
        q(
            "subdep_src",
            "SELECT count(*) FROM items WHERE order_id <= 100"
        )
    );
    assert_eq!(
        q("subdep_dst", "SELECT count(*) FROM products"),
        q(
            "subdep_src",
            "SELECT count(*) FROM products p WHERE EXISTS (SELECT 1 FROM items i \
                          WHERE i.order_id <= 100 AND i.pa = p.a AND i.pb = p.b)"
        )
    );
    // Customers were reached upward: their other orders stay out.
    assert_eq!(q("subdep_dst", "SELECT count(*) FROM orders"), "100");
}

#[test]
fn subset_mistakes_stop_before_any_output() {
    let c = cluster();
    c.create_db("subbad_src", SHOP);
    for (args, want) in [
        (
            vec!["--subset", "ordrs:id = 1"],
            "no table with rows in the extraction matches \"ordrs\"",
        ),
        (
            vec!["--subset", "orders:idd = 1"],
            "--subset: column \"idd\" does not exist",
        ),
        (vec!["--subset", "orders"], "expected TABLE:CONDITION"),
        (
            vec![
                "--subset",
                "orders:id = 1",
                "--virtual-fk",
                "notes(order_ref)->orders",
            ],
            "expected CHILD(COLUMNS)->PARENT(COLUMNS)",
        ),
        (
            vec![
                "--subset",
                "orders:id = 1",
                "--virtual-fk",
                "notes(oref)->orders(id)",
            ],
            "table public.notes has no column \"oref\"",
        ),
        (
            vec!["--subset", "orders:id = 1", "--where", "customers:id > 5"],
            "--where on public.customers",
        ),
        (vec!["--subset-dependents"], "need --subset"),
    ] {
        let mut a = args.clone();
        a.push("subbad_src");
        let o = weir("weir-extract", &a, b"");
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}: output written");
    }
}
