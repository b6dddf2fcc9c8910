//! weir-basebackup: a base backup as one tar stream on standard output, taken over the
//! replication protocol's `BASE_BACKUP` (which `pg_basebackup` uses too) so that a cluster with
//! tablespaces still makes one stream: `pg_basebackup -Ft -D -` refuses them.
//!
//! The stream is a tar archive anyone can read with `tar` (docs/FORMAT.md, section 12):
//!
//! ```text
//! weir-basebackup.json        who and where: cluster, timeline, start LSN, tablespaces
//! data/...                    the data directory (the server's base.tar)
//! tablespaces/OID/...         each tablespace's directory (the server's OID.tar)
//! data/backup_manifest        PostgreSQL's manifest, checked against every file above
//! weir-basebackup.end.json    the stop LSN; a stream without it is incomplete
//! ```
//!
//! Reference: PostgreSQL documentation 55.4 (`BASE_BACKUP` and its COPY stream: messages
//! 'n' new archive, 'd' data, 'p' progress, 'm' manifest), and
//! src/backend/backup/basebackup_copy.c, which sends them.

use super::index::Indexed;
use super::manifest::{self, Seen, Summing};
use super::walfile::segment_name;
use crate::pg::conn::ConnParams;
use crate::pg::replication::{CopyData, ReplConn, Reply, Rows, format_lsn, parse_lsn};
use crate::plumbing::{ExitCode, Output, Progress, coded};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

pub const HEADER: &str = "weir-basebackup.json";
pub const TRAILER: &str = "weir-basebackup.end.json";
pub const DATA: &str = "data/";
pub const TABLESPACES: &str = "tablespaces/";
pub const MANIFEST: &str = "backup_manifest";

/// The stream's first member.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub label: String,
    /// A string: JSON readers that use doubles would round a 64-bit identifier.
    pub system_identifier: String,
    pub major: u32,
    pub server_version: u32,
    pub segment_size: u32,
    pub timeline: u32,
    pub start_lsn: String,
    /// The first WAL segment recovery needs.
    pub start_wal: String,
    pub started: String,
    pub tablespaces: Vec<Tablespace>,
    /// An incremental backup's parent (version 2); absent in a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
}

/// The backup an incremental one was taken against: named by its manifest's checksum (the
/// `Manifest-Checksum` of the `backup_manifest` it carried), and where it started.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ParentRef {
    pub manifest_checksum: String,
    pub start_lsn: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Tablespace {
    pub oid: String,
    /// Where the tablespace lived on the source server.
    pub location: String,
}

/// The stream's last member: its presence says the backup is whole.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Trailer {
    pub stop_lsn: String,
    pub stop_timeline: u32,
    /// The last WAL segment recovery needs to reach consistency.
    pub stop_wal: String,
    pub finished: String,
    pub files: u64,
    /// Bytes of file contents (not of the tar stream).
    pub bytes: u64,
    /// Where each member before this one starts in the stream (see [`super::index`]); empty
    /// in streams written before it was added.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub index: String,
    /// A CRC-32C per piece of each file longer than a piece (see [`super::index::PIECE`]);
    /// empty in streams written before it was added.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pieces: String,
}

pub struct BackupOptions {
    pub conn: ConnParams,
    pub label: String,
    pub fast_checkpoint: bool,
    /// The weir-wal repository: the cluster must be its cluster, and the WAL from start to
    /// stop must be in it before the backup counts.
    pub repo: Option<(String, S3Settings)>,
    pub output: Option<String>,
    pub progress: bool,
    pub quiet: bool,
    pub stats: Option<String>,
    /// `--pgdata DIR`: read the data directory on this host instead of through BASE_BACKUP,
    /// with `jobs` readers (see [`super::local`]).
    pub pgdata: Option<std::path::PathBuf>,
    pub jobs: usize,
    /// `--incremental-from FILE`: the parent's backup_manifest (needs `pgdata`).
    pub incremental_from: Option<std::path::PathBuf>,
    /// `--manifest-file FILE`: a copy of this backup's manifest, for the next incremental.
    pub manifest_file: Option<std::path::PathBuf>,
}

/// What the server says about itself before the backup.
pub(super) struct Server {
    pub system_identifier: u64,
    pub server_version: u32,
    pub segment_size: u32,
}

