//! The Docker image, as users run it: backup.sh and restore.sh inside the container built from
//! the Dockerfile (by scripts/test.sh, with podman), against a PostgreSQL instance and the
//! S3-compatible server on this machine. Where no image could be built, the test says why
//! (WEIR_TEST_IMAGE_SKIPPED, set by scripts/test.sh) and does nothing else.

use crate::harness::{Cluster, PASSWORD, as_owner, bin, free_port, scrub, sh, stderr, tool};
use crate::objstore::{ACCESS_KEY, SECRET_KEY, shared};
use std::process::{Command, Output, Stdio};

/// The image to test, or None (with the reason printed) when there is none.
fn image() -> Option<String> {
    match std::env::var("WEIR_TEST_IMAGE") {
        Ok(tag) if !tag.is_empty() => Some(tag),
        _ => {
            let why = std::env::var("WEIR_TEST_IMAGE_SKIPPED").unwrap_or_else(|_| {
                "WEIR_TEST_IMAGE is not set (scripts/test.sh builds the image and sets it)".into()
            });
            eprintln!("SKIPPED image tests: {why}");
            None
        }
    }
}

/// `podman run` of the image with the host's network; settings go in as `-e NAME` with the
/// value in podman's own environment, so no secret is on an argv.
fn podman(image: &str, env: &[(&str, &str)], cmd: &[&str]) -> Output {
    podman_with(image, &[], env, cmd)
}

/// [`podman`] with more options for `podman run` (volumes).
fn podman_with(image: &str, opts: &[&str], env: &[(&str, &str)], cmd: &[&str]) -> Output {
    let mut c = Command::new("podman");
    c.args(["run", "--rm", "--network=host"]).args(opts);
    for (k, v) in env {
        c.args(["-e", k]).env(k, v);
    }
    c.arg(image).args(cmd).stdin(Stdio::null());
    c.output().expect("podman")
}

/// What both jobs are given: the instance over TCP with a password, as a container reaches
/// its database server, and the bucket on the S3-compatible server.
fn job_env(src: &Cluster, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POSTGRES_HOST", "127.0.0.1".into()),
        ("POSTGRES_PORT", src.port.to_string()),
        ("POSTGRES_USER", "weir".into()),
        ("POSTGRES_PASSWORD", PASSWORD.into()),
        ("S3_ENDPOINT", shared().endpoint()),
        ("S3_BUCKET", bucket.into()),
        ("S3_PREFIX", "nightly".into()),
        ("S3_REGION", "us-east-1".into()),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
    ]
}

#[test]
fn backup_and_restore_inside_the_image() {
    let Some(image) = image() else { return };
    let src = Cluster::start("image-src");
    src.create_db(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2));
         INSERT INTO items SELECT g, 'item ' || g, g * 0.25 FROM generate_series(1, 5000) g;
         CREATE INDEX ON items (name);",
    );
    let bucket = shared().bucket("image");
    let owned = job_env(&src, &bucket);
    let mut common: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common.push(("PASSPHRASE", "a passphrase in the container"));

    // The image's default command is backup.sh.
    let mut env = common.to_vec();
    env.push(("POSTGRES_DATABASE", "shop"));
    let out = podman(&image, &env, &[]);
    assert!(
        out.status.success(),
        "backup.sh in the image: {}",
        stderr(&out)
    );

    // On the host, the catalog lists it, encrypted and compressed as configured.
    let mut ls = Command::new(bin("weir-ls"));
    ls.args(["--catalog", "--json", &format!("s3://{bucket}/nightly/")]);
    let ls = scrub(&mut ls, &shared().env()).output().unwrap();
    assert!(ls.status.success(), "{}", stderr(&ls));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["database"], "shop");
    assert_eq!(entries[0]["archive"]["rows"], 5000);
    assert_eq!(entries[0]["encryption"], "age-passphrase");

    // restore.sh from the same image, into a new database of the same instance.
    let mut env = common.to_vec();
    env.extend([
        ("RESTORE_DATABASE", "shop"),
        ("RESTORE_TARGET_DATABASE", "shop_from_image"),
        ("RESTORE_CREATE", "1"),
    ]);
    let out = podman(&image, &env, &["restore.sh"]);
    assert!(
        out.status.success(),
        "restore.sh in the image: {}",
        stderr(&out)
    );
    assert_eq!(src.content("shop"), src.content("shop_from_image"));
    assert_eq!(src.schema_dump("shop"), src.schema_dump("shop_from_image"));

    // What the image ships besides: every binary, stripped, with its completions and man page.
    let check = "for b in /usr/local/bin/weir-*; do n=${b##*/}; \
                 for c in bash-completion/completions/$n zsh/vendor-completions/_$n fish/vendor_completions.d/$n.fish; do \
                   test -f /usr/share/$c || { echo no completion $c; exit 1; }; done; \
                 test -f /usr/local/share/man/man1/$n.1 || { echo no man page for $n; exit 1; }; \
                 \"$b\" --version >/dev/null || exit 1; done; ls /usr/local/bin | grep -c '^weir-'";
    let out = podman(&image, &[], &["bash", "-c", check]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(count, weir::cli::PAGES.len());
}

