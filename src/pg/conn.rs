//! Resolving a PostgreSQL connection the way libpq does, because the `postgres` crate reads none
//! of libpq's conventions: a URI or `key=value` conninfo, then the service file, then the `PG*`
//! environment variables, then the password file, then compiled-in defaults. The resolved
//! parameters open our own connections (with TLS as `sslmode` asks) and are handed, through the
//! environment and never through argv, to `pg_dump`, `pg_dumpall` and `pg_restore`.
//!
//! Reference: PostgreSQL documentation, libpq sections 34.1.1 (connection strings), 34.1.2
//! (parameter keywords), 34.15 (environment variables), 34.16 (password file), 34.17 (service
//! file) and 34.19 (SSL support).

use anyhow::{Context, Result, anyhow, bail};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres::config::SslMode;
use postgres_openssl::MakeTlsConnector;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The libpq keywords weir understands, each with the environment variable that supplies it.
const ENV_KEYS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("dbname", "PGDATABASE"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("options", "PGOPTIONS"),
    ("service", "PGSERVICE"),
];

/// A fully resolved set of libpq parameters (keyword to value).
#[derive(Clone, Debug, Default)]
pub struct ConnParams {
    params: BTreeMap<String, String>,
}

impl ConnParams {
    /// Resolves `conninfo` (a URI, `key=value` pairs, a bare database name, or nothing) with the
    /// process environment, as `psql` would.
    pub fn resolve(conninfo: Option<&str>, application_name: &str) -> Result<ConnParams> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::resolve_with(conninfo, application_name, &env)
    }

    /// [`ConnParams::resolve`] with an explicit environment, for tests.
    pub fn resolve_with(
        conninfo: Option<&str>,
        application_name: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<ConnParams> {
        let mut params = match conninfo {
            None => BTreeMap::new(),
            Some(s) => parse_conninfo(s)?,
        };
        // The service file fills what the conninfo left unset, before the environment does.
        let service = params
            .get("service")
            .cloned()
            .or_else(|| env.get("PGSERVICE").cloned());
        if let Some(name) = service {
            for (k, v) in read_service(&name, env)? {
                params.entry(k).or_insert(v);
            }
        }
        for (key, var) in ENV_KEYS {
            if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
                params.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
        let user = match params.get("user") {
            Some(u) => u.clone(),
            None => os_user(env),
        };
        params.entry("user".into()).or_insert(user.clone());
        params.entry("dbname".into()).or_insert(user);
        params.entry("port".into()).or_insert_with(|| "5432".into());
        if !params.contains_key("host") {
            let host = default_host(params_port(&params));
            params.insert("host".into(), host);
        }
        params
            .entry("sslmode".into())
            .or_insert_with(|| "prefer".into());
        params
            .entry("application_name".into())
            .or_insert_with(|| application_name.into());
        let mut cp = ConnParams { params };
        if !cp.params.contains_key("password") {
            if let Some(pw) = cp.password_from_file(env)? {
                cp.params.insert("password".into(), pw);
            }
        }
        Ok(cp)
    }

    /// Every resolved parameter, keyword and value (the password among them: for libpq only).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Returns a copy that connects to another database on the same server.
    pub fn with_dbname(&self, dbname: &str) -> ConnParams {
        let mut c = self.clone();
        c.params.insert("dbname".into(), dbname.into());
        c
    }

    pub fn dbname(&self) -> &str {
        self.get("dbname").unwrap_or("")
    }

    /// A short description for messages: `user@host:port/dbname`, never the password.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.get("user").unwrap_or(""),
            self.get("host").unwrap_or(""),
            self.get("port").unwrap_or(""),
            self.dbname()
        )
    }

    /// Opens a connection, with TLS as `sslmode` says.
    pub fn connect(&self) -> Result<postgres::Client> {
        let (cfg, tls) = self.config()?;
        postgres::Config::from(cfg)
            .connect(tls)
            .map_err(|e| self.connect_error(&e))
    }

    /// Opens an asynchronous connection on the current tokio runtime and spawns its driver
    /// task there. For hot loops (COPY OUT) that would otherwise enter a runtime per row.
    pub async fn connect_async(&self) -> Result<tokio_postgres::Client> {
        let (cfg, tls) = self.config()?;
        let (client, conn) = cfg.connect(tls).await.map_err(|e| self.connect_error(&e))?;
        tokio::spawn(conn);
        Ok(client)
    }

    fn connect_error(&self, e: &postgres::Error) -> anyhow::Error {
        anyhow!(
            "cannot connect to {}: {}",
            self.describe(),
            connect_error_text(e)
        )
    }

    /// The driver configuration and TLS connector for these parameters.
    fn config(&self) -> Result<(tokio_postgres::Config, MakeTlsConnector)> {
        let mut cfg = tokio_postgres::Config::new();
        let hosts: Vec<&str> = self.get("host").unwrap_or("").split(',').collect();
        for h in &hosts {
            if h.starts_with('/') || h.starts_with('@') {
                cfg.host_path(h);
            } else {
                cfg.host(*h);
            }
        }
        for p in params_port(&self.params).split(',') {
            cfg.port(
                p.trim()
                    .parse()
                    .map_err(|_| anyhow!("invalid port {p:?} in connection parameters"))?,
            );
        }
        if let Some(a) = self.get("hostaddr") {
            cfg.hostaddr(
                a.parse()
                    .map_err(|_| anyhow!("invalid hostaddr {a:?} in connection parameters"))?,
            );
        }
        cfg.user(self.get("user").unwrap_or(""));
        cfg.dbname(self.dbname());
        if let Some(pw) = self.get("password") {
            cfg.password(pw);
        }
        if let Some(o) = self.get("options") {
            cfg.options(o);
        }
        if let Some(a) = self.get("application_name") {
            cfg.application_name(a);
        }
        if let Some(t) = self.get("connect_timeout") {
            let secs: u64 = t
                .parse()
                .map_err(|_| anyhow!("invalid connect_timeout {t:?}"))?;
            if secs > 0 {
                // libpq treats values below 2 seconds as 2.
                cfg.connect_timeout(Duration::from_secs(secs.max(2)));
            }
        }
        let mode = self.get("sslmode").unwrap_or("prefer");
        cfg.ssl_mode(match mode {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            other => bail!(
                "invalid sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
            ),
        });
        Ok((cfg, self.tls_connector(mode)?))
    }

    fn tls_connector(&self, mode: &str) -> Result<MakeTlsConnector> {
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        let home_root = home_dir().map(|h| h.join(".postgresql/root.crt"));
        let root = match self.get("sslrootcert") {
            Some(r) => Some(PathBuf::from(r)),
            None => home_root.filter(|p| p.exists()),
        };
        // libpq: with sslmode=require, a root certificate that exists makes it verify the chain
        // as verify-ca does, for compatibility with servers set up before verify-ca existed.
        let verify_chain = match mode {
            "verify-ca" | "verify-full" => true,
            "require" => root.as_ref().is_some_and(|r| r.exists()),
            _ => false,
        };
        if verify_chain {
            match &root {
                Some(r) if r.as_os_str() == "system" => {}
                Some(r) => b.set_ca_file(r).with_context(|| {
                    format!("cannot read root certificate file {}", r.display())
                })?,
                None => bail!(
                    "sslmode={mode} needs a root certificate: set sslrootcert or PGSSLROOTCERT, or create ~/.postgresql/root.crt"
                ),
            }
            b.set_verify(SslVerifyMode::PEER);
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        if let Some(cert) = self.get("sslcert") {
            b.set_certificate_chain_file(cert)
                .with_context(|| format!("cannot read client certificate {cert}"))?;
            let key = self
                .get("sslkey")
                .ok_or_else(|| anyhow!("sslcert is set but sslkey is not"))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .with_context(|| format!("cannot read client key {key}"))?;
        }
        let mut connector = MakeTlsConnector::new(b.build());
        let full = mode == "verify-full";
        connector.set_callback(move |cfg, _domain| {
            cfg.set_verify_hostname(full);
            Ok(())
        });
        Ok(connector)
    }

    /// Environment for `pg_dump`, `pg_dumpall` and `pg_restore`: every resolved parameter as its
    /// `PG*` variable, so the child connects exactly as we did and the password stays off argv.
    pub fn child_env(&self) -> Vec<(String, String)> {
        ENV_KEYS
            .iter()
            .filter(|(k, _)| *k != "service" && *k != "passfile")
            .filter_map(|(k, var)| self.get(k).map(|v| (var.to_string(), v.to_string())))
            .collect()
    }

    /// Variables a child must not inherit, since they could re-point it elsewhere.
    pub fn child_env_remove() -> &'static [&'static str] {
        &["PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR"]
    }

    /// A conninfo string naming only the database, for tools that need `-d`. Everything else
    /// (host, user, password, TLS) reaches them through [`ConnParams::child_env`].
    pub fn dbname_conninfo(&self) -> String {
        format!("dbname={}", quote_conninfo_value(self.dbname()))
    }

    /// Applies the resolved parameters to a child command.
    pub fn apply_to(&self, cmd: &mut std::process::Command) {
        for v in Self::child_env_remove() {
            cmd.env_remove(v);
        }
        for (k, v) in self.child_env() {
            cmd.env(k, v);
        }
        if self.get("hostaddr").is_some() {
            cmd.env("PGHOSTADDR", self.get("hostaddr").unwrap());
        }
    }

    /// Looks the password up in `PGPASSFILE` or `~/.pgpass`. As libpq does, a file readable by
    /// group or others is ignored with a warning rather than trusted.
    fn password_from_file(&self, env: &BTreeMap<String, String>) -> Result<Option<String>> {
        let path = match self.get("passfile").map(PathBuf::from) {
            Some(p) => p,
            None => match env.get("PGPASSFILE") {
                Some(p) => PathBuf::from(p),
                None => match home_dir_from(env) {
                    Some(h) => h.join(".pgpass"),
                    None => return Ok(None),
                },
            },
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(None);
        };
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "{}: warning: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
                crate::plumbing::program(),
                path.display()
            );
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read password file {}", path.display()))?;
        let host = self.get("host").unwrap_or("");
        // A Unix-socket connection matches `localhost` entries (libpq, section 34.16).
        let host = if host.starts_with('/') {
            "localhost"
        } else {
            host
        };
        let want = [
            host,
            params_port(&self.params),
            self.dbname(),
            self.get("user").unwrap_or(""),
        ];
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields = split_pgpass(line);
            if fields.len() < 5 {
                continue;
            }
            if fields[..4]
                .iter()
                .zip(want.iter())
                .all(|(f, w)| f == "*" || f == w)
            {
                return Ok(Some(fields[4].clone()));
            }
        }
        Ok(None)
    }
}

