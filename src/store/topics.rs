//! The store's topics: which are open, which are being deleted, which maintenance or a backup
//! holds. Existence and opening are decided under one lock, so a deleted topic is never
//! brought back by a holder, and a delete waits for the holds instead of failing.

use super::*;

/// The open topics, and who is busy with which: one lock orders opening, deleting and a
/// maintenance pass's hold on a topic.
#[derive(Debug, Default)]
pub(super) struct Topics {
    pub(super) open: HashMap<String, Arc<Topic>>,
    /// Topics a `delete_topic` is removing: maintenance and backups skip them.
    pub(super) deleting: HashSet<String>,
    /// Maintenance passes and backups holding each topic now (a delete waits for them to let
    /// go).
    pub(super) maintaining: HashMap<String, usize>,
}

/// Whether opening a topic may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Create {
    Yes,
    No,
}

/// A maintenance pass's or a backup's hold on a topic (`Store::hold_topic`); a delete of the
/// topic waits until it is dropped.
pub(crate) struct MaintenanceHold<'a> {
    pub(super) store: &'a Store,
    pub(super) name: String,
    /// Taken (dropped) before the hold is counted off: a delete woken then finds no handle.
    pub(super) topic: Option<Arc<Topic>>,
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

impl Store {
    /// Empties `trash/` and forgets groups of topics that no longer exist (a deletion that a
    /// crash interrupted).
    pub(super) fn finish_deletions(&self) -> Result<()> {
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

    /// Opens the topic `name`; with `Create::No` it must exist ([`Error::NotFound`] otherwise).
    /// Whether it exists is decided under the topics' lock, so a topic being deleted is never
    /// created again by a call that only meant to use it.
    pub(super) fn open_topic(&self, name: &str, create: Create) -> Result<Arc<Topic>> {
        validate_name(name)?;
        let mut topics = crate::sync::lock(&self.inner.topics);
        self.open_locked(&mut topics, name, create)
    }

    /// `open_topic` under the topics' lock.
    pub(super) fn open_locked(&self, topics: &mut Topics, name: &str, create: Create) -> Result<Arc<Topic>> {
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

    /// Holds an existing topic for a short read (its statistics, its groups): never creates it,
    /// and a delete waits for the read instead of failing as "in use". [`Error::NotFound`] when
    /// it is not there or being deleted.
    pub(crate) fn hold_existing(&self, name: &str) -> Result<MaintenanceHold<'_>> {
        validate_name(name)?;
        match self.hold_topic(name, true)? {
            Some(hold) if hold.topic().is_some() => Ok(hold),
            _ => Err(Error::NotFound { kind: "topic", name: name.to_string() }),
        }
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
    pub(super) fn delete_unheld(&self, topics: &mut Topics, name: &str) -> Result<()> {
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

    pub(crate) fn existing_topic(&self, topic: &str) -> Result<Arc<Topic>> {
        self.open_topic(topic, Create::No)
    }
}
