//! An ordered parallel map over a stream: items are read one at a time on the calling thread,
//! worked on by a few threads, and handed on in the order they were read, with a bound on how
//! many are held at once. weir-compress's frames (both ways) go through it; anything that cuts a
//! stream into independent pieces can.

use anyhow::{Result, anyhow};
use std::collections::BTreeMap;

/// Runs `work` over the items `next` yields (until it yields `None`) on `workers` threads,
/// each with a state of its own from `init` (a compression context, a buffer), and calls
/// `sink` with the results in the items' order. At most `2 * workers` items are read and not
/// yet handed to `sink`, so memory stays bounded however long the stream is. The first error
/// in stream order, from `next`, a worker or `sink`, stops everything and is returned; the
/// results before it have reached `sink`.
pub fn ordered<I, O, S>(
    workers: usize,
    mut next: impl FnMut() -> Result<Option<I>>,
    init: impl Fn() -> Result<S> + Sync,
    work: impl Fn(&mut S, I) -> Result<O> + Sync,
    mut sink: impl FnMut(O) -> Result<()>,
) -> Result<()>
where
    I: Send,
    O: Send,
{
    let workers = workers.max(1);
    let (job_tx, job_rx) = crossbeam_channel::bounded::<(u64, I)>(workers);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(u64, Result<O>)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (job_rx, done_tx, init, work) = (job_rx.clone(), done_tx.clone(), &init, &work);
            s.spawn(move || {
                let mut state = match init() {
                    Ok(state) => state,
                    Err(e) => {
                        let _ = done_tx.send((u64::MAX, Err(e)));
                        return;
                    }
                };
                for (i, item) in job_rx {
                    // A closed channel means the caller stopped on an error: so do we.
                    if done_tx.send((i, work(&mut state, item))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Dropping the job sender on return (an error included) lets the workers finish.
        drive(workers * 2, job_tx, &done_rx, &mut next, &mut sink)
    })
}

/// The calling thread's side of [`ordered`]: keeps up to `cap` items between reading and
/// `sink`, sends them to the workers, and puts the results back in order.
fn drive<I, O>(
    cap: usize,
    jobs: crossbeam_channel::Sender<(u64, I)>,
    done: &crossbeam_channel::Receiver<(u64, Result<O>)>,
    next: &mut impl FnMut() -> Result<Option<I>>,
    sink: &mut impl FnMut(O) -> Result<()>,
) -> Result<()> {
    let (mut read, mut due, mut ended) = (0u64, 0u64, false);
    let mut early = BTreeMap::new();
    loop {
        while !ended && read - due < cap as u64 {
            match next()? {
                Some(item) => {
                    jobs.send((read, item))
                        .map_err(|_| anyhow!("every worker thread stopped"))?;
                    read += 1;
                }
                None => ended = true,
            }
        }
        if due == read {
            return Ok(());
        }
        let (i, out) = done
            .recv()
            .map_err(|_| anyhow!("a worker thread stopped early"))?;
        if i == u64::MAX {
            // A worker could not start (its `init` failed).
            return out.map(|_| ());
        }
        // Errors too wait their turn: everything before a bad item reaches `sink` first.
        early.insert(i, out);
        while let Some(out) = early.remove(&due) {
            sink(out?)?;
            due += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_and_bounded() {
        let mut n = 0u64;
        let mut seen = Vec::new();
        let held = std::sync::atomic::AtomicI64::new(0);
        let most = std::sync::atomic::AtomicI64::new(0);
        ordered(
            3,
            || {
                n += 1;
                let now = held.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                Ok((n <= 200).then_some(n))
            },
            || Ok(()),
            |_, i| {
                // Later items finish first now and then: order must not depend on timing.
                std::thread::sleep(std::time::Duration::from_micros((i % 7) * 50));
                Ok(i * 2)
            },
            |o| {
                held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                seen.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (1..=200).map(|i| i * 2).collect::<Vec<_>>());
        // The read that returned None counts once too.
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 7);
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let mut n = 0u64;
        let mut sunk = 0;
        let r = ordered(
            2,
            || {
                n += 1;
                Ok(Some(n))
            },
            || Ok(()),
            |_, i| {
                if i == 50 {
                    Err(anyhow!("item 50 is bad"))
                } else {
                    Ok(i)
                }
            },
            |_| {
                sunk += 1;
                Ok(())
            },
        );
        assert_eq!(r.unwrap_err().to_string(), "item 50 is bad");
        assert_eq!(sunk, 49);
        assert!(n < 60, "reading went on long after the error: {n}");
    }
}
