//! Locking helpers shared by every layer.

use std::sync::{Mutex, MutexGuard};

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
