//! Locking helpers shared by every layer.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Locks `m`, taking the data even if a thread panicked while holding it: evlog's shared state
/// stays consistent across a panic (every critical section either completes or changes nothing
/// that the next holder relies on), and a poisoned mutex must not turn into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Group commit: many callers each need "a flush that began after my write"; one of them (the
/// leader) runs the flush for all who wrote before it began, the others wait for it instead of
/// starting their own. Used by the log's durable appends and by the consumer database's durable
/// commits.
///
/// Invariant: a caller returns `Ok` only once `covered()` holds, and `covered()` may only become
/// true through a flush that began after the caller's write (the callers' closures capture the
/// mark before flushing and publish it after).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// A leader is flushing now.
    flushing: Mutex<bool>,
    done: std::sync::Condvar,
}

impl GroupCommit {
    /// Returns once `covered()` holds. `check()` runs before every look (a poisoned log or
    /// database stops everyone); when nothing covers the caller and no flush runs, the caller
    /// runs `flush()` (without holding the lock) and then looks again; while another caller
    /// flushes, it waits for that flush to end.
    pub(crate) fn wait_until<E>(
        &self,
        covered: impl Fn() -> bool,
        mut flush: impl FnMut() -> Result<(), E>,
        check: impl Fn() -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            check()?;
            if covered() {
                return Ok(());
            }
            let mut flushing = lock(&self.flushing);
            if covered() {
                return Ok(());
            }
            if *flushing {
                // Someone flushes; it may not cover our write, so look again after it.
                drop(self.done.wait(flushing).unwrap_or_else(|e| e.into_inner()));
                continue;
            }
            *flushing = true;
            drop(flushing);
            let result = flush();
            *lock(&self.flushing) = false;
            self.done.notify_all();
            result?;
        }
    }

    /// Wakes every waiter so it looks again (after poisoning, say).
    pub(crate) fn wake_all(&self) {
        let _flushing = lock(&self.flushing);
        self.done.notify_all();
    }
}

/// Longest a group-commit leader waits for others to join its flush.
const GATHER_MAX: Duration = Duration::from_millis(2);

/// A group-commit leader's gather, before its flush: while fewer writes wait (`waiting()`) than
/// are expected, yield so they join this flush instead of waiting a whole flush for the next.
/// Expected: the callers inside an operation that will flush (`active()`), and while any is, at
/// least as many as the last flush covered (`last_round`): the callers it released are about to
/// write again, and one caught between two operations (out of the last, not yet in the next)
/// must not end the wait. Bounded by half of the last flush's time (`last_flush_nanos`) and
/// `GATHER_MAX`; a lone caller never waits, nor does a leader when no operation is under way.
/// Yielding, not sleeping: on a small VM a leader that blocks lets both vCPUs halt, and the
/// flush that follows completes slower (measured; see docs/benchmarks.md).
pub(crate) fn gather(last_flush_nanos: u64, last_round: u64, waiting: impl Fn() -> u64, active: impl Fn() -> u64) {
    let budget = Duration::from_nanos(last_flush_nanos / 2).min(GATHER_MAX);
    let start = Instant::now();
    loop {
        let active = active();
        let expected = if active == 0 { 0 } else { active.max(last_round) };
        if waiting() >= expected || start.elapsed() >= budget {
            return;
        }
        std::thread::yield_now();
    }
}
