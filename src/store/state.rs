//! Consumer state in sled, behind our own small interface.
//!
//! Key layout (also in ARCHITECTURE.md):
//! - tree `groups`: key `<topic> 0x00 <group>`, value 16 bytes: committed offset (u64 LE), then
//!   commit time in ms since the Unix epoch (i64 LE). Names never contain 0x00.
//! - tree `state:<name>`: the application's own keys and values, written by
//!   `Consumer::commit_with` in the same transaction as the group offset.
//! - tree `replays`: key = replay name, value = its progress (`replay/mod.rs`).
//! - trees `queue:<topic>:<group>`: a work queue's state (`queue/persist.rs`).
//!
//! Invariants:
//! - A durable commit returns only after sled's `flush()` and a real fdatasync of every file in
//!   the database directory and of the directories themselves: sled 0.34's flush ends in
//!   `sync_file_range` on Linux, which neither flushes the disk cache nor file metadata.
//! - Nothing outside this module names a sled type.

use crate::error::{Error, Result};
use crate::format::state::{decode_committed, encode_committed};
use crate::storage::{OpenMode, Storage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

const GROUPS_TREE: &str = "groups";
const STATE_TREE_PREFIX: &str = "state:";
/// Longest `StateDb::open` waits for sled's lock to be let go by a store just dropped in this
/// process (sled's flusher holds it for up to one flush period, 500 ms).
const SLED_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How far a commit (of a group offset, a queue lease or ack, a replay's progress) goes before
/// it returns. The words are [`Durability`](crate::Durability)'s: `Always` survives a power cut,
/// `Os` a `kill -9`; a commit has no `Interval`, and a log has no `Lazy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitDurability {
    /// Flushed by sled and fdatasynced file by file: survives a power cut.
    #[default]
    Always,
    /// Flushed by sled to the OS: survives `kill -9`, not a power cut.
    Os,
    /// Left to sled's background flush (every 500 ms): a crash of any kind can lose the commits of
    /// the last half second; the offset then goes back, so records are delivered again.
    Lazy,
}

/// A group's committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Committed {
    pub offset: u64,
    pub at_ms: i64,
}

fn sled_err(op: &'static str, path: &Path, e: sled::Error) -> Error {
    Error::State { op, path: path.to_path_buf(), cause: e.to_string() }
}

fn group_key(topic: &str, group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1 + group.len());
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(group.as_bytes());
    k
}

/// A key as an error message shows it: UTF-8 (lossy), the 0x00 separator as `/`.
fn printable_key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).replace('\0', "/")
}

/// Splits a `groups` key into (topic, group).
fn split_group_key(k: &[u8]) -> Option<(String, String)> {
    let sep = k.iter().position(|&b| b == 0)?;
    let (topic, group) = (k.get(..sep)?, k.get(sep + 1..)?);
    Some((String::from_utf8_lossy(topic).into_owned(), String::from_utf8_lossy(group).into_owned()))
}

impl StateDb {
    fn corrupt(&self, key: &[u8], reason: impl Into<String>) -> Error {
        Error::CorruptState { path: self.path.clone(), key: printable_key(key), reason: reason.into() }
    }

    /// Decodes a committed value (FORMAT.md § Consumer database).
    fn decode(&self, key: &[u8], v: &[u8]) -> Result<Committed> {
        let (offset, at_ms) = decode_committed(v).map_err(|reason| self.corrupt(key, reason))?;
        Ok(Committed { offset, at_ms })
    }
}

use crate::clock::now_ms;

