//! The backup catalog: `weir-ls --catalog` and `weir-prune`.
//!
//! A catalog is not a database of its own. Each backup is a data object plus a small entry
//! object beside it, named `<data object>.catalog.json`, which `scripts/backup.sh` writes only
//! after every stage of the backup succeeded. An entry therefore means "this backup is
//! complete"; a data object without one is the leftover of a failed run. Listing a prefix and
//! reading its entries is the whole catalog, so it can never disagree with what is stored.

use crate::archive::Stats;
use crate::plumbing::{ExitCode, coded, human_bytes};
use crate::storage::{self, ObjectInfo, S3Settings};
use anyhow::Result;
use chrono::{DateTime, Datelike, Months, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// The entry object's name is the data object's name plus this.
pub const ENTRY_SUFFIX: &str = ".catalog.json";

/// The entry format this weir writes and reads.
pub const ENTRY_VERSION: u32 = 1;

/// Entries are a few hundred bytes; anything far larger is not one of ours.
const ENTRY_LIMIT: u64 = 1 << 20;

/// One catalog entry, as `scripts/backup.sh` writes it (docs/FORMAT.md, "Catalog entries").
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectStats {
    pub url: String,
    pub size: u64,
}

impl Entry {
    /// What retention groups by: the database, or `(globals)`.
    pub fn database(&self) -> &str {
        match &self.archive {
            Some(a) => &a.database,
            None => "(globals)",
        }
    }
}

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

/// Whether a name is one backup.sh gives its data objects (`NAME-YYYYMMDDTHHMMSSZ.weir` or
/// `.sql`, then `.zst`, `.age`), so that pruning a prefix never touches anything else kept
/// there, such as someone's `notes.sql`.
fn is_data_name(url: &str) -> bool {
    let name = url.rsplit('/').next().unwrap_or(url);
    let base = name.strip_suffix(".age").unwrap_or(name);
    let base = base.strip_suffix(".zst").unwrap_or(base);
    let Some(stem) = base
        .strip_suffix(".weir")
        .or_else(|| base.strip_suffix(".sql"))
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
    let bodies = storage::read_many(&urls, s3, ENTRY_LIMIT)?;
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

fn warn_broken(cat: &Catalog) {
    for (ob, why) in &cat.broken {
        eprintln!("{}: {}: {why}", crate::plumbing::program(), ob.key);
    }
}

/// `weir-ls --catalog`: one line (or JSON object) per complete backup, oldest first.
pub fn ls(url: &str, s3: &S3Settings, json: bool, human: bool) -> Result<()> {
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
        writeln!(
            out,
            "{:<20}  {:<16}  {:>12}  {:>6}  {:>12}  {:<14}  {:<6}  URL",
            "TIME", "DATABASE", "SIZE", "TABLES", "ROWS", "ENCRYPTED", "MASKED"
        )?;
        for b in &cat.backups {
            let e = &b.entry;
            let size = if human {
                human_bytes(e.object.size)
            } else {
                e.object.size.to_string()
            };
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
    out.finish()?;
    Ok(())
}

/// How long to keep backups by age, `restic forget --keep-within` style: calendar months
/// (`y` is 12 of them) plus fixed seconds (`w`, `d`, `h`, `m` for minutes is not offered, so
/// `m` can mean months as in restic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    pub months: u32,
    pub seconds: i64,
}

impl Within {
    /// Parses `14d`, `1y6m`, `2w`, `36h`: numbers each followed by y, m, w, d or h.
    pub fn parse(s: &str) -> Result<Within, String> {
        let bad = || format!("not a duration: {s} (expected e.g. 14d, 1y6m, 36h)");
        let mut w = Within::default();
        for (n, unit) in crate::plumbing::unit_terms(s).ok_or_else(bad)? {
            match unit {
                'y' => w.months += 12 * n as u32,
                'm' => w.months += n as u32,
                'w' => w.seconds += n as i64 * 7 * 86400,
                'd' => w.seconds += n as i64 * 86400,
                'h' => w.seconds += n as i64 * 3600,
                _ => return Err(format!("not a duration: {s} (units are y, m, w, d, h)")),
            }
        }
        if w.months == 0 && w.seconds == 0 {
            return Err(bad());
        }
        Ok(w)
    }

    /// The oldest time still within the duration, counting back from `now`.
    fn cutoff(&self, now: DateTime<Utc>) -> i64 {
        let t = now
            .checked_sub_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        t.timestamp() - self.seconds
    }
}

/// A retention policy. Every rule says what to keep; a backup no rule keeps is removed.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
    pub within: Option<Within>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.last + self.daily + self.weekly + self.monthly + self.yearly == 0
            && self.within.is_none()
    }
}

