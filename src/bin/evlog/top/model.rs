//! `evlog top`'s figures from successive samples: λ (appends per second) per topic, μ (commits
//! per second) per group, backlog L, W = L/λ (Little's law: how long a record now waits) and the
//! drain time L/(μ−λ), or "growing" when the group falls behind; from the holder's stats file,
//! fsync p50/p99 and records per fsync over the last interval, and the work queues' counts.

use super::sample::{Sample, TopicSample};
use std::collections::VecDeque;
use std::time::Duration;

/// Samples kept: the last minute at one per second (the sparklines).
pub const HISTORY: usize = 60;

/// One group's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub committed: u64,
    pub lag: u64,
    /// Commits per second (records), `None` before two samples.
    pub mu: Option<f64>,
    /// Age of its oldest uncommitted record in seconds (from the holder's stats file).
    pub lag_secs: Option<f64>,
}

/// One topic's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRow {
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
    /// Appends per second, `None` before two samples.
    pub lambda: Option<f64>,
    /// Bytes appended per second (the records' bytes from the stats file, else the files'
    /// growth), `None` before two samples.
    pub bytes_rate: Option<f64>,
    pub groups: Vec<GroupRow>,
    /// λ over the last minute, one value per sample.
    pub lambda_history: Vec<u64>,
    /// μ of all groups together over the last minute, one value per sample.
    pub mu_history: Vec<u64>,
    /// The holder's fsyncs (from its stats file), `None` without one.
    pub fsync: Option<FsyncRow>,
    /// The holder's open work queues on this topic.
    pub queues: Vec<QueueRow>,
    /// The budget and how soon it is full, for a topic with one (from the stats file).
    pub budget: Option<BudgetRow>,
}

/// A budgeted topic's room.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub used_bytes: u64,
    pub budget_bytes: u64,
    /// Seconds until full at the bytes/s it grew by in the last interval; `None` while it does
    /// not grow (or before two samples).
    pub time_to_full: Option<f64>,
}

/// fsync figures over the last interval (since the holder opened the topic when the interval
/// had none).
#[derive(Debug, Clone, PartialEq)]
pub struct FsyncRow {
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub records_per_fsync: Option<f64>,
    /// Whether the figures cover only the last interval.
    pub recent: bool,
}

/// One work queue's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    pub queue: String,
    pub backlog: u64,
    pub ready: u64,
    pub leased: u64,
    pub scheduled: u64,
    pub dead_lettered: u64,
    /// Deliveries per second (first ones and redeliveries), `None` before two samples.
    pub delivered_rate: Option<f64>,
    /// Of those, redeliveries per second.
    pub redelivered_rate: Option<f64>,
    /// Leases that run out within 5 s.
    pub leases_expiring: u64,
}

impl TopicRow {
    pub fn max_lag(&self) -> u64 {
        self.groups.iter().map(|g| g.lag).max().unwrap_or(0)
    }
}

impl GroupRow {
    pub fn wait_secs(&self, lambda: Option<f64>) -> Option<f64> {
        crate::littles_law::wait_secs(self.lag, lambda)
    }

    pub fn drain_secs(&self, lambda: Option<f64>) -> Option<f64> {
        crate::littles_law::drain_secs(self.lag, self.mu, lambda)
    }
}

/// The samples of the last minute.
#[derive(Debug, Default)]
pub struct Model {
    samples: VecDeque<Sample>,
}

fn per_sec(now: u64, before: u64, dt: Duration) -> Option<f64> {
    let secs = dt.as_secs_f64();
    (secs > 0.0).then(|| now.saturating_sub(before) as f64 / secs)
}

impl Model {
    pub fn push(&mut self, s: Sample) {
        self.samples.push_back(s);
        while self.samples.len() > HISTORY + 1 {
            self.samples.pop_front();
        }
    }

