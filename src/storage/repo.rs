//! A repository of objects that are created and never replaced: an S3 prefix or a local
//! directory. The WAL archive keeps one cluster record and the archived files there, each with
//! the SHA-256 of its plaintext; the deduplicated repository keeps its chunks and recipes.
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

use crate::plumbing::durable::{TempFile, sync_dir};
use crate::storage::{Location, S3Settings};
use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// An object read back: its bytes as a reader (a file is read as it is decoded, not copied
/// into memory first).
pub struct Stored {
    pub body: Box<dyn std::io::BufRead + Send>,
    /// The plaintext's SHA-256, as recorded at the push.
    pub sha256: Option<String>,
}

impl Stored {
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.body.read_to_end(&mut v)?;
        Ok(v)
    }
}

/// What a create-only write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    New,
    /// The key exists; its recorded digest, if any.
    Exists(Option<String>),
}

/// An object on its way into the repository (see [`Repo::stage`]).
pub enum Staged {
    /// A directory repository: a temporary file beside the key's path.
    File(TempFile),
    /// S3: the body of one PUT.
    Bytes(Vec<u8>),
}

impl Staged {
    /// A second handle on the file being written (directories), for [`sync_while`].
    pub fn file_handle(&self) -> Result<Option<File>> {
        match self {
            Staged::File(file) => Ok(Some(file.file().try_clone()?)),
            Staged::Bytes(_) => Ok(None),
        }
    }

    /// Makes what was written durable (directories), on the writer's thread, so that the
    /// commit's own sync finds nothing left to write.
    pub fn sync(&self) -> Result<()> {
        match self {
            Staged::File(file) => file.sync(),
            Staged::Bytes(_) => Ok(()),
        }
    }
}

