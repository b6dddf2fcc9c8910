//! Locks that keep a prune from removing chunks a running push counts on (restic's approach:
//! shared locks for backups, an exclusive one for prune), as objects under `locks/`.
//!
//! A push reuses chunks it found in the repository and writes its recipe last; a prune removes
//! the chunks no recipe names. Run together, the prune could remove a chunk the push reused or
//! uploaded before its recipe exists. So each takes a lock first and then looks for the
//! other's: a push stops if a prune holds one, a prune if anything else does. Both write before
//! they look, so of two that start together at least one sees the other (S3 lists what was
//! written before the listing began: its consistency is strong since December 2020).
//!
//! A lock names its time and is rewritten every [`REFRESH`]; one older than [`STALE`] belongs to
//! a process that died (killed, or its machine lost) and is ignored, and a prune removes it. A
//! push whose lock could not be kept fresh does not write its recipe (a prune may have taken
//! it for dead).

use crate::plumbing::{ExitCode, coded};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// How often a lock is rewritten.
pub const REFRESH: Duration = Duration::from_secs(300);
/// How old a lock must be to be taken for a dead process's.
pub const STALE: Duration = Duration::from_secs(1800);

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    Push,
    Prune,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Prune => "prune",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    kind: String,
    host: String,
    pid: u32,
    /// Unix seconds of the last refresh.
    time: u64,
}

/// A lock held until dropped.
pub struct Lock {
    key: String,
    repo: Repo,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

fn now() -> u64 {
    crate::plumbing::unix_seconds(std::time::SystemTime::now())
}

fn record(kind: Kind) -> Result<Vec<u8>> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    Ok(serde_json::to_vec(&Record {
        kind: kind.name().into(),
        host,
        pid: std::process::id(),
        time: now(),
    })?)
}

/// Other processes' locks: the fresh ones with what they say, the stale ones by key.
#[derive(Default)]
struct Others {
    fresh: Vec<(String, Record)>,
    stale: Vec<String>,
}

fn others(repo: &Repo, own: &str) -> Result<Others> {
    let mut o = Others::default();
    for (key, _) in repo.list("locks/")? {
        if key == own || !key.ends_with(".json") {
            continue;
        }
        // A lock removed between the listing and the read is gone: no conflict.
        let Some(stored) = repo.read(&key)? else {
            continue;
        };
        let Ok(r) = serde_json::from_slice::<Record>(&stored.bytes()?) else {
            continue;
        };
        if now().saturating_sub(r.time) > STALE.as_secs() {
            o.stale.push(key);
        } else {
            o.fresh.push((key, r));
        }
    }
    Ok(o)
}

/// Takes a lock of `kind` on the repository at `url`, or says who holds the one in the way.
pub fn take(url: &str, s3: &S3Settings, kind: Kind) -> Result<Lock> {
    let repo = Repo::open(url, s3)?;
    let key = format!(
        "locks/{}-{}-{}.json",
        kind.name(),
        now(),
        super::store::random_hex(4)
    );
    repo.put(&key, &record(kind)?)?;
    let Others { fresh, stale } = match others(&repo, &key) {
        Ok(o) => o,
        Err(e) => {
            let _ = repo.remove(std::slice::from_ref(&key));
            return Err(e);
        }
    };
    let blocking = fresh
        .iter()
        .find(|(_, r)| kind == Kind::Prune || r.kind == Kind::Prune.name());
    if let Some((other, r)) = blocking {
        let _ = repo.remove(std::slice::from_ref(&key));
        return Err(coded(
            ExitCode::Failure,
            format!(
                "the repository is locked by a {} on {} (process {}, {other}, refreshed {} s ago); try again once it ends, or remove the lock if that process is gone",
                r.kind,
                r.host,
                r.pid,
                now().saturating_sub(r.time)
            ),
        ));
    }
    if kind == Kind::Prune && !stale.is_empty() {
        repo.remove(&stale)?;
    }
    let lost = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = mpsc::channel();
    let refresher = {
        let (url, s3, key, lost) = (url.to_string(), s3.clone(), key.clone(), lost.clone());
        std::thread::spawn(move || refresh(&url, &s3, &key, kind, stopped, &lost))
    };
    Ok(Lock {
        key,
        repo,
        stop: Some(stop),
        refresher: Some(refresher),
        lost,
    })
}

/// Rewrites the lock every [`REFRESH`] until told to stop.
fn refresh(
    url: &str,
    s3: &S3Settings,
    key: &str,
    kind: Kind,
    stopped: mpsc::Receiver<()>,
    lost: &AtomicBool,
) {
    let Ok(repo) = Repo::open(url, s3) else {
        lost.store(true, Ordering::SeqCst);
        return;
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
        if record(kind).and_then(|r| repo.put(key, &r)).is_err() {
            lost.store(true, Ordering::SeqCst);
        }
    }
}

impl Lock {
    /// Fails if the lock could not be kept fresh: another process may have taken it for dead.
    pub fn still_held(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(anyhow!(
                "the repository lock {} could not be refreshed; a prune may have run meanwhile, so this backup is not written",
                self.key
            ));
        }
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.repo.remove(std::slice::from_ref(&self.key));
    }
}
