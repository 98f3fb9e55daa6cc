//! The stats file, `<root>/evlog.stats` (FORMAT.md § Stats file): the figures of the topics,
//! groups and open queues of the process that holds the store, rewritten every
//! `StoreOptions::stats_interval` by a thread of its own, so that `evlog top` and `evlog report`
//! in another process see fsync latencies, group commits and queue counts without `evlog serve`.
//!
//! Invariants:
//! - Advisory: written to `evlog.stats.tmp` and renamed over the last one, never fsynced. A crash
//!   may leave an older file, none, or one cut short; a reader takes a file only whole (its
//!   first line and its `end` line), so a torn one reads as absent, never as wrong figures.
//! - Never opens, creates or keeps a topic: it reads the topics open in this process through a
//!   maintenance hold (a delete waits for it), and the queues open in this process.

use crate::error::{Error, Result};
use crate::log::LatencyHistogram;
use crate::storage::OpenMode;
use crate::store::{Store, StoreInner, maintenance::Stop, validate_name};
use std::fmt::Write as _;
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
    /// Acks since the queue opened.
    pub acked: u64,
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
        if text.len() > STATS_FILE_BYTES_MAX {
            return None;
        }
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut file = StatsFile::default();
        let mut ended = false;
        for line in lines {
            if ended {
                return None;
            }
            let mut words = line.split(' ');
            match words.next()? {
                "written" => {
                    file.written_ms = words.next()?.parse().ok()?;
                    file.pid = field(&mut words, "pid")?;
                }
                "topic" => file.topics.push(parse_topic(&mut words)?),
                "group" => file.groups.push(GroupFigures {
                    topic: name(words.next()?)?,
                    group: name(words.next()?)?,
                    committed: field(&mut words, "committed")?,
                }),
                "queue" => file.queues.push(QueueFigures {
                    topic: name(words.next()?)?,
                    queue: name(words.next()?)?,
                    backlog: field(&mut words, "backlog")?,
                    ready: field(&mut words, "ready")?,
                    leased: field(&mut words, "leased")?,
                    scheduled: field(&mut words, "scheduled")?,
                    dead_lettered: field(&mut words, "dead")?,
                    delivered: field(&mut words, "delivered")?,
                    acked: field(&mut words, "acked")?,
                }),
                "end" => ended = true,
                _ => return None,
            }
            if words.next().is_some() {
                return None;
            }
        }
        ended.then_some(file)
    }

    /// The file's text.
    fn render(&self) -> String {
        let mut s = format!("{MAGIC}\nwritten {} pid {}\n", self.written_ms, self.pid);
        for t in &self.topics {
            let buckets: Vec<String> = t
                .fsync_latency
                .counts()
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(i, n)| format!("{i}:{n}"))
                .collect();
            let _ = writeln!(
                s,
                "topic {} first {} next {} bytes {} fsyncs {} synced {} fsync_us {}",
                t.topic,
                t.first_offset,
                t.next_offset,
                t.bytes,
                t.fsyncs,
                t.synced_records,
                if buckets.is_empty() { "-".to_string() } else { buckets.join(",") }
            );
        }
        for g in &self.groups {
            let _ = writeln!(s, "group {} {} committed {}", g.topic, g.group, g.committed);
        }
        for q in &self.queues {
            let _ = writeln!(
                s,
                "queue {} {} backlog {} ready {} leased {} scheduled {} dead {} delivered {} acked {}",
                q.topic, q.queue, q.backlog, q.ready, q.leased, q.scheduled, q.dead_lettered, q.delivered, q.acked
            );
        }
        s.push_str("end\n");
        s
    }
}

/// A name as the file holds it: one that `validate_name` accepts (no space, no newline).
fn name(word: &str) -> Option<String> {
    validate_name(word).ok().map(|()| word.to_string())
}

/// The value after the word `label`.
fn field<'a, T: std::str::FromStr>(words: &mut impl Iterator<Item = &'a str>, label: &str) -> Option<T> {
    if words.next()? != label {
        return None;
    }
    words.next()?.parse().ok()
}

