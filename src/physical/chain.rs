//! An incremental backup (`weir-basebackup --incremental-from`) restored over its parent:
//! weir-restore-physical restores a chain by restoring the full backup into an empty
//! directory, then each incremental in order over it, each from its own stream, so no whole
//! backup is ever copied aside.
//!
//! Before anything is written the directory must hold the parent: its `backup_manifest`
//! (which every restore leaves there) must be the one the incremental names, and its
//! `pg_control` this cluster's. Then every file of the incremental replaces the parent's,
//! each `INCREMENTAL.` member patches the parent's copy of its relation file block by block
//! (checked by the member's CRC-32C), and whatever the incremental's manifest does not list
//! is removed (files dropped since the parent). The result is a restored backup like any
//! other: its manifest is the incremental's, which lists every file at its rebuilt size, so
//! `pg_verifybackup` checks it, and the next incremental builds on it.
//!
//! A failure part-way leaves a directory that no server can start (its `pg_control` is
//! removed first and comes back only with the stream): restore the chain again from its
//! full backup.
//!
//! `--delta` (pgBackRest's name) is the same walk for any backup over any stopped copy of the
//! cluster: each whole file is compared with the one on disk in 8 KiB pieces and only the
//! pieces that differ are written.

use super::basebackup::{DATA, Header, MANIFEST, TABLESPACES, Trailer};
use super::local::{DELTA_MAGIC, INCREMENTAL};
use super::manifest;
use super::restore::{Created, RestoreOptions, bad, unpack, write_member};
use crate::plumbing::{ExitCode, coded};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const BLOCK: u64 = 8192;

/// Checks that the directory holds the incremental's parent (or, for `--delta`, a copy of
/// the same cluster, or nothing yet), then makes it unstartable until the backup is whole in
/// it; the guard leaves it so if the restore fails.
pub(super) fn prepare(o: &RestoreOptions, h: &Header, dirs: &[PathBuf]) -> Result<Created> {
    if o.clear {
        return Err(coded(
            ExitCode::Usage,
            "--clear would empty the directory an incremental backup builds on",
        ));
    }
    let dir = &o.pgdata;
    if dir.join("postmaster.pid").exists() {
        bail!(
            "{} holds a postmaster.pid: stop that server first",
            dir.display()
        );
    }
    let Some(parent) = h.parent.as_ref() else {
        if dir.join("global/pg_control").exists() {
            same_cluster(dir, h)?;
        }
        return guard(dir, dirs);
    };
    let held = fs::read(dir.join(MANIFEST)).map_err(|_| {
        bad(format!(
            "{} holds no restored backup for this incremental to build on (no {MANIFEST}): restore its full backup first",
            dir.display()
        ))
    })?;
    let holds = manifest::checksum_of(&held)?;
    if !holds.eq_ignore_ascii_case(&parent.manifest_checksum) {
        return Err(bad(format!(
            "{} holds another backup (manifest {}) than the parent this incremental was taken against (manifest {}, started at {}): restore the chain in order",
            dir.display(),
            short(&holds),
            short(&parent.manifest_checksum),
            parent.start_lsn
        )));
    }
    same_cluster(dir, h)?;
    guard(dir, dirs)
}

fn same_cluster(dir: &Path, h: &Header) -> Result<()> {
    let cluster = super::walfile::control_system_identifier(dir)?.to_string();
    if cluster != h.system_identifier {
        return Err(coded(
            ExitCode::WrongCluster,
            format!(
                "{} holds cluster {cluster}, the backup is of cluster {}",
                dir.display(),
                h.system_identifier
            ),
        ));
    }
    Ok(())
}

fn guard(dir: &Path, dirs: &[PathBuf]) -> Result<Created> {
    for d in dirs {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    spoil(dir);
    Ok(Created {
        dirs: dirs.to_vec(),
        armed: true,
        spoil_only: true,
    })
}

/// Makes a data directory unstartable (no `pg_control`) and no longer a parent (no
/// `backup_manifest`), nor a recovery set up on it.
pub(super) fn spoil(dir: &Path) {
    for f in ["global/pg_control", MANIFEST, "recovery.signal"] {
        let _ = fs::remove_file(dir.join(f));
    }
}

fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}

/// Bytes of file contents the stream held, and those written to disk.
#[derive(Default)]
pub struct Written {
    total: AtomicU64,
    written: AtomicU64,
    /// Of the total, what a delta restore by range never read (see super::delta).
    unread: AtomicU64,
}

impl Written {
    fn add(&self, total: u64, written: u64) {
        self.total.fetch_add(total, Ordering::Relaxed);
        self.written.fetch_add(written, Ordering::Relaxed);
    }

    /// A file a delta restore patched: `read` bytes read from the backup, `written` of them
    /// written, the rest unread.
    pub(super) fn add_kept(&self, total: u64, read: u64, written: u64) {
        self.add(total, written);
        self.unread.fetch_add(total - read, Ordering::Relaxed);
    }