    /// The rows of the latest sample, rates against the one before.
    pub fn rows(&self) -> Vec<TopicRow> {
        let Some(last) = self.samples.back() else { return Vec::new() };
        let prev = self.samples.len().checked_sub(2).and_then(|i| self.samples.get(i));
        let mut rows = Vec::new();
        for (name, t) in &last.topics {
            let before = prev.and_then(|p| p.topics.get(name).map(|b| (p.at, b)));
            let lambda = before.and_then(|(at, b)| per_sec(t.next_offset, b.next_offset, last.at.duration_since(at)));
            let groups = (t.groups.iter())
                .map(|(g, &committed)| {
                    let mu = before.and_then(|(at, b)| {
                        let c = *b.groups.get(g)?;
                        per_sec(committed, c, last.at.duration_since(at))
                    });
                    GroupRow {
                        group: g.clone(),
                        committed,
                        lag: t.next_offset.saturating_sub(committed),
                        mu,
                        lag_secs: t.lag_ms.get(g).map(|&ms| ms as f64 / 1e3),
                    }
                })
                .collect();
            let fsync = t.fsync.as_ref().map(|now| {
                let earlier = before.and_then(|(_, b)| b.fsync.as_ref()).filter(|e| e.fsyncs < now.fsyncs);
                let (latency, fsyncs, records) = match earlier {
                    Some(e) => {
                        (now.latency.since(&e.latency), now.fsyncs - e.fsyncs, now.synced_records - e.synced_records)
                    }
                    None => (now.latency, now.fsyncs, now.synced_records),
                };
                FsyncRow {
                    p50: latency.quantile(0.5),
                    p99: latency.quantile(0.99),
                    records_per_fsync: (fsyncs > 0).then(|| records as f64 / fsyncs as f64),
                    recent: earlier.is_some(),
                }
            });
            let queues = (t.queues.values())
                .map(|q| QueueRow {
                    queue: q.queue.clone(),
                    backlog: q.backlog,
                    ready: q.ready,
                    leased: q.leased,
                    scheduled: q.scheduled,
                    dead_lettered: q.dead_lettered,
                    delivered_rate: before.and_then(|(at, b)| {
                        per_sec(q.delivered, b.queues.get(&q.queue)?.delivered, last.at.duration_since(at))
                    }),
                    redelivered_rate: before.and_then(|(at, b)| {
                        per_sec(q.redelivered, b.queues.get(&q.queue)?.redelivered, last.at.duration_since(at))
                    }),
                    leases_expiring: q.leases_expiring,
                })
                .collect();
            let budget = t.budget_bytes.zip(t.used_bytes).map(|(budget_bytes, used_bytes)| {
                let growth = before.and_then(|(at, b)| per_sec(used_bytes, b.used_bytes?, last.at.duration_since(at)));
                BudgetRow {
                    used_bytes,
                    budget_bytes,
                    time_to_full: growth
                        .filter(|&g| g > 0.0)
                        .map(|g| budget_bytes.saturating_sub(used_bytes) as f64 / g),
                }
            });
            let bytes_rate = before.and_then(|(at, b)| {
                let dt = last.at.duration_since(at);
                match (t.used_bytes, b.used_bytes) {
                    (Some(now), Some(then)) => per_sec(now, then, dt),
                    _ => per_sec(t.bytes, b.bytes, dt),
                }
            });
            rows.push(TopicRow {
                topic: name.clone(),
                records: t.next_offset,
                bytes: t.bytes,
                lambda,
                bytes_rate,
                groups,
                lambda_history: self.history(name, |t| t.next_offset),
                mu_history: self.history(name, |t| t.groups.values().sum()),
                fsync,
                queues,
                budget,
            });
        }
        rows
    }

