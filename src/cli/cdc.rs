//! weir-cdc's and weir-apply's command lines.

use super::{ConnArgs, Page};
use crate::cdc::apply::ApplyOptions;
use crate::cdc::stream::CdcOptions;
use crate::plumbing::ExitCode;
use clap::Parser;

/// Stream a logical replication slot's changes as JSON lines.
#[derive(Parser, Debug)]
#[command(name = "weir-cdc", version, disable_help_flag = true)]
#[command(
    long_about = "Stream a logical replication slot's changes as JSON lines, one per begin, \
change, truncate, message and commit, in the shape of wal2json's format-version 2 \
(docs/FORMAT.md, section 13), decoded from pgoutput: no server extension needed. The flags \
follow pg_recvlogical's.\n\n\
With --confirm-from naming the database weir-apply writes to, the slot is confirmed only as \
far as the target's replication origin says it has committed durably: a crash of any stage \
loses nothing, and weir-apply skips what it already holds. Without it, each transaction is \
confirmed once its lines are written and flushed (confirm on write): a later stage that fails \
before making them durable loses them, and weir-cdc says so when it starts. When no \
transaction is open and everything written is confirmed, the server's keepalive position is \
confirmed too, so an idle slot does not hold WAL. Status updates go on while a slow reader \
blocks the output, so the server's wal_sender_timeout does not end the connection.\n\n\
--copy-and-stream creates the slot with an exported snapshot, copies the publication's tables \
as they are in it (insert lines marked \"snapshot\", one transaction ending at the slot's \
consistent point), then streams from that point: no change is lost or doubled across the \
hand-off.\n\n\
With --confirm-from naming a database, a table added to the publication while weir-cdc runs \
(or while it is stopped) is copied into the stream as --backfill copies one: weir-cdc keeps \
which tables the target holds whole in weir_cdc.tables on the target, so a copy cut short by a \
crash goes on when the same command runs again.\n\n\
--verify checks the target against the source: a temporary slot's exported snapshot is the \
source at one position, its published tables are read in it (ordered by key, in chunks of \
10,000 rows), and the stream carries a point message where that position is, then the chunks' \
digests; weir-apply compares them with the target as it is at the point, and names the first \
differing key range of each table that differs.",
    after_help = "Examples:\n  weir-cdc app -S audit --publication app_pub --create-slot --if-not-exists --stream > changes.jsonl\n  weir-cdc app -S audit --publication app_pub --stream --confirm-from postgres://replica/app | weir-apply postgres://replica/app"
)]
pub struct CdcCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The logical replication slot (pgoutput).
    #[arg(short = 'S', long = "slot", value_name = "SLOT")]
    pub slot: String,
    /// Create the slot (and stop there unless --stream is given too).
    #[arg(long = "create-slot")]
    pub create_slot: bool,
    /// Create the slot as a failover slot, synchronized to standbys that have
    /// sync_replication_slots on, so it survives a failover (PostgreSQL 17 and later).
    #[arg(long = "failover")]
    pub failover: bool,
    /// With --create-slot, take an existing pgoutput slot of that name as it is.
    #[arg(long = "if-not-exists", requires = "create_slot")]
    pub if_not_exists: bool,
    /// Drop the slot (after streaming, with --stream).
    #[arg(long = "drop-slot")]
    pub drop_slot: bool,
    /// Stream the slot's changes to the output.
    #[arg(long = "stream")]
    pub stream: bool,
    /// Create the slot with an exported snapshot and write the publication's tables as they
    /// are in it (insert lines marked "snapshot", one transaction), then stop: --stream
    /// resumes after them.
    #[arg(long = "copy", conflicts_with_all = ["stream", "create_slot"])]
    pub copy: bool,
    /// --copy, then stream from the slot's consistent point: no change lost or doubled
    /// across the hand-off.
    #[arg(long = "copy-and-stream", conflicts_with_all = ["stream", "create_slot", "copy"])]
    pub copy_and_stream: bool,
    /// pgoutput's protocol version (default 2 on PostgreSQL 14 and later, which streams big
    /// transactions in progress; 1 holds each until its commit).
    #[arg(long = "proto-version", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2), hide = true)]
    pub proto_version: Option<u32>,
    /// After a lost or dropped slot: drop what is left of it, copy the publication's tables
    /// afresh as --copy-and-stream does, behind a truncate of each in the same transaction
    /// (weir-apply replaces the target's tables whole), then stream.
    #[arg(long = "resync", conflicts_with_all = ["stream", "create_slot", "copy", "copy_and_stream", "drop_slot"])]
    pub resync: bool,
    /// Connections that copy tables in parallel (--copy, --copy-and-stream, --resync), or read
    /// them for --verify.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Tables larger than twice this many pages are copied in ranges of this many pages.
    #[arg(
        long = "split-pages",
        value_name = "PAGES",
        default_value_t = crate::pg::page_ranges::RANGE_PAGES,
        hide = true
    )]
    pub split_pages: i64,
    /// The publication whose tables are streamed (CREATE PUBLICATION on the source).
    #[arg(long = "publication", value_name = "NAME")]
    pub publication: Option<String>,
    /// Start at this LSN (default: where the slot's confirmed position is).
    #[arg(short = 'I', long = "startpos", value_name = "LSN", value_parser = super::ops::lsn)]
    pub startpos: Option<u64>,
    /// Stop, and exit 0, at this LSN: no transaction that commits after it is written.
    #[arg(short = 'E', long = "endpos", value_name = "LSN", value_parser = super::ops::lsn)]
    pub endpos: Option<u64>,
    /// Seconds between status updates to the server.
    #[arg(
        short = 's',
        long = "status-interval",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub status_interval: u64,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// Confirm only what the target has made durable: a database (CONNINFO, whose
    /// replication origin weir-apply's --origin records) or a weir-sink directory
    /// (file:///DIR, whose position file weir-sink writes).
    #[arg(long = "confirm-from", value_name = "CONNINFO|file:///DIR")]
    pub confirm_from: Option<String>,
    /// The replication origin --confirm-from reads.
    #[arg(long = "origin", value_name = "NAME", default_value = "weir")]
    pub origin: String,
    /// Write the slot's health as a Prometheus textfile to FILE at each status interval: lag in
    /// bytes, wal_status, safe_wal_size, the commit time of the last confirmed change.
    #[arg(long = "metrics", value_name = "FILE")]
    pub metrics: Option<std::path::PathBuf>,
    /// Write a heartbeat message into the source database's WAL every SECS seconds, so a
    /// slot whose tables are quiet while other databases write keeps moving.
    #[arg(long = "heartbeat", value_name = "SECS")]
    pub heartbeat: Option<u64>,
    /// Install (or replace) event triggers on the source database that write each DDL
    /// statement into WAL as a logical message, so it reaches weir-apply --apply-ddl in order
    /// with the changes (needs a superuser; schema weir_ddl).
    #[arg(long = "track-ddl", conflicts_with = "untrack_ddl")]
    pub track_ddl: bool,
    /// Remove what --track-ddl installed.
    #[arg(long = "untrack-ddl")]
    pub untrack_ddl: bool,
    /// Check the target against the source: read the publication's tables in a snapshot of
    /// this moment (-j connections) and put their digests in the stream where that moment is,
    /// for weir-apply to compare with the target's at the same point. With -E, the run goes
    /// at least to that moment and ends once they are written.
    #[arg(long = "verify", requires = "stream")]
    pub verify: bool,
    /// Copy TABLE (in the publication) into the stream while it flows, in chunks by key (a
    /// table without one whole, at one snapshot), without a lock; after a crash it goes on
    /// after the greatest key the --confirm-from database holds. May be given more than once.
    /// (A table added to the publication is copied without it.)
    #[arg(long = "backfill", value_name = "TABLE", requires = "stream")]
    pub backfill: Vec<String>,
    /// --backfill every table of the publication, one after the other: an initial copy that a
    /// crash does not send back to the start.
    #[arg(
        long = "backfill-all",
        requires = "stream",
        conflicts_with = "backfill"
    )]
    pub backfill_all: bool,
    /// Rows read per backfill chunk.
    #[arg(long = "backfill-chunk-rows", value_name = "N", default_value_t = crate::cdc::backfill::CHUNK_ROWS, hide = true)]
    pub backfill_chunk_rows: usize,
    /// Rows in each chunk the check compares.
    #[arg(long = "verify-chunk-rows", value_name = "N", default_value_t = crate::cdc::verify::CHUNK_ROWS, hide = true)]
    pub verify_chunk_rows: u64,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl CdcCli {
    pub fn options(&self) -> anyhow::Result<CdcOptions> {
        Ok(CdcOptions {
            conninfo: self.conn.conninfo()?,
            slot: self.slot.clone(),
            create_slot: self.create_slot,
            if_not_exists: self.if_not_exists,
            drop_slot: self.drop_slot,
            stream: self.stream,
            copy: self.copy,
            copy_and_stream: self.copy_and_stream,
            jobs: self.jobs.max(1),
            split_pages: self.split_pages,
            publication: self.publication.clone(),
            startpos: self.startpos,
            endpos: self.endpos,
            status_interval: std::time::Duration::from_secs(self.status_interval.max(1)),
            output: self.output.clone(),
            confirm_from: self.confirm_from.clone(),
            origin: self.origin.clone(),
            resync: self.resync,
            proto_version: self.proto_version,
            metrics: self.metrics.clone(),
            heartbeat: self
                .heartbeat
                .map(|s| std::time::Duration::from_secs(s.max(1))),
            track_ddl: self.track_ddl,
            untrack_ddl: self.untrack_ddl,
            verify: self.verify,
            verify_chunk_rows: self.verify_chunk_rows.max(1),
            backfill: self.backfill.clone(),
            backfill_all: self.backfill_all,
            failover: self.failover,
            backfill_chunk_rows: self.backfill_chunk_rows.max(1),
            quiet: self.quiet,
        })
    }
}

