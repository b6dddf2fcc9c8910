//! weir-cdc: see `man weir-cdc`; the work is done in `weir::cdc::stream`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::CdcCli;

fn main() {
    let cli = CdcCli::parse();
    weir::plumbing::main("weir-cdc", || weir::cdc::stream::run(&cli.options()?));
}
