//! weir-ls: see `man weir-ls`; the work is done in `weir::storage` (`--catalog`: `weir::catalog`).
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::LsCli;

fn main() {
    let cli = LsCli::parse();
    let options = weir::storage::LsOptions {
        json: cli.json,
        human: cli.human,
    };
    weir::plumbing::main("weir-ls", || {
        if cli.catalog {
            weir::catalog::ls(&cli.url, &cli.s3.settings(), cli.json, cli.human)
        } else {
            weir::storage::ls(&cli.url, &cli.s3.settings(), options)
        }
    });
}
