//! The storage family: weir-put, weir-get, weir-ls and weir-rm, and the S3 settings they share.

use super::Page;
use crate::plumbing::ExitCode;
use clap::{Args, Parser};

/// S3 settings shared by weir-put, weir-get, weir-ls and weir-rm. Credentials are never flags:
/// they come from the AWS SDK's standard chain.
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the
    /// profile's endpoint_url, or AWS itself). A custom endpoint uses path-style addressing.
    #[arg(long = "endpoint", alias = "endpoint-url", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint).
    #[arg(long = "region", value_name = "REGION")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE).
    #[arg(long = "profile", value_name = "NAME")]
    pub profile: Option<String>,
    /// Virtual-hosted-style addressing (bucket.host) even for a custom endpoint.
    #[arg(long = "virtual-hosted")]
    pub virtual_hosted: bool,
    /// Attempts per request before giving up, the first included; retries back off
    /// exponentially with jitter.
    #[arg(long = "attempts", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// On a storage error, also print what the AWS SDK said (its credential chain's
    /// complaints, the HTTP exchange's cause).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

impl S3Args {
    pub fn settings(&self) -> crate::storage::S3Settings {
        crate::storage::S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            virtual_hosted: self.virtual_hosted,
            attempts: self.attempts,
            verbose: self.verbose,
        }
    }
}

/// Transfer settings of weir-put and weir-get.
#[derive(Args, Debug, Clone)]
pub struct TransferArgs {
    /// Memory budget of the whole process, such as 64M or 1G (at least 36M): peak RSS stays
    /// under it. All but 20 MiB of it holds part buffers: the parts in flight plus the one
    /// being filled (or written). Parts start at 8 MiB and double every 1,000 parts; once a
    /// part is larger than half the buffers, two parts are the floor.
    #[arg(long = "memory", value_name = "SIZE", default_value = "64M", value_parser = parse_memory)]
    pub memory: u64,
    /// At most N requests at once (within --memory).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Print progress lines on stderr even when it is not a terminal (for logs).
    #[arg(long = "progress")]
    pub progress: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

impl TransferArgs {
    pub fn transfer(&self) -> crate::storage::Transfer {
        crate::storage::Transfer {
            memory: self.memory,
            jobs: self.jobs,
            progress: self.progress,
            quiet: self.quiet,
        }
    }
}

/// Upload standard input to an object in S3-compatible storage or a local directory.
#[derive(Parser, Debug)]
#[command(name = "weir-put", version)]
#[command(
    after_help = "Addresses: s3://BUCKET/KEY, file:///PATH or a plain PATH.\n\nExamples:\n  weir-extract prod | weir-compress | weir-put s3://backups/prod/2026-11-21.weir.zst\n  weir-put --if-none-match s3://wal/000000010000000000000001 < pg_wal/000000010000000000000001"
)]
pub struct PutCli {
    /// Where to write: s3://BUCKET/KEY, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Read FILE instead of standard input.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<String>,
    /// The stream's approximate size, such as 800G: sizes the parts evenly. Streams of any
    /// length up to S3's 5 TiB limit work without it.
    #[arg(long = "expected-size", value_name = "SIZE", value_parser = crate::storage::parse_size)]
    pub expected_size: Option<u64>,
    /// Create only: fail (exit status 5) if the object already exists.
    #[arg(long = "if-none-match")]
    pub if_none_match: bool,
    /// User metadata KEY=VALUE (repeatable; S3 only).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// Content-Type of the object (S3 only).
    #[arg(long = "content-type", value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Storage class, such as STANDARD_IA or GLACIER_IR (S3 only).
    #[arg(long = "storage-class", value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).
    #[arg(long = "sse", value_name = "ALGORITHM", value_parser = ["AES256", "aws:kms"])]
    pub sse: Option<String>,
    /// KMS key id for SSE-KMS (implies --sse aws:kms).
    #[arg(long = "sse-kms-key-id", value_name = "KEY_ID")]
    pub sse_kms_key_id: Option<String>,
    /// Once the object is complete, write its address and size as one line of JSON to FILE
    /// (backup.sh nests it into the catalog entry).
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

impl PutCli {
    pub fn options(&self) -> crate::storage::PutOptions {
        crate::storage::PutOptions {
            expected_size: self.expected_size,
            if_none_match: self.if_none_match,
            metadata: self.metadata.clone(),
            content_type: self.content_type.clone(),
            storage_class: self.storage_class.clone(),
            sse: match (&self.sse, &self.sse_kms_key_id) {
                (None, Some(_)) => Some("aws:kms".into()),
                (s, _) => s.clone(),
            },
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            stats: self.stats.clone(),
        }
    }
}

fn parse_memory(s: &str) -> Result<u64, String> {
    let n = crate::storage::parse_size(s)?;
    let min = crate::storage::MIN_MEMORY;
    if n < min {
        return Err(format!("at least {} MiB", min >> 20));
    }
    Ok(n)
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s}")),
    }
}

