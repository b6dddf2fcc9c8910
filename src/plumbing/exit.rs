//! The exit-code enum every binary shares, and how an error chain picks its code. The man
//! pages' EXIT STATUS sections and README's table are generated from [`ExitCode::ALL`].

use std::io;

/// The documented exit codes of every weir binary (each man page's EXIT STATUS section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    /// Anything went wrong that is not one of the more specific cases below.
    Failure = 1,
    /// The command line was wrong (clap uses 2 as well).
    Usage = 2,
    /// The input is not a weir archive, or it is truncated, corrupt or incomplete.
    BadArchive = 3,
    /// The object asked for does not exist (weir-get, weir-rm). A WAL `restore_command` must
    /// tell this apart from a failed fetch.
    NotFound = 4,
    /// The object already exists and `--if-none-match` forbade replacing it (weir-put), or a
    /// WAL file is archived with other content (weir-wal push).
    Exists = 5,
    /// A WAL file or data directory belongs to another cluster than the repository.
    WrongCluster = 6,
    /// A replication slot is lost (`wal_status = lost`): the server removed WAL it needed.
    SlotLost = 7,
    /// A check found the target different from its source (weir-apply at weir-cdc --verify).
    Differs = 8,
    /// weir-wal fetch failed for any reason but absence: PostgreSQL stops recovery on a
    /// status above 125 instead of taking it for the end of the archive.
    FetchFailed = 255,
    /// SIGINT or SIGTERM arrived; cleanup ran and the signal was re-raised, so a shell normally
    /// sees 128+signal itself. 130 is what is returned if re-raising did not end the process.
    Interrupted = 130,
    /// The reader of our standard output went away before the stream was complete.
    BrokenPipe = 141,
}

impl ExitCode {
    /// Every code, in the order the EXIT STATUS sections and README's table list them.
    pub const ALL: [ExitCode; 12] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::BadArchive,
        ExitCode::NotFound,
        ExitCode::Exists,
        ExitCode::WrongCluster,
        ExitCode::SlotLost,
        ExitCode::Differs,
        ExitCode::BrokenPipe,
        ExitCode::FetchFailed,
        ExitCode::Interrupted,
    ];

    /// The code as the tables write it: a signal's death is 128+n, not 130.
    pub fn label(self) -> &'static str {
        match self {
            ExitCode::Ok => "0",
            ExitCode::Failure => "1",
            ExitCode::Usage => "2",
            ExitCode::BadArchive => "3",
            ExitCode::NotFound => "4",
            ExitCode::Exists => "5",
            ExitCode::WrongCluster => "6",
            ExitCode::SlotLost => "7",
            ExitCode::Differs => "8",
            ExitCode::BrokenPipe => "141",
            ExitCode::FetchFailed => "255",
            ExitCode::Interrupted => "128+n",
        }
    }

    /// What the code means, across every binary; a man page may say it more narrowly.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "Success.",
            ExitCode::Failure => {
                "Failure: connection, SQL, pg_dump or pg_restore, storage, input or output."
            }
            ExitCode::Usage => "Usage error.",
            ExitCode::BadArchive => {
                "The input is not what the stage reads (a weir archive, compressed or age data), or it is truncated, corrupt or incomplete."
            }
            ExitCode::NotFound => {
                "The object asked for does not exist (weir-get, weir-rm), or no complete backup matches (restore.sh)."
            }
            ExitCode::Exists => {
                "The object already exists and --if-none-match forbade replacing it (weir-put), or a WAL file is already archived with other content (weir-wal push)."
            }
            ExitCode::WrongCluster => {
                "The WAL file or data directory belongs to another cluster than the repository (weir-wal)."
            }
            ExitCode::SlotLost => {
                "The replication slot is lost (wal_status = lost): the server removed WAL it still needed, so changes are missing; drop the slot and copy again (weir-cdc)."
            }
            ExitCode::Differs => {
                "The target differs from its source at the checked position; the tables and key ranges that differ are named (weir-apply, at weir-cdc --verify)."
            }
            ExitCode::FetchFailed => {
                "weir-wal fetch failed for a reason other than the file's absence (PostgreSQL then stops recovery rather than end it)."
            }
            ExitCode::BrokenPipe => {
                "The reader of standard output went away before the stream was complete."
            }
            ExitCode::Interrupted => "Killed by signal n (SIGINT, SIGTERM) after cleaning up.",
        }
    }

    /// README's exit-status table, generated here so that it cannot drift from the enum.
    pub fn markdown_table() -> String {
        let mut t = String::from("| code | meaning |\n| --- | --- |\n");
        for code in ExitCode::ALL {
            t.push_str(&format!("| {} | {} |\n", code.label(), code.meaning()));
        }
        t
    }
}

/// An error that carries its own exit code. Attach it with [`coded`]; everything else exits 1.
#[derive(Debug)]
pub struct Coded {
    pub code: ExitCode,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Builds an error with a specific exit code.
pub fn coded(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// The error for input that is not what the stage reads, or is truncated or corrupt (exit 3).
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    coded(ExitCode::BadArchive, msg)
}

/// Decides the exit code of an error: the first [`Coded`] in its chain wins, a broken pipe
/// anywhere in the chain is 141, and everything else is 1.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::BrokenPipe;
            }
        }
    }
    ExitCode::Failure
}
