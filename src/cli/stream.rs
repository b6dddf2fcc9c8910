//! The byte-stream family: weir-compress and weir-encrypt.

use super::Page;
use crate::plumbing::ExitCode;
use crate::stream::compress::{CompressOptions, Format};
use crate::stream::encrypt::EncryptOptions;
use clap::Parser;

/// Compress a byte stream with zstd (or lz4, gzip) for the standard tools to read, or
/// decompress any of those.
#[derive(Parser, Debug)]
#[command(name = "weir-compress", version)]
#[command(
    after_help = "Levels are given as in zstd: -1 (fastest) to -19 (smallest), --fast=N for faster still.\n\nExamples:\n  weir-extract prod | weir-compress -T2 > prod.weir.zst      # zstd -d reads it\n  weir-compress -d -T2 < prod.weir.zst | weir-load prod_copy"
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
    /// Threads (zstd), compressing or decompressing: zstd is written as independent frames of
    /// 4 MiB that many threads work on at once (one frame with --long); default: the number of
    /// cores, at most 4.
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
                .unwrap_or_else(crate::stream::compress::default_threads),
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

/// weir-compress's man page: its command line and the sections written by hand.
pub const COMPRESS: Page = Page {
    command: <CompressCli as clap::CommandFactory>::command,
    examples: &[
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
    environment: &[(
        "(none)",
        "weir-compress reads no environment variables. Without -T it uses as many threads as there are cores, at most 4.",
    )],
    see_also: "zstd(1), lz4(1), gzip(1), weir-encrypt(1)",
    exits: &[
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};

/// weir-encrypt's man page: its command line and the sections written by hand.
pub const ENCRYPT: Page = Page {
    command: <EncryptCli as clap::CommandFactory>::command,
    examples: &[
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
    environment: &[
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
    see_also: "age(1), age-keygen(1), weir-compress(1)",
    exits: &[
        (ExitCode::Failure, None),
        (ExitCode::BadArchive, None),
        (ExitCode::BrokenPipe, None),
    ],
};
