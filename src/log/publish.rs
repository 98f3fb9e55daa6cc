//! The view readers share: which segments exist, the active one, and how far into it records
//! are published; the waiters woken by a publication.
//!
//! Invariants:
//! - Readers see a record only once it is published: after its write in `Os`/`Interval` mode,
//!   after its fsync in `Always` mode; so a reader never sees a record that a power cut could
//!   take back under `Always`, and never a partial frame or a partial atomic batch.
//! - Publishing an append takes no lock: two atomics, the end stored before the offset.

use crate::log::index::IndexBuilder;
use crate::log::lock;
use crate::log::options::Options;
use crate::log::segment::{FrameCursor, Source};
use crate::storage::{PublishedMap, StorageFile};
use crate::sync::AppendSignal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The active segment as readers see it.
#[derive(Debug)]
pub(crate) struct Active {
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub index: Mutex<IndexBuilder>,
    /// For a writable log on real files: the segment mapped read-only, which its in-process
    /// readers read below the published end instead of calling `pread`.
    pub published_map: Option<PublishedMap>,
    /// Smallest and largest timestamp of the frames the writer appended without taking
    /// `index`'s lock (they join the open granule later, see `PendingIndex` in `writer.rs`),
    /// stored before those frames are published. `i64::MAX` / `i64::MIN` while there are none.
    pub unindexed_ts_min: AtomicI64,
    pub unindexed_ts_max: AtomicI64,
}

impl Active {
    /// The active segment of a log: mapped for in-process readers when `writable` and the
    /// storage offers it (a read-only log's file may be truncated by the writer's recovery, so
    /// it keeps using `pread`).
    pub fn new(
        base: u64,
        path: PathBuf,
        file: Arc<dyn StorageFile>,
        index: IndexBuilder,
        opts: &Options,
        writable: bool,
    ) -> Self {
        let published_map = if writable {
            file.map_published(opts.segment_bytes_max, crate::storage::INTERNAL).ok().flatten()
        } else {
            None
        };
        Active {
            base,
            path,
            file,
            index: Mutex::new(index),
            published_map,
            unindexed_ts_min: AtomicI64::new(i64::MAX),
            unindexed_ts_max: AtomicI64::new(i64::MIN),
        }
    }

    /// Smallest and largest timestamp of the published frames (and maybe a few later ones):
    /// the index's range widened by the frames not in it yet.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let indexed = lock(&self.index).as_ref().time_range();
        let (lo, hi) = (self.unindexed_ts_min.load(Ordering::Acquire), self.unindexed_ts_max.load(Ordering::Acquire));
        match indexed {
            _ if lo > hi => indexed,
            None => Some((lo, hi)),
            Some((a, b)) => Some((a.min(lo), b.max(hi))),
        }
    }

    /// Where to start looking for the first frame at or after `ts`: the first granule whose
    /// largest timestamp reaches it, else the open (last) granule, whose frames not in the
    /// index yet may.
    pub fn granule_reaching(&self, ts: i64) -> Option<(u64, u64)> {
        let ix = lock(&self.index);
        let ix = ix.as_ref();
        ix.first_granule_reaching(ts).or_else(|| ix.last_granule())
    }

    /// A cursor over this segment's frames from `pos` up to `end` (the published end).
    pub fn cursor(&self, pos: u64, end: u64, chunk_bytes: usize) -> FrameCursor {
        let source = Source::File(self.file.clone(), self.published_map.clone());
        FrameCursor::new(source, self.path.clone(), pos, end, chunk_bytes)
    }
}

/// Which segments readers may see. How far into the active one they may read is not here but in
/// two atomics of `Publication`, so that publishing an append takes
/// no lock: read them with `Publication::visible` while holding the view.
#[derive(Debug)]
pub(crate) struct View {
    /// Base offsets of all segments; the last is the active one.
    pub bases: Vec<u64>,
    pub active: Arc<Active>,
}
/// What readers may read, and the wake-ups of those waiting for more: the view of the segments,
/// how far into the active one records are published, and the waiters. Written only here:
/// by the writer's publishing calls, rolls and refreshes through the methods below.
#[derive(Debug)]
pub(crate) struct Publication {
    view: RwLock<View>,
    /// Offset after the last published record (what readers may read up to). Stored after
    /// `end`, so a reader that loads it first and then the end finds every record below it
    /// inside the end.
    next: AtomicU64,
    /// Byte end of the last published record in the active segment.
    end: AtomicU64,
    /// Threads blocked in `wait_for`; publishing skips the wake-up (a futex syscall) when zero.
    waiters: AtomicUsize,
    appended: Mutex<()>,
    appended_cv: Condvar,
    /// Told of every publication (a store's consumers wait on it across topics).
    signal: Option<Arc<AppendSignal>>,
}

