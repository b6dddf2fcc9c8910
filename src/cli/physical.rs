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
    /// Remove a --prefetch spool once recovery has ended (recovery_end_command): stops its
    /// prefetcher, waits for it, and removes the segments recovery did not use.
    ClearSpool(ClearSpoolArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClearSpoolArgs {
    /// The spool fetch --prefetch used.
    #[arg(value_name = "DIR")]
    pub spool: std::path::PathBuf,
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
            "restore_command = 'weir-wal fetch --repo s3://backups/cluster1 -i /etc/weir/key.txt --prefetch 4 --spool pg_wal/weir-prefetch %f %p'\nrecovery_end_command = 'weir-wal clear-spool pg_wal/weir-prefetch'",
            "The same, fetching the next three segments while the server replays one (as weir-restore-physical writes it); the spool goes when recovery ends.",
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

/// Take a base backup as one tar stream on standard output, every file checked against the
/// server's backup manifest.
#[derive(Parser, Debug)]
#[command(name = "weir-basebackup", version, disable_help_flag = true)]
#[command(
    after_help = "The stream is a tar archive: weir-basebackup.json, data/ (the data directory), tablespaces/OID/ (each tablespace), data/backup_manifest, weir-basebackup.end.json. It holds no WAL: the server must archive it (archive_command = 'weir-wal push ...'), and with --repo the backup only succeeds once the WAL from its start to its stop is in that repository.\n\nThe connection is a replication connection: the role needs REPLICATION and pg_hba.conf a 'replication' line, as for pg_basebackup."
)]
pub struct BaseBackupCli {
    #[command(flatten)]
    pub conn: super::ConnArgs,
    /// Write the stream to FILE instead of standard output.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub output: Option<String>,
    /// The backup label (pg_basebackup -l).
    #[arg(
        short = 'l',
        long = "label",
        value_name = "LABEL",
        default_value = "weir-basebackup"
    )]
    pub label: String,
    /// fast: checkpoint at once; spread: at the server's pace (the default, as pg_basebackup).
    #[arg(short = 'c', long = "checkpoint", value_name = "fast|spread", default_value = "spread", value_parser = ["fast", "spread"])]
    pub checkpoint: String,
    /// The weir-wal repository this cluster archives to: it must be this cluster's, and the
    /// backup's WAL must be in it before the backup succeeds.
    #[arg(long = "repo", value_name = "URL")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Once the stream is complete, write what it holds (cluster, timeline, start and stop
    /// LSN and WAL, files, bytes, seconds) as one line of JSON to FILE.
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<String>,
    /// Read the files from the data directory DIR on this host (between pg_backup_start and
    /// pg_backup_stop on an ordinary connection, as pgBackRest does) instead of through the
    /// replication protocol; DIR must be the server's data_directory.
    #[arg(long = "pgdata", value_name = "DIR")]
    pub pgdata: Option<std::path::PathBuf>,
    /// With --pgdata: files read at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 2, value_parser = super::jobs)]
    pub jobs: usize,
    /// With --pgdata: an incremental backup against the backup whose backup_manifest is FILE
    /// (the parent's --manifest-file): of each relation file the parent held, only the
    /// blocks written since the parent started.
    #[arg(long = "incremental-from", value_name = "FILE")]
    pub incremental_from: Option<std::path::PathBuf>,
    /// Once the backup is complete, write a copy of its backup_manifest to FILE: what the
    /// next --incremental-from names.
    #[arg(long = "manifest-file", value_name = "FILE")]
    pub manifest_file: Option<std::path::PathBuf>,
    /// Print a progress line every few seconds even when stderr is not a terminal.
    #[arg(short = 'P', long = "progress")]
    pub progress: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl BaseBackupCli {
    pub fn options(&self) -> anyhow::Result<crate::physical::basebackup::BackupOptions> {
        let conninfo = self.conn.conninfo()?;
        Ok(crate::physical::basebackup::BackupOptions {
            conn: crate::pg::conn::ConnParams::resolve(conninfo.as_deref(), "weir-basebackup")?,
            label: self.label.clone(),
            fast_checkpoint: self.checkpoint == "fast",
            repo: self.repo.clone().map(|r| (r, self.s3.settings())),
            output: self.output.clone(),
            progress: self.progress,
            quiet: self.quiet,
            stats: self.stats.clone(),
            pgdata: self.pgdata.clone(),
            jobs: self.jobs,
            incremental_from: self.incremental_from.clone(),
            manifest_file: self.manifest_file.clone(),
        })
    }
}

