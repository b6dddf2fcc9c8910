//! weir-load: see `man weir-load`; the work is done in `weir::dump::load`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::LoadCli;

fn main() {
    let cli = LoadCli::parse();
    weir::plumbing::main("weir-load", || weir::dump::load::run(&cli.options()?));
}
