//! The log: a set of segments in one directory, its readers, and the handle applications use.
//!
//! Invariants:
//! - Readers see a record only once it is published: after its write in `Os`/`Interval` mode,
//!   after its fsync in `Always` mode; so a reader never sees a record that a power cut could
//!   take back under `Always`, and never a partial frame or a partial atomic batch.
//! - Readers of the active (last) segment in another process read it with `pread` (the
//!   writer's recovery may truncate its tail); in the writing process they read its published
//!   part from a map. Sealed segments are mapped for random access only; scans `pread` them.
//!   No writer changes a sealed segment.
//! - Offsets are assigned contiguously: segment `i + 1` starts where segment `i` ended when it
//!   was sealed. Only a compacted sealed segment (header flag) has gaps; only cursors over one
//!   accept them.
//! - Lock order: writer, then view, then cache. The sync state lock is never held while waiting
//!   for any other lock.

pub(crate) mod backup;
pub(crate) mod budget;
pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod compact;
pub(crate) mod compress;
pub(crate) mod compressed;
pub(crate) mod index;
pub(crate) mod keymap;
pub(crate) mod keys;
pub(crate) mod options;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod rewrite;
pub(crate) mod segment;
pub(crate) mod writer;

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::cache::{CacheLimits, Sealed, SegmentCache};
use crate::log::index::IndexBuilder;
use crate::log::options::{Durability, Options};
use crate::log::record::{NewRecord, Record, RecordRef};
use crate::log::recovery::RecoveryReport;
use crate::log::segment::{FrameCursor, RawStep, Source, Step};
use crate::log::writer::Writer;
use crate::storage::{LockGuard, OpenMode, PublishedMap, StorageFile};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
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

/// What one `Log` handle has done since it opened the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Records appended through this handle (offsets gained since open).
    pub appended: u64,
    /// Time since open.
    pub since_open: Duration,
    /// Data fsyncs on the append path (group commit leaders and rolls).
    pub fsyncs: u64,
    /// Mean duration of those fsyncs.
    pub fsync_mean: Duration,
    /// Longest of those fsyncs.
    pub fsync_max: Duration,
    /// Records those fsyncs made durable (each counted once): `synced_records / fsyncs` is the
    /// records per fsync that group commit achieved.
    pub synced_records: u64,
    /// Whether appends currently go through a writable map of the active segment
    /// ([`WritePath::Auto`](crate::WritePath::Auto) where the storage allows) rather than
    /// `pwrite`.
    pub mapped_writes: bool,
}

impl LogStats {
    /// Records made durable per append-path fsync (0 before the first).
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 { 0.0 } else { self.synced_records as f64 / self.fsyncs as f64 }
    }
}

/// Which segments readers may see. How far into the active one they may read is not here but in
/// two atomics of `Shared` (`published`, `published_end`), so that publishing an append takes
/// no lock: read them with `Shared::visible` while holding the view.
#[derive(Debug)]
pub(crate) struct View {
    /// Base offsets of all segments; the last is the active one.
    pub bases: Vec<u64>,
    pub active: Arc<Active>,
}

pub(crate) use crate::sync::lock;

/// Everything a `Log`, its iterators and its flusher thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: Options,
    pub read_only: bool,
    pub view: RwLock<View>,
    pub cache: Mutex<SegmentCache>,
    /// Smallest and largest timestamp per sealed segment, filled lazily.
    pub time_ranges: Mutex<HashMap<u64, Option<(i64, i64)>>>,
    pub writer: Option<Mutex<Writer>>,
    /// Durable appends share fsyncs through it.
    pub group_commit: crate::sync::GroupCommit,
    /// Every offset below this is on stable storage.
    pub synced_offset: AtomicU64,
    pub poisoned: AtomicBool,
    pub poison_cause: Mutex<Option<String>>,
    pub appended: Mutex<()>,
    pub appended_cv: Condvar,
    /// Offset after the last published record (what readers may read up to). Stored after
    /// `published_end`, so a reader that loads it first and then the end finds every record
    /// below it inside the end.
    pub published: AtomicU64,
    /// Byte end of the last published record in the active segment.
    pub published_end: AtomicU64,
    /// Threads blocked in `wait_for`; publishing skips the wake-up (a futex syscall) when zero.
    pub waiters: AtomicUsize,
    pub shutdown: Mutex<bool>,
    pub shutdown_cv: Condvar,
    pub dir_lock: Mutex<Option<Box<dyn LockGuard>>>,
    pub refresh_lock: Mutex<()>,
    pub report: RecoveryReport,
    /// fsyncs of data files on the append path (group commit leaders and rolls).
    pub fsyncs: AtomicU64,
    /// Records those fsyncs made durable.
    pub synced_records: AtomicU64,
    /// Whether the writer currently appends through a writable map.
    pub mapped_writes: AtomicBool,
    /// Threads inside `append` (group commit: how many appends a leader may wait for).
    pub appenders: AtomicUsize,
    /// Duration of the last group commit fsync, in nanoseconds.
    pub last_fsync_nanos: AtomicU64,
    /// `Always` appends written so far (counted under the writer lock), the count the last
    /// group commit covered, and how many appends that one covered: the appenders a leader
    /// expects back (see `lead_sync`).
    pub appends_written: AtomicU64,
    pub appends_synced: AtomicU64,
    pub last_round_appends: AtomicU64,
    /// Sum and maximum of the durations of all data fsyncs counted in `fsyncs`.
    pub fsync_nanos_total: AtomicU64,
    pub fsync_nanos_max: AtomicU64,
    /// `next_offset` when this handle opened the log (appends since = now - this).
    pub opened_next_offset: u64,
    pub opened_at: Instant,
    /// Size at which the active segment rolls: `segment_bytes_max`, or less under a budget.
    pub segment_bytes_limit: AtomicU64,
    /// Signalled (with the writer lock) when segments are removed: appends blocked by a full
    /// budget look again.
    pub space_freed: Condvar,
    /// Sealed segments' key index files, checked and mapped, by base offset (`keys.rs`).
    pub key_indexes: Mutex<HashMap<u64, crate::storage::SharedBytes>>,
    /// Held by whatever rewrites, links or removes sealed segments outside the append path:
    /// one owner at a time (`rewrite.rs`).
    pub rewrite: Mutex<()>,
    /// How many times each sealed segment was swapped for a rewrite (`rewrite.rs`: a swap
    /// replaces only the file its rewrite read).
    pub swaps: Mutex<HashMap<u64, u64>>,
    /// Bumped under the writer lock whenever the set or the content of the sealed segments
    /// changes (a roll, a swap, a removal): a key looked up in the sealed segments outside the
    /// writer lock is still the answer if this did not move (`writer.rs`, `Expect::KeyLast`).
    pub sealed_generation: AtomicU64,
}

