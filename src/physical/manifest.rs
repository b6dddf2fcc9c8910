//! PostgreSQL's backup manifest (`backup_manifest`, JSON): every file of a base backup with
//! its size and checksum, and the manifest's own SHA-256. weir-basebackup checks each file the
//! server sends against it, and weir-restore-physical each file it writes, so a flipped byte
//! or a missing file stops both before a server could start on the result.
//!
//! Reference: PostgreSQL documentation, chapter 77 "Backup Manifest Format";
//! src/bin/pg_verifybackup (which files a backup may hold outside the manifest).

use crate::plumbing::{ExitCode, coded};
use anyhow::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

/// What passed: manifest path (relative to the data directory) to size and CRC-32C.
pub type Seen = BTreeMap<String, (u64, u32)>;

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "Files")]
    files: Vec<File>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<WalRange>,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "Path")]
    path: Option<String>,
    /// Hex of the raw bytes, for names that are not UTF-8.
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm", default)]
    algorithm: Option<String>,
    #[serde(rename = "Checksum", default)]
    checksum: Option<String>,
}

/// One timeline's WAL range the backup needs.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WalRange {
    #[serde(rename = "Timeline")]
    pub timeline: u32,
    #[serde(rename = "Start-LSN")]
    pub start_lsn: String,
    #[serde(rename = "End-LSN")]
    pub end_lsn: String,
}

/// Checks `manifest` (its own checksum, then every file against `seen`) and returns its WAL
/// ranges. Every failure is exit 3: the backup is damaged or incomplete.
pub fn check(manifest: &[u8], seen: &Seen) -> Result<Vec<WalRange>> {
    let bad = |m: String| coded(ExitCode::BadArchive, m);
    checksum_of(manifest)?;
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| bad(format!("the backup manifest is not valid: {e}")))?;
    if m.version != 1 && m.version != 2 {
        return Err(bad(format!(
            "backup manifest version {} is not one this weir reads",
            m.version
        )));
    }
    let mut listed = std::collections::BTreeSet::new();
    for f in &m.files {
        let path = f.path()?;
        let Some(&(size, crc)) = seen.get(&path) else {
            return Err(bad(format!(
                "{path}: in the backup manifest but not in the backup"
            )));
        };
        if size != f.size {
            return Err(bad(format!(
                "{path}: {size} bytes, the backup manifest says {}",
                f.size
            )));
        }
        f.check_crc(&path, crc)?;
        listed.insert(path);
    }
    if let Some(extra) = seen.keys().find(|p| !listed.contains(*p)) {
        return Err(bad(format!(
            "{extra}: in the backup but not in its manifest"
        )));
    }
    Ok(m.wal_ranges)
}

/// What an incremental backup needs of its parent's manifest: each file's size, where the
/// parent started, and the manifest's own checksum, which names the parent.
pub struct Parent {
    pub files: BTreeMap<String, u64>,
    pub start_lsn: String,
    pub timeline: u32,
    pub checksum: String,
}

/// Reads a parent's manifest, checked against its own checksum.
pub fn parent(manifest: &[u8]) -> Result<Parent> {
    let bad = |m: String| coded(ExitCode::BadArchive, m);
    let checksum = checksum_of(manifest)?;
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| bad(format!("the parent's backup manifest is not valid: {e}")))?;
    let range = m
        .wal_ranges
        .first()
        .ok_or_else(|| bad("the parent's backup manifest has no WAL range".into()))?;
    let mut files = BTreeMap::new();
    for f in &m.files {
        files.insert(f.path()?, f.size);
    }
    Ok(Parent {
        files,
        start_lsn: range.start_lsn.clone(),
        timeline: range.timeline,
        checksum,
    })
}

/// Every file a manifest lists: its size and, when the manifest gives one, its CRC-32C as
/// written there (hex). What a delta restore compares a directory's files with.
pub fn sums(manifest: &[u8]) -> Result<BTreeMap<String, (u64, Option<String>)>> {
    checksum_of(manifest)?;
    let m: Manifest = serde_json::from_slice(manifest).map_err(|e| {
        coded(
            ExitCode::BadArchive,
            format!("the backup manifest is not valid: {e}"),
        )
    })?;
    let mut files = BTreeMap::new();
    for f in &m.files {
        let crc = match f.algorithm.as_deref() {
            Some("CRC32C") => f.checksum.clone(),
            _ => None,
        };
        files.insert(f.path()?, (f.size, crc));
    }
    Ok(files)
}