/// Restore a weir-basebackup stream into an empty data directory, checked against its
/// manifest, and set up recovery to a point in time through weir-wal fetch.
#[derive(Parser, Debug)]
#[command(name = "weir-restore-physical", version)]
#[command(
    after_help = "After it, start the server: it fetches WAL through restore_command and stops at the target. With no target it replays all the archived WAL. recovery_target_action is pause unless --target-action says otherwise, as in PostgreSQL: check the data, then SELECT pg_wal_replay_resume() to promote.\n\nThe server runs restore_command with its own environment: S3 credentials and WEIR_AGE_IDENTITY_FILE must be set there, or give -i FILE."
)]
pub struct RestorePhysicalCli {
    /// The data directory to restore into: absent or empty, unless --clear.
    #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
    pub pgdata: std::path::PathBuf,
    /// Read the stream from FILE instead of standard input.
    #[arg(long = "input", value_name = "FILE", conflicts_with = "from")]
    pub input: Option<String>,
    /// Read the stored backup at URL (s3://, file:// or a path) itself, decrypting it with -i
    /// and decompressing it on several threads, instead of from standard input. Repeat it for
    /// a chain, full backup first; one incremental restores its whole chain, found in the
    /// catalog beside it, when the directory is empty. With --delta, only what differs is
    /// read from it, by range (the 1 MiB pieces of a file that differ, small files whole),
    /// where most is the same.
    #[arg(long = "from", value_name = "URL")]
    pub from: Vec<String>,
    /// Remove what the data directory (and each tablespace directory) holds first.
    #[arg(long = "clear")]
    pub clear: bool,
    /// Restore over a stopped data directory of the same cluster, writing only what differs
    /// from the backup (block by block) and removing what the backup lacks (pgBackRest's
    /// --delta).
    #[arg(long = "delta", conflicts_with = "clear")]
    pub delta: bool,
    /// The weir-wal repository recovery fetches WAL from.
    #[arg(long = "repo", value_name = "URL")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// The age identity file restore_command decrypts WAL with (its path goes into the
    /// setting, never its contents).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
    /// Use CMD as restore_command instead of weir-wal fetch --repo URL (for a server that
    /// runs elsewhere, a container say); --repo then only checks the archive.
    #[arg(long = "restore-command", value_name = "CMD")]
    pub restore_command: Option<String>,
    /// Stop at this time (recovery_target_time), e.g. '2026-12-01 10:00:00+00'.
    #[arg(long = "target-time", value_name = "TIME", group = "target")]
    pub target_time: Option<String>,
    /// Stop at this LSN (recovery_target_lsn).
    #[arg(long = "target-lsn", value_name = "LSN", group = "target")]
    pub target_lsn: Option<String>,
    /// Stop at this transaction (recovery_target_xid).
    #[arg(long = "target-xid", value_name = "XID", group = "target")]
    pub target_xid: Option<String>,
    /// Stop at this restore point, made with pg_create_restore_point (recovery_target_name).
    #[arg(long = "target-name", value_name = "NAME", group = "target")]
    pub target_name: Option<String>,
    /// Stop as soon as the backup is consistent (recovery_target = 'immediate').
    #[arg(long = "target-immediate", group = "target")]
    pub target_immediate: bool,
    /// Stop just before the target instead of just after it (recovery_target_inclusive = off).
    #[arg(long = "target-exclusive")]
    pub target_exclusive: bool,
    /// What the server does at the target: pause (PostgreSQL's default), promote or shutdown.
    #[arg(long = "target-action", value_name = "ACTION", default_value = "pause", value_parser = ["pause", "promote", "shutdown"])]
    pub target_action: String,
    /// The timeline to recover along: latest (PostgreSQL's default), current or an ID.
    #[arg(long = "target-timeline", value_name = "TLI")]
    pub target_timeline: Option<String>,
    /// Restore the tablespace at OLD into NEW (repeatable), as pg_basebackup -T.
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OLD=NEW", value_parser = mapping)]
    pub tablespace_mapping: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// The restore_command fetches the next N-1 segments in the background while the server
    /// replays one, into pg_wal/weir-prefetch, which recovery_end_command removes (1: one
    /// segment per call).
    #[arg(long = "prefetch", value_name = "N", default_value_t = 4, value_parser = super::jobs, conflicts_with = "restore_command")]
    pub prefetch: usize,
    /// Do not sync what was written before exit (faster; a crash may then lose it).
    #[arg(short = 'N', long = "no-sync")]
    pub no_sync: bool,
    /// Print nothing but errors and warnings.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

fn mapping(s: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    match s.split_once('=') {
        Some((a, b)) if a.starts_with('/') && b.starts_with('/') => Ok((a.into(), b.into())),
        _ => Err("give OLD=NEW, two absolute directories".into()),
    }
}

impl RestorePhysicalCli {
    pub fn options(&self) -> crate::physical::restore::RestoreOptions {
        use crate::physical::restore::Target;
        let target = if self.target_immediate {
            Target::Immediate
        } else if let Some(t) = &self.target_time {
            Target::Time(t.clone())
        } else if let Some(l) = &self.target_lsn {
            Target::Lsn(l.clone())
        } else if let Some(x) = &self.target_xid {
            Target::Xid(x.clone())
        } else if let Some(n) = &self.target_name {
            Target::Name(n.clone())
        } else {
            Target::Latest
        };
        crate::physical::restore::RestoreOptions {
            pgdata: self.pgdata.clone(),
            clear: self.clear,
            delta: self.delta,
            input: self.input.clone(),
            from: self.from.clone(),
            target,
            inclusive: !self.target_exclusive,
            action: self.target_action.clone(),
            timeline: self.target_timeline.clone(),
            restore_command: self.restore_command.clone(),
            repo: self.repo.clone(),
            s3: self.s3.settings(),
            identity: self.identity.clone(),
            tablespace_mapping: self.tablespace_mapping.clone(),
            prefetch: self.prefetch,
            no_sync: self.no_sync,
            quiet: self.quiet,
        }
    }
}

pub const BASEBACKUP: Page = Page {
    command: <BaseBackupCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-basebackup -c fast --repo s3://backups/cluster1 | weir-compress | weir-encrypt -R /etc/weir/recipients | weir-put s3://backups/cluster1/base/$(date -u +%Y%m%dT%H%M%SZ).tar.zst.age",
            "A compressed, encrypted base backup to S3, counted only once its WAL is archived.",
        ),
        (
            "weir-basebackup -h db1 -U replicator -f base.tar && tar -tf base.tar | head",
            "A backup to a file, read with tar.",
        ),
    ],
    environment: &[
        (
            "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGPASSFILE, PGSSLMODE",
            "As for psql and pg_basebackup.",
        ),
        (STORAGE_ENV[0].0, STORAGE_ENV[0].1),
        (STORAGE_ENV[1].0, STORAGE_ENV[1].1),
    ],
    see_also: "weir-restore-physical(1), weir-wal(1), pg_basebackup(1), pg_verifybackup(1)",
    exits: &[
        (
            ExitCode::Failure,
            Some("The connection, the server, the repository, or WAL missing from it."),
        ),
        (
            ExitCode::BadArchive,
            Some("A file the server sent does not match the backup manifest."),
        ),
        (
            ExitCode::WrongCluster,
            Some("The repository holds WAL of another cluster."),
        ),
        (ExitCode::BrokenPipe, None),
    ],
};