/// The physical job from the image: the server (on the host, the user's side) archives through
/// weir-wal to S3; backup.sh BACKUP_MODE=physical in the container takes a base backup over a
/// TCP replication connection; restore.sh RESTORE_MODE=physical in the container unpacks it
/// into a mounted directory (RESTORE_START=0, with the server's own RESTORE_COMMAND), and the
/// server started there on the host recovers to the source's content.
#[test]
fn the_physical_job_inside_the_image() {
    let Some(image) = image() else { return };
    let src = Cluster::start_with(
        "image-phys",
        "wal_level = replica\narchive_mode = on\narchive_command = 'sh archive.sh %p'\nmax_wal_senders = 4",
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(src.data().join("pg_hba.conf"))
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, b"host replication all 127.0.0.1/32 scram-sha-256\n")
        })
        .unwrap();
    src.psql("postgres", "SELECT pg_reload_conf()");
    let bucket = shared().bucket("image-phys");
    let endpoint = shared().endpoint();
    let keys = src.dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("key.txt");
    assert!(
        tool("age-keygen", &["-o", key.to_str().unwrap()], b"")
            .status
            .success()
    );
    sh(&format!(
        "chmod 755 {} && chmod 644 {}",
        keys.display(),
        key.display()
    ));
    let recipient =
        String::from_utf8(tool("age-keygen", &["-y", key.to_str().unwrap()], b"").stdout)
            .unwrap()
            .trim()
            .to_string();
    // The server's side: weir-wal where its user can run it, the credentials in a file.
    let wal = crate::wal::server_copy_of(&src, "weir-wal");
    let repo = format!("s3://{bucket}/nightly/_wal");
    let creds = format!(
        "export AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_REGION=us-east-1 AWS_ENDPOINT_URL={endpoint}\n"
    );
    std::fs::write(
        src.data().join("archive.sh"),
        format!(
            "{creds}exec {} push --repo {repo} -r {recipient} \"$1\"\n",
            wal.display()
        ),
    )
    .unwrap();
    let fetch = src.dir.join("fetch.sh");
    std::fs::write(
        &fetch,
        format!(
            "{creds}exec {} fetch --repo {repo} -i {} \"$1\" \"$2\"\n",
            wal.display(),
            key.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod 755 {}", fetch.display()));
    src.create_db(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;",
    );
    let owned = job_env(&src, &bucket);
    let common: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut env = common.to_vec();
    env.extend([
        ("BACKUP_MODE", "physical"),
        ("AGE_RECIPIENTS", recipient.as_str()),
    ]);
    let out = podman(&image, &env, &[]);
    assert!(
        out.status.success(),
        "physical backup.sh in the image: {}",
        stderr(&out)
    );
    src.psql(
        "shop",
        "INSERT INTO items VALUES (5001, 'after the backup')",
    );
    let last = crate::wal::switch(&src);
    crate::wal::wait_archived(&src, &last);

    let mut ls = Command::new(bin("weir-ls"));
    ls.args([
        "--catalog",
        "--json",
        &format!("s3://{bucket}/nightly/_physical/"),
    ]);
    let ls = scrub(&mut ls, &shared().env()).output().unwrap();
    assert!(ls.status.success(), "{}", stderr(&ls));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["kind"], "physical");
    assert_eq!(entries[0]["encryption"], "age");

    // Restored by the image into a mounted directory, started by the host's server binaries.
    let target = std::env::temp_dir().join(format!(
        "weir-test-{}-image-phys-restored",
        std::process::id()
    ));
    std::fs::create_dir_all(&target).unwrap();
    sh(&format!("chmod 777 {}", target.display()));
    let restore_command = format!("sh {} %f %p", fetch.display());
    let mut env = common.to_vec();
    env.extend([
        ("RESTORE_MODE", "physical"),
        ("RESTORE_PGDATA", "/restore/data"),
        ("RESTORE_START", "0"),
        ("RESTORE_COMMAND", restore_command.as_str()),
        ("AGE_IDENTITY_FILE", "/keys/key.txt"),
    ]);
    let volumes = [
        "-v".to_string(),
        format!("{}:/restore", target.display()),
        "-v".to_string(),
        format!("{}:/keys:ro", keys.display()),
    ];
    let volumes: Vec<&str> = volumes.iter().map(String::as_str).collect();
    let out = podman_with(&image, &volumes, &env, &["restore.sh"]);
    assert!(
        out.status.success(),
        "physical restore.sh in the image: {}",
        stderr(&out)
    );
    sh(&format!(
        "chown -R postgres {0} 2>/dev/null || true; chmod 700 {0}/data",
        target.display()
    ));
    let restored = Cluster {
        dir: target.clone(),
        port: free_port(),
        bindir: src.bindir.clone(),
        ca_cert: src.ca_cert.clone(),
    };
    let opts = format!(
        "-p {} -k {} -c listen_addresses='' -c archive_mode=off",
        restored.port,
        target.display()
    );
    let log = target.join("log");
    let start = as_owner(
        &src.bindir.join("pg_ctl"),
        &[
            "-D",
            restored.data().to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ],
    );
    assert!(
        start.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // No target: recovery replays the whole archive, then the server opens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while restored
        .psql("postgres", "SELECT pg_is_in_recovery()")
        .trim()
        != "f"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(src.content("shop"), restored.content("shop"));
    restored.kill();
    let _ = std::fs::remove_dir_all(&target);
}