/// The checksum PostgreSQL's manifests use.
pub const CRC32C: crc_fast::CrcAlgorithm = crc_fast::CrcAlgorithm::Crc32Iscsi;

pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CRC32C, data) as u32
}

/// The CRC-32C a manifest gives, as [`same_crc`] accepts it (the bytes in the memory order
/// of a little-endian server).
pub fn crc_of_manifest(want: &str) -> Option<u32> {
    let bytes: [u8; 4] = hex::decode(want).ok()?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Whether a manifest's CRC-32C (hex) is `crc`. PostgreSQL writes the four bytes in the
/// server's memory order (pg_checksum_final in src/common/checksum_helper.c); either order
/// is accepted, so a backup of a big-endian server checks too.
pub fn same_crc(want: &str, crc: u32) -> bool {
    want.eq_ignore_ascii_case(&hex::encode(crc.to_le_bytes()))
        || want.eq_ignore_ascii_case(&hex::encode(crc.to_be_bytes()))
}

/// The checksum a manifest names itself by (its `Manifest-Checksum`), once checked: its
/// SHA-256 covers every byte up to and including the newline before its last
/// line, the one holding `Manifest-Checksum` (pg_verifybackup's rule).
pub fn checksum_of(manifest: &[u8]) -> Result<String> {
    use sha2::Digest;
    let bad = |m: &str| coded(ExitCode::BadArchive, format!("the backup manifest {m}"));
    let body = manifest.strip_suffix(b"\n").unwrap_or(manifest);
    let cut = memchr::memrchr(b'\n', body).ok_or_else(|| bad("is not a manifest"))? + 1;
    let m: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| bad(&format!("is not valid JSON: {e}")))?;
    let want = m["Manifest-Checksum"]
        .as_str()
        .ok_or_else(|| bad("has no Manifest-Checksum"))?;
    let got = hex::encode(sha2::Sha256::digest(&manifest[..cut]));
    if !got.eq_ignore_ascii_case(want) {
        return Err(bad("is damaged: its checksum does not match"));
    }
    Ok(got)
}

impl File {
    fn path(&self) -> Result<String> {
        match (&self.path, &self.encoded_path) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(h)) => {
                let raw = hex::decode(h).map_err(|_| {
                    coded(
                        ExitCode::BadArchive,
                        format!("bad Encoded-Path {h:?} in the manifest"),
                    )
                })?;
                Ok(String::from_utf8_lossy(&raw).into_owned())
            }
            (None, None) => Err(coded(
                ExitCode::BadArchive,
                "a file in the backup manifest has no path",
            )),
        }
    }

    /// The file's CRC-32C against the manifest's (see [`same_crc`]).
    fn check_crc(&self, path: &str, crc: u32) -> Result<()> {
        match (self.algorithm.as_deref(), self.checksum.as_deref()) {
            (None | Some("NONE"), _) => Ok(()),
            (Some("CRC32C"), Some(want)) => {
                let le = hex::encode(crc.to_le_bytes());
                if same_crc(want, crc) {
                    Ok(())
                } else {
                    Err(coded(
                        ExitCode::BadArchive,
                        format!(
                            "{path}: checksum {le}, the backup manifest says {want}: the file is damaged"
                        ),
                    ))
                }
            }
            (Some(a), _) => Err(coded(
                ExitCode::BadArchive,
                format!(
                    "{path}: checksum algorithm {a} is not one weir checks (it asks for CRC32C)"
                ),
            )),
        }
    }
}

/// One file of a manifest weir writes: its path in the data directory, size, modification
/// time and CRC-32C. No CRC for a file an incremental backup rebuilds from its parent's: its
/// bytes are only known once rebuilt (`Checksum-Algorithm` NONE, which the format allows).
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
    pub crc: Option<u32>,
}

/// A manifest in PostgreSQL's format, for a backup weir read itself (`weir-basebackup
/// --pgdata`): one file a line, the WAL range, then the SHA-256 of all that, so that
/// pg_verifybackup and [`check`] read it as they read the server's. The CRC-32C is written as
/// PostgreSQL writes it on a little-endian server (see `check_crc`).
pub fn write(files: &[Listed], timeline: u32, start_lsn: &str, end_lsn: &str) -> Vec<u8> {
    use sha2::Digest;
    let mut m = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    for (i, f) in files.iter().enumerate() {
        let modified =
            chrono::DateTime::<chrono::Utc>::from(f.modified).format("%Y-%m-%d %H:%M:%S GMT");
        let sum = match f.crc {
            Some(c) => format!(
                "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\"",
                hex::encode(c.to_le_bytes())
            ),
            None => "\"Checksum-Algorithm\": \"NONE\"".into(),
        };
        m.push_str(&format!(
            "{}{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": \"{modified}\", {sum} }}",
            if i == 0 { "" } else { ",\n" },
            serde_json::Value::from(f.path.as_str()),
            f.size,
        ));
    }
    m.push_str(&format!(
        "\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {timeline}, \"Start-LSN\": \"{start_lsn}\", \"End-LSN\": \"{end_lsn}\" }}\n],\n"
    ));
    let sum = hex::encode(sha2::Sha256::digest(m.as_bytes()));
    m.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
    m.into_bytes()
}