/// Apply weir-cdc's change stream to a PostgreSQL database, exactly once.
#[derive(Parser, Debug)]
#[command(name = "weir-apply", version, disable_help_flag = true)]
#[command(
    long_about = "Apply weir-cdc's change stream, read from standard input, to a PostgreSQL \
database: each source transaction in one target transaction, in the stream's order, on one \
connection. Runs of inserts into a table go through COPY; updates and deletes find their row \
by the replica identity the stream carries and set only the columns sent (an unchanged TOAST \
value is not); the tables of one source TRUNCATE are truncated together.\n\n\
Each transaction records where it ends in the source's WAL in a replication origin, in the \
same commit, as PostgreSQL's own apply worker does; on start weir-apply reads it and skips \
every transaction the target already holds, so replaying a stream after a crash changes \
nothing. weir-cdc --confirm-from reads the same origin, so the slot never passes what the \
target made durable.\n\n\
The session runs with session_replication_role = replica (a superuser, as for a \
subscription): ordinary triggers and foreign-key checks stay off, since the source checked \
them. The target's tables must exist with the source's columns; sequences are not in the \
stream (set them at cutover). A stream that ends inside a transaction applies nothing of it \
and exits 3.\n\n\
A stream from weir-cdc --verify asks for a check: where its point message is, the target holds \
exactly the source transactions before the checked position; weir-apply reads its tables in a \
snapshot taken there (-j connections) while it goes on applying, compares them with the \
source's digests, and exits 8 naming each table that differs and its first differing key \
range.",
    after_help = "Example:\n  weir-cdc app -S app_slot --publication app_pub --stream --confirm-from postgres://replica/app | weir-apply postgres://replica/app"
)]
pub struct ApplyCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The replication origin that records the target's progress (created when missing).
    #[arg(long = "origin", value_name = "NAME", default_value = "weir")]
    pub origin: String,
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Run the DDL statements weir-cdc --track-ddl put in the stream, each where it was in
    /// its source transaction (without it they are passed over, and said so once).
    #[arg(long = "apply-ddl")]
    pub apply_ddl: bool,
    /// Pass over DDL messages at or before LSN (one applied by hand, after weir-apply stopped
    /// at it).
    #[arg(long = "skip-ddl-through", value_name = "LSN", value_parser = super::ops::lsn, requires = "apply_ddl")]
    pub skip_ddl_through: Option<u64>,
    /// What a transaction the target refuses does: stop (name it and exit 1), or
    /// dead-letter=FILE (roll it back, append its lines to FILE, record it as applied, go on).
    #[arg(long = "on-error", value_name = "stop|dead-letter=FILE", default_value = "stop", value_parser = on_error)]
    pub on_error: OnError,
    /// Connections that read the target's tables when the stream asks for a check (weir-cdc
    /// --verify).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Write what the target took as a Prometheus textfile to FILE (every few seconds and at
    /// exit): transactions applied, skipped and dead-lettered, the origin's position, the
    /// source commit time of the last transaction applied.
    #[arg(long = "metrics", value_name = "FILE")]
    pub metrics: Option<std::path::PathBuf>,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl ApplyCli {
    pub fn options(&self) -> anyhow::Result<ApplyOptions> {
        Ok(ApplyOptions {
            conninfo: self.conn.conninfo()?,
            origin: self.origin.clone(),
            input: self.file.clone(),
            apply_ddl: self.apply_ddl,
            skip_ddl_through: self.skip_ddl_through.map(crate::pg::lsn::Lsn),
            dead_letter: match &self.on_error {
                OnError::Stop => None,
                OnError::DeadLetter(f) => Some(f.clone()),
            },
            jobs: self.jobs,
            metrics: self.metrics.clone(),
            quiet: self.quiet,
        })
    }
}

