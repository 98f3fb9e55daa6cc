//! Consumer groups: a position in a topic that survives restarts.
//!
//! Invariants:
//! - The committed offset only moves by an explicit commit (`commit`, `commit_offset`,
//!   `commit_with`, auto-commit, or the admin's reset), never past the topic's next offset.
//! - With `AckMode::Explicit`, the offset committed is the end of the contiguous acknowledged
//!   prefix: no crash can skip a record that was not acknowledged.
//! - One live consumer per (group, topic): a second one fails with `GroupBusy`.

use crate::error::{Error, Result};
use crate::log::Iter;
use crate::log::record::Record;
use crate::store::state::{Abort, CommitDurability, StateTx};
use crate::store::{Store, StoreInner, Topic, validate_name};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::store::StartAt;

/// What `commit()` commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// The position after the last polled record.
    #[default]
    Position,
    /// The end of the contiguous prefix of records acknowledged with `ack`, in any order.
    Explicit,
}

/// Auto-commit: at the start of `poll` (so records of the previous poll count as processed)
/// and when the consumer is dropped, once either limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCommit {
    /// Commit once this many records were polled since the last commit.
    pub every_records: u64,
    /// Commit once this much time passed since the last commit.
    pub every: Duration,
}

/// How a consumer is started.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// Where a new group starts.
    pub start: StartAt,
    /// Commit automatically.
    pub auto_commit: Option<AutoCommit>,
    /// How durable each commit is before it returns (default: fsynced).
    pub durability: CommitDurability,
    /// What `commit()` commits.
    pub ack_mode: AckMode,
    /// How long a `poll` that finds nothing busy-waits for a record before it blocks (default
    /// zero: block at once). A spinning poll sees an append within a microsecond instead of
    /// after a futex wake-up (tens of microseconds on a loaded VM), at the price of a busy core
    /// while it spins.
    pub spin_before_block: Duration,
}

impl ConsumerOptions {
    /// Options with this start position and defaults otherwise.
    pub fn starting_at(start: StartAt) -> Self {
        ConsumerOptions { start, ..ConsumerOptions::default() }
    }
}

/// What starting the consumer found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStart {
    /// The group's committed offset when it started, if it had one.
    pub committed: Option<u64>,
    /// The committed offset pointed past the recovered end of the topic and was clamped from this.
    pub clamped_from: Option<u64>,
    /// Records removed by retention before the group got to them.
    pub skipped: u64,
    /// Where polling starts.
    pub position: u64,
}

/// A consumer of one topic for one group. Not `Sync`: one thread polls it.
#[derive(Debug)]
pub struct Consumer {
    store: Arc<StoreInner>,
    topic: Arc<Topic>,
    group: String,
    opts: ConsumerOptions,
    position: u64,
    committed: Option<u64>,
    /// `AckMode::Explicit`: the polled records not yet acknowledged. Offsets never delivered
    /// (removed by retention, or gaps left by compaction) are never waited for.
    outstanding: BTreeSet<u64>,
    iter: Iter,
    polled_since_commit: u64,
    last_commit: Instant,
    start: ConsumerStart,
}

impl Store {
    /// A consumer of `topic` for `group`; see [`Consumer`]. Only one live consumer per group and
    /// topic ([`Error::GroupBusy`]).
    pub fn consumer(&self, group: &str, topic: &str, opts: ConsumerOptions) -> Result<Consumer> {
        validate_name(group)?;
        let t = self.topic(topic)?;
        Consumer::start(self.inner_arc(), t, group, opts)
    }
}

