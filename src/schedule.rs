//! `weir-schedule`: runs a command on a cron schedule, for containers that have no cron.
//!
//! One run at a time: a run that outlasts its next slot makes that slot be skipped, never
//! doubled. A failed run is logged and the schedule goes on, so one bad night does not stop
//! the backups of the nights after it. SIGTERM or SIGINT is passed on to a running command,
//! which gets to clean up (abort its upload) before the scheduler exits.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// When to run: a cron pattern (5 fields, or 6 with seconds first; `@daily` and the other
/// nicknames) evaluated in UTC, or `@every DURATION`.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron(Box<croner::Cron>),
    Every(Duration),
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix("@every") {
            return parse_every(d.trim())
                .map(Schedule::Every)
                .ok_or_else(|| format!("{s}: expected @every followed by e.g. 1h30m, 15m, 90s"));
        }
        s.parse::<croner::Cron>()
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| format!("{s}: not a cron schedule: {e}"))
    }

    /// The first time strictly after `now` that the schedule matches.
    pub fn next_after(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c
                .find_next_occurrence(&now, false)
                .map_err(|e| anyhow::anyhow!("no next run time: {e}")),
            Schedule::Every(d) => Ok(now + chrono::Duration::seconds(d.as_secs() as i64)),
        }
    }
}

/// `1h30m`, `15m`, `90s`, `2h`: Go's duration style, as go-cron's `@every` takes.
fn parse_every(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    for (n, unit) in crate::plumbing::unit_terms(s)? {
        total += n * match unit {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    (total > 0).then(|| Duration::from_secs(total))
}

fn log(msg: &str) {
    eprintln!(
        "{} weir-schedule: {msg}",
        Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
}

/// The running command, for the signal handler: its process group, and whether it ended.
#[derive(Clone, Default)]
struct Running {
    pid: Arc<AtomicI32>,
    done: Arc<AtomicBool>,
}

impl Running {
    /// On a signal, plumbing's handler runs this: pass the signal on to a running command and
    /// give it a minute to clean up, then let the scheduler exit.
    fn forward_signals(&self) {
        let r = self.clone();
        r.done.store(true, Ordering::SeqCst);
        crate::plumbing::signals::on_cleanup(move || {
            let p = r.pid.load(Ordering::SeqCst);
            if p <= 0 || r.done.load(Ordering::SeqCst) {
                return;
            }
            // The whole group: a backup is a pipeline, and every stage must hear it
            // (weir-put aborts its upload), not just the shell that started them.
            if let Some(p) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::TERM);
            }
            for _ in 0..600 {
                if r.done.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    /// Runs the command once, in its own process group so that a signal can reach every
    /// process of the run at once.
    fn run(&self, program: &str, args: &[String]) -> std::io::Result<std::process::ExitStatus> {
        let mut child = Command::new(program).args(args).process_group(0).spawn()?;
        self.done.store(false, Ordering::SeqCst);
        self.pid.store(child.id() as i32, Ordering::SeqCst);
        let status = child.wait();
        self.done.store(true, Ordering::SeqCst);
        status
    }
}

/// Runs `command` at every time `schedule` matches, until SIGTERM or SIGINT; with `run_now`,
/// once at start as well.
pub fn run(schedule: &Schedule, command: &[String], run_now: bool) -> Result<()> {
    let (program, args) = command
        .split_first()
        .context("no command to run (weir-schedule SCHEDULE -- COMMAND [ARGS...])")?;
    let running = Running::default();
    running.forward_signals();
    let mut due = if run_now {
        Utc::now()
    } else {
        schedule.next_after(Utc::now())?
    };
    let (mut runs, mut failures) = (0u64, 0u64);
    log(&format!(
        "first run at {}",
        due.format("%Y-%m-%dT%H:%M:%SZ")
    ));
    loop {
        // Sleep in short steps: the clock may jump (suspend, NTP), and a signal must not wait.
        while Utc::now() < due {
            let left = (due - Utc::now()).to_std().unwrap_or_default();
            std::thread::sleep(left.min(Duration::from_millis(500)));
        }
        runs += 1;
        let started = std::time::Instant::now();
        log(&format!("run {runs}: starting {program}"));
        let status = running.run(program, args);
        let secs = started.elapsed().as_secs_f64();
        match status {
            Ok(s) if s.success() => log(&format!("run {runs}: succeeded in {secs:.1} s")),
            Ok(s) => {
                failures += 1;
                log(&format!(
                    "run {runs}: FAILED ({}) after {secs:.1} s; {failures} of {runs} runs failed; the schedule goes on",
                    describe(s)
                ));
            }
            Err(e) => {
                failures += 1;
                log(&format!(
                    "run {runs}: FAILED: cannot run {program}: {e}; the schedule goes on"
                ));
            }
        }
        if crate::plumbing::signals::interrupted() {
            return Ok(());
        }
        due = next_due(schedule, due, runs)?;
    }
}

/// The next time to run, saying so, and saying which slots a long run made it skip.
fn next_due(schedule: &Schedule, due: DateTime<Utc>, runs: u64) -> Result<DateTime<Utc>> {
    let next = schedule.next_after(Utc::now())?;
    let skipped = skipped_slots(schedule, due, next)?;
    if skipped > 0 {
        log(&format!(
            "run {runs} outlasted {skipped} scheduled time(s); they were skipped"
        ));
    }
    log(&format!(
        "next run at {}",
        next.format("%Y-%m-%dT%H:%M:%SZ")
    ));
    Ok(next)
}

/// How many slots fell between the run that started at `started` and the next one.
fn skipped_slots(s: &Schedule, started: DateTime<Utc>, next: DateTime<Utc>) -> Result<u32> {
    let mut n = 0;
    let mut t = s.next_after(started)?;
    while t < next && n < 1000 {
        n += 1;
        t = s.next_after(t)?;
    }
    Ok(n)
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::catalog::parse_time(s).unwrap()
    }

    #[test]
    fn cron_patterns() {
        let s = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-22T03:00:00Z")).unwrap(),
            at("2026-11-23T03:00:00Z")
        );
        let s = Schedule::parse("@daily").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-22T10:00:00Z")).unwrap(),
            at("2026-11-23T00:00:00Z")
        );
        // Six fields: seconds first, as go-cron (postgres-backup-s3) reads them.
        let s = Schedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-22T10:00:01Z")).unwrap(),
            at("2026-11-22T10:00:05Z")
        );
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("every day").is_err());
    }

    #[test]
    fn every() {
        let s = Schedule::parse("@every 1h30m").unwrap();
        assert_eq!(
            s.next_after(at("2026-11-22T10:00:00Z")).unwrap(),
            at("2026-11-22T11:30:00Z")
        );
        assert!(Schedule::parse("@every").is_err());
        assert!(Schedule::parse("@every 5x").is_err());
    }

    #[test]
    fn skipped() {
        let s = Schedule::parse("0 * * * *").unwrap();
        // A run that started at 10:00 and ended at 12:30 skipped 11:00 and 12:00.
        let next = s.next_after(at("2026-11-22T12:30:00Z")).unwrap();
        assert_eq!(
            skipped_slots(&s, at("2026-11-22T10:00:00Z"), next).unwrap(),
            2
        );
    }
}
