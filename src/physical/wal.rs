//! `weir-wal push` and `weir-wal fetch`: PostgreSQL's `archive_command` and
//! `restore_command`, with the contracts the server relies on (PostgreSQL documentation,
//! "Continuous Archiving and Point-in-Time Recovery", and src/backend/access/transam/
//! xlogarchive.c):
//! - push exits 0 only once the object is durable, and every failure exits at most 125 (the
//!   archiver treats a higher status as fatal). It never replaces an archived file: the same
//!   content again is success (a crash made the server push twice), different content under
//!   the same name is an error that leaves the archived one alone.
//! - fetch exits 1 only when the repository was reached, is this cluster's, and holds no such
//!   file (the normal answer at the end of the archive and to `.history` probes); every other
//!   failure exits 255, which stops recovery instead of ending it early with data missing.
//!   The file reaches `%p` through a synced temporary file and a rename, never half.

use super::object::{self, Identity, cores};
use super::walfile::{
    Kind, SegmentHeader, WalName, control_system_identifier, segment_header, segment_name,
    segment_number,
};
use crate::plumbing::durable::{TempFile, durable_write, sync_while};
use crate::plumbing::{ExitCode, bad_input, coded};
use crate::storage::S3Settings;
use crate::storage::repo::{Created, Repo, Staged};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository's cluster record, written once by the first push.
pub const CLUSTER: &str = "cluster.json";

/// The repository's one record of the cluster it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterRecord {
    pub format: String,
    pub version: u32,
    /// A string: JSON readers that use doubles would round a 64-bit identifier.
    pub system_identifier: String,
    pub major: u32,
    pub segment_size: u32,
    pub created: String,
}

impl ClusterRecord {
    fn of(h: &SegmentHeader) -> ClusterRecord {
        ClusterRecord {
            format: "weir-wal".into(),
            version: 1,
            system_identifier: h.system_identifier.to_string(),
            major: h.major,
            segment_size: h.segment_size,
            created: crate::plumbing::rfc3339(std::time::SystemTime::now()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "system identifier {}, PostgreSQL {}, {} MiB segments",
            self.system_identifier,
            self.major,
            self.segment_size >> 20
        )
    }

    /// Refuses a segment of another cluster.
    fn check(&self, name: &str, h: &SegmentHeader) -> Result<()> {
        self.refuse_other(name, "the repository", &ClusterRecord::of(h))
    }

    /// Refuses `what` (a segment, a server, a base backup), of the cluster `theirs`
    /// describes, when that is not the cluster of this record, the `repo`'s: exit 6.
    pub fn refuse_other(&self, what: &str, repo: &str, theirs: &ClusterRecord) -> Result<()> {
        let same = theirs.system_identifier == self.system_identifier
            && theirs.major == self.major
            && theirs.segment_size == self.segment_size;
        if !same {
            return Err(coded(
                ExitCode::WrongCluster,
                format!(
                    "{what} belongs to another cluster ({}) than {repo} ({})",
                    theirs.describe(),
                    self.describe()
                ),
            ));
        }
        Ok(())
    }

    /// What a server or a base backup says of its cluster, for [`ClusterRecord::refuse_other`].
    pub fn describing(system_identifier: String, major: u32, segment_size: u32) -> ClusterRecord {
        ClusterRecord {
            format: "weir-wal".into(),
            version: 1,
            system_identifier,
            major,
            segment_size,
            created: String::new(),
        }
    }
}

/// Where an archived file lives in the repository.
pub fn object_key(n: &WalName) -> String {
    match n.kind {
        Kind::History => format!("wal/history/{}", n.name),
        _ => format!("wal/{}/{}", &n.name[..16], n.name),
    }
}

pub fn read_record(repo: &Repo) -> Result<Option<ClusterRecord>> {
    parse_record(repo.read(CLUSTER)?)
}

fn parse_record(stored: Option<crate::storage::repo::Stored>) -> Result<Option<ClusterRecord>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let rec: ClusterRecord = serde_json::from_slice(&stored.bytes()?)
        .map_err(|e| anyhow!("the repository's {CLUSTER} is not a cluster record: {e}"))?;
    if rec.format != "weir-wal" || rec.version != 1 {
        bail!(
            "the repository's {CLUSTER} is {} version {}, which this weir does not read",
            rec.format,
            rec.version
        );
    }
    Ok(Some(rec))
}

