//! `weir-put`, `weir-get`, `weir-ls` and `weir-rm`: streams to and from object storage.
//!
//! Two backends behind one address syntax: `s3://bucket/key` for S3 and S3-compatible services
//! ([`s3`]), and `file:///path` or a plain path for a local directory ([`local`]). Both give the
//! same guarantees: an object becomes visible only complete (multipart upload completed, or a
//! temporary file renamed), a reader sees a missing object as its own exit code, and any error
//! or signal leaves nothing half-written behind.

pub mod local;
pub mod parts;
pub mod repo;
pub mod s3;

use crate::plumbing::{ExitCode, coded, human_bytes, rfc3339};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::SystemTime;

/// Where an object (or a prefix of objects) lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    Local(PathBuf),
}

impl Location {
    /// Parses `s3://bucket/key`, `file:///path` or a plain path.
    pub fn parse(url: &str) -> Result<Location> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(coded(
                    ExitCode::Usage,
                    format!("{url}: no bucket name (expected s3://BUCKET/KEY)"),
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            // file:///p and file://localhost/p are local; another host is not ours to reach.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(coded(
                    ExitCode::Usage,
                    format!("{url}: a file URL needs an absolute path (file:///PATH)"),
                ));
            }
            return Ok(Location::Local(PathBuf::from(
                crate::pg::conn::percent_decode(path)?,
            )));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(coded(
                ExitCode::Usage,
                format!("{url}: unsupported scheme {scheme}:// (use s3://, file:// or a path)"),
            ));
        }
        if url.is_empty() {
            return Err(coded(ExitCode::Usage, "empty address"));
        }
        Ok(Location::Local(PathBuf::from(url)))
    }

    /// The address as the user would write it, for messages.
    pub fn display(&self) -> String {
        match self {
            Location::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Location::Local(p) => p.display().to_string(),
        }
    }

    /// Put, get and a non-recursive rm need one object, not a bucket or a directory.
    pub fn require_key(&self) -> Result<()> {
        let bad = match self {
            Location::S3 { key, .. } => key.is_empty() || key.ends_with('/'),
            Location::Local(p) => p.as_os_str().to_string_lossy().ends_with('/'),
        };
        if bad {
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "{}: names a bucket or directory, not an object",
                    self.display()
                ),
            ));
        }
        Ok(())
    }
}

/// S3 connection settings; everything unset falls back to the AWS SDK's standard chain
/// (environment, shared config and credentials files, SSO, web identity, instance roles).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Virtual-hosted-style addressing for a custom endpoint (path style is the default there).
    pub virtual_hosted: bool,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Errors carry the SDK's own detail (`-v`).
    pub verbose: bool,
}

/// Transfer settings shared by put and get.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// The whole process's memory budget (`--memory`): part buffers get all of it but
    /// [`RESERVE`], which covers the program itself (runtime, TLS, HTTP, the SDK).
    pub memory: u64,
    /// At most this many requests at once.
    pub jobs: u32,
    pub progress: bool,
    pub quiet: bool,
}

/// What the program needs besides part buffers: measured at 14-15 MiB peak RSS with the
/// buffers subtracted, in debug and release builds alike.
pub const RESERVE: u64 = 20 * parts::MIB;

/// The smallest `--memory` that keeps its promise: reserve plus two 8 MiB parts.
pub const MIN_MEMORY: u64 = RESERVE + 2 * parts::BASE_PART;

impl Transfer {
    /// Bytes of part buffers that may be in memory at once.
    pub fn buffers(&self) -> u64 {
        self.memory
            .saturating_sub(RESERVE)
            .max(2 * parts::BASE_PART)
    }
}

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    pub expected_size: Option<u64>,
    pub if_none_match: bool,
    pub metadata: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub storage_class: Option<String>,
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// `--stats FILE`: the finished object's address and size, as JSON.
    pub stats: Option<String>,
}

/// One listed object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// `weir-put`: standard input to one object.
pub fn put(
    url: &str,
    s3: &S3Settings,
    t: &Transfer,
    o: &PutOptions,
    input: Option<&str>,
) -> Result<()> {
    let reader = crate::plumbing::open_input(input)?;
    put_from(url, s3, t, o, reader)
}

/// A small object written whole, create-only (exit 5 if it exists): catalog entries.
pub fn put_bytes(url: &str, s3: &S3Settings, data: Vec<u8>) -> Result<()> {
    let t = Transfer {
        memory: MIN_MEMORY,
        jobs: 1,
        progress: false,
        quiet: true,
    };
    let o = PutOptions {
        if_none_match: true,
        ..Default::default()
    };
    put_from(url, s3, &t, &o, Box::new(std::io::Cursor::new(data)))
}

