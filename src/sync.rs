//! Locking helpers shared by every layer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
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

/// A wake-up shared by several logs (a store's topics): bumped by every publish, waited on by
/// readers of many topics at once (`then_live` replays). Costs an atomic add per publish and a
/// futex wake only while someone waits.
#[derive(Debug, Default)]
pub struct AppendSignal {
    generation: AtomicU64,
    waiters: AtomicUsize,
    m: Mutex<()>,
    cv: Condvar,
    /// Tasks waiting (async): id -> waker. `async_waiters` mirrors its length so `notify`
    /// takes the lock only when someone waits.
    wakers: Mutex<std::collections::HashMap<u64, std::task::Waker>>,
    async_waiters: AtomicUsize,
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    next_waker_id: AtomicU64,
}

#[cfg_attr(not(feature = "store"), allow(dead_code))] // waited on by the store's consumers and replays
impl AppendSignal {
    /// The current generation; pass it to `wait_past`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Wakes everyone waiting (an append, or a queue's nack).
    pub(crate) fn notify(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.m);
            self.cv.notify_all();
        }
        if self.async_waiters.load(Ordering::SeqCst) > 0 {
            let wakers: Vec<_> = {
                let mut w = lock(&self.wakers);
                self.async_waiters.store(0, Ordering::SeqCst);
                w.drain().map(|(_, w)| w).collect()
            };
            for w in wakers {
                w.wake();
            }
        }
    }

    /// Registers `waker` under `id` (a fresh id when `None`) to be woken by the next notify;
    /// returns the id and whether the generation already moved past `generation` (then the
    /// caller must not wait).
    #[cfg(feature = "tokio")]
    pub(crate) fn register(&self, id: Option<u64>, generation: u64, waker: &std::task::Waker) -> (u64, bool) {
        let id = id.unwrap_or_else(|| self.next_waker_id.fetch_add(1, Ordering::Relaxed));
        {
            let mut w = lock(&self.wakers);
            w.insert(id, waker.clone());
            self.async_waiters.store(w.len(), Ordering::SeqCst);
        }
        // Pairs with `notify`: either it sees our waker, or we see its new generation.
        (id, self.generation.load(Ordering::SeqCst) != generation)
    }

    /// Forgets a registered waker (a dropped future).
    #[cfg(feature = "tokio")]
    pub(crate) fn unregister(&self, id: u64) {
        let mut w = lock(&self.wakers);
        w.remove(&id);
        self.async_waiters.store(w.len(), Ordering::SeqCst);
    }

    /// Blocks until any log published after `generation` was read, or `timeout` passes.
    pub(crate) fn wait_past(&self, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.m);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let woke = loop {
            if self.generation.load(Ordering::SeqCst) != generation {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        woke
    }
}
