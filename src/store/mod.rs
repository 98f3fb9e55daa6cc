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
pub(crate) mod txn;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::log::options::Options;
use crate::storage::{LockGuard, RealStorage, Storage, create_dir_durable};
use crate::store::config::TopicConfig;
use crate::store::state::{CommitDurability, StateDb};
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
    /// Default retention of every topic; see [`Store::set_retention`].
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

/// The open topics, and who is busy with which: one lock orders opening, deleting and a
/// maintenance pass's hold on a topic.
#[derive(Debug, Default)]
struct Topics {
    open: HashMap<String, Arc<Topic>>,
    /// Topics a `delete_topic` is removing: maintenance and backups skip them.
    deleting: HashSet<String>,
    /// Maintenance passes and backups holding each topic now (a delete waits for them to let
    /// go).
    maintaining: HashMap<String, usize>,
}

/// Whether opening a topic may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    Yes,
    No,
}

/// A maintenance pass's or a backup's hold on a topic (`Store::hold_topic`); a delete of the
/// topic waits until it is dropped.
pub(crate) struct MaintenanceHold<'a> {
    store: &'a Store,
    name: String,
    /// Taken (dropped) before the hold is counted off: a delete woken then finds no handle.
    topic: Option<Arc<Topic>>,
}

impl MaintenanceHold<'_> {
    /// The topic held.
    pub fn topic(&self) -> Option<&Topic> {
        self.topic.as_deref()
    }
}

