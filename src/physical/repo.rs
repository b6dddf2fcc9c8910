//! A WAL repository: an S3 prefix or a local directory, holding one cluster record and the
//! archived files, each with the SHA-256 of its plaintext.
//!
//! ```text
//! REPO/cluster.json                         the cluster record, written once
//! REPO/wal/0000000100000000/000000010000000000000001         a segment (age(zstd(...)))
//! REPO/wal/0000000100000000/000000010000000000000001.sha256  its digest (directories only)
//! REPO/wal/history/00000002.history
//! ```
//!
//! Every write creates and never replaces. On S3 one conditional PUT (`If-None-Match: *`)
//! carries the object and its digest (metadata `weir-sha256`), so two pushers cannot both
//! succeed. A directory has no such primitive: a lock file serializes writers, the digest goes
//! first and the object last, each through a synced temporary file and a rename, then the
//! directory is synced; an object therefore never exists without its digest.

use crate::storage::{Location, S3Settings};
use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CLUSTER: &str = "cluster.json";

/// An object read back.
pub struct Stored {
    pub data: Vec<u8>,
    /// The plaintext's SHA-256, as recorded at the push.
    pub sha256: Option<String>,
}

/// What a create-only write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    New,
    /// The key exists; its recorded digest, if any.
    Exists(Option<String>),
}

pub enum Repo {
    Dir(PathBuf),
    S3 {
        rt: tokio::runtime::Runtime,
        client: Client,
        bucket: String,
        prefix: String,
    },
}

impl Repo {
    pub fn open(url: &str, s3: &S3Settings) -> Result<Repo> {
        Ok(match Location::parse(url)? {
            Location::Local(p) => Repo::Dir(p),
            Location::S3 { bucket, key } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let client = rt.block_on(crate::storage::s3::client(s3))?;
                let prefix = key.trim_end_matches('/').to_string();
                Repo::S3 {
                    rt,
                    client,
                    bucket,
                    prefix,
                }
            }
        })
    }

    fn s3_key(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}/{key}")
        }
    }

    /// The object at `key`, or `None` when the repository answered that there is none.
    pub fn read(&self, key: &str) -> Result<Option<Stored>> {
        match self {
            Repo::Dir(root) => {
                let path = root.join(key);
                let data = match fs::read(&path) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // A missing repository is a failure, not an absent file.
                        if !root.is_dir() {
                            return Err(crate::plumbing::coded(
                                crate::plumbing::ExitCode::NotFound,
                                format!("no repository directory {}", root.display()),
                            ));
                        }
                        return Ok(None);
                    }
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                Ok(Some(Stored {
                    data,
                    sha256: read_digest(&path)?,
                }))
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(async {
                let k = Self::s3_key(prefix, key);
                let out = match client.get_object().bucket(bucket).key(&k).send().await {
                    Ok(o) => o,
                    Err(e) if not_found(&e) => return Ok(None),
                    Err(e) => return Err(failure(&format!("s3://{bucket}/{k}"), e)),
                };
                let sha256 = meta_digest(out.metadata());
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| anyhow!("s3://{bucket}/{k}: reading the object: {e}"))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(Stored { data, sha256 }))
            }),
        }
    }

    /// Creates `key` holding `data` with its digest, unless it exists.
    pub fn create(&self, key: &str, data: &[u8], sha256: &str) -> Result<Created> {
        match self {
            Repo::Dir(root) => create_in_dir(root, key, data, sha256),
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(async {
                let k = Self::s3_key(prefix, key);
                let put = client
                    .put_object()
                    .bucket(bucket)
                    .key(&k)
                    .if_none_match("*")
                    .metadata(DIGEST_META, sha256)
                    .body(ByteStream::from(data.to_vec()))
                    .send()
                    .await;
                match put {
                    Ok(_) => Ok(Created::New),
                    // Another pusher won the race: what it wrote has its own digest.
                    Err(e) if precondition_failed(&e) => {
                        match head_digest(client, bucket, &k).await? {
                            Some(digest) => Ok(Created::Exists(digest)),
                            None => Err(crate::plumbing::coded(
                                crate::plumbing::ExitCode::NotFound,
                                format!("s3://{bucket}/{k}: no such object"),
                            )),
                        }
                    }
                    Err(e) => Err(failure(&format!("s3://{bucket}/{k}"), e)),
                }
            }),
        }
    }

    /// The recorded digest of `key`: `None` if absent, `Some(None)` if it has none.
    pub fn digest(&self, key: &str) -> Result<Option<Option<String>>> {
        match self {
            Repo::Dir(root) => {
                let path = root.join(key);
                if !path.exists() {
                    return Ok(None);
                }
                Ok(Some(read_digest(&path)?))
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(head_digest(client, bucket, &Self::s3_key(prefix, key))),
        }
    }

    /// Every key under `prefix` (relative to the repository), with its size, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = match self {
            Repo::Dir(root) => {
                let mut out = Vec::new();
                list_dir(root, &root.join(prefix), &mut out)?;
                out
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix: p,
            } => rt.block_on(async {
                let full = Self::s3_key(p, prefix);
                let mut out = Vec::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(&full)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| failure(&format!("s3://{bucket}/{full}"), e))?;
                    for o in page.contents() {
                        let key = o.key().unwrap_or_default();
                        let rel = key.strip_prefix(&format!("{p}/")).unwrap_or(key);
                        out.push((rel.to_string(), o.size().unwrap_or(0).max(0) as u64));
                    }
                }
                Ok::<_, anyhow::Error>(out)
            })?,
        };
        out.sort();
        Ok(out)
    }
}

