//! The operations family: weir-prune and weir-schedule, what backup.sh runs around the stages.

use super::Page;
use super::storage::{S3Args, STORAGE_ENV, STORAGE_FAILURE};
use crate::plumbing::ExitCode;
use clap::Parser;

/// Thin a backup catalog by retention rules, and remove the leftovers of failed runs.
#[derive(Parser, Debug)]
#[command(name = "weir-prune", version)]
#[command(
    after_help = "Backups are grouped by database; each rule keeps some of every group, and a backup no rule keeps is removed (its catalog entry first, then its data). --keep-daily N keeps the newest backup of each of the N most recent days that have one; weekly (ISO weeks), monthly and yearly likewise. The newest backup of each database is never removed. Data objects without a catalog entry (a failed or interrupted backup) are removed once older than --leftover-age.\n\nExamples:\n  weir-prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12 s3://backups/prod/\n  weir-prune --keep-within 30d /var/backups/weir"
)]
pub struct PruneCli {
    /// The catalog's prefix, or a weir-dedup repository (whose backups are pruned, then the
    /// chunks no kept backup names): s3://BUCKET/PREFIX, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Keep the N newest backups.
    #[arg(long = "keep-last", value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long = "keep-daily", value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long = "keep-weekly", value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long = "keep-monthly", value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long = "keep-yearly", value_name = "N")]
    pub keep_yearly: Option<usize>,
    /// Keep every backup younger than DURATION, such as 14d, 1y6m or 36h (y, m for months,
    /// w, d, h).
    #[arg(long = "keep-within", value_name = "DURATION", value_parser = crate::catalog::Within::parse)]
    pub keep_within: Option<crate::catalog::Within>,
    /// Show what would be removed and why, and remove nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Remove data objects without a catalog entry only once they are this old: a younger one
    /// may belong to a backup still finishing.
    #[arg(long = "leftover-age", value_name = "DURATION", default_value = "1h", value_parser = parse_age)]
    pub leftover_age: std::time::Duration,
    /// Count ages back from TIME (RFC 3339 or YYYY-MM-DD) instead of now: to see what a
    /// policy would do later.
    #[arg(long = "now", value_name = "TIME", value_parser = crate::catalog::parse_time)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// The weir-wal repository of the base backups listed here: also remove the WAL older
    /// than the oldest kept one's start (timeline history files stay; with no complete base
    /// backup nothing is removed).
    #[arg(long = "wal-repo", value_name = "URL")]
    pub wal_repo: Option<String>,
    /// A weir-dedup repository: also rewrite the packs that hold chunks no kept backup needs,
    /// so that their space is freed. Reads packs with -i (or -p) and writes them for -r/-R
    /// (or -p), the recipients the repository is pushed to.
    #[arg(long = "repack")]
    pub repack: bool,
    /// With --repack: rewrite packs, the emptiest first, until what the kept packs hold that no
    /// backup needs is at most PERCENT of them (0: every pack that holds any).
    #[arg(long = "max-unused", value_name = "PERCENT", default_value_t = 5.0, value_parser = parse_percent)]
    pub max_unused: f64,
    /// With --repack: an identity that decrypts the packs (repeatable); else
    /// WEIR_AGE_IDENTITY_FILE.
    #[arg(
        short = 'i',
        long = "identity",
        value_name = "FILE",
        requires = "repack"
    )]
    pub identities: Vec<String>,
    /// With --repack: encrypt the rewritten packs to RECIPIENT (repeatable).
    #[arg(
        short = 'r',
        long = "recipient",
        value_name = "RECIPIENT",
        requires = "repack"
    )]
    pub recipients: Vec<String>,
    /// With --repack: encrypt the rewritten packs to the recipients listed in FILE
    /// (repeatable).
    #[arg(
        short = 'R',
        long = "recipients-file",
        value_name = "FILE",
        requires = "repack"
    )]
    pub recipients_files: Vec<String>,
    /// With --repack, in a passphrase repository: open its identity with a passphrase, from
    /// --passphrase-file, WEIR_PASSPHRASE or a prompt on the terminal.
    #[arg(short = 'p', long = "passphrase", requires = "repack")]
    pub passphrase: bool,
    /// Read the passphrase from the first line of FILE (implies -p).
    #[arg(long = "passphrase-file", value_name = "FILE", requires = "repack")]
    pub passphrase_file: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

