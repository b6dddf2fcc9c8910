//! Catalog entries: the small JSON object beside each complete backup (docs/FORMAT.md,
//! "Catalog entries"), and `weir-catalog add`, which writes one from the `--stats` files the
//! stages left, so that the shell keeps the policy and Rust the format.

use crate::archive::Stats;
use crate::plumbing::{Output, rfc3339, unix_seconds};
use crate::storage::{self, S3Settings};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// The entry object's name is the data object's name plus this.
pub const ENTRY_SUFFIX: &str = ".catalog.json";

/// The newest entry format this weir reads. Logical backups' entries are still written as
/// version 1; a base backup's is version 2, so that a weir from before physical backups leaves
/// it alone instead of taking it for a globals backup.
pub const ENTRY_VERSION: u32 = 2;

/// Entries are a few hundred bytes; anything far larger is not one of ours.
pub(crate) const ENTRY_LIMIT: u64 = 1 << 20;

/// One catalog entry, as `weir-catalog add` writes it (docs/FORMAT.md, "Catalog entries").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub weir_catalog: u32,
    /// `database` (a weir archive) or `globals` (`pg_dumpall --globals-only` SQL).
    pub kind: String,
    /// When the backup started, UTC: what retention counts by.
    pub time: String,
    pub time_unix: i64,
    #[serde(default)]
    pub duration_seconds: f64,
    /// `zstd` or `none`; `age`, `age-passphrase` or `none`.
    pub compression: String,
    pub encryption: String,
    /// The data object as `weir-put --stats` described it.
    pub object: ObjectStats,
    /// What the archive holds (`weir-extract --stats` or `weir-mask --stats`); none for globals.
    #[serde(default)]
    pub archive: Option<Stats>,
    /// The instance the backup came from, as backup.sh was configured.
    #[serde(default)]
    pub source: Option<String>,
    /// A base backup: where it starts and stops in the WAL (`weir-basebackup --stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<Physical>,
}

/// What a base backup's entry records of it, from `weir-basebackup --stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Physical {
    pub label: String,
    /// A string: JSON readers that use doubles would round a 64-bit identifier.
    pub system_identifier: String,
    pub major: u32,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    /// The WAL recovery needs to reach consistency, both included.
    pub start_wal: String,
    pub stop_wal: String,
    pub started: String,
    /// When the server ended the backup: a recovery target before this cannot use it.
    pub finished: String,
    pub files: u64,
    pub bytes: u64,
    /// The backup's manifest checksum, which names it to its incrementals (absent in entries
    /// made before incremental backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_checksum: Option<String>,
    /// An incremental backup's parent; absent for a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::physical::basebackup::ParentRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectStats {
    pub url: String,
    pub size: u64,
}

impl Entry {
    /// What retention groups by: the database, `(globals)` or `(physical)`.
    pub fn database(&self) -> &str {
        match (&self.archive, &self.physical) {
            (Some(a), _) => &a.database,
            (None, Some(_)) => "(physical)",
            (None, None) => "(globals)",
        }
    }
}

/// What `weir-catalog add` records besides the stages' own stats.
#[derive(Clone, Debug)]
pub struct AddOptions {
    /// `database` or `globals`.
    pub kind: String,
    /// When the backup started, Unix seconds with a fraction (`date +%s.%N`): the entry's time
    /// is its whole seconds, the duration runs from it to now.
    pub started: f64,
    pub compression: String,
    pub encryption: String,
    pub source: Option<String>,
    /// `weir-put --stats` of the data object.
    pub object_stats: String,
    /// `weir-extract --stats` or `weir-mask --stats`; none for globals.
    pub archive_stats: Option<String>,
    /// `weir-basebackup --stats`; physical backups only.
    pub backup_stats: Option<String>,
}

/// Reads one of the stages' `--stats` files.
fn read_stats<T: serde::de::DeserializeOwned>(path: &str, what: &str) -> Result<T> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read the {what} stats {path}"))?;
    serde_json::from_slice(&text).with_context(|| format!("{path} is not {what} stats"))
}

/// Builds the entry of the backup at `url` (checked against the object stats, so an entry
/// never describes another object).
pub fn build(url: &str, o: &AddOptions, now: std::time::SystemTime) -> Result<Entry> {
    let object: ObjectStats = read_stats(&o.object_stats, "weir-put")?;
    if object.url != url {
        bail!("{} describes {}, not {url}", o.object_stats, object.url);
    }
    let archive: Option<Stats> = match &o.archive_stats {
        Some(p) => Some(read_stats(p, "archive")?),
        None => None,
    };
    let physical: Option<Physical> = match &o.backup_stats {
        Some(p) => Some(read_stats(p, "weir-basebackup")?),
        None => None,
    };
    match (o.kind.as_str(), archive.is_some(), physical.is_some()) {
        ("database", true, false) | ("globals", false, false) | ("physical", false, true) => {}
        ("database", false, _) => bail!("a database backup's entry needs --archive-stats"),
        ("physical", _, false) => bail!("a physical backup's entry needs --backup-stats"),
        ("database" | "globals" | "physical", _, _) => {
            bail!("a {} backup's entry takes other stats", o.kind)
        }
        (k, _, _) => bail!("unknown kind {k} (database, globals or physical)"),
    }
    if !o.started.is_finite() || o.started < 0.0 {
        bail!("--started must be Unix seconds");
    }
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(o.started);
    let duration = now.duration_since(started).unwrap_or_default();
    Ok(Entry {
        weir_catalog: if physical.is_some() { 2 } else { 1 },
        kind: o.kind.clone(),
        time: rfc3339(started),
        time_unix: unix_seconds(started) as i64,
        duration_seconds: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
        compression: o.compression.clone(),
        encryption: o.encryption.clone(),
        object,
        archive,
        source: o.source.clone(),
        physical,
    })
}