fn params_port(p: &BTreeMap<String, String>) -> &str {
    p.get("port").map(String::as_str).unwrap_or("5432")
}

/// libpq's default host: the Unix socket directory if a server socket is there, else localhost.
/// Debian's libpq is built with /var/run/postgresql; upstream's default is /tmp.
fn default_host(port: &str) -> String {
    for dir in ["/var/run/postgresql", "/tmp"] {
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            return dir.into();
        }
    }
    "localhost".into()
}

fn os_user(env: &BTreeMap<String, String>) -> String {
    if let Some(u) = env.get("USER").or_else(|| env.get("LOGNAME")) {
        return u.clone();
    }
    // Fallback: the effective uid's name from /etc/passwd.
    let uid = effective_uid();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| "postgres".into())
}

fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn home_dir_from(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("HOME").map(PathBuf::from)
}

/// Splits a `.pgpass` line on unescaped colons; `\:` and `\\` are escapes.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Reads service `name` from `PGSERVICEFILE` or `~/.pg_service.conf`, then from
/// `PGSYSCONFDIR/pg_service.conf` (Debian's default directory is /etc/postgresql-common).
fn read_service(name: &str, env: &BTreeMap<String, String>) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    match env.get("PGSERVICEFILE") {
        Some(f) => files.push(PathBuf::from(f)),
        None => {
            if let Some(h) = home_dir_from(env) {
                files.push(h.join(".pg_service.conf"));
            }
        }
    }
    let sysconf = env
        .get("PGSYSCONFDIR")
        .cloned()
        .unwrap_or_else(|| "/etc/postgresql-common".into());
    files.push(Path::new(&sysconf).join("pg_service.conf"));
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut in_section = false;
        let mut found = false;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_section = sec == name;
                found |= in_section;
                continue;
            }
            if in_section {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    anyhow!(
                        "syntax error in service file {}, line {}",
                        f.display(),
                        i + 1
                    )
                })?;
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if found {
            return Ok(out);
        }
    }
    bail!("definition of service \"{name}\" not found")
}

