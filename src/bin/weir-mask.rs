//! weir-mask: see `man weir-mask`; the work is done in `weir::mask`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::MaskCli;

fn main() {
    let cli = MaskCli::parse();
    weir::plumbing::main("weir-mask", || weir::mask::run(&cli.options()));
}
