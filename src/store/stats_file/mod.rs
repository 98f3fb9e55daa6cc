//! The stats file, `<root>/evlog.stats` (FORMAT.md § Stats file): the figures of the topics,
//! groups and open queues of the process that holds the store, what recovery found when it opened
//! them, and a sample per minute of the last hour, rewritten every `StoreOptions::stats_interval`
//! by a thread of its own, so that `evlog top` and `evlog report` in another process see fsync
//! latencies, group commits, queue counts and rates without `evlog serve`. `text.rs` writes and
//! parses the text.
//!
//! Invariants:
//! - Advisory: written to `evlog.stats.tmp` and renamed over the last one, never fsynced. A crash
//!   may leave an older file, none, or one cut short; a reader takes a file only whole (its
//!   first line and its `end` line), so a torn one reads as absent, never as wrong figures.
//! - One writer at a time (`stats_write`): the temp name is shared.
//! - Never opens, creates or keeps a topic: it reads the topics open in this process through a
//!   maintenance hold (a delete waits for it), and the queues open in this process.

#[cfg(test)]
mod tests;
mod text;

use crate::error::{Error, Result};
use crate::log::LatencyHistogram;
use crate::storage::OpenMode;
use crate::store::{Store, StoreInner, Topic, maintenance::Stop};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The file's name in the store's root.
pub const STATS_FILE: &str = "evlog.stats";
/// Default of [`StoreOptions::stats_interval`](crate::StoreOptions::stats_interval).
pub const STATS_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// The first line of version 1.
const MAGIC: &str = "evlog-stats 1";
/// Longest file a reader takes (a store with thousands of topics stays far below it).
pub const STATS_FILE_BYTES_MAX: usize = 16 << 20;

/// The figures of the work queues open in a store (the queue layer's `open_queue_figures`).
pub(crate) type QueueFiguresFn = fn(&Store) -> Vec<QueueFigures>;

/// The figures one stats file holds: what [`StatsFile::parse`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StatsFile {
    /// When it was written, milliseconds since the Unix epoch (wall clock).
    pub written_ms: i64,
    /// The writing process.
    pub pid: u32,
    /// The topics open in the writing process, by name.
    pub topics: Vec<TopicFigures>,
    /// Their consumer groups.
    pub groups: Vec<GroupFigures>,
    /// The work queues open in the writing process.
    pub queues: Vec<QueueFigures>,
    /// What recovery found when the writing process opened each topic.
    pub recoveries: Vec<RecoveryFigures>,
    /// A sample per minute of the last hour: each topic's next offset, each group's commit.
    pub history: Vec<History>,
}

/// What recovery found when the holder opened a topic (its `RecoveryReport`, in counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryFigures {
    /// The topic.
    pub topic: String,
    /// A valid checkpoint was used (only the tail was scanned).
    pub checkpoint_used: bool,
    /// Bytes of frames read and verified.
    pub scanned_bytes: u64,
    /// Frames read and verified.
    pub scanned_records: u64,
    /// Bytes cut from the end of the active segment (a torn or unsynced tail).
    pub truncated_bytes: u64,
    /// Whole frames inside those bytes, never acknowledged as durable.
    pub dropped_records: u64,
    /// Files removed (a crashed roll's segment, stale temporary files, orphan indexes).
    pub removed_files: u64,
    /// Files moved into `quarantine/` by a repair.
    pub quarantined_files: u64,
    /// Preallocated zeros cut from the active segment's end.
    pub zero_tail_bytes: u64,
    /// The active segment's index was rebuilt.
    pub index_rebuilt: bool,
    /// A repair cut corruption away.
    pub repaired: bool,
}

/// One series of per-minute samples: a topic's next offset (`group` `None`) or a group's
/// committed offset, as `(milliseconds since the Unix epoch, value)`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// The topic.
    pub topic: String,
    /// The group, for a group's commits.
    pub group: Option<String>,
    /// The samples.
    pub points: Vec<(i64, u64)>,
}

impl History {
    /// The rate per second between each pair of successive samples: `(end of the interval in
    /// ms, per second)`.
    pub fn rates(&self) -> Vec<(i64, f64)> {
        self.points
            .windows(2)
            .filter_map(|w| {
                let ((t0, v0), (t1, v1)) = (w.first()?, w.get(1)?);
                let secs = (t1 - t0) as f64 / 1e3;
                (secs > 0.0).then(|| (*t1, v1.saturating_sub(*v0) as f64 / secs))
            })
            .collect()
    }
}