    pub fn describe(&self) -> String {
        let (w, t) = (
            self.written.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        let unread = match self.unread.load(Ordering::Relaxed) {
            0 => String::new(),
            u => format!(
                ", {} of it left unread in the backup, the same on disk",
                crate::plumbing::human_bytes(u)
            ),
        };
        format!(
            "; wrote {} of the backup's {} ({:.1}%){unread}",
            crate::plumbing::human_bytes(w),
            crate::plumbing::human_bytes(t),
            100.0 * w as f64 / t.max(1) as f64
        )
    }
}

/// Applies the stream's members over what the directory holds (the parent, or for `delta`
/// any copy of the cluster) through restore's walk, which checks the manifest and the trailer
/// at the end; then removes what the backup does not list.
pub(super) fn apply<R: Read>(
    entries: &mut tar::Entries<R>,
    pgdata: &Path,
    locations: &BTreeMap<String, PathBuf>,
    header: &Header,
    delta: bool,
    unchanged: manifest::Seen,
    written: &Written,
) -> Result<Trailer> {
    // Files a delta restore kept or patched (see super::delta, which counts them in `written`)
    // stay, and count as seen.
    let mut kept: HashSet<PathBuf> = HashSet::new();
    for listed in unchanged.keys() {
        // The manifest names a tablespace's files pg_tblspc/OID/...; the stream, tablespaces/OID/...
        let member = match listed.strip_prefix("pg_tblspc/") {
            Some(rest) => format!("{TABLESPACES}{rest}"),
            None => format!("{DATA}{listed}"),
        };
        kept.insert(super::restore::destination(&member, pgdata, locations)?.0);
    }
    let trailer = unpack(
        entries,
        pgdata,
        locations,
        header,
        unchanged,
        |entry, dest, listed, seen| {
            let file = dest.file_name().map(|f| f.to_string_lossy().into_owned());
            if let Some(target) = file.as_deref().and_then(|f| f.strip_prefix(INCREMENTAL)) {
                let rebuilt = dest.with_file_name(target);
                let sent = entry.header().size()?;
                let size = patch(entry, &rebuilt)?;
                written.add(sent, sent);
                let listed = match listed.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target.to_string(),
                };
                seen.insert(listed, (size, 0));
                kept.insert(rebuilt);
                return Ok(());
            }
            let kind = entry.header().entry_type();
            let existing = fs::symlink_metadata(&dest).ok();
            let is_file = existing.as_ref().is_some_and(|m| m.is_file());
            if delta && kind == tar::EntryType::Regular && is_file {
                seen.insert(listed, rewrite(entry, &dest, written)?);
            } else {
                if kind != tar::EntryType::Directory && existing.is_some_and(|m| !m.is_dir()) {
                    // What the directory held (a file, or a link) makes way for the backup's.
                    fs::remove_file(&dest)
                        .with_context(|| format!("cannot replace {}", dest.display()))?;
                }
                if let Some(sum) = write_member(entry, &dest)? {
                    written.add(sum.0, sum.0);
                    seen.insert(listed, sum);
                }
            }
            kept.insert(dest);
            Ok(())
        },
    )?;
    // Once the manifest checked out: what it does not list was dropped since.
    for root in std::iter::once(pgdata).chain(locations.values().map(PathBuf::as_path)) {
        remove_unlisted(root, &kept)?;
    }
    Ok(trailer)
}

/// `--delta`: makes the file at `dest` the member's bytes, comparing them with what it holds
/// in 8 KiB pieces and writing only the pieces that differ (then cutting it to the member's
/// length). Returns the member's length and CRC-32C, for the manifest check.
fn rewrite<R: Read>(entry: &mut R, dest: &Path, written: &Written) -> Result<(u64, u32)> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dest)
        .with_context(|| format!("cannot open {}", dest.display()))?;
    let mut summed = manifest::Summing::new(entry);
    let (mut new, mut old) = (vec![0u8; 1 << 20], Vec::new());
    let (mut at, mut wrote) = (0u64, 0u64);
    loop {
        let n = crate::plumbing::read_full(&mut summed, &mut new)
            .map_err(|e| bad(format!("the backup stream is damaged: {e}")))?;
        if n == 0 {
            break;
        }
        wrote += write_differing(&f, at, &new[..n], &mut old)?;
        at += n as u64;
    }
    f.set_len(at)?;
    written.add(at, wrote);
    Ok(summed.sum())
}

