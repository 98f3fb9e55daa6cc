//! A store: named topics (one `Log` each) under one root, and one sled database for consumer
//! state.
//!
//! Layout:
//! ```text
//! <root>/LOCK             store lock (one Store per root)
//! <root>/topics/<name>/   one Log per topic
//! <root>/trash/           topics being deleted (emptied at open)
//! <root>/consumers/       the sled database (see state.rs for its keys)
//! ```
//!
//! Invariants:
//! - A name is validated before it is joined to any path: no name reaches outside the root.
//! - A committed offset never points past its topic's recovered end: when a topic is opened,
//!   offsets beyond it (an `Os`-mode tail lost in a power cut) are clamped to the end, durably,
//!   and reported.
//! - Deleting a topic renames its directory into `trash/` first (one atomic, fsynced step), then
//!   removes its groups, then the files; a crash anywhere leaves either the whole topic or none,
//!   and open finishes what was started.
//! - Retention removes only whole sealed segments, oldest first, and fsyncs the directory; a
//!   group left below the first offset continues from it and is told how many records it missed.
pub(crate) mod backup;
pub(crate) mod config;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod registry;
pub(crate) mod state;
pub(crate) mod stats_file;
mod topics;
pub(crate) mod txn;

use topics::{Create, Topics};

pub use crate::store::backup::BackupReport;
pub use crate::store::config::{Compression, TopicConfig};
pub use crate::store::maintenance::MaintenanceStats;
pub use crate::store::metrics::{GroupStats, TopicStats};
pub use crate::store::state::{Abort, CommitDurability, StateTx};
pub use crate::store::stats_file::{
    GroupFigures, History, QueueFigures, RecoveryFigures, STATS_FILE, StatsFile, TopicFigures,
};

use crate::error::{Error, Result};
use crate::log::Log;
use crate::log::options::Options;
use crate::storage::{LockGuard, RealStorage, Storage, create_dir_durable};
use crate::store::state::StateDb;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest topic or group name, in bytes.
pub const NAME_BYTES_MAX: usize = 249;

/// Checks a topic or group name: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// When whole sealed segments of a topic are deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Delete a sealed segment once its newest event timestamp is older than this.
    pub retention_age_max: Option<Duration>,
    /// Delete the oldest sealed segments while the topic is larger than this.
    pub retention_bytes_max: Option<u64>,
    /// Never delete a segment holding records that some group has not committed past.
    pub keep_uncommitted: bool,
}

/// Where a group with no committed offset starts (and what `Store::reset_group` moves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The first record still in the topic.
    #[default]
    Earliest,
    /// After the last record: only records appended from now on.
    Latest,
    /// The first record whose timestamp is >= this (ms since the Unix epoch), or the end.
    Timestamp(i64),
    /// This offset, clamped into the topic's range.
    Offset(u64),
}

impl StartAt {
    pub(crate) fn resolve(self, topic: &Topic) -> Result<u64> {
        let (first, next) = (topic.first_offset(), topic.next_offset());
        Ok(match self {
            StartAt::Earliest => first,
            StartAt::Latest => next,
            StartAt::Timestamp(ts) => topic.offset_for_timestamp(ts)?.unwrap_or(next),
            StartAt::Offset(o) => o.clamp(first, next),
        })
    }
}

/// Where replays spill sorted runs (`<root>/replay-tmp`); emptied when the store opens.
pub(crate) const REPLAY_TMP_DIR: &str = "replay-tmp";

