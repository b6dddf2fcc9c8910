//! weir-extract: see `man weir-extract`; the work is done in `weir::extract`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::ExtractCli;

fn main() {
    let cli = ExtractCli::parse();
    weir::plumbing::main("weir-extract", || weir::extract::run(&cli.options()?));
}
