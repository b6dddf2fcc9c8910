//! weir-dedup: the deduplicated repository.

use super::Page;
use super::storage::{S3Args, STORAGE_ENV};
use crate::plumbing::ExitCode;
use crate::stream::encrypt::EncryptOptions;
use clap::Parser;

/// Store streams in a deduplicated repository, where what backups share is kept once, and
/// read them back.
#[derive(Parser, Debug)]
#[command(name = "weir-dedup", version)]
#[command(
    after_help = "weir-extract prod | weir-dedup push s3://bucket/repo prod -R recipients --key-file dedup.key\nweir-dedup cat s3://bucket/repo prod@latest -i key.txt | weir-load prod_copy\n\nChunks of about 64 KiB are stored many to a pack, age(zstd(chunk) ...) under packs/, their places in JSON lists under lists/, each backup a JSON recipe under backups/NAME/; docs/restore-by-hand.md rebuilds a stream with age, zstd, dd, base64 and jq."
)]
pub struct DedupCli {
    #[command(subcommand)]
    pub command: DedupCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DedupCommand {
    /// Store standard input as backup NAME: only the chunks the repository lacks are
    /// uploaded; the backup exists once its recipe is written, last. The first push creates
    /// the repository.
    Push(PushArgs),
    /// Write backup NAME (the latest), NAME@latest or NAME@STAMP to standard output, every
    /// chunk checked before it is written; a missing or damaged one is exit 3.
    Cat(CatArgs),
    /// List the backups: time, NAME@STAMP, size, bytes it added, BLAKE3 of the stream.
    Ls(LsArgs),
    /// Check that every chunk of every backup is in the repository (exit 3 naming the
    /// backups that are not whole); --deep also reads each back and checks it.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct RepoArg {
    /// The repository: s3://BUCKET/PREFIX, file:///PATH or PATH (a directory that exists).
    #[arg(value_name = "REPO")]
    pub repo: String,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The backup's name (letters, digits, '.', '_', '-', '%'); each push adds one under it.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Encrypt to RECIPIENT (age1... or an SSH public key; repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt to the recipients listed in FILE (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<String>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// The repository's key, a secret of the backup host (its first line, 16 characters or
    /// more); else WEIR_DEDUP_KEY. It names chunks and signs recipes; it decrypts nothing.
    #[arg(long = "key-file", value_name = "FILE")]
    pub key_file: Option<std::path::PathBuf>,
    /// Chunks compressed, encrypted and uploaded at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 8, value_parser = super::jobs)]
    pub jobs: usize,
    /// Nothing but errors on standard error.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Once the backup is written, what was pushed as one line of JSON: backup, bytes,
    /// chunks, added_chunks, added_bytes, blake3, and for a weir archive its database, tables
    /// and rows.
    #[arg(long = "stats", value_name = "FILE")]
    pub stats: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// NAME (its latest backup), NAME@latest, or NAME@STAMP (a prefix of the stamp ls shows).
    #[arg(value_name = "BACKUP")]
    pub which: String,
    /// An identity that decrypts the chunks (repeatable); else WEIR_AGE_IDENTITY_FILE.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<String>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Chunks fetched and decoded at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 8, value_parser = super::jobs)]
    pub jobs: usize,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// One JSON array of {backup, name, time, bytes, chunks, added_chunks, added_bytes, blake3}.
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Also read every chunk back: decrypt, decompress, check its hash; and each recipe's
    /// signature.
    #[arg(long = "deep")]
    pub deep: bool,
    /// Identities for --deep (repeatable); else WEIR_AGE_IDENTITY_FILE.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<String>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// A passphrase repository's options (docs: src/dedup/access.rs).
#[derive(clap::Args, Debug)]
pub struct PassphraseArgs {
    /// Seal the repository with a passphrase instead of recipients (push, when it creates
    /// one), or open its identity with it; from --passphrase-file, WEIR_PASSPHRASE or a
    /// prompt on the terminal.
    #[arg(short = 'p', long = "passphrase")]
    pub passphrase: bool,
    /// Read the passphrase from the first line of FILE (implies -p).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_file: Option<String>,
}

fn identities(files: &[String], p: &PassphraseArgs) -> EncryptOptions {
    EncryptOptions {
        identities: files.to_vec(),
        passphrase: p.passphrase,
        passphrase_file: p.passphrase_file.clone(),
        ..Default::default()
    }
}

impl PushArgs {
    pub fn options(&self) -> crate::dedup::push::PushOptions {
        crate::dedup::push::PushOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            name: self.name.clone(),
            enc: EncryptOptions {
                recipients: self.recipients.clone(),
                recipients_files: self.recipients_files.clone(),
                passphrase: self.passphrase.passphrase,
                passphrase_file: self.passphrase.passphrase_file.clone(),
                ..Default::default()
            },
            key_file: self.key_file.clone(),
            jobs: self.jobs,
            quiet: self.quiet,
            stats: self.stats.clone(),
        }
    }
}

impl CatArgs {
    pub fn options(&self) -> crate::dedup::cat::CatOptions {
        crate::dedup::cat::CatOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            which: self.which.clone(),
            enc: identities(&self.identities, &self.passphrase),
            jobs: self.jobs,
            output: self.output.clone(),
        }
    }
}

impl LsArgs {
    pub fn options(&self) -> crate::dedup::inventory::LsOptions {
        crate::dedup::inventory::LsOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            json: self.json,
        }
    }
}

