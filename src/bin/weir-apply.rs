//! weir-apply: see `man weir-apply`; the work is done in `weir::cdc::apply`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::ApplyCli;

fn main() {
    let cli = ApplyCli::parse();
    weir::plumbing::main("weir-apply", || weir::cdc::apply::run(&cli.options()?));
}
