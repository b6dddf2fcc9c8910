//! Connections as libpq users expect: passwords from the environment and ~/.pgpass, services,
//! TLS modes against a server with a self-signed CA, and clear errors.

use crate::harness::*;

fn tcp_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let c = cluster();
    let mut v = vec![
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", c.port.to_string()),
        ("PGUSER", "weir".to_string()),
    ];
    v.extend(extra.iter().cloned());
    v
}

fn extract_with(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    weir_env("weir-extract", args, b"", &e)
}

fn setup() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        cluster().create_db(
            "conn_src",
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);",
        );
    });
}

#[test]
fn password_from_environment_and_wrong_password() {
    setup();
    let o = extract_with(
        &tcp_env(&[("PGPASSWORD", PASSWORD.into())]),
        &["-q", "conn_src"],
    );
    ok(o);
    let o = extract_with(
        &tcp_env(&[("PGPASSWORD", "wrong".into())]),
        &["-q", "conn_src"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("password authentication failed for user \"weir\""),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password must not be echoed: {err}"
    );
}

#[test]
fn pgpass_needs_mode_0600_and_service_files_work() {
    use std::os::unix::fs::PermissionsExt;
    setup();
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pgpass");
    std::fs::write(&pass, format!("127.0.0.1:{}:*:weir:{PASSWORD}\n", c.port)).unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let svc = dir.path().join("services.conf");
    std::fs::write(
        &svc,
        format!(
            "[backup]\nhost=127.0.0.1\nport={}\nuser=weir\ndbname=conn_src\n",
            c.port
        ),
    )
    .unwrap();
    let env = vec![
        ("PGPASSFILE", pass.display().to_string()),
        ("PGSERVICEFILE", svc.display().to_string()),
        ("PGSERVICE", "backup".to_string()),
        ("PGHOST", String::new()),
        ("PGPORT", String::new()),
        ("PGUSER", String::new()),
    ];
    ok(extract_with(&env, &["-q"]));
    // The same file readable by others is ignored, with libpq's warning.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = extract_with(&env, &["-q"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has group or world access"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tls_modes_against_a_self_signed_ca() {
    setup();
    let c = cluster();
    let ca = c.ca_cert.display().to_string();
    let wrong_ca = tempfile::NamedTempFile::new().unwrap();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout /dev/null -out {} 2>/dev/null",
            wrong_ca.path().display()
        ))
        .status()
        .unwrap();
    let base = |mode: &str, host: &str| {
        format!(
            "host={host} port={} user=weir dbname=conn_src sslmode={mode}",
            c.port
        )
    };
    let pw = [("PGPASSWORD", PASSWORD.to_string())];
    for (conninfo, root, good) in [
        (base("require", "127.0.0.1"), None, true),
        (base("verify-ca", "127.0.0.1"), Some(ca.clone()), true),
        (base("verify-full", "localhost"), Some(ca.clone()), true),
        (base("verify-full", "127.0.0.1"), Some(ca.clone()), true),
        (
            base("verify-ca", "127.0.0.1"),
            Some(wrong_ca.path().display().to_string()),
            false,
        ),
        (base("verify-full", "127.0.0.1"), None, false),
        (base("disable", "127.0.0.1"), None, true),
    ] {
        let mut env = pw.to_vec();
        if let Some(r) = &root {
            env.push(("PGSSLROOTCERT", r.clone()));
        }
        let o = extract_with(&env, &["-q", &conninfo]);
        assert_eq!(
            o.status.success(),
            good,
            "{conninfo} root={root:?}: {}",
            stderr(&o)
        );
        if good {
            // pg_dump got the same connection, or the schema part would be missing.
            let v = weir("weir-inspect", &["--verify"], &o.stdout);
            assert!(v.status.success(), "{}", stderr(&v));
        }
    }
    // (The wrong-CA case failing is what proves a TLS handshake with verification happened.)
}

#[test]
fn unreachable_host_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = extract_with(
        &[("PGCONNECT_TIMEOUT", "3".into())],
        &["-q", &format!("postgres://weir@127.0.0.1:{port}/x")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("weir-extract: cannot connect to weir@127.0.0.1:"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