impl Shared {
    /// The size of segment `base`'s file.
    pub fn segment_file_bytes(&self, base: u64) -> Result<u64> {
        let path = self.dir.join(format::segment_file_name(base));
        self.opts.storage.open(&path, OpenMode::Read).and_then(|f| f.len()).map_err(|e| Error::io("stat", &path, e))
    }

    /// `(published, published_end)`: how far readers may read. Call it while holding the view,
    /// so that no roll moves both to a new segment in between.
    pub fn visible(&self) -> (u64, u64) {
        let next = self.published.load(Ordering::Acquire);
        (next, self.published_end.load(Ordering::Acquire))
    }

    /// Sets what readers may read, under the view's write lock (a roll, a refresh) or the
    /// writer lock (an append in `Os`/`Interval` mode): the end first, then the offset.
    pub fn set_visible(&self, next_offset: u64, end: u64) {
        self.published_end.store(end, Ordering::Release);
        self.published.store(next_offset, Ordering::Release);
    }

    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sealed(&self, base: u64, end_offset: u64) -> Result<Arc<Sealed>> {
        lock(&self.cache).get(
            self.opts.storage.as_ref(),
            &self.dir,
            base,
            end_offset,
            CacheLimits { segments: self.opts.open_segments_max, bytes: self.opts.mapped_bytes_max },
            !self.read_only,
        )
    }

    /// Positions a cursor on `offset`, or `None` if it is not published. In a sealed segment,
    /// `Access::Scan` reads on with `pread`, `Access::Random` from the segment's map.
    fn locate(&self, offset: u64, access: Access) -> Result<Option<Cur>> {
        let (base, next_base, active, end, visible) = {
            let v = self.view();
            let (visible, active_end) = self.visible();
            let first = v.bases.first().copied().unwrap_or(0);
            if offset < first || offset >= visible {
                return Ok(None);
            }
            // `first <= offset`, so at least one base is <= offset.
            let i = v.bases.partition_point(|&b| b <= offset).saturating_sub(1);
            let base = v.bases.get(i).copied().unwrap_or(first);
            match v.bases.get(i + 1) {
                None => (base, None, Some(v.active.clone()), active_end, visible),
                Some(&end) => (base, Some(end), None, 0, visible),
            }
        };
        let rel = offset - base;
        let mut cur = match (next_base, active) {
            (Some(end_offset), _) => {
                let s = self.sealed(base, end_offset)?;
                let (r, pos) = s.index.as_ref().lookup(rel).unwrap_or((0, SEGMENT_HEADER_LEN as u64));
                let cursor = match access {
                    Access::Random => s.cursor(pos),
                    Access::Scan => s.scan_cursor(pos, self.opts.read_buffer_bytes),
                };
                Cur { end_offset: Some(end_offset), active: None, cursor, next: base + r, readable: end_offset }
            }
            (None, Some(a)) => {
                let (r, pos) = lock(&a.index).as_ref().lookup(rel).unwrap_or((0, SEGMENT_HEADER_LEN as u64));
                let cursor = a.cursor(pos, end, self.opts.read_buffer_bytes);
                Cur { end_offset: None, active: Some(a), cursor, next: base + r, readable: visible }
            }
            (None, None) => return Ok(None),
        };
        cur.skip_to(offset)?;
        Ok(Some(cur))
    }

    /// Steps `cur` until it yields `offset`.
    fn read_in(&self, cur: &mut Cur) -> Result<Option<Record>> {
        match cur.cursor.step(Some(cur.next))? {
            Step::Frame { frame, bytes, .. } => {
                cur.next = frame.offset + 1;
                Ok(Some(Record::from_frame(bytes, &frame)))
            }
            Step::End => Ok(None),
            Step::Bad { position, error } => Err(cur.corruption(position, error)),
        }
    }

    /// Publishes records up to `next_offset` ending at byte `end` of `active`, if that is news
    /// and `active` is still the active segment (a group commit leader that synced before a
    /// roll must not publish into the new segment): the view's read lock keeps rolls out while
    /// it checks and stores.
    pub fn publish(&self, active: &Arc<Active>, next_offset: u64, end: u64) {
        {
            let v = self.view();
            if !Arc::ptr_eq(&v.active, active) || next_offset <= self.published.load(Ordering::Acquire) {
                return;
            }
            self.published_end.fetch_max(end, Ordering::AcqRel);
            self.published.fetch_max(next_offset, Ordering::AcqRel);
        }
        self.wake_waiters();
    }

    /// Publishes what the holder of the writer lock just wrote (`Os`/`Interval` appends): no
    /// roll can happen meanwhile (rolls take the writer lock), and nothing publishes further, so
    /// two plain stores do, no view lock.
    pub fn publish_written(&self, next_offset: u64, end: u64) {
        self.published_end.store(end, Ordering::Release);
        // A SeqCst swap, not a store and a fence: the locked instruction is the full barrier
        // that the waiter handshake needs (see `wake_waiters`), at half the cost of a fence.
        self.published.swap(next_offset, Ordering::SeqCst);
        self.notify_waiters();
    }