/// The repository's record, created from the first segment pushed to it (a conditional
/// write: of two first pushers, one creates it and the other reads it).
fn record_for_push(repo: &Repo, header: Option<&SegmentHeader>) -> Result<Option<ClusterRecord>> {
    if let Some(rec) = read_record(repo)? {
        return Ok(Some(rec));
    }
    let Some(h) = header else { return Ok(None) };
    let mut json = serde_json::to_vec_pretty(&ClusterRecord::of(h))?;
    json.push(b'\n');
    let digest = object::sha256_hex(&json);
    match repo.create(CLUSTER, &json, &digest)? {
        Created::New => Ok(Some(ClusterRecord::of(h))),
        Created::Exists(_) => read_record(repo),
    }
}

pub struct PushOptions {
    pub repo: String,
    pub s3: S3Settings,
    /// `%p`: the file, relative to the data directory (the archiver's working directory).
    pub path: String,
    /// zstd level; `None` stores the file uncompressed.
    pub level: Option<i32>,
    /// The recipients, parsed by each thread that encrypts (a parsed one is not `Sync`).
    pub encrypt: crate::stream::encrypt::EncryptOptions,
    /// `--parallel N`: a background process pushes the `.ready` files, N at once.
    pub parallel: usize,
    /// Where files pushed ahead are noted, so that the server's later calls return at once.
    pub spool: Option<PathBuf>,
}

/// `archive_command = 'weir-wal push --repo URL %p'`.
///
/// With `--parallel N`, a background process (started by the first call, one at a time)
/// pushes the files the server has marked ready, N at once, and notes each in the spool; a
/// call for a file it is pushing waits for it (a lock per file), and a call for one it pushed
/// returns at once. pgBackRest's asynchronous archive-push works the same way: one long-lived
/// process for many segments, so the archiver's calls cost little.
pub fn push(o: &PushOptions) -> Result<()> {
    let path = Path::new(&o.path);
    let name = wal_name_of(path)?;
    let Some(spool) = o.spool.as_deref().filter(|_| o.parallel > 1) else {
        let data = std::fs::read(path).with_context(|| format!("cannot read {}", o.path))?;
        return push_file(o, &name, &data, cores());
    };
    std::fs::create_dir_all(spool)
        .with_context(|| format!("cannot create the spool {}", spool.display()))?;
    let _lock = lock_file(spool, &name.name, true)?;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", o.path))?;
    if take_pushed_mark(spool, &name.name, &identity(&meta)) {
        return Ok(());
    }
    start_background(PUSH_CHILD);
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", o.path))?;
    // Pushed ahead from another file under this name, or not at all: the repository's
    // digest decides.
    push_file(o, &name, &data, cores())
}

/// What identifies this very file: device, inode, size and modification time. A segment the
/// server has marked ready is not written again, so the same identity means the same bytes.
fn identity(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let (dev, ino, size) = (m.dev(), m.ino(), m.size());
    format!("{dev}:{ino}:{size}:{}.{}", m.mtime(), m.mtime_nsec())
}

/// The file's contents, and its identity as it was opened.
fn read_with_identity(path: &Path) -> Result<(String, Vec<u8>)> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let m = f.metadata()?;
    let mut data = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut data)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((identity(&m), data))
}

/// Set in the environment of the background process that pushes ahead.
pub const PUSH_CHILD: &str = "WEIR_WAL_PUSHING";

