//! weir-get: see `man weir-get`; the work is done in `weir::storage`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::GetCli;

fn main() {
    let cli = GetCli::parse();
    weir::plumbing::main("weir-get", || {
        weir::storage::get(
            &cli.url,
            &cli.s3.settings(),
            &cli.transfer.transfer(),
            cli.output.as_deref(),
        )
    });
}