/// One topic's line.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TopicFigures {
    /// The topic.
    pub topic: String,
    /// First offset still stored.
    pub first_offset: u64,
    /// Offset the next append gets.
    pub next_offset: u64,
    /// Bytes of the topic's files.
    pub bytes: u64,
    /// Bytes its records take (`Log::used_bytes`: what a budget counts).
    pub used_bytes: u64,
    /// Its budget, if it has one.
    pub budget_bytes: Option<u64>,
    /// Append-path fsyncs of the writing process since it opened the topic.
    pub fsyncs: u64,
    /// Records those fsyncs made durable.
    pub synced_records: u64,
    /// Those fsyncs' durations.
    pub fsync_latency: LatencyHistogram,
}

/// One consumer group's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupFigures {
    /// The topic.
    pub topic: String,
    /// The group.
    pub group: String,
    /// Its committed offset (the next record it gets).
    pub committed: u64,
    /// Age of the oldest record it has not committed, by that record's timestamp, in
    /// milliseconds (0 when it is caught up).
    pub lag_ms: i64,
}

/// One work queue's line (a queue open in the writing process).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueFigures {
    /// The topic the queue's jobs are in.
    pub topic: String,
    /// The queue (its group name).
    pub queue: String,
    /// Jobs appended and never delivered.
    pub backlog: u64,
    /// Jobs delivered before and waiting for redelivery (due now or later).
    pub ready: u64,
    /// Jobs leased and not yet acked.
    pub leased: u64,
    /// Scheduled jobs parked until their time, since the queue opened.
    pub scheduled: u64,
    /// Jobs moved to dead letters since the queue opened.
    pub dead_lettered: u64,
    /// Deliveries since the queue opened (redeliveries included).
    pub delivered: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
    /// Acks since the queue opened.
    pub acked: u64,
    /// Leases that run out within 5 s.
    pub leases_expiring: u64,
}

impl StatsFile {
    /// Reads the stats file of the store at `root`: `None` when there is none, or it is not
    /// whole (see the module's invariants).
    pub fn read(root: &std::path::Path) -> Option<StatsFile> {
        use std::io::Read as _;
        let f = std::fs::File::open(root.join(STATS_FILE)).ok()?;
        let mut text = String::new();
        f.take(STATS_FILE_BYTES_MAX as u64 + 1).read_to_string(&mut text).ok()?;
        StatsFile::parse(&text)
    }

    /// Parses a stats file's text; `None` unless it is whole and every line well formed.
    pub fn parse(text: &str) -> Option<StatsFile> {
        text::parse(text)
    }
}

/// Writes of the stats file between two history samples: a minute at the default interval.
pub(crate) const HISTORY_EVERY_WRITES: u64 = 60;
/// Samples kept: the last hour at one a minute, and the sample an hour ago.
pub(crate) const HISTORY_SAMPLES: usize = 61;

/// A series' name: a topic, and a group of it for a group's commits.
type SeriesKey = (String, Option<String>);

/// The holder's per-minute samples, kept in memory between writes of the stats file.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    writes: u64,
    points: VecDeque<(i64, BTreeMap<SeriesKey, u64>)>,
}

impl Samples {
    /// Takes a sample of `file` every `HISTORY_EVERY_WRITES` writes (the first included) and
    /// puts the series into `file.history`.
    fn record(&mut self, file: &mut StatsFile) {
        if self.writes.is_multiple_of(HISTORY_EVERY_WRITES) {
            let mut values: BTreeMap<SeriesKey, u64> = BTreeMap::new();
            for t in &file.topics {
                values.insert((t.topic.clone(), None), t.next_offset);
            }
            for g in &file.groups {
                values.insert((g.topic.clone(), Some(g.group.clone())), g.committed);
            }
            self.points.push_back((file.written_ms, values));
            while self.points.len() > HISTORY_SAMPLES {
                self.points.pop_front();
            }
        }
        self.writes += 1;
        let mut series: BTreeMap<&SeriesKey, Vec<(i64, u64)>> = BTreeMap::new();
        for (at, values) in &self.points {
            for (key, v) in values {
                series.entry(key).or_default().push((*at, *v));
            }
        }
        file.history = (series.into_iter())
            .map(|((topic, group), points)| History { topic: topic.clone(), group: group.clone(), points })
            .collect();
    }
}

