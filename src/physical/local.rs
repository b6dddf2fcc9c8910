//! `weir-basebackup --pgdata DIR`: the base backup read from the data directory on this host,
//! between `pg_backup_start()` and `pg_backup_stop()` on an ordinary connection (the low-level
//! API of PostgreSQL documentation 26.3.3, which pgBackRest and WAL-G use too), instead of
//! through the server's `BASE_BACKUP`. The stream is the same (docs/FORMAT.md, section 12);
//! its `backup_manifest` is written by weir in PostgreSQL's format, so pg_verifybackup and
//! weir-restore-physical check it as they check the server's.
//!
//! Reading the files here is what lets a backup read them in parallel (`-j`), and later look
//! inside them (incremental backups need each page's LSN). What is left out follows
//! src/backend/backup/basebackup.c (PostgreSQL 15): the contents of pg_wal and of the
//! directories the server empties at startup, temporary files and relations, the relcache
//! init files, and every fork but the init fork of an unlogged relation.

use super::basebackup::{
    self, BackupOptions, DATA, End, HEADER, Header, MANIFEST, Server, TABLESPACES, Tablespace,
};
use super::index::Indexed;
use super::manifest::{self, Listed, Seen};
use crate::pg::replication::{format_lsn, parse_lsn};
use crate::plumbing::{ExitCode, Output, Progress, coded};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Directories whose contents the server removes or rebuilds at startup: the directory goes
/// in the backup, its contents do not (basebackup.c, `excludeDirContents`).
const EMPTIED: &[&str] = &[
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files never copied (basebackup.c, `excludeFiles`): rebuilt at startup, or belonging to
/// another backup or to the running server. `pg_internal.init` is matched as a prefix.
const SKIPPED: &[&str] = &[
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postmaster.pid",
    "postmaster.opts",
];

/// How much of a file a reader hands over at a time; a file in flight holds at most four
/// pieces queued and one in the writer's hands.
const PIECE: usize = 2 << 20;

/// One member of the stream, in the order written.
struct Member {
    /// Its name in the stream (`data/...`, `tablespaces/OID/...`).
    name: String,
    /// Its path in the manifest (relative to the data directory).
    listed: String,
    source: PathBuf,
    kind: Kind,
    mode: u32,
    modified: SystemTime,
    /// A relation's main fork (`NNN` or `NNN.SEG` in a database directory): what an
    /// incremental backup sends block by block.
    relation: bool,
}

/// Relation pages, PostgreSQL's BLCKSZ; an incremental backup needs the server's to be it.
const BLOCK: u64 = 8192;

/// The parent an incremental backup sends the changes since: where it started, and the
/// size of each file it held.
struct Since<'a> {
    lsn: u64,
    files: &'a std::collections::BTreeMap<String, u64>,
}

enum Kind {
    Dir,
    File(u64),
    Link(PathBuf),
}

