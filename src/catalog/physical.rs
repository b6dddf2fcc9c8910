//! Base backups in the catalog: which one a recovery target needs (`pick`), and which WAL the
//! kept ones no longer need (`wal_before`). Both pure, over entries and names.

use super::Backup;
use crate::pg::replication::parse_lsn;
use anyhow::Result;
use chrono::{DateTime, Utc};

/// What a restore aims at, as far as choosing a base backup goes.
#[derive(Clone, Debug, Default)]
pub struct Aim {
    /// recovery_target_time: the backup must have finished before it.
    pub time: Option<DateTime<Utc>>,
    /// recovery_target_lsn: the backup must have stopped at or before it.
    pub lsn: Option<u64>,
    /// recovery_target_timeline as a number: the backup's timeline must not be later.
    pub timeline: Option<u32>,
}

/// The base backup a recovery to `aim` starts from: the newest complete one that ended before
/// the target, on the target's timeline or an earlier one (whose history leads to it). None
/// when no backup can reach the target. `backups` may hold logical ones too; they are skipped.
pub fn pick<'a>(backups: &'a [Backup], aim: &Aim) -> Result<Option<&'a Backup>> {
    let mut best: Option<(&Backup, i64)> = None;
    for b in backups {
        let Some(p) = &b.entry.physical else {
            continue;
        };
        let finished = DateTime::parse_from_rfc3339(&p.finished)?.with_timezone(&Utc);
        // Backups before microseconds were noted finished in whole seconds: one noted at
        // 10:00:05 may have ended as late as 10:00:05.999999, after a target of 10:00:05.5,
        // and recovery from it could not stop there. Taken as the latest it could be.
        let finished = match finished.timestamp_subsec_nanos() {
            0 => finished + chrono::TimeDelta::seconds(1) - chrono::TimeDelta::nanoseconds(1),
            _ => finished,
        };
        if aim.time.is_some_and(|t| finished >= t) || aim.timeline.is_some_and(|t| p.timeline > t) {
            continue;
        }
        if let Some(lsn) = aim.lsn {
            if parse_lsn(&p.stop_lsn)? > lsn {
                continue;
            }
        }
        if best.is_none_or(|(_, t)| b.entry.time_unix > t) {
            best = Some((b, b.entry.time_unix));
        }
    }
    Ok(best.map(|(b, _)| b))
}

/// A recovery_target_time as PostgreSQL users write it: `2026-12-01 10:00:00+00`, with a
/// fraction or a `+01:00` zone, or RFC 3339. A zone is required: the server's own would be a
/// guess here.
pub fn parse_target_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s.trim(), f) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(format!(
        "not a time with a zone: {s} (e.g. '2026-12-01 10:00:00+00')"
    ))
}

/// `weir-catalog pick`: prints the data URL of the base backup for `aim`, or exits 4.
pub fn pick_url(url: &str, s3: &crate::storage::S3Settings, aim: &Aim) -> Result<()> {
    use std::io::Write;
    let cat = super::load(url, s3)?;
    super::warn_broken(&cat);
    let Some(b) = pick(&cat.backups, aim)? else {
        return Err(crate::plumbing::coded(
            crate::plumbing::ExitCode::NotFound,
            format!("no complete base backup under {url} ended before the target"),
        ));
    };
    let mut out = crate::plumbing::Output::open(None, false)?;
    writeln!(out, "{}", b.data_url)?;
    out.finish()?;
    Ok(())
}