impl Consumer {
    pub(crate) fn start(
        store: Arc<StoreInner>,
        topic: Arc<Topic>,
        group: &str,
        opts: ConsumerOptions,
    ) -> Result<Consumer> {
        validate_name(group)?;
        let key = (topic.name().to_string(), group.to_string());
        if !crate::sync::lock(&store.live).insert(key.clone()) {
            return Err(Error::GroupBusy { topic: key.0, group: key.1 });
        }
        let result = Self::position_at_start(&store, &topic, group, opts);
        let (position, start) = match result {
            Ok(v) => v,
            Err(e) => {
                crate::sync::lock(&store.live).remove(&key);
                return Err(e);
            }
        };
        let iter = topic.iter(position);
        Ok(Consumer {
            store,
            topic,
            group: group.to_string(),
            opts,
            position,
            committed: start.committed,
            outstanding: BTreeSet::new(),
            iter,
            polled_since_commit: 0,
            last_commit: Instant::now(),
            start,
        })
    }

    fn position_at_start(
        store: &StoreInner,
        topic: &Topic,
        group: &str,
        opts: ConsumerOptions,
    ) -> Result<(u64, ConsumerStart)> {
        let (first, next) = (topic.first_offset(), topic.next_offset());
        let mut s = ConsumerStart { clamped_from: topic.take_clamp(group), ..ConsumerStart::default() };
        let position = match store.state.committed(topic.name(), group)? {
            Some(c) => {
                s.committed = Some(c.offset);
                let mut p = c.offset;
                if p > next {
                    // Only possible if the topic shrank since it was opened (not today), but
                    // never trust an offset past the end.
                    s.clamped_from = Some(p);
                    store.state.commit(topic.name(), group, next, CommitDurability::Always)?;
                    s.committed = Some(next);
                    p = next;
                }
                if p < first {
                    s.skipped = first - p;
                    p = first;
                }
                p
            }
            None => opts.start.resolve(topic)?,
        };
        s.position = position;
        Ok((position, s))
    }

    /// The store-wide append signal (for async waiting).
    #[cfg(feature = "tokio")]
    pub(crate) fn signal(&self) -> &Arc<crate::sync::AppendSignal> {
        &self.store.signal
    }

    /// What starting found: committed offset, clamping, records skipped by retention.
    pub fn start_report(&self) -> ConsumerStart {
        self.start
    }

    /// Returns up to `max_records` records after the position; if none is there, blocks until
    /// one is appended (woken by the appender, no polling) or `timeout` passes. An empty result
    /// means the timeout passed.
    pub fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<Record>> {
        self.maybe_auto_commit()?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut out = Vec::new();
            while out.len() < max_records {
                match self.iter.next() {
                    Some(r) => out.push(r?),
                    None => break,
                }
            }
            if let Some(last) = out.last() {
                if let Some(first) = out.first()
                    && first.offset() > self.position
                {
                    // Retention removed records under us (a gap above the topic's first offset
                    // is compaction's: those records are gone by design, not skipped).
                    let removed_to = first.offset().min(self.topic.first_offset());
                    self.start.skipped += removed_to.saturating_sub(self.position);
                }
                if self.opts.ack_mode == AckMode::Explicit {
                    self.outstanding.extend(out.iter().map(Record::offset));
                }
                self.position = last.offset() + 1;
                self.polled_since_commit += out.len() as u64;
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline || max_records == 0 {
                return Ok(out);
            }
            self.topic.wait_for_spinning(self.position, self.opts.spin_before_block, deadline - now)?;
        }
    }

    fn maybe_auto_commit(&mut self) -> Result<()> {
        if let Some(a) = self.opts.auto_commit
            && self.polled_since_commit > 0
            && (self.polled_since_commit >= a.every_records || self.last_commit.elapsed() >= a.every)
        {
            self.commit()?;
        }
        Ok(())
    }

    /// The offset `commit()` would commit.
    fn commit_point(&self) -> u64 {
        match self.opts.ack_mode {
            AckMode::Position => self.position,
            AckMode::Explicit => self.outstanding.first().copied().unwrap_or(self.position),
        }
    }