/// How a [`Store`] is opened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Options of every topic's log (its `storage` also holds the topics).
    pub log: Options,
    /// Retention of every topic, applied by maintenance and [`Store::enforce_retention`]; a
    /// topic's [`TopicConfig::retention_age`] and [`TopicConfig::retention_bytes`] (kept with
    /// the topic) override the age and the size.
    pub retention: RetentionOptions,
    /// Storage used to fsync the consumer database's files (sled writes them itself, always on
    /// the real file system under `<root>/consumers`). Tests inject faults here.
    pub state_storage: Arc<dyn Storage>,
    /// How far back an idempotent [`Producer`](crate::Producer) recognises a retried
    /// (producer id, sequence): among the last this many records of the topic, counted across
    /// restarts (the window is rebuilt from the log's tail on open).
    pub dedupe_window_records: u64,
    /// How often a background thread runs maintenance (retention, `drop-oldest` budgets,
    /// compaction of topics configured for it) over the open topics; `None` = never (run it with
    /// [`Store::run_maintenance`]).
    pub maintenance_interval: Option<Duration>,
    /// How often a background thread rewrites the stats file (`<root>/evlog.stats`, FORMAT.md
    /// § Stats file: what `evlog top` and `evlog report` read from another process); `None` =
    /// never ([`Store::write_stats_file`] writes it on demand).
    pub stats_interval: Option<Duration>,
}

/// Default of [`StoreOptions::dedupe_window_records`].
pub const DEDUPE_WINDOW_RECORDS_DEFAULT: u64 = 100_000;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log: Options::default(),
            retention: RetentionOptions::default(),
            state_storage: Arc::new(RealStorage),
            dedupe_window_records: DEDUPE_WINDOW_RECORDS_DEFAULT,
            maintenance_interval: Some(maintenance::MAINTENANCE_INTERVAL_DEFAULT),
            stats_interval: Some(stats_file::STATS_INTERVAL_DEFAULT),
        }
    }
}

impl StoreOptions {
    /// Store options whose topics use `log`.
    pub fn with_log(log: Options) -> Self {
        StoreOptions { log, ..StoreOptions::default() }
    }
}

/// One topic: a [`Log`] (use it through `Deref`) plus what opening it found.
#[derive(Debug)]
pub struct Topic {
    name: String,
    log: Log,
    /// Groups whose committed offset was beyond the recovered end: (group, committed before).
    clamped: Mutex<HashMap<String, u64>>,
    /// State the layers above keep per topic (the idempotent producers' table, built from the
    /// log's tail on first use).
    pub(crate) extensions: registry::Extensions,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The topic's log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Groups whose committed offset pointed past the recovered end when the topic was opened,
    /// with the offset they had; they were clamped to the end.
    pub fn clamped_groups(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = crate::sync::lock(&self.clamped).iter().map(|(g, o)| (g.clone(), *o)).collect();
        v.sort();
        v
    }
    pub(crate) fn take_clamp(&self, group: &str) -> Option<u64> {
        crate::sync::lock(&self.clamped).get(group).copied()
    }
}

impl std::ops::Deref for Topic {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.log
    }
}

/// A group as `Store::groups` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub group: String,
    /// The committed offset: the next record the group will get.
    pub committed: u64,
    /// When it was committed, ms since the Unix epoch.
    pub committed_at_ms: i64,
    /// Records after the committed offset.
    pub lag: u64,
}

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The topic.
    pub topic: String,
    /// Records deleted.
    pub records_removed: u64,
    /// The topic's first offset afterwards.
    pub first_offset: u64,
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub root: PathBuf,
    pub opts: StoreOptions,
    pub state: StateDb,
    topics: Mutex<Topics>,
    /// Signalled when a maintenance pass lets go of a topic (a delete waits for it).
    topics_cv: std::sync::Condvar,
    /// (topic, group) pairs with a live consumer.
    pub live: Mutex<HashSet<(String, String)>>,
    /// Bumped by an append to any topic (live replays wait on it).
    pub signal: Arc<crate::sync::AppendSignal>,
    /// What the layers above share while it is open (work queues by topic and group).
    pub shared: registry::Live,
    /// The previous `metrics` sample (time, offset) of each topic and topic/group.
    pub metric_samples: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// How the stats file gets the open work queues' figures: set by the queue layer when it
    /// opens its first queue (the store, a lower layer, does not name it).
    pub(crate) queue_figures: std::sync::OnceLock<stats_file::QueueFiguresFn>,
    /// The stats file's per-minute samples of the last hour.
    stats_samples: Mutex<stats_file::Samples>,
    /// Held for a whole write of the stats file: one writer of its temp name at a time.
    stats_write: Mutex<()>,
    /// Stops the maintenance thread when the store goes.
    maintenance_stop: Arc<maintenance::Stop>,
    /// The maintenance thread, joined when the last user handle drops.
    maintenance_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The stats file's thread (`stats_file`), stopped and joined with the maintenance thread.
    stats_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What maintenance did so far, in all and per topic.
    maintenance_stats: Mutex<maintenance::MaintenanceStats>,
    maintenance_by_topic: Mutex<HashMap<String, maintenance::MaintenanceStats>>,
    /// The atomic appends' journal, opened on first use (or at open, to roll forward).
    journal: Mutex<Option<txn::Journal>>,
    _lock: Box<dyn LockGuard>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.maintenance_stop.stop();
    }
}

