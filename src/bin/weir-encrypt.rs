//! weir-encrypt: see `man weir-encrypt`; the work is done in `weir::stream::encrypt`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::EncryptCli;

fn main() {
    let cli = EncryptCli::parse();
    weir::plumbing::main("weir-encrypt", || {
        weir::stream::encrypt::run(&cli.options())
    });
}
