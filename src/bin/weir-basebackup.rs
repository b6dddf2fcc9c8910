//! weir-basebackup: see `man weir-basebackup`; the work is done in `weir::physical::basebackup`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = weir::cli::BaseBackupCli::parse();
    weir::plumbing::main("weir-basebackup", || {
        weir::physical::basebackup::run(&cli.options()?)
    });
}