impl Drop for MaintenanceHold<'_> {
    fn drop(&mut self) {
        drop(self.topic.take());
        let inner = &self.store.inner;
        let mut topics = crate::sync::lock(&inner.topics);
        if let Some(n) = topics.maintaining.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                topics.maintaining.remove(&self.name);
            }
        }
        inner.topics_cv.notify_all();
    }
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub root: PathBuf,
    pub opts: StoreOptions,
    pub state: StateDb,
    topics: Mutex<Topics>,
    /// Signalled when a maintenance pass lets go of a topic (a delete waits for it).
    topics_cv: std::sync::Condvar,
    retention: Mutex<HashMap<String, RetentionOptions>>,
    /// (topic, group) pairs with a live consumer.
    pub live: Mutex<HashSet<(String, String)>>,
    /// Bumped by an append to any topic (live replays wait on it).
    pub signal: Arc<crate::sync::AppendSignal>,
    /// What the layers above share while it is open (work queues by topic and group).
    pub shared: registry::Live,
    /// The previous `metrics` sample (time, offset) of each topic and topic/group.
    pub metric_samples: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// Stops the maintenance thread when the store goes.
    maintenance_stop: Arc<maintenance::Stop>,
    /// The maintenance thread, joined when the last user handle drops.
    maintenance_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        let thread = crate::sync::lock(&self.inner.maintenance_thread).take();
        if let Some(t) = thread
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store at `root`. Fails with [`Error::Locked`] if another `Store`
    /// has it open. Finishes interrupted topic deletions.
    pub fn open(root: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        opts.log.validate()?;
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
            retention: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
            signal: Arc::default(),
            shared: registry::Live::default(),
            metric_samples: Mutex::new(HashMap::new()),
            maintenance_stop: Arc::default(),
            maintenance_thread: Mutex::new(None),
            maintenance_stats: Mutex::default(),
            maintenance_by_topic: Mutex::default(),
            journal: Mutex::new(None),
            _lock: lock,
        });
        if let Some(interval) = inner.opts.maintenance_interval {
            *crate::sync::lock(&inner.maintenance_thread) = maintenance::spawn(&inner, interval);
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

    /// Empties `trash/` and forgets groups of topics that no longer exist (a deletion that a
    /// crash interrupted).
    fn finish_deletions(&self) -> Result<()> {
        let inner = &self.inner;
        let trash = inner.root.join("trash");
        let storage = inner.storage();
        for name in storage.list_dir(&trash).map_err(|e| Error::io("list", &trash, e))? {
            let p = trash.join(name);
            storage.remove_dir_all(&p).map_err(|e| Error::io("remove", &p, e))?;
        }
        let topics = self.topics()?;
        let mut orphans = HashSet::new();
        for (topic, _) in inner.state.all_group_names()? {
            if !topics.contains(&topic) {
                orphans.insert(topic);
            }
        }
        for t in orphans {
            inner.state.delete_topic_groups(&t)?;
        }
        Ok(())
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

    /// Opens the topic `name`; with `Create::No` it must exist ([`Error::NotFound`] otherwise).
    /// Whether it exists is decided under the topics' lock, so a topic being deleted is never
    /// created again by a call that only meant to use it.
    fn open_topic(&self, name: &str, create: Create) -> Result<Arc<Topic>> {
        validate_name(name)?;
        let mut topics = crate::sync::lock(&self.inner.topics);
        self.open_locked(&mut topics, name, create)
    }

    /// `open_topic` under the topics' lock.
    fn open_locked(&self, topics: &mut Topics, name: &str, create: Create) -> Result<Arc<Topic>> {
        let inner = &self.inner;
        if let Some(t) = topics.open.get(name) {
            return Ok(t.clone());
        }
        if create == Create::No && !inner.topic_exists(name)? {
            return Err(Error::NotFound { kind: "topic", name: name.to_string() });
        }
        let mut log_opts = inner.opts.log.clone();
        log_opts.append_signal = Some(inner.signal.clone());
        let dir = inner.topics_dir().join(name);
        let log = Log::open(&dir, log_opts)?;
        log.set_budget(TopicConfig::read(inner.storage(), &dir)?.budget())?;
        let end = log.next_offset();
        let mut clamped = HashMap::new();
        // A group whose value does not decode is left alone here: it reports
        // `Error::CorruptState` when it is used, and can still be reset or deleted.
        for (group, c) in inner.state.group_entries(name)? {
            let Ok(c) = c else { continue };
            if c.offset > end {
                inner.state.commit(name, &group, end, CommitDurability::Always)?;
                clamped.insert(group, c.offset);
            }
        }
        let topic = Arc::new(Topic {
            name: name.to_string(),
            log,
            clamped: Mutex::new(clamped),
            extensions: registry::Extensions::default(),
        });
        topics.open.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// The names of the open topics, sorted.
    pub(crate) fn open_topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = crate::sync::lock(&self.inner.topics).open.keys().cloned().collect();
        names.sort();
        names
    }

    /// Holds topic `name` for a maintenance pass or a backup, unless it is being deleted or no
    /// longer there: an open topic, or with `open_existing` one that exists on disk. Never
    /// creates a topic, and a delete waits for the hold to go instead of failing.
    pub(crate) fn hold_topic(&self, name: &str, open_existing: bool) -> Result<Option<MaintenanceHold<'_>>> {
        let mut topics = crate::sync::lock(&self.inner.topics);
        if topics.deleting.contains(name) {
            return Ok(None);
        }
        let topic = match topics.open.get(name) {
            Some(t) => t.clone(),
            None if !open_existing => return Ok(None),
            None => match self.open_locked(&mut topics, name, Create::No) {
                Ok(t) => t,
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        *topics.maintaining.entry(name.to_string()).or_insert(0) += 1;
        Ok(Some(MaintenanceHold { store: self, name: name.to_string(), topic: Some(topic) }))
    }

    /// Names of all topics, sorted.
    pub fn topics(&self) -> Result<Vec<String>> {
        let dir = self.inner.topics_dir();
        let mut names: Vec<String> = self
            .inner
            .storage()
            .list_dir(&dir)
            .map_err(|e| Error::io("list", &dir, e))?
            .into_iter()
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes a topic, its files and its groups. Fails with [`Error::TopicInUse`] while other
    /// handles to it (or consumers of it) are alive, [`Error::NotFound`] if it does not exist. A
    /// maintenance pass over the topic is not a handle: the delete waits for it to let go (it
    /// skips the topic from then on).
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let inner = &self.inner;
        let mut topics = crate::sync::lock(&inner.topics);
        while topics.deleting.contains(name) {
            // Another delete of the same name is under way: its outcome decides this one's.
            topics = inner.topics_cv.wait(topics).unwrap_or_else(|e| e.into_inner());
        }
        if !topics.open.contains_key(name) && !inner.topic_exists(name)? {
            return Err(Error::NotFound { kind: "topic", name: name.to_string() });
        }
        topics.deleting.insert(name.to_string());
        while topics.maintaining.contains_key(name) {
            topics = inner.topics_cv.wait(topics).unwrap_or_else(|e| e.into_inner());
        }
        let result = self.delete_unheld(&mut topics, name);
        topics.deleting.remove(name);
        inner.topics_cv.notify_all();
        result
    }

    /// `delete_topic` once no maintenance pass holds the topic, under the topics' lock.
    fn delete_unheld(&self, topics: &mut Topics, name: &str) -> Result<()> {
        let inner = &self.inner;
        if let Some(t) = topics.open.get(name) {
            let handles = Arc::strong_count(t) - 1;
            if handles > 0 {
                return Err(Error::TopicInUse { name: name.to_string(), handles });
            }
        }
        if let Some(t) = topics.open.remove(name)
            && let Some(t) = Arc::into_inner(t)
        {
            t.log.close()?;
        }
        let storage = inner.storage();
        let from = inner.topics_dir().join(name);
        let nanos = crate::clock::now_nanos();
        let to = inner.root.join("trash").join(format!("{name}.{nanos}"));
        storage.rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
        storage.sync_dir(&inner.topics_dir()).map_err(|e| Error::io("fsync directory", inner.topics_dir(), e))?;
        let trash = inner.root.join("trash");
        storage.sync_dir(&trash).map_err(|e| Error::io("fsync directory", &trash, e))?;
        inner.state.delete_topic_groups(name)?;
        storage.remove_dir_all(&to).map_err(|e| Error::io("remove", &to, e))?;
        storage.sync_dir(&trash).map_err(|e| Error::io("fsync directory", &trash, e))
    }

    /// The groups of a topic with committed offset and lag.
    pub fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        let t = self.existing_topic(topic)?;
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
    /// ([`CompactReport::compacted_below`](crate::CompactReport::compacted_below) says up to
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

    /// Sets the retention of one topic (overrides `StoreOptions::retention`).
    pub fn set_retention(&self, topic: &str, r: RetentionOptions) -> Result<()> {
        validate_name(topic)?;
        crate::sync::lock(&self.inner.retention).insert(topic.to_string(), r);
        Ok(())
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
        let mut r = crate::sync::lock(&self.inner.retention).get(topic).copied().unwrap_or(self.inner.opts.retention);
        if let Some(age) = self.topic_config(topic)?.retention_age {
            r.retention_age_max = Some(age);
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

    fn existing_topic(&self, topic: &str) -> Result<Arc<Topic>> {
        self.open_topic(topic, Create::No)
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