/// `--on-error`.
#[derive(Debug, Clone)]
pub enum OnError {
    Stop,
    DeadLetter(std::path::PathBuf),
}

fn on_error(s: &str) -> Result<OnError, String> {
    match s.split_once('=') {
        None if s == "stop" => Ok(OnError::Stop),
        Some(("dead-letter", f)) if !f.is_empty() => Ok(OnError::DeadLetter(f.into())),
        _ => Err(format!("{s}: expected stop or dead-letter=FILE")),
    }
}

/// Deliver weir-cdc's change stream to a durable target.
#[derive(Parser, Debug)]
#[command(name = "weir-sink", version)]
#[command(
    long_about = "Deliver weir-cdc's change stream, read from standard input, to a durable \
target, whole transactions in the stream's order, and record the position it made durable \
where weir-cdc --confirm-from reads it, so the slot never passes what the target holds.\n\n\
file:///DIR writes JSON-lines files into DIR, each starting at a transaction and named by the \
commit LSN of its first (names sort in stream order), a new one every --rotate-size bytes or \
--rotate-age seconds. DIR/position ({\"lsn\", \"file\", \"offset\"}) is written after the \
data is synced, through a synced temporary file and a rename; on start weir-sink cuts the \
named file back to that offset and removes later files, so after a crash only whole \
transactions remain, and the replay continues exactly there (a transaction already \
delivered is skipped). Readers take the files in name order, the last up to the position's \
offset.\n\n\
A stream that ends inside a transaction delivers nothing of it and exits 3.",
    after_help = "Example:\n  weir-cdc app -S audit --publication app_pub --stream --confirm-from file:///var/lib/audit | weir-sink file:///var/lib/audit"
)]
pub struct SinkCli {
    /// Where to deliver: file:///DIR, http(s)://... (a webhook: one POST per transaction), or
    /// nats://HOST[:PORT]/SUBJECT?stream=NAME (NATS JetStream: one message per line).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Read the stream from FILE instead of standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Start a new file once the current one holds this many MiB.
    #[arg(long = "rotate-size", value_name = "MIB", default_value_t = 64)]
    pub rotate_size: u64,
    /// Start a new file once the current one is this many seconds old.
    #[arg(long = "rotate-age", value_name = "SECS", default_value_t = 3600)]
    pub rotate_age: u64,
    /// Make what was written durable, and record it, at most this many milliseconds after it
    /// was written.
    #[arg(long = "sync-interval", value_name = "MS", default_value_t = 200)]
    pub sync_interval: u64,
    /// What to write: weir-cdc's lines as they are (wal2json), or each change in Debezium's
    /// envelope (before, after, source, op, ts_ms; no events for begin, commit and messages).
    #[arg(long = "format", value_name = "FORMAT", default_value = "wal2json", value_parser = ["wal2json", "debezium"])]
    pub format: String,
    /// Webhook and NATS: record the durable position in DIR/position (what weir-cdc
    /// --confirm-from file:///DIR reads), so a restart skips what was delivered. file:// keeps
    /// it in its own DIR.
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<std::path::PathBuf>,
    /// Webhook and NATS: how long one POST, or one publish's acknowledgement, may take.
    #[arg(long = "timeout", value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Webhook: retry a POST that failed with a 5xx, 408 or 429, a timeout or a broken
    /// connection for this long, backing off, before giving up.
    #[arg(long = "retry-for", value_name = "SECS", default_value_t = 600)]
    pub retry_for: u64,
    /// Webhook: the largest body; a bigger transaction is sent in parts (Weir-Part,
    /// Weir-Last-Part).
    #[arg(long = "max-body", value_name = "MIB", default_value_t = 8)]
    pub max_body: usize,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

impl SinkCli {
    pub fn options(&self) -> crate::cdc::sink::SinkOptions {
        crate::cdc::sink::SinkOptions {
            url: self.url.clone(),
            input: self.file.clone(),
            rotate_bytes: self.rotate_size.max(1) << 20,
            rotate_age: std::time::Duration::from_secs(self.rotate_age.max(1)),
            sync_interval: std::time::Duration::from_millis(self.sync_interval),
            debezium: self.format == "debezium",
            state: self.state.clone(),
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            retry_for: std::time::Duration::from_secs(self.retry_for),
            max_body: self.max_body.max(1) << 20,
            quiet: self.quiet,
        }
    }
}

/// weir-sink's man page.
pub const SINK: Page = Page {
    command: <SinkCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-cdc app -S audit --publication app_pub --stream --confirm-from file:///var/lib/audit | weir-sink file:///var/lib/audit",
            "Keep every change of the published tables in files, none lost or doubled across crashes of either side.",
        ),
        (
            "weir-cdc app -S hook --publication app_pub --stream --confirm-from file:///var/lib/hook | weir-sink --state /var/lib/hook https://example.com/changes",
            "POST each transaction to a webhook, in order, retrying while the receiver fails; the slot advances only past what it accepted.",
        ),
        (
            "weir-cdc app -S bus --publication app_pub --stream --confirm-from file:///var/lib/bus | weir-sink --state /var/lib/bus --format debezium 'nats://nats:4222/cdc.app?stream=APP'",
            "Publish each change to NATS JetStream once, as Debezium events, across restarts of either side.",
        ),
    ],
    environment: &[
        (
            "WEIR_SINK_AUTHORIZATION",
            "The value of a webhook POST's Authorization header (for example \"Bearer TOKEN\").",
        ),
        ("WEIR_NATS_TOKEN", "The token NATS authenticates with."),
        (
            "WEIR_NATS_USER, WEIR_NATS_PASSWORD",
            "The user and password NATS authenticates with.",
        ),
    ],
    see_also: "weir-cdc(1), weir-apply(1)",
    exits: &[
        (
            ExitCode::Failure,
            Some(
                "Delivery failed: a webhook refused a body (a 4xx) or kept failing for --retry-for, or NATS refused a message or fell silent. What was delivered is recorded; a restart goes on after it.",
            ),
        ),
        (
            ExitCode::BadArchive,
            Some(
                "The input is not a change stream, or it ended inside a transaction (no file holds any of that transaction; a webhook or NATS may have received its first parts, which a restart sends again with the same ids).",
            ),
        ),
    ],
};