/// Writes the 8 KiB blocks of `data` that differ from what `f` holds at `at`, read into
/// `old` (a buffer kept by the caller, not one allocated and zeroed per call); returns the
/// bytes written.
pub(super) fn write_differing(
    f: &fs::File,
    at: u64,
    data: &[u8],
    old: &mut Vec<u8>,
) -> std::io::Result<u64> {
    old.resize(data.len(), 0);
    let have = crate::plumbing::read_full_at(f, old, at)?;
    let mut wrote = 0;
    for (k, block) in data.chunks(BLOCK as usize).enumerate() {
        let off = k * BLOCK as usize;
        if off + block.len() > have || old[off..off + block.len()] != *block {
            f.write_all_at(block, at + off as u64)?;
            wrote += block.len() as u64;
        }
    }
    Ok(wrote)
}

/// Applies one incremental member (docs/FORMAT.md, section 12) to the parent's copy of its
/// relation file: the file takes the length the member gives, and each block sent is written
/// in its place. Returns the rebuilt length.
fn patch<R: Read>(member: &mut R, path: &Path) -> Result<u64> {
    let damaged = |why: &str| {
        bad(format!(
            "{}: its incremental member is damaged: {why}",
            path.display()
        ))
    };
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut head = [0u8; 16];
    member
        .read_exact(&mut head)
        .map_err(|_| damaged("it ends inside its header"))?;
    if &head[..8] != DELTA_MAGIC {
        return Err(damaged("not an incremental member"));
    }
    crc.update(&head);
    let blocks = u64::from(u32::from_le_bytes(head[8..12].try_into().unwrap()));
    let sent = u32::from_le_bytes(head[12..16].try_into().unwrap()) as usize;
    let mut numbers = vec![0u8; sent * 4];
    member
        .read_exact(&mut numbers)
        .map_err(|_| damaged("it ends inside its block list"))?;
    crc.update(&numbers);
    let f = fs::OpenOptions::new().write(true).open(path).map_err(|e| {
        bad(format!(
            "{}: not in the parent ({e}): this incremental does not build on what the directory holds",
            path.display()
        ))
    })?;
    f.set_len(blocks * BLOCK)?;
    let mut page = vec![0u8; BLOCK as usize];
    let mut last = None;
    for n in numbers.chunks(4) {
        let n = u64::from(u32::from_le_bytes(n.try_into().unwrap()));
        if n >= blocks || last.is_some_and(|l| n <= l) {
            return Err(damaged("its block list is out of order"));
        }
        last = Some(n);
        member
            .read_exact(&mut page)
            .map_err(|_| damaged("it ends inside a block"))?;
        crc.update(&page);
        f.write_all_at(&page, n * BLOCK)?;
    }
    let mut tail = [0u8; 4];
    member
        .read_exact(&mut tail)
        .map_err(|_| damaged("it ends before its checksum"))?;
    if u32::from_le_bytes(tail) != crc.finalize() as u32 || member.read(&mut [0u8; 1])? != 0 {
        return Err(damaged("its checksum does not match"));
    }
    Ok(blocks * BLOCK)
}

/// Removes every file, link and directory under `root` the incremental did not bring or
/// rebuild: what was dropped since the parent. Links are removed, never followed (the
/// tablespace links are made again after).
fn remove_unlisted(root: &Path, kept: &HashSet<PathBuf>) -> Result<()> {
    for e in fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))? {
        let path = e?.path();
        let meta = fs::symlink_metadata(&path)?;
        // The manifest the walk just wrote.
        if path == root.join(MANIFEST) {
            continue;
        }
        if !kept.contains(&path) {
            if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("cannot remove {}", path.display()))?;
        } else if meta.is_dir() {
            remove_unlisted(&path, kept)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member sending block 1 of a two-block file, as local.rs writes them.
    fn member(page: &[u8]) -> Vec<u8> {
        let mut m = DELTA_MAGIC.to_vec();
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(page);
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &m) as u32;
        m.extend_from_slice(&crc.to_le_bytes());
        m
    }

    #[test]
    fn a_member_patches_its_block_and_any_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("16384");
        let page = vec![7u8; BLOCK as usize];
        let good = member(&page);
        for at in [0, 9, 17, 20, 20 + 4000, good.len() - 1] {
            fs::write(&file, vec![1u8; 3 * BLOCK as usize]).unwrap();
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(
                patch(&mut &bad[..], &file).is_err(),
                "a flip at {at} passed"
            );
        }
        fs::write(&file, vec![1u8; 3 * BLOCK as usize]).unwrap();
        assert_eq!(patch(&mut &good[..], &file).unwrap(), 2 * BLOCK);
        let rebuilt = fs::read(&file).unwrap();
        assert_eq!(rebuilt.len() as u64, 2 * BLOCK);
        assert!(rebuilt[..BLOCK as usize].iter().all(|&b| b == 1));
        assert!(rebuilt[BLOCK as usize..] == page[..]);
        assert!(
            patch(&mut &good[..16], &file).is_err(),
            "a cut member passed"
        );
    }
}
