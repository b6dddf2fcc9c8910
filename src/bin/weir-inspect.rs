//! weir-inspect: see `man weir-inspect`; the work is done in `weir::dump::inspect`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::InspectCli;

fn main() {
    let cli = InspectCli::parse();
    weir::plumbing::main("weir-inspect", || weir::dump::inspect::run(&cli.options()));
}