/// The archived WAL files (segments, `.partial` and `.backup` files) that come before `keep`,
/// the first segment the oldest kept base backup needs. Timeline history files are never
/// among them: they are small, and recovery on any later timeline reads them.
pub fn wal_before<'a>(names: &'a [String], keep: &str) -> Vec<&'a String> {
    names
        .iter()
        .filter(|n| !n.ends_with(".history") && n.len() >= 24 && n[..24] < keep[..24])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::entry::{Entry, ObjectStats, Physical};

    fn backup(time: &str, timeline: u32, stop_lsn: &str, finished: &str) -> Backup {
        let t = DateTime::parse_from_rfc3339(time).unwrap().timestamp();
        Backup {
            entry_url: format!("{time}.catalog.json"),
            data_url: time.to_string(),
            entry: Entry {
                weir_catalog: 2,
                kind: "physical".into(),
                time: time.into(),
                time_unix: t,
                duration_seconds: 1.0,
                compression: "zstd".into(),
                encryption: "age".into(),
                object: ObjectStats {
                    url: time.into(),
                    size: 1,
                },
                archive: None,
                source: None,
                physical: Some(Physical {
                    label: "l".into(),
                    system_identifier: "7".into(),
                    major: 15,
                    timeline,
                    start_lsn: "0/1000028".into(),
                    stop_lsn: stop_lsn.into(),
                    start_wal: "000000010000000000000001".into(),
                    stop_wal: "000000010000000000000001".into(),
                    started: time.into(),
                    finished: finished.into(),
                    files: 1,
                    bytes: 1,
                    manifest_checksum: None,
                    parent: None,
                }),
            },
        }
    }

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn the_newest_backup_that_ended_before_the_target_on_its_timeline_is_picked() {
        let list = vec![
            backup(
                "2026-12-01T02:00:00Z",
                1,
                "0/5000100",
                "2026-12-01T02:10:00Z",
            ),
            backup(
                "2026-12-02T02:00:00Z",
                1,
                "0/9000100",
                "2026-12-02T02:10:00Z",
            ),
            backup(
                "2026-12-03T02:00:00Z",
                2,
                "0/D000100",
                "2026-12-03T02:10:00Z",
            ),
        ];
        let name = |aim: Aim| pick(&list, &aim).unwrap().map(|b| b.entry.time.clone());
        assert_eq!(
            name(Aim::default()).as_deref(),
            Some("2026-12-03T02:00:00Z")
        );
        // A time between the second backup's start and end: only the first can reach it.
        let aim = Aim {
            time: at("2026-12-02T02:05:00Z"),
            ..Default::default()
        };
        assert_eq!(name(aim).as_deref(), Some("2026-12-01T02:00:00Z"));
        let aim = Aim {
            time: at("2026-12-02T12:00:00Z"),
            ..Default::default()
        };
        assert_eq!(name(aim).as_deref(), Some("2026-12-02T02:00:00Z"));
        let aim = Aim {
            lsn: Some(0x9000100),
            ..Default::default()
        };
        assert_eq!(name(aim).as_deref(), Some("2026-12-02T02:00:00Z"));
        let aim = Aim {
            timeline: Some(1),
            ..Default::default()
        };
        assert_eq!(name(aim).as_deref(), Some("2026-12-02T02:00:00Z"));
        let aim = Aim {
            time: at("2026-12-01T02:05:00Z"),
            ..Default::default()
        };
        assert_eq!(name(aim), None, "nothing ended before the target");
    }

    #[test]
    fn target_times_read_as_postgresql_users_write_them() {
        let want = at("2026-12-01T10:00:00Z").unwrap();
        assert_eq!(parse_target_time("2026-12-01 10:00:00+00"), Ok(want));
        assert_eq!(parse_target_time("2026-12-01 11:00:00+01:00"), Ok(want));
        assert_eq!(parse_target_time("2026-12-01T10:00:00Z"), Ok(want));
        assert!(parse_target_time("2026-12-01 10:00:00.25+00").is_ok());
        assert!(parse_target_time("2026-12-01 10:00:00").is_err());
    }

    #[test]
    fn wal_before_the_oldest_kept_backup_goes_and_history_stays() {
        let names: Vec<String> = [
            "00000001.history",
            "000000010000000000000003",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000005",
            "000000010000000000000006.partial",
            "00000002.history",
            "000000020000000000000006",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let gone = wal_before(&names, "000000010000000000000005");
        assert_eq!(
            gone,
            vec![
                "000000010000000000000003",
                "000000010000000000000004.00000028.backup"
            ]
        );
        let gone = wal_before(&names, "000000020000000000000006");
        assert_eq!(gone.len(), 4);
        assert!(gone.iter().all(|n| !n.ends_with(".history")));
    }

    #[test]
    fn a_backup_that_finished_within_the_targets_second_is_not_picked() {
        let list = vec![
            backup(
                "2026-12-01T08:16:24Z",
                1,
                "0/5000000",
                "2026-12-01T08:16:24Z",
            ),
            backup(
                "2026-12-01T08:16:25Z",
                1,
                "0/6000000",
                "2026-12-01T08:16:25Z",
            ),
        ];
        let aim = |t| Aim {
            time: at(t),
            ..Aim::default()
        };
        let picked = |t| pick(&list, &aim(t)).unwrap().unwrap().data_url.clone();
        assert_eq!(picked("2026-12-01T08:16:25.855Z"), "2026-12-01T08:16:24Z");
        assert_eq!(picked("2026-12-01T08:16:26Z"), "2026-12-01T08:16:25Z");
    }
}
