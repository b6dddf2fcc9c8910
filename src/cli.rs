//! The command-line definitions of every binary, in one place so that help text, man pages
//! (`man/`, generated from these by `tests/man.rs` with `WEIR_BLESS=1`) and the code agree.

use crate::compress::{CompressOptions, Format};
use crate::conn::{parse_conninfo, quote_conninfo_value};
use crate::encrypt::EncryptOptions;
use crate::extract::ExtractOptions;
use crate::inspect::InspectOptions;
use crate::load::LoadOptions;
use clap::{Args, Parser};

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
    /// Folds the flags into one conninfo string for [`crate::conn::ConnParams::resolve`].
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

/// Write a consistent snapshot of a PostgreSQL database as a weir archive on standard output.
#[derive(Parser, Debug)]
#[command(name = "weir-extract", version, disable_help_flag = true)]
#[command(
    after_help = "Examples:\n  weir-extract postgres://app@db/prod > prod.weir\n  weir-extract -j 4 -t 'public.*' -T public.audit_log | weir-load -j 4 postgres:///copy"
)]
pub struct ExtractCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Write the archive to FILE instead of standard output.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Number of connections that COPY in parallel; big tables are split into page ranges.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Extract only tables matching PATTERN (psql pattern rules; repeatable).
    #[arg(short = 't', long = "table", value_name = "PATTERN")]
    pub table: Vec<String>,
    /// Leave out tables matching PATTERN (repeatable).
    #[arg(short = 'T', long = "exclude-table", value_name = "PATTERN")]
    pub exclude_table: Vec<String>,
    /// Extract only schemas matching PATTERN (repeatable).
    #[arg(short = 'n', long = "schema", value_name = "PATTERN")]
    pub schema: Vec<String>,
    /// Leave out schemas matching PATTERN (repeatable).
    #[arg(short = 'N', long = "exclude-schema", value_name = "PATTERN")]
    pub exclude_schema: Vec<String>,
    /// Keep the definition of tables matching PATTERN but not their rows (repeatable).
    #[arg(long = "exclude-table-data", value_name = "PATTERN")]
    pub exclude_table_data: Vec<String>,
    /// Extract only the rows of TABLE (a pattern) for which the SQL CONDITION holds
    /// (repeatable), e.g. --where 'public.orders:created_at > now() - interval '"'"'30 days'"'"''.
    #[arg(long = "where", value_name = "TABLE:CONDITION")]
    pub r#where: Vec<String>,
    /// Include roles and tablespaces (pg_dumpall --globals-only; needs a superuser).
    #[arg(long = "globals")]
    pub globals: bool,
    /// Include large objects even when tables or schemas were selected.
    #[arg(
        short = 'b',
        long = "large-objects",
        alias = "blobs",
        conflicts_with = "no_large_objects"
    )]
    pub large_objects: bool,
    /// Leave large objects out.
    #[arg(short = 'B', long = "no-large-objects", alias = "no-blobs")]
    pub no_large_objects: bool,
    /// Target size of a data chunk in bytes (rows are never split).
    #[arg(long = "chunk-size", value_name = "BYTES", default_value_t = 4 << 20, hide = true)]
    pub chunk_size: usize,
    /// Tables larger than twice this many pages are split into ranges of this many pages.
    #[arg(
        long = "split-pages",
        value_name = "PAGES",
        default_value_t = 16384,
        hide = true
    )]
    pub split_pages: i64,
    /// Once the archive is complete, write what it holds (database, tables, rows, bytes) as
    /// one line of JSON to FILE; a failed run writes nothing.
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<String>,
    /// Print a progress line every few seconds even when stderr is not a terminal.
    #[arg(long = "progress")]
    pub progress: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl ExtractCli {
    pub fn options(&self) -> anyhow::Result<ExtractOptions> {
        Ok(ExtractOptions {
            conninfo: self.conn.conninfo()?,
            jobs: self.jobs,
            tables: self.table.clone(),
            exclude_tables: self.exclude_table.clone(),
            schemas: self.schema.clone(),
            exclude_schemas: self.exclude_schema.clone(),
            exclude_table_data: self.exclude_table_data.clone(),
            wheres: self.r#where.clone(),
            globals: self.globals,
            blobs: if self.large_objects {
                Some(true)
            } else if self.no_large_objects {
                Some(false)
            } else {
                None
            },
            chunk_size: self.chunk_size,
            split_pages: self.split_pages,
            output: self.file.clone(),
            stats: self.stats.clone(),
            progress: self.progress,
            quiet: self.quiet,
        })
    }
}

