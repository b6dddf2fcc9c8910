//! weir-cdc's command line.

use super::{ConnArgs, Page};
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
Each transaction is confirmed to the server once its lines are written and flushed (confirm \
on write): a later stage that fails before making them durable loses them. When no \
transaction is open, the server's keepalive position is confirmed too, so an idle slot does \
not hold WAL.",
    after_help = "Examples:\n  weir-cdc app -S audit --publication app_pub --create-slot --if-not-exists --stream > changes.jsonl\n  weir-cdc app -S audit --publication app_pub --stream -E 0/3000060"
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
    /// With --create-slot, take an existing pgoutput slot of that name as it is.
    #[arg(long = "if-not-exists", requires = "create_slot")]
    pub if_not_exists: bool,
    /// Drop the slot (after streaming, with --stream).
    #[arg(long = "drop-slot")]
    pub drop_slot: bool,
    /// Stream the slot's changes to the output.
    #[arg(long = "stream")]
    pub stream: bool,
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
            publication: self.publication.clone(),
            startpos: self.startpos,
            endpos: self.endpos,
            status_interval: std::time::Duration::from_secs(self.status_interval.max(1)),
            output: self.output.clone(),
            quiet: self.quiet,
        })
    }
}

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
            "weir-cdc app -S audit --drop-slot",
            "Drop the slot, so that the server keeps no WAL for it.",
        ),
    ],
    environment: super::dump::CONN_ENV,
    see_also: "pg_recvlogical(1), weir-extract(1)",
    exits: &[(ExitCode::Failure, None), (ExitCode::BrokenPipe, None)],
};