impl StoreInner {
    fn storage(&self) -> &dyn Storage {
        self.opts.log.storage.as_ref()
    }
    fn topics_dir(&self) -> PathBuf {
        self.root.join("topics")
    }
    fn topic_exists(&self, name: &str) -> Result<bool> {
        let p = self.topics_dir().join(name);
        self.storage().dir_exists(&p).map_err(|e| Error::io("stat", &p, e))
    }
}

/// Topics and consumer groups under one root directory. `Send + Sync`; clone it freely.
///
/// When the last `Store` handle drops, the maintenance thread is stopped and waited for (a
/// pass in progress finishes first), so that the directory lock goes with the last handle and
/// the store can be opened again at once (a live `Consumer` still holds it).
#[derive(Debug, Clone)]
pub struct Store {
    /// Dropped before `inner`: the last user handle stops the maintenance thread first.
    _handle: Option<Arc<UserHandle>>,
    inner: Arc<StoreInner>,
}

/// Shared by the `Store` handles an application holds (not by the maintenance thread's).
#[derive(Debug)]
struct UserHandle {
    inner: Arc<StoreInner>,
}

impl Drop for UserHandle {
    fn drop(&mut self) {
        self.inner.maintenance_stop.stop();
        let threads = [
            crate::sync::lock(&self.inner.maintenance_thread).take(),
            crate::sync::lock(&self.inner.stats_thread).take(),
        ];
        for t in threads.into_iter().flatten() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the store at `root`. Fails with [`Error::Locked`] if another `Store`
    /// has it open. Finishes interrupted topic deletions.
    pub fn open(root: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        opts.log.validate()?;
        if opts.log.budget.is_some() {
            return Err(Error::InvalidOptions {
                reason: "StoreOptions::log.budget is not for stores: a topic's budget is kept in its TopicConfig \
                         (Store::configure_topic)"
                    .into(),
            });
        }
        let root = root.as_ref().to_path_buf();
        let storage = opts.log.storage.clone();
        // Each directory's name is made durable (its parent fsynced, up to the first directory
        // that already existed) before anything inside it can be acknowledged.
        for d in [root.clone(), root.join("topics"), root.join("trash")] {
            match storage.dir_exists(&d) {
                Ok(_) => create_dir_durable(storage.as_ref(), &d).map_err(|e| Error::io("create directory", &d, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err(Error::NotADirectory { path: d });
                }
                Err(e) => return Err(Error::io("stat", &d, e)),
            }
        }
        let lock_path = root.join("LOCK");
        let lock = match storage.lock(&lock_path) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Locked { path: root }),
            Err(e) => return Err(Error::io("lock", &lock_path, e)),
        };
        let state_dir = root.join("consumers");
        // sled writes on the real file system, beside the topics' storage: its directory is made
        // through the storage that fsyncs sled's files.
        create_dir_durable(opts.state_storage.as_ref(), &state_dir)
            .map_err(|e| Error::io("create directory", &state_dir, e))?;
        let state = StateDb::open(&state_dir, opts.state_storage.clone())?;
        let inner = Arc::new(StoreInner {
            root,
            opts,
            state,
            topics: Mutex::new(Topics::default()),
            topics_cv: std::sync::Condvar::new(),
            live: Mutex::new(HashSet::new()),
            signal: Arc::default(),
            shared: registry::Live::default(),
            metric_samples: Mutex::new(HashMap::new()),
            queue_figures: std::sync::OnceLock::new(),
            stats_samples: Mutex::default(),
            stats_write: Mutex::new(()),
            maintenance_stop: Arc::default(),
            maintenance_thread: Mutex::new(None),
            stats_thread: Mutex::new(None),
            maintenance_stats: Mutex::default(),
            maintenance_by_topic: Mutex::default(),
            journal: Mutex::new(None),
            _lock: lock,
        });
        if let Some(interval) = inner.opts.maintenance_interval {
            *crate::sync::lock(&inner.maintenance_thread) = maintenance::spawn(&inner, interval);
        }
        if let Some(interval) = inner.opts.stats_interval {
            *crate::sync::lock(&inner.stats_thread) =
                stats_file::spawn(&inner, interval, inner.maintenance_stop.clone());
        }
        let store = Store { _handle: Some(Arc::new(UserHandle { inner: inner.clone() })), inner };
        store.finish_deletions()?;
        store.recover_atomic_appends()?;
        store.remove_leftover_replay_runs()?;
        Ok(store)
    }

