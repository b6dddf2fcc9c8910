//! weir-restore-physical: a weir-basebackup stream into an empty data directory, every file
//! checked against the backup manifest, then PostgreSQL's recovery settings: a
//! `restore_command` through `weir-wal fetch` and the recovery target.
//!
//! Nothing is left half-done: on any failure what was written is removed again, and
//! `recovery.signal` (without which the server would not recover) is written only after the
//! whole stream checked.
//!
//! Reference: PostgreSQL documentation 26.3.4 "Recovering Using a Continuous Archive Backup"
//! and 20.5.5 "Recovery Target" (the settings and their defaults).

use super::basebackup::{DATA, HEADER, Header, MANIFEST, TABLESPACES, TRAILER, Trailer};
use super::manifest::{self, Seen, Summing};
use crate::plumbing::{ExitCode, coded};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Where recovery stops (`recovery_target*`); `Latest` replays all the WAL there is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Latest,
    Immediate,
    Time(String),
    Lsn(String),
    Xid(String),
    Name(String),
}

#[derive(Clone)]
pub struct RestoreOptions {
    pub pgdata: PathBuf,
    /// Empty a non-empty data directory (and tablespace directories) first.
    pub clear: bool,
    /// `--delta`: over a stopped copy of the cluster, writing only what differs.
    pub delta: bool,
    pub input: Option<String>,
    /// `--from URL`: stored backups to read in-process, full first (see [`super::source`]).
    pub from: Vec<String>,
    pub target: Target,
    /// `recovery_target_inclusive`: stop just after the target (true) or just before.
    pub inclusive: bool,
    /// `recovery_target_action`: pause (PostgreSQL's default), promote or shutdown.
    pub action: String,
    /// `recovery_target_timeline`: latest (the default), current or a number.
    pub timeline: Option<String>,
    /// The full `restore_command`, or built from `repo` and `identity`.
    pub restore_command: Option<String>,
    pub repo: Option<String>,
    pub s3: crate::storage::S3Settings,
    pub identity: Option<PathBuf>,
    /// `-T OLD=NEW`: restore a tablespace somewhere else than where it was.
    pub tablespace_mapping: Vec<(PathBuf, PathBuf)>,
    /// `--prefetch N`: the restore_command weir writes fetches the next N-1 segments in the
    /// background into [`SPOOL`] (1: one segment per call).
    pub prefetch: usize,
    /// Skip the final sync of everything written (pg_basebackup --no-sync).
    pub no_sync: bool,
    /// Say nothing but errors and warnings.
    pub quiet: bool,
}

/// `weir-restore-physical`.
pub fn run(o: &RestoreOptions) -> Result<()> {
    if o.from.is_empty() {
        return restore(o, crate::plumbing::open_input(o.input.as_deref())?, None);
    }
    let chain = super::source::chain(o)?;
    let threads = crate::stream::compress::default_threads() as usize;
    for (i, url) in chain.iter().enumerate() {
        let last = i + 1 == chain.len();
        // As restore.sh does it: the first step clears if asked, the last aims at the target.
        let step = RestoreOptions {
            clear: o.clear && i == 0,
            target: if last {
                o.target.clone()
            } else {
                Target::Latest
            },
            ..o.clone()
        };
        if !o.quiet {
            eprintln!(
                "{}: restoring {url} ({} of {})",
                crate::plumbing::program(),
                i + 1,
                chain.len()
            );
        }
        if step.delta && chain.len() == 1 {
            if let Some(mut plan) = super::delta::plan(&step, url)? {
                return restore(&step, &mut plan.stream, Some(plan.kept))
                    .map_err(|e| plan.stream.error().unwrap_or(e))
                    .with_context(|| format!("restoring {url}"));
            }
        }
        let mut src = super::source::open(url, &o.s3, o.identity.as_deref(), threads)?;
        // A failed source is the cause of whatever the restore then reported.
        restore(&step, &mut src, None)
            .map_err(|e| src.error().unwrap_or(e))
            .with_context(|| format!("restoring {url}"))?;
    }
    Ok(())
}

