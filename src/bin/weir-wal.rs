//! weir-wal: see `man weir-wal`; the work is done in `weir::physical`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::{WalCli, WalCommand};
use weir::physical::wal::{self, Fetched};
use weir::plumbing::{ExitCode, coded};

fn main() {
    // PostgreSQL takes a restore_command's exit status 1 to 125 for "not in the archive" and
    // ends recovery; so for fetch even a command-line mistake must exit above that.
    let fetching = std::env::args().nth(1).as_deref() == Some("fetch");
    if fetching {
        // A panic exits 101, which PostgreSQL would take for "not in the archive".
        std::panic::set_hook(Box::new(|info| {
            eprintln!("weir-wal: internal error: {info}");
            std::process::exit(ExitCode::FetchFailed as i32);
        }));
    }
    let cli = match WalCli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            let failed = fetching && code != 0;
            std::process::exit(if failed {
                ExitCode::FetchFailed as i32
            } else {
                code
            });
        }
    };
    weir::plumbing::main("weir-wal", || match &cli.command {
        WalCommand::Push(a) if std::env::var_os(wal::PUSH_CHILD).is_some() => {
            a.options().and_then(|o| wal::push_ready(&o))
        }
        WalCommand::Push(a) => {
            let result = a.options().and_then(|o| wal::push(&o));
            if let Some(m) = &a.metrics {
                let file = std::path::Path::new(&a.path)
                    .file_name()
                    .unwrap_or_default();
                let file = file.to_string_lossy();
                if let Err(e) =
                    weir::physical::metrics::record(m, &a.repo.repo, &file, result.is_ok())
                {
                    eprintln!("weir-wal: writing metrics {}: {e:#}", m.display());
                }
            }
            result
        }
        WalCommand::Ls(a) => weir::physical::inventory::ls(&a.options()),
        WalCommand::Verify(a) => weir::physical::inventory::verify(&a.options()?),
        WalCommand::ClearSpool(a) => wal::clear_spool(&a.spool),
        WalCommand::Fetch(a) if std::env::var_os(wal::PREFETCH_CHILD).is_some() => {
            a.options().and_then(|o| wal::prefetch(&o))
        }
        WalCommand::Fetch(a) => {
            let fetched = a.options().and_then(|o| wal::fetch(&o));
            match fetched {
                Ok(Fetched::Restored) => Ok(()),
                Ok(Fetched::Absent) => Err(coded(
                    ExitCode::Failure,
                    format!("{} is not in the archive", a.name),
                )),
                Err(e) => Err(coded(ExitCode::FetchFailed, format!("{e:#}"))),
            }
        }
    });
}