/// `weir-basebackup`.
pub fn run(o: &BackupOptions) -> Result<()> {
    match &o.pgdata {
        Some(dir) => super::local::run(o, dir),
        None if o.incremental_from.is_some() => Err(coded(
            ExitCode::Usage,
            "--incremental-from needs --pgdata: PostgreSQL 15's BASE_BACKUP sends whole files",
        )),
        None => replicated(o),
    }
}

/// The weir-wal repository of `--repo`, checked to be this cluster's if it exists yet.
pub(super) fn open_repo<'a>(
    o: &'a BackupOptions,
    server: &Server,
) -> Result<Option<(&'a str, Repo)>> {
    let Some((url, s3)) = &o.repo else {
        return Ok(None);
    };
    let r = Repo::open(url, s3)?;
    check_cluster(&r, url, server, false)?;
    Ok(Some((url.as_str(), r)))
}

/// A backup through the replication protocol's BASE_BACKUP.
fn replicated(o: &BackupOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let mut conn = ReplConn::connect(&o.conn)?;
    if o.quiet {
        conn.drop_notices();
    }
    let server = identify(&mut conn)?;
    let repo = open_repo(o, &server)?;
    conn.send(&command(o))?;
    let (start_lsn, timeline) = lsn_row(rows(conn.next_result()?)?)?;
    let spaces = tablespace_rows(rows(conn.next_result()?)?)?;
    if !matches!(conn.next_result()?, Some(Reply::CopyOut)) {
        bail!("BASE_BACKUP: the server did not start its COPY stream");
    }
    let header = Header::new(
        o,
        &server,
        timeline,
        start_lsn,
        spaces
            .iter()
            .filter(|(t, _)| !t.oid.is_empty())
            .map(|(t, _)| t.clone())
            .collect(),
    );
    let total = spaces.iter().map(|(_, kb)| kb * 1024).sum::<u64>();
    let mut out = tar::Builder::new(Indexed::new(Output::open(o.output.as_deref(), true)?));
    append_json(&mut out, HEADER, &header)?;
    let mut progress = Progress::new(Some(total), o.progress, o.quiet).bytes_only();
    let (seen, manifest) = copy_stream(&mut conn, &mut out, &mut progress)?;
    let (stop_lsn, stop_timeline) = lsn_row(rows(conn.next_result()?)?)?;
    while conn.next_result()?.is_some() {}
    progress.clear();
    let manifest = manifest.ok_or_else(|| anyhow!("the server sent no backup manifest"))?;
    manifest::check(&manifest, &seen)?;
    append_bytes(&mut out, &format!("{DATA}{MANIFEST}"), &manifest)?;
    let end = End {
        stop_lsn,
        stop_timeline,
        seen: &seen,
        manifest: &manifest,
        started,
    };
    finish(o, out, &header, &server, repo.as_ref(), end)
}

impl Header {
    pub(super) fn new(
        o: &BackupOptions,
        server: &Server,
        timeline: u32,
        start_lsn: u64,
        tablespaces: Vec<Tablespace>,
    ) -> Header {
        Header {
            format: "weir-basebackup".into(),
            version: 1,
            label: o.label.clone(),
            system_identifier: server.system_identifier.to_string(),
            major: server.server_version / 10000,
            server_version: server.server_version,
            segment_size: server.segment_size,
            timeline,
            start_lsn: format_lsn(start_lsn),
            start_wal: wal_of(timeline, start_lsn, server.segment_size),
            started: crate::plumbing::rfc3339(std::time::SystemTime::now()),
            tablespaces,
            parent: None,
        }
    }
}

/// Where a backup stopped and what it held, for [`finish`].
pub(super) struct End<'a> {
    pub stop_lsn: u64,
    pub stop_timeline: u32,
    pub seen: &'a Seen,
    pub manifest: &'a [u8],
    pub started: std::time::Instant,
}