/// Decides, for the backups of one database given newest first as Unix times, which to keep
/// and why. As restic and PgSnapMan thin: `daily N` keeps the newest backup of each of the N
/// most recent days that have one (likewise ISO weeks, months, years); rules add up. The
/// newest backup is always kept, whatever the policy.
pub fn decide(times_newest_first: &[i64], p: &Policy, now: DateTime<Utc>) -> Vec<Vec<String>> {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); times_newest_first.len()];
    let dt = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    for (i, r) in reasons.iter_mut().enumerate().take(p.last) {
        r.push(format!("last {}", i + 1));
    }
    type Bucket = fn(DateTime<Utc>) -> String;
    let rules: [(&str, usize, Bucket); 4] = [
        ("daily", p.daily, |d| d.format("%Y-%m-%d").to_string()),
        ("weekly", p.weekly, |d| {
            let w = d.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", p.monthly, |d| d.format("%Y-%m").to_string()),
        ("yearly", p.yearly, |d| d.format("%Y").to_string()),
    ];
    for (name, n, bucket) in rules {
        let mut last: Option<String> = None;
        let mut kept = 0;
        for (i, &t) in times_newest_first.iter().enumerate() {
            if kept == n {
                break;
            }
            let b = bucket(dt(t));
            if last.as_ref() != Some(&b) {
                reasons[i].push(format!("{name} {b}"));
                kept += 1;
                last = Some(b);
            }
        }
    }
    if let Some(w) = p.within {
        let cutoff = w.cutoff(now);
        for (i, &t) in times_newest_first.iter().enumerate() {
            if t >= cutoff {
                reasons[i].push("within".into());
            }
        }
    }
    if let Some(r) = reasons.first_mut() {
        if r.is_empty() {
            r.push("newest".into());
        }
    }
    reasons
}

#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    pub policy: Policy,
    pub dry_run: bool,
    /// Data objects without an entry are removed once they are this old: younger ones may
    /// belong to a backup that is writing its entry right now.
    pub leftover_age: std::time::Duration,
    /// The time to count back from (default: now).
    pub now: Option<DateTime<Utc>>,
    pub quiet: bool,
}

