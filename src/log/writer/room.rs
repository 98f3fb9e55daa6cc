//! Room for an append: rolls, preallocation and write maps, the disk budget and free-space
//! reserve, removal of old segments (retention, drop-oldest) and the swap of a rewritten one.
//!
//! Invariants:
//! - A roll fsyncs the old segment before creating the new one, so sealed segments are whole.
//! - Nothing is written when making room fails; only a failed write, truncation, fsync or
//!   segment creation poisons the log.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, Checkpoint, SEGMENT_HEADER_LEN};
use crate::log::budget::{Budget, WhenFull};
use crate::log::index::{self, IndexBuilder};
use crate::log::options::{Durability, RESERVE_CHECK_BYTES, WritePath};
use crate::log::publish::Active;
#[cfg(feature = "store")]
use crate::log::record::NewRecord;
use crate::log::segment;
use crate::log::writer::{BudgetState, PendingIndex, Writer};
use crate::log::{Shared, lock};
use crate::storage::INTERNAL;
#[cfg(feature = "store")]
use std::ops::Range;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A block of zeros for preallocation.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// What an append allocates itself when it needs space the background allocation has not
/// reached yet (the first append into a new segment, say): enough for the next few appends.
const SYNC_ALLOCATE_BYTES: u64 = 64 << 10;

impl Shared {
    /// Makes the active segment's write map when the options and the storage allow one;
    /// otherwise (or when making it fails) appends use pwrite.
    pub(crate) fn open_write_map(&self, w: &mut Writer) {
        w.map = None;
        w.ahead_asked = 0;
        w.write_back_asked = 0;
        if self.opts.write_path == WritePath::Auto && self.opts.durability != Durability::Always {
            w.map = w.active.file.map_write(self.opts.segment_bytes_max, INTERNAL).ok();
        }
        if let Some(m) = &w.map {
            w.allocated = w.allocated.max(m.allocated());
        }
        self.counters.set_mapped_writes(w.map.is_some());
    }

    /// Makes sure the map has blocks for `[position, position + total)`, keeping
    /// `preallocate_bytes` ahead: in the background when the storage can (asked once less than
    /// three quarters of it is left), on the append otherwise. Nothing is written, so
    /// a failure (a full disk) does not poison the log: the append fails with `StorageFull` and
    /// the next one tries again. A file system that cannot allocate sends this and later appends
    /// to the pwrite path.
    pub(crate) fn reserve(&self, w: &mut Writer, total: u64) -> Result<()> {
        let need = w.position + total;
        let Some(map) = &mut w.map else { return Ok(()) };
        let interval = self.opts.write_back_interval_bytes;
        if interval > 0 && w.position - w.write_back_asked >= interval {
            // Bytes below `position` are whole frames that are never written again.
            map.write_back_behind(w.position);
            w.write_back_asked = w.position;
        }
        let allocated = map.allocated();
        let limit = self.segment_limit();
        let ahead = (need + self.opts.preallocate_bytes).min(limit).max(need);
        let background = w.ahead_asked > allocated
            || (allocated < limit
                && allocated.saturating_sub(need) < self.opts.preallocate_bytes / 4 * 3
                && map.allocate_ahead(ahead)
                && {
                    w.ahead_asked = ahead;
                    true
                });
        if need <= allocated {
            return Ok(());
        }
        // Outran the background (or a new segment): allocate what this append needs now, in a
        // small step when the rest follows behind.
        let target = if background { (need + SYNC_ALLOCATE_BYTES).min(ahead) } else { ahead };
        match map.allocate(target) {
            Ok(()) => {
                w.allocated = w.allocated.max(map.allocated());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                w.map = None;
                self.counters.set_mapped_writes(false);
                Ok(())
            }
            Err(e) => Err(Error::io("allocate", &w.active.path, e)),
        }
    }

    /// The size at which the active segment rolls.
    pub(crate) fn segment_limit(&self) -> u64 {
        self.write.segment_bytes_limit.load(Ordering::Relaxed)
    }

