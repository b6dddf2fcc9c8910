//! `weir-wal ls` and `weir-wal verify`: what a repository holds, per timeline, and whether a
//! range of WAL is complete (every segment present, and with `--deep` every one decrypting,
//! decompressing and matching its digest and its cluster), so a base backup can be checked for
//! the WAL it needs before it counts.

use super::object::Identity;
use super::wal::{ClusterRecord, object_key, read_record, verified};
use super::walfile::{Kind, WalName, segment_name, segment_number};
use crate::plumbing::{ExitCode, Output, bad_input, coded};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use anyhow::{Result, anyhow};
use std::io::Write;

/// One archived file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: &'static str,
    pub timeline: u32,
    /// Bytes stored (after compression and encryption).
    pub size: u64,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Segment => "segment",
        Kind::Partial => "partial",
        Kind::History => "history",
        Kind::Backup => "backup",
    }
}

/// Every archived file, in name order (timeline first).
pub fn entries(repo: &Repo) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (key, size) in repo.list("wal/")? {
        let file = key.rsplit('/').next().unwrap_or(&key);
        // Anything else under wal/ is not ours to judge (a temporary file of a crashed push).
        if let Ok(n) = WalName::parse(file) {
            out.push(Entry {
                kind: kind_name(n.kind),
                timeline: n.timeline,
                name: n.name,
                size,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The archived segments of one timeline, in order.
pub fn segments(entries: &[Entry], timeline: u32) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e.kind == "segment" && e.timeline == timeline)
        .map(|e| e.name.as_str())
        .collect()
}

pub struct LsOptions {
    pub repo: String,
    pub s3: S3Settings,
    pub json: bool,
}

/// `weir-wal ls`: `TIMELINE KIND SIZE NAME` lines, or a JSON array.
pub fn ls(o: &LsOptions) -> Result<()> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    read_record(&repo)?.ok_or_else(|| anyhow!("no weir-wal repository at {}", o.repo))?;
    let list = entries(&repo)?;
    let mut out = Output::open(None, false)?;
    if o.json {
        serde_json::to_writer(&mut out, &list)?;
        writeln!(out)?;
    } else {
        for e in &list {
            writeln!(
                out,
                "{:08X} {:<8} {:>10} {}",
                e.timeline, e.kind, e.size, e.name
            )?;
        }
    }
    Ok(out.finish()?)
}

/// A segment's place in the WAL: timeline and segment number.
fn position(name: &str, segment_size: u32) -> (u32, u64) {
    let tli = u32::from_str_radix(&name[..8], 16).unwrap_or(0);
    (tli, segment_number(name, segment_size))
}

/// The segments missing between `start` and `stop` (inclusive, one timeline), or over each
/// timeline's first to last segment when no range is given. Pure, for unit tests.
pub fn gaps(names: &[&str], segment_size: u32, range: Option<(&str, &str)>) -> Result<Vec<String>> {
    let have: std::collections::BTreeSet<(u32, u64)> =
        names.iter().map(|n| position(n, segment_size)).collect();
    let mut spans: Vec<(u32, u64, u64)> = Vec::new();
    match range {
        Some((a, b)) => {
            let (ta, sa) = position(a, segment_size);
            let (tb, sb) = position(b, segment_size);
            if ta != tb || sa > sb {
                return Err(coded(
                    ExitCode::Usage,
                    format!("--range {a}..{b}: give two segments of one timeline, in order"),
                ));
            }
            spans.push((ta, sa, sb));
        }
        None => {
            let mut by_tli: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
            for &(t, s) in &have {
                let e = by_tli.entry(t).or_insert((s, s));
                e.0 = e.0.min(s);
                e.1 = e.1.max(s);
            }
            spans.extend(by_tli.into_iter().map(|(t, (a, b))| (t, a, b)));
        }
    }
    let mut missing = Vec::new();
    for (t, a, b) in spans {
        missing.extend(
            (a..=b)
                .filter(|s| !have.contains(&(t, *s)))
                .map(|s| segment_name(t, s, segment_size)),
        );
    }
    Ok(missing)
}

pub struct VerifyOptions {
    pub repo: String,
    pub s3: S3Settings,
    /// `START..STOP`, two segment names.
    pub range: Option<String>,
    pub deep: bool,
    pub identities: Vec<Identity>,
    pub json: bool,
}

/// `weir-wal verify`: exit 0 when the range (or every timeline's span) is complete, exit 4
/// naming the missing segments, exit 3 when `--deep` finds a damaged one.
pub fn verify(o: &VerifyOptions) -> Result<()> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    let rec = read_record(&repo)?.ok_or_else(|| anyhow!("no weir-wal repository at {}", o.repo))?;
    let list = entries(&repo)?;
    let segments: Vec<&str> = list
        .iter()
        .filter(|e| e.kind == "segment")
        .map(|e| e.name.as_str())
        .collect();
    let range = match &o.range {
        Some(r) => {
            let (a, b) = r.split_once("..").ok_or_else(|| {
                coded(
                    ExitCode::Usage,
                    format!("--range {r}: expected START..STOP"),
                )
            })?;
            for n in [a, b] {
                if !matches!(WalName::parse(n), Ok(w) if w.kind == Kind::Segment) {
                    return Err(coded(
                        ExitCode::Usage,
                        format!("--range: {n:?} is not a segment name"),
                    ));
                }
            }
            Some((a, b))
        }
        None => None,
    };
    let missing = gaps(&segments, rec.segment_size, range)?;
    let in_range: Vec<&str> = match range {
        Some((a, b)) => segments
            .iter()
            .copied()
            .filter(|n| *n >= a && *n <= b)
            .collect(),
        None => segments.clone(),
    };
    let damaged = if o.deep {
        deep_check(&repo, &rec, &in_range, &o.identities)?
    } else {
        Vec::new()
    };
    report(o, &in_range, &missing, &damaged)?;
    if !damaged.is_empty() {
        return Err(bad_input(format!("damaged: {}", damaged.join(", "))));
    }
    if !missing.is_empty() {
        return Err(coded(
            ExitCode::NotFound,
            format!(
                "{} segment(s) missing: {}",
                missing.len(),
                summarize(&missing)
            ),
        ));
    }
    Ok(())
}