/// One stream into the data directory; for a delta restore that read only what differs,
/// `kept` are the files it keeps as the directory holds them or patches piece by piece
/// (see [`super::delta`]).
fn restore(o: &RestoreOptions, input: impl Read, kept: Option<super::delta::Kept>) -> Result<()> {
    let restore_command = restore_command(o)?;
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries()?;
    let header = read_header(&mut entries)?;
    if let Some(url) = &o.repo {
        check_archive(url, &o.s3, &header, &o.target)?;
    }
    let locations = tablespace_locations(&header, &o.tablespace_mapping)?;
    let mut dirs = vec![o.pgdata.clone()];
    dirs.extend(locations.values().cloned());
    let incremental = header.parent.is_some();
    let mut guard = match incremental || o.delta {
        false => Created::prepare(&dirs, o.clear)?,
        true => super::chain::prepare(o, &header, &dirs)?,
    };
    // Each directory's file system, synced while the stream arrives and once more at the end.
    let mut synced = Vec::new();
    if !o.no_sync {
        for d in &dirs {
            let f = fs::File::open(d).with_context(|| format!("cannot open {}", d.display()))?;
            synced.push((d, f));
        }
    }
    let mut written = None;
    let trailer = writing_back(&synced, || match incremental || o.delta {
        false => unpack(
            &mut entries,
            &o.pgdata,
            &locations,
            &header,
            Seen::new(),
            |entry, dest, listed, seen| {
                if let Some(sum) = write_member(entry, &dest)? {
                    seen.insert(listed, sum);
                }
                Ok(())
            },
        ),
        true => {
            let w = super::chain::Written::default();
            let t = kept.unwrap_or_default().patch(&w).and_then(|kept| {
                super::chain::apply(
                    &mut entries,
                    &o.pgdata,
                    &locations,
                    &header,
                    o.delta,
                    kept,
                    &w,
                )
            });
            written = Some(w);
            t
        }
    })?;
    for (oid, location) in &locations {
        let link = o.pgdata.join("pg_tblspc").join(oid);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(location, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    if !o.tablespace_mapping.is_empty() {
        write_tablespace_map(&o.pgdata, &locations)?;
    }
    write_recovery_settings(o, &restore_command)?;
    for (d, f) in &synced {
        rustix::fs::syncfs(f).with_context(|| format!("cannot sync {}", d.display()))?;
    }
    guard.disarm();
    if !o.quiet {
        eprintln!(
            "{}: restored backup {} ({} to {}, timeline {}) into {}{}",
            crate::plumbing::program(),
            header.label,
            header.start_lsn,
            trailer.stop_lsn,
            header.timeline,
            o.pgdata.display(),
            written.map_or(String::new(), |w| w.describe())
        );
    }
    Ok(())
}

/// Runs `work` while a second thread has the kernel write back what it writes (one syncfs per
/// directory's file system every 100 ms), so that the disk works while the stream still
/// arrives and the final sync finds little left to write; the way weir-wal push syncs a
/// segment while it compresses. With this and 1 MiB writes, a 1 GB base backup restored from
/// a file in 1.26-1.82 s, against 2.86-3.55 s before (synced either way).
fn writing_back<R>(dirs: &[(&PathBuf, fs::File)], work: impl FnOnce() -> R) -> R {
    if dirs.is_empty() {
        return work();
    }
    // A failure shows again in the final sync, which is checked.
    let tick = || {
        for (_, f) in dirs {
            let _ = rustix::fs::syncfs(f);
        }
    };
    crate::plumbing::alongside(std::time::Duration::from_millis(100), tick, work)
}

pub(super) fn bad(m: String) -> anyhow::Error {
    coded(ExitCode::BadArchive, m)
}

fn read_header<R: Read>(entries: &mut tar::Entries<R>) -> Result<Header> {
    let not_ours = || bad("the input is not a weir-basebackup stream".into());
    let mut first = entries
        .next()
        .ok_or_else(not_ours)?
        .map_err(|_| not_ours())?;
    if first.path()?.to_str() != Some(HEADER) {
        return Err(not_ours());
    }
    let mut json = Vec::new();
    first.read_to_end(&mut json)?;
    let h: Header = serde_json::from_slice(&json).map_err(|_| not_ours())?;
    // Version 2 is an incremental backup (a parent named in the header).
    if h.format != "weir-basebackup" || !(h.version == 1 || (h.version == 2 && h.parent.is_some()))
    {
        return Err(bad(format!(
            "the stream is {} version {}, which this weir does not read",
            h.format, h.version
        )));
    }
    Ok(h)
}

/// The repository must hold this cluster's WAL from the backup's start on, without a gap: a
/// missing segment would end recovery there. With no target, PostgreSQL would then open
/// the database without what came after, so that is refused; with a target, PostgreSQL
/// itself refuses to end recovery before reaching it ("recovery ended before configured
/// recovery target was reached"), so a gap past the backup's end is only a warning.
fn check_archive(
    url: &str,
    s3: &crate::storage::S3Settings,
    h: &Header,
    target: &Target,
) -> Result<()> {
    use super::inventory::{entries, gaps, segments};
    let repo = crate::storage::repo::Repo::open(url, s3)?;
    let rec = super::wal::read_record(&repo)?
        .ok_or_else(|| anyhow!("no weir-wal repository at {url}"))?;
    let backup =
        super::wal::ClusterRecord::describing(h.system_identifier.clone(), h.major, h.segment_size);
    rec.refuse_other("the base backup", url, &backup)?;
    let list = entries(&repo)?;
    let names = segments(&list, h.timeline);
    let last = names.last().copied().unwrap_or(h.start_wal.as_str());
    let stop = last.max(h.start_wal.as_str());
    let missing = gaps(&names, h.segment_size, Some((&h.start_wal, stop)))?;
    let Some(first) = missing.first() else {
        return Ok(());
    };
    let m = format!(
        "{first} is not in {url} ({} missing between {} and {last}): recovery would stop there",
        missing.len(),
        h.start_wal
    );
    if *target == Target::Latest {
        bail!("{m}; give a recovery target before it to restore anyway");
    }
    eprintln!("{}: warning: {m}", crate::plumbing::program());
    Ok(())
}

/// Each tablespace's directory: where it was, unless `-T OLD=NEW` moves it.
pub(super) fn tablespace_locations(
    h: &Header,
    mapping: &[(PathBuf, PathBuf)],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut m = BTreeMap::new();
    for t in h.tablespaces.iter().filter(|t| !t.oid.is_empty()) {
        let was = PathBuf::from(&t.location);
        let to = mapping
            .iter()
            .find(|(old, _)| *old == was)
            .map(|(_, new)| new.clone())
            .unwrap_or(was);
        m.insert(t.oid.clone(), to);
    }
    for (old, _) in mapping {
        if !h.tablespaces.iter().any(|t| Path::new(&t.location) == old) {
            bail!("-T {}: the backup has no tablespace there", old.display());
        }
    }
    Ok(m)
}

/// Hands every member to `member` with its place on disk and its path in the manifest (it
/// writes it, and records in `seen` what the manifest checks); at the trailer, checks the
/// manifest and writes it into the data directory.
pub(super) fn unpack<R: Read>(
    entries: &mut tar::Entries<R>,
    pgdata: &Path,
    locations: &BTreeMap<String, PathBuf>,
    header: &Header,
    mut seen: Seen,
    mut member: impl FnMut(&mut tar::Entry<'_, R>, PathBuf, String, &mut Seen) -> Result<()>,
) -> Result<Trailer> {
    let mut manifest: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the backup stream is damaged: {e}")))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name == TRAILER {
            let mut json = Vec::new();
            entry.read_to_end(&mut json)?;
            let t: Trailer = serde_json::from_slice(&json)
                .map_err(|e| bad(format!("the stream's {TRAILER} is not valid: {e}")))?;
            let m = manifest.ok_or_else(|| bad("the stream has no backup manifest".into()))?;
            manifest::check(&m, &seen)?;
            fs::write(pgdata.join(MANIFEST), &m)?;
            return Ok(t);
        }
        if name == format!("{DATA}{MANIFEST}") {
            let mut m = Vec::new();
            entry.read_to_end(&mut m)?;
            manifest = Some(m);
            continue;
        }
        let (dest, in_manifest) = destination(&name, pgdata, locations)?;
        member(&mut entry, dest, in_manifest, &mut seen)?;
    }
    Err(bad(format!(
        "the backup stream of {} ends early: it was cut off, or the backup did not finish",
        header.label
    )))
}

/// A member's place on disk and its path in the manifest.
pub(super) fn destination(
    name: &str,
    pgdata: &Path,
    locations: &BTreeMap<String, PathBuf>,
) -> Result<(PathBuf, String)> {
    let name = name.trim_end_matches('/');
    if name == DATA.trim_end_matches('/') {
        return Ok((pgdata.to_path_buf(), String::new()));
    }
    if let Some(rel) = name.strip_prefix(DATA) {
        return Ok((pgdata.join(safe(rel)?), rel.to_string()));
    }
    if let Some(rest) = name.strip_prefix(TABLESPACES) {
        let (oid, rel) = rest.split_once('/').unwrap_or((rest, ""));
        let base = locations.get(oid).ok_or_else(|| {
            bad(format!(
                "{name}: a tablespace the stream's header does not list"
            ))
        })?;
        return Ok((base.join(safe(rel)?), format!("pg_tblspc/{oid}/{rel}")));
    }
    Err(bad(format!("{name}: not part of a weir-basebackup stream")))
}

/// A relative path that stays inside its directory.
fn safe(rel: &str) -> Result<&Path> {
    let p = Path::new(rel);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(p)
    } else {
        Err(bad(format!("{rel}: a path that leaves the data directory")))
    }
}