impl PruneCli {
    pub fn options(&self) -> crate::catalog::PruneOptions {
        crate::catalog::PruneOptions {
            policy: crate::catalog::Policy {
                last: self.keep_last.unwrap_or(0),
                daily: self.keep_daily.unwrap_or(0),
                weekly: self.keep_weekly.unwrap_or(0),
                monthly: self.keep_monthly.unwrap_or(0),
                yearly: self.keep_yearly.unwrap_or(0),
                within: self.keep_within,
            },
            dry_run: self.dry_run,
            leftover_age: self.leftover_age,
            now: self.now,
            quiet: self.quiet,
            wal_repo: self.wal_repo.clone(),
            repack: self.repack.then(|| crate::dedup::prune::Repack {
                max_unused: self.max_unused,
                enc: crate::stream::encrypt::EncryptOptions {
                    identities: self.identities.clone(),
                    recipients: self.recipients.clone(),
                    recipients_files: self.recipients_files.clone(),
                    passphrase: self.passphrase,
                    passphrase_file: self.passphrase_file.clone(),
                    ..Default::default()
                },
            }),
        }
    }
}

/// Run a command on a cron schedule, one run at a time, going on when a run fails.
#[derive(Parser, Debug)]
#[command(name = "weir-schedule", version)]
#[command(
    after_help = "SCHEDULE is a cron pattern in UTC: five fields (minute hour day-of-month month day-of-week), or six with seconds first as go-cron reads them; @yearly, @monthly, @weekly, @daily and @hourly; or @every DURATION (1h30m, 15m, 90s). A run still going at its next scheduled time makes that time be skipped. SIGTERM or SIGINT is passed on to a running command, and the scheduler exits once it has ended.\n\nExamples:\n  weir-schedule '0 3 * * *' -- scripts/backup.sh\n  weir-schedule --run-now '@every 6h' -- scripts/backup.sh"
)]
pub struct ScheduleCli {
    /// When to run (see below).
    #[arg(value_name = "SCHEDULE", value_parser = crate::schedule::Schedule::parse)]
    pub schedule: crate::schedule::Schedule,
    /// Run once at start too, then on the schedule.
    #[arg(long = "run-now")]
    pub run_now: bool,
    /// The command and its arguments.
    #[arg(value_name = "COMMAND", last = true, required = true)]
    pub command: Vec<String>,
}

/// `30m`, `1h`, `2d` or `0`: a short age in seconds, minutes, hours or days.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("not an age: {s} (expected e.g. 30m, 1h, 2d)");
    // A bare number is seconds; otherwise one number with its unit.
    let (n, unit) = match s.trim().parse::<u64>() {
        Ok(n) => (n, 's'),
        Err(_) => match crate::plumbing::unit_terms(s).as_deref() {
            Some(&[term]) => term,
            _ => return Err(bad()),
        },
    };
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("not an age: {s} (units are s, m, h, d)")),
    };
    Ok(std::time::Duration::from_secs(n * mult))
}

/// weir-prune's man page: its command line and the sections written by hand.
pub const PRUNE: Page = Page {
    command: <PruneCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12 s3://backups/prod/",
            "Show what this policy would remove, and why each backup is kept.",
        ),
        (
            "weir-prune --keep-within 30d --keep-monthly 24 /var/backups/weir",
            "Keep a month of everything and two years of month ends.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-ls(1), weir-rm(1), restic-forget(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-schedule's man page: its command line and the sections written by hand.
pub const SCHEDULE: Page = Page {
    command: <ScheduleCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-schedule '0 3 * * *' -- scripts/backup.sh",
            "Back up every night at 03:00 UTC.",
        ),
        (
            "weir-schedule --run-now '@every 6h' -- scripts/backup.sh",
            "Back up at start, then every six hours.",
        ),
    ],
    environment: &[],
    see_also: "cron(8), crontab(5)",
    exits: &[(
        ExitCode::Failure,
        Some(
            "The schedule could not be followed (no next time). A failed run is not an error: it is logged and the schedule goes on.",
        ),
    )],
};

/// Record finished backups in the catalog: the entry that makes a stored backup complete.
#[derive(Parser, Debug)]
#[command(name = "weir-catalog", version)]
#[command(
    after_help = "An entry, URL.catalog.json, is written last, once every stage of a backup succeeded: weir-ls --catalog lists only backups that have one, and weir-prune counts only those.\n\nExamples:\n  weir-catalog add --kind database --started \"$t0\" --object-stats put.json --archive-stats extract.json s3://backups/prod/prod-20261201T030000Z.weir.zst"
)]
pub struct CatalogCli {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// Record the backup at URL as complete, from the --stats files its stages wrote; prints
    /// its SIZE ROWS TABLES. Never replaces an entry (exit status 5).
    Add(CatalogAddArgs),
    /// Print the URL of the base backup a point-in-time recovery starts from: the newest
    /// complete one under PREFIX that ended before the target (exit status 4 if none).
    Pick(CatalogPickArgs),
}