fn put_from(
    url: &str,
    s3: &S3Settings,
    t: &Transfer,
    o: &PutOptions,
    reader: Box<dyn std::io::Read + Send>,
) -> Result<()> {
    let loc = Location::parse(url)?;
    loc.require_key()?;
    let started = std::time::Instant::now();
    let n = match &loc {
        Location::S3 { bucket, key } => s3::put(s3, bucket, key, t, o, reader)?,
        Location::Local(path) => {
            if o.storage_class.is_some() || o.sse.is_some() {
                bail!("--storage-class and --sse apply to S3 only, not to {url}");
            }
            local::put(path, t, o, reader)?
        }
    };
    summary(t, "wrote", n, &loc, started);
    if let Some(path) = &o.stats {
        crate::plumbing::write_json_line(path, &serde_json::json!({ "url": url, "size": n }))?;
    }
    Ok(())
}

/// `weir-get`: one object to standard output (or `-o FILE`).
pub fn get(url: &str, s3: &S3Settings, t: &Transfer, output: Option<&str>) -> Result<()> {
    let loc = Location::parse(url)?;
    loc.require_key()?;
    let started = std::time::Instant::now();
    // With -o the bytes go to a temporary file that is renamed into place only when complete:
    // a failed download never leaves a plausible-looking partial file (a WAL restore_command
    // would otherwise find a torn segment under the name it asked for).
    let file = output.filter(|p| *p != "-");
    let tmp = file.map(|p| format!("{p}.weir-tmp.{}", std::process::id()));
    let guard = tmp.clone().map(|t| {
        crate::plumbing::signals::on_cleanup(move || {
            let _ = std::fs::remove_file(t);
        })
    });
    let result =
        crate::plumbing::Output::open(tmp.as_deref().or(output), true).and_then(|mut out| {
            let n = get_into(&loc, s3, t, &mut out)?;
            anyhow::Context::context(out.finish(), "writing the output")?;
            Ok(n)
        });
    let result = match (result, file, &tmp) {
        (Ok(n), Some(file), Some(tmp)) => std::fs::rename(tmp, file)
            .map(|_| n)
            .map_err(|e| anyhow::anyhow!("cannot rename into {file}: {e}")),
        (r, _, _) => r,
    };
    if let Some(tmp) = &tmp {
        if result.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
    }
    if let Some(g) = guard {
        crate::plumbing::signals::forget(g);
    }
    let n = result?;
    summary(t, "read", n, &loc, started);
    Ok(())
}

/// One object's bytes to `out`: what weir-get writes, for a stage that reads an object itself.
pub fn get_into(
    loc: &Location,
    s3: &S3Settings,
    t: &Transfer,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    match loc {
        Location::S3 { bucket, key } => s3::get(s3, bucket, key, t, out),
        Location::Local(path) => local::get(path, t, out),
    }
}

