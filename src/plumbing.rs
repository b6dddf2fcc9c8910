//! The plumbing every weir binary shares: standard input and output (with `-`), large buffers,
//! refusing to write binary data to a terminal, the exit-code enum, the one place errors are
//! printed, broken-pipe and signal policy, and progress lines on stderr.
//!
//! No binary touches `std::io::stdout()` directly: it asks this module for an [`Output`] and
//! calls [`Output::finish`] at the end, so a short write or a closed pipe is always an error.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffer size for stage input and output. Large enough that a pipe of 4-8 MiB data chunks does
/// few system calls; small enough to be irrelevant to the memory budget.
pub const IO_BUFFER: usize = 1 << 20;

/// The documented exit codes of every weir binary (each man page's EXIT STATUS section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    /// Anything went wrong that is not one of the more specific cases below.
    Failure = 1,
    /// The command line was wrong (clap uses 2 as well).
    Usage = 2,
    /// The input is not a weir archive, or it is truncated, corrupt or incomplete.
    BadArchive = 3,
    /// The object asked for does not exist (weir-get, weir-rm). A WAL `restore_command` must
    /// tell this apart from a failed fetch.
    NotFound = 4,
    /// The object already exists and `--if-none-match` forbade replacing it (weir-put).
    Exists = 5,
    /// SIGINT or SIGTERM arrived; cleanup ran and the signal was re-raised, so a shell normally
    /// sees 128+signal itself. 130 is what is returned if re-raising did not end the process.
    Interrupted = 130,
    /// The reader of our standard output went away before the stream was complete.
    BrokenPipe = 141,
}

/// An error that carries its own exit code. Attach it with [`coded`]; everything else exits 1.
#[derive(Debug)]
pub struct Coded {
    pub code: ExitCode,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Builds an error with a specific exit code.
pub fn coded(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// Decides the exit code of an error: the first [`Coded`] in its chain wins, a broken pipe
/// anywhere in the chain is 141, and everything else is 1.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::BrokenPipe;
            }
        }
    }
    ExitCode::Failure
}

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

/// Grows a pipe's buffer from Linux's 64 KiB to 1 MiB (the default unprivileged limit), so
/// that the stages of a pipeline hand each other blocks of [`IO_BUFFER`] with one wakeup
/// instead of sixteen. Anything but a pipe, and any refusal, leaves it as it is.
fn widen_pipe(fd: std::os::fd::BorrowedFd) {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::pipe::fcntl_setpipe_size(fd, IO_BUFFER);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Opens standard input (`-` or `None`) or a file for reading, buffered.
pub fn open_input(path: Option<&str>) -> anyhow::Result<Box<dyn Read + Send>> {
    match path {
        None | Some("-") => {
            widen_pipe(io::stdin().as_fd());
            Ok(Box::new(BufReader::with_capacity(IO_BUFFER, io::stdin())))
        }
        Some(p) => {
            let f = File::open(p).map_err(|e| anyhow::anyhow!("cannot open {p}: {e}"))?;
            Ok(Box::new(BufReader::with_capacity(IO_BUFFER, f)))
        }
    }
}

/// Copies `input` to `out` in [`IO_BUFFER`] blocks, retrying interrupted reads; `progress`
/// sees the running byte count after each block. Returns the bytes copied.
pub fn copy(
    input: &mut dyn Read,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<u64> {
    use anyhow::Context;
    let mut buf = vec![0u8; IO_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the input"),
        };
        out.write_all(&buf[..n]).context("writing the output")?;
        total += n as u64;
        progress(total);
    }
}

/// Splits a duration such as `1h30m` or `2w3d` into its terms, `[(1, 'h'), (30, 'm')]`: each a
/// number and one unit letter. None if the text is empty, a number lacks its letter, or a
/// number does not fit. The callers give the letters their meaning.
pub fn unit_terms(s: &str) -> Option<Vec<(u64, char)>> {
    let mut terms = Vec::new();
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            terms.push((num.parse().ok()?, c));
            num.clear();
        }
    }
    (num.is_empty() && !terms.is_empty()).then_some(terms)
}

/// Writes a small file whole or not at all: a temporary file beside it, then a rename, so a
/// reader (a Prometheus textfile collector, a script) never sees half of it.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let tmp = path.with_file_name(format!(
        ".{}.tmp.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `value` as one line of JSON to `path`, atomically (the `--stats` files).
pub fn write_json_line(path: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec(value)?;
    json.push(b'\n');
    write_atomically(std::path::Path::new(path), &json)
}

/// A buffered output stream: standard output or a file. Must be ended with [`Output::finish`],
/// which flushes and, for a file, syncs it to disk; dropping it without `finish` loses the tail.
pub struct Output {
    inner: BufWriter<Box<dyn Write + Send>>,
    file: Option<File>,
}