/// `weir-basebackup --pgdata DIR`.
pub fn run(o: &BackupOptions, pgdata: &Path) -> Result<()> {
    let started = Instant::now();
    let parent = match &o.incremental_from {
        Some(f) => Some(read_parent(f)?),
        None => None,
    };
    let mut client = o.conn.connect()?;
    let server = identify(&mut client, pgdata)?;
    let repo = basebackup::open_repo(o, &server)?;
    let spaces = tablespaces(&mut client)?;
    let start: String = client
        .query_one(
            "SELECT pg_backup_start($1, $2)::text",
            &[&o.label, &o.fast_checkpoint],
        )
        .context("pg_backup_start")?
        .get(0);
    let start_lsn = parse_lsn(&start)?;
    let timeline = checkpoint_timeline(&mut client)?;
    let mut header = Header::new(o, &server, timeline, start_lsn, spaces.clone());
    if let Some(p) = &parent {
        check_parent(&mut client, p, start_lsn, timeline)?;
        header.version = 2;
        header.parent = Some(super::basebackup::ParentRef {
            manifest_checksum: p.checksum.clone(),
            start_lsn: p.start_lsn.clone(),
        });
    }
    let members = members(pgdata, &spaces)?;
    let total = members
        .iter()
        .map(|m| match m.kind {
            Kind::File(n) => n,
            _ => 0,
        })
        .sum();
    let mut out = tar::Builder::new(Indexed::new(Output::open(o.output.as_deref(), true)?));
    basebackup::append_json(&mut out, HEADER, &header)?;
    let mut progress = Progress::new(Some(total), o.progress, o.quiet).bytes_only();
    let since = match &parent {
        Some(p) => Some(Since {
            lsn: parse_lsn(&p.start_lsn)?,
            files: &p.files,
        }),
        None => None,
    };
    let mut listed = copy_members(&members, o.jobs, since.as_ref(), &mut out, &mut progress)?;
    progress.clear();
    // The session ending aborts the backup (a failure above needs no pg_backup_stop).
    let stop = client
        .query_one(
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)",
            &[],
        )
        .context("pg_backup_stop")?;
    let stop_lsn = parse_lsn(stop.get::<_, &str>(0))?;
    if checkpoint_timeline(&mut client)? != timeline {
        bail!("the server's timeline changed during the backup: take it again");
    }
    for (name, text) in [
        ("backup_label", stop.get(1)),
        ("tablespace_map", stop.get(2)),
    ] {
        let text: &str = text;
        if name == "backup_label" || !text.is_empty() {
            basebackup::append_bytes(&mut out, &format!("{DATA}{name}"), text.as_bytes())?;
            listed.push(listing(name, text.as_bytes()));
        }
    }
    let seen: Seen = listed
        .iter()
        .map(|l| (l.path.clone(), (l.size, l.crc.unwrap_or(0))))
        .collect();
    let m = manifest::write(&listed, timeline, &start, &format_lsn(stop_lsn));
    basebackup::append_bytes(&mut out, &format!("{DATA}{MANIFEST}"), &m)?;
    let end = End {
        stop_lsn,
        stop_timeline: timeline,
        seen: &seen,
        manifest: &m,
        started,
    };
    basebackup::finish(o, out, &header, &server, repo.as_ref(), end)
}

fn listing(path: &str, data: &[u8]) -> Listed {
    Listed {
        path: path.into(),
        size: data.len() as u64,
        modified: SystemTime::now(),
        crc: Some(manifest::crc32c(data)),
    }
}

fn read_parent(f: &Path) -> Result<manifest::Parent> {
    let bytes = fs::read(f).with_context(|| format!("--incremental-from {}", f.display()))?;
    manifest::parent(&bytes).map_err(|e| e.context(format!("--incremental-from {}", f.display())))
}

/// The parent must be an earlier backup of this timeline, and the pages the same size as
/// the ones this reads.
fn check_parent(
    client: &mut postgres::Client,
    p: &manifest::Parent,
    start_lsn: u64,
    timeline: u32,
) -> Result<()> {
    let block: String = client
        .query_one("SELECT current_setting('block_size')", &[])?
        .get(0);
    if block != BLOCK.to_string() {
        bail!("the server's pages are {block} bytes: incremental backups read {BLOCK}-byte pages");
    }
    if parse_lsn(&p.start_lsn)? >= start_lsn || p.timeline != timeline {
        return Err(coded(
            ExitCode::WrongCluster,
            format!(
                "the parent started at {} on timeline {}, and this backup at {} on timeline {timeline}: not an earlier backup of this cluster's timeline",
                p.start_lsn,
                p.timeline,
                format_lsn(start_lsn)
            ),
        ));
    }
    Ok(())
}

/// The server's identity, and proof that `pgdata` is its data directory: the same path as
/// the server's `data_directory` (a standby's directory on the same host has the same system
/// identifier, and would be the wrong files to read between the primary's start and stop),
/// and the same system identifier in its `global/pg_control`.
fn identify(client: &mut postgres::Client, pgdata: &Path) -> Result<Server> {
    let row = client
        .query_one(
            "SELECT system_identifier::text, current_setting('server_version_num')::int, current_setting('wal_segment_size'), current_setting('data_directory') FROM pg_control_system()",
            &[],
        )
        .context("reading the server's identity (reading data_directory needs superuser or pg_read_all_settings)")?;
    let version: i32 = row.get(1);
    if version < 150000 {
        bail!(
            "the server runs PostgreSQL {}: --pgdata needs 15 or later (pg_backup_start)",
            version / 10000
        );
    }
    let sysid: u64 = row.get::<_, &str>(0).parse()?;
    let theirs = PathBuf::from(row.get::<_, &str>(3));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let ours = match same(pgdata, &theirs) {
        true => super::walfile::control_system_identifier(pgdata)
            .with_context(|| format!("--pgdata {}", pgdata.display()))?,
        false => 0,
    };
    if ours != sysid {
        return Err(coded(
            ExitCode::WrongCluster,
            format!(
                "--pgdata {} is not the data directory of the server connected to (it runs on {}, cluster {sysid})",
                pgdata.display(),
                theirs.display()
            ),
        ));
    }
    Ok(Server {
        system_identifier: sysid,
        server_version: version as u32,
        segment_size: basebackup::parse_size(row.get(2))?,
    })
}