/// S3 user metadata that carries the plaintext digest.
const DIGEST_META: &str = "weir-sha256";

fn meta_digest(meta: Option<&std::collections::HashMap<String, String>>) -> Option<String> {
    meta.and_then(|m| m.get(DIGEST_META)).cloned()
}

/// An object's recorded digest by HEAD: `None` if absent, `Some(None)` if it has none.
async fn head_digest(client: &Client, bucket: &str, key: &str) -> Result<Option<Option<String>>> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(h) => Ok(Some(meta_digest(h.metadata()))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(failure(&format!("s3://{bucket}/{key}"), e)),
    }
}

fn not_found<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NotFound"))
        || e.raw_response().map(|r| r.status().as_u16()) == Some(404)
            && !matches!(e.code(), Some("NoSuchBucket"))
}

fn precondition_failed<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    e.code() == Some("PreconditionFailed")
        || e.raw_response().map(|r| r.status().as_u16()) == Some(412)
}

fn failure<E>(what: &str, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::storage::s3::fail(what, e)
}

fn digest_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

fn read_digest(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(digest_path(path)) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the digest of {}", path.display())),
    }
}

/// The directory write: under the repository's lock, digest first, object last.
fn create_in_dir(root: &Path, key: &str, data: &[u8], sha256: &str) -> Result<Created> {
    if !root.is_dir() {
        bail!(
            "no repository directory {} (create it first)",
            root.display()
        );
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(".lock"))
        .with_context(|| format!("cannot open the lock of {}", root.display()))?;
    // flock(2): held until the file closes, released by the kernel if we crash.
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", root.display()))?;
    let path = root.join(key);
    if path.exists() {
        return Ok(Created::Exists(read_digest(&path)?));
    }
    let dir = parent(&path);
    if !dir.is_dir() {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The new folder's own entry must be durable too.
        sync_dir(&parent(&dir))?;
    }
    durable_write(&digest_path(&path), format!("{sha256}\n").as_bytes())?;
    durable_write(&path, data)?;
    sync_dir(&dir)?;
    Ok(Created::New)
}

/// A temporary file beside `path`, synced, then renamed over it; a failure or a signal
/// removes the temporary file. (In a repository only the lock holder writes, so a leftover
/// of a crashed writer is simply replaced.)
pub(super) fn durable_write(path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.weir-tmp.{}", std::process::id()));
    let guard = {
        let tmp = tmp.clone();
        crate::plumbing::signals::on_cleanup(move || {
            let _ = fs::remove_file(&tmp);
        })
    };
    let result = (|| -> Result<()> {
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    crate::plumbing::signals::forget(guard);
    result
}

/// A path's directory; `.` for a bare name (`Path::parent` gives an empty path there).
fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

fn list_dir(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".sha256") {
            continue;
        }
        let path = e.path();
        if e.file_type()?.is_dir() {
            list_dir(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((rel.to_string_lossy().to_string(), e.metadata()?.len()));
        }
    }
    Ok(())
}
