//! weir-put: see `man weir-put`; the work is done in `weir::storage`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::PutCli;

fn main() {
    let cli = PutCli::parse();
    weir::plumbing::main("weir-put", || {
        weir::storage::put(
            &cli.url,
            &cli.s3.settings(),
            &cli.transfer.transfer(),
            &cli.options(),
            cli.input.as_deref(),
        )
    });
}
