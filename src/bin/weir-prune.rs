//! weir-prune: see `man weir-prune`; the work is done in `weir::catalog`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::PruneCli;

fn main() {
    let cli = PruneCli::parse();
    weir::plumbing::main("weir-prune", || {
        weir::catalog::prune(&cli.url, &cli.s3.settings(), &cli.options())
    });
}
