//! The plumbing every weir binary shares: standard input and output (with `-`), large buffers,
//! refusing to write binary data to a terminal, the exit-code enum, the one place errors are
//! printed, broken-pipe and signal policy, and progress lines on stderr.
//!
//! No binary touches `std::io::stdout()` directly: it asks this module for an [`Output`] and
//! calls [`Output::finish`] at the end, so a short write or a closed pipe is always an error.

use std::sync::Mutex;

pub mod durable;
mod exit;
mod io;
pub mod metrics;
pub mod parallel;
pub mod pipe;
mod progress;
pub mod signals;
mod time;

pub use exit::{Coded, ExitCode, bad_input, coded, exit_code_of};
pub use io::{
    IO_BUFFER, Output, alongside, copy, open_input, read_full, read_full_at, write_atomically,
    write_json_line,
};
pub use progress::{Progress, human_bytes};
pub use time::{random_bytes, rfc3339, rfc3339_micros, unit_terms, unix_seconds};

/// Runs a binary's `run` function: installs the signal policy, prints any error as one line
/// `name: message: cause: cause` on stderr, and exits with the error's code.
pub fn main(name: &'static str, run: impl FnOnce() -> anyhow::Result<()>) -> ! {
    set_program_name(name);
    signals::install();
    let code = match run() {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            let code = exit_code_of(&err);
            let mut msg = format!("{err:#}");
            if code == ExitCode::BrokenPipe && !msg.contains("pipe") {
                msg.push_str(" (broken pipe: the reader of the output went away)");
            }
            eprintln!("{name}: {}", one_line(&msg));
            signals::run_cleanup();
            code
        }
    };
    std::process::exit(code as i32)
}

/// Collapses a multi-line message (PostgreSQL errors carry DETAIL and HINT lines) into one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

static PROGRAM: Mutex<&str> = Mutex::new("weir");

fn set_program_name(name: &'static str) {
    *PROGRAM.lock().unwrap() = name;
}

/// The running binary's name, for messages printed outside `main`.
pub fn program() -> &'static str {
    *PROGRAM.lock().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn broken_pipe_anywhere_in_the_chain_is_141() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert_eq!(exit_code_of(&e), ExitCode::BrokenPipe);
        let e = coded(ExitCode::BadArchive, "no trailer").context("reading");
        assert_eq!(exit_code_of(&e), ExitCode::BadArchive);
        assert_eq!(exit_code_of(&anyhow::anyhow!("x")), ExitCode::Failure);
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\nDETAIL: b\n\nHINT: c"), "a; DETAIL: b; HINT: c");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
