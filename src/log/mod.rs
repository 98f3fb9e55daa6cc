//! The log: a set of segments in one directory, and the handle applications use.
//!
//! Where things are: `Log::append` and its kin go to the writer (`writer/mod.rs`: framing and
//! writes; `writer/room.rs`: rolls, budgets, removals; `writer/durable.rs`: group commit,
//! checkpoints, close). Reads go through `read.rs` (cursors, `Iter`, `scan`), over the view
//! `publish.rs` keeps; `follow.rs` lets a read-only handle see another process's appends.
//! Keyed lookups are `keys.rs`; compaction, compression, retention and backup rewrite or link
//! sealed segments through `rewrite.rs`; `recovery/` runs at open.
//!
//! Invariants:
//! - Offsets are assigned contiguously: segment `i + 1` starts where segment `i` ended when it
//!   was sealed. Only a compacted sealed segment (header flag) has gaps.
//! - No writer changes a sealed segment; only a rewrite replaces one, whole (`rewrite.rs`).
//! - Lock order: rewrite, then writer, then view, then cache. The sync state lock is never
//!   held while waiting for any other lock.
//! - `Shared`'s state is grouped by owner: each group's fields are private to the file that
//!   writes them (`Publication`, `WriteShared`, `Poison`, `Counters`, `Rewrites`).

pub(crate) mod backup;
pub(crate) mod budget;
pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod compact;
pub(crate) mod compress;
pub(crate) mod compressed;
pub(crate) mod follow;
pub(crate) mod index;
pub(crate) mod keymap;
pub(crate) mod keys;
pub(crate) mod latency;
pub(crate) mod options;
pub(crate) mod poison;
pub(crate) mod publish;
pub(crate) mod read;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod rewrite;
pub(crate) mod segment;
pub(crate) mod stats;
pub(crate) mod writer;

use crate::error::{LogError as Error, LogResult as Result};
use crate::format;
use crate::log::cache::SegmentCache;
use crate::log::poison::Poison;
use crate::log::publish::{Active, Publication, View};
use crate::log::rewrite::Rewrites;
use crate::log::stats::Counters;
use crate::log::writer::durable::Shutdown;
use crate::log::writer::{WriteShared, Writer};
use crate::storage::{LockGuard, OpenMode};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::log::latency::{LATENCY_BUCKETS, LatencyHistogram};
pub use crate::log::read::Iter;
pub use crate::log::stats::LogStats;
pub(crate) use crate::sync::lock;

pub use crate::log::backup::LogBackup;
pub use crate::log::budget::{Budget, WhenFull};
pub use crate::log::compact::{CompactOptions, CompactReport};
pub use crate::log::compress::CompressReport;
pub use crate::log::keys::KeyIter;
pub use crate::log::options::{Durability, Options, RecoveryMode, WritePath};
pub use crate::log::record::{NewRecord, Record, RecordRef};
pub use crate::log::recovery::{RecoveryReport, RepairReport};
#[doc(hidden)] // recovery's pure tail classifier, public for its fuzz target
pub use crate::log::recovery::{TailVerdict, classify_tail};

/// Everything a `Log`, its iterators and its flusher thread share. No field is public: each
/// group of state is written by the file that owns it.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    opts: Options,
    read_only: bool,
    report: RecoveryReport,
    /// The view readers share (`publish.rs`).
    published: Publication,
    /// Sealed segments mapped for reads (`cache.rs`).
    cache: Mutex<SegmentCache>,
    /// Smallest and largest timestamp per sealed segment, filled lazily (`read.rs`).
    time_ranges: Mutex<HashMap<u64, Option<(i64, i64)>>>,
    /// Sealed segments' key index files, checked and mapped, by base offset (`keys.rs`).
    key_indexes: Mutex<HashMap<u64, crate::storage::SharedBytes>>,
    /// The writer's state, behind the writer lock; `None` for a read-only handle (`writer/`).
    writer: Option<Mutex<Writer>>,
    /// What appenders share outside the writer lock (`writer/`).
    write: WriteShared,
    poison: Poison,
    counters: Counters,
    /// The one owner of sealed-segment rewrites (`rewrite.rs`).
    rewrites: Rewrites,
    shutdown: Shutdown,
    dir_lock: Mutex<Option<Box<dyn LockGuard>>>,
    /// One refresh of a read-only handle at a time (`follow.rs`).
    refresh_lock: Mutex<()>,
}

impl Shared {
    /// The size of segment `base`'s file.
    pub fn segment_file_bytes(&self, base: u64) -> Result<u64> {
        let path = self.dir.join(format::segment_file_name(base));
        self.opts.storage.open(&path, OpenMode::Read).and_then(|f| f.len()).map_err(|e| Error::io("stat", &path, e))
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
        if shared.opts.budget.is_some() {
            shared.set_budget(shared.opts.budget)?;
        }
        let flusher = match shared.opts.durability {
            Durability::Interval(every) => Some(crate::log::writer::durable::spawn_flusher(shared.clone(), every)?),
            _ => None,
        };
        Ok(Log { shared, flusher })
    }