/// Restore a weir archive read from standard input into a PostgreSQL database.
#[derive(Parser, Debug)]
#[command(name = "weir-load", version, disable_help_flag = true)]
#[command(
    after_help = "Examples:\n  weir-load --create postgres://app@db2/prod_copy < prod.weir\n  weir-get s3://b/db.weir | weir-load -j 4 -t public.orders postgres:///staging"
)]
pub struct LoadCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Read the archive from FILE instead of standard input.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<String>,
    /// Number of connections that load data and build indexes in parallel.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Create the target database first (and drop it again if the load fails).
    #[arg(short = 'C', long = "create")]
    pub create: bool,
    /// Drop the archive's objects from the target before creating them.
    #[arg(short = 'c', long = "clean")]
    pub clean: bool,
    /// With --clean, do not fail on objects that do not exist (always the case in weir).
    #[arg(long = "if-exists")]
    pub if_exists: bool,
    /// Do not set object ownership to match the source; objects belong to the loading user.
    #[arg(short = 'O', long = "no-owner")]
    pub no_owner: bool,
    /// Do not restore access privileges (GRANT/REVOKE).
    #[arg(short = 'x', long = "no-acl", alias = "no-privileges")]
    pub no_acl: bool,
    /// Restore only the schema, no rows (the archive is still verified completely).
    #[arg(short = 's', long = "schema-only")]
    pub schema_only: bool,
    /// Restore only rows, sequences and large objects into existing tables.
    #[arg(short = 'a', long = "data-only")]
    pub data_only: bool,
    /// With --data-only, keep triggers and foreign-key checks from firing during the load
    /// (needs a superuser).
    #[arg(long = "disable-triggers")]
    pub disable_triggers: bool,
    /// Restore only tables matching PATTERN, with their indexes, constraints, triggers and
    /// sequences (repeatable).
    #[arg(short = 't', long = "table", value_name = "PATTERN")]
    pub table: Vec<String>,
    /// Restore only objects in schemas matching NAME (repeatable).
    #[arg(short = 'n', long = "schema", value_name = "NAME")]
    pub schema: Vec<String>,
    /// Also restore roles and tablespaces, if the archive has them.
    #[arg(long = "globals")]
    pub globals: bool,
    /// Print a progress line every few seconds even when stderr is not a terminal.
    #[arg(long = "progress")]
    pub progress: bool,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Report each phase (schema, data, indexes) as it ends, with elapsed time.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl LoadCli {
    pub fn options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            conninfo: self.conn.conninfo()?,
            input: self.input.clone(),
            jobs: self.jobs,
            create: self.create,
            clean: self.clean,
            if_exists: self.if_exists,
            no_owner: self.no_owner,
            no_acl: self.no_acl,
            schema_only: self.schema_only,
            data_only: self.data_only,
            disable_triggers: self.disable_triggers,
            tables: self.table.clone(),
            schemas: self.schema.clone(),
            globals: self.globals,
            progress: self.progress,
            quiet: self.quiet,
            verbose: self.verbose,
        })
    }
}

/// List, verify or read a weir archive without a database.
#[derive(Parser, Debug)]
#[command(name = "weir-inspect", version)]
#[command(
    after_help = "Examples:\n  weir-inspect --verify < prod.weir\n  weir-inspect --table public.users --csv prod.weir > users.csv"
)]
pub struct InspectCli {
    /// The archive to read; standard input if absent or -.
    #[arg(value_name = "FILE")]
    pub file: Option<String>,
    /// Verify every entry, count and digest; print one line and exit 0 only if intact.
    #[arg(long = "verify", conflicts_with_all = ["table", "json"])]
    pub verify: bool,
    /// Print the manifest and trailer as JSON.
    #[arg(long = "json", conflicts_with = "table")]
    pub json: bool,
    /// Print the rows of one table (schema.name or a unique name) as COPY text.
    #[arg(long = "table", value_name = "TABLE")]
    pub table: Option<String>,
    /// With --table, print CSV with a header line instead of COPY text.
    #[arg(long = "csv", requires = "table")]
    pub csv: bool,
}