/// `weir-prune`: applies the policy to every database's backups under `url`, and removes the
/// leftovers of failed runs.
pub fn prune(url: &str, s3: &S3Settings, o: &PruneOptions) -> Result<()> {
    if o.policy.is_empty() {
        return Err(coded(
            ExitCode::Usage,
            "no keep rule given: use --keep-last, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly or --keep-within",
        ));
    }
    let now = o.now.unwrap_or_else(Utc::now);
    let cat = load(url, s3)?;
    warn_broken(&cat);
    let mut groups: BTreeMap<&str, Vec<&Backup>> = BTreeMap::new();
    for b in &cat.backups {
        groups.entry(b.entry.database()).or_default().push(b);
    }
    let mut out = crate::plumbing::Output::open(None, false)?;
    let verb = if o.dry_run { "would remove" } else { "remove" };
    // Entries go first: a prune cut short leaves data objects without entries (leftovers,
    // removed next time), never an entry that promises a backup that is gone.
    let (mut entries, mut datas) = (Vec::new(), Vec::new());
    let (mut kept, mut freed) = (0usize, 0u64);
    for (db, mut list) in groups {
        list.sort_by_key(|b| std::cmp::Reverse(b.entry.time_unix));
        let times: Vec<i64> = list.iter().map(|b| b.entry.time_unix).collect();
        for (b, why) in list.iter().zip(decide(&times, &o.policy, now)) {
            if why.is_empty() {
                writeln!(
                    out,
                    "{verb:<12}  {}  {db}  {}  (no keep rule matched)",
                    b.entry.time, b.data_url
                )?;
                entries.push(b.entry_url.clone());
                datas.push(b.data_url.clone());
                freed += b.entry.object.size;
            } else {
                kept += 1;
                writeln!(
                    out,
                    "{:<12}  {}  {db}  {}  ({})",
                    "keep",
                    b.entry.time,
                    b.data_url,
                    why.join(", ")
                )?;
            }
        }
    }
    let cutoff = std::time::SystemTime::now() - o.leftover_age;
    for l in &cat.leftovers {
        if l.modified <= cutoff {
            writeln!(
                out,
                "{verb:<12}  {}  {}  (leftover of a failed run: no catalog entry)",
                storage::rfc3339(l.modified),
                l.key
            )?;
            datas.push(l.key.clone());
            freed += l.size;
        }
    }
    out.finish()?;
    let removed = entries.len();
    if !o.dry_run {
        storage::remove_many(&entries, s3)?;
        storage::remove_many(&datas, s3)?;
    }
    if !o.quiet {
        eprintln!(
            "{}: {kept} backups kept, {removed} {}, {} leftovers {}, {} {}",
            crate::plumbing::program(),
            if o.dry_run { "to remove" } else { "removed" },
            datas.len() - removed,
            if o.dry_run { "to remove" } else { "removed" },
            human_bytes(freed),
            if o.dry_run { "to free" } else { "freed" },
        );
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

    fn t(s: &str) -> i64 {
        parse_time(s).unwrap().timestamp()
    }

    fn kept(times: &[i64], p: &Policy, now: &str) -> Vec<usize> {
        decide(times, p, parse_time(now).unwrap())
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn durations() {
        assert_eq!(
            Within::parse("1y6m"),
            Ok(Within {
                months: 18,
                seconds: 0
            })
        );
        assert_eq!(
            Within::parse("2w3d12h"),
            Ok(Within {
                months: 0,
                seconds: 17 * 86400 + 12 * 3600
            })
        );
        assert!(Within::parse("14").is_err());
        assert!(Within::parse("3x").is_err());
        assert!(Within::parse("").is_err());
    }

    #[test]
    fn last_and_newest() {
        let times = [t("2026-01-03"), t("2026-01-02"), t("2026-01-01")];
        let p = Policy {
            last: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &p, "2026-01-04"), vec![0, 1]);
        // A policy that keeps nothing still keeps the newest.
        let p = Policy {
            within: Some(Within::parse("1d").unwrap()),
            ..Default::default()
        };
        assert_eq!(kept(&times, &p, "2030-01-01"), vec![0]);
    }

    #[test]
    fn thinning_over_two_years() {
        // Two backups a day (03:00 and 15:00) from 2025-01-01 to 2026-12-31, newest first.
        let start = t("2025-01-01");
        let mut times: Vec<i64> = (0..730 * 2)
            .map(|i| start + (i / 2) * 86400 + 3 * 3600 + (i % 2) * 12 * 3600)
            .collect();
        times.reverse();
        let p = Policy {
            daily: 7,
            weekly: 4,
            monthly: 12,
            yearly: 3,
            ..Default::default()
        };
        let reasons = decide(&times, &p, parse_time("2027-01-01").unwrap());
        let keep: Vec<String> = times
            .iter()
            .zip(&reasons)
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, _)| {
                DateTime::<Utc>::from_timestamp(*t, 0)
                    .unwrap()
                    .format("%Y-%m-%d %H")
                    .to_string()
            })
            .collect();
        // 7 days, then the Sundays' last backups of the weeks before (ISO weeks end on
        // Sunday; the first 4 weeks overlap the 7 days), 12 month ends, and 2025's last.
        assert_eq!(
            keep,
            vec![
                "2026-12-31 15",
                "2026-12-30 15",
                "2026-12-29 15",
                "2026-12-28 15",
                "2026-12-27 15",
                "2026-12-26 15",
                "2026-12-25 15",
                "2026-12-20 15",
                "2026-12-13 15",
                "2026-11-30 15",
                "2026-10-31 15",
                "2026-09-30 15",
                "2026-08-31 15",
                "2026-07-31 15",
                "2026-06-30 15",
                "2026-05-31 15",
                "2026-04-30 15",
                "2026-03-31 15",
                "2026-02-28 15",
                "2026-01-31 15",
                "2025-12-31 15",
            ]
        );
        // Each kept backup says why.
        assert_eq!(
            reasons[0],
            vec![
                "daily 2026-12-31",
                "weekly 2026-W53",
                "monthly 2026-12",
                "yearly 2026"
            ]
        );
    }

    #[test]
    fn within_counts_calendar_months_back_from_now() {
        let times = [t("2026-03-01"), t("2026-01-31"), t("2025-12-31")];
        let p = Policy {
            within: Some(Within::parse("2m").unwrap()),
            ..Default::default()
        };
        // 2026-03-31 minus two months is 2026-01-31.
        assert_eq!(kept(&times, &p, "2026-03-31"), vec![0, 1]);
    }

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
