//! weir-sink: see `man weir-sink`; the work is done in `weir::cdc::sink`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::SinkCli;

fn main() {
    let cli = SinkCli::parse();
    weir::plumbing::main("weir-sink", || weir::cdc::sink::run(&cli.options()));
}