impl InspectCli {
    pub fn options(&self) -> InspectOptions {
        InspectOptions {
            input: self.file.clone(),
            verify: self.verify,
            json: self.json,
            table: self.table.clone(),
            csv: self.csv,
        }
    }
}

/// Compress a byte stream with zstd (or lz4, gzip) for the standard tools to read, or
/// decompress any of those.
#[derive(Parser, Debug)]
#[command(name = "weir-compress", version)]
#[command(
    after_help = "Levels are given as in zstd: -1 (fastest) to -19 (smallest), --fast=N for faster still.\n\nExamples:\n  weir-extract prod | weir-compress -T2 > prod.weir.zst      # zstd -d reads it\n  weir-compress -d < prod.weir.zst | weir-load prod_copy"
)]
pub struct CompressCli {
    /// Read FILE instead of standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<String>,
    /// Decompress; the format (zstd, lz4, gzip, bzip2) is detected from the data.
    #[arg(short = 'd', long = "decompress", alias = "uncompress")]
    pub decompress: bool,
    /// Compression level: -1 to -19 (written as -N, as with zstd); gzip uses 1 to 9.
    #[arg(long = "level", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19), hide_short_help = true)]
    pub level: i32,
    /// Faster than -1, at a lower ratio (zstd negative levels).
    #[arg(long = "fast", value_name = "N", num_args = 0..=1, default_missing_value = "1", value_parser = clap::value_parser!(i32).range(1..=100))]
    pub fast: Option<i32>,
    /// Compression threads (zstd); default: the number of cores, at most 4.
    #[arg(short = 'T', long = "threads", value_name = "N")]
    pub threads: Option<u32>,
    /// Long-distance matching with a 2^WLOG window (default 27); `zstd -d` then needs
    /// --long=WLOG (or --memory) to decompress.
    #[arg(long = "long", value_name = "WLOG", num_args = 0..=1, default_missing_value = "27", value_parser = clap::value_parser!(u32).range(10..=31))]
    pub long: Option<u32>,
    /// Output format when compressing.
    #[arg(long = "format", value_enum, default_value = "zstd")]
    pub format: Format,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// Write to standard output (the default; accepted for zstd and gzip habits).
    #[arg(short = 'c', long = "stdout")]
    pub stdout: bool,
}

impl CompressCli {
    pub fn options(&self) -> CompressOptions {
        CompressOptions {
            decompress: self.decompress,
            format: self.format,
            level: match self.fast {
                Some(n) => -n,
                None => self.level,
            },
            threads: self
                .threads
                .unwrap_or_else(crate::compress::default_threads),
            long: self.long,
            input: self.file.clone(),
            output: self.output.clone(),
        }
    }
}

/// Encrypt a byte stream to age recipients or a passphrase, or decrypt one; `age` reads what
/// it writes and it reads what `age` writes.
#[derive(Parser, Debug)]
#[command(name = "weir-encrypt", version)]
#[command(
    after_help = "Examples:\n  weir-extract prod | weir-compress | weir-encrypt -r age1... > prod.weir.zst.age\n  weir-encrypt -d -i key.txt < prod.weir.zst.age | weir-compress -d | weir-load copy\n  weir-encrypt --passphrase-file /run/secrets/pass < x > x.age"
)]
pub struct EncryptCli {
    /// Read FILE instead of standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<String>,
    /// Decrypt.
    #[arg(short = 'd', long = "decrypt")]
    pub decrypt: bool,
    /// Encrypt to RECIPIENT: an age1... key or an ssh-ed25519 / ssh-rsa public key
    /// (repeatable; WEIR_AGE_RECIPIENTS adds more).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipient: Vec<String>,
    /// Encrypt to every recipient listed in FILE, one per line (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_file: Vec<String>,
    /// Decrypt with the identities in FILE: an age identity file or an unencrypted SSH
    /// private key (repeatable; WEIR_AGE_IDENTITY_FILE adds one).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Vec<String>,
    /// Encrypt with a passphrase (scrypt) instead of recipients. The passphrase comes from
    /// --passphrase-file, WEIR_PASSPHRASE, or a prompt on the terminal.
    #[arg(short = 'p', long = "passphrase")]
    pub passphrase: bool,
    /// Read the passphrase from the first line of FILE (implies -p when encrypting).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_file: Option<String>,
    /// Write ASCII-armored (PEM) output instead of binary.
    #[arg(short = 'a', long = "armor")]
    pub armor: bool,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
}