fn checkpoint_timeline(client: &mut postgres::Client) -> Result<u32> {
    let tli: i32 = client
        .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])?
        .get(0);
    Ok(tli as u32)
}

fn tablespaces(client: &mut postgres::Client) -> Result<Vec<Tablespace>> {
    let rows = client.query(
        "SELECT oid::text, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Tablespace {
            oid: r.get(0),
            location: r.get(1),
        })
        .collect())
}

/// Every member of the backup: the data directory, then each tablespace's directory.
fn members(pgdata: &Path, spaces: &[Tablespace]) -> Result<Vec<Member>> {
    let mut v = Vec::new();
    walk(pgdata, DATA, "", &mut v)?;
    for t in spaces {
        let at = Path::new(&t.location);
        walk(
            at,
            &format!("{TABLESPACES}{}/", t.oid),
            &format!("pg_tblspc/{}/", t.oid),
            &mut v,
        )?;
    }
    // pg_control last, as basebackup.c sends it: read after every other file, it is at
    // least as new as any of them (what a backup from a standby needs).
    let control = format!("{DATA}global/pg_control");
    if let Some(i) = v.iter().position(|m| m.name == control) {
        let m = v.remove(i);
        v.push(m);
    }
    Ok(v)
}

/// The members under `dir` (its own entry first), named `prefix` + relative path in the
/// stream and `listed` + relative path in the manifest.
fn walk(dir: &Path, prefix: &str, listed: &str, out: &mut Vec<Member>) -> Result<()> {
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    out.push(member(
        dir,
        prefix.trim_end_matches('/'),
        "",
        Kind::Dir,
        &meta,
    ));
    descend(dir, prefix, listed, "", out)
}

fn descend(dir: &Path, prefix: &str, listed: &str, rel: &str, out: &mut Vec<Member>) -> Result<()> {
    let mut names: Vec<(String, fs::DirEntry)> = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow!("{}: a file name that is not UTF-8 ({n:?})", dir.display()))?;
        names.push((name, e));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let db_dir = is_database_dir(prefix, rel);
    let inits: Vec<&str> = names
        .iter()
        .filter_map(|(n, _)| n.strip_suffix("_init"))
        .collect();
    for (name, e) in &names {
        let path = format!("{rel}{name}");
        if skipped(name) || (db_dir && (temp_relation(name) || unlogged_data(name, &inits))) {
            continue;
        }
        // A file removed since it was listed (a dropped table) is simply not in the backup.
        let Ok(meta) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() || (rel.is_empty() && name == "pg_wal" && ft.is_symlink()) {
            out.push(member(
                &e.path(),
                &format!("{prefix}{path}"),
                &format!("{listed}{path}"),
                Kind::Dir,
                &meta,
            ));
            if rel.is_empty() && prefix == DATA && name == "pg_wal" {
                let status = format!("{prefix}pg_wal/archive_status");
                out.push(member(&e.path(), &status, "", Kind::Dir, &meta));
                continue;
            }
            if (rel.is_empty() && prefix == DATA && name == "pg_tblspc")
                || EMPTIED.contains(&name.as_str())
            {
                continue;
            }
            descend(&e.path(), prefix, listed, &format!("{path}/"), out)?;
        } else if ft.is_file() {
            let kind = Kind::File(meta.len());
            let at = (format!("{prefix}{path}"), format!("{listed}{path}"));
            let mut m = member(&e.path(), &at.0, &at.1, kind, &meta);
            m.relation = db_dir && main_fork(name);
            out.push(m);
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path())?;
            out.push(member(
                &e.path(),
                &format!("{prefix}{path}"),
                "",
                Kind::Link(target),
                &meta,
            ));
        }
        // Sockets and other special files are not part of a cluster.
    }
    Ok(())
}