/// One object to read by range: a local file, or an S3 object by ranged GETs.
pub fn open_ranged(
    loc: &Location,
    s3: &S3Settings,
) -> Result<std::sync::Arc<dyn crate::stream::ranged::Ranged>> {
    Ok(match loc {
        Location::S3 { bucket, key } => {
            std::sync::Arc::new(s3::RangedObject::open(s3, bucket, key)?)
        }
        Location::Local(path) => std::sync::Arc::new(local::RangedFile::open(path)?),
    })
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LsOptions {
    pub json: bool,
    pub human: bool,
}

/// `weir-ls`: every object whose key starts with the prefix, in key order.
pub fn ls(url: &str, s3: &S3Settings, o: LsOptions) -> Result<()> {
    use std::io::Write;
    let objects = list(url, s3)?;
    let mut out = crate::plumbing::Output::open(None, false)?;
    if o.json {
        let list: Vec<serde_json::Value> = objects
            .iter()
            .map(|ob| {
                serde_json::json!({
                    "key": ob.key,
                    "size": ob.size,
                    "modified": rfc3339(ob.modified),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        for ob in &objects {
            let size = if o.human {
                human_bytes(ob.size)
            } else {
                ob.size.to_string()
            };
            writeln!(out, "{}  {size:>12}  {}", rfc3339(ob.modified), ob.key)?;
        }
    }
    out.finish()?;
    Ok(())
}

/// Every object whose address starts with `url`, in key order; each key is a full address
/// (`s3://bucket/key` or a path) that [`Location::parse`] reads back.
pub fn list(url: &str, s3: &S3Settings) -> Result<Vec<ObjectInfo>> {
    match Location::parse(url)? {
        Location::S3 { bucket, key } => s3::list(s3, &bucket, &key),
        Location::Local(path) => local::list(&path),
    }
}

/// Reads small objects whole (at most `limit` bytes each), concurrently where the backend
/// allows; one result per address, in order.
pub fn read_many(urls: &[String], s3: &S3Settings, limit: u64) -> Result<Vec<Result<Vec<u8>>>> {
    let mut out: Vec<Option<Result<Vec<u8>>>> = urls.iter().map(|_| None).collect();
    // S3 addresses are read per bucket, in one client; local ones directly.
    let mut buckets: std::collections::BTreeMap<String, Vec<(usize, String)>> = Default::default();
    for (i, url) in urls.iter().enumerate() {
        match Location::parse(url)? {
            Location::S3 { bucket, key } => buckets.entry(bucket).or_default().push((i, key)),
            Location::Local(path) => {
                out[i] = Some(match std::fs::metadata(&path) {
                    Ok(m) if m.len() > limit => {
                        Err(anyhow::anyhow!("{url}: larger than {limit} bytes"))
                    }
                    _ => {
                        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {url}: {e}"))
                    }
                });
            }
        }
    }
    for (bucket, items) in buckets {
        let keys: Vec<String> = items.iter().map(|(_, k)| k.clone()).collect();
        let results = s3::read_many(s3, &bucket, &keys, limit)?;
        for ((i, _), r) in items.into_iter().zip(results) {
            out[i] = Some(r);
        }
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every address read"))
        .collect())
}

/// Deletes the objects at `urls` (S3 in batches of 1,000 per bucket); a missing one is not an
/// error. Returns the addresses deleted.
pub fn remove_many(urls: &[String], s3: &S3Settings) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut buckets: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for url in urls {
        match Location::parse(url)? {
            Location::S3 { bucket, key } => buckets.entry(bucket).or_default().push(key),
            Location::Local(path) => removed.extend(local::remove(&path, false)?),
        }
    }
    for (bucket, keys) in buckets {
        removed.extend(s3::remove_keys(s3, &bucket, &keys)?);
    }
    Ok(removed)
}

/// `weir-rm`: one object, or with `recursive` every object under a prefix.
pub fn rm(url: &str, s3: &S3Settings, recursive: bool, force: bool, quiet: bool) -> Result<()> {
    let loc = Location::parse(url)?;
    if !recursive {
        loc.require_key()?;
    }
    let removed = match &loc {
        Location::S3 { bucket, key } => s3::remove(s3, bucket, key, recursive)?,
        Location::Local(path) => local::remove(path, recursive)?,
    };
    if removed.is_empty() && !force {
        return Err(coded(
            ExitCode::NotFound,
            format!("{}: no such object", loc.display()),
        ));
    }
    if !quiet {
        for key in &removed {
            eprintln!("removed {key}");
        }
    }
    Ok(())
}

fn summary(t: &Transfer, verb: &str, n: u64, loc: &Location, started: std::time::Instant) {
    if t.quiet || !(t.progress || std::io::IsTerminal::is_terminal(&std::io::stderr())) {
        return;
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    eprintln!(
        "{}: {verb} {} ({n} bytes) {} in {secs:.1} s, {}/s",
        crate::plumbing::program(),
        human_bytes(n),
        if verb == "wrote" {
            format!("to {}", loc.display())
        } else {
            format!("from {}", loc.display())
        },
        human_bytes((n as f64 / secs) as u64)
    );
}

/// Parses a size such as `64M`, `1.5G` or `1048576` (binary units, as `zstd --memory`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("not a size: {s} (use K, M, G or T)")),
    };
    Ok((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Location::parse("s3://b/a/k").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "a/k".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "".into()
            }
        );
        assert_eq!(
            Location::parse("file:///tmp/a%20b").unwrap(),
            Location::Local("/tmp/a b".into())
        );
        assert_eq!(
            Location::parse("rel/x.weir").unwrap(),
            Location::Local("rel/x.weir".into())
        );
        assert!(Location::parse("gs://b/k").is_err());
        assert!(Location::parse("s3:///k").is_err());
        assert!(Location::parse("file://host/x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("12X").is_err());
    }
}
