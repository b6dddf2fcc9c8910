//! Standard input and output (with `-`), files written whole or not at all, and the copy loop
//! the byte stages share.

use super::exit::{ExitCode, coded};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// Buffer size for stage input and output. Large enough that a pipe of 4-8 MiB data chunks does
/// few system calls; small enough to be irrelevant to the memory budget.
pub const IO_BUFFER: usize = 1 << 20;

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

/// Reads until `buf` is full or the input ends, retrying interrupted reads; how much was read.
pub fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `buf.len()` bytes of `f` from `at`, or fewer at the end of the file; how many.
pub fn read_full_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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
                // Only a regular file can be synced: fsync of /dev/null or a FIFO is EINVAL.
                let sync = match f.metadata()?.is_file() {
                    true => Some(f.try_clone()?),
                    false => None,
                };
                Ok(Output {
                    inner: BufWriter::with_capacity(IO_BUFFER, Box::new(f)),
                    file: sync,
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
        // A block this big goes out as it is, after what is buffered: copied into the buffer
        // first (BufWriter does so below its capacity) it cost weir-dedup cat 4-5% of its CPU
        // (perf, the bench's archive, blocks of about 1 MiB).
        if buf.len() >= DIRECT {
            self.inner.flush()?;
            return self.inner.get_mut().write_all(buf);
        }
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Blocks of at least this much skip [`Output`]'s buffer.
const DIRECT: usize = 256 << 10;

/// Runs `work` while a second thread calls `tick` every `period` until `work` returns (or
/// panics): writeback that keeps the disk busy while a stream still arrives, so the final
/// sync finds little left to write.
pub fn alongside<R>(
    period: std::time::Duration,
    tick: impl Fn() + Sync,
    work: impl FnOnce() -> R,
) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                tick();
                std::thread::sleep(period);
            }
        });
        // Set on the way out even if `work` panics, or the scope would wait for ever.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&done);
        work()
    })
}