    /// Makes room for `total` bytes under the writer lock: rolls when the active segment is
    /// full, then holds the budget (if any) by its policy. Nothing is written if it fails.
    pub(crate) fn make_room<'a>(&self, mut w: MutexGuard<'a, Writer>, total: u64) -> Result<MutexGuard<'a, Writer>> {
        let mut deadline = None;
        loop {
            if w.closed {
                return Err(Error::Poisoned { path: self.dir.clone(), cause: "log closed".into() });
            }
            self.check_poison()?;
            if w.position + total > self.segment_limit() && w.position > SEGMENT_HEADER_LEN as u64 {
                // A roll creates a file: look at the free space first.
                w.reserve_credit = 0;
                self.check_reserve(&mut w, total)?;
                self.roll(&mut w)?;
            }
            self.check_reserve(&mut w, total)?;
            let Some(b) = &w.budget else { return Ok(w) };
            let budget = b.budget;
            if b.sealed_bytes + w.position + total <= budget.bytes_max {
                return Ok(w);
            }
            match budget.when_full {
                WhenFull::Error => return Err(self.topic_full(&budget)),
                WhenFull::DropOldest => {
                    let second = self.published.view().bases.get(1).copied();
                    let Some(end) = second else { return Err(self.topic_full(&budget)) };
                    crate::trace::span!("evlog.budget.drop_oldest", dir = %self.dir.display(), end);
                    self.remove_segments_below(&mut w, end)?;
                }
                WhenFull::Block => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + budget.block_timeout);
                    let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                        return Err(self.topic_full(&budget));
                    };
                    w = match self.write.space_freed.wait_timeout(w, left) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
        }
    }

    /// Refuses `total` more bytes while free space is below `disk_reserve_bytes` (looked at
    /// once per `RESERVE_CHECK_BYTES`); nothing is written and the log is not poisoned.
    pub(crate) fn check_reserve(&self, w: &mut Writer, total: u64) -> Result<()> {
        let reserve = self.opts.disk_reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        if total <= w.reserve_credit {
            w.reserve_credit -= total;
            return Ok(());
        }
        let free = self.opts.storage.available_bytes(&self.dir).map_err(|e| Error::io("statvfs", &self.dir, e))?;
        if let Some(free) = free
            && free < reserve.saturating_add(total)
        {
            let source = std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{free} bytes free, below disk_reserve_bytes = {reserve} plus this append"),
            );
            return Err(Error::StorageFull { op: "reserve space", path: self.dir.clone(), source });
        }
        w.reserve_credit = RESERVE_CHECK_BYTES;
        Ok(())
    }

    pub(crate) fn topic_full(&self, budget: &Budget) -> Error {
        let topic = self.dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Error::TopicFull { topic, path: self.dir.clone(), bytes_max: budget.bytes_max }
    }

    /// Sets or lifts the budget (see `Log::set_budget`).
    pub fn set_budget(&self, budget: Option<Budget>) -> Result<()> {
        let writer = self.writer()?;
        if let Some(b) = &budget {
            b.validate()?;
        }
        let mut w = lock(writer);
        w.budget = match budget {
            None => None,
            Some(budget) => {
                let bases = self.published.view().bases.clone();
                let sealed_bytes = crate::log::consecutive(&bases)
                    .map(|(base, _)| self.segment_file_bytes(base))
                    .sum::<Result<u64>>()?;
                Some(BudgetState { budget, sealed_bytes })
            }
        };
        let limit = budget.map_or(self.opts.segment_bytes_max, |b| b.segment_bytes(self.opts.segment_bytes_max));
        self.write.segment_bytes_limit.store(limit, Ordering::Relaxed);
        // Appends blocked under the old budget look again.
        self.write.space_freed.notify_all();
        Ok(())
    }

    /// Drops the oldest sealed segments while a `DropOldest` budget is exceeded (after it was
    /// lowered, say); returns the records removed. Other policies only act on appends.
    pub fn enforce_budget(&self) -> Result<u64> {
        let Some(writer) = &self.writer else { return Ok(0) };
        let mut w = lock(writer);
        let mut removed = 0;
        while let Some(b) = &w.budget
            && b.budget.when_full == WhenFull::DropOldest
            && b.sealed_bytes + w.position > b.budget.bytes_max
        {
            let second = self.published.view().bases.get(1).copied();
            let Some(end) = second else { break };
            removed += self.remove_segments_below(&mut w, end)?;
        }
        Ok(removed)
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<Budget> {
        self.writer.as_ref().and_then(|w| lock(w).budget.as_ref().map(|b| b.budget))
    }

    /// Writes zeros ahead of the data end (up to `preallocate_bytes`, within the segment), so the
    /// next appends overwrite allocated blocks. Best effort: on failure (a full disk) the file
    /// simply grows with each append. Zeros never decode as a frame; recovery trims them.
    pub(crate) fn preallocate(&self, w: &mut Writer) {
        w.allocated = w.position;
        let target = (w.position + self.opts.preallocate_bytes).min(self.segment_limit());
        let mut at = w.position;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64);
            if w.active.file.write_all_at(ZEROS.get(..n as usize).unwrap_or(&ZEROS), at).is_err() {
                return;
            }
            at += n;
            w.allocated = at;
        }
    }

    /// Cuts preallocated zeros off the active segment (before it is sealed or closed). The
    /// write map goes first: a map must never outlive its file's end.
    pub(crate) fn trim(&self, w: &mut Writer) -> Result<()> {
        // The file's own length, not only what the writer counted: dropping the map waits for
        // its background allocation, which may have grown the file past what the writer last
        // saw, and a zero-fill write that failed half way (torn) left bytes past `allocated`.
        w.map = None;
        let len = w.active.file.len().map_err(|e| Error::io("stat", &w.active.path, e))?;
        w.allocated = w.allocated.max(len);
        if w.allocated > w.position {
            w.active.file.set_len(w.position).map_err(|e| Error::io("truncate", &w.active.path, e))?;
            w.allocated = w.position;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset.
    pub(crate) fn roll(&self, w: &mut Writer) -> Result<()> {
        crate::trace::span!("evlog.roll", dir = %self.dir.display(), next_offset = w.next_offset);
        let old = w.active.clone();
        let old_bytes = w.position;
        self.poisoning(self.trim(w))?;
        self.timed_data_sync(&old)?;
        self.mark_synced(w.next_offset);
        {
            let mut ix = lock(&old.index);
            w.pending.settle_into(&mut ix);
            index::write_index_files(self.opts.storage.as_ref(), &self.dir, &ix);
            crate::log::keys::write_at_roll(self, &ix);
            lock(&self.time_ranges).insert(old.base, ix.as_ref().time_range());
        }
        let base = w.next_offset;
        let file = match segment::create_segment(self.opts.storage.as_ref(), &self.dir, base) {
            Ok(file) => file,
            Err(e @ Error::StorageFull { .. }) => {
                // No room for the new segment's header: nothing of a record was written and the
                // old segment is whole and synced, so the log stays usable. Forget the
                // half-made file (a later roll creates it again) and let the append fail. No
                // directory fsync: nothing acknowledged depends on the removal, and if a power
                // cut undoes it, recovery drops a header-less segment and keeps a header-only
                // one as an empty active segment.
                let path = self.dir.join(format::segment_file_name(base));
                let _ = self.opts.storage.remove_file(&path);
                lock(&self.time_ranges).remove(&old.base);
                return Err(e);
            }
            Err(e) => return self.poisoning(Err(e)),
        };
        let _ = w.checkpoint.write(Checkpoint {
            segment_base: base,
            position: SEGMENT_HEADER_LEN as u64,
            next_offset: base,
        });
        let path = self.dir.join(format::segment_file_name(base));
        let index = IndexBuilder::new(base, self.opts.index_interval_bytes);
        let active = Arc::new(Active::new(base, path, file, index, &self.opts, true));
        w.active = active.clone();
        w.pending = PendingIndex::new();
        w.position = SEGMENT_HEADER_LEN as u64;
        w.allocated = w.position;
        if let Some(b) = &mut w.budget {
            b.sealed_bytes += old_bytes;
        }
        self.open_write_map(w);
        {
            let mut v = self.published.view_mut();
            v.bases.push(base);
            v.active = active;
            self.published.set_visible(base, SEGMENT_HEADER_LEN as u64);
        }
        self.write.sealed_changed();
        self.published.wake_waiters();
        Ok(())
    }

    /// Removes sealed segments entirely below `offset`, oldest first, then fsyncs the directory.
    /// Retention: takes the rewrite lock first (one owner of sealed files at a time).
    pub fn remove_before(&self, offset: u64) -> Result<u64> {
        let writer = self.writer()?;
        let _owner = self.rewrite_owner();
        let mut w = lock(writer);
        self.remove_segments_below(&mut w, offset)
    }

    /// Seals the active segment if it holds any record (an explicit compaction's first step):
    /// a roll like the one a full segment makes, fsync included.
    pub fn seal_active(&self) -> Result<()> {
        let mut w = lock(self.writer()?);
        if w.closed {
            return Err(Error::Poisoned { path: self.dir.clone(), cause: "log closed".into() });
        }
        self.check_poison()?;
        if w.position > SEGMENT_HEADER_LEN as u64 {
            self.roll(&mut w)?;
        }
        Ok(())
    }

    /// Fails with `ReadOnly` unless this handle writes.
    pub fn writable(&self) -> Result<()> {
        self.writer().map(|_| ())
    }

    /// Puts the rewrite `tmp` of sealed segment `base` (records up to `end`) in its place
    /// (`rewrite.rs`): under the writer lock, so retention cannot remove the segment meanwhile;
    /// the old index files go first (a crash then only costs a rebuild), then the rename and the
    /// directory fsync, then the new index files. Returns false, touching nothing, when the
    /// segment is no longer there or `still_as_read` (asked under the writer lock) says it
    /// changed since the rewrite read it.
    pub fn swap_sealed(
        &self,
        base: u64,
        end: u64,
        tmp: &std::path::Path,
        index: &IndexBuilder,
        still_as_read: impl FnOnce() -> Result<bool>,
    ) -> Result<bool> {
        let mut w = lock(self.writer()?);
        let present = {
            let v = self.published.view();
            v.bases.iter().position(|&b| b == base).is_some_and(|i| v.bases.get(i + 1) == Some(&end))
        };
        if !present || !still_as_read()? {
            return Ok(false);
        }
        let storage = self.opts.storage.as_ref();
        let path = self.dir.join(format::segment_file_name(base));
        let old_bytes = self.segment_file_bytes(base)?;
        index::remove_index_files(storage, &self.dir, base);
        storage.rename(tmp, &path).map_err(|e| Error::io("rename", tmp, e))?;
        storage.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        index::write_index_files(storage, &self.dir, index);
        let new_bytes = self.segment_file_bytes(base)?;
        if let Some(b) = &mut w.budget {
            b.sealed_bytes = b.sealed_bytes.saturating_sub(old_bytes) + new_bytes;
        }
        lock(&self.cache).forget(base);
        lock(&self.time_ranges).remove(&base);
        self.forget_key_index(base);
        self.write.sealed_changed();
        // Appends blocked by a full budget look again.
        self.write.space_freed.notify_all();
        Ok(true)
    }

    /// `remove_before` under the writer lock; wakes appends waiting for space.
    pub(crate) fn remove_segments_below(&self, w: &mut Writer, offset: u64) -> Result<u64> {
        let doomed: Vec<u64> = {
            let mut v = self.published.view_mut();
            let keep_from = crate::log::consecutive(&v.bases).take_while(|&(_, end)| end <= offset).count();
            v.bases.drain(..keep_from).collect::<Vec<u64>>()
        };
        let Some(&new_first) = self.published.view().bases.first() else { return Ok(0) };
        lock(&self.cache).forget_outside(new_first, u64::MAX);
        let storage = self.opts.storage.as_ref();
        for &base in &doomed {
            let path = self.dir.join(format::segment_file_name(base));
            if let Some(b) = &mut w.budget {
                b.sealed_bytes = b.sealed_bytes.saturating_sub(self.segment_file_bytes(base)?);
            }
            storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            index::remove_index_files(storage, &self.dir, base);
            self.forget_key_index(base);
            lock(&self.time_ranges).remove(&base);
        }
        if !doomed.is_empty() {
            self.write.sealed_changed();
            storage.sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
            self.write.space_freed.notify_all();
        }
        Ok(doomed.first().map_or(0, |&b| new_first - b))
    }

    /// Takes the writer lock with room made for `records` (an atomic append's marked part:
    /// checked against every limit, the budget under its policy, poison, free space), so that
    /// writing them later under the same lock cannot be refused. An atomic append holds one on
    /// each of its topics from before its commit until its parts are written.
    #[cfg(feature = "store")]
    pub(crate) fn reserve_batch(&self, records: &[NewRecord<'_>]) -> Result<Reservation<'_>> {
        let writer = self.writer()?;
        self.check_poison()?;
        let (total, _) = self.validate_marked(records)?;
        let mut w = self.make_room(lock(writer), total)?;
        self.reserve(&mut w, total)?;
        Ok(Reservation { shared: self, w, total })
    }
}

/// A log's writer lock, held with room made for one batch (`Shared::reserve_batch`).
#[cfg(feature = "store")]
pub(crate) struct Reservation<'a> {
    shared: &'a Shared,
    w: MutexGuard<'a, Writer>,
    total: u64,
}

#[cfg(feature = "store")]
impl Reservation<'_> {
    /// Writes `records` (of the size reserved) under the held lock and lets it go; returns
    /// their offsets. Under `Always` they are published once `Shared::sync_to` made them
    /// durable (the caller syncs after letting every lock go).
    pub fn write(mut self, records: &[NewRecord<'_>], timestamp_now: i64) -> Result<Range<u64>> {
        let (total, _) = self.shared.validate_marked(records)?;
        if total != self.total {
            return Err(Error::InvalidOptions {
                reason: format!("an atomic append's part is {total} bytes, {} were reserved", self.total),
            });
        }
        let (first, end) = self.shared.write_locked(&mut self.w, records, total, timestamp_now)?;
        Ok(first..end)
    }
}

#[cfg(feature = "store")]
impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("dir", &self.shared.dir).field("total", &self.total).finish()
    }
}
