//! The command-line definitions of every binary, one file per family, so that `--help`, the
//! man pages (`man/`) and the shell completions (`completions/`) all come from one place; both
//! are committed and a unit test fails when they drift from the code (`WEIR_BLESS=1 cargo test
//! --lib` rewrites them). [`PAGES`] is the one list of binaries: man pages, completions and the
//! integration tests' help snapshots all iterate it.

mod cdc;
mod dedup;
#[cfg(test)]
mod doc_flags;
mod dump;
mod ops;
mod physical;
mod storage;
mod stream;

pub use cdc::{ApplyCli, CdcCli, SinkCli};
pub use dedup::{DedupCli, DedupCommand};
pub use dump::{ExtractCli, InspectCli, LoadCli, MaskCli};
pub use ops::{CatalogCli, CatalogCommand, PruneCli, ScheduleCli};
pub use physical::{BaseBackupCli, RestorePhysicalCli, WalCli, WalCommand};
pub use storage::{GetCli, LsCli, PutCli, RmCli, S3Args, TransferArgs};
pub use stream::{CompressCli, EncryptCli};

use crate::pg::conn::{parse_conninfo, quote_conninfo_value};
use crate::plumbing::ExitCode;
use clap::Args;

/// Every binary, in the order the README lists them.
pub const PAGES: &[Page] = &[
    dump::EXTRACT,
    dump::LOAD,
    dump::INSPECT,
    stream::COMPRESS,
    stream::ENCRYPT,
    dump::MASK,
    storage::PUT,
    storage::GET,
    storage::LS,
    storage::RM,
    dedup::DEDUP,
    ops::CATALOG,
    ops::PRUNE,
    ops::SCHEDULE,
    physical::WAL,
    physical::BASEBACKUP,
    physical::RESTORE_PHYSICAL,
    cdc::CDC,
    cdc::APPLY,
    cdc::SINK,
];

/// One binary's command line and the parts of its man page that clap cannot know.
pub struct Page {
    pub command: fn() -> clap::Command,
    /// (command line, what it does) pairs.
    pub examples: &'static [(&'static str, &'static str)],
    /// (variables, what they do) pairs.
    pub environment: &'static [(&'static str, &'static str)],
    pub see_also: &'static str,
    /// The exit codes this binary returns besides 0, 2 and a signal's (which every binary
    /// does), each with what it means here when that is narrower than [`ExitCode::meaning`].
    pub exits: &'static [(ExitCode, Option<&'static str>)],
}

impl Page {
    /// The binary's name, `weir-...`.
    pub fn name(&self) -> String {
        (self.command)().get_name().to_string()
    }

    /// The EXIT STATUS section: (code as written, meaning) in the order of [`ExitCode::ALL`].
    pub fn exit_status(&self) -> Vec<(&'static str, &'static str)> {
        ExitCode::ALL
            .iter()
            .filter_map(|&code| {
                let always = matches!(code, ExitCode::Ok | ExitCode::Usage | ExitCode::Interrupted);
                let own = self.exits.iter().find(|(c, _)| *c == code);
                match own {
                    Some((_, Some(text))) => Some((code.label(), *text)),
                    _ if always || own.is_some() => Some((code.label(), code.meaning())),
                    _ => None,
                }
            })
            .collect()
    }
}

/// The `-j N` of the jobs that open N connections: at least one, as pg_restore requires.
fn jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a number of jobs: {s}")),
    }
}

/// Connection options, as psql, pg_dump and pg_restore spell them.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Database to connect to: a name, a postgres:// URI or a key=value conninfo string.
    /// Unset parts come from PG* environment variables, the service file and ~/.pgpass,
    /// as with psql.
    #[arg(value_name = "DBNAME")]
    pub dbname_pos: Option<String>,
    /// Same as the DBNAME argument.
    #[arg(
        short = 'd',
        long = "dbname",
        value_name = "CONNINFO",
        conflicts_with = "dbname_pos"
    )]
    pub dbname: Option<String>,
    /// Server host name or Unix-socket directory (overrides the conninfo and PGHOST).
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Server port (overrides the conninfo and PGPORT).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<String>,
    /// User name (overrides the conninfo and PGUSER). Passwords never go on the command
    /// line: use PGPASSWORD, PGPASSFILE or ~/.pgpass.
    #[arg(short = 'U', long = "username", value_name = "USER")]
    pub user: Option<String>,
}