impl EncryptCli {
    pub fn options(&self) -> EncryptOptions {
        EncryptOptions {
            decrypt: self.decrypt,
            recipients: self.recipient.clone(),
            recipients_files: self.recipients_file.clone(),
            identities: self.identity.clone(),
            passphrase: self.passphrase,
            passphrase_file: self.passphrase_file.clone(),
            armor: self.armor,
            input: self.file.clone(),
            output: self.output.clone(),
        }
    }
}

/// Anonymize and filter a weir archive as it streams through.
#[derive(Parser, Debug)]
#[command(name = "weir-mask", version)]
#[command(
    after_help = "Without a key, pseudonyms are consistent within one run only (the output's manifest says so).\n\nExamples:\n  weir-extract prod | WEIR_MASK_KEY=... weir-mask -c mask.toml | weir-load staging\n  weir-mask -c mask.toml --preview 5 < prod.weir"
)]
pub struct MaskCli {
    /// Read the archive from FILE instead of standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<String>,
    /// The rules (TOML): per table, per column, chains of transformers; row filters; tables
    /// whose data is dropped.
    #[arg(short = 'c', long = "config", value_name = "RULES")]
    pub config: String,
    /// Read the masking key from the first line of FILE (else WEIR_MASK_KEY): with a key,
    /// every pseudonym depends only on key, rule and original value.
    #[arg(long = "key-file", value_name = "FILE")]
    pub key_file: Option<String>,
    /// Print, for the first N rows of each masked table, the masked columns before and after,
    /// instead of writing an archive.
    #[arg(long = "preview", value_name = "N")]
    pub preview: Option<usize>,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// Once the output archive is complete, write what it holds (database, tables, rows
    /// left after filters, bytes, masking) as one line of JSON to FILE.
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<String>,
    /// Also verify the chunks of tables that pass through unchanged. By default their bytes
    /// go on unhashed, under the digests weir-extract computed, which weir-load and
    /// weir-inspect --verify check; every table that is rewritten is always verified first.
    #[arg(long = "verify")]
    pub verify: bool,
}

impl MaskCli {
    pub fn options(&self) -> crate::mask::MaskOptions {
        crate::mask::MaskOptions {
            rules: self.config.clone(),
            key_file: self.key_file.clone(),
            preview: self.preview,
            input: self.file.clone(),
            output: self.output.clone(),
            stats: self.stats.clone(),
            verify: self.verify,
        }
    }
}

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
}

impl S3Args {
    pub fn settings(&self) -> crate::storage::S3Settings {
        crate::storage::S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            virtual_hosted: self.virtual_hosted,
            attempts: self.attempts,
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

/// Thin a backup catalog by retention rules, and remove the leftovers of failed runs.
#[derive(Parser, Debug)]
#[command(name = "weir-prune", version)]
#[command(
    after_help = "Backups are grouped by database; each rule keeps some of every group, and a backup no rule keeps is removed (its catalog entry first, then its data). --keep-daily N keeps the newest backup of each of the N most recent days that have one; weekly (ISO weeks), monthly and yearly likewise. The newest backup of each database is never removed. Data objects without a catalog entry (a failed or interrupted backup) are removed once older than --leftover-age.\n\nExamples:\n  weir-prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12 s3://backups/prod/\n  weir-prune --keep-within 30d /var/backups/weir"
)]
pub struct PruneCli {
    /// The catalog's prefix: s3://BUCKET/PREFIX, file:///PATH or PATH.
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
    #[command(flatten)]
    pub s3: S3Args,
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

/// The binaries that have man pages, with their clap commands.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        ExtractCli::command(),
        LoadCli::command(),
        InspectCli::command(),
        CompressCli::command(),
        EncryptCli::command(),
        MaskCli::command(),
        PutCli::command(),
        GetCli::command(),
        LsCli::command(),
        RmCli::command(),
        PruneCli::command(),
        ScheduleCli::command(),
    ]
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "Failure: connection, SQL, pg_dump or pg_restore, input or output.",
    ),
    ("2", "Usage error."),
    (
        "3",
        "The input is not a weir archive, or it is truncated, corrupt or incomplete.",
    ),
    (
        "141",
        "The reader of standard output went away before the stream was complete.",
    ),
    (
        "128+n",
        "Killed by signal n (SIGINT, SIGTERM) after cleaning up.",
    ),
];