/// The sled database of a store.
#[derive(Debug)]
pub(crate) struct StateDb {
    path: PathBuf,
    db: sled::Db,
    groups: sled::Tree,
    /// Used only to fsync sled's files (sled does its own writes).
    storage: Arc<dyn Storage>,
    poisoned: AtomicBool,
    /// What `sync_dir_tree` already made durable.
    synced: Mutex<Synced>,
    /// Group commit of durable commits (see `make_durable`): each call takes a ticket; a flush
    /// that began after ticket `t` was taken covers the write that preceded it. Highest ticket
    /// covered by a sled flush / by a flush plus fsyncs.
    writes: AtomicU64,
    flushed_upto: AtomicU64,
    synced_upto: AtomicU64,
    group_commit: crate::sync::GroupCommit,
    /// Threads between the start of a queue operation and the end of its durable commit (see
    /// `committing`): how many tickets a group commit leader may wait for.
    committers: AtomicUsize,
    /// How long the last flush took, in nanoseconds (bounds a leader's wait for followers).
    last_flush_nanos: AtomicU64,
    /// How many commits the last flush covered: the workers a leader expects back (see
    /// `gather`).
    last_round: AtomicU64,
    /// Every write holds it shared; a backup holds it exclusively while it copies, so the copy
    /// sees each commit (a `commit_with`'s state and offset, a queue operation's writes) whole
    /// or not at all.
    gate: RwLock<()>,
}

/// Held by a thread from the start of an operation that will commit durably to the end of its
/// commit (see [`StateDb::committing`]).
pub(crate) struct Committing<'a>(&'a AtomicUsize);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A tree of the consumer database, opened by name: where a layer above keeps its own state
/// (a work queue's) without naming sled. Its keys and values are that layer's, specified in
/// FORMAT.md § Consumer database.
#[derive(Debug, Clone)]
pub(crate) struct StateTree {
    tree: sled::Tree,
    name: String,
}

/// One write to a [`StateTree`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum TreeWrite<'a> {
    Insert(&'a [u8], &'a [u8]),
    Remove(&'a [u8]),
}

#[derive(Debug, Default)]
struct Synced {
    /// Files fsynced at least once.
    once: HashSet<PathBuf>,
    /// Each directory's entries when it was last fsynced.
    dirs: HashMap<PathBuf, Vec<String>>,
}

/// Reads and writes of the application's state inside `Consumer::commit_with`. The closure may
/// run more than once if sled detects a conflicting concurrent transaction, so it must not have
/// other side effects.
pub struct StateTx<'a> {
    tree: &'a sled::transaction::TransactionalTree,
}

impl std::fmt::Debug for StateTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateTx")
    }
}

/// The error a `commit_with` closure returns to abort the commit (nothing is written).
#[derive(Debug)]
pub struct Abort(pub String);

impl StateTx<'_> {
    /// The value of `key` in the state tree, as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, Abort> {
        self.tree.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| Abort(e.to_string()))
    }
    /// Sets `key` to `value`.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> std::result::Result<(), Abort> {
        self.tree.insert(key, value).map(|_| ()).map_err(|e| Abort(e.to_string()))
    }
    /// Removes `key`.
    pub fn remove(&self, key: &[u8]) -> std::result::Result<(), Abort> {
        self.tree.remove(key).map(|_| ()).map_err(|e| Abort(e.to_string()))
    }
}

