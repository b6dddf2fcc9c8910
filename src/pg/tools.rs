//! Running PostgreSQL's own client tools (`pg_dump`, `pg_dumpall`, `pg_restore`): finding them,
//! checking their versions against the server, passing the resolved connection through the
//! environment, and turning a failure into one line that names the tool and its message.

use crate::pg::conn::ConnParams;
use anyhow::{Context, Result, anyhow, bail};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Where a tool lives: `WEIR_PG_BINDIR` if set, else the `PATH`.
pub fn tool(name: &str) -> PathBuf {
    match std::env::var_os("WEIR_PG_BINDIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(name),
    }
}

/// The major and full version a tool prints with `--version` (`pg_dump (PostgreSQL) 15.18`).
pub fn version(name: &str) -> Result<(u32, String)> {
    let out = Command::new(tool(name))
        .arg("--version")
        .output()
        .map_err(|e| {
            anyhow!(
                "cannot run {name}: {e}; install the PostgreSQL client tools or set WEIR_PG_BINDIR"
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .ok_or_else(|| anyhow!("cannot tell the version of {name} from {text:?}"))?
        .to_string();
    let major = v
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot tell the version of {name} from {text:?}"))?;
    Ok((major, v))
}

/// Refuses a tool older than the server: `pg_dump` cannot dump a newer server correctly.
pub fn check_not_older(name: &str, server_num: u32, server_version: &str) -> Result<String> {
    let (major, full) = version(name)?;
    let server_major = server_num / 10000;
    if major < server_major {
        bail!(
            "{name} {full} is older than the server ({server_version}): install {name} {server_major} or newer, or point WEIR_PG_BINDIR at it"
        );
    }
    Ok(full)
}

/// A running tool whose stderr is collected for the error message.
pub struct Running {
    name: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    cleanup: u64,
}

/// Starts `name args` connected as `params`, with stdout piped when `capture_stdout`.
pub fn spawn(
    name: &str,
    args: &[String],
    params: &ConnParams,
    stdin: Stdio,
    capture_stdout: bool,
) -> Result<Running> {
    let mut cmd = Command::new(tool(name));
    cmd.args(args)
        .stdin(stdin)
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    params.apply_to(&mut cmd);
    let mut child = cmd.spawn().with_context(|| {
        format!("cannot run {name}; install the PostgreSQL client tools or set WEIR_PG_BINDIR")
    })?;
    let mut err = child.stderr.take().expect("piped");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        *sink.lock().unwrap() = buf;
    });
    let pid = child.id() as i32;
    // On SIGINT/SIGTERM the child is told to stop too, so no dump keeps running unseen.
    let cleanup = crate::plumbing::signals::on_cleanup(move || {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    });
    Ok(Running {
        name: name.into(),
        child,
        stderr,
        reader: Some(reader),
        cleanup,
    })
}

impl Running {
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the tool; a non-zero exit becomes an error carrying its last message line.
    pub fn wait(mut self) -> Result<()> {
        let status = self.child.wait()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        crate::plumbing::signals::forget(self.cleanup);
        let err = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        if !status.success() {
            let tail = error_summary(&err);
            bail!("{} failed ({status}): {}", self.name, tail);
        }
        Ok(())
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::plumbing::signals::forget(self.cleanup);
    }
}

/// The useful part of a PostgreSQL tool's stderr: its first `error:` line, and the first line
/// of the statement it names (`Command was: ...`), else its last lines.
fn error_summary(err: &str) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(i) = lines.iter().position(|l| l.contains("error:")) {
        let mut s = lines[i].trim().to_string();
        if let Some(cmd) = lines[i + 1..]
            .iter()
            .find(|l| l.starts_with("Command was:"))
        {
            s.push_str("; ");
            s.push_str(cmd.trim());
        }
        return s;
    }
    let n = lines.len();
    lines[n.saturating_sub(3)..].join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_summary_picks_the_error_and_its_statement() {
        let err = "pg_restore: while PROCESSING TOC:\npg_restore: error: could not execute query: ERROR:  server \"x\" does not exist\nCommand was: CREATE FOREIGN TABLE t (\n    a integer\n)\nSERVER x;\n";
        assert_eq!(
            super::error_summary(err),
            "pg_restore: error: could not execute query: ERROR:  server \"x\" does not exist; Command was: CREATE FOREIGN TABLE t ("
        );
    }
}
