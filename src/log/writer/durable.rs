//! Durability: group commit (one leader fsyncs for every append written before it started),
//! checkpoints after syncs, the `Interval` flusher thread, and the clean close.
//!
//! Invariants:
//! - A record is acknowledged under `Always` only after an fsync that started after its write
//!   completed; the others wait for the leader.
//! - A checkpoint is written only after the data it points at was fsynced.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::Checkpoint;
use crate::log::index;
use crate::log::options::Durability;
use crate::log::publish::Active;
use crate::log::writer::Writer;
use crate::log::{Shared, lock};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

impl Shared {
    /// Returns once every offset below `target` is durable; shares fsyncs with other callers.
    pub fn sync_to(&self, target: u64) -> Result<()> {
        self.write.group_commit.wait_until(
            || self.write.synced_offset.load(Ordering::Acquire) >= target,
            || self.lead_sync(),
            || self.check_poison(),
        )
    }

    /// One group commit: fsync everything written so far, then publish and maybe checkpoint.
    pub(crate) fn lead_sync(&self) -> Result<()> {
        // Gather the appends the last fsync released (see `sync::gather`).
        crate::sync::gather(
            self.write.last_fsync_nanos.load(Ordering::Relaxed),
            self.write.last_round_appends.load(Ordering::Relaxed),
            || {
                self.write
                    .appends_written
                    .load(Ordering::Acquire)
                    .saturating_sub(self.write.appends_synced.load(Ordering::Acquire))
            },
            || self.write.appenders.load(Ordering::Acquire) as u64,
        );
        let (active, upto, end, appends) = {
            let w = lock(self.writer()?);
            (w.active.clone(), w.next_offset, w.position, self.write.appends_written.load(Ordering::Acquire))
        };
        let took = self.timed_data_sync(&active)?;
        self.write.last_fsync_nanos.store(took, Ordering::Relaxed);
        // Leaders take turns (the group commit runs one at a time), so a plain swap suffices.
        let before = self.write.appends_synced.swap(appends, Ordering::AcqRel);
        self.write.last_round_appends.store(appends.saturating_sub(before), Ordering::Relaxed);
        self.mark_synced(upto);
        if self.opts.durability == Durability::Always {
            // Under `Os`/`Interval` every write was published as it was made.
            self.published.publish(&active, upto, end);
        }
        self.maybe_checkpoint(&active, upto, end);
        Ok(())
    }

    /// After a sync in `Always`/`Interval` mode: a new checkpoint once enough bytes were synced
    /// since the last one, so recovery scans little. The data it points at was just fsynced.
    pub(crate) fn maybe_checkpoint(&self, active: &Arc<Active>, upto: u64, end: u64) {
        let Some(writer) = &self.writer else { return };
        let mut w = lock(writer);
        if !Arc::ptr_eq(&w.active, active) {
            return;
        }
        let since = match w.checkpoint.last {
            Some(c) if c.segment_base == active.base => end.saturating_sub(c.position),
            _ => u64::MAX,
        };
        if since < self.opts.checkpoint_interval_bytes {
            return;
        }
        let mut ix = lock(&active.index);
        w.pending.settle_into(&mut ix);
        index::write_index_files(self.opts.storage.as_ref(), &self.dir, &ix);
        drop(ix);
        // A failed checkpoint write loses nothing: recovery falls back to the previous one.
        let _ = w.checkpoint.write(Checkpoint { segment_base: active.base, position: end, next_offset: upto });
    }

    /// fdatasyncs a segment on the append path (poisoning on failure), counted and timed for
    /// metrics. Returns how long it took, in nanoseconds.
    pub(crate) fn timed_data_sync(&self, active: &Active) -> Result<u64> {
        self.counters.fsync_started();
        let started = Instant::now();
        self.poisoning(active.file.sync_data().map_err(|e| Error::io("fsync", &active.path, e)))?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.fsync_took(took);
        Ok(took)
    }

    /// Records that every offset below `upto` is durable, counting the records that became so.
    pub(crate) fn mark_synced(&self, upto: u64) {
        let before = self.write.synced_offset.fetch_max(upto, Ordering::AcqRel);
        self.counters.synced(upto.saturating_sub(before));
    }

    /// fsyncs everything appended so far.
    pub fn sync_all(&self) -> Result<()> {
        let target = lock(self.writer()?).next_offset;
        self.sync_to(target)
    }

    /// Clean shutdown: fsync, write the active index and a checkpoint at the very end.
    pub fn close(&self) -> Result<()> {
        let Some(writer) = &self.writer else { return Ok(()) };
        let mut w = lock(writer);
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        self.check_poison()?;
        self.poisoning(self.trim(&mut w))?;
        self.poisoning(w.active.file.sync_data().map_err(|e| Error::io("fsync", &w.active.path, e)))?;
        self.write.synced_offset.fetch_max(w.next_offset, Ordering::AcqRel);
        self.published.publish(&w.active, w.next_offset, w.position);
        let ww = &mut *w;
        let mut ix = lock(&ww.active.index);
        ww.pending.settle_into(&mut ix);
        index::write_index_files(self.opts.storage.as_ref(), &self.dir, &ix);
        drop(ix);
        let c = Checkpoint { segment_base: w.active.base, position: w.position, next_offset: w.next_offset };
        w.checkpoint.write(c)
    }
}

/// Marks the writer closed without any final I/O (a simulated crash).
pub(crate) fn mark_closed(w: &mut Writer) {
    w.closed = true;
}

/// Tells the `Interval` flusher thread to stop.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    stop: Mutex<bool>,
    cv: Condvar,
}

impl Shutdown {
    pub fn signal(&self) {
        *lock(&self.stop) = true;
        self.cv.notify_all();
    }

    /// Waits up to `every`; whether the stop was signalled.
    fn wait(&self, every: Duration) -> bool {
        let stop = lock(&self.stop);
        let (stop, _) = self.cv.wait_timeout_while(stop, every, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *stop
    }
}

/// Starts the `Durability::Interval` flusher: fsyncs what was appended, every `every`, until the
/// log shuts down.
pub(crate) fn spawn_flusher(shared: Arc<Shared>, every: Duration) -> Result<JoinHandle<()>> {
    let dir = shared.dir.clone();
    std::thread::Builder::new()
        .name("evlog-flusher".into())
        .spawn(move || {
            while !shared.shutdown.wait(every) {
                if shared.sync_all().is_err() {
                    return; // poisoned: appends report it
                }
            }
        })
        .map_err(|e| Error::io("start flusher thread for", dir, e))
}