/// Writes one member; returns length and CRC-32C for a file.
pub(super) fn write_member<R: Read>(
    entry: &mut tar::Entry<R>,
    dest: &Path,
) -> Result<Option<(u64, u32)>> {
    let kind = entry.header().entry_type();
    match kind {
        tar::EntryType::Directory => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
            Ok(None)
        }
        tar::EntryType::Regular => {
            let size = entry.header().size()?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
            let mut summed = Summing::new(entry);
            // In 1 MiB writes: io::copy's 8 KiB would be 128,000 write calls per GB.
            crate::plumbing::copy(&mut summed, &mut f, &mut |_| {})
                .map_err(|e| bad(format!("{}: the stream is damaged: {e:#}", dest.display())))?;
            let sum = summed.sum();
            if sum.0 != size {
                return Err(bad(format!(
                    "{}: the stream ends inside it",
                    dest.display()
                )));
            }
            Ok(Some(sum))
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| bad(format!("{}: a link without a target", dest.display())))?;
            std::os::unix::fs::symlink(&target, dest)?;
            Ok(None)
        }
        t => Err(bad(format!(
            "{}: unexpected member type {t:?}",
            dest.display()
        ))),
    }
}

/// Recovery recreates pg_tblspc's links from `tablespace_map`, so a moved tablespace must be
/// written there too: one `OID PATH` line each, backslash and newline escaped with a
/// backslash (as PostgreSQL writes it, src/backend/access/transam/xlog.c). The manifest's
/// checksum of this one file then no longer matches, which pg_verifybackup reports.
fn write_tablespace_map(pgdata: &Path, locations: &BTreeMap<String, PathBuf>) -> Result<()> {
    let mut map = String::new();
    for (oid, path) in locations {
        let p = path.to_string_lossy();
        let escaped = p.replace('\\', "\\\\").replace('\n', "\\\n");
        map.push_str(&format!("{oid} {escaped}\n"));
    }
    fs::write(pgdata.join("tablespace_map"), map)?;
    Ok(())
}