    /// Wakes `wait_for` callers. Pairs with the fence in `wait_for`: either the waiter sees the
    /// new view, or this sees the waiter's count and wakes it under the mutex it waits with.
    pub fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        self.notify_waiters();
    }

    /// The second half of `wake_waiters`, for a caller whose last write to `published` was
    /// itself SeqCst (a full barrier already).
    #[inline]
    fn notify_waiters(&self) {
        if let Some(s) = &self.opts.append_signal {
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

    /// Every append looks: inline, with the error built out of line.
    #[inline]
    pub fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) { Err(self.poisoned_error()) } else { Ok(()) }
    }

    #[cold]
    fn poisoned_error(&self) -> Error {
        let cause = lock(&self.poison_cause).clone().unwrap_or_default();
        Error::Poisoned { path: self.dir.clone(), cause }
    }

    /// Marks the log poisoned after a failed write or fsync and wakes every waiter.
    pub fn poison(&self, err: &Error) {
        {
            let mut c = lock(&self.poison_cause);
            if c.is_none() {
                *c = Some(err.to_string());
            }
        }
        self.poisoned.store(true, Ordering::Release);
        self.group_commit.wake_all();
    }

    /// Read-only logs: looks at the directory again for new frames and segments. Returns whether
    /// anything new became visible.
    pub fn refresh(&self) -> Result<bool> {
        let _g = lock(&self.refresh_lock);
        let storage = self.opts.storage.as_ref();
        let names = storage.list_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        let mut bases: Vec<u64> =
            names.iter().filter_map(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX)).collect();
        bases.sort_unstable();
        let (old_bases, active, mut next, mut end) = {
            let v = self.view();
            let (next, end) = self.visible();
            (v.bases.clone(), v.active.clone(), next, end)
        };
        // A newest segment still without a complete header is a roll in progress: not yet there.
        while bases.len() > 1 {
            let last = *bases.last().unwrap_or(&0);
            let path = self.dir.join(format::segment_file_name(last));
            let ok = storage
                .open(&path, OpenMode::Read)
                .ok()
                .is_some_and(|f| crate::log::segment::check_header(f.as_ref(), &path, last).is_ok());
            if ok {
                break;
            }
            bases.pop();
        }
        let Some(&last) = bases.last() else { return Ok(false) };
        let mut active = active;
        if last != active.base {
            let path = self.dir.join(format::segment_file_name(last));
            let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
            let index = IndexBuilder::new(last, self.opts.index_interval_bytes);
            active = Arc::new(Active::new(last, path, file, index, &self.opts, false));
            next = last;
            end = SEGMENT_HEADER_LEN as u64;
            lock(&self.cache).forget_outside(bases.first().copied().unwrap_or(last), last);
        }
        // Scan the active segment from the published end, over complete batches only.
        let len = active.file.len().map_err(|e| Error::io("stat", &active.path, e))?;
        let mut cursor = active.cursor(end, len, self.opts.read_buffer_bytes);
        let scan = {
            let mut ix = lock(&active.index);
            crate::log::segment::scan_batches(&mut cursor, active.base, next, |rel, pos, flen, ts| {
                ix.push(rel, pos, flen, ts)
            })?
        };
        let (new_next, new_end) = (scan.complete_next, scan.complete_pos);
        let changed = bases != old_bases || new_next != next || !Arc::ptr_eq(&active, &self.view().active);
        if changed {
            {
                let mut v = self.view_mut();
                v.bases = bases;
                v.active = active;
                self.set_visible(new_next, new_end);
            }
            self.wake_waiters();
        }
        Ok(changed)
    }

    fn time_range(&self, base: u64, end_offset: u64) -> Result<Option<(i64, i64)>> {
        if let Some(r) = lock(&self.time_ranges).get(&base) {
            return Ok(*r);
        }
        let r = self.sealed(base, end_offset)?.index.as_ref().time_range();
        lock(&self.time_ranges).insert(base, r);
        Ok(r)
    }

    /// The first record at or after `ts` in a segment, scanning from the first granule whose
    /// largest timestamp reaches `ts`.
    fn first_at_or_after(&self, mut cursor: FrameCursor, mut next: u64, ts: i64) -> Result<Option<u64>> {
        loop {
            match cursor.step(Some(next))? {
                Step::Frame { frame, .. } => {
                    if frame.timestamp >= ts {
                        return Ok(Some(frame.offset));
                    }
                    next = frame.offset + 1;
                }
                Step::End => return Ok(None),
                Step::Bad { position, error } => {
                    return Err(Error::corruption(&cursor.path, position, Some(next), error.to_string()));
                }
            }
        }
    }
}

impl Cur {
    /// Steps from the granule start the index gave to `offset` (or the segment's end).
    /// In a compacted segment `offset` may be gone: the cursor then stays on the first record
    /// after it, and `next` says `offset` (every offset below it has been passed).
    fn skip_to(&mut self, offset: u64) -> Result<()> {
        while self.next < offset {
            match self.cursor.step(Some(self.next))? {
                Step::Frame { position, frame, .. } if frame.offset >= offset => {
                    self.cursor.rewind_to(position);
                    self.next = offset;
                }
                Step::Frame { frame, .. } => self.next = frame.offset + 1,
                Step::End => break,
                Step::Bad { position, error } => return Err(self.corruption(position, error)),
            }
        }
        Ok(())
    }

    /// The error for bad bytes at `position`, where offset `self.next` was expected.
    fn corruption(&self, position: u64, error: crate::format::FrameError) -> Error {
        Error::corruption(&self.cursor.path, position, Some(self.next), error.to_string())
    }
}

/// A sealed segment, as `Log::sealed_segments` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset after its last record.
    pub end_offset: u64,
    /// File size.
    pub bytes: u64,
    /// Largest event timestamp in it.
    pub max_timestamp: Option<i64>,
}

/// A segment's offsets and the range of its event timestamps (`None` when it holds no record):
/// `(first offset, end offset, (smallest, largest) timestamp)`.
pub type SegmentTimes = (u64, u64, Option<(i64, i64)>);