    /// Removes the run files of replays a crash interrupted.
    fn remove_leftover_replay_runs(&self) -> Result<()> {
        let dir = self.inner.root.join(REPLAY_TMP_DIR);
        match self.inner.storage().dir_exists(&dir) {
            Ok(true) => self.inner.storage().remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn inner(&self) -> &StoreInner {
        &self.inner
    }

    /// A handle for the store's own threads: it does not keep the maintenance thread running.
    pub(crate) fn internal(inner: Arc<StoreInner>) -> Store {
        Store { _handle: None, inner }
    }

    pub(crate) fn inner_arc(&self) -> Arc<StoreInner> {
        self.inner.clone()
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Opens the topic `name`, creating it if needed. Opening runs the log's recovery and clamps
    /// committed offsets that point past the recovered end (see [`Topic::clamped_groups`]).
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.open_topic(name, Create::Yes)
    }

    /// The groups of a topic with committed offset and lag.
    pub fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        let hold = self.hold_existing(topic)?;
        let Some(t) = hold.topic() else { return Err(Error::NotFound { kind: "topic", name: topic.to_string() }) };
        self.group_infos(t, topic)
    }

    /// The groups of `t` (named `topic`) with committed offset and lag.
    pub(crate) fn group_infos(&self, t: &Topic, topic: &str) -> Result<Vec<GroupInfo>> {
        let end = t.next_offset();
        let mut v: Vec<GroupInfo> = self
            .inner
            .state
            .groups_of(topic)?
            .into_iter()
            .map(|(group, c)| GroupInfo {
                group,
                committed: c.offset,
                committed_at_ms: c.at_ms,
                lag: end.saturating_sub(c.offset),
            })
            .collect();
        v.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(v)
    }

    /// Moves a group's committed offset (to an offset, a timestamp, the start or the end).
    /// Arguments come in the order of every group method: group, then topic.
    pub fn reset_group(&self, group: &str, topic: &str, to: StartAt) -> Result<u64> {
        let t = self.existing_topic(topic)?;
        self.existing_idle_group(topic, group)?;
        let offset = to.resolve(&t)?;
        self.inner.state.commit(topic, group, offset, CommitDurability::Always)?;
        Ok(offset)
    }

    /// Deletes a group (group, then topic, as everywhere).
    pub fn delete_group(&self, group: &str, topic: &str) -> Result<()> {
        self.existing_topic(topic)?;
        self.existing_idle_group(topic, group)?;
        self.inner.state.delete_group(topic, group).map(|_| ())
    }

    /// Reads a key of an application state tree written by `Consumer::commit_with`.
    pub fn state_get(&self, state_tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate_name(state_tree)?;
        self.inner.state.state_get(state_tree, key)
    }

    /// Sets a topic's configuration (creating the topic if needed): written durably with the
    /// topic, applied to it now (the next append keeps its budget) and whenever it opens.
    /// Invalid values are refused before anything is written.
    pub fn configure_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        config.validate()?;
        let t = self.topic(name)?;
        config.write(self.inner.storage(), &self.inner.topics_dir().join(name))?;
        Ok(t.set_budget(config.budget())?)
    }