fn member(source: &Path, name: &str, listed: &str, kind: Kind, meta: &fs::Metadata) -> Member {
    Member {
        name: name.to_string(),
        listed: listed.to_string(),
        source: source.to_path_buf(),
        kind,
        mode: meta.mode() & 0o7777,
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        relation: false,
    }
}

/// `NNN` or `NNN.SEG`: a relation's main fork (the free space and visibility maps, whose
/// pages are not all WAL-logged with an LSN, go whole).
fn main_fork(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name.split_once('.') {
        Some((rel, seg)) => digits(rel) && digits(seg),
        None => digits(name),
    }
}

fn skipped(name: &str) -> bool {
    SKIPPED.contains(&name) || name.starts_with("pg_internal.init") || name.starts_with("pgsql_tmp")
}

/// `base/OID/` in the data directory, `PG_15_.../OID/` in a tablespace: where relation files
/// live (basebackup.c's `isDbDir`).
fn is_database_dir(prefix: &str, rel: &str) -> bool {
    let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
    match (prefix.starts_with(TABLESPACES), parts.as_slice()) {
        (false, ["base", _]) => true,
        (true, [version, _]) => version.starts_with("PG_"),
        _ => false,
    }
}

/// `tNNN_NNN[_fork][.seg]`: a temporary relation's file (`looks_like_temp_rel_name`).
fn temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let base = rest.split('.').next().unwrap_or("");
    let mut parts = base.split('_');
    matches!((parts.next(), parts.next()), (Some(a), Some(b)) if digits(a) && digits(b))
}

/// A fork other than `_init` of a relation that has an init fork: an unlogged relation,
/// which recovery rebuilds empty from its init fork.
fn unlogged_data(name: &str, inits: &[&str]) -> bool {
    if name.ends_with("_init") {
        return false;
    }
    let relfilenode = name.split(['_', '.']).next().unwrap_or("");
    !relfilenode.is_empty() && inits.contains(&relfilenode)
}

/// What a reader hands the writer for one file: first how it goes, then its pieces.
enum Part {
    /// The whole file, in the pieces that follow.
    Whole,
    /// An incremental backup's changed blocks of a relation file, as one member (see
    /// [`delta`]); `blocks` is the file's length in blocks.
    Delta {
        blocks: u64,
        member: Vec<u8>,
    },
    Piece(Vec<u8>),
}

type Parts = crossbeam_channel::Receiver<io::Result<Part>>;

/// Writes every member to `out`: directories and links as they come, files through `jobs`
/// readers that read ahead in pieces while the writer takes the files in order. Returns the
/// manifest's listing of the files.
fn copy_members(
    members: &[Member],
    jobs: usize,
    since: Option<&Since>,
    out: &mut tar::Builder<Indexed<Output>>,
    progress: &mut Progress,
) -> Result<Vec<Listed>> {
    let (work_tx, work_rx) =
        crossbeam_channel::unbounded::<(usize, crossbeam_channel::Sender<io::Result<Part>>)>();
    let (order_tx, order_rx) = crossbeam_channel::bounded::<Parts>(jobs);
    let mut listed = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..jobs {
            let work_rx = work_rx.clone();
            s.spawn(move || {
                for (i, parts) in work_rx {
                    read_file(&members[i], since, &parts);
                }
            });
        }
        drop(work_rx);
        s.spawn(move || {
            for (i, m) in members.iter().enumerate() {
                if let Kind::File(_) = m.kind {
                    let (tx, rx) = crossbeam_channel::bounded(4);
                    if order_tx.send(rx).is_err() || work_tx.send((i, tx)).is_err() {
                        return;
                    }
                }
            }
        });
        let mut files = order_rx.into_iter();
        let mut done = 0u64;
        for m in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(m.mode);
            h.set_mtime(
                m.modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
            h.set_size(0);
            match &m.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    out.append_data(&mut h, &m.name, io::empty())?;
                }
                Kind::Link(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    out.append_link(&mut h, &m.name, target)?;
                }
                Kind::File(size) => {
                    let parts = files
                        .next()
                        .ok_or_else(|| anyhow!("internal: a reader stopped"))?;
                    h.set_entry_type(tar::EntryType::Regular);
                    let l = write_file(m, *size, &parts, &mut h, out)
                        .with_context(|| format!("reading {}", m.source.display()))?;
                    done += size;
                    progress.update(done, 0);
                    listed.push(l);
                }
            }
        }
        Ok(())
    })?;
    Ok(listed)
}