/// The end of every backup, after its manifest: the WAL from start to stop checked in the
/// repository, the trailer that makes the stream whole, the stream finished, the stats.
pub(super) fn finish(
    o: &BackupOptions,
    mut out: tar::Builder<Indexed<Output>>,
    header: &Header,
    server: &Server,
    repo: Option<&(&str, Repo)>,
    end: End,
) -> Result<()> {
    let stop_wal = wal_of(
        end.stop_timeline,
        end.stop_lsn.saturating_sub(1),
        server.segment_size,
    );
    if let Some((url, r)) = repo {
        check_cluster(r, url, server, true)?;
        check_wal(r, url, &header.start_wal, &stop_wal, server.segment_size)?;
    }
    let trailer = Trailer {
        stop_lsn: format_lsn(end.stop_lsn),
        stop_timeline: end.stop_timeline,
        stop_wal,
        // Microseconds: a restore compares it with a recovery target time (catalog::physical).
        finished: crate::plumbing::rfc3339_micros(std::time::SystemTime::now()),
        files: end.seen.len() as u64,
        bytes: end.seen.values().map(|(n, _)| n).sum(),
        index: out.get_ref().text(),
        pieces: out.get_ref().pieces_text(),
    };
    append_json(&mut out, TRAILER, &trailer)?;
    out.into_inner()?.into_inner().finish()?;
    if let Some(f) = &o.manifest_file {
        crate::plumbing::write_atomically(f, end.manifest)
            .with_context(|| format!("writing the manifest to {}", f.display()))?;
    }
    if let Some(path) = &o.stats {
        let stats = Stats {
            header,
            trailer: &trailer,
            manifest_checksum: manifest::checksum_of(end.manifest)?,
            seconds: end.started.elapsed().as_secs_f64(),
        };
        crate::plumbing::write_json_line(path, &stats)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Stats<'a> {
    #[serde(flatten)]
    header: &'a Header,
    #[serde(flatten)]
    trailer: &'a Trailer,
    /// The `Manifest-Checksum` of the backup's manifest: what an incremental names as its
    /// parent, so the catalog can link a chain.
    manifest_checksum: String,
    seconds: f64,
}

/// The `BASE_BACKUP` command in PostgreSQL 15's option syntax. TABLESPACE_MAP puts the
/// tablespaces' locations in a `tablespace_map` file instead of symbolic links, which recovery
/// turns back into links; WAIT makes the server wait until the last segment is archived.
fn command(o: &BackupOptions) -> String {
    format!(
        "BASE_BACKUP ( LABEL {}, PROGRESS, CHECKPOINT '{}', WAIT, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, TARGET 'client' )",
        crate::pg::sql::quote_literal(&o.label),
        if o.fast_checkpoint { "fast" } else { "spread" }
    )
}

fn identify(conn: &mut ReplConn) -> Result<Server> {
    let version = conn.server_version();
    if version < 150000 {
        bail!(
            "the server runs PostgreSQL {}.{}: weir-basebackup needs 15 or later (its BASE_BACKUP stream)",
            version / 10000,
            version % 10000
        );
    }
    let id = conn.query("IDENTIFY_SYSTEM")?;
    let sysid = id
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| anyhow!("IDENTIFY_SYSTEM returned no system identifier"))?;
    let size = conn.query("SHOW wal_segment_size")?;
    let size = size
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| anyhow!("SHOW wal_segment_size returned nothing"))?;
    Ok(Server {
        system_identifier: sysid
            .parse()
            .with_context(|| format!("system identifier {sysid:?}"))?,
        server_version: version,
        segment_size: parse_size(&size)?,
    })
}

/// `16MB`, `1GB`: wal_segment_size as SHOW prints it.
pub(super) fn parse_size(s: &str) -> Result<u32> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u32 = n.parse().map_err(|_| anyhow!("wal_segment_size {s:?}"))?;
    let shift = match unit {
        "MB" => 20,
        "GB" => 30,
        "kB" => 10,
        _ => bail!("wal_segment_size {s:?}"),
    };
    Ok(n << shift)
}

fn rows(reply: Option<Reply>) -> Result<Rows> {
    match reply {
        Some(Reply::Rows(r)) => Ok(r),
        Some(Reply::CopyOut | Reply::CopyBoth) => {
            bail!("BASE_BACKUP: a COPY stream where a result was expected")
        }
        None => bail!("BASE_BACKUP: the server ended the command early"),
    }
}

/// A `recptr, tli` row: where the backup starts or stops.
fn lsn_row(rows: Rows) -> Result<(u64, u32)> {
    match rows.first().map(|r| r.as_slice()) {
        Some([Some(lsn), Some(tli), ..]) => Ok((parse_lsn(lsn)?, tli.parse()?)),
        _ => bail!("BASE_BACKUP: expected a position and a timeline"),
    }
}

