//! Background maintenance: every `StoreOptions::maintenance_interval` a thread applies, to each
//! topic this `Store` has open, its retention, its disk budget (`drop-oldest`) and, when its
//! configuration asks, compaction by key and compression of its sealed segments. [`Store::run_maintenance`] runs one pass now (what
//! tests and the CLI use; the thread can be switched off with `maintenance_interval: None`).
//!
//! The thread holds the store only weakly between passes. Dropping the last `Store` handle
//! stops it and waits for it (a pass in progress finishes first), so the directory lock is let
//! go by the time the drop returns.

use crate::error::Result;
use crate::store::{Store, StoreInner};
use crate::sync::lock;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Default of [`StoreOptions::maintenance_interval`](crate::StoreOptions::maintenance_interval).
pub const MAINTENANCE_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);

/// What maintenance did since the store was opened (a pass adds to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceStats {
    /// Passes run (by the thread or by `run_maintenance`).
    pub passes: u64,
    /// Records removed by retention.
    pub retention_records_removed: u64,
    /// Records removed to keep `drop-oldest` budgets.
    pub budget_records_removed: u64,
    /// Segments rewritten by compaction, and the bytes it freed.
    pub segments_compacted: u64,
    /// Bytes compaction freed.
    pub compaction_bytes_freed: u64,
    /// Sealed segments compressed.
    pub segments_compressed: u64,
    /// Bytes compression freed.
    pub compression_bytes_freed: u64,
    /// Steps that failed (each topic's step is tried again next pass).
    pub errors: u64,
    /// The last failure, with its topic.
    pub last_error: Option<String>,
}

impl MaintenanceStats {
    /// Adds `other`'s counts to these (its last error, if any, becomes the last one).
    fn add(&mut self, other: &MaintenanceStats) {
        self.passes += other.passes;
        self.retention_records_removed += other.retention_records_removed;
        self.budget_records_removed += other.budget_records_removed;
        self.segments_compacted += other.segments_compacted;
        self.compaction_bytes_freed += other.compaction_bytes_freed;
        self.segments_compressed += other.segments_compressed;
        self.compression_bytes_freed += other.compression_bytes_freed;
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error.clone_from(&other.last_error);
        }
    }
}

/// The stop signal shared by the store and its maintenance thread.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    pub fn stop(&self) {
        *lock(&self.stopped) = true;
        self.cv.notify_all();
    }

    /// Waits `d` or until stopped; true when stopped.
    pub(crate) fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.stopped);
        let (g, _) = self.cv.wait_timeout_while(g, d, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *g
    }
}

/// Starts the maintenance thread of `inner`, every `interval`.
pub(crate) fn spawn(inner: &Arc<StoreInner>, interval: Duration) -> Option<std::thread::JoinHandle<()>> {
    let weak: Weak<StoreInner> = Arc::downgrade(inner);
    let stop = inner.maintenance_stop.clone();
    let name = "evlog-maintenance".to_string();
    // A store without its thread still works (run_maintenance); nothing to report here.
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            while !stop.wait(interval) {
                let Some(inner) = weak.upgrade() else { return };
                let _ = Store::internal(inner).run_maintenance();
            }
        })
        .ok()
}

impl Store {
    /// Runs one maintenance pass now over the topics this store has open: retention
    /// (`enforce_retention`), `drop-oldest` budgets, and compaction of topics configured with
    /// `compact_by_key`. A failing step is counted and reported in [`MaintenanceStats`] and does
    /// not stop the others.
    pub fn run_maintenance(&self) -> Result<MaintenanceStats> {
        crate::trace::span!("evlog.maintenance");
        let names = self.open_topic_names();
        let mut pass = MaintenanceStats { passes: 1, ..MaintenanceStats::default() };
        for name in names {
            let mut one = MaintenanceStats { passes: 1, ..MaintenanceStats::default() };
            if let Err(e) = self.maintain_topic(&name, &mut one) {
                one.errors += 1;
                one.last_error = Some(format!("topic {name:?}: {e}"));
            }
            lock(&self.inner().maintenance_by_topic).entry(name).or_default().add(&one);
            one.passes = 0;
            pass.add(&one);
        }
        lock(&self.inner().maintenance_stats).add(&pass);
        Ok(pass)
    }

    /// One topic's step of a pass, holding it (never opening it: a topic deleted since the pass
    /// listed it is skipped, and a delete waits for the step instead of failing).
    fn maintain_topic(&self, name: &str, pass: &mut MaintenanceStats) -> Result<()> {
        let Some(hold) = self.hold_topic(name, false)? else { return Ok(()) };
        let Some(topic) = hold.topic() else { return Ok(()) };
        pass.retention_records_removed += self.retention_of(topic)?.records_removed;
        pass.budget_records_removed += topic.enforce_budget()?;
        let config = self.topic_config(name)?;
        if config.compact_by_key {
            let r = topic.compact(&config.compact_options())?;
            pass.segments_compacted += r.segments_rewritten;
            pass.compaction_bytes_freed += r.bytes_before.saturating_sub(r.bytes_after);
        }
        // After compaction, which writes plain segments.
        if config.compression == crate::store::config::Compression::Lz4 {
            let r = topic.compress()?;
            pass.segments_compressed += r.segments_compressed;
            pass.compression_bytes_freed += r.bytes_before.saturating_sub(r.bytes_after);
        }
        Ok(())
    }

    /// What maintenance did since the store was opened.
    pub fn maintenance_stats(&self) -> MaintenanceStats {
        lock(&self.inner().maintenance_stats).clone()
    }
}