impl Publication {
    pub fn new(view: View, next: u64, end: u64, signal: Option<Arc<AppendSignal>>) -> Self {
        Publication {
            view: RwLock::new(view),
            next: AtomicU64::new(next),
            end: AtomicU64::new(end),
            waiters: AtomicUsize::new(0),
            appended: Mutex::new(()),
            appended_cv: Condvar::new(),
            signal,
        }
    }

    /// The offset after the last published record.
    #[inline]
    pub fn next_offset(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// `(published, published_end)`: how far readers may read. Call it while holding the view,
    /// so that no roll moves both to a new segment in between.
    pub fn visible(&self) -> (u64, u64) {
        let next = self.next.load(Ordering::Acquire);
        (next, self.end.load(Ordering::Acquire))
    }

    /// Sets what readers may read, under the view's write lock (a roll, a refresh) or the
    /// writer lock (an append in `Os`/`Interval` mode): the end first, then the offset.
    pub fn set_visible(&self, next_offset: u64, end: u64) {
        self.end.store(end, Ordering::Release);
        self.next.store(next_offset, Ordering::Release);
    }

    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes records up to `next_offset` ending at byte `end` of `active`, if that is news
    /// and `active` is still the active segment (a group commit leader that synced before a
    /// roll must not publish into the new segment): the view's read lock keeps rolls out while
    /// it checks and stores.
    pub fn publish(&self, active: &Arc<Active>, next_offset: u64, end: u64) {
        {
            let v = self.view();
            if !Arc::ptr_eq(&v.active, active) || next_offset <= self.next.load(Ordering::Acquire) {
                return;
            }
            self.end.fetch_max(end, Ordering::AcqRel);
            self.next.fetch_max(next_offset, Ordering::AcqRel);
        }
        self.wake_waiters();
    }

    /// Publishes what the holder of the writer lock just wrote (`Os`/`Interval` appends): no
    /// roll can happen meanwhile (rolls take the writer lock), and nothing publishes further, so
    /// two plain stores do, no view lock.
    #[inline]
    pub fn publish_written(&self, next_offset: u64, end: u64) {
        self.end.store(end, Ordering::Release);
        // A SeqCst swap, not a store and a fence: the locked instruction is the full barrier
        // that the waiter handshake needs (see `wake_waiters`), at half the cost of a fence.
        self.next.swap(next_offset, Ordering::SeqCst);
        self.notify_waiters();
    }

    /// Wakes `wait_for` callers. Pairs with the fence in `wait_for`: either the waiter sees the
    /// new view, or this sees the waiter's count and wakes it under the mutex it waits with.
    pub fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        self.notify_waiters();
    }

    /// The second half of `wake_waiters`, for a caller whose last write to `next` was
    /// itself SeqCst (a full barrier already).
    #[inline]
    fn notify_waiters(&self) {
        if let Some(s) = &self.signal {
            s.notify();
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake_sleepers();
        }
    }

    #[inline(never)]
    fn wake_sleepers(&self) {
        let _g = lock(&self.appended);
        self.appended_cv.notify_all();
    }

    /// Blocks until a record at `offset` is published, `deadline` passes or `stop` says so (a
    /// poisoned log); returns whether it is published.
    pub fn wait_for(&self, offset: u64, deadline: Instant, stop: impl Fn() -> bool) -> bool {
        let mut g = lock(&self.appended);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let ready = loop {
            if self.next.load(Ordering::Acquire) > offset {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || stop() {
                break false;
            }
            g = self.appended_cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        ready
    }

    /// Busy-waits up to `spin` for a record at `offset` (or until `stop` says so); whether it
    /// was published meanwhile.
    pub fn spin_for(&self, offset: u64, spin: Duration, stop: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < spin {
            for _ in 0..64 {
                if self.next.load(Ordering::Acquire) > offset {
                    return true;
                }
                std::hint::spin_loop();
            }
            if stop() {
                return false;
            }
        }
        false
    }
}
