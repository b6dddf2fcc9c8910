//! Test harness: one real PostgreSQL cluster for the whole test binary (initdb and pg_ctl in a
//! temporary directory, run as the `postgres` user when we are root, since initdb refuses
//! root), with TLS from a throwaway CA, password authentication on TCP and trust on the
//! socket; and helpers that run the real weir binaries with a scrubbed environment.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bindir: PathBuf,
    pub ca_cert: PathBuf,
}

/// The password of the `weir` role, which must log in over TCP with a password.
pub const PASSWORD: &str = "s3cret-pw";

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary as the cluster's owner.
pub fn as_owner(bin: &Path, args: &[&str]) -> Output {
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin)
            .args(args)
            .output()
    } else {
        Command::new(bin).args(args).output()
    };
    out.unwrap_or_else(|e| panic!("running {}: {e}", bin.display()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared cluster; `wal_level = logical`, so that the CDC tests can decode from it too.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| start_configured("main", "wal_level = logical"))
}

impl Cluster {
    /// Another instance of our own, for tests that need a whole instance (every database of
    /// it backed up) or a second one to restore into, or that kill the server. It is stopped
    /// when the test process ends, or earlier with [`Cluster::kill`].
    pub fn start(name: &str) -> Cluster {
        start_cluster(name)
    }

    /// Like [`Cluster::start`], with `conf` appended to postgresql.conf before the server
    /// starts (archive settings) and replication connections allowed over the socket.
    pub fn start_with(name: &str, conf: &str) -> Cluster {
        start_configured(name, conf)
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server the hard way, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        let out = as_owner(
            &self.bindir.join("pg_ctl"),
            &[
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn start_cluster(name: &str) -> Cluster {
    start_configured(name, "")
}

fn start_configured(name: &str, conf: &str) -> Cluster {
    let bindir = PathBuf::from(
        String::from_utf8(
            Command::new("pg_config")
                .arg("--bindir")
                .output()
                .expect("pg_config (install postgresql)")
                .stdout,
        )
        .unwrap()
        .trim(),
    );
    let base = std::env::temp_dir().join(format!("weir-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    sh(&format!(
        "chmod 755 {0} && (chown postgres {0} 2>/dev/null || true)",
        base.display()
    ));
    let data = base.join("data");
    let out = as_owner(
        &bindir.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TLS: a throwaway CA and a server certificate for localhost and 127.0.0.1.
    let ca_key = base.join("ca.key");
    let ca_cert = base.join("ca.crt");
    let srv_key = data.join("server.key");
    let srv_csr = base.join("server.csr");
    let srv_cert = data.join("server.crt");
    let ext = base.join("san.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=weir-test-ca -keyout {ca_key} -out {ca_cert} 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout {srv_key} -out {srv_csr} 2>/dev/null && \
         openssl x509 -req -in {srv_csr} -CA {ca_cert} -CAkey {ca_key} -CAcreateserial -days 2 -extfile {ext} -out {srv_cert} 2>/dev/null && \
         chmod 600 {srv_key} && (chown postgres {srv_key} {srv_cert} 2>/dev/null || true)",
        ca_key = ca_key.display(),
        ca_cert = ca_cert.display(),
        srv_key = srv_key.display(),
        srv_csr = srv_csr.display(),
        srv_cert = srv_cert.display(),
        ext = ext.display(),
    ));
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
    )
    .unwrap();
    if !conf.is_empty() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{conf}").unwrap();
    }
    let port = free_port();
    // Command-line settings win over postgresql.conf: full_page_writes stays off only where
    // `conf` does not set it (a base backup from a standby needs it on).
    let fpw = match conf.contains("full_page_writes") {
        true => "",
        false => " -c full_page_writes=off",
    };
    // Every CDC test keeps a replication origin, and each origin with progress takes one of
    // max_replication_slots' states (PostgreSQL's origin.c), 10 by default. A synchronous
    // standby is named that never connects: a session that sets synchronous_commit to `on`
    // commits, then waits for it until canceled before its end is visible (a test holds a
    // transaction there); `local` flushes without waiting.
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c fsync=off -c synchronous_commit=off{fpw} -c max_connections=60 -c max_wal_size=1GB -c max_replication_slots=40 -c synchronous_standby_names=weir_test_never_connects",
        base.display()
    );
    let out = as_owner(
        &bindir.join("pg_ctl"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            base.join("log").to_str().unwrap(),
            "-w",
            "start",
        ],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {} {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(base.join("log")).unwrap_or_default()
    );
    // Stop the server when this test process ends (statics are never dropped).
    let stopper = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runas} {pgctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {base}",
        pid = std::process::id(),
        runas = if is_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        pgctl = bindir.join("pg_ctl").display(),
        data = data.display(),
        base = base.display()
    );
    // The watcher outlives this process on purpose, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(stopper)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Cluster {
        dir: base,
        port,
        bindir,
        ca_cert,
    };
    c.psql(
        "postgres",
        &format!(
            "CREATE ROLE weir LOGIN SUPERUSER PASSWORD '{PASSWORD}'; CREATE ROLE app_owner NOLOGIN;"
        ),
    );
    c
}