/// weir-apply's man page.
pub const APPLY: Page = Page {
    command: <ApplyCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-cdc app -S app_slot --publication app_pub --stream --confirm-from postgres://replica/app | weir-apply postgres://replica/app",
            "Keep a copy of the published tables current, exactly once across crashes of either side.",
        ),
        (
            "weir-apply --origin audit_copy -f changes.jsonl postgres:///audit_copy",
            "Apply a saved stream; run again, it changes nothing.",
        ),
    ],
    environment: super::dump::CONN_ENV,
    see_also: "weir-cdc(1), pg_recvlogical(1)",
    exits: &[
        (ExitCode::Failure, None),
        (
            ExitCode::BadArchive,
            Some(
                "The input is not a change stream, or it ended inside a transaction (nothing of that transaction was applied).",
            ),
        ),
        (ExitCode::Differs, None),
    ],
};

/// weir-cdc's man page: its command line and the sections written by hand.
pub const CDC: Page = Page {
    command: <CdcCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-cdc app -S audit --publication app_pub --create-slot --if-not-exists --stream > changes.jsonl",
            "Create the slot if it is missing, then stream its changes to a file until interrupted.",
        ),
        (
            "weir-cdc app -S audit --publication app_pub --stream -E \"$(psql -XAtc 'SELECT pg_current_wal_lsn()' app)\"",
            "Stream what was committed until now, then exit 0: a bounded batch for cron.",
        ),
        (
            "weir-cdc app -S app_slot --publication app_pub --copy-and-stream -j 4 --confirm-from postgres://replica/app | weir-apply postgres://replica/app",
            "A new replica of the published tables: their rows as of one snapshot, then every change after it.",
        ),
        (
            "weir-cdc app -S app_slot --publication app_pub --stream --verify -j 2 --confirm-from postgres://replica/app | weir-apply -j 2 postgres://replica/app",
            "Stream as usual and check, once, that the replica equals the source at the moment weir-cdc started.",
        ),
        (
            "weir-cdc app -S app_slot --publication app_pub --stream --backfill orders --confirm-from postgres://replica/app | weir-apply postgres://replica/app",
            "Copy the table orders, just added to the publication, into the running stream in chunks; run again after a crash to go on where the target stands.",
        ),
        (
            "weir-cdc app -S audit --drop-slot",
            "Drop the slot, so that the server keeps no WAL for it.",
        ),
    ],
    environment: super::dump::CONN_ENV,
    see_also: "pg_recvlogical(1), weir-extract(1)",
    exits: &[
        (ExitCode::Failure, None),
        (ExitCode::SlotLost, None),
        (ExitCode::BrokenPipe, None),
    ],
};
