//! Retention: which backups a policy keeps (`decide`, pure, over times), and `weir-prune`,
//! which applies it to a catalog and removes the leftovers of failed runs.

use super::{Backup, load, warn_broken};
use crate::plumbing::{ExitCode, coded, human_bytes};
use crate::storage::{self, S3Settings};
use anyhow::Result;
use chrono::{DateTime, Datelike, Months, Utc};
use std::collections::BTreeMap;
use std::io::Write;

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
    /// The weir-wal repository of the base backups under the catalog: WAL older than the
    /// oldest kept base backup's start is removed from it.
    pub wal_repo: Option<String>,
    /// A weir-dedup repository's packs that hold chunks no kept backup needs are rewritten.
    pub repack: Option<crate::dedup::prune::Repack>,
}

/// `weir-prune`: applies the policy to every database's backups under `url`, and removes the
/// leftovers of failed runs.
/// What retention decided for one backup: kept, and why; or removed, and why.
enum Verdict {
    Keep(Vec<String>),
    Remove(String),
}

/// The verdicts for one group's backups, newest first. Logical backups go by the keep rules;
/// base backups too, but the rules count full backups only: an incremental is kept while the
/// full its chain starts from is kept and goes with it, so a parent whose child is kept is
/// never removed. An incremental whose parent the catalog does not hold is kept and named:
/// weir cannot tell whether its chain is whole.
fn verdicts(list: &[&Backup], p: &Policy, now: DateTime<Utc>) -> Vec<Verdict> {
    let fulls: Vec<usize> = (0..list.len())
        .filter(|&i| parent_of(list[i]).is_none())
        .collect();
    let times: Vec<i64> = fulls.iter().map(|&i| list[i].entry.time_unix).collect();
    let mut ruled: Vec<Option<Vec<String>>> = vec![None; list.len()];
    for (&i, why) in fulls.iter().zip(decide(&times, p, now)) {
        ruled[i] = Some(why);
    }
    let by_sum: std::collections::HashMap<&str, usize> = (0..list.len())
        .filter_map(|i| {
            let sum = list[i]
                .entry
                .physical
                .as_ref()?
                .manifest_checksum
                .as_deref()?;
            Some((sum, i))
        })
        .collect();
    let verdict = |i: usize| -> Verdict {
        if let Some(why) = &ruled[i] {
            return match why.is_empty() {
                true => Verdict::Remove("no keep rule matched".into()),
                false => Verdict::Keep(why.clone()),
            };
        }
        // Up the chain to its full backup (no chain is longer than the list).
        let mut at = i;
        for _ in 0..list.len() {
            let Some(up) = parent_of(list[at]) else { break };
            match by_sum.get(up.manifest_checksum.as_str()) {
                Some(&j) => at = j,
                None => {
                    return Verdict::Keep(vec![format!(
                        "its parent, started at {}, is not in the catalog",
                        up.start_lsn
                    )]);
                }
            }
        }
        let full = &list[at].entry.time;
        match ruled[at].as_ref().map(Vec::is_empty) {
            Some(true) => Verdict::Remove(format!("its chain's full backup of {full} goes")),
            _ => Verdict::Keep(vec![format!("its chain's full backup of {full} is kept")]),
        }
    };
    (0..list.len()).map(verdict).collect()
}

fn parent_of(b: &Backup) -> Option<&crate::physical::basebackup::ParentRef> {
    b.entry.physical.as_ref().and_then(|p| p.parent.as_ref())
}

