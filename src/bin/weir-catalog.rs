//! weir-catalog: see `man weir-catalog`; the work is done in `weir::catalog`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::{CatalogCli, CatalogCommand};

fn main() {
    let cli = CatalogCli::parse();
    weir::plumbing::main("weir-catalog", || match &cli.command {
        CatalogCommand::Add(a) => weir::catalog::entry::add(&a.url, &a.s3.settings(), &a.options()),
        CatalogCommand::Pick(a) => {
            weir::catalog::physical::pick_url(&a.prefix, &a.s3.settings(), &a.aim())
        }
    });
}