/// A reader that sums what passes through it: length and CRC-32C.
pub struct Summing<R> {
    inner: R,
    crc: crc_fast::Digest,
    len: u64,
}

impl<R: Read> Summing<R> {
    pub fn new(inner: R) -> Summing<R> {
        Summing {
            inner,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            len: 0,
        }
    }

    /// Length and CRC-32C of everything read.
    pub fn sum(&self) -> (u64, u32) {
        (self.len, self.crc.finalize() as u32)
    }
}

impl<R: Read> Read for Summing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as PostgreSQL writes it: one entry a line, the checksum line last.
    fn manifest(files: &str) -> Vec<u8> {
        use sha2::Digest;
        let body = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{files}\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }}\n],\n"
        );
        let sum = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n").into_bytes()
    }

    fn crc_hex(data: &[u8]) -> String {
        let c = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
        hex::encode(c.to_le_bytes())
    }

    fn seen(entries: &[(&str, &[u8])]) -> Seen {
        entries
            .iter()
            .map(|(p, d)| {
                let mut s = Summing::new(*d);
                std::io::copy(&mut s, &mut std::io::sink()).unwrap();
                (p.to_string(), s.sum())
            })
            .collect()
    }

    fn entry(path: &str, data: &[u8]) -> String {
        format!(
            "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-12-01 10:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}",
            data.len(),
            crc_hex(data)
        )
    }

    #[test]
    fn a_manifest_weir_writes_checks_as_the_servers_do() {
        let files = [("PG_VERSION", &b"15\n"[..]), ("base/1/1 \"q\"", b"rows")];
        let listed: Vec<Listed> = seen(&files)
            .into_iter()
            .map(|(path, (size, crc))| Listed {
                path,
                size,
                modified: std::time::UNIX_EPOCH,
                crc: Some(crc),
            })
            .collect();
        let m = write(&listed, 3, "0/2000028", "0/2000100");
        let ranges = check(&m, &seen(&files)).unwrap();
        assert_eq!(ranges[0].timeline, 3);
        assert_eq!(ranges[0].end_lsn, "0/2000100");
        assert!(check(&m, &seen(&files[..1])).is_err());
    }

    #[test]
    fn a_backup_that_matches_its_manifest_passes_and_gives_its_wal_range() {
        let m = manifest(
            &[
                entry("PG_VERSION", b"15\n"),
                entry("global/pg_control", b"ctl"),
            ]
            .join(",\n"),
        );
        let ranges = check(
            &m,
            &seen(&[("PG_VERSION", b"15\n"), ("global/pg_control", b"ctl")]),
        )
        .unwrap();
        assert_eq!(ranges[0].start_lsn, "0/2000028");
    }

    #[test]
    fn a_changed_missing_or_extra_file_or_a_damaged_manifest_is_exit_3() {
        let m = manifest(&entry("PG_VERSION", b"15\n"));
        let code = |r: Result<Vec<WalRange>>| crate::plumbing::exit_code_of(&r.unwrap_err());
        assert_eq!(
            code(check(&m, &seen(&[("PG_VERSION", b"16\n")]))),
            ExitCode::BadArchive
        );
        assert_eq!(
            code(check(&m, &seen(&[("PG_VERSION", b"15\n\n")]))),
            ExitCode::BadArchive
        );
        assert_eq!(code(check(&m, &seen(&[]))), ExitCode::BadArchive);
        let extra = seen(&[("PG_VERSION", b"15\n"), ("base/1/1", b"x")]);
        assert_eq!(code(check(&m, &extra)), ExitCode::BadArchive);
        let mut flipped = m.clone();
        let at = flipped.iter().position(|&b| b == b'1').unwrap();
        flipped[at] = b'2';
        assert_eq!(
            code(check(&flipped, &seen(&[("PG_VERSION", b"15\n")]))),
            ExitCode::BadArchive
        );
    }
}