/// Parses a conninfo: a `postgres://` or `postgresql://` URI, `key=value` pairs, or (as psql
/// accepts) a bare database name.
pub fn parse_conninfo(s: &str) -> Result<BTreeMap<String, String>> {
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        parse_uri(s)
    } else if s.contains('=') {
        parse_keyword_value(s)
    } else {
        Ok(BTreeMap::from([("dbname".to_string(), s.to_string())]))
    }
}

fn parse_keyword_value(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            bail!("invalid connection string: missing \"=\" after \"{key}\"");
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut val = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => {
                        bail!("invalid connection string: unterminated quoted value for \"{key}\"")
                    }
                    Some('\\') => {
                        if let Some(c) = it.next() {
                            val.push(c)
                        }
                    }
                    Some('\'') => break,
                    Some(c) => val.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    if let Some(n) = it.next() {
                        val.push(n);
                    }
                } else {
                    val.push(c);
                }
            }
        }
        check_keyword(&key)?;
        out.insert(key, val);
    }
    Ok(out)
}

fn check_keyword(key: &str) -> Result<()> {
    const OTHER: &[&str] = &[
        "sslcompression",
        "sslcrl",
        "gssencmode",
        "krbsrvname",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "client_encoding",
        "fallback_application_name",
        "requiressl",
        "sslsni",
        "channel_binding",
        "load_balance_hosts",
    ];
    if ENV_KEYS.iter().any(|(k, _)| *k == key) || OTHER.contains(&key) {
        Ok(())
    } else {
        bail!("invalid connection option \"{key}\"")
    }
}

