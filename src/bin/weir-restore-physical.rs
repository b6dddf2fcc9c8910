//! weir-restore-physical: see `man weir-restore-physical`; the work is done in
//! `weir::physical::restore`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = weir::cli::RestorePhysicalCli::parse();
    weir::plumbing::main("weir-restore-physical", || {
        weir::physical::restore::run(&cli.options())
    });
}