/// Download an object from S3-compatible storage or a local directory to standard output.
#[derive(Parser, Debug)]
#[command(name = "weir-get", version)]
#[command(
    after_help = "Exit status 4 means the object does not exist (as a WAL restore_command needs to know).\n\nExamples:\n  weir-get s3://backups/prod/2026-11-21.weir.zst | weir-compress -d | weir-load --create copy\n  weir-get s3://wal/%f > %p      # restore_command"
)]
pub struct GetCli {
    /// What to read: s3://BUCKET/KEY, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

/// List the objects under a prefix, with size and modification time.
#[derive(Parser, Debug)]
#[command(name = "weir-ls", version)]
#[command(
    after_help = "Every object whose key starts with the prefix is listed, in key order, one per line: time (UTC), size in bytes, address.\n\nWith --catalog, the complete backups under the prefix are listed instead, oldest first, from the catalog entries that scripts/backup.sh writes beside each backup (NAME.catalog.json). A backup without an entry did not finish and is not listed.\n\nExamples:\n  weir-ls s3://backups/prod/\n  weir-ls --json /var/backups/weir | jq '.[].key'\n  weir-ls --catalog -H s3://backups/prod/"
)]
pub struct LsCli {
    /// The prefix: s3://BUCKET/PREFIX, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// List complete backups from their catalog entries: time, database, size, tables, rows,
    /// encryption, masking.
    #[arg(short = 'c', long = "catalog")]
    pub catalog: bool,
    /// Print a JSON array: {key, size, modified} objects, or with --catalog the entries.
    #[arg(long = "json")]
    pub json: bool,
    /// Sizes as 1.2 GB instead of bytes.
    #[arg(short = 'H', long = "human-readable")]
    pub human: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

/// Delete an object, or with --recursive every object under a prefix.
#[derive(Parser, Debug)]
#[command(name = "weir-rm", version)]
#[command(
    after_help = "Exit status 4 means there was nothing to delete (unless --force).\n\nExamples:\n  weir-rm s3://backups/prod/2026-01-01.weir.zst\n  weir-rm --recursive s3://backups/scratch/"
)]
pub struct RmCli {
    /// What to delete: s3://BUCKET/KEY, file:///PATH or PATH.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Delete every object whose key starts with URL.
    #[arg(short = 'r', long = "recursive")]
    pub recursive: bool,
    /// No error when nothing matches.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Do not print what was deleted.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

pub(super) const STORAGE_ENV: &[(&str, &str)] = &[
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "Static credentials. Unset, the AWS SDK's chain is tried: shared files, SSO, web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN), ECS and EC2 instance roles.",
    ),
    (
        "AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE",
        "The profile and files to read it from (default ~/.aws/config and ~/.aws/credentials).",
    ),
    ("AWS_REGION, AWS_DEFAULT_REGION", "The region."),
    (
        "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3",
        "An S3-compatible endpoint, as --endpoint.",
    ),
    (
        "AWS_EC2_METADATA_DISABLED",
        "true skips the instance-metadata lookup (faster failures off EC2).",
    ),
];

/// What exit status 1 means for the tools that talk to storage.
pub(super) const STORAGE_FAILURE: &str = "Failure: credentials, a missing bucket, the service unreachable after all attempts, input or output.";

/// weir-put's man page: its command line and the sections written by hand.
pub const PUT: Page = Page {
    command: <PutCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-extract prod | weir-compress | weir-encrypt -r age1... | weir-put s3://backups/prod/2026-11-21.weir.zst.age",
            "Stream a backup to S3 without a temporary file, whatever its size.",
        ),
        (
            "weir-put --endpoint http://minio:9000 s3://backups/db.weir.zst < db.weir.zst",
            "An S3-compatible service (path-style addressing).",
        ),
        (
            "weir-put --if-none-match s3://wal/000000010000000000000001 < pg_wal/000000010000000000000001",
            "Create only: exit status 5 if the object already exists.",
        ),
        (
            "weir-put /var/backups/weir/prod.weir < prod.weir",
            "A local directory: written to a temporary file, synced, renamed into place.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-get(1), weir-ls(1), weir-rm(1), aws(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (
            ExitCode::Exists,
            Some("--if-none-match, and the object already exists."),
        ),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-get's man page: its command line and the sections written by hand.
pub const GET: Page = Page {
    command: <GetCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-get s3://backups/prod/2026-11-21.weir.zst | weir-compress -d | weir-load --create prod_copy",
            "Restore straight from S3.",
        ),
        (
            "restore_command = 'weir-get s3://wal/%f -o %p'",
            "Fetch WAL segments in recovery; exit status 4 tells PostgreSQL a segment does not exist.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-put(1), weir-ls(1), aws(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (
            ExitCode::BadArchive,
            Some("The object arrived shorter than its length or with the wrong checksum."),
        ),
        (ExitCode::NotFound, Some("The object does not exist.")),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-ls's man page: its command line and the sections written by hand.
pub const LS: Page = Page {
    command: <LsCli as clap::CommandFactory>::command,
    examples: &[
        ("weir-ls s3://backups/prod/", "Every object under a prefix."),
        (
            "weir-ls --json s3://backups/ | jq -r '.[] | select(.size > 1e9) | .key'",
            "Objects over 1 GB.",
        ),
        (
            "weir-ls --catalog -H s3://backups/prod/",
            "The complete backups: time, database, size, tables, rows, encryption, masking.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-put(1), weir-rm(1), weir-prune(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-rm's man page: its command line and the sections written by hand.
pub const RM: Page = Page {
    command: <RmCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-rm s3://backups/prod/2026-01-01.weir.zst",
            "Delete one object (exit status 4 if it does not exist).",
        ),
        (
            "weir-rm -r -q /var/backups/weir/scratch/",
            "Delete everything under a local prefix, silently.",
        ),
    ],
    environment: STORAGE_ENV,
    see_also: "weir-ls(1), weir-put(1)",
    exits: &[
        (ExitCode::Failure, Some(STORAGE_FAILURE)),
        (
            ExitCode::NotFound,
            Some("Nothing matched (unless --force)."),
        ),
        (ExitCode::BrokenPipe, None),
    ],
};