/// One file into the stream, whole or as its changed blocks, as its reader decided.
fn write_file(
    m: &Member,
    size: u64,
    parts: &Parts,
    h: &mut tar::Header,
    out: &mut tar::Builder<Indexed<Output>>,
) -> Result<Listed> {
    let first = parts
        .recv()
        .map_err(|_| anyhow!("internal: a reader stopped"))??;
    let mut l = Listed {
        path: m.listed.clone(),
        size,
        modified: m.modified,
        crc: None,
    };
    match first {
        Part::Delta { blocks, member } => {
            let (dir, file) = m.name.rsplit_once('/').unwrap_or(("", &m.name));
            h.set_size(member.len() as u64);
            out.append_data(h, format!("{dir}/{INCREMENTAL}{file}"), &member[..])?;
            // The manifest lists the file as rebuilt: its size, and no checksum (the
            // member carries its own; see FORMAT.md).
            l.size = blocks * BLOCK;
        }
        Part::Whole | Part::Piece(_) => {
            h.set_size(size);
            let mut r = manifest::Summing::new(PieceReader::new(parts.clone()));
            out.append_data(h, &m.name, &mut r)?;
            l.crc = Some(r.sum().1);
        }
    }
    Ok(l)
}

/// The prefix of an incremental member's name: `base/5/INCREMENTAL.16384`.
pub const INCREMENTAL: &str = "INCREMENTAL.";

/// Reads one file for the writer: for an incremental backup, a relation file its parent
/// held goes as its changed blocks unless that saves little; anything else whole.
fn read_file(
    m: &Member,
    since: Option<&Since>,
    parts: &crossbeam_channel::Sender<io::Result<Part>>,
) {
    let Kind::File(size) = m.kind else { return };
    let f = match fs::File::open(&m.source) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = parts.send(Err(e));
            return;
        }
    };
    let base = since.filter(|_| m.relation).and_then(|s| {
        s.files
            .get(&m.listed)
            .map(|&parent_size| (s.lsn, parent_size / BLOCK))
    });
    if let (Some((lsn, parent_blocks)), Some(f)) = (base, &f) {
        match delta(f, size, lsn, parent_blocks) {
            Ok(Some((blocks, member))) => {
                let _ = parts.send(Ok(Part::Delta { blocks, member }));
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = parts.send(Err(e));
                return;
            }
        }
    }
    if parts.send(Ok(Part::Whole)).is_err() {
        return;
    }
    read_whole(f.as_ref(), size, parts);
}

/// The file in pieces: exactly the size it had when listed, as basebackup.c's `sendFile`
/// does (a file that shrank since is padded with zeros, one that grew is cut there; WAL
/// replay from the backup's start makes either consistent). A file that vanished meanwhile
/// (a table dropped) is all zeros, which replay also removes.
fn read_whole(
    f: Option<&fs::File>,
    size: u64,
    parts: &crossbeam_channel::Sender<io::Result<Part>>,
) {
    let mut at = 0u64;
    while at < size {
        let want = (size - at).min(PIECE as u64) as usize;
        let mut buf = vec![0u8; want];
        if let Some(f) = f {
            // Past the end of the file the zeros stay.
            if let Err(e) = crate::plumbing::read_full_at(f, &mut buf, at) {
                let _ = parts.send(Err(e));
                return;
            }
        }
        at += want as u64;
        if parts.send(Ok(Part::Piece(buf))).is_err() {
            return;
        }
    }
}

