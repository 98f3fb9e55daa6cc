//! What a `Log` handle has done since it opened: the counters the append path keeps, and the
//! `LogStats` that `Log::stats` reads from them.

use crate::log::latency::{AtomicHistogram, LatencyHistogram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Those fsyncs' durations by bucket: `fsync_latency.quantile(0.99)` is their p99 (see
    /// [`LatencyHistogram`]).
    pub fsync_latency: LatencyHistogram,
    /// Records those fsyncs made durable (each counted once): `synced_records / fsyncs` is the
    /// records per fsync that group commit achieved.
    pub synced_records: u64,
    /// Whether appends currently go through a writable map of the active segment
    /// ([`WritePath::Auto`](crate::log::WritePath::Auto) where the storage allows) rather than
    /// `pwrite`.
    pub mapped_writes: bool,
    /// Index files found missing or invalid and rebuilt from their segment since open (the
    /// active segment's at open included).
    pub index_rebuilds: u64,
    /// Sealed segments currently mapped.
    pub mapped_segments: usize,
}

impl LogStats {
    /// Records made durable per append-path fsync (0 before the first).
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 { 0.0 } else { self.synced_records as f64 / self.fsyncs as f64 }
    }
}
/// The counters behind [`LogStats`]: written by the append path through the methods below.
#[derive(Debug)]
pub(crate) struct Counters {
    /// fsyncs of data files on the append path (group commit leaders and rolls).
    fsyncs: AtomicU64,
    /// Records those fsyncs made durable.
    synced_records: AtomicU64,
    /// Sum and maximum of the durations of all data fsyncs counted in `fsyncs`.
    fsync_nanos_total: AtomicU64,
    fsync_nanos_max: AtomicU64,
    fsync_latency: AtomicHistogram,
    /// Whether the writer currently appends through a writable map.
    mapped_writes: AtomicBool,
    /// `next_offset` when this handle opened the log (appends since = now - this).
    opened_next_offset: u64,
    opened_at: Instant,
}

impl Counters {
    pub fn new(opened_next_offset: u64) -> Self {
        Counters {
            fsyncs: AtomicU64::new(0),
            synced_records: AtomicU64::new(0),
            fsync_nanos_total: AtomicU64::new(0),
            fsync_nanos_max: AtomicU64::new(0),
            fsync_latency: AtomicHistogram::new(),
            mapped_writes: AtomicBool::new(false),
            opened_next_offset,
            opened_at: Instant::now(),
        }
    }

    /// An append-path fsync is about to start.
    pub fn fsync_started(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// An append-path fsync took `nanos`.
    pub fn fsync_took(&self, nanos: u64) {
        self.fsync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        self.fsync_latency.record(nanos);
    }

    /// `records` more records became durable.
    pub fn synced(&self, records: u64) {
        self.synced_records.fetch_add(records, Ordering::Relaxed);
    }

    pub fn set_mapped_writes(&self, mapped: bool) {
        self.mapped_writes.store(mapped, Ordering::Relaxed);
    }

    /// The counters as one [`LogStats`], for a log whose next offset is `next_offset`.
    pub fn snapshot(&self, next_offset: u64, index_rebuilds: u64, mapped_segments: usize) -> LogStats {
        let fsyncs = self.fsyncs.load(Ordering::Relaxed);
        let total = self.fsync_nanos_total.load(Ordering::Relaxed);
        LogStats {
            appended: next_offset.saturating_sub(self.opened_next_offset),
            since_open: self.opened_at.elapsed(),
            fsyncs,
            fsync_mean: Duration::from_nanos(total.checked_div(fsyncs).unwrap_or(0)),
            fsync_max: Duration::from_nanos(self.fsync_nanos_max.load(Ordering::Relaxed)),
            fsync_latency: self.fsync_latency.snapshot(),
            synced_records: self.synced_records.load(Ordering::Relaxed),
            mapped_writes: self.mapped_writes.load(Ordering::Relaxed),
            index_rebuilds,
            mapped_segments,
        }
    }
}
