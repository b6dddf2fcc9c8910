//! The backup catalog: entries written by `weir-catalog add` ([`entry`]), read by
//! `weir-ls --catalog`, and thinned by `weir-prune` ([`retention`]).
//!
//! A catalog is not a database of its own. Each backup is a data object plus a small entry
//! object beside it, named `<data object>.catalog.json`, which `weir-catalog add` writes only
//! after every stage of the backup succeeded. An entry therefore means "this backup is
//! complete"; a data object without one is the leftover of a failed run. Listing a prefix and
//! reading its entries is the whole catalog, so it can never disagree with what is stored.

pub mod entry;
pub mod physical;
pub mod retention;

pub use entry::{ENTRY_SUFFIX, ENTRY_VERSION, Entry, ObjectStats};
pub use retention::{Policy, PruneOptions, Within, decide, prune};

use crate::plumbing::human_bytes;
use crate::storage::{self, ObjectInfo, S3Settings};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io::Write;

/// A complete backup: its entry and where both objects are.
#[derive(Clone, Debug)]
pub struct Backup {
    pub entry_url: String,
    pub data_url: String,
    pub entry: Entry,
}

/// What a prefix holds.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete backups, oldest first.
    pub backups: Vec<Backup>,
    /// Data objects without an entry: failed or interrupted runs.
    pub leftovers: Vec<ObjectInfo>,
    /// Entries that cannot be used (unreadable, or their data object is gone), with why.
    pub broken: Vec<(ObjectInfo, String)>,
}

/// Whether a name is one backup.sh gives its data objects (`NAME-YYYYMMDDTHHMMSSZ.weir`,
/// `.sql` or `.tar`, then `.zst`, `.age`), so that pruning a prefix never touches anything else kept
/// there, such as someone's `notes.sql`.
fn is_data_name(url: &str) -> bool {
    let name = url.rsplit('/').next().unwrap_or(url);
    let base = name.strip_suffix(".age").unwrap_or(name);
    let base = base.strip_suffix(".zst").unwrap_or(base);
    let Some(stem) = base
        .strip_suffix(".weir")
        .or_else(|| base.strip_suffix(".sql"))
        .or_else(|| base.strip_suffix(".tar"))
    else {
        return false;
    };
    // The stamp: a dash, 8 digits, T, 6 digits, Z.
    let b = stem.as_bytes();
    let n = b.len();
    n > 17
        && b[n - 17] == b'-'
        && b[n - 16..n - 8].iter().all(u8::is_ascii_digit)
        && b[n - 8] == b'T'
        && b[n - 7..n - 1].iter().all(u8::is_ascii_digit)
        && b[n - 1] == b'Z'
}

/// Lists `url` and reads every entry under it.
pub fn load(url: &str, s3: &S3Settings) -> Result<Catalog> {
    let objects = storage::list(url, s3)?;
    let mut data: HashMap<String, ObjectInfo> = HashMap::new();
    let mut entries = Vec::new();
    for ob in objects {
        if ob.key.ends_with(ENTRY_SUFFIX) {
            entries.push(ob);
        } else {
            data.insert(ob.key.clone(), ob);
        }
    }
    let urls: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
    let bodies = storage::read_many(&urls, s3, entry::ENTRY_LIMIT)?;
    let mut cat = Catalog::default();
    for (ob, body) in entries.into_iter().zip(bodies) {
        let data_url = ob.key[..ob.key.len() - ENTRY_SUFFIX.len()].to_string();
        let parsed = body.and_then(|b| {
            serde_json::from_slice::<Entry>(&b)
                .map_err(|e| anyhow::anyhow!("not a weir catalog entry: {e}"))
        });
        // A data object whose entry is unusable is not a leftover either: it is reported, and
        // left for a person to look at.
        if parsed.is_err()
            || parsed
                .as_ref()
                .is_ok_and(|e| e.weir_catalog > ENTRY_VERSION)
        {
            data.remove(&data_url);
        }
        match parsed {
            Err(e) => cat.broken.push((ob, format!("{e:#}"))),
            Ok(entry) if entry.weir_catalog > ENTRY_VERSION => {
                let v = entry.weir_catalog;
                cat.broken.push((
                    ob,
                    format!("entry version {v} is newer than this weir reads ({ENTRY_VERSION})"),
                ))
            }
            Ok(entry) => match data.remove(&data_url) {
                None => cat
                    .broken
                    .push((ob, format!("its data object {data_url} is missing"))),
                Some(_) => cat.backups.push(Backup {
                    entry_url: ob.key,
                    data_url,
                    entry,
                }),
            },
        }
    }
    cat.leftovers = data
        .into_values()
        .filter(|o| is_data_name(&o.key))
        .collect();
    cat.leftovers.sort_by(|a, b| a.key.cmp(&b.key));
    cat.backups
        .sort_by(|a, b| (a.entry.time_unix, &a.data_url).cmp(&(b.entry.time_unix, &b.data_url)));
    Ok(cat)
}

