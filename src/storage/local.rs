//! The local-directory backend: a directory tree treated as a bucket, keys as paths.
//!
//! Writes go to a temporary file beside the target, are synced, and then renamed into place,
//! and the directory is synced too, so after a crash the target is either the old object or
//! the complete new one, never a torn file (the same contract as a completed S3 upload).

use super::{ObjectInfo, PutOptions, Transfer};
use crate::plumbing::{ExitCode, Progress, coded, signals};
use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Temporary files carry this marker; listings skip them.
const TMP_MARK: &str = ".weir-tmp.";

pub fn put(
    path: &Path,
    t: &Transfer,
    o: &PutOptions,
    mut input: Box<dyn Read + Send>,
) -> Result<u64> {
    if !o.metadata.is_empty() || o.content_type.is_some() {
        bail!("--metadata and --content-type apply to S3 only, not to a local directory");
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?
        .to_string_lossy()
        .to_string();
    if o.if_none_match && path.exists() {
        return Err(exists(path));
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let mut file =
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let guard = {
        let tmp = tmp.clone();
        signals::on_cleanup(move || {
            let _ = fs::remove_file(&tmp);
        })
    };
    let result = copy_into(&mut input, &mut file, t).and_then(|n| {
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        publish(&tmp, path, o.if_none_match)?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", dir.display()))?;
        Ok(n)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    signals::forget(guard);
    result
}

/// Moves the finished temporary file into place; with `no_replace` a hard link does it, which
/// fails atomically if the target appeared meanwhile.
fn publish(tmp: &Path, path: &Path, no_replace: bool) -> Result<()> {
    if no_replace {
        match fs::hard_link(tmp, path) {
            Ok(()) => {
                fs::remove_file(tmp)?;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists(path)),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    } else {
        fs::rename(tmp, path).with_context(|| format!("cannot rename into {}", path.display()))
    }
}

fn exists(path: &Path) -> anyhow::Error {
    coded(
        ExitCode::Exists,
        format!("{}: already exists (--if-none-match)", path.display()),
    )
}

fn copy_into(input: &mut dyn Read, out: &mut dyn Write, t: &Transfer) -> Result<u64> {
    let mut progress = Progress::new(None, t.progress, t.quiet).bytes_only();
    crate::plumbing::copy(input, out, &mut |n| progress.update(n, 0))
}

pub fn get(path: &Path, t: &Transfer, out: &mut dyn Write) -> Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(coded(
                ExitCode::NotFound,
                format!("{}: no such object", path.display()),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        bail!("{}: is a directory, not an object", path.display());
    }
    let n = copy_into(&mut file, out, t)?;
    if n != meta.len() {
        bail!(
            "{}: read {n} bytes but the file has {} (changed while reading?)",
            path.display(),
            meta.len()
        );
    }
    Ok(n)
}

/// Every file whose path starts with `prefix` (a directory lists all it holds), sorted.
pub fn list(prefix: &Path) -> Result<Vec<ObjectInfo>> {
    let text = prefix.to_string_lossy().to_string();
    let (root, filter) = if prefix.is_dir() {
        (prefix.to_path_buf(), None)
    } else {
        let parent = match prefix.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (parent, Some(text))
    };
    let mut out = Vec::new();
    if root.is_dir() {
        walk(&root, &mut out)?;
    }
    if let Some(f) = filter {
        let dotted = format!("./{f}");
        out.retain(|o| o.key.starts_with(&f) || o.key.starts_with(&dotted));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() && !entry.file_name().to_string_lossy().contains(TMP_MARK) {
            let meta = entry.metadata()?;
            out.push(ObjectInfo {
                key: path.to_string_lossy().to_string(),
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(())
}

/// Removes one file, or every file under a prefix (and the directories that leaves empty).
/// Returns what was removed; nothing removed is the caller's "not found".
pub fn remove(path: &Path, recursive: bool) -> Result<Vec<String>> {
    if !recursive {
        if path.is_dir() {
            bail!("{}: is a directory (use --recursive)", path.display());
        }
        return match fs::remove_file(path) {
            Ok(()) => Ok(vec![path.display().to_string()]),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        };
    }
    let mut removed = Vec::new();
    for ob in list(path)? {
        fs::remove_file(&ob.key).with_context(|| format!("cannot remove {}", ob.key))?;
        removed.push(ob.key);
    }
    if path.is_dir() {
        remove_empty_dirs(path);
    }
    Ok(removed)
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir); // fails, as it should, if anything is left
}

/// A file read by range (a delta restore's `--from`).
pub struct RangedFile {
    file: std::fs::File,
    len: u64,
}

impl RangedFile {
    pub fn open(path: &Path) -> Result<RangedFile> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(RangedFile { file, len })
    }
}

impl crate::stream::ranged::Ranged for RangedFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let n = crate::plumbing::read_full_at(&self.file, &mut buf, at)?;
        if n < len {
            bail!("the file is shorter than it was ({} bytes read at {at})", n);
        }
        Ok(buf)
    }
}