#[derive(clap::Args, Debug)]
pub struct CatalogPickArgs {
    /// Where the base backups are: s3://BUCKET/PREFIX/, file:///PATH or PATH.
    #[arg(value_name = "PREFIX")]
    pub prefix: String,
    /// The recovery target time, with its zone ('2026-12-01 10:00:00+00').
    #[arg(long = "target-time", value_name = "TIME", value_parser = crate::catalog::physical::parse_target_time)]
    pub target_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The recovery target LSN.
    #[arg(long = "target-lsn", value_name = "LSN", value_parser = lsn)]
    pub target_lsn: Option<u64>,
    /// The recovery target timeline, as a number.
    #[arg(long = "target-timeline", value_name = "TLI")]
    pub target_timeline: Option<u32>,
    #[command(flatten)]
    pub s3: S3Args,
}

pub(super) fn lsn(s: &str) -> Result<u64, String> {
    crate::pg::replication::parse_lsn(s).map_err(|e| e.to_string())
}

impl CatalogPickArgs {
    pub fn aim(&self) -> crate::catalog::physical::Aim {
        crate::catalog::physical::Aim {
            time: self.target_time,
            lsn: self.target_lsn,
            timeline: self.target_timeline,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct CatalogAddArgs {
    /// The backup's data object: s3://BUCKET/KEY, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// database (a weir archive), globals (pg_dumpall --globals-only SQL) or physical (a
    /// weir-basebackup stream).
    #[arg(long = "kind", value_name = "KIND", value_parser = ["database", "globals", "physical"])]
    pub kind: String,
    /// When the backup started, in Unix seconds (date +%s.%N); the duration runs to now.
    #[arg(long = "started", value_name = "SECONDS")]
    pub started: f64,
    /// The stats weir-put --stats wrote for URL.
    #[arg(long = "object-stats", value_name = "FILE")]
    pub object_stats: String,
    /// The stats weir-extract --stats (or weir-mask --stats) wrote; database backups only.
    #[arg(long = "archive-stats", value_name = "FILE")]
    pub archive_stats: Option<String>,
    /// The stats weir-basebackup --stats wrote; physical backups only.
    #[arg(long = "backup-stats", value_name = "FILE")]
    pub backup_stats: Option<String>,
    /// How the object is compressed: zstd or none.
    #[arg(long = "compression", value_name = "NAME", default_value = "none")]
    pub compression: String,
    /// How it is encrypted: age, age-passphrase or none.
    #[arg(long = "encryption", value_name = "NAME", default_value = "none")]
    pub encryption: String,
    /// The instance it came from, as host:port.
    #[arg(long = "source", value_name = "HOST:PORT")]
    pub source: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
}

impl CatalogAddArgs {
    pub fn options(&self) -> crate::catalog::entry::AddOptions {
        crate::catalog::entry::AddOptions {
            kind: self.kind.clone(),
            started: self.started,
            compression: self.compression.clone(),
            encryption: self.encryption.clone(),
            source: self.source.clone(),
            object_stats: self.object_stats.clone(),
            archive_stats: self.archive_stats.clone(),
            backup_stats: self.backup_stats.clone(),
        }
    }
}

/// weir-catalog's man page.
pub const CATALOG: Page = Page {
    command: <CatalogCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-catalog add --kind database --started \"$t0\" --object-stats put.json --archive-stats extract.json s3://backups/prod/prod-20261201T030000Z.weir.zst",
            "Record a finished backup; prints its size, rows and tables.",
        ),
        (
            "weir-catalog pick --target-time '2026-12-01 10:00:00+00' s3://backups/cluster1/base/",
            "The base backup to restore for a recovery to 10:00.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-ls(1), weir-prune(1), weir-put(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (
            ExitCode::Exists,
            Some("The backup already has a catalog entry; it is left as it is."),
        ),
        (
            ExitCode::NotFound,
            Some("pick: no complete base backup ended before the target."),
        ),
        (ExitCode::BrokenPipe, None),
    ],
};
