//! weir-dedup: see `man weir-dedup`; the work is done in `weir::dedup`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::{DedupCli, DedupCommand};
use weir::dedup;

fn main() {
    let cli = DedupCli::parse();
    weir::plumbing::main("weir-dedup", || match &cli.command {
        DedupCommand::Push(a) => dedup::push::push(&a.options()),
        DedupCommand::Cat(a) => dedup::cat::cat(&a.options()),
        DedupCommand::Ls(a) => dedup::inventory::ls(&a.options()),
        DedupCommand::Verify(a) => dedup::inventory::verify(&a.options()),
    });
}
