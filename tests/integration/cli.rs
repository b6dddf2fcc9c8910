//! What users see, snapshotted: each binary's `--help`, so a change to it shows up as a
//! reviewed diff in tests/snapshots/ (`WEIR_BLESS=1 cargo test --test integration cli` rewrites
//! them), and the usage-error exit code.

use crate::harness::*;

fn binaries() -> Vec<String> {
    weir::cli::PAGES.iter().map(|p| p.name()).collect()
}

#[test]
fn help_text_matches_the_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for b in &binaries() {
        // A fixed width, so the wrapping does not depend on the terminal of whoever runs it.
        let o = stage(b, &["--help"], b"", &[("COLUMNS", "100")]);
        assert!(o.status.success(), "{b} --help");
        let path = dir.join(format!("{b}.help.txt"));
        if std::env::var_os("WEIR_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &o.stdout).unwrap();
        } else {
            let want = std::fs::read(&path).unwrap_or_default();
            assert!(
                want == o.stdout,
                "{b} --help changed; review and run WEIR_BLESS=1 cargo test --test integration cli:\n{}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for b in &binaries() {
        let o = stage(b, &["--no-such-flag"], b"", &[]);
        assert_eq!(o.status.code(), Some(2), "{b}");
        assert!(stderr(&o).contains("--no-such-flag"), "{b}: {}", stderr(&o));
    }
    // Zero workers is out of range, as pg_restore -j 0 is.
    for b in ["weir-extract", "weir-load"] {
        let o = stage(b, &["-j", "0", "db"], b"", &[]);
        assert_eq!(o.status.code(), Some(2), "{b} -j 0");
        assert!(stderr(&o).contains("at least 1"), "{b}: {}", stderr(&o));
    }
    let o = stage("weir-load", &["--schema-only", "--data-only"], b"", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot be used together"),
        "{}",
        stderr(&o)
    );
}
