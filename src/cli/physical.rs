//! The physical family: weir-wal, PostgreSQL's archive and restore commands.

use super::Page;
use super::storage::{S3Args, STORAGE_ENV};
use crate::plumbing::ExitCode;
use crate::stream::encrypt::EncryptOptions;
use clap::Parser;

/// Archive WAL to S3 or a directory, and fetch it back, as PostgreSQL's archive_command and
/// restore_command.
#[derive(Parser, Debug)]
#[command(name = "weir-wal", version)]
#[command(
    after_help = "In postgresql.conf:\n  archive_command = 'weir-wal push --repo s3://bucket/cluster1 -R /etc/weir/recipients %p'\n  restore_command = 'weir-wal fetch --repo s3://bucket/cluster1 -i /etc/weir/key.txt %f %p'\n\nEvery object is age(zstd(file)) (either layer optional), so age -d | zstd -d recovers one by hand. There is no passphrase mode: one scrypt per 16 MiB segment would slow archiving to a crawl."
)]
pub struct WalCli {
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum WalCommand {
    /// Archive one WAL file (archive_command: %p). Exit 0 only once it is durable; an
    /// identical file already archived is success, different content is exit 5.
    Push(PushArgs),
    /// Restore one WAL file (restore_command: %f %p). Exit 1 only when the repository holds
    /// no such file; every other failure is exit 255, which stops recovery.
    Fetch(FetchArgs),
    /// List the archived files: TIMELINE KIND SIZE NAME, or JSON.
    Ls(LsArgs),
    /// Check that the archive is complete: every timeline from its first segment to its last,
    /// or --range START..STOP; exit 4 naming what is missing. --deep also reads every segment
    /// back (exit 3 if one is damaged).
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// One JSON array of {name, kind, timeline, size}.
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only the segments from START to STOP, both included, of one timeline.
    #[arg(long = "range", value_name = "START..STOP")]
    pub range: Option<String>,
    /// Decrypt and decompress every segment, and check its digest and header.
    #[arg(long = "deep")]
    pub deep: bool,
    /// Identities for --deep (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<String>,
    /// One line of JSON: present, missing, damaged.
    #[arg(long = "json")]
    pub json: bool,
}

impl LsArgs {
    pub fn options(&self) -> crate::physical::inventory::LsOptions {
        crate::physical::inventory::LsOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            json: self.json,
        }
    }
}