impl ConnArgs {
    /// Folds the flags into one conninfo string for [`crate::pg::conn::ConnParams::resolve`].
    pub fn conninfo(&self) -> anyhow::Result<Option<String>> {
        let base = self.dbname.as_ref().or(self.dbname_pos.as_ref());
        if self.host.is_none() && self.port.is_none() && self.user.is_none() {
            return Ok(base.cloned());
        }
        let mut map = match base {
            Some(b) => parse_conninfo(b)?,
            None => Default::default(),
        };
        for (k, v) in [
            ("host", &self.host),
            ("port", &self.port),
            ("user", &self.user),
        ] {
            if let Some(v) = v {
                map.insert(k.to_string(), v.clone());
            }
        }
        Ok(Some(
            map.iter()
                .map(|(k, v)| format!("{k}={}", quote_conninfo_value(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ))
    }
}

/// Renders the man page of one binary: clap's sections plus the hand-written ones.
pub fn man_page(page: &Page) -> Vec<u8> {
    let cmd = (page.command)();
    use roff::{Roff, bold, roman};
    let man = clap_mangen::Man::new(cmd)
        .date("2026-11")
        .source(concat!("weir ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).expect("in memory");
    man.render_name_section(&mut out).expect("in memory");
    man.render_synopsis_section(&mut out).expect("in memory");
    man.render_description_section(&mut out).expect("in memory");
    man.render_options_section(&mut out).expect("in memory");
    let mut r = Roff::new();
    r.control("SH", ["EXAMPLES"]);
    for &(cmdline, what) in page.examples {
        r.control("TP", []).text([roman(what)]);
        r.control("RS", [])
            .control("EX", [])
            .text([roman(cmdline)])
            .control("EE", [])
            .control("RE", []);
    }
    if !page.environment.is_empty() {
        r.control("SH", ["ENVIRONMENT"]);
        for &(var, what) in page.environment {
            r.control("TP", []).text([bold(var)]).text([roman(what)]);
        }
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in page.exit_status() {
        r.control("TP", []).text([bold(code)]).text([roman(what)]);
    }
    r.control("SH", ["SEE ALSO"]).text([roman(page.see_also)]);
    r.to_writer(&mut out).expect("in memory");
    out
}

/// The completion script of one binary for one shell, as clap_complete writes it.
pub fn completion(page: &Page, shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = (page.command)();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, page.name(), &mut out);
    out
}

/// Where a binary's completion script is installed from: `completions/bash/weir-x`,
/// `completions/zsh/_weir-x`, `completions/fish/weir-x.fish` (each shell's own convention).
pub fn completion_path(page: &Page, shell: clap_complete::Shell) -> String {
    let name = page.name();
    match shell {
        clap_complete::Shell::Zsh => format!("zsh/_{name}"),
        clap_complete::Shell::Fish => format!("fish/{name}.fish"),
        _ => format!("bash/{name}"),
    }
}

/// The shells completions are committed for.
pub const SHELLS: [clap_complete::Shell; 3] = [
    clap_complete::Shell::Bash,
    clap_complete::Shell::Zsh,
    clap_complete::Shell::Fish,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Compares a generated file with its committed copy, or rewrites it with WEIR_BLESS=1.
    fn check_generated(path: &Path, want: &[u8]) {
        if std::env::var_os("WEIR_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, want).unwrap();
        } else {
            let have = std::fs::read(path).unwrap_or_default();
            assert!(
                have == want,
                "{} is out of date: run WEIR_BLESS=1 cargo test --lib",
                path.display()
            );
        }
    }

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every file in src/bin is a page, and every page a file in src/bin.
    #[test]
    fn pages_are_the_binaries() {
        let mut bins: Vec<String> = std::fs::read_dir(root().join("src/bin"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        let mut names: Vec<String> = PAGES.iter().map(Page::name).collect();
        bins.sort();
        names.sort();
        assert_eq!(bins, names, "src/bin and cli::PAGES disagree");
    }

    /// man/ is committed; this fails when the CLI changed and the pages were not regenerated.
    #[test]
    fn man_pages_match_the_cli() {
        for page in PAGES {
            let path = root().join("man").join(format!("{}.1", page.name()));
            check_generated(&path, &man_page(page));
        }
    }

    /// completions/ is committed too, for packagers and the Docker image.
    #[test]
    fn completions_match_the_cli() {
        for page in PAGES {
            for shell in SHELLS {
                let path = root()
                    .join("completions")
                    .join(completion_path(page, shell));
                check_generated(&path, &completion(page, shell));
            }
        }
    }

    /// README's exit-status table is the enum's, row for row.
    #[test]
    fn readme_exit_table_matches_the_enum() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let table = ExitCode::markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's exit-status table differs from ExitCode; it should read:\n{table}"
        );
    }

    #[test]
    fn flags_fold_into_one_conninfo() {
        let a = ConnArgs {
            dbname_pos: Some("postgres://u@h/db".into()),
            host: Some("/tmp".into()),
            ..Default::default()
        };
        let ci = a.conninfo().unwrap().unwrap();
        assert!(
            ci.contains("host='/tmp'") && ci.contains("dbname='db'") && ci.contains("user='u'"),
            "{ci}"
        );
        for page in PAGES {
            (page.command)().debug_assert();
        }
    }

    #[test]
    fn zero_jobs_is_a_usage_error() {
        assert!(jobs("0").is_err());
        assert!(jobs("x").is_err());
        assert_eq!(jobs("4"), Ok(4));
    }
}