/// `weir-catalog add`: writes `URL.catalog.json` (never over an existing one: exit 5), then
/// prints `SIZE ROWS TABLES` of the backup on standard output, for the caller's metrics.
pub fn add(url: &str, s3: &S3Settings, o: &AddOptions) -> Result<()> {
    let entry = build(url, o, std::time::SystemTime::now())?;
    let mut json = serde_json::to_vec(&entry)?;
    json.push(b'\n');
    storage::put_bytes(&format!("{url}{ENTRY_SUFFIX}"), s3, json)?;
    let (rows, tables) = entry
        .archive
        .as_ref()
        .map_or((0, 0), |a| (a.rows, a.tables));
    let mut out = Output::open(None, false)?;
    writeln!(out, "{} {rows} {tables}", entry.object.size)?;
    out.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn opts(dir: &std::path::Path, kind: &str, archive: bool) -> AddOptions {
        let put = dir.join("put.json");
        std::fs::write(
            &put,
            br#"{"url":"s3://b/db/db-20261201T030000Z.weir","size":42}"#,
        )
        .unwrap();
        let stats = dir.join("extract.json");
        std::fs::write(
            &stats,
            br#"{"archive_id":"x","format_version":1,"weir_version":"0","database":"db","server_version":"15","created":"","created_unix":0,"tables":3,"rows":7,"bytes":9,"blobs":0,"globals":false,"masked":false}"#,
        )
        .unwrap();
        AddOptions {
            kind: kind.into(),
            started: 1_795_000_000.25,
            compression: "zstd".into(),
            encryption: "none".into(),
            source: Some("db:5432".into()),
            object_stats: put.to_string_lossy().into(),
            archive_stats: archive.then(|| stats.to_string_lossy().into()),
            backup_stats: None,
        }
    }

    #[test]
    fn an_entry_is_built_from_the_stats_and_checked_against_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = "s3://b/db/db-20261201T030000Z.weir";
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_010_750);
        let e = build(url, &opts(dir.path(), "database", true), now).unwrap();
        assert_eq!(
            (e.time.as_str(), e.time_unix),
            ("2026-11-18T11:06:40Z", 1_795_000_000)
        );
        assert_eq!(e.duration_seconds, 10.5);
        assert_eq!((e.object.size, e.database()), (42, "db"));
        // Another object's stats, a database without archive stats, globals with them.
        let err = build(
            "s3://b/other.weir",
            &opts(dir.path(), "database", true),
            now,
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("not s3://b/other.weir"));
        assert!(build(url, &opts(dir.path(), "database", false), now).is_err());
        assert!(build(url, &opts(dir.path(), "globals", true), now).is_err());
        assert!(build(url, &opts(dir.path(), "globals", false), now).is_ok());
    }

    #[test]
    fn a_base_backup_entry_carries_its_wal_range_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let url = "s3://b/db/db-20261201T030000Z.weir";
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_010_750);
        let bb = dir.path().join("bb.json");
        std::fs::write(
            &bb,
            br#"{"format":"weir-basebackup","version":1,"label":"l","system_identifier":"7","major":15,"server_version":150018,"segment_size":16777216,"timeline":1,"start_lsn":"0/3000028","start_wal":"000000010000000000000003","started":"2026-12-01T03:00:00Z","tablespaces":[],"stop_lsn":"0/3000100","stop_timeline":1,"stop_wal":"000000010000000000000003","finished":"2026-12-01T03:00:09Z","files":980,"bytes":54605446,"seconds":9.5}"#,
        )
        .unwrap();
        let mut o = opts(dir.path(), "physical", false);
        assert!(build(url, &o, now).is_err(), "physical without its stats");
        o.backup_stats = Some(bb.to_string_lossy().into());
        let e = build(url, &o, now).unwrap();
        assert_eq!((e.weir_catalog, e.database()), (2, "(physical)"));
        assert_eq!(
            e.physical.as_ref().unwrap().stop_wal,
            "000000010000000000000003"
        );
        o.archive_stats = opts(dir.path(), "database", true).archive_stats;
        assert!(build(url, &o, now).is_err(), "physical with archive stats");
    }
}