pub fn prune(url: &str, s3: &S3Settings, o: &PruneOptions) -> Result<()> {
    if o.policy.is_empty() {
        return Err(coded(
            ExitCode::Usage,
            "no keep rule given: use --keep-last, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly or --keep-within",
        ));
    }
    if crate::dedup::store::is_repository(url, s3)? {
        return crate::dedup::prune::prune(url, s3, o);
    }
    if o.repack.is_some() {
        return Err(coded(
            ExitCode::Usage,
            "--repack is for a weir-dedup repository: a catalog's backups are whole objects",
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
    let mut kept_starts: Vec<&str> = Vec::new();
    for (db, mut list) in groups {
        list.sort_by_key(|b| std::cmp::Reverse(b.entry.time_unix));
        for (b, verdict) in list.iter().zip(verdicts(&list, &o.policy, now)) {
            let why = match verdict {
                Verdict::Keep(why) => why,
                Verdict::Remove(reason) => {
                    writeln!(
                        out,
                        "{verb:<12}  {}  {db}  {}  ({reason})",
                        b.entry.time, b.data_url
                    )?;
                    entries.push(b.entry_url.clone());
                    datas.push(b.data_url.clone());
                    freed += b.entry.object.size;
                    continue;
                }
            };
            {
                kept += 1;
                if let Some(p) = &b.entry.physical {
                    kept_starts.push(&p.start_wal);
                }
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
                crate::plumbing::rfc3339(l.modified),
                l.key
            )?;
            datas.push(l.key.clone());
            freed += l.size;
        }
    }
    let wal = match &o.wal_repo {
        Some(repo) => wal_to_remove(repo, s3, kept_starts.iter().min().copied(), &mut out, verb)?,
        None => Vec::new(),
    };
    out.finish()?;
    let removed = entries.len();
    if !o.dry_run {
        storage::remove_many(&entries, s3)?;
        storage::remove_many(&datas, s3)?;
        // Each WAL object before its digest file: an object never exists without one.
        let (digests, objects): (Vec<String>, Vec<String>) =
            wal.iter().cloned().partition(|u| u.ends_with(".sha256"));
        storage::remove_many(&objects, s3)?;
        storage::remove_many(&digests, s3)?;
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

/// The WAL objects (with their digest files) before `oldest_start`, the first segment the
/// oldest kept base backup needs; none when no base backup is kept, since then nothing says
/// which WAL a restore will need.
fn wal_to_remove(
    repo_url: &str,
    s3: &S3Settings,
    oldest_start: Option<&str>,
    out: &mut impl Write,
    verb: &str,
) -> Result<Vec<String>> {
    let Some(keep) = oldest_start else {
        writeln!(
            out,
            "{:<12}  {repo_url}  (no complete base backup: every WAL file kept)",
            "keep"
        )?;
        return Ok(Vec::new());
    };
    let repo = crate::storage::repo::Repo::open(repo_url, s3)?;
    let keys = repo.list("wal/")?;
    let names: Vec<String> = keys
        .iter()
        .map(|(k, _)| k.rsplit('/').next().unwrap_or(k).to_string())
        .collect();
    let gone: std::collections::BTreeSet<&String> = super::physical::wal_before(&names, keep)
        .into_iter()
        .collect();
    let base = repo_url.trim_end_matches('/');
    let mut urls = Vec::new();
    let mut files = 0;
    for ((key, _), name) in keys.iter().zip(&names) {
        if gone.contains(name) {
            files += 1;
            urls.extend(repo.stored_keys(key).iter().map(|k| format!("{base}/{k}")));
        }
    }
    writeln!(
        out,
        "{verb:<12}  {repo_url}  {files} WAL files before {keep} (the oldest kept base backup's start)"
    )?;
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::parse_time;

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

    /// A base backup's entry: `sum` names it, `parent` its parent's sum.
    fn base(day: u32, sum: &str, parent: Option<&str>) -> Backup {
        let time = format!("2026-12-{day:02}T03:00:00Z");
        let parent =
            parent.map(|p| serde_json::json!({"manifest_checksum": p, "start_lsn": "0/2000028"}));
        let entry = serde_json::json!({
            "weir_catalog": 2, "kind": "physical", "time": time, "time_unix": t(&time),
            "compression": "zstd", "encryption": "none",
            "object": {"url": format!("s3://b/base-{day}"), "size": 1},
            "physical": {
                "label": "l", "system_identifier": "7", "major": 15, "timeline": 1,
                "start_lsn": "0/2000028", "stop_lsn": "0/2000100",
                "start_wal": "000000010000000000000002", "stop_wal": "000000010000000000000002",
                "started": time, "finished": time, "files": 1, "bytes": 1,
                "manifest_checksum": sum, "parent": parent
            }
        });
        Backup {
            entry_url: format!("s3://b/base-{day}.catalog.json"),
            data_url: format!("s3://b/base-{day}"),
            entry: serde_json::from_value(entry).unwrap(),
        }
    }

    #[test]
    fn keep_rules_count_full_base_backups_and_incrementals_go_with_their_chain() {
        // Newest first: an incremental whose parent is not in the catalog, a full and its
        // incremental, an older full and its chain of two.
        let list = [
            base(10, "o", Some("gone")),
            base(9, "f2i", Some("f2")),
            base(8, "f2", None),
            base(3, "f1ii", Some("f1i")),
            base(2, "f1i", Some("f1")),
            base(1, "f1", None),
        ];
        let refs: Vec<&Backup> = list.iter().collect();
        let p = Policy {
            last: 1,
            ..Default::default()
        };
        let kept: Vec<bool> = verdicts(&refs, &p, parse_time("2026-12-11T00:00:00Z").unwrap())
            .iter()
            .map(|v| matches!(v, Verdict::Keep(_)))
            .collect();
        assert_eq!(kept, [true, true, true, false, false, false]);
        let p = Policy {
            last: 2,
            ..Default::default()
        };
        let all = verdicts(&refs, &p, parse_time("2026-12-11T00:00:00Z").unwrap());
        assert!(all.iter().all(|v| matches!(v, Verdict::Keep(_))));
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
}
