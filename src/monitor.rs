//! The store's figures through the `metrics` facade, for whatever recorder the application
//! installed (Prometheus, StatsD, OpenTelemetry…), and the Prometheus text endpoint of
//! `evlog serve --metrics`.
//!
//! Nothing is recorded on the append path: [`record_metrics`] reads the counters and sizes the
//! store keeps anyway (`Store::stats`, the open queues' counts) and records them when called,
//! so an application calls it from its own timer and a scrape calls it just before rendering.
//! Counters are absolute (`Counter::absolute`): Prometheus derives λ and μ with `rate()`.
//!
//! Names (labels): `evlog_topic_appended_records_total`, `evlog_topic_first_offset`,
//! `evlog_topic_bytes`, `evlog_topic_segments`, `evlog_topic_fsyncs_total`,
//! `evlog_topic_fsync_mean_seconds`, `evlog_topic_fsync_max_seconds`,
//! `evlog_topic_fsync_p50_seconds`, `evlog_topic_fsync_p99_seconds` (bucket upper bounds, see
//! `LatencyHistogram::quantile`; 0 before the first fsync),
//! `evlog_topic_synced_records_total`, `evlog_topic_retained_removed_records_total` (topic);
//! `evlog_group_committed_offset`, `evlog_group_lag_records`, `evlog_group_lag_seconds`
//! (topic, group); `evlog_queue_backlog`, `evlog_queue_ready`, `evlog_queue_leased`,
//! `evlog_queue_scheduled`, `evlog_queue_delivered_total`, `evlog_queue_acked_total`,
//! `evlog_queue_dead_lettered_total`, `evlog_queue_redelivered_total`,
//! `evlog_queue_leases_expiring` (topic, queue) for the queues open in this process.

use crate::error::Result;
use crate::store::Store;
use ::metrics::{counter, gauge};

/// The names recorded, for documentation and tests.
pub const METRIC_NAMES: &[&str] = &[
    "evlog_topic_appended_records_total",
    "evlog_topic_first_offset",
    "evlog_topic_bytes",
    "evlog_topic_segments",
    "evlog_topic_fsyncs_total",
    "evlog_topic_fsync_mean_seconds",
    "evlog_topic_fsync_max_seconds",
    "evlog_topic_fsync_p50_seconds",
    "evlog_topic_fsync_p99_seconds",
    "evlog_topic_synced_records_total",
    "evlog_topic_retained_removed_records_total",
    "evlog_group_committed_offset",
    "evlog_group_lag_records",
    "evlog_group_lag_seconds",
    "evlog_queue_backlog",
    "evlog_queue_ready",
    "evlog_queue_leased",
    "evlog_queue_scheduled",
    "evlog_queue_delivered_total",
    "evlog_queue_acked_total",
    "evlog_queue_dead_lettered_total",
    "evlog_queue_redelivered_total",
    "evlog_queue_leases_expiring",
];

/// Records every topic's, group's and open queue's figures through the `metrics` facade (the
/// names above). Reads each topic once (`Store::stats`, which also moves its rate window).
pub fn record_metrics(store: &Store) -> Result<()> {
    for name in store.topics()? {
        let s = match store.stats(&name) {
            Ok(s) => s,
            // Deleted since the listing: nothing to record.
            Err(crate::error::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let t = [("topic", name.clone())];
        counter!("evlog_topic_appended_records_total", &t).absolute(s.next_offset);
        gauge!("evlog_topic_first_offset", &t).set(s.first_offset as f64);
        gauge!("evlog_topic_bytes", &t).set(s.bytes_on_disk as f64);
        gauge!("evlog_topic_segments", &t).set(s.segments as f64);
        counter!("evlog_topic_fsyncs_total", &t).absolute(s.counters.fsyncs);
        gauge!("evlog_topic_fsync_mean_seconds", &t).set(s.counters.fsync_mean.as_secs_f64());
        gauge!("evlog_topic_fsync_max_seconds", &t).set(s.counters.fsync_max.as_secs_f64());
        let fsync_q = |q| s.counters.fsync_latency.quantile(q).map_or(0.0, |d| d.as_secs_f64());
        gauge!("evlog_topic_fsync_p50_seconds", &t).set(fsync_q(0.5));
        gauge!("evlog_topic_fsync_p99_seconds", &t).set(fsync_q(0.99));
        counter!("evlog_topic_synced_records_total", &t).absolute(s.counters.synced_records);
        let removed = s.maintenance.retention_records_removed + s.maintenance.budget_records_removed;
        counter!("evlog_topic_retained_removed_records_total", &t).absolute(removed);
        for g in &s.groups {
            let l = [("topic", name.clone()), ("group", g.group.clone())];
            gauge!("evlog_group_committed_offset", &l).set(g.committed as f64);
            gauge!("evlog_group_lag_records", &l).set(g.lag_records as f64);
            gauge!("evlog_group_lag_seconds", &l).set(g.lag_seconds);
        }
    }
    for (topic, queue, q) in crate::queue::open_queue_stats(store) {
        let l = [("topic", topic), ("queue", queue)];
        gauge!("evlog_queue_backlog", &l).set(q.backlog as f64);
        gauge!("evlog_queue_ready", &l).set(q.ready as f64);
        gauge!("evlog_queue_leased", &l).set(q.leased as f64);
        gauge!("evlog_queue_scheduled", &l).set(q.scheduled as f64);
        counter!("evlog_queue_delivered_total", &l).absolute(q.delivered);
        counter!("evlog_queue_acked_total", &l).absolute(q.acked);
        counter!("evlog_queue_dead_lettered_total", &l).absolute(q.dead_lettered);
        counter!("evlog_queue_redelivered_total", &l).absolute(q.redelivered);
        gauge!("evlog_queue_leases_expiring", &l).set(q.leases_expiring as f64);
    }
    Ok(())
}