pub fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "command failed: {cmd}");
}

impl Cluster {
    /// The environment every tool gets: the socket directory, our port, the superuser.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.dir.display().to_string()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
            ("HOME".into(), self.dir.display().to_string()),
        ]
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db]);
        let out = run_with_input(scrub(&mut cmd, &self.env()), sql.as_bytes());
        assert!(
            out.status.success(),
            "psql {db}: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates a fresh database and runs `sql` in it.
    pub fn create_db(&self, db: &str, sql: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE); CREATE DATABASE \"{db}\""),
        );
        if !sql.is_empty() {
            self.psql(db, sql);
        }
    }

    pub fn db_exists(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        )
        .trim()
            == "1"
    }

    /// The schema as `pg_dump --schema-only` prints it, without the per-run \restrict key.
    pub fn schema_dump(&self, db: &str) -> String {
        let mut cmd = Command::new(self.bindir.join("pg_dump"));
        cmd.args(["--schema-only", "-d", db]);
        let out = scrub(&mut cmd, &self.env()).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything a user would compare after a restore: per-table content digests (tables
    /// and populated materialized views), sequence states and large objects.
    pub fn content(&self, db: &str) -> BTreeMap<String, String> {
        let rels = self.psql(
            db,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND c.relispopulated AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1",
        );
        let mut m = BTreeMap::new();
        for r in rels.lines().filter(|l| !l.is_empty()) {
            let d = self.psql(
                db,
                &format!("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM ONLY {r} x"),
            );
            m.insert(format!("table {r}"), d.trim().to_string());
        }
        let seqs = self.psql(
            db,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' ORDER BY 1",
        );
        for s in seqs.lines().filter(|l| !l.is_empty()) {
            let v = self.psql(
                db,
                &format!("SELECT last_value || ',' || is_called FROM {s}"),
            );
            m.insert(format!("sequence {s}"), v.trim().to_string());
        }
        let los = self.psql(
            db,
            "SELECT oid || ':' || lomowner::regrole || ':' || md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
        );
        m.insert("large objects".into(), los.trim().to_string());
        m
    }
}

/// Clears every variable that could point a tool elsewhere, then sets `env`.
pub fn scrub<'a>(cmd: &'a mut Command, env: &[(String, String)]) -> &'a mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") || k.starts_with("AWS_") || k.starts_with("WEIR_") {
            cmd.env_remove(k);
        }
    }
    // No weir-dedup chunk cache under the user's ~/.cache: a test that wants one names it.
    cmd.env("WEIR_CACHE_DIR", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

/// A weir binary, built by cargo for this test run: every binary lands in the same directory,
/// so one `CARGO_BIN_EXE_` path finds them all (`weir::cli::PAGES` names them).
pub fn bin(name: &str) -> PathBuf {
    assert!(
        weir::cli::PAGES.iter().any(|p| p.name() == name),
        "unknown binary {name}"
    );
    PathBuf::from(env!("CARGO_BIN_EXE_weir-extract")).with_file_name(name)
}

/// Runs a command (a reference tool such as zstd or age) with `input` on stdin.
pub fn tool(cmd: &str, args: &[&str], input: &[u8]) -> Output {
    run_with_input(Command::new(cmd).args(args), input)
}

/// Runs a weir stage that needs no database, with a scrubbed environment plus `env`.
pub fn stage(name: &str, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    run_with_input(scrub(&mut cmd, &env), input)
}

/// Runs a weir binary against the cluster with `input` on stdin.
pub fn weir(name: &str, args: &[&str], input: &[u8]) -> Output {
    weir_env(name, args, input, &[])
}

pub fn weir_env(name: &str, args: &[&str], input: &[u8], extra: &[(&str, &str)]) -> Output {
    let c = cluster();
    let mut env = c.env();
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    run_with_input(scrub(&mut cmd, &env), input)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> Vec<u8> {
    run_ok(o, "command")
}

/// Asserts success of `what` and returns stdout.
pub fn run_ok(o: Output, what: &str) -> Vec<u8> {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}",
        o.status,
        stderr(&o)
    );
    o.stdout
}