    /// Commits the position after the last polled record (or, with `AckMode::Explicit`, the end
    /// of the contiguous acknowledged prefix). Durable on return by default.
    pub fn commit(&mut self) -> Result<()> {
        self.commit_offset(self.commit_point())
    }

    /// Commits `offset` as the next record this group will get. Fails with
    /// [`Error::CommitOutOfRange`] (writing nothing) past the topic's next offset.
    pub fn commit_offset(&mut self, offset: u64) -> Result<()> {
        self.check_in_range(offset)?;
        self.store.state.commit(self.topic.name(), &self.group, offset, self.opts.durability)?;
        self.committed_to(offset);
        Ok(())
    }

    /// Commits the group's offset (as `commit()` would) together with the application's own
    /// state changes made by `f` in the state tree `state_tree`, in one sled transaction: after
    /// any crash the state and the offset agree, so each record's effect is applied exactly once.
    /// `f` may run more than once (sled retries on conflict) and must have no other effects; an
    /// `Err(Abort)` from it writes nothing.
    pub fn commit_with<F>(&mut self, state_tree: &str, f: F) -> Result<()>
    where
        F: Fn(&StateTx<'_>) -> std::result::Result<(), Abort>,
    {
        validate_name(state_tree)?;
        let offset = self.commit_point();
        self.check_in_range(offset)?;
        self.store.state.commit_with(self.topic.name(), &self.group, offset, state_tree, self.opts.durability, f)?;
        self.committed_to(offset);
        Ok(())
    }

    fn check_in_range(&self, offset: u64) -> Result<()> {
        let next = self.topic.next_offset();
        if offset > next {
            return Err(Error::CommitOutOfRange {
                topic: self.topic.name().to_string(),
                group: self.group.clone(),
                offset,
                next_offset: next,
            });
        }
        Ok(())
    }

    fn committed_to(&mut self, offset: u64) {
        self.committed = Some(offset);
        self.polled_since_commit = 0;
        self.last_commit = Instant::now();
        self.outstanding = self.outstanding.split_off(&offset);
    }

    /// Acknowledges one polled record, in any order. With `AckMode::Explicit` the commit point
    /// moves over the contiguous acknowledged prefix only.
    pub fn ack(&mut self, offset: u64) -> Result<()> {
        if offset >= self.position {
            return Err(Error::AckNotPolled {
                topic: self.topic.name().to_string(),
                group: self.group.clone(),
                offset,
                position: self.position,
            });
        }
        self.outstanding.remove(&offset);
        Ok(())
    }

    /// Moves the position: the next poll starts at `offset` (clamped into the topic). Pending
    /// acknowledgements are forgotten; the commit point becomes `offset`.
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        let offset = StartAt::Offset(offset).resolve(&self.topic)?;
        self.position = offset;
        self.outstanding.clear();
        self.iter = self.topic.iter(offset);
        Ok(())
    }

    /// Moves the position to the first record whose timestamp is >= `ts` (or the end).
    pub fn seek_to_timestamp(&mut self, ts: i64) -> Result<()> {
        let offset = StartAt::Timestamp(ts).resolve(&self.topic)?;
        self.seek(offset)
    }

    /// The offset of the next record `poll` returns.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The group's committed offset, if any.
    pub fn committed(&self) -> Option<u64> {
        self.committed
    }

    /// Records appended but not yet polled.
    pub fn lag(&self) -> u64 {
        self.topic.next_offset().saturating_sub(self.position)
    }

    /// The topic consumed.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Stops the consumer, auto-committing first when enabled, and reports a failed commit.
    pub fn close(mut self) -> Result<()> {
        self.final_commit()
    }

    fn final_commit(&mut self) -> Result<()> {
        if self.opts.auto_commit.is_some() && self.polled_since_commit > 0 {
            self.polled_since_commit = 0;
            return self.commit();
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.final_commit();
        crate::sync::lock(&self.store.live).remove(&(self.topic.name().to_string(), self.group.clone()));
    }
}
