//! scripts/backup.sh, scripts/restore.sh, weir-ls --catalog, weir-prune and weir-schedule,
//! as a cron job or a container runs them: whole instances of our own (so "every database"
//! means only ours), the shared S3-compatible server, and a second instance to restore into.

use crate::harness::{Cluster, bin, cluster, scrub, stderr};
use crate::objstore::{ACCESS_KEY, SECRET_KEY, shared};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// The environment of a script run: the instance, the weir binaries, PATH for psql and
/// pg_dumpall, and nothing of the host's PG*, AWS_*, WEIR_* or backup settings.
fn script_env(c: &Cluster, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let bindir = bin("weir-extract").parent().unwrap().display().to_string();
    let path = format!(
        "{}:{}",
        c.bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("WEIR_BIN_DIR".into(), bindir),
        ("POSTGRES_HOST".into(), c.dir.display().to_string()),
        ("POSTGRES_PORT".into(), c.port.to_string()),
        ("POSTGRES_USER".into(), "postgres".into()),
        ("HOME".into(), c.dir.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn command(name: &str, c: &Cluster, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script(name));
    for (k, _) in std::env::vars() {
        if k.starts_with("POSTGRES_")
            || k.starts_with("S3_")
            || k.starts_with("KEEP_")
            || k.starts_with("RESTORE_")
            || [
                "PASSPHRASE",
                "SCHEDULE",
                "BACKUP_DIR",
                "METRICS_FILE",
                "WEBHOOK_URL",
            ]
            .contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    scrub(&mut cmd, &script_env(c, extra));
    cmd
}

fn run(name: &str, c: &Cluster, extra: &[(&str, &str)]) -> Output {
    command(name, c, extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn s3_vars(bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("S3_BUCKET", bucket.to_string()),
        ("S3_PREFIX", "nightly".into()),
        ("S3_ENDPOINT", shared().endpoint()),
        ("S3_REGION", "us-east-1".into()),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// The catalog under `url`, as `weir-ls --catalog --json` prints it.
fn catalog(url: &str, env: &[(String, String)]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(bin("weir-ls"));
    cmd.args(["--catalog", "--json", url]);
    let out = scrub(&mut cmd, env).output().unwrap();
    assert!(out.status.success(), "weir-ls --catalog: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s3_env() -> Vec<(String, String)> {
    shared().env()
}

fn metric(text: &str, name: &str, db: &str) -> Option<f64> {
    let prefix = format!("{name}{{database=\"{db}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

const SHOP: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, note text);
    CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL REFERENCES customers,
                         total numeric(10,2), at timestamptz DEFAULT '2026-01-01');
    CREATE INDEX ON orders (customer);
    INSERT INTO customers SELECT g, 'c' || g || '@example.com', E'tab\\there' FROM generate_series(1, 300) g;
    INSERT INTO orders (customer, total) SELECT 1 + g % 300, g * 1.5 FROM generate_series(1, 2000) g;
    ALTER TABLE customers OWNER TO ops_owner;
    ALTER TABLE orders OWNER TO ops_owner;
    GRANT SELECT ON customers TO ops_reader;
";

#[test]
fn backup_an_instance_and_restore_it_elsewhere() {
    let src = Cluster::start("ops-src");
    let dst = cluster();
    src.psql(
        "postgres",
        "CREATE ROLE ops_owner NOLOGIN; CREATE ROLE ops_reader LOGIN PASSWORD 'reader-pw';",
    );
    src.create_db("shop", SHOP);
    src.create_db(
        "crm",
        "CREATE TABLE leads (id int, name text); INSERT INTO leads SELECT g, 'n' || g FROM generate_series(1, 50) g;",
    );
    src.create_db(
        "odd name",
        "CREATE TABLE \"T\" (x int); INSERT INTO \"T\" VALUES (1), (2), (3);",
    );
    let bucket = shared().bucket("ops-instance");
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("metrics/weir.prom");
    let metrics_s = metrics.display().to_string();
    let mut vars = s3_vars(&bucket);
    vars.push(("PASSPHRASE", "correct horse".into()));
    vars.push(("METRICS_FILE", metrics_s.clone()));
    vars.push(("KEEP_LAST", "1".into()));
    let env = pairs(&vars);

    // Two runs: retention (KEEP_LAST=1) leaves only the second run's backups.
    for round in 0..2 {
        let out = run("backup.sh", &src, &env);
        assert!(
            out.status.success(),
            "backup.sh round {round}: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(1100)); // distinct timestamps per run
    }
    let base = format!("s3://{bucket}/nightly/");
    let entries = catalog(&base, &s3_env());
    let mut dbs: Vec<String> = entries
        .iter()
        .map(|e| e["database"].as_str().unwrap().to_string())
        .collect();
    dbs.sort();
    assert_eq!(dbs, ["(globals)", "crm", "odd name", "postgres", "shop"]);
    let shop = entries.iter().find(|e| e["database"] == "shop").unwrap();
    assert_eq!(shop["archive"]["rows"], 2300);
    assert_eq!(shop["archive"]["tables"], 2);
    assert_eq!(shop["encryption"], "age-passphrase");
    assert_eq!(shop["compression"], "zstd");
    assert_eq!(shop["archive"]["masked"], false);
    assert!(shop["object"]["size"].as_u64().unwrap() > 0);
    // The listing holds exactly the cataloged backups: no leftovers, nothing from round 0.
    let mut cmd = Command::new(bin("weir-ls"));
    cmd.args(["--json", &base]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&scrub(&mut cmd, &s3_env()).output().unwrap().stdout).unwrap();
    assert_eq!(listed.len(), 10, "{listed:?}");
    // Metrics: every database succeeded, with its rows.
    let text = std::fs::read_to_string(&metrics).unwrap();
    for db in ["shop", "crm", "odd name", "postgres", "(globals)"] {
        assert_eq!(
            metric(&text, "weir_backup_success", db),
            Some(1.0),
            "{db}\n{text}"
        );
        assert!(metric(&text, "weir_backup_last_success_timestamp_seconds", db).unwrap() > 1.7e9);
    }
    assert_eq!(metric(&text, "weir_backup_rows", "shop"), Some(2300.0));
    assert_eq!(
        metric(&text, "weir_backup_failures_total", "shop"),
        Some(0.0)
    );

    // Restore shop, with the roles, into the other instance.
    let mut vars_r = vars.clone();
    vars_r.extend([
        ("RESTORE_DATABASE", "shop".to_string()),
        ("RESTORE_TARGET_DATABASE", "ops_shop_copy".to_string()),
        ("RESTORE_CREATE", "1".to_string()),
        ("RESTORE_GLOBALS", "1".to_string()),
    ]);
    dst.psql("postgres", "DROP DATABASE IF EXISTS ops_shop_copy");
    let out = run("restore.sh", dst, &pairs(&vars_r));
    assert!(out.status.success(), "restore.sh: {}", stderr(&out));
    assert_eq!(src.content("shop"), dst.content("ops_shop_copy"));
    assert_eq!(src.schema_dump("shop"), dst.schema_dump("ops_shop_copy"));
    assert_eq!(
        dst.psql(
            "ops_shop_copy",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        )
        .trim(),
        "ops_owner"
    );

    // One table only, named by its timestamp (the newest backup's).
    let stamp = shop["url"].as_str().unwrap().rsplit('-').next().unwrap();
    let stamp = stamp.split('.').next().unwrap().to_string();
    let mut vars_t = vars.clone();
    vars_t.extend([
        ("RESTORE_DATABASE", "shop".to_string()),
        ("RESTORE_TARGET_DATABASE", "ops_shop_customers".to_string()),
        ("RESTORE_CREATE", "1".to_string()),
        ("RESTORE_TABLES", "public.customers".to_string()),
    ]);
    dst.psql("postgres", "DROP DATABASE IF EXISTS ops_shop_customers");
    let mut cmd = command("restore.sh", dst, &pairs(&vars_t));
    let out = cmd.arg(&stamp).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "restore.sh {stamp}: {}", stderr(&out));
    let tables = dst.psql(
        "ops_shop_customers",
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables.trim(), "customers");
    assert_eq!(
        src.content("shop")["table public.customers"],
        dst.content("ops_shop_customers")["table public.customers"]
    );

    // A wrong passphrase fails at decryption and leaves the target as it was.
    dst.create_db(
        "ops_shop_target",
        "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);",
    );
    let mut vars_w = vars.clone();
    vars_w.retain(|(k, _)| *k != "PASSPHRASE");
    vars_w.extend([
        ("PASSPHRASE", "wrong horse".to_string()),
        ("RESTORE_DATABASE", "shop".to_string()),
        ("RESTORE_TARGET_DATABASE", "ops_shop_target".to_string()),
        ("RESTORE_CLEAN", "1".to_string()),
    ]);
    let out = run("restore.sh", dst, &pairs(&vars_w));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("FAILED at stage weir-encrypt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        dst.psql("ops_shop_target", "SELECT x FROM keep_me").trim(),
        "42"
    );
    assert_eq!(
        dst.psql(
            "ops_shop_target",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .trim(),
        "1"
    );
    // And with --create, no database appears.
    vars_w.retain(|(k, _)| *k != "RESTORE_TARGET_DATABASE" && *k != "RESTORE_CLEAN");
    vars_w.extend([
        ("RESTORE_TARGET_DATABASE", "ops_shop_never".to_string()),
        ("RESTORE_CREATE", "1".to_string()),
    ]);
    let out = run("restore.sh", dst, &pairs(&vars_w));
    assert!(!out.status.success());
    assert!(!dst.db_exists("ops_shop_never"));

    // By address alone: into the database of the same name, space and all.
    let odd = entries
        .iter()
        .find(|e| e["database"] == "odd name")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    dst.psql("postgres", "DROP DATABASE IF EXISTS \"odd name\"");
    let mut vars_a = vars.clone();
    vars_a.push(("RESTORE_CREATE", "1".to_string()));
    let mut cmd = command("restore.sh", dst, &pairs(&vars_a));
    let out = cmd.arg(&odd).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "restore.sh {odd}: {}", stderr(&out));
    assert_eq!(src.content("odd name"), dst.content("odd name"));
}

/// A one-request HTTP server: the body of the first POST it gets.
fn webhook_listener() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook?token=t0ps3cret",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        let _ =
                            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                        let _ = tx.send(text[end + 4..].to_string());
                        break;
                    }
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn a_database_killed_mid_backup_leaves_no_catalog_entry() {
    let c = Cluster::start("ops-kill");
    c.create_db(
        "victim",
        "CREATE TABLE big (id int, v text); INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let metrics = tmp.path().join("weir.prom");
    let (hook, bodies) = webhook_listener();
    // Hold a lock that makes the backup wait on the table, so the kill lands mid-backup.
    let mut locker = postgres::Client::connect(
        &format!(
            "host={} port={} user=postgres dbname=victim",
            c.dir.display(),
            c.port
        ),
        postgres::NoTls,
    )
    .unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    let dir_s = dir.display().to_string();
    let metrics_s = metrics.display().to_string();
    let child = command(
        "backup.sh",
        &c,
        &[
            ("BACKUP_DIR", &dir_s),
            ("POSTGRES_DATABASE", "victim"),
            ("METRICS_FILE", &metrics_s),
            ("WEBHOOK_URL", &hook),
        ],
    )
    .stdin(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Watched from another session: within the locker's transaction, pg_stat_activity would
    // stay the snapshot it took first.
    let mut watcher = postgres::Client::connect(
        &format!(
            "host={} port={} user=postgres dbname=postgres",
            c.dir.display(),
            c.port
        ),
        postgres::NoTls,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'victim' AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backup never reached the table"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.kill();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "backup.sh succeeded against a dead server: {err}"
    );
    assert!(
        err.contains("victim: FAILED at stage weir-extract"),
        "{err}"
    );
    // Nothing listed, nothing left behind.
    let env = vec![("HOME".to_string(), c.dir.display().to_string())];
    assert!(catalog(&dir_s, &env).is_empty());
    let files: Vec<_> = walk(&dir);
    assert!(files.is_empty(), "left behind: {files:?}");
    // The failure is in the metrics and reached the webhook.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "weir_backup_success", "victim"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "weir_backup_failures_total", "victim"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "weir_backup_last_success_timestamp_seconds",
            "victim"
        ),
        None
    );
    let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "failure");
    assert_eq!(v["database"], "victim");
    assert!(v["message"].as_str().unwrap().contains("weir-extract"));

    // The server stays down: a run over every database cannot even list them, and says so
    // the same ways, keeping what the metrics knew of the earlier run.
    let out = run(
        "backup.sh",
        &c,
        &[
            ("BACKUP_DIR", &dir_s),
            ("METRICS_FILE", &metrics_s),
            ("WEBHOOK_URL", &hook),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot list the databases"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "weir_backup_success", "(instance)"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "weir_backup_failures_total", "victim"),
        Some(1.0)
    );
    let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(body.contains("listing the databases"), "{body}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A catalog entry and its data object, as backup.sh would have written them at `time`.
fn synthetic_backup(dir: &Path, db: &str, time: chrono::DateTime<chrono::Utc>) {
    let stamp = time.format("%Y%m%dT%H%M%SZ");
    let data = dir.join(db).join(format!("{db}-{stamp}.weir.zst"));
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, b"not really zstd").unwrap();
    let entry = serde_json::json!({
        "weir_catalog": 1,
        "kind": "database",
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "time_unix": time.timestamp(),
        "duration_seconds": 1.5,
        "compression": "zstd",
        "encryption": "none",
        "object": {"url": data.display().to_string(), "size": 15},
        "archive": {
            "archive_id": "x", "format_version": 1, "weir_version": "0.1.0", "database": db,
            "server_version": "17", "created": "", "created_unix": time.timestamp(),
            "tables": 1, "rows": 10, "bytes": 100, "blobs": 0, "globals": false, "masked": false
        }
    });
    std::fs::write(
        format!("{}.catalog.json", data.display()),
        serde_json::to_vec(&entry).unwrap(),
    )
    .unwrap();
}

#[test]
fn prune_two_years_of_backups() {
    use chrono::{Duration as D, TimeZone, Utc};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One backup a day at 03:00 for two years, for "app"; three old ones for "legacy".
    let first = Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap();
    for day in 0..730 {
        synthetic_backup(dir, "app", first + D::days(day));
    }
    for day in [0, 10, 20] {
        synthetic_backup(dir, "legacy", first + D::days(day));
    }
    // A failed run's leftover (old), one that may still be finishing (new), a broken entry,
    // and a file that is not ours.
    std::fs::write(
        dir.join("app/app-20250505T030000Z.weir.zst.age"),
        b"partial",
    )
    .unwrap();
    crate::harness::sh(&format!(
        "touch -d '2 days ago' {}",
        dir.join("app/app-20250505T030000Z.weir.zst.age").display()
    ));
    std::fs::write(dir.join("app/app-20270101T000000Z.weir.zst"), b"in flight").unwrap();
    std::fs::write(dir.join("app/README.txt"), b"keep me").unwrap();
    std::fs::write(dir.join("app/schema.sql"), b"keep me too").unwrap();
    crate::harness::sh(&format!(
        "touch -d '2 days ago' {}",
        dir.join("app/schema.sql").display()
    ));
    std::fs::write(dir.join("legacy/bad.weir.catalog.json"), b"{not json").unwrap();
    std::fs::write(dir.join("legacy/bad.weir"), b"?").unwrap();
    let url = dir.display().to_string();
    let prune = |args: &[&str]| {
        let mut cmd = Command::new(bin("weir-prune"));
        cmd.args(args).arg(&url);
        scrub(&mut cmd, &[]).output().unwrap()
    };
    let before = walk(dir).len();
    // A catalog's backups are whole objects: --repack is for weir-dedup repositories.
    let repack = prune(&["--keep-daily", "7", "--repack", "-i", "key.txt"]);
    assert_eq!(repack.status.code(), Some(2), "{}", stderr(&repack));
    assert!(
        stderr(&repack).contains("--repack is for a weir-dedup repository"),
        "{}",
        stderr(&repack)
    );
    assert_eq!(
        walk(dir).len(),
        before,
        "a refused --repack removed something"
    );
    let policy = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "5",
        "--now",
        "2027-01-01T00:00:00Z",
    ];
    let mut dry = vec!["--dry-run"];
    dry.extend(policy);
    let out = prune(&dry);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(walk(dir).len(), before, "a dry run removed something");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains("would remove  2025-06-15T03:00:00Z  app"),
        "{text}"
    );
    assert!(
        text.contains("keep          2026-12-27T03:00:00Z  app"),
        "{text}"
    );
    assert!(
        text.contains("(daily 2026-12-27, weekly 2026-W52)"),
        "{text}"
    );
    assert!(text.contains("leftover of a failed run"), "{text}");
    assert!(stderr(&out).contains("bad.weir.catalog.json: not a weir catalog entry"));

    let out = prune(&policy);
    assert!(out.status.success(), "{}", stderr(&out));
    let env: Vec<(String, String)> = vec![];
    let kept: Vec<String> = catalog(&url, &env)
        .iter()
        .filter(|e| e["database"] == "app")
        .map(|e| e["time"].as_str().unwrap()[..10].to_string())
        .collect();
    assert_eq!(
        kept,
        [
            "2025-12-31",
            "2026-01-31",
            "2026-02-28",
            "2026-03-31",
            "2026-04-30",
            "2026-05-31",
            "2026-06-30",
            "2026-07-31",
            "2026-08-31",
            "2026-09-30",
            "2026-10-31",
            "2026-11-30",
            "2026-12-13",
            "2026-12-20",
            "2026-12-25",
            "2026-12-26",
            "2026-12-27",
            "2026-12-28",
            "2026-12-29",
            "2026-12-30",
            "2026-12-31",
        ]
    );
    // Removed with its data; leftovers by age; foreign and broken files untouched.
    assert!(!dir.join("app/app-20250615T030000Z.weir.zst").exists());
    assert!(
        !dir.join("app/app-20250615T030000Z.weir.zst.catalog.json")
            .exists()
    );
    assert!(!dir.join("app/app-20250505T030000Z.weir.zst.age").exists());
    assert!(dir.join("app/app-20270101T000000Z.weir.zst").exists());
    assert!(dir.join("app/README.txt").exists());
    assert!(dir.join("app/schema.sql").exists());
    assert!(dir.join("legacy/bad.weir.catalog.json").exists());
    // All three legacy backups fall on distinct days, months of 2025: kept by the same policy.
    assert_eq!(
        catalog(&url, &env)
            .iter()
            .filter(|e| e["database"] == "legacy")
            .count(),
        3
    );

    // A policy that keeps nothing old still keeps each database's newest backup.
    let out = prune(&["--keep-within", "30d", "--now", "2027-06-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<String> = catalog(&url, &env)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["database"].as_str().unwrap(),
                &e["time"].as_str().unwrap()[..10]
            )
        })
        .collect();
    assert_eq!(left, ["legacy 2025-01-21", "app 2026-12-31"]);

    // No rule at all is refused, not taken as "remove everything".
    let out = prune(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no keep rule given"));
}

#[test]
fn scheduled_backups_go_on_after_a_failed_run() {
    let c = Cluster::start("ops-schedule");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let dir_s = dir.display().to_string();
    let metrics = tmp.path().join("weir.prom");
    let metrics_s = metrics.display().to_string();
    // Every two seconds; the database does not exist yet, so the first runs fail.
    let mut child = command(
        "backup.sh",
        &c,
        &[
            ("BACKUP_DIR", &dir_s),
            ("POSTGRES_DATABASE", "later"),
            ("SCHEDULE", "*/2 * * * * *"),
            ("METRICS_FILE", &metrics_s),
        ],
    )
    .stdin(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().unwrap();
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&metrics)
        .map(|t| metric(&t, "weir_backup_failures_total", "later").is_some())
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "no failed run recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.create_db("later", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);");
    let env = vec![("HOME".to_string(), c.dir.display().to_string())];
    while catalog(&dir_s, &env).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no backup after the database appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The scheduler logs each run's end; wait for a success before stopping it.
    while !log.lock().unwrap().contains("succeeded") {
        assert!(Instant::now() < deadline, "no run succeeded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM stops the scheduler (and whatever run is going).
    crate::harness::sh(&format!("kill -TERM {}", child.id()));
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(!status.success());
    let err = log.lock().unwrap().clone();
    assert!(err.contains("FAILED (exit status 1)"), "{err}");
    assert!(err.contains("the schedule goes on"), "{err}");
    assert!(err.contains("succeeded"), "{err}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(metric(&text, "weir_backup_failures_total", "later").unwrap() >= 1.0);
    assert_eq!(metric(&text, "weir_backup_success", "later"), Some(1.0));
}

#[test]
fn masked_backups_to_age_recipients_restore_masked() {
    let c = cluster();
    c.create_db(
        "ops_people",
        "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL);
         INSERT INTO people SELECT g, 'person' || g || '@corp.example' FROM generate_series(1, 100) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    let recipient = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let rules = tmp.path().join("mask.toml");
    std::fs::write(
        &rules,
        "[tables.\"public.people\"]\ncolumns.email = \"email\"\n",
    )
    .unwrap();
    let dir = tmp.path().join("backups").display().to_string();
    let (rules_s, key_s) = (rules.display().to_string(), key.display().to_string());
    let env = [
        ("BACKUP_DIR", dir.as_str()),
        ("POSTGRES_DATABASE", "ops_people"),
        ("AGE_RECIPIENTS", recipient.trim()),
        ("MASK_RULES", rules_s.as_str()),
        ("MASK_KEY", "ops-mask-key"),
    ];
    let out = run("backup.sh", c, &env);
    assert!(out.status.success(), "backup.sh: {}", stderr(&out));
    let entries = catalog(&dir, &[]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["encryption"], "age");
    assert_eq!(entries[0]["archive"]["masked"], true);
    assert_eq!(entries[0]["archive"]["mask"]["deterministic"], true);
    assert!(
        entries[0]["url"]
            .as_str()
            .unwrap()
            .ends_with(".weir.zst.age")
    );

    // Without the identity, no restore; with it, the masked rows.
    c.psql("postgres", "DROP DATABASE IF EXISTS ops_people_copy");
    let mut renv = env.to_vec();
    renv.extend([
        ("RESTORE_TARGET_DATABASE", "ops_people_copy"),
        ("RESTORE_CREATE", "1"),
    ]);
    let out = run("restore.sh", c, &renv);
    assert!(!out.status.success());
    assert!(!c.db_exists("ops_people_copy"));
    renv.push(("AGE_IDENTITY_FILE", key_s.as_str()));
    let out = run("restore.sh", c, &renv);
    assert!(out.status.success(), "restore.sh: {}", stderr(&out));
    let left = c.psql(
        "ops_people_copy",
        "SELECT count(*) FROM people WHERE email LIKE '%@corp.example'",
    );
    assert_eq!(left.trim(), "0", "original e-mails survived the masking");
    // The roles of a masked run come without their password verifiers (issue 13, item 3).
    let plain = tmp.path().join("plain").display().to_string();
    let genv = [
        ("BACKUP_DIR", plain.as_str()),
        ("POSTGRES_DATABASE", "ops_people"),
        ("BACKUP_GLOBALS", "1"),
        ("COMPRESSION", "none"),
        ("MASK_RULES", rules_s.as_str()),
        ("MASK_KEY", "ops-mask-key"),
    ];
    let out = run("backup.sh", c, &genv);
    assert!(out.status.success(), "backup.sh: {}", stderr(&out));
    let g = catalog(&plain, &[]);
    let g = g.iter().find(|e| e["database"] == "(globals)").unwrap();
    let sql = std::fs::read_to_string(g["url"].as_str().unwrap()).unwrap();
    assert!(sql.contains("CREATE ROLE weir;"), "{sql}");
    assert!(!sql.contains("SCRAM-SHA-256$"), "{sql}");
    assert_eq!(
        c.psql("ops_people_copy", "SELECT count(*) FROM people")
            .trim(),
        "100"
    );
}

#[test]
fn a_name_already_taken_fails_the_backup_and_keeps_the_other() {
    let c = cluster();
    c.create_db(
        "ops_taken",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    // Another run's backups hold the names of the next seconds (as when two runs start in the
    // same second): this run's weir-put must fail with exit 5 and leave them alone.
    let now = chrono::Utc::now();
    std::fs::create_dir_all(dir.join("ops_taken")).unwrap();
    for s in 0..30 {
        let stamp = (now + chrono::Duration::seconds(s)).format("%Y%m%dT%H%M%SZ");
        std::fs::write(
            dir.join(format!("ops_taken/ops_taken-{stamp}.weir.zst")),
            b"another run's",
        )
        .unwrap();
    }
    let dir_s = dir.display().to_string();
    let out = run(
        "backup.sh",
        c,
        &[("BACKUP_DIR", &dir_s), ("POSTGRES_DATABASE", "ops_taken")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("FAILED at stage weir-put (exit 5)"),
        "{}",
        stderr(&out)
    );
    let files = walk(&dir);
    assert_eq!(files.len(), 30, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| std::fs::read(f).unwrap() == b"another run's")
    );
}

/// WAL segment `n` of timeline 1, log 0, as weir-wal names it.
fn segment(n: u32) -> String {
    format!("00000001{:08X}{n:08X}", 0)
}

/// A file of a directory WAL repository with its digest beside it, as weir-wal push leaves it.
fn synthetic_wal(repo: &Path, dir: &str, name: &str) {
    let d = repo.join("wal").join(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), name.as_bytes()).unwrap();
    std::fs::write(d.join(format!("{name}.sha256")), "00\n").unwrap();
}

/// A base backup's entry and data object, as backup.sh's physical job would have written them
/// at `time`, for a backup whose WAL runs from segment `start` to `start + 1`.
fn synthetic_base_backup(dir: &Path, time: chrono::DateTime<chrono::Utc>, start: u32) {
    let stamp = time.format("%Y%m%dT%H%M%SZ");
    let data = dir.join(format!("base-{stamp}.tar.zst"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&data, b"not really a base backup").unwrap();
    let at = time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let entry = serde_json::json!({
        "weir_catalog": 2,
        "kind": "physical",
        "time": at,
        "time_unix": time.timestamp(),
        "duration_seconds": 60.0,
        "compression": "zstd",
        "encryption": "none",
        "object": {"url": data.display().to_string(), "size": 24},
        "physical": {
            "label": format!("weir {stamp}"), "system_identifier": "7300000000000000001",
            "major": 15, "timeline": 1,
            "start_lsn": format!("0/{start:X}000028"), "stop_lsn": format!("0/{:X}000100", start + 1),
            "start_wal": segment(start), "stop_wal": segment(start + 1),
            "started": at, "finished": at, "files": 1000, "bytes": 1 << 30
        }
    });
    std::fs::write(
        format!("{}.catalog.json", data.display()),
        serde_json::to_vec(&entry).unwrap(),
    )
    .unwrap();
}

#[test]
fn prune_base_backups_and_their_wal_over_synthetic_dates() {
    use chrono::{Duration as D, TimeZone, Utc};
    let tmp = tempfile::tempdir().unwrap();
    let catalog_dir = tmp.path().join("_physical");
    let repo = tmp.path().join("_wal");
    // Forty daily base backups from 2026-10-01, four segments apart, and the archive they need:
    // segments 1 to 170, a .backup file at each start, and a timeline history file.
    let first = Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap();
    for day in 0..40u32 {
        synthetic_base_backup(&catalog_dir, first + D::days(day.into()), 4 * day + 2);
        synthetic_wal(
            &repo,
            "0000000100000000",
            &format!("{}.00000028.backup", segment(4 * day + 2)),
        );
    }
    for n in 1..=170 {
        synthetic_wal(&repo, "0000000100000000", &segment(n));
    }
    synthetic_wal(&repo, "history", "00000002.history");
    let prune = |args: &[&str], catalog: &Path| {
        let mut cmd = Command::new(bin("weir-prune"));
        cmd.args(args).arg("--wal-repo").arg(&repo).arg(catalog);
        scrub(&mut cmd, &[]).output().unwrap()
    };
    let names = || -> Vec<String> {
        walk(&repo.join("wal"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };

    // No base backup at all: not a single WAL file goes, and the dry run says why.
    let empty = tmp.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let out = prune(&["--keep-last", "1"], &empty);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("no complete base backup: every WAL file kept"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let before = names().len();
    assert_eq!(before, 2 * (40 + 170 + 1));

    let policy = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--now",
        "2026-11-10T00:00:00Z",
    ];
    let mut dry = vec!["--dry-run"];
    dry.extend(policy);
    let out = prune(&dry, &catalog_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names().len(), before, "a dry run removed WAL");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!(
            "would remove  {}  121 WAL files before {}",
            repo.display(),
            segment(98)
        )),
        "{text}"
    );
    assert!(text.contains("(weekly 2026-W43)"), "{text}");

    let out = prune(&policy, &catalog_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept: Vec<String> = catalog(&catalog_dir.display().to_string(), &[])
        .iter()
        .map(|e| e["time"].as_str().unwrap()[..10].to_string())
        .collect();
    // The newest of each of the last 7 days, and of the 4 last ISO weeks (Monday 2026-11-09
    // opens W46; W45 ends on Sunday the 8th, W44 on 1 November, W43 on 25 October).
    assert_eq!(
        kept,
        [
            "2026-10-25",
            "2026-11-01",
            "2026-11-03",
            "2026-11-04",
            "2026-11-05",
            "2026-11-06",
            "2026-11-07",
            "2026-11-08",
            "2026-11-09"
        ]
    );
    // WAL from the oldest kept backup's start (day 24: segment 98) on, with every digest; the
    // history file whatever its age; nothing older.
    let mut left = names();
    left.sort();
    let mut want: Vec<String> = (98..=170).map(segment).collect();
    want.extend((24..40).map(|d| format!("{}.00000028.backup", segment(4 * d + 2))));
    want.push("00000002.history".into());
    let digests: Vec<String> = want.iter().map(|n| format!("{n}.sha256")).collect();
    want.extend(digests);
    want.sort();
    assert_eq!(left, want);
    assert!(!catalog_dir.join("base-20261024T030000Z.tar.zst").exists());
    assert!(catalog_dir.join("base-20261025T030000Z.tar.zst").exists());
}

/// Issue 30: POSTGRES_DATABASE is split on commas only, so a database name with a space, a
/// slash and letters beyond ASCII goes through backup.sh and restore.sh whole.
#[test]
fn database_names_with_spaces_slashes_and_accents_back_up_and_restore() {
    let c = cluster();
    let odd = "my app/ü ñ";
    c.create_db(odd, "CREATE TABLE t (x int, s text); INSERT INTO t SELECT g, 'ß' || g FROM generate_series(1, 50) g;");
    c.create_db(
        "ops plain",
        "CREATE TABLE u (y int); INSERT INTO u VALUES (7);",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups").display().to_string();
    let list = format!(" {odd} ,ops plain");
    let env = [
        ("BACKUP_DIR", dir.as_str()),
        ("POSTGRES_DATABASE", list.as_str()),
    ];
    let out = run("backup.sh", c, &env);
    assert!(out.status.success(), "backup.sh: {}", stderr(&out));
    let entries = catalog(&dir, &[]);
    let mut names: Vec<&str> = entries
        .iter()
        .map(|e| e["database"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["my app/ü ñ", "ops plain"], "{entries:?}");

    let copy = "my app/ü ñ (copy)";
    c.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{copy}\""));
    let renv = [
        ("BACKUP_DIR", dir.as_str()),
        ("RESTORE_DATABASE", odd),
        ("RESTORE_TARGET_DATABASE", copy),
        ("RESTORE_CREATE", "1"),
    ];
    let out = run("restore.sh", c, &renv);
    assert!(out.status.success(), "restore.sh: {}", stderr(&out));
    assert_eq!(c.content(odd), c.content(copy));
}

/// backup.sh with DEDUP=1: each database and the globals pushed into one deduplicated
/// repository; a second run of an unchanged database adds almost nothing (the metric says how
/// much); retention thins the repository; weir-ls --catalog lists it; restore.sh brings the
/// database back from it.
#[test]
fn dedup_runs_store_what_did_not_change_once_and_restore() {
    let c = cluster();
    c.create_db(
        "ops_dedup",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 30000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (key_s, recipient) = crate::harness::keypair(tmp.path(), "key.txt");
    let dir = tmp.path().join("backups").display().to_string();
    let metrics = tmp.path().join("metrics.prom").display().to_string();
    let env = [
        ("BACKUP_DIR", dir.as_str()),
        ("POSTGRES_DATABASE", "ops_dedup"),
        ("BACKUP_GLOBALS", "1"),
        ("DEDUP", "1"),
        ("DEDUP_KEY", "the repository key of the ops test"),
        ("AGE_RECIPIENTS", recipient.as_str()),
        ("METRICS_FILE", metrics.as_str()),
        ("KEEP_LAST", "1"),
        ("DEDUP_REPACK", "1"),
    ];
    // Rewriting packs reads them: without the identity, the run is refused before it starts.
    let refused = run("backup.sh", c, &env);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("DEDUP_REPACK=1 needs AGE_IDENTITY_FILE"),
        "{}",
        stderr(&refused)
    );
    let env = [&env[..], &[("AGE_IDENTITY_FILE", key_s.as_str())]].concat();
    for run_no in 0..2 {
        let out = run("backup.sh", c, &env);
        assert!(
            out.status.success(),
            "backup.sh run {run_no}: {}",
            stderr(&out)
        );
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    let size = metric(&text, "weir_backup_bytes", "ops_dedup").unwrap();
    let added = metric(&text, "weir_backup_bytes_added", "ops_dedup").unwrap();
    assert!(size > 1e6 && added * 100.0 < size, "{text}");
    assert_eq!(
        metric(&text, "weir_backup_rows", "ops_dedup"),
        Some(30000.0)
    );
    let repo = format!("{dir}/_dedup");
    let listed = catalog(&repo, &[]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let db = listed
        .iter()
        .find(|e| e["database"] == "ops_dedup")
        .unwrap();
    assert_eq!(db["rows"], 30000);
    assert!(listed.iter().any(|e| e["name"] == "_globals"));

    c.psql("postgres", "DROP DATABASE IF EXISTS ops_dedup_copy");
    let mut renv = env.to_vec();
    renv.extend([
        ("RESTORE_DATABASE", "ops_dedup"),
        ("RESTORE_TARGET_DATABASE", "ops_dedup_copy"),
        ("RESTORE_CREATE", "1"),
        ("AGE_IDENTITY_FILE", key_s.as_str()),
    ]);
    let out = run("restore.sh", c, &renv);
    assert!(out.status.success(), "restore.sh: {}", stderr(&out));
    assert_eq!(c.content("ops_dedup"), c.content("ops_dedup_copy"));

    // A repository sealed by PASSPHRASE instead, backed up and restored with it alone.
    let dir = tmp.path().join("sealed").display().to_string();
    let pass = [
        ("BACKUP_DIR", dir.as_str()),
        ("POSTGRES_DATABASE", "ops_dedup"),
        ("DEDUP", "1"),
        ("DEDUP_KEY", "the repository key of the ops test"),
        ("PASSPHRASE", "the passphrase of the ops test"),
        ("KEEP_LAST", "1"),
        ("DEDUP_REPACK", "1"),
    ];
    for _ in 0..2 {
        let out = run("backup.sh", c, &pass);
        assert!(out.status.success(), "backup.sh: {}", stderr(&out));
    }
    c.psql("postgres", "DROP DATABASE IF EXISTS ops_dedup_pass");
    let mut renv = pass.to_vec();
    renv.extend([
        ("RESTORE_DATABASE", "ops_dedup"),
        ("RESTORE_TARGET_DATABASE", "ops_dedup_pass"),
        ("RESTORE_CREATE", "1"),
    ]);
    let out = run("restore.sh", c, &renv);
    assert!(out.status.success(), "restore.sh: {}", stderr(&out));
    assert_eq!(c.content("ops_dedup"), c.content("ops_dedup_pass"));
}
