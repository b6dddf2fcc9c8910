//! The logical-dump family: weir-extract, weir-load, weir-inspect and weir-mask.

use super::{ConnArgs, Page, jobs};
use crate::dump::extract::ExtractOptions;
use crate::dump::inspect::InspectOptions;
use crate::dump::load::LoadOptions;
use crate::plumbing::ExitCode;
use clap::Parser;

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
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1, value_parser = jobs)]
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
    /// Leave out the rows of unlogged tables, keeping their definitions (always so when the
    /// server is a standby, where their files are empty, as with pg_dump).
    #[arg(long = "no-unlogged-table-data")]
    pub no_unlogged_table_data: bool,
    /// The definitions only: no table's rows, no large objects (as pg_dump --schema-only).
    #[arg(short = 's', long = "schema-only")]
    pub schema_only: bool,
    /// Extract only the rows of TABLE (a pattern) for which the SQL CONDITION holds
    /// (repeatable), e.g. --where 'public.orders:created_at > now() - interval '"'"'30 days'"'"''.
    #[arg(long = "where", value_name = "TABLE:CONDITION")]
    pub r#where: Vec<String>,
    /// Extract the rows of TABLE for which CONDITION holds, every row they reference through
    /// foreign keys (transitively), and of the tables that reference these only the rows that
    /// point at kept rows, so the result restores with every key valid (repeatable).
    #[arg(long = "subset", value_name = "TABLE:CONDITION")]
    pub subset: Vec<String>,
    /// With --subset, also keep the rows that reference the subset's rows (transitively), and
    /// the rows these reference.
    #[arg(long = "subset-dependents")]
    pub subset_dependents: bool,
    /// A foreign key the schema does not declare, for --subset, e.g.
    /// 'public.events(user_id)->public.users(id)' (repeatable).
    #[arg(long = "virtual-fk", value_name = "CHILD(COLS)->PARENT(COLS)")]
    pub virtual_fk: Vec<String>,
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
            exclude_table_data: if self.schema_only {
                vec!["*.*".into()]
            } else {
                self.exclude_table_data.clone()
            },
            no_unlogged_table_data: self.no_unlogged_table_data,
            wheres: self.r#where.clone(),
            subset: crate::dump::extract::subset::SubsetSpec {
                seeds: self.subset.clone(),
                virtual_fks: self.virtual_fk.clone(),
                dependents: self.subset_dependents,
            },
            globals: self.globals,
            blobs: if self.schema_only {
                Some(false)
            } else if self.large_objects {
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
    long_about = "Restore a weir archive read from standard input into a PostgreSQL database.\n\n\
What a truncated or corrupt stream leaves, by mode. With --create: nothing (the database \
weir-load created is dropped), also where the server's lock table cannot hold one \
transaction's locks on every table and weir-load commits in batches. Into an existing \
database: no row (the pre-data schema stays); an archive whose load would overflow the lock \
table in one transaction is refused before anything changes, naming the numbers. With \
--transaction-size N: the batches committed before the damage.",
    after_help = "Examples:\n  weir-load --create postgres://app@db2/prod_copy < prod.weir\n  weir-get s3://b/db.weir | weir-load -j 4 -t public.orders postgres:///staging"
)]
pub struct LoadCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Read the archive from FILE instead of standard input.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<String>,
    /// Number of connections that load data and build indexes in parallel.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1, value_parser = jobs)]
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
    /// Commit N tables at a time per connection, and the schema statement by statement, where
    /// one transaction would overflow the server's lock table (as pg_restore 17's option of the
    /// name). A truncated or corrupt stream then leaves what was committed before it.
    #[arg(long = "transaction-size", value_name = "N", value_parser = jobs)]
    pub transaction_size: Option<usize>,
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
            transaction_size: self.transaction_size,
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