/// The tablespace list: `spcoid, spclocation, size` (KiB); the data directory's row has no oid.
fn tablespace_rows(rows: Rows) -> Result<Vec<(Tablespace, u64)>> {
    let mut v = Vec::new();
    for r in rows {
        let kb = r
            .get(2)
            .cloned()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let space = match (r.first().cloned().flatten(), r.get(1).cloned().flatten()) {
            (Some(oid), Some(location)) => Tablespace { oid, location },
            _ => Tablespace {
                oid: String::new(),
                location: String::new(),
            },
        };
        v.push((space, kb));
    }
    Ok(v)
}

/// The WAL segment holding `lsn`.
pub(super) fn wal_of(timeline: u32, lsn: u64, segment_size: u32) -> String {
    segment_name(timeline, lsn / segment_size as u64, segment_size)
}

/// The repository must belong to this cluster; `required` once the backup is done, when the
/// server has archived at least the backup's own WAL.
fn check_cluster(repo: &Repo, url: &str, s: &Server, required: bool) -> Result<()> {
    let Some(rec) = super::wal::read_record(repo)? else {
        if required {
            bail!(
                "no weir-wal repository at {url}: is archive_command weir-wal push --repo {url}?"
            );
        }
        return Ok(());
    };
    let ours = super::wal::ClusterRecord::describing(
        s.system_identifier.to_string(),
        s.server_version / 10000,
        s.segment_size,
    );
    rec.refuse_other("this server", url, &ours)
}

/// Every segment from `start` to `stop` must be archived, or the backup cannot be restored.
fn check_wal(repo: &Repo, url: &str, start: &str, stop: &str, segment_size: u32) -> Result<()> {
    if start[..8] != stop[..8] {
        bail!("the timeline changed during the backup ({start} to {stop}): take it again");
    }
    let entries = super::inventory::entries(repo)?;
    let tli = u32::from_str_radix(&start[..8], 16)?;
    let names = super::inventory::segments(&entries, tli);
    let missing = super::inventory::gaps(&names, segment_size, Some((start, stop)))?;
    if let Some(first) = missing.first() {
        bail!(
            "the backup needs WAL {start} to {stop}, and {} of them (first {first}) are not in {url}",
            missing.len()
        );
    }
    Ok(())
}

/// Copies the server's archives into `out`, each file summed for the manifest check; returns
/// the sums and the manifest.
fn copy_stream<W: Write>(
    conn: &mut ReplConn,
    out: &mut tar::Builder<W>,
    progress: &mut Progress,
) -> Result<(Seen, Option<Vec<u8>>)> {
    let mut stream = CopyStream {
        conn,
        data: None,
        at: 0,
        next: None,
        ended: false,
        done: 0,
        progress,
    };
    let mut seen = Seen::new();
    let mut manifest = None;
    while let Some(msg) = stream.control()? {
        match msg[0] {
            b'n' => {
                let (name, _path) = archive_names(&msg[1..])?;
                let (prefix, in_manifest) = prefixes(&name)?;
                copy_archive(&mut stream, &prefix, &in_manifest, out, &mut seen)?;
            }
            b'm' => {
                let mut m = Vec::new();
                stream.read_to_end(&mut m)?;
                manifest = Some(m);
            }
            t => bail!("BASE_BACKUP: unexpected message type {:?}", t as char),
        }
    }
    Ok((seen, manifest))
}

/// The 'n' message's two strings: archive name and tablespace path.
fn archive_names(b: &[u8]) -> Result<(String, String)> {
    let mut parts = b.split(|&c| c == 0);
    let name = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(path).into_owned(),
    ))
}

/// Where an archive's members go in our stream, and where the manifest names them.
fn prefixes(archive: &str) -> Result<(String, String)> {
    if archive == "base.tar" {
        return Ok((DATA.into(), String::new()));
    }
    match archive.strip_suffix(".tar") {
        Some(oid) if !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()) => {
            Ok((format!("{TABLESPACES}{oid}/"), format!("pg_tblspc/{oid}/")))
        }
        _ => bail!("BASE_BACKUP: unexpected archive {archive:?}"),
    }
}