pub const RESTORE_PHYSICAL: Page = Page {
    command: <RestorePhysicalCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-get s3://backups/cluster1/base/20261201T020000Z.tar.zst.age | weir-encrypt -d -i key.txt | weir-compress -d | weir-restore-physical -D /var/lib/postgresql/15/main --repo s3://backups/cluster1 -i /etc/weir/key.txt --target-time '2026-12-01 10:00:00+00'",
            "Restore last night's base backup and recover to 10:00.",
        ),
        (
            "weir-restore-physical -D /var/lib/postgresql/15/main --from s3://backups/cluster1_physical/main-20261204T020000Z.tar.zst.age -i /etc/weir/key.txt --repo s3://backups/cluster1 --target-time '2026-12-04 10:00:00+00'",
            "Read the backup itself (one process, decompressed on several threads); for an incremental, its chain from the catalog.",
        ),
        (
            "weir-restore-physical -D /srv/pg --input base.tar --restore-command 'cp /archive/%f %p' --target-immediate --target-action promote",
            "Restore a backup file, recover only to consistency, and open.",
        ),
    ],
    environment: &[],
    see_also: "weir-basebackup(1), weir-wal(1), pg_ctl(1), pg_verifybackup(1)",
    exits: &[
        (
            ExitCode::Failure,
            Some("The data directory is not empty, a server runs in it, or writing failed."),
        ),
        (
            ExitCode::BadArchive,
            Some(
                "The stream is not a weir-basebackup, or it is damaged, cut off or does not match its manifest; what was written is removed again.",
            ),
        ),
    ],
};
