//! The append path: framing, writes, group commit, rolls, checkpoints, poisoning.
//!
//! Invariants:
//! - One writer lock orders all appends: offsets are assigned and bytes written under it, so
//!   the log's byte order is its offset order and offsets have no gaps.
//! - A record is acknowledged under `Always` only after an fsync that started after its write
//!   completed. Concurrent appenders share fsyncs: one leader syncs for all who wrote before it
//!   started (group commit); the others wait for it.
//! - After any failed write or fsync the log is poisoned: no later append or sync reports
//!   success, because the kernel may have dropped the dirty pages (fsyncgate).
//! - Each frame carries `durable_offset`, what had been fsynced before it was written; recovery
//!   uses it to tell corruption of durable data from an unsynced torn tail.
//! - A roll fsyncs the old segment before creating the new one, so sealed segments are whole.

pub(crate) mod durable;
pub(crate) mod room;

use crate::clock::now_ms;
use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, FRAME_HEADER_LEN, FrameFields, SEGMENT_HEADER_LEN};
use crate::log::budget::Budget;
use crate::log::checkpoint::CheckpointFile;
use crate::log::index::IndexBuilder;
use crate::log::options::{Durability, KEY_BYTES_MAX};
use crate::log::publish::Active;
use crate::log::record::NewRecord;
use crate::log::{Shared, lock};
use crate::storage::WriteMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar};

/// What must hold for a conditional append (`Log::append_expecting`, `append_expecting_key`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// Nothing: a plain append.
    Nothing,
    /// The log's next offset is this.
    NextOffset(u64),
    /// The newest record with this key has this offset (`None`: no record has it). `sealed` is
    /// the key's newest offset in the sealed segments, looked up before the writer lock was
    /// taken, while `Shared::sealed_generation` was `generation`: still the answer if the
    /// generation did not move.
    KeyLast { key: &'a [u8], expected: Option<u64>, sealed: Option<u64>, generation: u64 },
}

/// Whether an append's precondition could be checked under the writer lock.
enum Checked {
    Holds,
    /// The sealed segments changed since the key was looked up in them: look again.
    Stale,
}

/// How often a conditional append looks a key up again outside the writer lock after the
/// sealed segments changed under it, before it looks under the lock (rolls and rewrites are
/// rare next to appends; this bounds the retries of an append racing a busy roller).
const KEY_LOOKUPS_UNLOCKED_MAX: u32 = 8;

/// Frames appended to the active segment's open granule but not yet added to its index: a
/// single keyless record that joins the open granule is appended without taking the index's
/// lock (measured 30 ns of a 177 ns append of 100 B), and the frames are added at once when the
/// lock is next taken: by an append that starts a granule, a batch or a keyed record, and
/// before the index is written or read by the writer (checkpoint, roll, close). Readers never
/// miss such a frame: a lookup by offset lands in the open granule, whose entry exists, and
/// scans on; the active segment's time range and its lookup by time widen the index by
/// `Active::unindexed_ts_min`/`max`, stored before the frames are published.
#[derive(Debug)]
struct PendingIndex {
    /// Bytes that may join the open granule (`IndexBuilder::open_granule_room` when the lock was
    /// last taken): while `bytes` stays below it, a frame belongs to the open granule.
    room: u64,
    count: u64,
    bytes: u64,
    end: u64,
    min_ts: i64,
    max_ts: i64,
    /// What `Active::unindexed_ts_min`/`max` hold for this segment.
    stored_min_ts: i64,
    stored_max_ts: i64,
}

impl PendingIndex {
    /// Nothing pending, no room: the next append takes the lock.
    fn new() -> Self {
        PendingIndex {
            room: 0,
            count: 0,
            bytes: 0,
            end: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            stored_min_ts: i64::MAX,
            stored_max_ts: i64::MIN,
        }
    }

    /// Whether a frame may be appended without the index's lock.
    fn fits(&self) -> bool {
        self.bytes < self.room
    }