/// The `restore_command` recovery runs: given, or `weir-wal fetch` from the repository.
fn restore_command(o: &RestoreOptions) -> Result<String> {
    if let Some(c) = &o.restore_command {
        return Ok(c.clone());
    }
    let repo = o.repo.as_ref().ok_or_else(|| {
        coded(
            ExitCode::Usage,
            "recovery needs the archived WAL: give --repo URL (weir-wal's repository) or --restore-command",
        )
    })?;
    let mut c = format!("{} fetch --repo {}", weir_wal(), shell_quote(repo));
    if let Some(i) = &o.identity {
        let abs = std::path::absolute(i)?;
        c.push_str(&format!(" -i {}", shell_quote(&abs.to_string_lossy())));
    }
    // -N: PostgreSQL syncs a restored segment it keeps itself (durable_rename in
    // xlogarchive.c, KeepFileRestoredFromArchive) and removes %p before each call, so a sync
    // here would be a second one, about 10 ms a segment on this disk (docs/BENCHMARKS.md).
    c.push_str(" -N");
    if o.prefetch > 1 {
        c.push_str(&format!(" --prefetch {} --spool {SPOOL}", o.prefetch));
    }
    c.push_str(" %f %p");
    Ok(c)
}

/// Where the restore_command weir writes keeps segments fetched ahead, relative to the data
/// directory (the server's working directory). Inside pg_wal: on the same file system as
/// `%p`, so taking one is a rename; owned by the server's user; and left out of base backups,
/// which copy nothing of pg_wal but archive_status (basebackup.c, and weir's --pgdata).
pub const SPOOL: &str = "pg_wal/weir-prefetch";