pub(crate) fn warn_broken(cat: &Catalog) {
    for (ob, why) in &cat.broken {
        eprintln!("{}: {}: {why}", crate::plumbing::program(), ob.key);
    }
}

/// `weir-ls --catalog`: one line (or JSON object) per complete backup, oldest first.
pub fn ls(url: &str, s3: &S3Settings, json: bool, human: bool) -> Result<()> {
    if crate::dedup::store::is_repository(url, s3)? {
        return crate::dedup::inventory::catalog(url, s3, json, human);
    }
    let cat = load(url, s3)?;
    warn_broken(&cat);
    let mut out = crate::plumbing::Output::open(None, false)?;
    if json {
        let list: Vec<serde_json::Value> = cat
            .backups
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(&b.entry).unwrap_or_default();
                v["database"] = b.entry.database().into();
                v["url"] = b.data_url.clone().into();
                v["entry_url"] = b.entry_url.clone().into();
                v
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        let (physical, logical): (Vec<&Backup>, Vec<&Backup>) =
            cat.backups.iter().partition(|b| b.entry.physical.is_some());
        if !logical.is_empty() || physical.is_empty() {
            logical_table(&mut out, &logical, human)?;
        }
        if !physical.is_empty() {
            if !logical.is_empty() {
                writeln!(out)?;
            }
            physical_table(&mut out, &physical, human)?;
        }
    }
    out.finish()?;
    Ok(())
}

fn size_of(e: &Entry, human: bool) -> String {
    if human {
        human_bytes(e.object.size)
    } else {
        e.object.size.to_string()
    }
}

/// Base backups: where each starts and stops in the WAL, and the WAL it needs.
fn physical_table(out: &mut impl Write, list: &[&Backup], human: bool) -> Result<()> {
    writeln!(
        out,
        "{:<20}  {:<8}  {:>3}  {:<11}  {:<11}  {:<49}  {:>12}  {:>9}  URL",
        "TIME", "KIND", "TLI", "START LSN", "STOP LSN", "WAL", "SIZE", "SECONDS"
    )?;
    for b in list {
        let (e, p) = (&b.entry, b.entry.physical.as_ref().expect("partitioned"));
        writeln!(
            out,
            "{:<20}  {:<8}  {:>3}  {:<11}  {:<11}  {:<49}  {:>12}  {:>9.1}  {}",
            e.time,
            e.kind,
            p.timeline,
            p.start_lsn,
            p.stop_lsn,
            format!("{}..{}", p.start_wal, p.stop_wal),
            size_of(e, human),
            e.duration_seconds,
            b.data_url
        )?;
    }
    Ok(())
}

fn logical_table(out: &mut impl Write, list: &[&Backup], human: bool) -> Result<()> {
    {
        writeln!(
            out,
            "{:<20}  {:<16}  {:>12}  {:>6}  {:>12}  {:<14}  {:<6}  URL",
            "TIME", "DATABASE", "SIZE", "TABLES", "ROWS", "ENCRYPTED", "MASKED"
        )?;
        for b in list {
            let e = &b.entry;
            let size = size_of(e, human);
            let (tables, rows, masked) = match &e.archive {
                Some(a) => (
                    a.tables.to_string(),
                    a.rows.to_string(),
                    if a.masked { "yes" } else { "no" },
                ),
                None => ("-".into(), "-".into(), "-"),
            };
            writeln!(
                out,
                "{:<20}  {:<16}  {size:>12}  {tables:>6}  {rows:>12}  {:<14}  {masked:<6}  {}",
                e.time,
                e.database(),
                e.encryption,
                b.data_url
            )?;
        }
    }
    Ok(())
}

/// Parses `--now`: RFC 3339, or a date (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!("not a time: {s} (expected RFC 3339 or YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_names() {
        assert!(is_data_name(
            "s3://b/p/app/app-20261122T030000Z.weir.zst.age"
        ));
        assert!(is_data_name(
            "/backups/_globals/globals-20261122T030000Z.sql.zst"
        ));
        assert!(is_data_name("odd%20db-20261122T030000Z.weir"));
        assert!(!is_data_name("x.weir"));
        assert!(!is_data_name("/backups/schema.sql"));
        assert!(!is_data_name("s3://b/p/notes.txt"));
        assert!(!is_data_name(
            "s3://b/p/app-20261122T030000Z.weir.catalog.json"
        ));
        assert!(!is_data_name("app-2026112xT030000Z.weir"));
    }
}
