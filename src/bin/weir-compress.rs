//! weir-compress: see `man weir-compress`; the work is done in `weir::stream::compress`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::CompressCli;

fn main() {
    // zstd-style level flags (-1 .. -19) are rewritten before clap sees them.
    let args = weir::stream::compress::normalize_level_args(std::env::args());
    let cli = CompressCli::parse_from(args);
    weir::plumbing::main("weir-compress", || {
        weir::stream::compress::run(&cli.options())
    });
}
