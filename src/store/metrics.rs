//! A snapshot of a topic and its groups for monitoring: sizes, rates, lags, fsyncs.
//!
//! Rates are measured between two `Store::stats` calls for the same topic (the store keeps
//! the previous sample of each topic and group), so a monitor that calls every N seconds gets
//! the mean rate over those N seconds. Nothing is added to the append path: appends are counted
//! by offsets, fsyncs by the counters the writer keeps anyway.

use crate::error::Result;
use crate::log::{LogStats, lock};
use crate::store::Store;
use std::time::Instant;

/// Shortest interval between two samples that yields a rate.
const RATE_INTERVAL_MIN_SECS: f64 = 1e-6;

/// One topic's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// First offset still stored.
    pub first_offset: u64,
    /// Offset the next append gets.
    pub next_offset: u64,
    /// Segment files.
    pub segments: usize,
    /// Bytes of the topic's files on disk.
    pub bytes_on_disk: u64,
    /// Appends per second (λ) since the previous `metrics` call for this topic; `None` on the
    /// first call.
    pub append_rate: Option<f64>,
    /// Appends and data fsyncs (count, mean and longest duration) of this process's handle.
    pub counters: LogStats,
    /// Every consumer group of the topic.
    pub groups: Vec<GroupStats>,
    /// What background maintenance (or `run_maintenance`) did to this topic since the store
    /// opened: records removed by retention and budgets, segments compacted and compressed.
    pub maintenance: crate::store::maintenance::MaintenanceStats,
}

/// One consumer group's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GroupStats {
    /// The group.
    pub group: String,
    /// Committed offset (the next record it will get).
    pub committed: u64,
    /// Records after the committed offset.
    pub lag_records: u64,
    /// Age of the oldest record it has not committed, by that record's timestamp, in seconds
    /// (0 when it is caught up).
    pub lag_seconds: f64,
    /// Commits per second in records (μ) since the previous `metrics` call; `None` on the first.
    pub consume_rate: Option<f64>,
}

use crate::clock::now_ms;

impl Store {
    /// Figures of `topic` and its groups; see [`TopicStats`].
    /// The topic must exist ([`Error::NotFound`](crate::error::Error::NotFound) otherwise: statistics
    /// never create a topic), and a delete beside this call waits for it instead of failing.
    pub fn stats(&self, topic: &str) -> Result<TopicStats> {
        let hold = self.hold_existing(topic)?;
        let Some(t) = hold.topic() else {
            return Err(crate::error::Error::NotFound { kind: "topic", name: topic.to_string() });
        };
        let now = Instant::now();
        let next = t.next_offset();
        let rate = |key: String, value: u64| {
            let mut samples = lock(&self.inner().metric_samples);
            let prev = samples.insert(key, (now, value));
            prev.and_then(|(at, v)| {
                let secs = now.duration_since(at).as_secs_f64();
                (secs >= RATE_INTERVAL_MIN_SECS).then(|| value.saturating_sub(v) as f64 / secs)
            })
        };
        let append_rate = rate(topic.to_string(), next);
        let mut groups = Vec::new();
        for g in self.group_infos(t, topic)? {
            let lag_seconds = match (g.lag, t.read(g.committed.max(t.first_offset()))?) {
                (0, _) | (_, None) => 0.0,
                (_, Some(r)) => (now_ms().saturating_sub(r.timestamp())).max(0) as f64 / 1e3,
            };
            let consume_rate = rate(format!("{topic}\0{}", g.group), g.committed);
            groups.push(GroupStats {
                group: g.group,
                committed: g.committed,
                lag_records: g.lag,
                lag_seconds,
                consume_rate,
            });
        }
        Ok(TopicStats {
            topic: topic.to_string(),
            first_offset: t.first_offset(),
            next_offset: next,
            segments: t.segment_count(),
            bytes_on_disk: t.size_bytes()?,
            append_rate,
            counters: t.stats(),
            groups,
            maintenance: lock(&self.inner().maintenance_by_topic).get(topic).cloned().unwrap_or_default(),
        })
    }
}