/// A topic's line and its recovery line.
fn topic_figures(name: &str, t: &Topic) -> Result<(TopicFigures, RecoveryFigures)> {
    let counters = t.stats();
    let figures = TopicFigures {
        topic: name.to_string(),
        first_offset: t.first_offset(),
        next_offset: t.next_offset(),
        bytes: t.size_bytes()?,
        used_bytes: t.used_bytes()?,
        budget_bytes: t.budget().map(|b| b.bytes_max),
        fsyncs: counters.fsyncs,
        synced_records: counters.synced_records,
        fsync_latency: counters.fsync_latency,
    };
    let r = t.recovery_report();
    let recovery = RecoveryFigures {
        topic: name.to_string(),
        checkpoint_used: r.checkpoint_used,
        scanned_bytes: r.scanned_bytes,
        scanned_records: r.scanned_records,
        truncated_bytes: r.truncated_bytes,
        dropped_records: r.dropped_records,
        removed_files: r.removed_files.len() as u64,
        quarantined_files: r.quarantined_files.len() as u64,
        zero_tail_bytes: r.zero_tail_bytes,
        index_rebuilt: r.active_index_rebuilt,
        repaired: r.repaired_corruption.is_some(),
    };
    Ok((figures, recovery))
}

impl Store {
    /// The figures the stats file holds, gathered now (see the module's invariants).
    fn stats_figures(&self) -> Result<StatsFile> {
        let mut file =
            StatsFile { written_ms: crate::clock::now_ms(), pid: std::process::id(), ..StatsFile::default() };
        for name in self.open_topic_names() {
            let Some(hold) = self.hold_topic(&name, false)? else { continue };
            let Some(t) = hold.topic() else { continue };
            let (figures, recovery) = topic_figures(&name, t)?;
            file.topics.push(figures);
            file.recoveries.push(recovery);
            for g in self.group_infos(t, &name)? {
                // A record that cannot be read here only leaves the age unknown (0).
                let oldest = if g.lag == 0 { None } else { t.read(g.committed.max(t.first_offset())).ok().flatten() };
                let lag_ms = oldest.map_or(0, |r| file.written_ms.saturating_sub(r.timestamp()).max(0));
                file.groups.push(GroupFigures { topic: name.clone(), group: g.group, committed: g.committed, lag_ms });
            }
        }
        if let Some(queue_figures) = self.inner().queue_figures.get() {
            file.queues = queue_figures(self);
        }
        crate::sync::lock(&self.inner().stats_samples).record(&mut file);
        Ok(file)
    }

    /// Writes the stats file now (what the stats thread does every `stats_interval`).
    pub fn write_stats_file(&self) -> Result<()> {
        // The stats thread and explicit calls share one temp name: one writer at a time, or one
        // would rename the other's temp file away under it.
        let _one_writer = crate::sync::lock(&self.inner().stats_write);
        let text = text::render(&self.stats_figures()?);
        let storage = self.inner().storage();
        let (tmp, path) = (self.inner().root.join("evlog.stats.tmp"), self.inner().root.join(STATS_FILE));
        let f = storage.open(&tmp, OpenMode::CreateTruncate).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all_at(text.as_bytes(), 0).map_err(|e| Error::io("write", &tmp, e))?;
        storage.rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))
    }
}

/// Starts the stats thread of `inner`, every `interval`, stopped with the maintenance thread.
pub(crate) fn spawn(
    inner: &Arc<StoreInner>,
    interval: Duration,
    stop: Arc<Stop>,
) -> Option<std::thread::JoinHandle<()>> {
    let weak: Weak<StoreInner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("evlog-stats".to_string())
        .spawn(move || {
            while !stop.wait(interval) {
                let Some(inner) = weak.upgrade() else { return };
                // Advisory: a failed write leaves the last file (or none); readers see its age.
                let _ = Store::internal(inner).write_stats_file();
            }
        })
        .ok()
}