impl Output {
    /// Opens `-`/`None` (standard output) or a file. `binary` refuses a terminal as standard
    /// output, as `zstd` and `age` do, since the bytes would only garble it.
    pub fn open(path: Option<&str>, binary: bool) -> anyhow::Result<Output> {
        match path {
            None | Some("-") => {
                if binary && io::stdout().is_terminal() {
                    return Err(coded(
                        ExitCode::Usage,
                        "refusing to write binary data to a terminal; redirect standard output or use -f FILE",
                    ));
                }
                // The descriptor itself, not `io::stdout()`: that one is line-buffered, and
                // would look for the last newline in every block and write around it.
                let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
                widen_pipe(stdout.as_fd());
                Ok(Output {
                    inner: BufWriter::with_capacity(IO_BUFFER, Box::new(stdout)),
                    file: None,
                })
            }
            Some(p) => {
                let f = File::create(Path::new(p))
                    .map_err(|e| anyhow::anyhow!("cannot create {p}: {e}"))?;
                let sync = f.try_clone()?;
                Ok(Output {
                    inner: BufWriter::with_capacity(IO_BUFFER, Box::new(f)),
                    file: Some(sync),
                })
            }
        }
    }

    /// Flushes every buffered byte and syncs a file output. The stream is only complete once
    /// this returned `Ok`.
    pub fn finish(mut self) -> io::Result<()> {
        self.inner.flush()?;
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Signal policy: SIGINT and SIGTERM run the registered cleanup actions (abort uploads, kill
/// child processes, drop a half-created database), then re-raise the signal with its default
/// action so the shell sees a real signal death, as `fd` does. SIGPIPE stays ignored (Rust's
/// default), so a closed pipe surfaces as an `EPIPE` write error and exit code 141.
pub mod signals {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    type Action = Box<dyn FnOnce() + Send>;
    static CLEANUP: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
    static NEXT_ID: Mutex<u64> = Mutex::new(0);
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Registers a cleanup action; returns a handle to remove it once it is no longer needed.
    pub fn on_cleanup(action: impl FnOnce() + Send + 'static) -> u64 {
        let mut id = NEXT_ID.lock().unwrap();
        *id += 1;
        CLEANUP.lock().unwrap().push((*id, Box::new(action)));
        *id
    }

    /// Removes a cleanup action (the work it guarded finished cleanly).
    pub fn forget(id: u64) {
        CLEANUP.lock().unwrap().retain(|(i, _)| *i != id);
    }

    /// True once SIGINT or SIGTERM arrived; long loops check it to stop early.
    pub fn interrupted() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Runs and removes every registered cleanup action, newest first.
    pub fn run_cleanup() {
        let actions: Vec<_> = std::mem::take(&mut *CLEANUP.lock().unwrap());
        for (_, action) in actions.into_iter().rev() {
            action();
        }
    }

    pub(super) fn install() {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                let what = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("{}: interrupted by {what}; cleaning up", super::program());
                run_cleanup();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(super::ExitCode::Interrupted as i32);
            }
        });
    }
}

/// Progress on stderr: a self-rewriting line with percent and ETA when stderr is a terminal,
/// plain periodic lines when asked for with `--progress` (for logs), nothing otherwise.
pub struct Progress {
    mode: ProgressMode,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    drawn: bool,
    rows: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProgressMode {
    Off,
    Terminal,
    Lines,
}

impl Progress {
    /// `plain` asks for periodic lines even when stderr is no terminal; `quiet` silences all.
    pub fn new(total: Option<u64>, plain: bool, quiet: bool) -> Progress {
        let mode = if quiet {
            ProgressMode::Off
        } else if plain {
            ProgressMode::Lines
        } else if io::stderr().is_terminal() {
            ProgressMode::Terminal
        } else {
            ProgressMode::Off
        };
        let now = Instant::now();
        // Log lines start at once (a log shows the job began), then come every few seconds.
        let last = match mode {
            ProgressMode::Lines => now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
            _ => now,
        };
        Progress {
            mode,
            total,
            started: now,
            last,
            drawn: false,
            rows: true,
        }
    }

    /// Progress of a byte stream, where rows mean nothing: lines show bytes only.
    pub fn bytes_only(mut self) -> Progress {
        self.rows = false;
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reports `done` bytes and `rows` rows so far; draws only when enough time has passed.
    pub fn update(&mut self, done: u64, rows: u64) {
        let every = match self.mode {
            ProgressMode::Off => return,
            ProgressMode::Terminal => Duration::from_millis(250),
            ProgressMode::Lines => Duration::from_secs(5),
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let rows = if self.rows {
            format!("{rows} rows, ")
        } else {
            String::new()
        };
        let mut line = format!(
            "{} {rows}{} ({}/s)",
            program(),
            human_bytes(done),
            human_bytes(rate as u64)
        );
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let pct = (done as f64 / total as f64 * 100.0).min(99.0);
            let eta = if rate > 0.0 && done < total {
                (total - done) as f64 / rate
            } else {
                0.0
            };
            line.push_str(&format!(", ~{pct:.0}%, ETA {}", human_secs(eta)));
        }
        let mut err = io::stderr().lock();
        if self.mode == ProgressMode::Terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Clears a terminal progress line, so the summary or an error starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `1.2 GB` style sizes (decimal units, as `pg_size_pretty` does not and `zstd -v` does).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
