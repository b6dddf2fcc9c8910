//! weir-extract: see `man weir-extract`; the work is done in `weir::dump::extract`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::ExtractCli;

fn main() {
    let cli = ExtractCli::parse();
    weir::plumbing::main("weir-extract", || weir::dump::extract::run(&cli.options()?));
}