fn parse_uri(s: &str) -> Result<BTreeMap<String, String>> {
    let rest = s.split_once("://").map(|x| x.1).unwrap_or("");
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let mut out = BTreeMap::new();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !u.is_empty() {
                out.insert("user".into(), percent_decode(u)?);
            }
            if let Some(p) = p {
                out.insert("password".into(), percent_decode(p)?);
            }
            hp
        }
        None => authority,
    };
    if !hostport.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for hp in hostport.split(',') {
            let (h, p) = if let Some(r) = hp.strip_prefix('[') {
                let (h, after) = r
                    .split_once(']')
                    .ok_or_else(|| anyhow!("invalid URI: unterminated IPv6 host in {s:?}"))?;
                (h.to_string(), after.strip_prefix(':').map(str::to_string))
            } else {
                match hp.rsplit_once(':') {
                    Some((h, p)) => (percent_decode(h)?, Some(p.to_string())),
                    None => (percent_decode(hp)?, None),
                }
            };
            hosts.push(h);
            ports.push(p.unwrap_or_default());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            out.insert("host".into(), hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.insert("port".into(), ports.join(","));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.insert("dbname".into(), percent_decode(db)?);
    }
    if let Some(q) = query {
        for kv in q.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid URI query parameter {kv:?}"))?;
            let k = percent_decode(k)?;
            check_keyword(&k)?;
            out.insert(k, percent_decode(v)?);
        }
    }
    Ok(out)
}

/// Decodes `%XX` escapes of a URI component (also used for `file://` addresses).
pub(crate) fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| anyhow!("invalid percent-encoded token in URI: {s:?}"))?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| anyhow!("invalid percent-encoded token in URI: {s:?}"))?,
            );
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("URI component is not UTF-8: {s:?}"))
}

