//! Writes that survive a crash: a file that appears whole or not at all ([`TempFile`],
//! [`durable_write`]), a directory synced so that a rename in it survives too ([`sync_dir`]),
//! and a writer that keeps data flowing to disk while work goes on ([`sync_while`]). The WAL
//! archive, the physical repository and weir-sink's files all write through these.

use anyhow::{Context, Result, anyhow};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file that appears at `path` whole or not at all: written under a temporary name beside
/// it, synced, then renamed over it. Dropped unpersisted, or on a signal, the temporary file
/// is removed. (In a repository only the lock holder renames, so a leftover of a crashed
/// writer is simply replaced.)
pub struct TempFile {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    guard: u64,
}

impl TempFile {
    pub fn beside(path: &Path) -> Result<TempFile> {
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.weir-tmp.{}", std::process::id()));
        // Readable too: fetch checks what it wrote before renaming it into place.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let guard = {
            let tmp = tmp.clone();
            crate::plumbing::signals::on_cleanup(move || {
                let _ = fs::remove_file(&tmp);
            })
        };
        Ok(TempFile {
            tmp,
            path: path.to_path_buf(),
            file,
            guard,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Makes the written bytes durable (before [`TempFile::persist`], to sync on another
    /// thread).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("writing {}", self.tmp.display()))
    }

    /// Renames it into place; the caller syncs the directory if the name must survive a
    /// crash too.
    pub fn persist(self) -> Result<()> {
        fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot rename into {}", self.path.display()))
        // Drop finds nothing left to remove.
    }
}

impl Write for TempFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
        crate::plumbing::signals::forget(self.guard);
    }
}

/// Runs `work` while another thread keeps writing back what it has written to `file` so far,
/// so that the sync after it finds most of the file on disk already instead of all of it
/// (each `fdatasync` writes what is dirty; they follow each other until `work` is done).
pub fn sync_while<R>(file: Option<&File>, work: impl FnOnce() -> R) -> R {
    let Some(file) = file else { return work() };
    // A failure here shows again in the final sync, which the caller checks.
    let tick = || {
        let _ = file.sync_data();
    };
    crate::plumbing::alongside(std::time::Duration::from_millis(2), tick, work)
}

/// `data` at `path` through a synced [`TempFile`].
pub fn durable_write(path: &Path, data: &[u8]) -> Result<()> {
    let mut t = TempFile::beside(path)?;
    t.write_all(data)
        .with_context(|| format!("writing {}", t.tmp.display()))?;
    t.sync()?;
    t.persist()
}

/// Syncs a directory, so that the names created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_while_returns_its_work_and_stops_even_on_a_panic() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(sync_while(Some(&f), || 7), 7);
        // Unless the stop flag is set on unwinding too, this waits for ever.
        let r = std::panic::catch_unwind(|| sync_while(Some(&f), || panic!("the work failed")));
        assert!(r.is_err());
    }
}