/// The recovery_end_command that removes [`SPOOL`] with what recovery did not use.
fn recovery_end_command(o: &RestoreOptions) -> Option<String> {
    (o.restore_command.is_none() && o.prefetch > 1)
        .then(|| format!("{} clear-spool {SPOOL}", weir_wal()))
}

/// The weir-wal beside this binary, so that the server finds it whatever its PATH.
fn weir_wal() -> String {
    let wal = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("weir-wal")))
        .filter(|p| p.exists())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "weir-wal".into());
    shell_quote(&wal)
}

/// Quotes for the shell that runs restore_command, unless nothing needs it.
fn shell_quote(s: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The settings, as lines of postgresql.conf (single quotes doubled inside values).
pub fn recovery_settings(o: &RestoreOptions, restore_command: &str) -> Vec<(String, String)> {
    let mut s = vec![("restore_command".to_string(), restore_command.to_string())];
    if let Some(c) = recovery_end_command(o) {
        s.push(("recovery_end_command".into(), c));
    }
    let (key, value) = match &o.target {
        Target::Latest => ("", String::new()),
        Target::Immediate => ("recovery_target", "immediate".to_string()),
        Target::Time(t) => ("recovery_target_time", t.clone()),
        Target::Lsn(l) => ("recovery_target_lsn", l.clone()),
        Target::Xid(x) => ("recovery_target_xid", x.clone()),
        Target::Name(n) => ("recovery_target_name", n.clone()),
    };
    if !key.is_empty() {
        s.push((key.into(), value));
        if o.target != Target::Immediate {
            s.push(("recovery_target_inclusive".into(), o.inclusive.to_string()));
        }
        s.push(("recovery_target_action".into(), o.action.clone()));
    }
    if let Some(t) = &o.timeline {
        s.push(("recovery_target_timeline".into(), t.clone()));
    }
    s
}

/// Appends the settings to postgresql.auto.conf (as `pg_basebackup -R` does) and creates
/// recovery.signal.
fn write_recovery_settings(o: &RestoreOptions, restore_command: &str) -> Result<()> {
    use std::io::Write;
    let auto = o.pgdata.join("postgresql.auto.conf");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&auto)
        .with_context(|| format!("cannot write {}", auto.display()))?;
    writeln!(f, "# recovery settings written by weir-restore-physical")?;
    for (k, v) in recovery_settings(o, restore_command) {
        writeln!(f, "{k} = '{}'", v.replace('\'', "''"))?;
    }
    fs::write(o.pgdata.join("recovery.signal"), b"")?;
    Ok(())
}

/// The directories this restore fills, emptied again if it fails; or, for an incremental
/// backup applied over its parent, made unstartable (see [`super::chain`]).
pub(super) struct Created {
    pub(super) dirs: Vec<PathBuf>,
    pub(super) armed: bool,
    pub(super) spoil_only: bool,
}