/// The background half of `--parallel N`: every ready file that is not yet noted, N at a
/// time, until none is left.
pub fn push_ready(o: &PushOptions) -> Result<()> {
    let spool = o
        .spool
        .as_deref()
        .ok_or_else(|| anyhow!("--parallel needs --spool"))?;
    let Some(_one) = lock_file(spool, ".pusher", false)? else {
        return Ok(()); // another pusher is at work
    };
    let path = Path::new(&o.path);
    let name = wal_name_of(path)?;
    loop {
        let ready = ready_after(path, &name, spool);
        if ready.is_empty() {
            forget_archived(path, spool);
            return Ok(());
        }
        let queue = std::sync::Mutex::new(ready.into_iter());
        let pushed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..o.parallel {
                scope.spawn(|| {
                    loop {
                        // Not `while let` on the lock: its guard would live through the
                        // body, and the workers would push one at a time.
                        let next = queue.lock().unwrap().next();
                        let Some(p) = next else { break };
                        if push_ahead(o, &p, spool) {
                            pushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // Everything left is in the server's own hands right now: wait for it to move on.
        if pushed.into_inner() == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The server's `archive_status` directory beside the file it asked to archive.
fn archive_status(path: &Path) -> PathBuf {
    path.parent()
        .unwrap_or(Path::new("."))
        .join("archive_status")
}

/// Notes and locks of files the server no longer has ready (archived, or pushed by its own
/// call) are of no more use.
fn forget_archived(path: &Path, spool: &Path) {
    let status = archive_status(path);
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        let name = f
            .strip_suffix(".pushed")
            .or_else(|| f.strip_suffix(".lock"));
        if let Some(n) = name.filter(|n| WalName::parse(n).is_ok()) {
            if !status.join(format!("{n}.ready")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// An exclusive lock on `spool/NAME.lock`: waiting for it, or `None` if it is held.
fn lock_file(spool: &Path, name: &str, wait: bool) -> Result<Option<std::fs::File>> {
    use rustix::fs::FlockOperation::{LockExclusive, NonBlockingLockExclusive};
    let f = std::fs::File::create(spool.join(format!("{name}.lock")))?;
    match rustix::fs::flock(
        &f,
        if wait {
            LockExclusive
        } else {
            NonBlockingLockExclusive
        },
    ) {
        Ok(()) => Ok(Some(f)),
        Err(_) if !wait => Ok(None),
        Err(e) => Err(anyhow!("cannot lock {name} in the spool: {e}")),
    }
}

/// Starts this command again in the background, marked by `marker` in its environment
/// (PostgreSQL waits for the command it ran, not for its children; the child's output goes
/// nowhere, and its failures only mean the server's own calls do the work).
fn start_background(marker: &str) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(marker, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn wal_name_of(path: &Path) -> Result<WalName> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| {
            coded(
                ExitCode::Usage,
                format!("{}: not a file name", path.display()),
            )
        })?;
    WalName::parse(&name).map_err(|e| coded(ExitCode::Usage, e.to_string()))
}

/// One file to the repository: identity checked, never replacing, durable before `Ok`. The
/// stored form is made and written on another thread while the digest is computed and
/// staged, since the archiver waits for every file.
fn push_file(o: &PushOptions, name: &WalName, data: &[u8], threads: usize) -> Result<()> {
    let header = match name.has_header() {
        true => Some(check_segment(name, data, data.len() as u64)?),
        false => None,
    };
    let repo = Repo::open(&o.repo, &o.s3)?;
    let record = record_for_push(&repo, header.as_ref())?;
    match (&record, &header) {
        (Some(rec), Some(h)) => rec.check(&name.name, h)?,
        // A history or backup file carries no header: the data directory says whose it is.
        (Some(rec), None) => check_data_dir(rec, Path::new("."))?,
        (None, _) => {}
    }
    let key = object_key(name);
    if let Some(existing) = repo.digest(&key)? {
        return same_or_conflict(&name.name, existing, &object::sha256_hex(data));
    }
    let staged = repo.stage(&key)?;
    std::thread::scope(|scope| {
        let encoded = scope.spawn(move || -> Result<Staged> {
            let recipients = crate::stream::encrypt::recipients(&o.encrypt)?;
            let how = object::Encoding {
                level: o.level,
                recipients: &recipients,
                threads,
            };
            let handle = staged.file_handle()?;
            let staged = sync_while(handle.as_ref(), || object::encode_to(data, &how, staged))?;
            staged.sync()?;
            Ok(staged)
        });
        let digest = object::sha256_hex(data);
        let staged_digest = repo.stage_digest(&key, &digest)?;
        let staged = encoded.join().expect("the encoding thread")?;
        match repo.commit(&key, staged, staged_digest)? {
            Created::New => Ok(()),
            // Another pusher got there first.
            Created::Exists(existing) => same_or_conflict(&name.name, existing, &digest),
        }
    })
}

/// The next files the server has marked `.ready` (archive_status is only read, never
/// written: it is the server's), after this one and not already pushed ahead.
fn ready_after(path: &Path, name: &WalName, spool: &Path) -> Vec<PathBuf> {
    let wal_dir = path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(archive_status(path)) else {
        return Vec::new();
    };
    let mut ready: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().to_string();
            f.strip_suffix(".ready").map(str::to_string)
        })
        .filter(|f| *f != name.name && WalName::parse(f).is_ok())
        .filter(|f| !spool.join(format!("{f}.pushed")).exists())
        .collect();
    ready.sort();
    ready.into_iter().map(|f| wal_dir.join(f)).collect()
}

/// Pushes a file ahead of the server's call for it and notes its digest in the spool, unless
/// the server's call holds it or has archived it already; true when it pushed. A failure is
/// only reported: the server's call will push the file itself.
fn push_ahead(o: &PushOptions, path: &Path, spool: &Path) -> bool {
    let result = (|| -> Result<bool> {
        let name = wal_name_of(path)?;
        let Some(_lock) = lock_file(spool, &name.name, false)? else {
            return Ok(false);
        };
        let still_ready = archive_status(path)
            .join(format!("{}.ready", name.name))
            .exists();
        if !still_ready || spool.join(format!("{}.pushed", name.name)).exists() {
            return Ok(false);
        }
        let (identity, data) = read_with_identity(path)?;
        // The workers share the cores.
        push_file(o, &name, &data, (cores() / o.parallel).max(1))?;
        let mark = spool.join(format!("{}.pushed", name.name));
        crate::plumbing::write_atomically(&mark, identity.as_bytes())?;
        Ok(true)
    })();
    result.unwrap_or_else(|e| {
        eprintln!(
            "{}: pushing {} ahead: {}",
            crate::plumbing::program(),
            path.display(),
            crate::plumbing::one_line(&format!("{e:#}"))
        );
        false
    })
}

/// True when `name` was pushed ahead from this very file (the mark is then removed).
fn take_pushed_mark(spool: &Path, name: &str, identity: &str) -> bool {
    let mark = spool.join(format!("{name}.pushed"));
    match std::fs::read_to_string(&mark) {
        Ok(d) if d.trim() == identity => {
            let _ = std::fs::remove_file(&mark);
            true
        }
        _ => false,
    }
}

/// A segment must be a whole one: its header (at the start of `head`) readable and its
/// size, `len`, the header's.
fn check_segment(name: &WalName, head: &[u8], len: u64) -> Result<SegmentHeader> {
    let h = segment_header(head).map_err(|e| bad_input(format!("{}: {e}", name.name)))?;
    if len != u64::from(h.segment_size) {
        return Err(bad_input(format!(
            "{}: {len} bytes, but its header says segments are {}",
            name.name, h.segment_size
        )));
    }
    // A segment renamed (or an object stored under another name) starts elsewhere.
    if h.page_address != name.start_address(h.segment_size) {
        return Err(bad_input(format!(
            "{}: its first page is at WAL position {:X}/{:X}, not where this name starts",
            name.name,
            h.page_address >> 32,
            h.page_address & 0xFFFF_FFFF
        )));
    }
    Ok(h)
}

/// An archived file met again: the same bytes are success, others a conflict (exit 5).
fn same_or_conflict(name: &str, existing: Option<String>, digest: &str) -> Result<()> {
    match existing {
        Some(d) if d == digest => Ok(()),
        Some(_) => Err(coded(
            ExitCode::Exists,
            format!("{name} is already archived with different content; the archived file is kept"),
        )),
        None => Err(coded(
            ExitCode::Exists,
            format!(
                "{name} is already archived, without a digest to compare with; the archived file is kept"
            ),
        )),
    }
}

/// When run in a data directory, its pg_control must name the repository's cluster.
fn check_data_dir(rec: &ClusterRecord, dir: &Path) -> Result<()> {
    if !dir.join("global/pg_control").exists() {
        return Ok(());
    }
    let ours = control_system_identifier(dir)?.to_string();
    if ours != rec.system_identifier {
        return Err(coded(
            ExitCode::WrongCluster,
            format!(
                "this data directory is cluster {ours}; the repository holds {}",
                rec.describe()
            ),
        ));
    }
    Ok(())
}

pub struct FetchOptions {
    pub repo: String,
    pub s3: S3Settings,
    /// `%f`: the file asked for.
    pub name: String,
    /// `%p`: where it goes.
    pub dest: String,
    /// The identities, parsed by each thread that decrypts (a parsed one is not `Sync`).
    pub decrypt: crate::stream::encrypt::EncryptOptions,
    /// How long failures are retried before fetch gives up (exit 255).
    pub retry_for: Duration,
    /// The data directory whose cluster must match the repository's (default: the working
    /// directory, which is the data directory when the server runs the command).
    pub pgdata: Option<PathBuf>,
    /// `--prefetch N`: after a segment, a background process fetches the next N-1 into the
    /// spool, where the server's calls for them find them.
    pub prefetch: usize,
    pub spool: Option<PathBuf>,
    /// `--no-sync`: `%p` is renamed into place unsynced (still whole or absent).
    pub no_sync: bool,
}

/// Set in the environment of the background process that prefetches.
pub const PREFETCH_CHILD: &str = "WEIR_WAL_PREFETCHING";

#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Restored,
    /// The repository is reachable and this cluster's, and holds no such file.
    Absent,
}

/// `restore_command = 'weir-wal fetch --repo URL %f %p'`.
pub fn fetch(o: &FetchOptions) -> Result<Fetched> {
    let name = WalName::parse(&o.name)?;
    let spool = o
        .spool
        .as_deref()
        .filter(|_| o.prefetch > 1 && name.kind == Kind::Segment);
    // The prefetcher holds a segment's lock while it fetches it: wait for it rather than
    // fetch the same segment twice.
    let _lock = match spool {
        Some(spool) => {
            std::fs::create_dir_all(spool)?;
            lock_file(spool, &name.name, true)?
        }
        None => None,
    };
    if let Some(spool) = spool {
        if take_prefetched(spool, &name, Path::new(&o.dest))? {
            start_background(PREFETCH_CHILD);
            return Ok(Fetched::Restored);
        }
    }
    let ids = crate::stream::encrypt::identities(&o.decrypt)?;
    let fetched = fetch_with_retries(o, &ids, &name)?;
    if fetched == Fetched::Restored && spool.is_some() {
        start_background(PREFETCH_CHILD);
    }
    Ok(fetched)
}

/// A segment fetched ahead (verified then, and renamed into the spool whole) moves to `%p`;
/// unless the spool is from another boot (see [`spool_boot`]), when it may not be whole.
fn take_prefetched(spool: &Path, name: &WalName, dest: &Path) -> Result<bool> {
    let file = spool.join(&name.name);
    if !file.exists() {
        return Ok(false);
    }
    if spool_boot(spool) == SpoolBoot::Other {
        let _ = std::fs::remove_file(&file);
        return Ok(false);
    }
    if std::fs::rename(&file, dest).is_err() {
        // Another file system: copy it whole, as a download would be written.
        let data = std::fs::read(&file)?;
        durable_write(dest, &data)?;
        let _ = std::fs::remove_file(&file);
    }
    Ok(true)
}

/// The background half of `--prefetch N`: the N-1 segments after `%f`, verified, into the
/// spool, by one worker per core, until one is absent. One prefetcher at a time (a lock in
/// the spool), and a lock per segment while it is fetched, which the server's call for it
/// waits on; segments before `%f` are cleared out, since recovery has passed them.
pub fn prefetch(o: &FetchOptions) -> Result<()> {
    let name = WalName::parse(&o.name)?;
    let spool = o
        .spool
        .as_deref()
        .ok_or_else(|| anyhow!("--prefetch needs --spool"))?;
    // The call that started this made the spool; gone or closed means recovery has ended
    // (see [`clear_spool`]), and a prefetcher must not make it again.
    if !spool.is_dir() || closed(spool) {
        return Ok(());
    }
    let Some(_one) = lock_file(spool, ".prefetcher", false)? else {
        return Ok(()); // another prefetcher is at work
    };
    clear_passed(spool, &name);
    // Unsynced spool files are whole while the machine runs; after a restart they may not be.
    let sync = match spool_boot(spool) {
        SpoolBoot::Same => false,
        SpoolBoot::Other => {
            clear_spooled(spool);
            mark_spool_boot(spool)
        }
        SpoolBoot::Unknown => true,
    };
    let repo = Repo::open(&o.repo, &o.s3)?;
    let rec = read_record(&repo)?.ok_or_else(|| anyhow!("no weir-wal repository"))?;
    let queue = following(&name, rec.segment_size, o.prefetch - 1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    // The first absent segment's place: nothing after it is fetched.
    let end = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let workers = cores().min(queue.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| -> Result<()> {
                use std::sync::atomic::Ordering::SeqCst;
                // Each worker its own: a parsed identity is not `Sync`.
                let repo = Repo::open(&o.repo, &o.s3)?;
                let ids = crate::stream::encrypt::identities(&o.decrypt)?;
                loop {
                    let i = next.fetch_add(1, SeqCst);
                    if i >= queue.len() || i > end.load(SeqCst) || closed(spool) {
                        return Ok(());
                    }
                    if prefetch_one(o, &repo, &ids, spool, &queue[i], sync)? == Fetched::Absent {
                        end.fetch_min(i, SeqCst);
                    }
                }
            });
        }
    });
    Ok(())
}

/// Set by [`clear_spool`]: the prefetcher stops after the segment it is fetching.
const CLOSED: &str = ".closed";

fn closed(spool: &Path) -> bool {
    spool.join(CLOSED).exists()
}

/// `weir-wal clear-spool DIR` (weir-restore-physical's recovery_end_command): stops the
/// prefetcher, waits for it (its lock), and removes the spool with what it fetched ahead
/// that recovery did not use. PostgreSQL runs the command once, when recovery has ended
/// (xlog.c, CleanupAfterArchiveRecovery), and only warns if it fails.
pub fn clear_spool(spool: &Path) -> Result<()> {
    if !spool.is_dir() {
        return Ok(());
    }
    std::fs::write(spool.join(CLOSED), b"")?;
    let _held = lock_file(spool, ".prefetcher", true)?;
    std::fs::remove_dir_all(spool).with_context(|| format!("cannot remove {}", spool.display()))
}

/// One segment into the spool, unless it is there or the server's call is fetching it.
fn prefetch_one(
    o: &FetchOptions,
    repo: &Repo,
    ids: &[Identity],
    spool: &Path,
    next: &str,
    sync: bool,
) -> Result<Fetched> {
    let target = spool.join(next);
    let Some(_lock) = lock_file(spool, next, false)? else {
        return Ok(Fetched::Restored);
    };
    if target.exists() {
        return Ok(Fetched::Restored);
    }
    fetch_once(o, repo, ids, &WalName::parse(next)?, &target, sync)
}

/// Where the spool's files were written, as far as a crash is concerned.
#[derive(PartialEq)]
enum SpoolBoot {
    /// Since the machine last started: a file renamed into the spool is whole (the page
    /// cache survives the crash of a process), synced or not.
    Same,
    /// Before the machine last started, or never marked: unsynced files may be torn.
    Other,
    /// The system says nothing of its boots (no Linux boot_id): spool files are synced.
    Unknown,
}

/// The kernel's identifier of this boot, new at every start of the machine.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Compares the boot the spool's `.boot` file names with this one.
fn spool_boot(spool: &Path) -> SpoolBoot {
    let Ok(now) = std::fs::read_to_string(BOOT_ID) else {
        return SpoolBoot::Unknown;
    };
    match std::fs::read_to_string(spool.join(".boot")) {
        Ok(then) if then == now => SpoolBoot::Same,
        _ => SpoolBoot::Other,
    }
}

/// Records this boot in the spool, synced, before any unsynced file goes there; returns
/// whether spool files must still be synced (when that failed).
fn mark_spool_boot(spool: &Path) -> bool {
    let Ok(now) = std::fs::read(BOOT_ID) else {
        return true;
    };
    durable_write(&spool.join(".boot"), &now).is_err()
}

/// Removes every spooled segment (after a restart of the machine: they may be torn).
fn clear_spooled(spool: &Path) {
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        if WalName::parse(&f).is_ok() || f.contains(".weir-tmp.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes what recovery has passed from the spool: segments (and their locks) before `name`
/// on its timeline, and temporary files of an interrupted prefetcher.
fn clear_passed(spool: &Path, name: &WalName) {
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        let base = f.strip_suffix(".lock").unwrap_or(&f);
        let stale = WalName::parse(base)
            .is_ok_and(|w| w.timeline == name.timeline && base < name.name.as_str());
        if stale || f.contains(".weir-tmp.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The `n` segment names after `name` on its timeline.
fn following(name: &WalName, segment_size: u32, n: usize) -> Vec<String> {
    let segno = segment_number(&name.name, segment_size);
    (1..=n as u64)
        .map(|i| segment_name(name.timeline, segno + i, segment_size))
        .collect()
}

fn fetch_with_retries(o: &FetchOptions, ids: &[Identity], name: &WalName) -> Result<Fetched> {
    let deadline = Instant::now() + o.retry_for;
    let mut pause = Duration::from_millis(250);
    loop {
        let attempt = Repo::open(&o.repo, &o.s3)
            .and_then(|repo| fetch_once(o, &repo, ids, name, Path::new(&o.dest), !o.no_sync));
        match attempt {
            Ok(f) => return Ok(f),
            // Damage, another cluster, a missing key or repository will not mend by waiting.
            Err(e) if permanent(&e) || Instant::now() + pause > deadline => return Err(e),
            Err(e) => {
                eprintln!(
                    "{}: {}; retrying",
                    crate::plumbing::program(),
                    crate::plumbing::one_line(&format!("{e:#}"))
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn permanent(e: &anyhow::Error) -> bool {
    matches!(
        crate::plumbing::exit_code_of(e),
        ExitCode::BadArchive | ExitCode::WrongCluster | ExitCode::Usage | ExitCode::NotFound
    )
}

/// One file to `dest`, synced before it is renamed there if `sync`.
fn fetch_once(
    o: &FetchOptions,
    repo: &Repo,
    ids: &[Identity],
    name: &WalName,
    dest: &Path,
    sync: bool,
) -> Result<Fetched> {
    let (record, object) = repo.read_two(CLUSTER, &object_key(name))?;
    // Without its record this is not a repository (a wrong URL, an empty bucket): saying
    // "absent" would end recovery early.
    let rec = parse_record(record)?.ok_or_else(|| {
        let m = format!("no weir-wal repository at {} (no {CLUSTER})", o.repo);
        coded(ExitCode::NotFound, m)
    })?;
    check_data_dir(&rec, o.pgdata.as_deref().unwrap_or(Path::new(".")))?;
    let Some(stored) = object else {
        return Ok(Fetched::Absent);
    };
    let restored = TempFile::beside(dest)?;
    sync_while(Some(restored.file()).filter(|_| sync), || {
        verified(&rec, name, stored, ids, false, restored.file())
    })
    .map_err(|e| e.context(format!("{} in {}", name.name, o.repo)))?;
    if sync {
        restored.sync()?;
    }
    restored.persist()?;
    Ok(Fetched::Restored)
}

/// Writes the file inside a stored object to `out`, checked: every layer (age authenticates
/// each chunk, each zstd frame carries its checksum); for a segment its header, its position
/// and its cluster; and the digest recorded at the push. A segment whose every byte a zstd
/// checksum covered, and whose header names this cluster and this position, needs no second
/// hash (SHA-256 of 16 MiB is a fifth of a fetch) unless `always_hash` asks for it.
pub(super) fn verified(
    rec: &ClusterRecord,
    name: &WalName,
    stored: crate::storage::repo::Stored,
    identities: &[Identity],
    always_hash: bool,
    out: &std::fs::File,
) -> Result<()> {
    let decoded = object::decode_to(stored.body, identities, out)?;
    if always_hash || !(decoded.checksummed && name.has_header()) {
        let digest = sha256_of(out, decoded.len)?;
        match &stored.sha256 {
            Some(d) if *d == digest => {}
            Some(_) => {
                let m = format!(
                    "{}: the digest does not match: the object is damaged",
                    name.name
                );
                return Err(bad_input(m));
            }
            None => {
                let m = format!("{}: the object has no digest to check", name.name);
                return Err(bad_input(m));
            }
        }
    }
    if name.has_header() {
        let mut head = vec![0u8; (decoded.len as usize).min(8192)];
        std::os::unix::fs::FileExt::read_exact_at(out, &mut head, 0)?;
        let h = check_segment(name, &head, decoded.len)?;
        rec.check(&name.name, &h)?;
    }
    Ok(())
}

/// The SHA-256 of the first `len` bytes of `f`, read back.
fn sha256_of(f: &std::fs::File, len: u64) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut at = 0u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        std::os::unix::fs::FileExt::read_exact_at(f, &mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}