impl Write for Staged {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Staged::File(file) => file.write(b),
            Staged::Bytes(v) => v.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A digest on its way in with its object (see [`Repo::stage_digest`]).
pub struct StagedDigest {
    sha256: String,
    sidecar: Option<TempFile>,
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
            Repo::Dir(root) => read_in_dir(root, key),
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(get(client, bucket, &Self::s3_key(prefix, key), None)),
        }
    }

    /// Bytes `at..at + len` of the object at `key`, fewer where the object ends before, or
    /// `None` when there is no such object.
    pub fn read_range(&self, key: &str, at: u64, len: usize) -> Result<Option<Vec<u8>>> {
        Ok(Some(match self {
            Repo::Dir(_) => {
                let mut buf = vec![0; len];
                let Some(n) = self.read_range_into(key, at, &mut buf)? else {
                    return Ok(None);
                };
                buf.truncate(n);
                buf
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => {
                if len == 0 {
                    return Ok(Some(Vec::new()));
                }
                let (k, range) = (
                    Self::s3_key(prefix, key),
                    format!("bytes={at}-{}", at + len as u64 - 1),
                );
                match rt.block_on(get(client, bucket, &k, Some(range)))? {
                    Some(stored) => stored.bytes()?,
                    None => return Ok(None),
                }
            }
        }))
    }

    /// Reads bytes from `at` of the object at `key` into `buf`, fewer where the object ends
    /// before: how many, or `None` when there is no such object. For a reader that keeps its
    /// buffer from one read to the next.
    pub fn read_range_into(&self, key: &str, at: u64, buf: &mut [u8]) -> Result<Option<usize>> {
        match self {
            Repo::Dir(root) => {
                let path = root.join(key);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                let n = crate::plumbing::read_full_at(&file, buf, at)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(Some(n))
            }
            Repo::S3 { .. } => Ok(self.read_range(key, at, buf.len())?.map(|got| {
                buf[..got.len()].copy_from_slice(&got);
                got.len()
            })),
        }
    }

    /// Two objects at once: on S3 both GETs are in flight together (fetch needs the cluster
    /// record and the file, and recovery waits for every file).
    pub fn read_two(&self, a: &str, b: &str) -> Result<(Option<Stored>, Option<Stored>)> {
        match self {
            Repo::Dir(_) => Ok((self.read(a)?, self.read(b)?)),
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(async {
                let (ka, kb) = (Self::s3_key(prefix, a), Self::s3_key(prefix, b));
                tokio::try_join!(
                    get(client, bucket, &ka, None),
                    get(client, bucket, &kb, None)
                )
            }),
        }
    }

    /// Creates `key` holding `data` with its digest, unless it exists.
    pub fn create(&self, key: &str, data: &[u8], sha256: &str) -> Result<Created> {
        let mut object = self.stage(key)?;
        object.write_all(data)?;
        let digest = self.stage_digest(key, sha256)?;
        self.commit(key, object, digest)
    }

    /// Starts writing the object `key`; nothing is visible under the key until
    /// [`Repo::commit`].
    pub fn stage(&self, key: &str) -> Result<Staged> {
        match self {
            Repo::Dir(root) => {
                if !root.is_dir() {
                    bail!(
                        "no repository directory {} (create it first)",
                        root.display()
                    );
                }
                let path = root.join(key);
                let dir = parent(&path);
                if !dir.is_dir() {
                    fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    // The new folder's own entry must be durable too.
                    sync_dir(&parent(&dir))?;
                }
                Ok(Staged::File(TempFile::beside(&path)?))
            }
            Repo::S3 { .. } => Ok(Staged::Bytes(Vec::new())),
        }
    }

    /// The digest that goes with `key`: on S3 the PUT's metadata; in a directory a sidecar
    /// file, written and synced now (while the object is still being written, so the two
    /// syncs overlap).
    pub fn stage_digest(&self, key: &str, sha256: &str) -> Result<StagedDigest> {
        let sidecar = match self {
            Repo::Dir(root) => {
                let mut t = TempFile::beside(&digest_path(&root.join(key)))?;
                t.write_all(format!("{sha256}\n").as_bytes())?;
                t.sync()?;
                Some(t)
            }
            Repo::S3 { .. } => None,
        };
        Ok(StagedDigest {
            sha256: sha256.to_string(),
            sidecar,
        })
    }

    /// Makes a staged object and its digest visible under `key`, unless the key exists: on
    /// S3 one conditional PUT (`If-None-Match: *`); in a directory, under the repository's
    /// lock, the digest first and the object last, then the folder synced.
    pub fn commit(&self, key: &str, object: Staged, digest: StagedDigest) -> Result<Created> {
        match (self, object) {
            (Repo::Dir(root), Staged::File(file)) => {
                file.sync()?;
                commit_in_dir(root, key, file, digest)
            }
            (
                Repo::S3 {
                    rt,
                    client,
                    bucket,
                    prefix,
                },
                Staged::Bytes(data),
            ) => rt.block_on(put_if_absent(
                client,
                bucket,
                &Self::s3_key(prefix, key),
                data,
                &digest.sha256,
            )),
            _ => bail!("an object staged for another kind of repository"),
        }
    }

    /// Writes `data` at `key`, replacing what is there, durable when it returns: for objects
    /// whose key names their content (a chunk under its hash), where a second writer of the
    /// same key writes the same plaintext. No digest is recorded.
    pub fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        match self {
            Repo::Dir(root) => {
                let path = root.join(key);
                let mut t = self.stage(key)?;
                t.write_all(data)?;
                let Staged::File(t) = t else {
                    bail!("an object staged for another kind of repository")
                };
                t.sync()?;
                t.persist()?;
                sync_dir(&parent(&path))
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => rt.block_on(async {
                let k = Self::s3_key(prefix, key);
                client
                    .put_object()
                    .bucket(bucket.as_str())
                    .key(&k)
                    .body(ByteStream::from(data.to_vec()))
                    .send()
                    .await
                    .map_err(|e| failure(&format!("s3://{bucket}/{k}"), e))?;
                Ok(())
            }),
        }
    }

    /// Writes `data` at `key` as [`Repo::put`] does, but in a directory returns before it is
    /// durable: [`Repo::sync_all`] later makes a batch durable with one sync of the file
    /// system instead of two per object (a push's hundreds of lists cost 0.6 s of fsyncs on a
    /// full push of the bench's 700 MB). For objects whose loss or emptying in a crash before
    /// that is harmless: readers must take an unreadable one for absent.
    pub fn put_soon(&self, key: &str, data: &[u8]) -> Result<()> {
        match self {
            Repo::Dir(root) => {
                let path = root.join(key);
                let dir = parent(&path);
                // No sync of the new folder's entry either: sync_all covers it.
                if !dir.is_dir() {
                    fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let mut t = TempFile::beside(&path)?;
                t.write_all(data)?;
                t.persist()
            }
            Repo::S3 { .. } => self.put(key, data),
        }
    }

    /// Makes everything written with [`Repo::put_soon`] durable: in a directory, one
    /// `syncfs(2)` of its file system; on S3 a PUT is durable when it returns.
    pub fn sync_all(&self) -> Result<()> {
        match self {
            Repo::Dir(root) => {
                let dir =
                    File::open(root).with_context(|| format!("cannot open {}", root.display()))?;
                rustix::fs::syncfs(&dir)
                    .with_context(|| format!("syncing the file system of {}", root.display()))
            }
            Repo::S3 { .. } => Ok(()),
        }
    }

    /// Removes `keys` (those already gone are no error).
    pub fn remove(&self, keys: &[String]) -> Result<()> {
        match self {
            Repo::Dir(root) => {
                let mut dirs = std::collections::BTreeSet::new();
                for k in keys {
                    let path = root.join(k);
                    if !crate::storage::local::remove(&path, false)?.is_empty() {
                        dirs.insert(parent(&path));
                    }
                }
                dirs.iter().try_for_each(|d| sync_dir(d))
            }
            Repo::S3 {
                rt,
                client,
                bucket,
                prefix,
            } => {
                let full: Vec<String> = keys.iter().map(|k| Self::s3_key(prefix, k)).collect();
                rt.block_on(crate::storage::s3::delete_keys(client, bucket, &full))
                    .map(|_| ())
            }
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

    /// The keys that hold `key`: the object, and in a directory the digest file beside it
    /// (which [`Repo::list`] leaves out), so that removing an object removes both.
    pub fn stored_keys(&self, key: &str) -> Vec<String> {
        match self {
            Repo::Dir(_) => vec![key.to_string(), format!("{key}.sha256")],
            Repo::S3 { .. } => vec![key.to_string()],
        }
    }

    /// Every key under `prefix` (relative to the repository), with its size, in key order.
    /// A directory's digest files are not listed.
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

fn read_in_dir(root: &Path, key: &str) -> Result<Option<Stored>> {
    let path = root.join(key);
    let file = match File::open(&path) {
        Ok(f) => f,
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
        body: Box::new(std::io::BufReader::with_capacity(256 << 10, file)),
        sha256: read_digest(&path)?,
    }))
}

/// One GET: the object (or the HTTP `range` of it) with its recorded digest, or `None` if the
/// bucket has no such key.
async fn get(
    client: &Client,
    bucket: &str,
    k: &str,
    range: Option<String>,
) -> Result<Option<Stored>> {
    let asked = client.get_object().bucket(bucket).key(k).set_range(range);
    let out = match asked.send().await {
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
        .into_bytes();
    Ok(Some(Stored {
        body: Box::new(std::io::Cursor::new(data)),
        sha256,
    }))
}

/// One conditional PUT carrying the object and its digest.
async fn put_if_absent(
    client: &Client,
    bucket: &str,
    k: &str,
    data: Vec<u8>,
    sha256: &str,
) -> Result<Created> {
    let put = client
        .put_object()
        .bucket(bucket)
        .key(k)
        .if_none_match("*")
        .metadata(DIGEST_META, sha256)
        .body(ByteStream::from(data))
        .send()
        .await;
    match put {
        Ok(_) => Ok(Created::New),
        // Another pusher won the race: what it wrote has its own digest.
        Err(e) if precondition_failed(&e) => match head_digest(client, bucket, k).await? {
            Some(digest) => Ok(Created::Exists(digest)),
            None => Err(crate::plumbing::coded(
                crate::plumbing::ExitCode::NotFound,
                format!("s3://{bucket}/{k}: no such object"),
            )),
        },
        Err(e) => Err(failure(&format!("s3://{bucket}/{k}"), e)),
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

/// The directory commit: under the repository's lock, digest first, object last.
fn commit_in_dir(
    root: &Path,
    key: &str,
    object: TempFile,
    digest: StagedDigest,
) -> Result<Created> {
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
    digest
        .sidecar
        .ok_or_else(|| anyhow!("a digest staged for another kind of repository"))?
        .persist()?;
    object.persist()?;
    sync_dir(&parent(&path))?;
    Ok(Created::New)
}

/// A path's directory; `.` for a bare name (`Path::parent` gives an empty path there).
fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
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
