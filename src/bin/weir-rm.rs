//! weir-rm: see `man weir-rm`; the work is done in `weir::storage`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::RmCli;

fn main() {
    let cli = RmCli::parse();
    weir::plumbing::main("weir-rm", || {
        weir::storage::rm(
            &cli.url,
            &cli.s3.settings(),
            cli.recursive,
            cli.force,
            cli.quiet,
        )
    });
}