    /// Verifies every record of the log in `dir` and repairs what is corrupt, never deleting a
    /// byte: opens it in [`RecoveryMode::Repair`](crate::log::RecoveryMode::Repair) (a torn tail is
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
        let signal = opts.append_signal.clone();
        Shared {
            dir,
            read_only,
            published: Publication::new(View { bases: rec.bases, active }, rec.next_offset, rec.position, signal),
            cache: Mutex::new(SegmentCache::default()),
            time_ranges: Mutex::new(HashMap::new()),
            key_indexes: Mutex::new(HashMap::new()),
            writer,
            write: WriteShared::new(if read_only { 0 } else { rec.next_offset }, opts.segment_bytes_max),
            poison: Poison::default(),
            counters: Counters::new(rec.next_offset),
            rewrites: Rewrites::default(),
            shutdown: Shutdown::default(),
            dir_lock: Mutex::new(guard),
            refresh_lock: Mutex::new(()),
            report: rec.report,
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

    /// `append_batch` that under `Durability::Always` returns once the records are written,
    /// before they are durable or readable; `wait_durable(range.end)` then waits for the fsync
    /// (shared with every write made meanwhile). Under `Os` and `Interval` it is `append_batch`.
    /// An error from `wait_durable` poisoned the log: the records may or may not survive a
    /// crash, as with a failed `append_batch`.
    #[cfg(feature = "serve")]
    pub(crate) fn append_batch_deferred(&self, records: &[NewRecord<'_>]) -> Result<Range<u64>> {
        self.shared.append_deferred(records)
    }

    /// Returns once every offset below `end` is durable under this log's durability (under
    /// `Always` after an fsync; under `Os` and `Interval` at once).
    #[cfg(feature = "serve")]
    pub(crate) fn wait_durable(&self, end: u64) -> Result<()> {
        if self.shared.opts.durability == Durability::Always { self.shared.sync_to(end) } else { Ok(()) }
    }

    /// The record at `offset`, or `None` if there is none (not yet written, or removed by
    /// retention). A record whose bytes fail their checksum returns [`Error::Corruption`].
    pub fn read(&self, offset: u64) -> Result<Option<Record>> {
        self.refresh_if_read_only(offset)?;
        self.shared.read(offset)
    }

    /// Iterates records from `from_offset` (or the first offset, if that is later). The iterator
    /// ends at the last published record; calling `next` again later yields records appended
    /// since, so it can follow the log. It never yields a partial record.
    pub fn iter(&self, from_offset: u64) -> Iter {
        Iter::new(self.shared.clone(), from_offset)
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
        self.shared.offset_for_timestamp(ts)
    }

    /// The first offset still in the log.
    pub fn first_offset(&self) -> u64 {
        self.shared.published.view().bases.first().copied().unwrap_or(0)
    }

    /// The offset the next append will get (for readers: one past the last visible record).
    pub fn next_offset(&self) -> u64 {
        if self.shared.read_only {
            let _ = self.shared.refresh();
        }
        self.shared.published.next_offset()
    }

    /// Makes every record appended so far durable (fdatasync), whatever the durability mode.
    pub fn sync(&self) -> Result<()> {
        self.shared.sync_all()
    }

    /// Like [`Log::wait_for`], but first busy-waits up to `spin` for the record (a spinning
    /// core sees an append within a microsecond; a blocked thread needs a futex wake-up, tens
    /// of microseconds on a busy VM). Spinning costs a core for as long as it lasts.
    pub fn wait_for_spinning(&self, offset: u64, spin: Duration, timeout: Duration) -> Result<bool> {
        self.shared.wait_for_spinning(offset, spin, timeout)
    }

    /// Blocks until a record at `offset` is readable or `timeout` passes; returns whether it is.
    /// Appends in this process wake it at once. A read-only log looks at the files again once
    /// per call and at the end.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> Result<bool> {
        self.shared.wait_for(offset, timeout)
    }

    /// Removes whole sealed segments whose records all lie below `offset`. Returns how many
    /// records were removed. The active segment is never removed.
    pub fn remove_before(&self, offset: u64) -> Result<u64> {
        self.shared.remove_before(offset)
    }

    #[cfg(feature = "store")]
    /// Sets (or with `None` lifts) the log's disk budget from the next append on: what a store
    /// does when a topic's configuration changes (`Options::budget` at open otherwise).
    pub(crate) fn set_budget(&self, budget: Option<crate::log::budget::Budget>) -> Result<()> {
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
    pub(crate) fn reserve_batch(&self, records: &[NewRecord<'_>]) -> Result<writer::room::Reservation<'_>> {
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
        let bases = self.shared.published.view().bases.clone();
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
            let v = self.shared.published.view();
            (v.bases.clone(), v.active.clone(), self.shared.published.visible().0)
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
        let active = self.shared.published.view().active.clone();
        Ok(sealed + active.file.len().map_err(|e| Error::io("stat", &active.path, e))?)
    }

    /// Bytes the records take: the sealed segments' files and the active segment up to its last
    /// published record, not the zeros preallocated after it (what a budget counts).
    pub fn used_bytes(&self) -> Result<u64> {
        if self.shared.read_only {
            self.shared.refresh()?;
        }
        let sealed: u64 = self.sealed_segments()?.iter().map(|s| s.bytes).sum();
        Ok(sealed + self.shared.published.visible().1)
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.shared.published.view().bases.len()
    }

    /// Counters of this handle since it opened the log: see [`LogStats`].
    pub fn stats(&self) -> LogStats {
        let s = &self.shared;
        let index_rebuilds = lock(&s.cache).rebuilds + u64::from(s.report.active_index_rebuilt);
        s.counters.snapshot(self.next_offset(), index_rebuilds, lock(&s.cache).len())
    }

    /// Whether an earlier I/O failure poisoned the log for appends.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poison.is_set()
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
        self.shared.shutdown.signal();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        if let Some(w) = &self.shared.writer {
            crate::log::writer::durable::mark_closed(&mut lock(w));
        }
        lock(&self.shared.dir_lock).take();
    }

    fn close_inner(&mut self) -> Result<()> {
        self.shared.shutdown.signal();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        let r = self.shared.close();
        lock(&self.shared.dir_lock).take();
        r
    }

    fn refresh_if_read_only(&self, offset: u64) -> Result<()> {
        if self.shared.read_only && offset >= self.shared.published.next_offset() {
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