impl Created {
    /// Each directory must be empty or absent (or `clear` empties it); none may hold a
    /// running server.
    fn prepare(dirs: &[PathBuf], clear: bool) -> Result<Created> {
        for d in dirs {
            if d.join("postmaster.pid").exists() {
                bail!(
                    "{} holds a postmaster.pid: stop that server first",
                    d.display()
                );
            }
            let busy = fs::read_dir(d)
                .map(|mut r| r.next().is_some())
                .unwrap_or(false);
            if busy && !clear {
                bail!(
                    "{} exists and is not empty (--clear empties it first)",
                    d.display()
                );
            }
        }
        let c = Created {
            dirs: dirs.to_vec(),
            armed: true,
            spoil_only: false,
        };
        for d in dirs {
            empty(d)?;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))?;
        }
        Ok(c)
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.armed {
        } else if self.spoil_only {
            super::chain::spoil(&self.dirs[0]);
        } else {
            for d in &self.dirs {
                let _ = empty(d);
            }
        }
    }
}

/// Removes what a directory holds, keeping the directory (it may be a mount point).
fn empty(d: &Path) -> Result<()> {
    let Ok(list) = fs::read_dir(d) else {
        return Ok(());
    };
    for e in list {
        let p = e?.path();
        let meta = fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: Target) -> RestoreOptions {
        RestoreOptions {
            pgdata: "/tmp/x".into(),
            clear: false,
            delta: false,
            input: None,
            from: Vec::new(),
            target,
            inclusive: true,
            action: "pause".into(),
            timeline: None,
            restore_command: None,
            repo: Some("s3://b/c".into()),
            s3: Default::default(),
            identity: None,
            tablespace_mapping: vec![],
            prefetch: 1,
            no_sync: false,
            quiet: false,
        }
    }

    #[test]
    fn each_target_becomes_its_recovery_setting_with_the_action() {
        let s = recovery_settings(
            &options(Target::Time("2026-12-01 10:00:00+00".into())),
            "cmd",
        );
        assert_eq!(s[0], ("restore_command".into(), "cmd".into()));
        assert!(s.contains(&(
            "recovery_target_time".into(),
            "2026-12-01 10:00:00+00".into()
        )));
        assert!(s.contains(&("recovery_target_action".into(), "pause".into())));
        let s = recovery_settings(&options(Target::Immediate), "cmd");
        assert!(s.contains(&("recovery_target".into(), "immediate".into())));
        assert!(!s.iter().any(|(k, _)| k == "recovery_target_inclusive"));
        let s = recovery_settings(&options(Target::Latest), "cmd");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn paths_that_leave_the_data_directory_are_refused() {
        assert!(safe("base/1/1259").is_ok());
        assert!(safe("../etc/passwd").is_err());
        assert!(safe("/etc/passwd").is_err());
        let locs = BTreeMap::new();
        assert!(destination("tablespaces/99/x", Path::new("/d"), &locs).is_err());
        assert!(destination("other/x", Path::new("/d"), &locs).is_err());
        let (p, m) = destination("data/base/1/1259", Path::new("/d"), &locs).unwrap();
        assert_eq!(
            (p, m.as_str()),
            (PathBuf::from("/d/base/1/1259"), "base/1/1259")
        );
    }

    #[test]
    fn restore_commands_quote_what_the_shell_would_split() {
        assert_eq!(shell_quote("s3://b/c"), "s3://b/c");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        let c = restore_command(&options(Target::Latest)).unwrap();
        assert!(c.ends_with("fetch --repo s3://b/c -N %f %p"), "{c}");
    }

    #[test]
    fn a_prefetching_restore_command_clears_its_spool_when_recovery_ends() {
        let o = RestoreOptions {
            prefetch: 4,
            ..options(Target::Latest)
        };
        let c = restore_command(&o).unwrap();
        assert!(
            c.ends_with(" -N --prefetch 4 --spool pg_wal/weir-prefetch %f %p"),
            "{c}"
        );
        let s = recovery_settings(&o, &c);
        let end = &s
            .iter()
            .find(|(k, _)| k == "recovery_end_command")
            .unwrap()
            .1;
        assert!(
            end.ends_with("weir-wal clear-spool pg_wal/weir-prefetch"),
            "{end}"
        );
        // A command of the user's own: nothing of weir's to clear.
        let own = RestoreOptions {
            restore_command: Some("cp /a/%f %p".into()),
            ..o
        };
        assert!(recovery_end_command(&own).is_none());
    }
}