impl VerifyArgs {
    pub fn options(&self) -> anyhow::Result<crate::physical::inventory::VerifyOptions> {
        let enc = EncryptOptions {
            identities: self.identities.clone(),
            ..Default::default()
        };
        Ok(crate::physical::inventory::VerifyOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            range: self.range.clone(),
            deep: self.deep,
            identities: crate::stream::encrypt::identities(&enc)?,
            json: self.json,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct RepoArgs {
    /// The repository: s3://BUCKET/PREFIX, file:///PATH or PATH.
    #[arg(long = "repo", value_name = "URL")]
    pub repo: String,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The file to archive, as %p gives it (relative to the data directory).
    #[arg(value_name = "PATH")]
    pub path: String,
    /// zstd level (1 to 19).
    #[arg(short = 'l', long = "level", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Store the files uncompressed.
    #[arg(long = "no-compress")]
    pub no_compress: bool,
    /// Encrypt to RECIPIENT (age1... or an SSH public key; repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt to the recipients listed in FILE (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<String>,
    /// Start a background process that pushes the files the server has marked ready, N at
    /// once; the server's calls for them then return at once (needs --spool).
    #[arg(long = "parallel", value_name = "N", default_value_t = 1, value_parser = super::jobs)]
    pub parallel: usize,
    /// A directory of our own (outside pg_wal) for the notes --parallel and --prefetch keep.
    #[arg(long = "spool", value_name = "DIR")]
    pub spool: Option<std::path::PathBuf>,
    /// After each push, write Prometheus textfile metrics to FILE: the last archived file and
    /// its time, the last push's outcome, failures so far.
    #[arg(long = "metrics", value_name = "FILE")]
    pub metrics: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The file PostgreSQL asks for (%f).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write it (%p).
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Decrypt with the identities in FILE (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<String>,
    /// Retry failures (the network, the service) for up to SECONDS before exit 255.
    #[arg(long = "retry-for", value_name = "SECONDS", default_value_t = 60)]
    pub retry_for: u64,
    /// The data directory whose cluster must be the repository's (default: the working
    /// directory, the data directory when PostgreSQL runs the command).
    #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
    pub pgdata: Option<std::path::PathBuf>,
    /// After a segment, fetch the next N-1 in the background (one worker per core) into
    /// --spool, where the server's calls for them find them (verified already).
    #[arg(long = "prefetch", value_name = "N", default_value_t = 1, value_parser = super::jobs)]
    pub prefetch: usize,
    /// A directory of our own (outside pg_wal) for prefetched segments.
    #[arg(long = "spool", value_name = "DIR")]
    pub spool: Option<std::path::PathBuf>,
    /// Rename PATH into place without syncing it first (it still appears whole or not at
    /// all). PostgreSQL removes PATH before each call and syncs a file it keeps itself.
    #[arg(short = 'N', long = "no-sync")]
    pub no_sync: bool,
}

impl PushArgs {
    pub fn options(&self) -> anyhow::Result<crate::physical::wal::PushOptions> {
        let enc = EncryptOptions {
            recipients: self.recipients.clone(),
            recipients_files: self.recipients_files.clone(),
            ..Default::default()
        };
        // Parsed once here so a bad recipient is a usage error before any work.
        crate::stream::encrypt::recipients(&enc)?;
        if self.parallel > 1 && self.spool.is_none() {
            anyhow::bail!("--parallel needs --spool DIR, where files pushed ahead are noted");
        }
        Ok(crate::physical::wal::PushOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            path: self.path.clone(),
            level: (!self.no_compress).then_some(self.level),
            encrypt: enc,
            parallel: self.parallel,
            spool: self.spool.clone(),
        })
    }
}

impl FetchArgs {
    pub fn options(&self) -> anyhow::Result<crate::physical::wal::FetchOptions> {
        if self.prefetch > 1 && self.spool.is_none() {
            anyhow::bail!("--prefetch needs --spool DIR, where prefetched segments wait");
        }
        let decrypt = EncryptOptions {
            identities: self.identities.clone(),
            ..Default::default()
        };
        Ok(crate::physical::wal::FetchOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            name: self.name.clone(),
            dest: self.path.clone(),
            decrypt,
            retry_for: std::time::Duration::from_secs(self.retry_for),
            pgdata: self.pgdata.clone(),
            prefetch: self.prefetch,
            spool: self.spool.clone(),
            no_sync: self.no_sync,
        })
    }
}

/// weir-wal's man page: its command line and the sections written by hand.
pub const WAL: Page = Page {
    command: <WalCli as clap::CommandFactory>::command,
    examples: &[
        (
            "archive_command = 'weir-wal push --repo s3://backups/cluster1 -R /etc/weir/recipients %p'",
            "Archive every WAL file, compressed and encrypted, to S3.",
        ),
        (
            "restore_command = 'weir-wal fetch --repo s3://backups/cluster1 -i /etc/weir/key.txt %f %p'",
            "Recover (a standby, a restored base backup) from that archive.",
        ),
        (
            "archive_command = 'weir-wal push --repo /var/lib/weir/wal %p'",
            "A local directory as the repository: file and directory are synced before exit 0.",
        ),
        (
            "weir-wal verify --repo s3://backups/cluster1 --range 000000010000000000000010..000000010000000000000014",
            "Check that a base backup's WAL is all archived.",
        ),
    ],
    environment: WAL_ENV,
    see_also: "weir-put(1), weir-encrypt(1), postgres(1), pg_receivewal(1)",
    exits: &[
        (
            ExitCode::Failure,
            Some(
                "push: any failure that is not below (retried by the archiver). fetch: the repository holds no such file.",
            ),
        ),
        (
            ExitCode::BadArchive,
            Some("push: the file is not a whole WAL segment."),
        ),
        (ExitCode::Exists, None),
        (
            ExitCode::WrongCluster,
            Some(
                "push: the file or data directory belongs to another cluster than the repository (fetch exits 255).",
            ),
        ),
        (ExitCode::FetchFailed, None),
    ],
};

const WAL_ENV: &[(&str, &str)] = &[
    (
        "WEIR_AGE_RECIPIENTS",
        "Recipients for push, as -r (separated by commas, spaces or newlines).",
    ),
    (
        "WEIR_AGE_IDENTITY_FILE",
        "An identity file for fetch, as -i.",
    ),
    (STORAGE_ENV[0].0, STORAGE_ENV[0].1),
    (STORAGE_ENV[1].0, STORAGE_ENV[1].1),
    (STORAGE_ENV[2].0, STORAGE_ENV[2].1),
    (STORAGE_ENV[3].0, STORAGE_ENV[3].1),
];