/// An incremental member: the blocks of a relation file that changed since the parent
/// started, by the rule WAL-G's delta backups use: a block whose page LSN is at or after the
/// parent's start LSN was written since, and a block past the parent's end is new; a page
/// still all zeros (LSN 0) goes too, since it may replace a page of a file that had the same
/// name in the parent. Any other block is unchanged since the parent read it (a hint bit
/// aside, which is not WAL-logged and recovery does not need). `None` when more than half
/// the file (or 64 MiB, to bound memory) changed: the whole file is then sent instead.
///
/// The member, in little-endian: `WEIRINC1`, the file's length in blocks (u32), the number
/// of blocks sent (u32), their numbers (u32 each, ascending), the blocks, then the CRC-32C of
/// everything before it (docs/FORMAT.md, section 12).
fn delta(
    f: &fs::File,
    size: u64,
    since: u64,
    parent_blocks: u64,
) -> io::Result<Option<(u64, Vec<u8>)>> {
    if size % BLOCK != 0 {
        return Ok(None);
    }
    let blocks = size / BLOCK;
    let limit = (size / 2).min(64 << 20);
    let (mut numbers, mut pages) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; PIECE];
    let mut at = 0u64;
    while at < size {
        let want = (size - at).min(PIECE as u64) as usize;
        buf[..want].fill(0);
        crate::plumbing::read_full_at(f, &mut buf[..want], at)?;
        for (k, page) in buf[..want].chunks(BLOCK as usize).enumerate() {
            let n = at / BLOCK + k as u64;
            let lsn = page_lsn(page);
            if n >= parent_blocks || lsn == 0 || lsn >= since {
                numbers.push(n as u32);
                pages.extend_from_slice(page);
                if pages.len() as u64 > limit {
                    return Ok(None);
                }
            }
        }
        at += want as u64;
    }
    let mut member = Vec::with_capacity(16 + numbers.len() * 4 + pages.len() + 4);
    member.extend_from_slice(DELTA_MAGIC);
    member.extend_from_slice(&(blocks as u32).to_le_bytes());
    member.extend_from_slice(&(numbers.len() as u32).to_le_bytes());
    for n in &numbers {
        member.extend_from_slice(&n.to_le_bytes());
    }
    member.extend_from_slice(&pages);
    let crc = manifest::crc32c(&member);
    member.extend_from_slice(&crc.to_le_bytes());
    Ok(Some((blocks, member)))
}

/// The first bytes of an incremental member.
pub const DELTA_MAGIC: &[u8; 8] = b"WEIRINC1";

/// A page's LSN: `pd_lsn`, its first 8 bytes, as two 32-bit halves (high, then low) in the
/// server's byte order (src/include/storage/bufpage.h, PageXLogRecPtr).
fn page_lsn(page: &[u8]) -> u64 {
    let hi = u32::from_ne_bytes(page[0..4].try_into().unwrap());
    let lo = u32::from_ne_bytes(page[4..8].try_into().unwrap());
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The pieces of one file as a reader.
struct PieceReader {
    parts: Parts,
    current: Vec<u8>,
    at: usize,
}

impl PieceReader {
    fn new(parts: Parts) -> Self {
        PieceReader {
            parts,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.parts.recv() {
                Ok(part) => match part? {
                    Part::Piece(p) => {
                        self.current = p;
                        self.at = 0;
                    }
                    Part::Whole | Part::Delta { .. } => {
                        return Err(io::Error::other("internal: a second head"));
                    }
                },
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_rebuilds_is_left_out() {
        assert!(skipped("postmaster.pid") && skipped("pg_internal.init.123"));
        assert!(skipped("pgsql_tmp12.3") && !skipped("PG_VERSION"));
        assert!(temp_relation("t3_16384") && temp_relation("t3_16384_fsm.1"));
        assert!(!temp_relation("16384") && !temp_relation("tablespace_map"));
        let inits = ["16390"];
        assert!(unlogged_data("16390", &inits) && unlogged_data("16390_fsm", &inits));
        assert!(unlogged_data("16390.1", &inits) && !unlogged_data("16390_init", &inits));
        assert!(!unlogged_data("16391", &inits));
        assert!(is_database_dir(DATA, "base/5/") && !is_database_dir(DATA, "global/"));
        assert!(is_database_dir("tablespaces/16400/", "PG_15_202209061/5/"));
        assert!(!is_database_dir(DATA, "base/"));
    }
}