    /// Notes a frame of `len` bytes ending at `end` appended without the lock, and publishes its
    /// timestamp to readers of `active` first.
    fn add(&mut self, active: &Active, len: u64, end: u64, ts: i64) {
        if ts < self.stored_min_ts {
            self.stored_min_ts = ts;
            active.unindexed_ts_min.store(ts, Ordering::Release);
        }
        if ts > self.stored_max_ts {
            self.stored_max_ts = ts;
            active.unindexed_ts_max.store(ts, Ordering::Release);
        }
        self.count += 1;
        self.bytes += len;
        self.end = end;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
    }

    /// Adds the pending frames to `ix` (held under its lock).
    fn settle_into(&mut self, ix: &mut IndexBuilder) {
        ix.extend_open_granule(self.count, self.bytes, self.end, self.min_ts, self.max_ts);
        self.count = 0;
        self.bytes = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        self.room = ix.open_granule_room();
    }
}

/// State owned by the writer lock.
#[derive(Debug)]
pub(crate) struct Writer {
    active: Arc<Active>,
    /// Byte end of what was written to the active segment.
    position: u64,
    /// Offset the next record gets.
    next_offset: u64,
    /// Reused encode buffer.
    buf: Vec<u8>,
    checkpoint: CheckpointFile,
    closed: bool,
    /// Length of the active segment file: `position` plus preallocated space (zeros).
    allocated: u64,
    /// The active segment's writable map, when appends go through one (see `WritePath`).
    map: Option<Box<dyn WriteMap>>,
    /// Where the last background allocation asked of `map` reaches: while it is ahead of the
    /// allocated end, one is under way and appends do not ask again.
    ahead_asked: u64,
    /// Below where the last background write-back asked of `map` reaches (see
    /// `Options::write_back_interval_bytes`).
    write_back_asked: u64,
    /// Frames of the active segment not in its index yet.
    pending: PendingIndex,
    /// The disk budget, with the bytes of the sealed segments it counts.
    budget: Option<BudgetState>,
    /// Bytes that may still be appended before free space is checked against
    /// `disk_reserve_bytes` again.
    reserve_credit: u64,
}

#[derive(Debug)]
struct BudgetState {
    budget: Budget,
    /// Sum of the sealed segments' file sizes: counted when the budget is set, then kept up by
    /// rolls and removals.
    sealed_bytes: u64,
}

impl Writer {
    pub fn new(active: Arc<Active>, position: u64, next_offset: u64, checkpoint: CheckpointFile) -> Self {
        Writer {
            active,
            position,
            next_offset,
            // Grown by the first batch (a log that appends single records never needs it).
            buf: Vec::new(),
            checkpoint,
            closed: false,
            allocated: position,
            map: None,
            ahead_asked: 0,
            write_back_asked: 0,
            pending: PendingIndex::new(),
            budget: None,
            reserve_credit: 0,
        }
    }
}

/// What the writer shares with appenders outside its lock: the group commit, how far the log
/// is durable, the appends a leader waits for, the roll size and the sealed segments'
/// generation. Written by the files of `writer/` only.
#[derive(Debug)]
pub(crate) struct WriteShared {
    /// Durable appends share fsyncs through it.
    group_commit: crate::sync::GroupCommit,
    /// Every offset below this is on stable storage.
    synced_offset: AtomicU64,
    /// Threads inside `append` (group commit: how many appends a leader may wait for).
    appenders: AtomicUsize,
    /// Duration of the last group commit fsync, in nanoseconds.
    last_fsync_nanos: AtomicU64,
    /// `Always` appends written so far (counted under the writer lock), the count the last
    /// group commit covered, and how many appends that one covered: the appenders a leader
    /// expects back (see `lead_sync`).
    appends_written: AtomicU64,
    appends_synced: AtomicU64,
    last_round_appends: AtomicU64,
    /// Size at which the active segment rolls: `segment_bytes_max`, or less under a budget.
    segment_bytes_limit: AtomicU64,
    /// Signalled (with the writer lock) when segments are removed: appends blocked by a full
    /// budget look again.
    space_freed: Condvar,
    /// Bumped under the writer lock whenever the set or the content of the sealed segments
    /// changes (a roll, a swap, a removal): a key looked up in the sealed segments outside the
    /// writer lock is still the answer if this did not move (`Expect::KeyLast`).
    sealed_generation: AtomicU64,
}