/// Quotes a value for a `key=value` conninfo string.
pub fn quote_conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A readable cause for a failed connection: the server's message if it sent one, else the
/// transport error (refused, timed out, TLS).
fn connect_error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn uri_forms() {
        let p =
            parse_conninfo("postgres://app:p%40ss@db.example:6432/prod?sslmode=require").unwrap();
        assert_eq!(p["user"], "app");
        assert_eq!(p["password"], "p@ss");
        assert_eq!(p["host"], "db.example");
        assert_eq!(p["port"], "6432");
        assert_eq!(p["dbname"], "prod");
        assert_eq!(p["sslmode"], "require");
        let p = parse_conninfo("postgres:///copy").unwrap();
        assert_eq!(p["dbname"], "copy");
        assert!(!p.contains_key("host"));
        let p = parse_conninfo("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(p["host"], "/var/run/postgresql");
        let p = parse_conninfo("postgresql://[::1]:5433/db").unwrap();
        assert_eq!(p["host"], "::1");
        assert_eq!(p["port"], "5433");
        assert!(parse_conninfo("postgres://h/db?bogus=1").is_err());
    }

    #[test]
    fn keyword_value_forms() {
        let p = parse_conninfo("host=/tmp  port = 5433 dbname='my \\'db' user=a\\ b").unwrap();
        assert_eq!(p["host"], "/tmp");
        assert_eq!(p["port"], "5433");
        assert_eq!(p["dbname"], "my 'db");
        assert_eq!(p["user"], "a b");
        assert!(parse_conninfo("host").is_ok()); // a bare word is a database name
        assert!(parse_conninfo("host=").is_ok());
        assert!(parse_conninfo("dbname='x").is_err());
        assert!(parse_conninfo("nosuch=1").is_err());
    }

    #[test]
    fn precedence_conninfo_then_service_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let svc = dir.path().join("svc.conf");
        std::fs::write(&svc, "[main]\nhost=svchost\nport=7000\ndbname=svcdb\n").unwrap();
        let e = env(&[
            ("PGSERVICEFILE", svc.to_str().unwrap()),
            ("PGSERVICE", "main"),
            ("PGPORT", "9999"),
            ("PGUSER", "envuser"),
            ("HOME", dir.path().to_str().unwrap()),
        ]);
        let p = ConnParams::resolve_with(Some("dbname=given"), "t", &e).unwrap();
        assert_eq!(p.get("dbname"), Some("given"));
        assert_eq!(p.get("host"), Some("svchost"));
        assert_eq!(p.get("port"), Some("7000"));
        assert_eq!(p.get("user"), Some("envuser"));
        let e2 = env(&[
            ("PGSERVICEFILE", svc.to_str().unwrap()),
            ("PGSERVICE", "nope"),
        ]);
        assert!(ConnParams::resolve_with(None, "t", &e2).is_err());
    }

    #[test]
    fn pgpass_lookup_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pgpass");
        std::fs::write(
            &pass,
            "# comment\nother:*:*:*:nope\nlocalhost:5433:*:app:se\\:cret\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = env(&[("PGPASSFILE", pass.to_str().unwrap())]);
        let p =
            ConnParams::resolve_with(Some("host=/some/sock port=5433 user=app"), "t", &e).unwrap();
        assert_eq!(p.get("password"), Some("se:cret"));
        let p = ConnParams::resolve_with(Some("host=h port=1 user=x"), "t", &e).unwrap();
        assert_eq!(p.get("password"), Some("fallback"));
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = ConnParams::resolve_with(Some("host=h port=1 user=x"), "t", &e).unwrap();
        assert_eq!(p.get("password"), None);
    }

    #[test]
    fn child_env_carries_everything_but_argv_gets_only_dbname() {
        let e = env(&[]);
        let p = ConnParams::resolve_with(
            Some("host=h port=1 user=u password=secret dbname=d sslmode=require"),
            "t",
            &e,
        )
        .unwrap();
        let ce = p.child_env();
        assert!(ce.contains(&("PGPASSWORD".into(), "secret".into())));
        assert!(ce.contains(&("PGSSLMODE".into(), "require".into())));
        assert!(!p.dbname_conninfo().contains("secret"));
    }
}
