//! `weir-wal push --metrics FILE`: a Prometheus textfile (for node_exporter's textfile
//! collector, as backup.sh writes one): the last archived file and when, the last push's
//! outcome, and failures counted over every push this file has seen (read back each time).

use anyhow::Result;
use std::path::Path;

const HELP: &[(&str, &str, &str)] = &[
    (
        "weir_wal_push_success",
        "gauge",
        "1 if the last push succeeded, 0 if it failed.",
    ),
    (
        "weir_wal_last_archived_timestamp_seconds",
        "gauge",
        "When the last WAL file was archived.",
    ),
    (
        "weir_wal_last_archived_info",
        "gauge",
        "The last WAL file archived, as its label.",
    ),
    (
        "weir_wal_last_failure_timestamp_seconds",
        "gauge",
        "When the last push failed.",
    ),
    (
        "weir_wal_push_failures_total",
        "counter",
        "Failed pushes, over every push this file has seen.",
    ),
];

/// The value of `metric` in a previous file, if it is there.
fn previous(text: &str, metric: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")))
        .map(|l| l.to_string())
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Records one push of `file` to `repo`.
pub fn record(path: &Path, repo: &str, file: &str, ok: bool) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let now = crate::plumbing::unix_seconds(std::time::SystemTime::now());
    let repo = repo.replace('\\', "\\\\").replace('"', "\\\"");
    let l = format!("repo=\"{repo}\"");
    let mut lines: Vec<String> = Vec::new();
    let keep = |m: &str| previous(&old, m);
    let failures =
        keep("weir_wal_push_failures_total").map_or(0.0, |x| value(&x)) + f64::from(u8::from(!ok));
    lines.push(format!("weir_wal_push_success{{{l}}} {}", u8::from(ok)));
    if ok {
        lines.push(format!(
            "weir_wal_last_archived_timestamp_seconds{{{l}}} {now}"
        ));
        lines.push(format!(
            "weir_wal_last_archived_info{{{l},file=\"{file}\"}} 1"
        ));
    } else {
        lines.extend(keep("weir_wal_last_archived_timestamp_seconds"));
        lines.extend(keep("weir_wal_last_archived_info"));
        lines.push(format!(
            "weir_wal_last_failure_timestamp_seconds{{{l}}} {now}"
        ));
    }
    if ok {
        lines.extend(keep("weir_wal_last_failure_timestamp_seconds"));
    }
    lines.push(format!("weir_wal_push_failures_total{{{l}}} {failures}"));
    let mut out = String::new();
    for (name, kind, help) in HELP {
        if let Some(line) = lines.iter().find(|x| x.starts_with(&format!("{name}{{"))) {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{line}\n"
            ));
        }
    }
    crate::plumbing::write_atomically(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_accumulate_and_the_last_success_stays() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("wal.prom");
        record(&f, "s3://b/c", "000000010000000000000001", true).unwrap();
        record(&f, "s3://b/c", "000000010000000000000002", false).unwrap();
        record(&f, "s3://b/c", "000000010000000000000002", false).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.contains("weir_wal_push_success{repo=\"s3://b/c\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_wal_push_failures_total{repo=\"s3://b/c\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("file=\"000000010000000000000001\"} 1\n"),
            "{text}"
        );
        record(&f, "s3://b/c", "000000010000000000000002", true).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.contains("file=\"000000010000000000000002\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_wal_push_failures_total{repo=\"s3://b/c\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE weir_wal_push_failures_total counter\n"),
            "{text}"
        );
    }
}