fn summarize(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} .. {last}"),
    }
}

fn report(
    o: &VerifyOptions,
    present: &[&str],
    missing: &[String],
    damaged: &[String],
) -> Result<()> {
    let mut out = Output::open(None, false)?;
    if o.json {
        let v = serde_json::json!({
            "present": present.len(),
            "missing": missing,
            "damaged": damaged,
            "deep": o.deep,
        });
        writeln!(out, "{v}")?;
    } else {
        let first = present.first().copied().unwrap_or("-");
        let last = present.last().copied().unwrap_or("-");
        writeln!(
            out,
            "{} segments ({first} .. {last}), {} missing{}",
            present.len(),
            missing.len(),
            if o.deep {
                format!(", {} damaged", damaged.len())
            } else {
                String::new()
            }
        )?;
    }
    Ok(out.finish()?)
}

/// Reads every segment back, checked as fetch checks it, the digest always compared.
fn deep_check(
    repo: &Repo,
    rec: &ClusterRecord,
    names: &[&str],
    ids: &[Identity],
) -> Result<Vec<String>> {
    let mut damaged = Vec::new();
    // One scratch file (unlinked, so nothing is left behind) that each object decodes into.
    let scratch = tempfile::tempfile()?;
    for n in names {
        let w = WalName::parse(n)?;
        let stored = repo
            .read(&object_key(&w))?
            .ok_or_else(|| anyhow!("{n} vanished while verifying"))?;
        scratch.set_len(0)?;
        if verified(rec, &w, stored, ids, true, &scratch).is_err() {
            damaged.push(n.to_string());
        }
    }
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_per_timeline_and_in_a_range() {
        let seg = 16 << 20;
        let names = [
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000010000000100000002",
            "000000020000000100000002",
        ];
        assert_eq!(
            gaps(&names, seg, None).unwrap(),
            vec!["000000010000000100000001"]
        );
        assert_eq!(
            gaps(
                &names,
                seg,
                Some(("0000000100000000000000FF", "000000010000000100000000"))
            )
            .unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            gaps(
                &names,
                seg,
                Some(("000000010000000100000002", "000000010000000100000004"))
            )
            .unwrap(),
            vec!["000000010000000100000003", "000000010000000100000004"]
        );
        assert!(
            gaps(
                &names,
                seg,
                Some(("000000020000000100000002", "000000010000000100000004"))
            )
            .is_err()
        );
        // 1 GiB segments: four to a log.
        let big = ["000000010000000000000003", "000000010000000100000000"];
        assert!(gaps(&big, 1 << 30, None).unwrap().is_empty());
    }
}