fn parse_topic<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<TopicFigures> {
    let mut t = TopicFigures {
        topic: name(words.next()?)?,
        first_offset: field(words, "first")?,
        next_offset: field(words, "next")?,
        bytes: field(words, "bytes")?,
        fsyncs: field(words, "fsyncs")?,
        synced_records: field(words, "synced")?,
        fsync_latency: LatencyHistogram::default(),
    };
    let buckets: String = field(words, "fsync_us")?;
    let mut counts = [0u64; crate::log::LATENCY_BUCKETS];
    if buckets != "-" {
        for pair in buckets.split(',') {
            let (i, n) = pair.split_once(':')?;
            *counts.get_mut(i.parse::<usize>().ok()?)? = n.parse().ok()?;
        }
    }
    t.fsync_latency = LatencyHistogram::from_counts(counts);
    Some(t)
}

impl Store {
    /// The figures the stats file holds, gathered now (see the module's invariants).
    fn stats_figures(&self) -> Result<StatsFile> {
        let mut file =
            StatsFile { written_ms: crate::clock::now_ms(), pid: std::process::id(), ..StatsFile::default() };
        for name in self.open_topic_names() {
            let Some(hold) = self.hold_topic(&name, false)? else { continue };
            let Some(t) = hold.topic() else { continue };
            let counters = t.stats();
            file.topics.push(TopicFigures {
                topic: name.clone(),
                first_offset: t.first_offset(),
                next_offset: t.next_offset(),
                bytes: t.size_bytes()?,
                fsyncs: counters.fsyncs,
                synced_records: counters.synced_records,
                fsync_latency: counters.fsync_latency,
            });
            for g in self.group_infos(t, &name)? {
                file.groups.push(GroupFigures { topic: name.clone(), group: g.group, committed: g.committed });
            }
        }
        if let Some(queue_figures) = self.inner().queue_figures.get() {
            file.queues = queue_figures(self);
        }
        Ok(file)
    }

    /// Writes the stats file now (what the stats thread does every `stats_interval`).
    pub fn write_stats_file(&self) -> Result<()> {
        let text = self.stats_figures()?.render();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_file_reads_back_as_written_and_only_when_whole() {
        let mut latency = [0u64; crate::log::LATENCY_BUCKETS];
        latency[40] = 12;
        latency[41] = 3;
        let file = StatsFile {
            written_ms: 1_800_000_000_000,
            pid: 42,
            topics: vec![TopicFigures {
                topic: "orders".into(),
                first_offset: 1,
                next_offset: 99,
                bytes: 4096,
                fsyncs: 15,
                synced_records: 98,
                fsync_latency: LatencyHistogram::from_counts(latency),
            }],
            groups: vec![GroupFigures { topic: "orders".into(), group: "billing".into(), committed: 50 }],
            queues: vec![QueueFigures {
                topic: "orders".into(),
                queue: "w".into(),
                backlog: 7,
                ready: 1,
                leased: 2,
                scheduled: 3,
                dead_lettered: 4,
                delivered: 5,
                acked: 6,
            }],
        };
        let text = file.render();
        assert_eq!(StatsFile::parse(&text), Some(file));
        let cut = &text[..text.len() - "end\n".len()];
        assert_eq!(StatsFile::parse(cut), None, "a file cut short reads as absent");
        assert_eq!(StatsFile::parse(&text.replace("next 99", "next x")), None, "a bad number reads as absent");
        assert_eq!(StatsFile::parse(&text.replace("evlog-stats 1", "evlog-stats 2")), None, "another version");
        assert_eq!(StatsFile::parse(&text.replace("41:3", "88:3")), None, "a bucket past the last");
    }

    #[test]
    fn format_md_specifies_the_stats_file_this_code_writes() {
        let spec = include_str!("../../FORMAT.md");
        let section = spec.split("## Stats file").nth(1).expect("FORMAT.md has a Stats file section");
        assert!(section.contains(&format!("`<root>/{STATS_FILE}`")));
        assert!(section.contains(&format!("\n{MAGIC}\n")), "the first line");
        assert!(section.contains(&format!("over `{}` buckets", crate::log::LATENCY_BUCKETS)));
        assert!(section.contains(&format!("at most {} MiB", STATS_FILE_BYTES_MAX >> 20)));
    }
}