    /// Compacts a topic by key now (see [`Log::compact`]), keeping tombstones for the topic's
    /// configured `tombstone_retention`, whether or not `compact_by_key` is set. The active
    /// segment is sealed first, so every record appended before the call is compacted
    /// ([`CompactReport::compacted_below`](crate::log::CompactReport::compacted_below) says up to
    /// where).
    pub fn compact_topic(&self, name: &str) -> Result<crate::log::compact::CompactReport> {
        let t = self.existing_topic(name)?;
        let config = self.topic_config(name)?;
        Ok(t.compact(&config.compact_options().sealing_active())?)
    }

    /// Compresses a topic's sealed segments now (see [`Log::compress`]), whatever its
    /// configuration says.
    pub fn compress_topic(&self, name: &str) -> Result<crate::log::compress::CompressReport> {
        Ok(self.existing_topic(name)?.compress()?)
    }

    /// A topic's configuration (the default when none was set).
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig> {
        validate_name(name)?;
        if !self.inner.topic_exists(name)? {
            return Err(Error::NotFound { kind: "topic", name: name.to_string() });
        }
        TopicConfig::read(self.inner.storage(), &self.inner.topics_dir().join(name))
    }

    /// Applies retention to one topic now: deletes whole sealed segments that are too old or
    /// beyond the size limit, oldest first, and never the active one.
    pub fn enforce_retention(&self, topic: &str) -> Result<RetentionReport> {
        self.retention_of(&*self.existing_topic(topic)?)
    }

    /// `enforce_retention` of an open topic.
    pub(crate) fn retention_of(&self, t: &Topic) -> Result<RetentionReport> {
        let topic = t.name();
        crate::trace::span!("evlog.retention", topic);
        let mut r = self.inner.opts.retention;
        let config = self.topic_config(topic)?;
        if let Some(age) = config.retention_age {
            r.retention_age_max = Some(age);
        }
        if let Some(bytes) = config.retention_bytes {
            r.retention_bytes_max = Some(bytes);
        }
        let sealed = t.sealed_segments()?;
        let mut total = t.size_bytes()?;
        let now_ms = crate::clock::now_ms();
        let mut cut = t.first_offset();
        for s in &sealed {
            let too_big = r.retention_bytes_max.is_some_and(|m| total > m);
            let too_old = r.retention_age_max.is_some_and(|age| {
                let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                s.max_timestamp.is_some_and(|ts| ts < now_ms.saturating_sub(age_ms))
            });
            if !(too_big || too_old) {
                break;
            }
            cut = s.end_offset;
            total -= s.bytes;
        }
        if r.keep_uncommitted
            && let Some(min) = self.inner.state.groups_of(topic)?.iter().map(|(_, c)| c.offset).min()
        {
            cut = cut.min(min);
        }
        let records_removed = t.remove_before(cut)?;
        Ok(RetentionReport { topic: topic.to_string(), records_removed, first_offset: t.first_offset() })
    }

    fn existing_idle_group(&self, topic: &str, group: &str) -> Result<()> {
        validate_name(group)?;
        if !self.inner.state.has_group(topic, group)? {
            return Err(Error::NotFound { kind: "group", name: format!("{topic}/{group}") });
        }
        if crate::sync::lock(&self.inner.live).contains(&(topic.to_string(), group.to_string())) {
            return Err(Error::GroupBusy { topic: topic.to_string(), group: group.to_string() });
        }
        Ok(())
    }
}