/// Anonymize and filter a weir archive as it streams through.
#[derive(Parser, Debug)]
#[command(name = "weir-mask", version)]
#[command(
    long_about = "Anonymize and filter a weir archive as it streams through.\n\n\
What a masked archive holds: the rows as the rules left them; the schema without the \
credentials pg_dump copies from the catalogs (options named like secrets of user mappings, \
foreign servers and foreign-data wrappers; password and sslpassword in subscriptions' \
connection strings); roles without their password hashes (unless --keep-role-passwords); \
large objects as the [large_objects] rule says (drop, replace or keep), and unmasked when no \
rule does, which --strict refuses.\n\n\
What no rule reaches: free text in the schema (comments, unless [schema] comments = \"drop\"; \
function bodies, view definitions, defaults, CHECK constraints), table and column names, \
sequence values, and columns without a rule. --validate lists what would pass.\n\n\
A change stream from weir-cdc (JSON lines) is masked too, with the same rules and key, so a \
key gets the same pseudonym in a masked dump and in a masked stream: name an archive of its \
source with --schema-from. Inserts, updates and deletes are masked, their old keys too; row \
filters turn an update that leaves or enters them into a delete or an insert; every other \
line passes as it is.",
    after_help = "Without a key, pseudonyms are consistent within one run only (the output's manifest says so).\n\nExamples:\n  weir-extract prod | WEIR_MASK_KEY=... weir-mask -c mask.toml | weir-load staging\n  weir-mask -c mask.toml --preview 5 < prod.weir\n  weir-cdc prod -S s --publication p --stream | weir-mask -c mask.toml --schema-from prod-schema.weir | weir-apply staging"
)]
pub struct MaskCli {
    /// Read the archive (or change stream) from FILE instead of standard input.
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
    /// Keep the roles' password verifiers (SCRAM or MD5 hashes) in an archive with globals.
    /// By default they are removed, as pg_dumpall --no-role-passwords leaves them out: the
    /// roles are restored without passwords.
    #[arg(long = "keep-role-passwords")]
    pub keep_role_passwords: bool,
    /// Print, per table, the rules, the columns without one (marked when their name or type
    /// looks personal), the constraints a rule may break, and a sample of before and after
    /// (--preview N rows, default 3), instead of writing an archive.
    #[arg(long = "validate")]
    pub validate: bool,
    /// Refuse (exit 2, before any output) a column without a rule whose name or type looks
    /// personal, any column that the rules of its table neither mask nor list in keep, and
    /// large objects without a [large_objects] rule.
    #[arg(long = "strict")]
    pub strict: bool,
    /// For a change stream: the archive (a schema-only one is enough) whose tables, columns
    /// and foreign keys the rules are compiled against.
    #[arg(long = "schema-from", value_name = "ARCHIVE")]
    pub schema_from: Option<String>,
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
            keep_role_passwords: self.keep_role_passwords,
            validate: self.validate,
            strict: self.strict,
            schema_from: self.schema_from.clone(),
        }
    }
}

pub(super) const CONN_ENV: &[(&str, &str)] = &[
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

/// weir-extract's man page: its command line and the sections written by hand.
pub const EXTRACT: Page = Page {
    command: <ExtractCli as clap::CommandFactory>::command,
    examples: &[
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
            "One week of orders, and nothing else.",
        ),
        (
            "weir-extract --subset 'public.orders:id % 10 = 0' --virtual-fk 'public.events(user_id)->public.users(id)' shop | weir-load --create shop_sample",
            "A tenth of the orders with every row they reference, restored with all foreign keys valid.",
        ),
    ],
    environment: CONN_ENV,
    see_also: "weir-load(1), weir-inspect(1), pg_dump(1)",
    exits: &[
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-load's man page: its command line and the sections written by hand.
pub const LOAD: Page = Page {
    command: <LoadCli as clap::CommandFactory>::command,
    examples: &[
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
    environment: CONN_ENV,
    see_also: "weir-extract(1), weir-inspect(1), pg_restore(1)",
    exits: &[
        (
            ExitCode::Usage,
            Some(
                "Usage error, or a load into an existing database that one transaction cannot hold the locks of (raise max_locks_per_transaction, use --create, or --transaction-size).",
            ),
        ),
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-inspect's man page: its command line and the sections written by hand.
pub const INSPECT: Page = Page {
    command: <InspectCli as clap::CommandFactory>::command,
    examples: &[
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
    environment: &[],
    see_also: "weir-extract(1), weir-load(1)",
    exits: &[
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-mask's man page: its command line and the sections written by hand.
pub const MASK: Page = Page {
    command: <MaskCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-extract prod | weir-mask -c mask.toml | weir-load --create staging",
            "Copy production to staging, anonymized on the way.",
        ),
        (
            "weir-mask -c mask.toml --preview 5 < prod.weir",
            "Show five rows of each masked table before and after.",
        ),
        (
            "weir-extract -s prod | weir-mask -c mask.toml --validate --strict",
            "Check the rules against production's schema: every column that looks personal has a rule, every column of a masked table is named.",
        ),
        (
            "weir-mask -c mask.toml --key-file /run/secrets/mask-key < prod.weir > masked.weir",
            "Deterministic pseudonyms: the same input masks the same way in every run.",
        ),
    ],
    environment: &[(
        "WEIR_MASK_KEY",
        "The masking key, when --key-file is not given. Without either, a random key is used for the run.",
    )],
    see_also: "weir-extract(1), weir-load(1), weir-inspect(1)",
    exits: &[
        (
            ExitCode::Usage,
            Some(
                "Usage error, or a rule that does not fit the archive (a missing table or column, a transformer for another type).",
            ),
        ),
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};