/// Where an iterator or a read stands in one segment.
/// How a cursor will be used: decides how it reads a sealed segment.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// A read of one record (`Log::read`): from the segment's map, no system call.
    Random,
    /// A sequential scan (`Iter`, `Log::scan`): with `pread` into a reused buffer.
    Scan,
}

#[derive(Debug)]
struct Cur {
    /// `None` while the segment is the active one.
    end_offset: Option<u64>,
    active: Option<Arc<Active>>,
    cursor: FrameCursor,
    /// Offset of the frame at the cursor's position.
    next: u64,
    /// Every offset below this is readable through the cursor as it is now (the segment's end
    /// for a sealed one, the published end when the cursor's end was last set otherwise).
    readable: u64,
}

/// Each segment's (base offset, end offset) from the list of base offsets: every base but the
/// last, with the base that follows it.
pub(crate) fn consecutive(bases: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    bases.iter().copied().zip(bases.iter().copied().skip(1))
}

/// A durable, segmented, checksummed append-only log in one directory.
///
/// `Log` is `Send + Sync`: share it with `Arc` and append from many threads; appends land in one
/// total order with offsets 0, 1, 2, … and no gaps (until [`Log::compact`] removes records
/// from sealed segments: their offsets then read as absent).
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and runs recovery. Fails with
    /// [`Error::Locked`] if another `Log` holds the directory.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        crate::trace::span!("evlog.open", dir = %dir.display());
        let storage = opts.storage.clone();
        match storage.dir_exists(&dir) {
            Ok(_) => crate::storage::create_dir_durable(storage.as_ref(), &dir)
                .map_err(|e| Error::io("create directory", &dir, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Err(Error::NotADirectory { path: dir }),
            Err(e) => return Err(Error::io("stat", &dir, e)),
        }
        let lock_path = dir.join(format::LOCK_FILE);
        let guard = match storage.lock(&lock_path) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Locked { path: dir }),
            Err(e) => return Err(Error::io("lock", &lock_path, e)),
        };
        let rec = {
            crate::trace::span!("evlog.recovery");
            recovery::recover(storage.as_ref(), &dir, &opts, true)?
        };
        crate::trace::event!(
            checkpoint_used = rec.report.checkpoint_used,
            scanned_bytes = rec.report.scanned_bytes,
            truncated_bytes = rec.report.truncated_bytes,
            dropped_records = rec.report.dropped_records,
            next_offset = rec.next_offset,
            "recovered"
        );
        let mut checkpoint = crate::log::checkpoint::CheckpointFile::open(storage.as_ref(), &dir)?;
        // Recovery ended by writing a checkpoint at the end of what it kept.
        checkpoint.last = Some(format::Checkpoint {
            segment_base: *rec.bases.last().unwrap_or(&0),
            position: rec.position,
            next_offset: rec.next_offset,
        });
        let shared = Arc::new(Self::shared(dir, opts, false, rec, Some(guard), Some(checkpoint)));
        if let Some(w) = &shared.writer {
            shared.open_write_map(&mut lock(w));
        }
        let flusher = match shared.opts.durability {
            Durability::Interval(every) => Some(crate::log::writer::spawn_flusher(shared.clone(), every)?),
            _ => None,
        };
        Ok(Log { shared, flusher })
    }

    /// Verifies every record of the log in `dir` and repairs what is corrupt, never deleting a
    /// byte: opens it in [`RecoveryMode::Repair`](crate::RecoveryMode::Repair) (a torn tail is
    /// cut, corruption after the checkpoint is moved into `quarantine/`), then reads every sealed
    /// segment and the active one; at the first corrupt record it moves every later segment into `quarantine/` and
    /// opens again, which cuts that segment at the corruption (its tail goes to `quarantine/`
    /// too). Every offset before the first corrupt record is kept. Takes the directory lock, so
    /// run it while no writer has the log open.
    pub fn repair(dir: impl AsRef<Path>, mut opts: Options) -> Result<crate::log::recovery::RepairReport> {
        let dir = dir.as_ref();
        opts.recovery = crate::log::options::RecoveryMode::Repair;
        let log = Log::open(dir, opts.clone())?;
        let mut report =
            crate::log::recovery::RepairReport { at_open: log.recovery_report().clone(), ..Default::default() };
        let mut corrupt = None;
        for (base, end, _) in log.segment_time_ranges()? {
            let mut it = log.iter(base);
            while it.next_offset() < end {
                match it.next() {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        corrupt = Some((base, e.to_string()));
                        break;
                    }
                    None => break,
                }
            }
            if corrupt.is_some() {
                break;
            }
        }
        // The open scanned only what follows the checkpoint, so every segment (the active one
        // too) is read here.
        log.close()?;
        let Some((base, what)) = corrupt else { return Ok(report) };
        report.sealed_corruption = Some(what);
        {
            let storage = opts.storage.clone();
            let lock_path = dir.join(format::LOCK_FILE);
            let _guard = match storage.lock(&lock_path) {
                Ok(g) => g,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(Error::Locked { path: dir.to_path_buf() });
                }
                Err(e) => return Err(Error::io("lock", &lock_path, e)),
            };
            report.moved_files = crate::log::recovery::quarantine_after(storage.as_ref(), dir, base)?;
        }
        let log = Log::open(dir, opts)?;
        report.after_cut = Some(log.recovery_report().clone());
        log.close()?;
        Ok(report)
    }

    /// Opens a log that another process (or `Log`) may be writing, without taking the writer lock
    /// and without changing any file. It sees every complete frame (and complete batch) present
    /// now, and follows new ones as iterators reach the end. The active segment is read with
    /// `pread`, never mapped, so the writer truncating a torn tail cannot fault this process.
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        match opts.storage.dir_exists(&dir) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::io(
                    "open",
                    &dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Err(Error::NotADirectory { path: dir }),
            Err(e) => return Err(Error::io("stat", &dir, e)),
        }
        let rec = recovery::recover(opts.storage.as_ref(), &dir, &opts, false)?;
        let shared = Arc::new(Self::shared(dir, opts, true, rec, None, None));
        Ok(Log { shared, flusher: None })
    }

    fn shared(
        dir: PathBuf,
        opts: Options,
        read_only: bool,
        rec: recovery::Recovered,
        guard: Option<Box<dyn LockGuard>>,
        checkpoint: Option<crate::log::checkpoint::CheckpointFile>,
    ) -> Shared {
        let base = *rec.bases.last().unwrap_or(&0);
        let path = dir.join(format::segment_file_name(base));
        let active = Arc::new(Active::new(base, path, rec.active_file, rec.index, &opts, !read_only));
        let writer = checkpoint
            .map(|checkpoint| Mutex::new(Writer::new(active.clone(), rec.position, rec.next_offset, checkpoint)));
        Shared {
            dir,
            read_only,
            view: RwLock::new(View { bases: rec.bases, active }),
            cache: Mutex::new(SegmentCache::default()),
            time_ranges: Mutex::new(HashMap::new()),
            writer,
            group_commit: crate::sync::GroupCommit::default(),
            synced_offset: AtomicU64::new(if read_only { 0 } else { rec.next_offset }),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            appended: Mutex::new(()),
            appended_cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
            published: AtomicU64::new(rec.next_offset),
            published_end: AtomicU64::new(rec.position),
            shutdown: Mutex::new(false),
            shutdown_cv: Condvar::new(),
            dir_lock: Mutex::new(guard),
            refresh_lock: Mutex::new(()),
            report: rec.report,
            fsyncs: AtomicU64::new(0),
            synced_records: AtomicU64::new(0),
            mapped_writes: AtomicBool::new(false),
            appenders: AtomicUsize::new(0),
            last_fsync_nanos: AtomicU64::new(0),
            appends_written: AtomicU64::new(0),
            appends_synced: AtomicU64::new(0),
            last_round_appends: AtomicU64::new(0),
            fsync_nanos_total: AtomicU64::new(0),
            fsync_nanos_max: AtomicU64::new(0),
            opened_next_offset: rec.next_offset,
            opened_at: Instant::now(),
            segment_bytes_limit: AtomicU64::new(opts.segment_bytes_max),
            space_freed: Condvar::new(),
            key_indexes: Mutex::new(HashMap::new()),
            rewrite: Mutex::new(()),
            swaps: Mutex::new(HashMap::new()),
            sealed_generation: AtomicU64::new(0),
            opts,
        }
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What recovery found and did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Appends a payload with timestamp now; returns its offset. Durable on return under
    /// `Durability::Always`.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.append_record(&NewRecord::new(payload))
    }

    /// Appends one record with an explicit timestamp, key and headers; returns its offset.
    pub fn append_record(&self, record: &NewRecord<'_>) -> Result<u64> {
        Ok(self.shared.append(std::slice::from_ref(record))?.start)
    }

    /// Appends `record` only if the log's next offset is still `expected_next_offset` (optimistic
    /// concurrency over the whole log): otherwise nothing is written and the error is
    /// [`Error::OffsetMismatch`] with the actual next offset. Of several writers racing with the
    /// same expectation exactly one wins.
    pub fn append_expecting(&self, expected_next_offset: u64, record: &NewRecord<'_>) -> Result<u64> {
        let expect = writer::Expect::NextOffset(expected_next_offset);
        Ok(self.shared.append_if(std::slice::from_ref(record), expect)?.start)
    }

    /// Appends `record` with `key` (which replaces the record's own) only if the newest record
    /// with that key is still at `expected_last_offset` (`None`: the key has no record yet):
    /// otherwise nothing is written and the error is [`Error::KeyVersionMismatch`]. The
    /// optimistic concurrency of an event-sourced aggregate: read its events with
    /// [`Log::iter_key`], decide, append expecting the last one you read.
    pub fn append_expecting_key(
        &self,
        key: &[u8],
        expected_last_offset: Option<u64>,
        record: &NewRecord<'_>,
    ) -> Result<u64> {
        let mut r = record.clone();
        r.key = Some(key);
        let expect = writer::Expect::KeyLast { key, expected: expected_last_offset, sealed: None, generation: 0 };
        Ok(self.shared.append_if(std::slice::from_ref(&r), expect)?.start)
    }

    /// Appends many records with one write; they become durable together and atomically: after
    /// a crash either all of them are in the log or none. Returns their offsets. The batch must
    /// fit in one segment ([`Error::BatchTooLarge`] otherwise).
    pub fn append_batch(&self, records: &[NewRecord<'_>]) -> Result<Range<u64>> {
        self.shared.append(records)
    }

    /// The record at `offset`, or `None` if there is none (not yet written, or removed by
    /// retention). A record whose bytes fail their checksum returns [`Error::Corruption`].
    pub fn read(&self, offset: u64) -> Result<Option<Record>> {
        self.refresh_if_read_only(offset)?;
        match self.shared.locate(offset, Access::Random)? {
            // In a compacted segment the record may be gone: the cursor then holds a later one.
            Some(mut cur) => Ok(self.shared.read_in(&mut cur)?.filter(|r| r.offset() == offset)),
            None => Ok(None),
        }
    }

    /// Iterates records from `from_offset` (or the first offset, if that is later). The iterator
    /// ends at the last published record; calling `next` again later yields records appended
    /// since, so it can follow the log. It never yields a partial record.
    pub fn iter(&self, from_offset: u64) -> Iter {
        Iter { shared: self.shared.clone(), next: from_offset, cur: None, failed: false }
    }

    /// Hands `f` every record from `from_offset` (or the first offset, if that is later) up to
    /// the last published one, in order, each borrowed from the log's bytes: no allocation and
    /// no reference count per record, checksums verified as always. `f` returns
    /// `ControlFlow::Break(())` to stop early. Returns the offset after the last record `f` was
    /// given (where a later scan goes on). A corrupt record is an error and is never given to
    /// `f`. The hot path for consumers that only look at each record once; [`Log::iter`] hands
    /// out owned records instead.
    pub fn scan(&self, from_offset: u64, mut f: impl FnMut(RecordRef<'_>) -> std::ops::ControlFlow<()>) -> Result<u64> {
        let mut it = self.iter(from_offset);
        loop {
            // The records already read, in a tight loop; then one step of the general path,
            // which reads the next chunk, moves to the next segment or reports what is wrong.
            if it.scan_chunk(&mut f).is_break() {
                break;
            }
            match it.next_ref()? {
                Some(r) if f(r).is_continue() => {}
                _ => break,
            }
        }
        Ok(it.next_offset())
    }

    /// The earliest offset whose timestamp is >= `ts`, exact even when timestamps are not
    /// monotonic (Kafka's `offsetsForTimes`). `None` if no record has such a timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let s = &self.shared;
        if s.read_only {
            s.refresh()?;
        }
        let (bases, active, end) = {
            let v = s.view();
            (v.bases.clone(), v.active.clone(), s.visible().1)
        };
        for (base, end_offset) in consecutive(&bases) {
            if s.time_range(base, end_offset)?.is_none_or(|(_, max)| max < ts) {
                continue;
            }
            let sealed = s.sealed(base, end_offset)?;
            let Some((rel, pos)) = sealed.index.as_ref().first_granule_reaching(ts) else { continue };
            let cursor = sealed.cursor(pos);
            if let Some(o) = s.first_at_or_after(cursor, base + rel, ts)? {
                return Ok(Some(o));
            }
        }
        let Some((rel, pos)) = active.granule_reaching(ts) else { return Ok(None) };
        let cursor = active.cursor(pos, end, s.opts.read_buffer_bytes);
        s.first_at_or_after(cursor, active.base + rel, ts)
    }

    /// The first offset still in the log.
    pub fn first_offset(&self) -> u64 {
        self.shared.view().bases.first().copied().unwrap_or(0)
    }

    /// The offset the next append will get (for readers: one past the last visible record).
    pub fn next_offset(&self) -> u64 {
        if self.shared.read_only {
            let _ = self.shared.refresh();
        }
        self.shared.published.load(Ordering::Acquire)
    }

    /// Makes every record appended so far durable (fdatasync), whatever the durability mode.
    pub fn sync(&self) -> Result<()> {
        self.shared.sync_all()
    }

    /// Like [`Log::wait_for`], but first busy-waits up to `spin` for the record (a spinning
    /// core sees an append within a microsecond; a blocked thread needs a futex wake-up, tens
    /// of microseconds on a busy VM). Spinning costs a core for as long as it lasts.
    pub fn wait_for_spinning(&self, offset: u64, spin: Duration, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        if !self.shared.read_only && !spin.is_zero() {
            let spin = spin.min(timeout);
            while started.elapsed() < spin {
                for _ in 0..64 {
                    if self.shared.published.load(Ordering::Acquire) > offset {
                        return Ok(true);
                    }
                    std::hint::spin_loop();
                }
                if self.shared.poisoned.load(Ordering::Acquire) {
                    return Ok(false);
                }
            }
        }
        self.wait_for(offset, timeout.saturating_sub(started.elapsed()))
    }

    /// Blocks until a record at `offset` is readable or `timeout` passes; returns whether it is.
    /// Appends in this process wake it at once. A read-only log looks at the files again once
    /// per call and at the end.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let s = &self.shared;
        let deadline = Instant::now() + timeout;
        if s.read_only {
            s.refresh()?;
            return Ok(s.published.load(Ordering::Acquire) > offset);
        }
        let mut g = lock(&s.appended);
        s.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let ready = loop {
            if s.published.load(Ordering::Acquire) > offset {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || s.poisoned.load(Ordering::Acquire) {
                break false;
            }
            g = s.appended_cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        };
        s.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        Ok(ready)
    }

    /// Removes whole sealed segments whose records all lie below `offset`. Returns how many
    /// records were removed. The active segment is never removed.
    pub fn remove_before(&self, offset: u64) -> Result<u64> {
        self.shared.remove_before(offset)
    }

    /// Sets (or with `None` lifts) the log's disk budget; see [`Budget`](crate::Budget). From
    /// the next append on, the log's segments hold at most `bytes_max` bytes (its active
    /// segment's preallocated zeros aside), and its segments roll at a quarter of it. Not
    /// persisted: a [`Store`](crate::Store) keeps it in the topic's configuration.
    pub fn set_budget(&self, budget: Option<crate::log::budget::Budget>) -> Result<()> {
        self.shared.set_budget(budget)
    }

    /// Applies a `WhenFull::DropOldest` budget now: drops the oldest sealed segments while the
    /// log is over it (appends do this themselves; this is for a budget lowered meanwhile).
    /// Returns the records removed.
    pub fn enforce_budget(&self) -> Result<u64> {
        self.shared.enforce_budget()
    }

    /// Checks `records` against this log's limits as `append_batch` would, writing nothing.
    /// Holds this log's writer lock with room made for `records` (see `Reservation`): what an
    /// atomic append holds on each topic from before its commit until its part is written.
    #[cfg(feature = "store")]
    pub(crate) fn reserve_batch(&self, records: &[NewRecord<'_>]) -> Result<writer::Reservation<'_>> {
        self.shared.reserve_batch(records)
    }

    /// The durability this log's appends have.
    pub fn durability(&self) -> Durability {
        self.shared.opts.durability
    }

    /// The log's disk budget, if it has one.
    pub fn budget(&self) -> Option<crate::log::budget::Budget> {
        self.shared.budget()
    }

    /// The sealed segments, oldest first, with their size and newest event timestamp (for
    /// retention). The active segment is not listed: it is never removed.
    pub fn sealed_segments(&self) -> Result<Vec<SegmentInfo>> {
        let bases = self.shared.view().bases.clone();
        let mut out = Vec::with_capacity(bases.len().saturating_sub(1));
        for (base_offset, end_offset) in consecutive(&bases) {
            let bytes = self.shared.segment_file_bytes(base_offset)?;
            let max_timestamp = self.shared.time_range(base_offset, end_offset)?.map(|(_, max)| max);
            out.push(SegmentInfo { base_offset, end_offset, bytes, max_timestamp });
        }
        Ok(out)
    }

    /// Every segment as `(first offset, end offset, smallest and largest timestamp)`, the
    /// active one last (its end is the next offset). Lets readers skip segments by time.
    pub fn segment_time_ranges(&self) -> Result<Vec<SegmentTimes>> {
        let (bases, active, next) = {
            let v = self.shared.view();
            (v.bases.clone(), v.active.clone(), self.shared.visible().0)
        };
        let mut out = Vec::with_capacity(bases.len());
        for (base, end) in consecutive(&bases) {
            out.push((base, end, self.shared.time_range(base, end)?));
        }
        out.push((active.base, next, active.time_range()));
        Ok(out)
    }

    /// Bytes of all segment files, the active one included.
    pub fn size_bytes(&self) -> Result<u64> {
        let sealed: u64 = self.sealed_segments()?.iter().map(|s| s.bytes).sum();
        let active = self.shared.view().active.clone();
        Ok(sealed + active.file.len().map_err(|e| Error::io("stat", &active.path, e))?)
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.shared.view().bases.len()
    }

    /// Counters of this handle since it opened the log: see [`LogStats`].
    pub fn stats(&self) -> LogStats {
        let s = &self.shared;
        let fsyncs = s.fsyncs.load(Ordering::Relaxed);
        let total = s.fsync_nanos_total.load(Ordering::Relaxed);
        LogStats {
            appended: self.next_offset().saturating_sub(s.opened_next_offset),
            since_open: s.opened_at.elapsed(),
            fsyncs,
            fsync_mean: Duration::from_nanos(total.checked_div(fsyncs).unwrap_or(0)),
            fsync_max: Duration::from_nanos(s.fsync_nanos_max.load(Ordering::Relaxed)),
            synced_records: s.synced_records.load(Ordering::Relaxed),
            mapped_writes: s.mapped_writes.load(Ordering::Relaxed),
        }
    }

    /// fsyncs issued for data on the append path so far (group commit leaders and rolls).
    pub fn data_fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Index files found missing or invalid and rebuilt from their segment since open (the
    /// active segment's at open included).
    pub fn index_rebuilds(&self) -> u64 {
        lock(&self.shared.cache).rebuilds + u64::from(self.shared.report.active_index_rebuilt)
    }

    /// Sealed segments currently mapped.
    pub fn mapped_segments(&self) -> usize {
        lock(&self.shared.cache).len()
    }

    /// Whether an earlier I/O failure poisoned the log for appends.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Closes the log cleanly: fsyncs, writes the indexes and a checkpoint at the end (so the next
    /// open scans nothing) and releases the directory lock. Dropping the log does the same but
    /// cannot report an error.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    /// Drops the log as a crash would: no final fsync, no index or checkpoint written, the
    /// directory lock released. What was written stays in the OS page cache, as after `kill -9`.
    /// For tests and benchmarks of recovery.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        *lock(&self.shared.shutdown) = true;
        self.shared.shutdown_cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        if let Some(w) = &self.shared.writer {
            crate::log::writer::mark_closed(&mut lock(w));
        }
        lock(&self.shared.dir_lock).take();
    }

    fn close_inner(&mut self) -> Result<()> {
        {
            *lock(&self.shared.shutdown) = true;
            self.shared.shutdown_cv.notify_all();
        }
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        let r = self.shared.close();
        lock(&self.shared.dir_lock).take();
        r
    }

    fn refresh_if_read_only(&self, offset: u64) -> Result<()> {
        if self.shared.read_only && offset >= self.shared.published.load(Ordering::Acquire) {
            self.shared.refresh()?;
        }
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

/// Iterator over records from an offset; see [`Log::iter`].
#[derive(Debug)]
pub struct Iter {
    shared: Arc<Shared>,
    next: u64,
    cur: Option<Cur>,
    failed: bool,
}

impl Iter {
    /// The offset the next record will have.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let bytes = c.cursor.frame_bytes(rel, frame.len).ok_or_else(|| c.cursor.outside(c.cursor.position(), frame))?;
        Ok(Some(Record::from_frame(bytes, frame)))
    }

    /// The next record, borrowed from the bytes the iterator holds: no allocation and no
    /// reference count (what [`Log::scan`] uses). It lives until the next call.
    pub fn next_ref(&mut self) -> Result<Option<RecordRef<'_>>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let bytes = c.cursor.frame_slice(rel, frame.len).ok_or_else(|| c.cursor.outside(c.cursor.position(), frame))?;
        Ok(Some(RecordRef::from_frame(bytes, frame)))
    }

    /// Hands `f` the records below `stop` that the current cursor already holds, each as
    /// `next_in_chunk` would, in a tight loop (see `FrameCursor::scan_frames`: `f` says whether
    /// it took each and whether to go on); returns whether `f` stopped the loop. Hands nothing
    /// when there is no such record: `next_in_chunk` then reads on.
    #[cfg(feature = "store")]
    #[inline]
    pub(crate) fn scan_in_chunk(&mut self, stop: u64, mut f: impl FnMut(InChunk<'_>) -> segment::Taken) -> bool {
        self.scan_cursor(stop, |chunk, rel, _, frame| {
            let shift = |r: &std::ops::Range<usize>| rel + r.start..rel + r.end;
            f(InChunk {
                offset: frame.offset,
                timestamp: frame.timestamp,
                chunk,
                key: frame.key.as_ref().map(shift),
                payload: shift(&frame.payload),
            })
        })
    }

    /// The fast path of `scan_chunk` and `scan_in_chunk`: the current cursor's frames below
    /// `stop` and what is known readable, through `FrameCursor::scan_frames`, keeping the
    /// iterator's position with the cursor's; whether `f` stopped the loop. Nothing when the
    /// cursor is not where the iterator is (the general step moves it).
    #[inline]
    fn scan_cursor(
        &mut self,
        stop: u64,
        f: impl FnMut(&crate::storage::SharedBytes, usize, &[u8], &crate::format::DecodedFrame) -> segment::Taken,
    ) -> bool {
        let Some(c) = &mut self.cur else { return false };
        if c.next != self.next {
            return false;
        }
        let (next, stopped) = c.cursor.scan_frames(self.next, c.readable.min(stop), f);
        self.next = next;
        c.next = next;
        stopped
    }

    /// The next record's offset and timestamp, the chunk of bytes the iterator read it in, and
    /// where its key and payload are in that chunk: for a reader that holds records without a
    /// reference count each (the streaming replay keeps one per chunk).
    #[cfg(feature = "store")]
    pub(crate) fn next_in_chunk(&mut self) -> Result<Option<InChunk<'_>>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let shift = |r: &std::ops::Range<usize>| rel + r.start..rel + r.end;
        Ok(Some(InChunk {
            offset: frame.offset,
            timestamp: frame.timestamp,
            chunk: c.cursor.chunk(),
            key: frame.key.as_ref().map(shift),
            payload: shift(&frame.payload),
        }))
    }

    /// Offers a spare buffer to the current cursor (see `FrameCursor::offer_buffer`).
    #[cfg(feature = "store")]
    pub(crate) fn offer_buffer(&mut self, buf: Vec<u8>) {
        if let Some(c) = &mut self.cur {
            c.cursor.offer_buffer(buf);
        }
    }

    /// Hands `f` the records the current cursor already holds below what is known readable
    /// (see `FrameCursor::scan_chunk`); the fast path of `Log::scan`.
    fn scan_chunk(
        &mut self,
        f: &mut impl FnMut(RecordRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> std::ops::ControlFlow<()> {
        let stopped = self.scan_cursor(u64::MAX, |_, _, bytes, frame| {
            if f(RecordRef::from_frame(bytes, frame)).is_break() { segment::Taken::Stop } else { segment::Taken::Next }
        });
        if stopped { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
    }

    /// Moves to the next record; returns where its bytes are in the current cursor's chunk
    /// (its decoded frame is the cursor's `last`).
    ///
    /// Inlined (the slow path is not): a reader calls it once per record, and its answer
    /// returned through memory costs a stalled load per record.
    #[inline]
    fn advance(&mut self) -> Result<Option<usize>> {
        // Fast path: below what the cursor already knows to be readable (a sealed segment's end,
        // or the published end last seen), no look at the shared view is needed.
        if let Some(c) = &mut self.cur
            && self.next < c.readable
            && c.next == self.next
        {
            match c.cursor.step_raw(Some(self.next))? {
                RawStep::Frame { rel, .. } => {
                    // `+ 1` of the expected offset, except past a compacted segment's gap.
                    self.next = c.cursor.last.offset + 1;
                    c.next = self.next;
                    return Ok(Some(rel));
                }
                RawStep::End | RawStep::Bad { .. } => {} // handled (and reported) by the slow path
            }
        }
        self.advance_slow()
    }

    /// `advance` past what the cursor knows: a new chunk's end, a new segment, a refresh, an
    /// error to report.
    #[inline(never)]
    fn advance_slow(&mut self) -> Result<Option<usize>> {
        // A few tries cover races with rolls and refreshes; stepping over a compacted segment
        // that lost all its records is progress, not a try.
        let mut tries = 0;
        while tries < 4 {
            tries += 1;
            let (first, visible, active_base, active_end) = {
                let v = self.shared.view();
                let (visible, active_end) = self.shared.visible();
                (v.bases.first().copied().unwrap_or(0), visible, v.active.base, active_end)
            };
            if self.next < first {
                self.next = first;
                self.cur = None;
            }
            if self.next >= visible {
                if self.shared.read_only && self.shared.refresh()? {
                    continue;
                }
                return Ok(None);
            }
            // A cursor on what was the active segment is dropped once that segment is sealed:
            // the sealed one is mapped instead.
            if let Some(c) = &mut self.cur {
                let stale = c.next != self.next
                    || match &c.active {
                        Some(a) => a.base != active_base,
                        None => c.end_offset.is_some_and(|e| self.next >= e),
                    };
                if stale {
                    self.cur = None;
                } else if c.active.is_some() {
                    c.cursor.set_end(active_end);
                    c.readable = visible;
                }
            }
            if self.cur.is_none() {
                self.cur = self.shared.locate(self.next, Access::Scan)?;
            }
            let Some(c) = &mut self.cur else { continue };
            match c.cursor.step_raw(Some(self.next))? {
                RawStep::Frame { rel, .. } => {
                    self.next = c.cursor.last.offset + 1;
                    c.next = self.next;
                    return Ok(Some(rel));
                }
                RawStep::End => {
                    if let Some(end) = c.end_offset
                        && self.next < end
                        && c.cursor.gaps()
                    {
                        // A compacted segment whose last records were dropped.
                        self.next = end;
                        tries = 0;
                    } else if let Some(end) = c.end_offset
                        && self.next < end
                    {
                        let reason = format!("sealed segment ends before offset {end}, where the next one starts");
                        return Err(Error::corruption(&c.cursor.path, c.cursor.position(), Some(self.next), reason));
                    }
                    self.cur = None;
                }
                RawStep::Bad { position, error } => {
                    return Err(c.corruption(position, error));
                }
            }
        }
        Ok(None)
    }
}

/// A record as `Iter::next_in_chunk` gives it: where it lies in the chunk it was read in.
#[cfg(feature = "store")]
pub(crate) struct InChunk<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub chunk: &'a crate::storage::SharedBytes,
    pub key: Option<std::ops::Range<usize>>,
    pub payload: std::ops::Range<usize>,
}

impl Iterator for Iter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