/// Starts `cmd` (environment already set), reads a few bytes of its output, closes the pipe,
/// and returns how the command ended: a data stage must then fail, never exit 0.
pub fn with_output_closed_early(cmd: &mut Command, stdin: Stdio) -> Output {
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 10];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    drop(out);
    child.wait_with_output().unwrap()
}

/// Extracts `db` with extra arguments and returns the archive bytes.
pub fn extract(db: &str, args: &[&str]) -> Vec<u8> {
    let mut a = vec!["-q"];
    a.extend_from_slice(args);
    a.push(db);
    ok(weir("weir-extract", &a, b""))
}

/// One entry of an archive, as `tar` reads it.
pub fn tar_entry(archive: &[u8], name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.weir"), archive).unwrap();
    let out = std::process::Command::new("tar")
        .args(["-xOf", "a.weir", name])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Does `data` hold the bytes of `s` anywhere (as `strings` or `grep -c` would find them)?
pub fn holds(data: &[u8], s: &str) -> bool {
    data.windows(s.len()).any(|w| w == s.as_bytes())
}

/// Polls `cond` every 50 ms until it holds; fails the test naming `what` after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A weir binary run against `target` (its socket, port and user), with `input` on stdin.
pub fn run_on(target: &Cluster, name: &str, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    run_with_input(scrub(&mut cmd, &target.env()), input)
}

/// A client of `db` on the cluster `env` describes: for writer threads, which cannot share
/// the harness's psql calls.
pub fn connect_with(env: &[(String, String)], db: &str) -> postgres::Client {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    postgres::Config::new()
        .host(&get("PGHOST"))
        .port(get("PGPORT").parse().unwrap())
        .user("postgres")
        .dbname(db)
        .connect(postgres::NoTls)
        .unwrap()
}

/// Numbers below `n`, seeded by the clock (each run kills at other moments): a linear
/// congruential generator (Knuth's MMIX constants), enough for picking a victim and a delay.
pub fn clock_seeded_rand() -> impl FnMut(u64) -> u64 {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

/// `weir-cdc -d DB -S SLOT ACTION` (`--create-slot`, `--drop-slot`) on `c`, which must succeed.
pub fn cdc_slot(c: &Cluster, db: &str, slot: &str, action: &str) {
    let o = run_on(c, "weir-cdc", &["-d", db, "-S", slot, action], b"");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A new age identity written to DIR/NAME: its path and its public key.
pub fn keypair(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    run_ok(
        tool("age-keygen", &["-o", key.to_str().unwrap()], b""),
        "age-keygen",
    );
    let public = run_ok(
        tool("age-keygen", &["-y", key.to_str().unwrap()], b""),
        "age-keygen -y",
    );
    (
        key.display().to_string(),
        String::from_utf8(public).unwrap().trim().to_string(),
    )
}

/// The `n`th fenced `sh` block of a document of the project, counting from 1: the recipes the
/// tests run as written.
pub fn guide_block(doc: &str, n: usize) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap();
    let block = text.split("```sh\n").nth(n).unwrap();
    block.split("\n```").next().unwrap().to_string()
}
