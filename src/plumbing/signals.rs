//! Signal policy: SIGINT and SIGTERM run the registered cleanup actions (abort uploads, kill
//! child processes, drop a half-created database), then re-raise the signal with its default
//! action so the shell sees a real signal death, as `fd` does. SIGPIPE stays ignored (Rust's
//! default), so a closed pipe surfaces as an `EPIPE` write error and exit code 141.

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
