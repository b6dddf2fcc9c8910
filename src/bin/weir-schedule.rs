//! weir-schedule: see `man weir-schedule`; the work is done in `weir::schedule`.
#![forbid(unsafe_code)]

use clap::Parser;
use weir::cli::ScheduleCli;

fn main() {
    let cli = ScheduleCli::parse();
    weir::plumbing::main("weir-schedule", || {
        weir::schedule::run(&cli.schedule, &cli.command, cli.run_now)
    });
}