/// The exit codes a page documents: the common ones, plus the storage tools' own.
fn exit_status(name: &str) -> Vec<(&'static str, &'static str)> {
    let storage = matches!(
        name,
        "weir-put" | "weir-get" | "weir-ls" | "weir-rm" | "weir-prune"
    );
    let mut v = Vec::new();
    for &(code, what) in EXIT_STATUS {
        match code {
            "1" if storage => v.push((
                "1",
                "Failure: credentials, a missing bucket, the service unreachable after all attempts, input or output.",
            )),
            "3" if name == "weir-get" => v.push((
                "3",
                "The object arrived shorter than its length or with the wrong checksum.",
            )),
            "3" if storage => {}
            "1" if name == "weir-schedule" => v.push((
                "1",
                "The schedule could not be followed (no next time). A failed run is not an error: it is logged and the schedule goes on.",
            )),
            "3" | "141" if name == "weir-schedule" => {}
            _ => v.push((code, what)),
        }
        if code == "3" && matches!(name, "weir-get" | "weir-rm") {
            v.push(("4", "The object does not exist (weir-rm: nothing matched)."));
        }
        if code == "3" && name == "weir-put" {
            v.push(("5", "--if-none-match, and the object already exists."));
        }
    }
    v
}

const CONN_ENV: &[(&str, &str)] = &[
    (
        "PGHOST, PGPORT, PGUSER, PGDATABASE",
        "Connection defaults, as for psql.",
    ),
    (
        "PGPASSWORD, PGPASSFILE",
        "The password, or the password file (default ~/.pgpass, ignored unless mode 0600).",
    ),
    (
        "PGSERVICE, PGSERVICEFILE, PGSYSCONFDIR",
        "Connection service file and entry.",
    ),
    (
        "PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY",
        "TLS: disable, allow, prefer, require, verify-ca or verify-full, and certificate files.",
    ),
    (
        "PGAPPNAME, PGCONNECT_TIMEOUT, PGOPTIONS",
        "Application name, connection timeout in seconds, server options.",
    ),
    (
        "WEIR_PG_BINDIR",
        "Directory of pg_dump, pg_restore and psql, when not the ones on PATH.",
    ),
];