    /// The rate of `count` between each pair of successive samples of the last minute (λ of
    /// the end offset, μ of the groups' commits summed).
    fn history(&self, topic: &str, count: impl Fn(&TopicSample) -> u64) -> Vec<u64> {
        let offsets: Vec<_> =
            self.samples.iter().filter_map(|s| s.topics.get(topic).map(|t| (s.at, count(t)))).collect();
        offsets
            .windows(2)
            .map(|w| per_sec(w[1].1, w[0].1, w[1].0.duration_since(w[0].0)).unwrap_or(0.0) as u64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sample(at: Instant, next: u64, committed: u64) -> Sample {
        let mut t = TopicSample { next_offset: next, ..TopicSample::default() };
        t.groups.insert("g".into(), committed);
        Sample { at, topics: [("t".to_string(), t)].into_iter().collect() }
    }

    #[test]
    fn rates_lag_wait_and_drain_follow_littles_law() {
        let t0 = Instant::now();
        let mut m = Model::default();
        m.push(sample(t0, 1_000, 400));
        assert_eq!(m.rows()[0].lambda, None, "no rate from one sample");
        m.push(sample(t0 + Duration::from_secs(2), 1_200, 800));
        let row = &m.rows()[0];
        assert_eq!(row.lambda, Some(100.0));
        let g = &row.groups[0];
        assert_eq!((g.lag, g.mu), (400, Some(200.0)));
        assert_eq!(g.wait_secs(row.lambda), Some(4.0), "W = L/λ");
        assert_eq!(g.drain_secs(row.lambda), Some(4.0), "L/(μ−λ)");
        m.push(sample(t0 + Duration::from_secs(3), 1_400, 900));
        let row = &m.rows()[0];
        assert_eq!(row.groups[0].drain_secs(row.lambda), None, "μ < λ: growing");
        assert_eq!(row.lambda_history, vec![100, 200]);
        assert_eq!(row.mu_history, vec![200, 100]);
    }

    #[test]
    fn a_budgeted_topic_is_full_in_its_room_over_the_bytes_per_second_it_grew_by() {
        let t0 = Instant::now();
        let with = |at, used| {
            let mut s = sample(at, 100, 0);
            let t = s.topics.get_mut("t").expect("t");
            (t.used_bytes, t.budget_bytes) = (Some(used), Some(10_000));
            s
        };
        let mut m = Model::default();
        m.push(with(t0, 4_000));
        assert_eq!(m.rows()[0].budget.as_ref().map(|b| b.time_to_full), Some(None), "one sample: no rate");
        m.push(with(t0 + Duration::from_secs(2), 6_000));
        let b = m.rows()[0].budget.clone().expect("a budget");
        assert_eq!((b.used_bytes, b.time_to_full), (6_000, Some(4.0)), "4,000 bytes left at 1,000 bytes/s");
    }

    #[test]
    fn fsync_figures_cover_the_last_interval_once_there_are_two_samples() {
        use super::super::sample::FsyncSample;
        use evlog::log::{LATENCY_BUCKETS, LatencyHistogram};
        let t0 = Instant::now();
        let with = |at, fsyncs, records, bucket: usize, n| {
            let mut s = sample(at, 100, 0);
            let mut counts = [0u64; LATENCY_BUCKETS];
            counts[bucket] = n;
            s.topics.get_mut("t").expect("t").fsync =
                Some(FsyncSample { fsyncs, synced_records: records, latency: LatencyHistogram::from_counts(counts) });
            s
        };
        let mut m = Model::default();
        // 10 fsyncs of 128..160 µs (bucket 24), then 10 more of 2048..2560 µs (bucket 40).
        m.push(with(t0, 10, 50, 24, 10));
        let f = m.rows()[0].fsync.clone().expect("fsync");
        assert_eq!((f.p99, f.records_per_fsync, f.recent), (Some(Duration::from_micros(160)), Some(5.0), false));
        let mut later = with(t0 + Duration::from_secs(1), 20, 250, 24, 10);
        if let Some(fs) = later.topics.get_mut("t").and_then(|t| t.fsync.as_mut()) {
            let mut counts = *fs.latency.counts();
            counts[40] = 10;
            fs.latency = LatencyHistogram::from_counts(counts);
        }
        m.push(later);
        let f = m.rows()[0].fsync.clone().expect("fsync");
        assert_eq!((f.p50, f.records_per_fsync, f.recent), (Some(Duration::from_micros(2560)), Some(20.0), true));
    }
}
