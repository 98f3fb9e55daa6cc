//! What `evlog top` reads each second, and from where: through the serving process's socket
//! when the store's holder serves it (end offsets and group commits over Kafka's APIs), else
//! read-only from the topics' files (end offsets); and in both cases the holder's stats file
//! (`evlog.stats`, FORMAT.md § Stats file) when it is fresh: fsync latencies and counts, group
//! commits, the holder's open work queues.

use crate::remote::Remote;
use evlog::log::LatencyHistogram;
use evlog::store::{QueueFigures, StatsFile};
use evlog::{Log, Options};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One topic at one moment.
#[derive(Debug, Clone, Default)]
pub struct TopicSample {
    pub next_offset: u64,
    pub bytes: u64,
    /// Group → committed offset.
    pub groups: BTreeMap<String, u64>,
    /// The holder's fsyncs of this topic, from its stats file.
    pub fsync: Option<FsyncSample>,
    /// The holder's open work queues on this topic, by queue name, from its stats file.
    pub queues: BTreeMap<String, QueueFigures>,
    /// Group → age of its oldest uncommitted record in ms, from the holder's stats file.
    pub lag_ms: BTreeMap<String, i64>,
    /// Bytes the records take and the budget, from the holder's stats file.
    pub used_bytes: Option<u64>,
    pub budget_bytes: Option<u64>,
}

/// A topic's append-path fsyncs as the holder counted them since it opened the topic.
#[derive(Debug, Clone, Default)]
pub struct FsyncSample {
    pub fsyncs: u64,
    pub synced_records: u64,
    pub latency: LatencyHistogram,
}

/// A stats file older than this is a holder that stopped writing it (or is gone): not used.
const STATS_FRESH_MS: i64 = 5_000;

/// Every topic at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub topics: BTreeMap<String, TopicSample>,
}

/// Where samples come from.
pub enum Source {
    /// The serving process, through its socket.
    Served(Remote),
    /// The files, read-only (open logs kept between samples).
    Files(BTreeMap<String, Log>),
}

impl Source {
    pub fn open(dir: &Path) -> Source {
        match Remote::connect(dir) {
            Some(r) => Source::Served(r),
            None => Source::Files(BTreeMap::new()),
        }
    }

    /// What the view's header says about the source.
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Served(_) => "through evlog serve",
            Source::Files(_) => "read-only: files + holder's stats file",
        }
    }

    pub fn sample(&mut self, dir: &Path) -> Result<Sample, String> {
        let names = topic_names(dir)?;
        let mut topics = BTreeMap::new();
        for name in &names {
            let bytes = dir_bytes(&dir.join("topics").join(name));
            topics.insert(name.clone(), TopicSample { bytes, ..TopicSample::default() });
        }
        match self {
            Source::Served(remote) => {
                for (name, t) in topics.iter_mut() {
                    t.next_offset = remote.offset_at(name, -1)?;
                }
                for group in remote.groups()? {
                    for (topic, committed) in remote.committed_all(&group)? {
                        if let Some(t) = topics.get_mut(&topic) {
                            t.groups.insert(group.clone(), committed);
                        }
                    }
                }
            }
            Source::Files(logs) => {
                for (name, t) in topics.iter_mut() {
                    if !logs.contains_key(name) {
                        let opened = Log::open_read_only(dir.join("topics").join(name), Options::default());
                        if let Ok(log) = opened {
                            logs.insert(name.clone(), log);
                        }
                    }
                    t.next_offset = logs.get(name).map_or(0, Log::next_offset);
                }
            }
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if let Some(file) = StatsFile::read(dir).filter(|f| now_ms - f.written_ms <= STATS_FRESH_MS) {
            merge_stats_file(&mut topics, file);
        }
        Ok(Sample { at: Instant::now(), topics })
    }
}

/// Adds what the holder's stats file says: fsyncs and queues, and the group commits the files
/// alone cannot show (the socket's answer, when there is one, is kept).
fn merge_stats_file(topics: &mut BTreeMap<String, TopicSample>, file: StatsFile) {
    for t in file.topics {
        if let Some(s) = topics.get_mut(&t.topic) {
            s.fsync =
                Some(FsyncSample { fsyncs: t.fsyncs, synced_records: t.synced_records, latency: t.fsync_latency });
            s.used_bytes = Some(t.used_bytes);
            s.budget_bytes = t.budget_bytes;
        }
    }
    for g in file.groups {
        if let Some(s) = topics.get_mut(&g.topic) {
            s.lag_ms.insert(g.group.clone(), g.lag_ms);
            s.groups.entry(g.group).or_insert(g.committed);
        }
    }
    for q in file.queues {
        if let Some(s) = topics.get_mut(&q.topic) {
            s.queues.insert(q.queue.clone(), q);
        }
    }
}

fn topic_names(dir: &Path) -> Result<Vec<String>, String> {
    let tdir: PathBuf = dir.join("topics");
    let entries = std::fs::read_dir(&tdir).map_err(|e| format!("{}: {e}", tdir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