impl StateDb {
    pub fn open(path: &Path, storage: Arc<dyn Storage>) -> Result<Self> {
        let locked = |e: &sled::Error| matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"));
        // The caller holds the store's own lock, so the only holder of sled's can be a store this
        // process just dropped: sled's background flusher lets go of the file a moment after the
        // last handle (up to its 500 ms flush period). Wait for that, boundedly, rather than
        // report a store that is not in use as locked.
        let deadline = std::time::Instant::now() + SLED_RELEASE_WAIT;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(e) if locked(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) if locked(&e) => return Err(Error::Locked { path: path.to_path_buf() }),
                Err(e) => return Err(sled_err("open", path, e)),
            }
        };
        let groups = db.open_tree(GROUPS_TREE).map_err(|e| sled_err("open tree", path, e))?;
        let state = StateDb {
            path: path.to_path_buf(),
            db,
            groups,
            storage,
            poisoned: AtomicBool::new(false),
            synced: Mutex::default(),
            writes: AtomicU64::new(0),
            flushed_upto: AtomicU64::new(0),
            synced_upto: AtomicU64::new(0),
            group_commit: crate::sync::GroupCommit::default(),
            committers: AtomicUsize::new(0),
            last_flush_nanos: AtomicU64::new(0),
            last_round: AtomicU64::new(0),
            gate: RwLock::new(()),
        };
        // sled creates its files and directories without fsyncing them or their directory:
        // make them durable now, so that a power cut after the first durable commit finds the
        // database that commit went into (and not a fresh one).
        state.make_durable(CommitDurability::Always)?;
        Ok(state)
    }

    pub fn committed(&self, topic: &str, group: &str) -> Result<Option<Committed>> {
        let key = group_key(topic, group);
        let v = self.groups.get(&key).map_err(|e| sled_err("read", &self.path, e))?;
        v.map(|v| self.decode(&key, &v)).transpose()
    }

    /// Every group of `topic` with its committed position, or the error its value gives: a
    /// caller that must not fail for one bad group (opening the topic) leaves that group to
    /// report it when it is used.
    pub fn group_entries(&self, topic: &str) -> Result<Vec<(String, Result<Committed>)>> {
        let mut prefix = topic.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.groups.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| sled_err("scan", &self.path, e))?;
            let group = String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned();
            out.push((group, self.decode(&k, &v)));
        }
        Ok(out)
    }

    /// Every group of `topic` with its committed position; [`Error::CorruptState`] if one does
    /// not decode.
    pub fn groups_of(&self, topic: &str) -> Result<Vec<(String, Committed)>> {
        self.group_entries(topic)?.into_iter().map(|(g, c)| Ok((g, c?))).collect()
    }

    /// Whether `topic` has a group named `group` (whatever its value holds).
    pub fn has_group(&self, topic: &str, group: &str) -> Result<bool> {
        self.groups.contains_key(group_key(topic, group)).map_err(|e| sled_err("read", &self.path, e))
    }

    /// Every (topic, group) in the database, from the keys alone.
    pub fn all_group_names(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for k in self.groups.iter().keys() {
            let k = k.map_err(|e| sled_err("scan", &self.path, e))?;
            let Some(names) = split_group_key(&k) else {
                return Err(self.corrupt(&k, "group key without the 0x00 between topic and group"));
            };
            out.push(names);
        }
        Ok(out)
    }

    /// Sets a group's committed offset and makes it as durable as asked.
    pub fn commit(&self, topic: &str, group: &str, offset: u64, durability: CommitDurability) -> Result<()> {
        let c = Committed { offset, at_ms: now_ms() };
        {
            let _writing = self.writing();
            self.groups
                .insert(group_key(topic, group), &encode_committed(c.offset, c.at_ms))
                .map_err(|e| sled_err("write", &self.path, e))?;
        }
        self.make_durable(durability)
    }

    /// Commits the group offset and the application's state changes in one sled transaction.
    pub fn commit_with<F>(
        &self,
        topic: &str,
        group: &str,
        offset: u64,
        state_tree: &str,
        durability: CommitDurability,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&StateTx<'_>) -> std::result::Result<(), Abort>,
    {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let state = self.state_tree(state_tree)?;
        let key = group_key(topic, group);
        let value = encode_committed(offset, now_ms());
        let writing = self.writing();
        let r = (&self.groups, &state).transaction(|(groups, st)| {
            f(&StateTx { tree: st }).map_err(ConflictableTransactionError::Abort)?;
            groups.insert(key.as_slice(), &value[..])?;
            Ok(())
        });
        drop(writing);
        match r {
            Ok(()) => self.make_durable(durability),
            Err(TransactionError::Abort(Abort(reason))) => Err(Error::StateAborted { reason }),
            Err(TransactionError::Storage(e)) => Err(sled_err("transaction", &self.path, e)),
        }
    }

    /// Sets `key` to `value` in `t` and makes it durable.
    pub fn tree_put_durable(&self, t: &StateTree, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree_apply(t, [TreeWrite::Insert(key, value)])?;
        self.make_durable(CommitDurability::Always)
    }

    /// Reads one key of an application state tree.
    pub fn state_get(&self, state_tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.state_tree(state_tree)?;
        t.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| sled_err("read", &self.path, e))
    }

    fn state_tree(&self, name: &str) -> Result<sled::Tree> {
        self.db.open_tree(format!("{STATE_TREE_PREFIX}{name}")).map_err(|e| sled_err("open tree", &self.path, e))
    }

    /// Removes a group's committed offset. Returns whether it existed.
    pub fn delete_group(&self, topic: &str, group: &str) -> Result<bool> {
        let old = {
            let _writing = self.writing();
            self.groups.remove(group_key(topic, group)).map_err(|e| sled_err("write", &self.path, e))?
        };
        self.make_durable(CommitDurability::Always)?;
        Ok(old.is_some())
    }

    /// Removes every group of a topic.
    pub fn delete_topic_groups(&self, topic: &str) -> Result<()> {
        let groups = self.group_entries(topic)?;
        if groups.is_empty() {
            return Ok(()); // nothing written, nothing to make durable
        }
        for (g, _) in groups {
            let _writing = self.writing();
            self.groups.remove(group_key(topic, &g)).map_err(|e| sled_err("write", &self.path, e))?;
        }
        self.make_durable(CommitDurability::Always)
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned { path: self.path.clone(), cause: "an earlier flush or fsync failed".into() }
    }

    /// sled's flush, then (for `Always`) a real fdatasync of every file and directory of the
    /// database, because sled 0.34's flush is only `sync_file_range` on Linux.
    ///
    /// Group commit: callers' writes are already in sled when they get here. Each takes a
    /// ticket; one caller at a time flushes, covering every ticket taken before its flush began;
    /// the others wait for a flush that covers theirs instead of starting their own.
    pub fn make_durable(&self, durability: CommitDurability) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        if durability == CommitDurability::Lazy {
            return Ok(());
        }
        let ticket = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mark = if durability == CommitDurability::Always { &self.synced_upto } else { &self.flushed_upto };
        self.group_commit.wait_until(
            || mark.load(Ordering::Acquire) >= ticket,
            || {
                self.gather(mark);
                // Every ticket taken so far belongs to a write that is already in sled.
                let upto = self.writes.load(Ordering::SeqCst);
                let round = upto.saturating_sub(mark.load(Ordering::Acquire));
                let started = Instant::now();
                self.flush_once(durability)?;
                let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.last_flush_nanos.store(took, Ordering::Relaxed);
                self.last_round.store(round, Ordering::Relaxed);
                self.flushed_upto.fetch_max(upto, Ordering::AcqRel);
                if durability == CommitDurability::Always {
                    self.synced_upto.fetch_max(upto, Ordering::AcqRel);
                }
                Ok(())
            },
            || if self.poisoned.load(Ordering::Acquire) { Err(self.poisoned_error()) } else { Ok(()) },
        )
    }

    /// Marks the calling thread as one that is about to write and commit durably (a queue's
    /// lease, ack or nack), until the guard drops: a group commit leader waits briefly for such
    /// threads, so that several workers' commits share one flush instead of alternating.
    pub fn committing(&self) -> Committing<'_> {
        self.committers.fetch_add(1, Ordering::AcqRel);
        Committing(&self.committers)
    }

    /// A leader's gather (see `sync::gather`): the committers are the threads inside a queue
    /// operation (`committing`).
    fn gather(&self, covered: &AtomicU64) {
        crate::sync::gather(
            self.last_flush_nanos.load(Ordering::Relaxed),
            self.last_round.load(Ordering::Relaxed),
            || self.writes.load(Ordering::SeqCst).saturating_sub(covered.load(Ordering::Acquire)),
            || self.committers.load(Ordering::Acquire) as u64,
        );
    }

    fn flush_once(&self, durability: CommitDurability) -> Result<()> {
        let r =
            self.db.flush().map_err(|e| sled_err("flush", &self.path, e)).and_then(|_| {
                if durability == CommitDurability::Always { self.sync_dir_tree(&self.path) } else { Ok(()) }
            });
        if r.is_err() {
            // fsyncgate: a failed flush may have dropped dirty pages; never report a later
            // commit durable.
            self.poisoned.store(true, Ordering::Release);
        }
        r
    }

    /// Opens the tree `name` (made on first write).
    pub fn tree(&self, name: &str) -> Result<StateTree> {
        let tree = self.db.open_tree(name).map_err(|e| sled_err("open tree", &self.path, e))?;
        Ok(StateTree { tree, name: name.to_string() })
    }

    /// The names of the trees that start with `prefix`, without it, sorted.
    pub fn tree_names(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok()?.strip_prefix(prefix).map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Hands `f` every key and value of `t` in key order; stops at `f`'s first error.
    pub fn tree_scan(&self, t: &StateTree, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        for kv in t.tree.iter() {
            let (k, v) = kv.map_err(|e| sled_err("scan", &self.path, e))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// The value of `key` in `t`.
    pub fn tree_get(&self, t: &StateTree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        t.tree.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| sled_err("read", &self.path, e))
    }

    /// Applies `writes` to `t` in order, each its own sled write, without waiting for
    /// durability (a `make_durable` follows). Not one atomic `sled::Batch`: sled 0.34 seals an
    /// I/O buffer per batch, which made each work-queue lease and ack cost ~30 µs. sled recovers
    /// a prefix of the writes, so callers order them such that every prefix is correct.
    pub fn tree_apply<'a>(&self, t: &StateTree, writes: impl IntoIterator<Item = TreeWrite<'a>>) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        let err = |e| sled_err("write", &self.path, e);
        let _writing = self.writing();
        for w in writes {
            match w {
                TreeWrite::Insert(k, v) => t.tree.insert(k, v).map(|_| ()).map_err(err)?,
                TreeWrite::Remove(k) => t.tree.remove(k).map(|_| ()).map_err(err)?,
            }
        }
        Ok(())
    }

    /// The error for a key of `t` whose bytes do not have the layout its owner writes.
    pub fn tree_corrupt(&self, t: &StateTree, key: &[u8], reason: impl Into<String>) -> Error {
        self.corrupt(&[t.name.as_bytes(), b"\0", key].concat(), reason)
    }

    /// Removes the tree `name` and makes that durable.
    pub fn drop_tree(&self, name: &str) -> Result<()> {
        {
            let _writing = self.writing();
            self.db.drop_tree(name).map_err(|e| sled_err("drop tree", &self.path, e))?;
        }
        self.make_durable(CommitDurability::Always)
    }

    /// How many keys `t` holds.
    #[cfg(test)]
    pub fn tree_len(&self, t: &StateTree) -> usize {
        t.tree.len()
    }

    /// Holds off a backup's copy while one write (or a group of writes that belong together)
    /// goes in.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies every tree into a new database at `dest` (its directory made durably by the
    /// caller) with writes held off meanwhile, then makes the copy durable. Returns the keys
    /// copied.
    pub fn backup_into(&self, dest: &Path) -> Result<u64> {
        let copy = StateDb::open(dest, self.storage.clone())?;
        let mut keys = 0u64;
        {
            let _alone = self.gate.write().unwrap_or_else(|e| e.into_inner());
            for name in self.db.tree_names() {
                if &*name == b"__sled__default" {
                    continue;
                }
                let from = self.db.open_tree(&name).map_err(|e| sled_err("open tree", &self.path, e))?;
                let to = copy.db.open_tree(&name).map_err(|e| sled_err("open tree", dest, e))?;
                for kv in from.iter() {
                    let (k, v) = kv.map_err(|e| sled_err("scan", &self.path, e))?;
                    to.insert(k, v).map_err(|e| sled_err("write", dest, e))?;
                    keys += 1;
                }
            }
        }
        copy.make_durable(CommitDurability::Always)?;
        Ok(keys)
    }

    /// fdatasyncs every file below `dir`, and each directory whose entries changed since it was
    /// last fsynced here. Files that hold no data yet (empty) are skipped; sled's `conf` is
    /// written once, when the database is created, and fsynced once.
    fn sync_dir_tree(&self, dir: &Path) -> Result<()> {
        let names = self.storage.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        let mut synced = crate::sync::lock(&self.synced);
        for name in &names {
            let path = dir.join(name);
            if self.storage.dir_exists(&path).unwrap_or(false) {
                drop(synced);
                self.sync_dir_tree(&path)?;
                synced = crate::sync::lock(&self.synced);
                continue;
            }
            if name == "conf" && synced.once.contains(&path) {
                continue;
            }
            let f = self.storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
            f.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
            synced.once.insert(path);
        }
        if synced.dirs.get(dir) != Some(&names) {
            self.storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
            synced.dirs.insert(dir.to_path_buf(), names);
        }
        Ok(())
    }
}