impl WriteShared {
    /// For a log durable up to `synced_offset` whose segments roll at `segment_bytes_limit`.
    pub fn new(synced_offset: u64, segment_bytes_limit: u64) -> Self {
        WriteShared {
            group_commit: crate::sync::GroupCommit::default(),
            synced_offset: AtomicU64::new(synced_offset),
            appenders: AtomicUsize::new(0),
            last_fsync_nanos: AtomicU64::new(0),
            appends_written: AtomicU64::new(0),
            appends_synced: AtomicU64::new(0),
            last_round_appends: AtomicU64::new(0),
            segment_bytes_limit: AtomicU64::new(segment_bytes_limit),
            space_freed: Condvar::new(),
            sealed_generation: AtomicU64::new(0),
        }
    }

    /// Wakes every appender waiting for a group commit (the log was poisoned).
    pub fn wake_all(&self) {
        self.group_commit.wake_all();
    }

    /// The sealed segments' generation (see the field).
    #[inline]
    pub fn sealed_generation(&self) -> u64 {
        self.sealed_generation.load(Ordering::Acquire)
    }

    /// The sealed segments changed: call under the writer lock.
    pub fn sealed_changed(&self) {
        self.sealed_generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn writer(&self) -> Result<&std::sync::Mutex<Writer>> {
        self.writer.as_ref().ok_or_else(|| Error::ReadOnly { path: self.dir.clone() })
    }

    /// Appends `records` as one write; see `Log::append_batch`.
    #[inline]
    pub fn append(&self, records: &[NewRecord<'_>]) -> Result<Range<u64>> {
        // No precondition, so never stale: the direct route.
        self.append_checked(records, Expect::Nothing).map(Option::unwrap_or_default)
    }

    /// Writes `records` as `append` does, but under `Always` returns before the fsync that
    /// makes them durable (and readable): the caller acknowledges them only after
    /// `sync_to(range.end)`. For a caller with several batches in flight (a served connection's
    /// pipelined produce requests): their writes share the fsyncs a lone `append` would wait
    /// for one by one. Not counted among the appenders a group-commit leader gathers for.
    #[cfg(feature = "serve")]
    pub fn append_deferred(&self, records: &[NewRecord<'_>]) -> Result<Range<u64>> {
        let writer = self.writer()?;
        self.check_poison()?;
        if records.is_empty() {
            let w = lock(writer);
            return Ok(w.next_offset..w.next_offset);
        }
        let (total, needs_now) = self.validate(records)?;
        let now = if needs_now { now_ms() } else { 0 };
        let written = self.write_records(writer, records, total, now, &Expect::Nothing)?;
        Ok(written.map(|(first, end)| first..end).unwrap_or_default())
    }

    /// Appends `records` as one write if `expect` holds under the writer lock (checked after
    /// any roll, before a byte is written); otherwise writes nothing and returns the mismatch.
    pub fn append_if(&self, records: &[NewRecord<'_>], expect: Expect<'_>) -> Result<Range<u64>> {
        let Expect::KeyLast { key, expected, .. } = expect else {
            // Only a key lookup can be stale: these always come back `Some`.
            return self.append_checked(records, expect).map(Option::unwrap_or_default);
        };
        // The key's newest offset in the sealed segments is read without the writer lock (it may
        // read files and build a key index), and so is the active segment's key map on its first
        // use: appends go on meanwhile. Under the lock the lookup stands if no roll, rewrite or
        // removal changed the sealed segments since.
        self.ensure_active_map()?;
        for _ in 0..KEY_LOOKUPS_UNLOCKED_MAX {
            let generation = self.write.sealed_generation();
            let sealed = match self.last_offset_for_key_sealed(key) {
                Ok(o) => o,
                // A segment removed or swapped under the lookup: look again.
                Err(_) if self.write.sealed_generation() != generation => continue,
                Err(e) => return Err(e),
            };
            if let Some(range) = self.append_checked(records, Expect::KeyLast { key, expected, sealed, generation })? {
                return Ok(range);
            }
        }
        // Under the lock (`u64::MAX` never matches a generation): rare, and bounded by the log.
        let expect = Expect::KeyLast { key, expected, sealed: None, generation: u64::MAX };
        self.append_checked(records, expect)?
            .ok_or_else(|| Error::io("append", &self.dir, std::io::Error::other("key lookup")))
    }

    /// `append_if` with the precondition as given; `None` (nothing written) when it was
    /// `Expect::KeyLast` and the sealed segments changed since its lookup.
    #[inline]
    fn append_checked(&self, records: &[NewRecord<'_>], expect: Expect<'_>) -> Result<Option<Range<u64>>> {
        let writer = self.writer()?;
        self.check_poison()?;
        if records.is_empty() {
            let w = lock(writer);
            return Ok(Some(w.next_offset..w.next_offset));
        }
        // Validate everything before touching the file: a rejected batch writes nothing.
        let (total, needs_now) = self.validate(records)?;
        let now = if needs_now { now_ms() } else { 0 };

        if self.opts.durability != Durability::Always {
            return self.write_records(writer, records, total, now, &expect).map(|w| w.map(|(first, end)| first..end));
        }
        // Counted for group commit: a leader gathers about as many records as threads append.
        self.write.appenders.fetch_add(1, Ordering::AcqRel);
        let result = self.write_records(writer, records, total, now, &expect).and_then(|written| {
            let Some((first, end)) = written else { return Ok(None) };
            self.sync_to(end)?;
            Ok(Some(first..end))
        });
        self.write.appenders.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Frames and writes validated records under the writer lock; publishes them unless they
    /// must wait for an fsync. Returns the offsets written (`None`: nothing written, the
    /// precondition's lookup is stale).
    fn write_records(
        &self,
        writer: &std::sync::Mutex<Writer>,
        records: &[NewRecord<'_>],
        total: u64,
        now: i64,
        expect: &Expect<'_>,
    ) -> Result<Option<(u64, u64)>> {
        let mut w = self.make_room(lock(writer), total)?;
        if let Checked::Stale = self.check_expect(&w, expect)? {
            return Ok(None);
        }
        self.reserve(&mut w, total)?;
        self.write_locked(&mut w, records, total, now).map(Some)
    }

    /// Frames and writes validated records (`total` bytes) that room was made for, under the
    /// writer lock `w`; publishes them unless they must wait for an fsync.
    #[inline]
    pub(crate) fn write_locked(
        &self,
        w: &mut Writer,
        records: &[NewRecord<'_>],
        total: u64,
        now: i64,
    ) -> Result<(u64, u64)> {
        let durable = self.write.synced_offset.load(Ordering::Acquire);
        let first = w.next_offset;
        let start = w.position;
        let len = usize::try_from(total).unwrap_or(usize::MAX);
        let ww = w;
        let base = ww.active.base;
        let fields = |i: usize| Framing { offset: first + i as u64, durable, now, continues: i + 1 < records.len() };
        let written = match (&mut ww.map, records) {
            // One keyless record in the open granule: encoded straight into the page cache, and
            // indexed later without taking the index's lock now (see `PendingIndex`).
            (Some(map), [r]) if r.key.is_none() && ww.pending.fits() => {
                let f = fields(0).of(r);
                let headers_len = format::headers_block_len(&r.headers).unwrap_or(0);
                ww.pending.add(&ww.active, total, start + total, f.timestamp);
                map.write_with(start, len, &mut |dst| {
                    format::encode_frame_into(dst, &f, headers_len);
                })
            }
            // One record: encoded straight into the page cache, no copy in between.
            (Some(map), [r]) => {
                let f = fields(0).of(r);
                let headers_len = format::headers_block_len(&r.headers).unwrap_or(0);
                let mut ix = lock(&ww.active.index);
                ww.pending.settle_into(&mut ix);
                ix.push(f.offset - base, start, total, f.timestamp);
                ix.note_key(f.key, f.offset - base, start);
                ww.pending.room = ix.open_granule_room();
                drop(ix);
                map.write_with(start, len, &mut |dst| {
                    format::encode_frame_into(dst, &f, headers_len);
                })
            }
            // A batch is encoded into the (cache-hot) buffer and copied in one go: measured
            // 20% faster for 1,000 records of 100 B than many small stores into cold pages.
            (map, _) => {
                encode_batch(&mut ww.buf, &ww.active, &mut ww.pending, records, fields, start);
                match map {
                    Some(map) => map.write(start, &ww.buf),
                    None => ww.active.file.write_all_at(&ww.buf, start),
                }
            }
        };
        // On failure the index may name frames that are not on disk; nobody reads it again
        // (poisoned), and reopening rebuilds it.
        let w = ww;
        self.poisoning(written.map_err(|e| Error::io("write", &w.active.path, e)))?;
        w.position += total;
        w.next_offset += records.len() as u64;
        if w.map.is_none() && w.position > w.allocated {
            self.preallocate(w);
        }
        if self.opts.durability != Durability::Always {
            self.published.publish_written(w.next_offset, w.position);
        } else {
            // Under the writer lock: a load and a store, no read-modify-write.
            self.write.appends_written.store(self.write.appends_written.load(Ordering::Relaxed) + 1, Ordering::Release);
        }
        Ok((first, w.next_offset))
    }

    /// Checks an append's precondition against the state the writer lock holds.
    fn check_expect(&self, w: &Writer, expect: &Expect<'_>) -> Result<Checked> {
        let topic = || self.dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match *expect {
            Expect::Nothing => Ok(Checked::Holds),
            Expect::NextOffset(expected) if expected == w.next_offset => Ok(Checked::Holds),
            Expect::NextOffset(expected) => {
                Err(Error::OffsetMismatch { topic: topic(), expected, actual: w.next_offset })
            }
            Expect::KeyLast { key, expected, sealed, generation } => {
                // One look at the active segment's map (built before the lock was taken, unless
                // a roll since started a new segment).
                let in_active = {
                    let mut ix = lock(&w.active.index);
                    if ix.keys.is_none() {
                        ix.keys = Some(crate::log::keys::build_active_map(self, &w.active, w.position)?);
                    }
                    ix.keys.as_ref().and_then(|m| m.newest(key))
                };
                let actual = match in_active {
                    Some(o) => Some(o),
                    None if generation == self.write.sealed_generation() => sealed,
                    None if generation == u64::MAX => self.last_offset_for_key_sealed(key)?,
                    None => return Ok(Checked::Stale),
                };
                if actual == expected {
                    Ok(Checked::Holds)
                } else {
                    Err(Error::KeyVersionMismatch { topic: topic(), expected, actual })
                }
            }
        }
    }

    /// Builds the active segment's key map if it is not kept yet: the segment is scanned up to
    /// where it was written without the writer lock (appends go on), then, under the lock, the
    /// frames appended meanwhile are added and the map installed, so every later append goes
    /// into it. A roll in between leaves the new segment for its first lookup.
    pub(crate) fn ensure_active_map(&self) -> Result<()> {
        let writer = self.writer()?;
        let (active, scanned) = {
            let w = lock(writer);
            if lock(&w.active.index).keys.is_some() {
                return Ok(());
            }
            (w.active.clone(), w.position)
        };
        let mut map = crate::log::keys::build_active_map(self, &active, scanned)?;
        let w = lock(writer);
        if !Arc::ptr_eq(&w.active, &active) {
            return Ok(());
        }
        let mut ix = lock(&w.active.index);
        if ix.keys.is_none() {
            crate::log::keys::extend_active_map(self, &active, &mut map, scanned, w.position)?;
            ix.keys = Some(map);
        }
        Ok(())
    }

    /// Checks records against the log's limits as an append would; returns their bytes and
    /// whether one needs the time now.
    #[inline]
    pub(crate) fn validate(&self, records: &[NewRecord<'_>]) -> Result<(u64, bool)> {
        if records
            .iter()
            .any(|r| !r.headers.is_empty() && r.headers.iter().any(|(n, _)| *n == format::reserved_headers::TXN))
        {
            return Err(Error::InvalidHeaders {
                reason: format!(
                    "{:?} is reserved for atomic appends (Store::append_atomic) and cannot be set on a record",
                    format::reserved_headers::TXN
                ),
            });
        }
        self.validate_marked(records)
    }

    /// `validate` without the reserved-header check: for an atomic append's marked parts.
    #[inline]
    pub(crate) fn validate_marked(&self, records: &[NewRecord<'_>]) -> Result<(u64, bool)> {
        let capacity = self.segment_limit() - SEGMENT_HEADER_LEN as u64;
        // A budget's smaller segments may hold less than `record_bytes_max`.
        let body_max = self.opts.record_bytes_max.min(capacity - FRAME_HEADER_LEN as u64);
        let mut total = 0u64;
        let mut needs_now = false;
        for r in records {
            if let Some(k) = r.key.filter(|k| k.len() > KEY_BYTES_MAX) {
                return Err(Error::KeyTooLarge { size: k.len(), max: KEY_BYTES_MAX });
            }
            let headers_len =
                format::headers_block_len(&r.headers).map_err(|reason| Error::InvalidHeaders { reason })?;
            let body = format::record_body_len(r.key, headers_len, r.payload);
            if body > body_max {
                return Err(Error::RecordTooLarge { size: body, max: body_max });
            }
            total += FRAME_HEADER_LEN as u64 + body;
            needs_now |= r.timestamp.is_none();
        }
        if total > capacity {
            return Err(Error::BatchTooLarge { size: total, max: capacity });
        }
        Ok((total, needs_now))
    }

    /// Passes `r` through, poisoning the log when it failed: the one place where a failed write,
    /// truncation, fsync or segment creation on the append path turns into poison.
    #[inline]
    pub(crate) fn poisoning<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.poison(e);
        }
        r
    }
}

/// Encodes `records` (framed by `fields`) into `buf`, to be written at byte `start` of
/// `active`, and indexes them (the pending frames first).
fn encode_batch(
    buf: &mut Vec<u8>,
    active: &Active,
    pending: &mut PendingIndex,
    records: &[NewRecord<'_>],
    fields: impl Fn(usize) -> Framing,
    start: u64,
) {
    let mut ix = lock(&active.index);
    pending.settle_into(&mut ix);
    buf.clear();
    for (i, r) in records.iter().enumerate() {
        let f = fields(i).of(r);
        let headers_len = format::headers_block_len(&r.headers).unwrap_or(0);
        let at = buf.len() as u64;
        let n = format::encode_frame(buf, &f, headers_len);
        ix.push(f.offset - active.base, start + at, n as u64, f.timestamp);
        ix.note_key(f.key, f.offset - active.base, start + at);
    }
    pending.room = ix.open_granule_room();
}

/// What a frame needs besides its record: where it goes and what is durable.
struct Framing {
    offset: u64,
    durable: u64,
    now: i64,
    continues: bool,
}

impl Framing {
    fn of<'a>(&self, r: &'a NewRecord<'a>) -> FrameFields<'a> {
        FrameFields {
            offset: self.offset,
            durable_offset: self.durable.min(self.offset),
            timestamp: r.timestamp.unwrap_or(self.now),
            key: r.key,
            headers: &r.headers,
            payload: r.payload,
            batch_continues: self.continues,
        }
    }
}