const STORAGE_ENV: &[(&str, &str)] = &[
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

/// (term, explanation) pairs of a man-page section.
type Pairs = Vec<(&'static str, &'static str)>;

/// EXAMPLES, ENVIRONMENT and SEE ALSO of each page, written by hand.
fn extra_sections(name: &str) -> (Pairs, Pairs, &'static str) {
    match name {
        "weir-extract" => (
            vec![
                (
                    "weir-extract postgres://app@db/prod > prod.weir",
                    "Back up one database to a file.",
                ),
                (
                    "weir-extract -j 4 -t 'public.*' -T public.audit_log | ssh other weir-load -j 4 postgres:///copy",
                    "Copy all tables of schema public but one to another server, four connections at each end.",
                ),
                (
                    "weir-extract --where 'public.orders:created_at > now() - interval '\\''7 days'\\''' -t 'public.orders' shop > recent.weir",
                    "A subset: one week of orders.",
                ),
            ],
            CONN_ENV.to_vec(),
            "weir-load(1), weir-inspect(1), pg_dump(1)",
        ),
        "weir-load" => (
            vec![
                (
                    "weir-load --create postgres://app@db2/prod_copy < prod.weir",
                    "Restore into a new database.",
                ),
                (
                    "weir-load -j 4 --clean --if-exists staging < prod.weir",
                    "Replace the objects of an existing database, loading on four connections.",
                ),
                (
                    "weir-load -t public.orders -t public.order_lines scratch < prod.weir",
                    "Restore two tables with their indexes, constraints, triggers and sequences.",
                ),
            ],
            CONN_ENV.to_vec(),
            "weir-extract(1), weir-inspect(1), pg_restore(1)",
        ),
        "weir-compress" => (
            vec![
                (
                    "weir-extract prod | weir-compress -T2 > prod.weir.zst",
                    "Compress a backup on two threads; zstd -d reads the result.",
                ),
                (
                    "weir-compress -19 --long < base.tar > base.tar.zst",
                    "Smallest output; decompress with weir-compress -d or zstd -d --long=27.",
                ),
                (
                    "weir-compress --format gzip < dump.sql > dump.sql.gz",
                    "gzip, for tools that expect it.",
                ),
                (
                    "weir-compress -d < backup.weir.zst | weir-load copy",
                    "Decompress (zstd, lz4, gzip or bzip2, detected from the data) into a restore.",
                ),
            ],
            vec![(
                "(none)",
                "weir-compress reads no environment variables. Without -T it uses as many threads as there are cores, at most 4.",
            )],
            "zstd(1), lz4(1), gzip(1), weir-encrypt(1)",
        ),
        "weir-encrypt" => (
            vec![
                (
                    "weir-extract prod | weir-compress | weir-encrypt -r age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p > prod.weir.zst.age",
                    "Encrypt a compressed backup to an age recipient.",
                ),
                (
                    "weir-encrypt -R ~/.ssh/id_ed25519.pub -a < notes.txt > notes.txt.age",
                    "Encrypt to an SSH key, ASCII-armored.",
                ),
                (
                    "weir-encrypt --passphrase-file /run/secrets/backup-pass < db.weir > db.weir.age",
                    "Passphrase mode without a terminal, as in cron or Docker.",
                ),
                (
                    "weir-encrypt -d -i key.txt < prod.weir.zst.age | weir-compress -d | weir-load copy",
                    "Decrypt into a restore.",
                ),
            ],
            vec![
                (
                    "WEIR_AGE_RECIPIENTS",
                    "Recipients to encrypt to, separated by commas, spaces or newlines.",
                ),
                (
                    "WEIR_AGE_IDENTITY_FILE",
                    "An identity file to decrypt with.",
                ),
                (
                    "WEIR_PASSPHRASE",
                    "The passphrase for passphrase (scrypt) mode, when --passphrase-file is not given; otherwise the terminal is asked.",
                ),
            ],
            "age(1), age-keygen(1), weir-compress(1)",
        ),
        "weir-mask" => (
            vec![
                (
                    "weir-extract prod | weir-mask -c mask.toml | weir-load --create staging",
                    "Copy production to staging, anonymized on the way.",
                ),
                (
                    "weir-mask -c mask.toml --preview 5 < prod.weir",
                    "Show five rows of each masked table before and after.",
                ),
                (
                    "weir-mask -c mask.toml --key-file /run/secrets/mask-key < prod.weir > masked.weir",
                    "Deterministic pseudonyms: the same input masks the same way in every run.",
                ),
            ],
            vec![(
                "WEIR_MASK_KEY",
                "The masking key, when --key-file is not given. Without either, a random key is used for the run.",
            )],
            "weir-extract(1), weir-load(1), weir-inspect(1)",
        ),
        "weir-put" => (
            vec![
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
            STORAGE_ENV.to_vec(),
            "weir-get(1), weir-ls(1), weir-rm(1), aws(1)",
        ),
        "weir-get" => (
            vec![
                (
                    "weir-get s3://backups/prod/2026-11-21.weir.zst | weir-compress -d | weir-load --create prod_copy",
                    "Restore straight from S3.",
                ),
                (
                    "restore_command = 'weir-get s3://wal/%f -o %p'",
                    "Fetch WAL segments in recovery; exit status 4 tells PostgreSQL a segment does not exist.",
                ),
            ],
            STORAGE_ENV.to_vec(),
            "weir-put(1), weir-ls(1), aws(1)",
        ),
        "weir-ls" => (
            vec![
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
            STORAGE_ENV.to_vec(),
            "weir-put(1), weir-rm(1), weir-prune(1)",
        ),
        "weir-prune" => (
            vec![
                (
                    "weir-prune --dry-run --keep-daily 7 --keep-weekly 4 --keep-monthly 12 s3://backups/prod/",
                    "Show what this policy would remove, and why each backup is kept.",
                ),
                (
                    "weir-prune --keep-within 30d --keep-monthly 24 /var/backups/weir",
                    "Keep a month of everything and two years of month ends.",
                ),
            ],
            STORAGE_ENV.to_vec(),
            "weir-ls(1), weir-rm(1), restic-forget(1)",
        ),
        "weir-schedule" => (
            vec![
                (
                    "weir-schedule '0 3 * * *' -- scripts/backup.sh",
                    "Back up every night at 03:00 UTC.",
                ),
                (
                    "weir-schedule --run-now '@every 6h' -- scripts/backup.sh",
                    "Back up at start, then every six hours.",
                ),
            ],
            vec![],
            "cron(8), crontab(5)",
        ),
        "weir-rm" => (
            vec![
                (
                    "weir-rm s3://backups/prod/2026-01-01.weir.zst",
                    "Delete one object (exit status 4 if it does not exist).",
                ),
                (
                    "weir-rm -r -q /var/backups/weir/scratch/",
                    "Delete everything under a local prefix, silently.",
                ),
            ],
            STORAGE_ENV.to_vec(),
            "weir-ls(1), weir-put(1)",
        ),
        _ => (
            vec![
                (
                    "weir-inspect --verify < prod.weir",
                    "Verify an archive completely; exit status 0 only if it is intact.",
                ),
                (
                    "weir-inspect --table public.users --csv prod.weir > users.csv",
                    "One table as CSV with a header line.",
                ),
                (
                    "weir-inspect --json prod.weir | jq '.trailer.tables'",
                    "Counts and digests as JSON.",
                ),
            ],
            vec![],
            "weir-extract(1), weir-load(1)",
        ),
    }
}

/// Renders the man page of one binary: clap's sections plus the hand-written ones.
pub fn man_page(cmd: clap::Command) -> Vec<u8> {
    use roff::{Roff, bold, roman};
    let name = cmd.get_name().to_string();
    let man = clap_mangen::Man::new(cmd)
        .date("2026-11")
        .source(concat!("weir ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).expect("in memory");
    man.render_name_section(&mut out).expect("in memory");
    man.render_synopsis_section(&mut out).expect("in memory");
    man.render_description_section(&mut out).expect("in memory");
    man.render_options_section(&mut out).expect("in memory");
    let (examples, env, see_also) = extra_sections(&name);
    let mut r = Roff::new();
    r.control("SH", ["EXAMPLES"]);
    for (cmdline, what) in examples {
        r.control("TP", []).text([roman(what)]);
        r.control("RS", [])
            .control("EX", [])
            .text([roman(cmdline)])
            .control("EE", [])
            .control("RE", []);
    }
    if !env.is_empty() {
        r.control("SH", ["ENVIRONMENT"]);
        for (var, what) in env {
            r.control("TP", []).text([bold(var)]).text([roman(what)]);
        }
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in exit_status(&name) {
        r.control("TP", []).text([bold(code)]).text([roman(what)]);
    }
    r.control("SH", ["SEE ALSO"]).text([roman(see_also)]);
    r.to_writer(&mut out).expect("in memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// man/ is committed; this fails when the CLI changed and the pages were not regenerated
    /// (`WEIR_BLESS=1 cargo test --lib man_pages` rewrites them).
    #[test]
    fn man_pages_match_the_cli() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("man");
        // Every binary has a page: the list of commands must not miss one.
        let names: Vec<String> = commands()
            .iter()
            .map(|c| c.get_name().to_string())
            .collect();
        for entry in std::fs::read_dir(root.join("src/bin")).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().to_string();
            let bin = file.trim_end_matches(".rs");
            assert!(
                names.iter().any(|n| n == bin),
                "{bin} has no man page: add it to commands()"
            );
        }
        for cmd in commands() {
            let path = dir.join(format!("{}.1", cmd.get_name()));
            let page = man_page(cmd);
            if std::env::var_os("WEIR_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &page).unwrap();
            } else {
                let have = std::fs::read(&path).unwrap_or_default();
                assert!(
                    have == page,
                    "{} is out of date: run WEIR_BLESS=1 cargo test --lib man_pages",
                    path.display()
                );
            }
        }
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
        for c in commands() {
            c.debug_assert();
        }
    }
}
