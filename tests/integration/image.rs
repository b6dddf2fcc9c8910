//! The Docker image, as users run it: backup.sh and restore.sh inside the container built from
//! the Dockerfile (by scripts/test.sh, with podman), against a PostgreSQL instance and the
//! S3-compatible server on this machine. Where no image could be built, the test says why
//! (WEIR_TEST_IMAGE_SKIPPED, set by scripts/test.sh) and does nothing else.

use crate::harness::{Cluster, PASSWORD, bin, scrub, stderr};
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
            eprintln!("SKIPPED image::backup_and_restore_inside_the_image: {why}");
            None
        }
    }
}

/// `podman run` of the image with the host's network; settings go in as `-e NAME` with the
/// value in podman's own environment, so no secret is on an argv.
fn podman(image: &str, env: &[(&str, &str)], cmd: &[&str]) -> Output {
    let mut c = Command::new("podman");
    c.args(["run", "--rm", "--network=host"]);
    for (k, v) in env {
        c.args(["-e", k]).env(k, v);
    }
    c.arg(image).args(cmd).stdin(Stdio::null());
    c.output().expect("podman")
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
    let port = src.port.to_string();
    let endpoint = shared().endpoint();
    let common = [
        ("POSTGRES_HOST", "127.0.0.1"),
        ("POSTGRES_PORT", port.as_str()),
        // Over TCP with a password, as a container reaches its database server.
        ("POSTGRES_USER", "weir"),
        ("POSTGRES_PASSWORD", PASSWORD),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_BUCKET", bucket.as_str()),
        ("S3_PREFIX", "nightly"),
        ("S3_REGION", "us-east-1"),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY),
        ("PASSPHRASE", "a passphrase in the container"),
    ];

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