/// One server archive, member by member, into `out` under `prefix`.
fn copy_archive<R: Read, W: Write>(
    input: &mut R,
    prefix: &str,
    in_manifest: &str,
    out: &mut tar::Builder<W>,
    seen: &mut Seen,
) -> Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.to_string_lossy().into_owned();
        let rel = rel.trim_end_matches('/').to_string();
        let h = entry.header();
        let mut nh = tar::Header::new_gnu();
        nh.set_entry_type(h.entry_type());
        nh.set_mode(h.mode()?);
        nh.set_mtime(h.mtime()?);
        nh.set_size(0);
        let name = format!("{prefix}{rel}");
        match h.entry_type() {
            tar::EntryType::Regular => {
                let size = h.size()?;
                nh.set_size(size);
                let mut summed = Summing::new(&mut entry);
                out.append_data(&mut nh, &name, &mut summed)?;
                let sum = summed.sum();
                if sum.0 != size {
                    return Err(coded(
                        ExitCode::BadArchive,
                        format!("{rel}: the server's stream ended inside it"),
                    ));
                }
                seen.insert(format!("{in_manifest}{rel}"), sum);
            }
            tar::EntryType::Directory => out.append_data(&mut nh, &name, io::empty())?,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow!("{rel}: a link without a target"))?
                    .into_owned();
                out.append_link(&mut nh, &name, target)?;
            }
            t => bail!("{rel}: unexpected member type {t:?} in the server's archive"),
        }
    }
    Ok(())
}

pub(super) fn append_json<W: Write>(
    out: &mut tar::Builder<W>,
    name: &str,
    v: &impl Serialize,
) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(v)?;
    json.push(b'\n');
    append_bytes(out, name, &json)
}

pub(super) fn append_bytes<W: Write>(
    out: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(data.len() as u64);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    out.append_data(&mut h, name, data)?;
    Ok(())
}

/// The COPY stream as a reader of one archive (or the manifest) at a time: reads end where
/// the next control message ('n', 'm') or the stream's end comes; 'p' messages move the
/// progress line.
struct CopyStream<'a> {
    conn: &'a mut ReplConn,
    data: Option<CopyData>,
    at: usize,
    next: Option<CopyData>,
    ended: bool,
    done: u64,
    progress: &'a mut Progress,
}

impl CopyStream<'_> {
    /// The next control message, after checking that what is left of the current archive is
    /// tar padding; None at the end of the stream.
    fn control(&mut self) -> Result<Option<CopyData>> {
        let mut rest = [0u8; 8192];
        loop {
            let n = self.read(&mut rest)?;
            if n == 0 {
                break;
            }
            if rest[..n].iter().any(|&b| b != 0) {
                bail!("BASE_BACKUP: data after the end of an archive");
            }
        }
        if self.ended {
            return Ok(None);
        }
        Ok(self.next.take())
    }

    /// The next message that is not a progress report.
    fn pull(&mut self) -> Result<Option<CopyData>> {
        loop {
            let Some(m) = self.conn.copy_data()? else {
                return Ok(None);
            };
            match m.first() {
                Some(b'p') if m.len() >= 9 => {
                    self.done = u64::from_be_bytes(m[1..9].try_into().unwrap());
                    self.progress.update(self.done, 0);
                }
                Some(_) => return Ok(Some(m)),
                None => bail!("BASE_BACKUP: an empty message"),
            }
        }
    }
}

impl Read for CopyStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(d) = &self.data {
                if self.at < d.len() {
                    let n = buf.len().min(d.len() - self.at);
                    buf[..n].copy_from_slice(&d[self.at..self.at + n]);
                    self.at += n;
                    return Ok(n);
                }
                self.data = None;
            }
            if self.next.is_some() || self.ended {
                return Ok(0);
            }
            match self.pull().map_err(io::Error::other)? {
                Some(m) if m[0] == b'd' => {
                    self.data = Some(m);
                    self.at = 1;
                }
                Some(m) => {
                    self.next = Some(m);
                    return Ok(0);
                }
                None => {
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_read_as_show_prints_them() {
        assert_eq!(parse_size("16MB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert!(parse_size("16").is_err());
    }

    #[test]
    fn archives_map_to_the_stream_layout_and_the_manifest_paths() {
        assert_eq!(
            prefixes("base.tar").unwrap(),
            ("data/".into(), String::new())
        );
        assert_eq!(
            prefixes("16384.tar").unwrap(),
            ("tablespaces/16384/".into(), "pg_tblspc/16384/".into())
        );
        assert!(prefixes("../x.tar").is_err());
    }

    #[test]
    fn the_stop_segment_is_the_one_before_a_boundary_lsn() {
        let seg = 16u32 << 20;
        assert_eq!(wal_of(1, 0x3000000 - 1, seg), "000000010000000000000002");
        assert_eq!(wal_of(1, 0x2000028, seg), "000000010000000000000002");
    }
}