impl VerifyArgs {
    pub fn options(&self) -> crate::dedup::inventory::VerifyOptions {
        crate::dedup::inventory::VerifyOptions {
            repo: self.repo.repo.clone(),
            s3: self.repo.s3.settings(),
            deep: self.deep,
            enc: identities(&self.identities, &self.passphrase),
        }
    }
}

/// weir-dedup's man page.
pub const DEDUP: Page = Page {
    command: <DedupCli as clap::CommandFactory>::command,
    examples: &[
        (
            "weir-extract prod | weir-dedup push s3://backups/repo prod -R /etc/weir/recipients --key-file /etc/weir/dedup.key",
            "Back up a database; what earlier backups already stored is not uploaded again.",
        ),
        (
            "weir-dedup cat s3://backups/repo prod -i key.txt | weir-load --create prod_copy",
            "Restore its latest backup.",
        ),
        (
            "weir-extract prod | weir-dedup push /var/lib/weir/repo prod --passphrase-file /run/secrets/pass --key-file dedup.key",
            "Back up into a repository sealed by a passphrase instead of recipients.",
        ),
        (
            "weir-dedup ls /var/lib/weir/repo",
            "Each backup with its size and the bytes it added.",
        ),
        (
            "weir-dedup verify --deep -i key.txt s3://backups/repo",
            "Read every chunk back and check it.",
        ),
    ],
    environment: DEDUP_ENV,
    see_also: "weir-put(1), weir-encrypt(1), weir-extract(1), weir-load(1), restic(1)",
    exits: &[
        (
            ExitCode::Failure,
            Some("Storage, a key that is not the repository's, an identity that opens nothing."),
        ),
        (
            ExitCode::BadArchive,
            Some(
                "cat and verify: a chunk is missing or damaged, or a recipe altered or another repository's.",
            ),
        ),
        (
            ExitCode::NotFound,
            Some("No such repository, or no such backup."),
        ),
        (
            ExitCode::Exists,
            Some("push: a backup of the same name and stamp exists."),
        ),
    ],
};

const DEDUP_ENV: &[(&str, &str)] = &[
    (
        "WEIR_DEDUP_KEY",
        "The repository's key for push, when --key-file is not given.",
    ),
    (
        "WEIR_AGE_RECIPIENTS",
        "Recipients for push, separated by commas, spaces or newlines.",
    ),
    (
        "WEIR_CACHE_DIR",
        "Where push keeps its index of the repository's chunks (default $XDG_CACHE_HOME/weir or ~/.cache/weir); empty: no cache.",
    ),
    (
        "WEIR_AGE_IDENTITY_FILE",
        "An identity file for cat and verify --deep.",
    ),
    (
        "WEIR_PASSPHRASE",
        "A passphrase repository's passphrase, when --passphrase-file is not given.",
    ),
    STORAGE_ENV[0],
    STORAGE_ENV[1],
    STORAGE_ENV[2],
    STORAGE_ENV[3],
];
