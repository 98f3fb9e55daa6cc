//! Work queues: competing consumers over one topic, with leases, acks, delayed redelivery and a
//! dead-letter topic. State lives in the store's sled database (`state.rs`).
//!
//! Model. The queue's `cursor` is the first offset never delivered. Every offset below it is
//! either finished (acked or dead-lettered) or outstanding (a slot with its delivery count); the
//! `floor` is the lowest outstanding offset (the cursor if none is). An outstanding record is
//! leased to one worker until its lease deadline, or ready (at once, or after a nack's delay).
//! Stored compactly (FORMAT.md § Consumer database): the head (floor, cursor), a bit per
//! finished record above the floor, and an entry only for a record delivered more than once or
//! nacked, so a lease of new records and an ack of the oldest one each write one small value.
//!
//! Invariants:
//! - A record is handed to a worker only after its new delivery count (and the cursor, for a
//!   new record) is written and made as durable as `QueueOptions::durability` says: after a
//!   crash a redelivery carries a count at least as high as any delivery before it.
//! - An ack removes the entry durably before it returns: an acked record is never delivered
//!   again (with `CommitDurability::Always`, not even after a power cut).
//! - After a restart every outstanding record is ready (its worker is gone), except that a
//!   nack's delay is kept.
//! - A record reaches the dead-letter topic through an idempotent producer whose sequence is
//!   the source offset, so a crash between the dead-letter append and the removal of the entry
//!   cannot put it there twice.
//! - Only the holder of the newest delivery may ack or nack; an ack after the lease moved to
//!   another worker is [`QueueError::LeaseLost`](crate::error::QueueError::LeaseLost).
//! - Leases and nack delays are timed on the monotonic clock (`Clock::monotonic_ms`), never on
//!   the wall clock, which only schedules `push_at` jobs and, after a restart, the end of a
//!   saved nack delay: a stepped wall clock never gives one job to two workers at once.
mod dead;
mod lease;
mod persist;
mod priority;
mod retry;
mod state;

pub(crate) use dead::DeadLetters;
use lease::wait_for_lease;
pub use priority::{LOW_SHARE_EVERY_DEFAULT, PriorityQueue};
pub use retry::RetryPolicy;
use state::{QueueInner, Slot, State};

use crate::consume::consumer::StartAt;
use crate::consume::producer::{PRODUCER_ID_HEADER, Producer, SEQUENCE_HEADER};
use crate::error::{Error, QueueError, Result};
use crate::format::state::QUEUE_ACK_CHUNK_OFFSETS;
use crate::log::record::{NewRecord, Record};
use crate::log::{Iter, lock};
use crate::store::state::CommitDurability;
use crate::store::{Store, Topic, validate_name};
use persist::{AckChunk, QueueEntry, QueueState, QueueTree, QueueWrites};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Header of a dead letter: why it was dead-lettered (UTF-8).
pub const DEAD_REASON_HEADER: &str = crate::format::reserved_headers::DEAD_REASON;

/// Header of a dead letter: the source topic (UTF-8).
pub const DEAD_TOPIC_HEADER: &str = crate::format::reserved_headers::DEAD_TOPIC;

/// Header of a dead letter: the source offset (decimal, UTF-8).
pub const DEAD_OFFSET_HEADER: &str = crate::format::reserved_headers::DEAD_OFFSET;

/// Header of a dead letter: the queue's group (UTF-8).
pub const DEAD_GROUP_HEADER: &str = crate::format::reserved_headers::DEAD_GROUP;

/// Header of a dead letter: how many times it was delivered (decimal, UTF-8).
pub const DEAD_DELIVERIES_HEADER: &str = crate::format::reserved_headers::DEAD_DELIVERIES;

/// Header of a scheduled job ([`Queue::push_at`]): when to deliver it, ms since the epoch (i64 LE).
pub const DELIVER_AT_HEADER: &str = crate::format::reserved_headers::DELIVER_AT;

/// When a record pushed with [`Queue::push_at`] is due, if it is a scheduled job (a header of
/// another length is ignored: the record is delivered at once).
fn deliver_at(record: &Record) -> Option<i64> {
    let v = record.header(DELIVER_AT_HEADER)?;
    <[u8; 8]>::try_from(v).ok().map(i64::from_le_bytes)
}
use crate::clock::{Clock, SystemClock};

/// How a work queue behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueOptions {
    /// Where a queue with no saved state starts.
    pub start: StartAt,
    /// How long a worker holds a record before it is delivered to another one.
    pub lease_timeout: Duration,
    /// Deliveries after which a record that is nacked, or whose lease runs out, goes to the
    /// dead-letter topic instead of being delivered again (at least 1).
    pub deliveries_max: u32,
    /// The dead-letter topic; `None` means `<topic>.dead`.
    pub dead_letter_topic: Option<String>,
    /// How durable each lease, ack and nack is before it returns.
    pub durability: CommitDurability,
    /// The time source for leases and delays.
    pub clock: Arc<dyn Clock>,
    /// How long a job waits after a failed attempt ([`Queue::retry`], or a lease that ran out)
    /// before it is delivered again; `None` (the default): at once after a lease runs out.
    pub retry: Option<RetryPolicy>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            start: StartAt::Earliest,
            lease_timeout: Duration::from_secs(30),
            deliveries_max: 5,
            dead_letter_topic: None,
            durability: CommitDurability::Always,
            clock: Arc::new(SystemClock),
            retry: None,
        }
    }
}

/// A record leased to one worker. Ack it, nack it or dead-letter it through the queue that
/// handed it out.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The record.
    pub record: Record,
    /// How many times it has been delivered, this time included (1 the first time).
    pub deliveries: u32,
    /// The topic it comes from.
    pub topic: Arc<str>,
    /// What the previous attempt's worker said went wrong ([`Queue::retry`]), in this process.
    pub last_error: Option<Arc<str>>,
    token: u64,
}

impl Delivery {
    /// The record's offset.
    pub fn offset(&self) -> u64 {
        self.record.offset()
    }
}

/// A record that would be delivered next, seen by [`Queue::peek`] without leasing it.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The record.
    pub record: Record,
    /// Deliveries so far.
    pub deliveries: u32,
}

/// Counts of a queue, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Records appended but never delivered.
    pub backlog: u64,
    /// Outstanding records waiting for (re)delivery, due now or later.
    pub ready: u64,
    /// Records leased to a worker.
    pub leased: u64,
    /// Acks since this queue was opened.
    pub acked: u64,
    /// Records sent to the dead-letter topic since this queue was opened.
    pub dead_lettered: u64,
    /// Deliveries since this queue was opened (first ones and redeliveries).
    pub delivered: u64,
    /// Scheduled jobs parked until their time since this queue was opened.
    pub scheduled: u64,
    /// Jobs cancelled ([`Queue::cancel`]) since this queue was opened.
    pub cancelled: u64,
    /// Of `delivered`, deliveries of a job delivered before (after a nack, a retry or an expired
    /// lease).
    pub redelivered: u64,
    /// Leases that run out within [`LEASE_EXPIRING_MS`] (on the monotonic clock): workers about
    /// to lose a job unless they extend, ack or nack it.
    pub leases_expiring: u64,
}

/// How soon a lease must run out to count in [`QueueStats::leases_expiring`], in milliseconds.
pub const LEASE_EXPIRING_MS: i64 = 5_000;

/// A work queue over one topic for one group: each record is leased to one worker at a time,
/// redelivered after a nack or when its lease runs out, and dead-lettered after
/// `deliveries_max` deliveries. Clone it for each worker thread (`Send + Sync`).
///
/// ```
/// use evlog::{QueueOptions, Store, StoreOptions};
/// use std::time::Duration;
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// store.topic("jobs")?.append(b"resize image 7")?;
/// let queue = store.queue("workers", "jobs", QueueOptions::default())?;
/// let job = queue.lease(Duration::from_secs(1))?.expect("a job");
/// assert_eq!((job.record.payload(), job.deliveries), (&b"resize image 7"[..], 1));
/// queue.ack(&job)?; // durable: never delivered again
/// assert!(queue.lease(Duration::ZERO)?.is_none());
/// # Ok::<(), evlog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

/// A work queue as its saved state shows it (see [`Store::queue_infos`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's group.
    pub group: String,
    /// The first offset never delivered (`None`: nothing delivered yet).
    pub cursor: Option<u64>,
    /// Scheduled jobs ([`Queue::push_at`]) parked and not yet due.
    pub scheduled: u64,
    /// Records waiting out a nack's delay.
    pub delayed: u64,
}

impl Store {
    /// The work queues of `topic`, from their saved state (what `evlog info` shows): an open
    /// queue's parked jobs are counted once its changes are written, a closed queue's as it left
    /// them.
    pub fn queue_infos(&self, topic: &str) -> Result<Vec<QueueInfo>> {
        let db = &self.inner().state;
        let now = crate::clock::now_ms();
        let mut out = Vec::new();
        for group in persist::groups(db, topic) {
            let saved = persist::load(db, &persist::tree(db, topic, &group)?)?;
            let waiting = |scheduled: bool| {
                saved.entries.iter().filter(|(_, e)| e.ready_at_ms > now && (e.deliveries == 0) == scheduled).count()
                    as u64
            };
            out.push(QueueInfo {
                cursor: saved.head.map(|h| h.1).or(saved.legacy_cursor),
                scheduled: waiting(true),
                delayed: waiting(false),
                group,
            });
        }
        Ok(out)
    }

    /// The work queue of `group` over `topic` (created if needed). While one is open, opening it
    /// again returns the same queue (and ignores `opts`).
    pub fn queue(&self, group: &str, topic: &str, opts: QueueOptions) -> Result<Queue> {
        validate_name(group)?;
        let t = self.topic(topic)?;
        let inner = self.inner().shared.get_or_make((topic, group), || QueueInner::open(self, t, group, opts))?;
        self.inner().queue_figures.get_or_init(|| open_queue_figures);
        Ok(Queue { inner })
    }

    /// Forgets the saved state of a work queue (its cursor and outstanding records). Fails with
    /// [`Error::GroupBusy`] while the queue is open.
    pub fn delete_queue(&self, group: &str, topic: &str) -> Result<()> {
        if self.inner().shared.is_live::<QueueInner>((topic, group)) {
            return Err(Error::GroupBusy { topic: topic.to_string(), group: group.to_string() });
        }
        persist::delete(&self.inner().state, topic, group)
    }
}

impl Queue {
    /// The queue's topic.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.inner.topic
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> &str {
        self.inner.dead.topic()
    }

    /// Appends a record to the queue's topic (a convenience: any append to the topic enqueues).
    pub fn push(&self, record: &NewRecord<'_>) -> Result<u64> {
        Ok(self.inner.topic.append_record(record)?)
    }

    fn now(&self) -> i64 {
        self.inner.opts.clock.now_ms()
    }

    /// Applies one operation's writes to the database (not yet durable).
    fn write(&self, w: &QueueWrites) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        persist::apply(&self.inner.store.inner().state, &self.inner.tree, w)
    }

    /// Appends `record` to be leased no earlier than `deliver_at_ms` (ms since the Unix epoch,
    /// by the queue's clock): a time already past is delivered at once, a far one is kept. The
    /// queue parks it in its database when its cursor reaches it (one entry, not a scan of the
    /// topic on each lease), so it survives restarts, and a blocking `lease` wakes for it. If
    /// the clock goes back, the job waits until the clock reaches its time again.
    pub fn push_at(&self, record: &NewRecord<'_>, deliver_at_ms: i64) -> Result<u64> {
        let at = deliver_at_ms.to_le_bytes();
        let mut r = record.clone();
        r.headers.retain(|(n, _)| *n != DELIVER_AT_HEADER);
        r.headers.push((DELIVER_AT_HEADER, &at));
        let offset = self.inner.topic.append_record(&r)?;
        Ok(offset)
    }

    /// Appends `record` to be leased no earlier than `delay` from now (see [`Queue::push_at`]).
    pub fn push_after(&self, record: &NewRecord<'_>, delay: Duration) -> Result<u64> {
        self.push_at(record, self.now().saturating_add(duration_ms(delay)))
    }

    /// Acknowledges a delivery: the record is done and is never delivered again. Durable on
    /// return (per `QueueOptions::durability`).
    pub fn ack(&self, d: &Delivery) -> Result<()> {
        self.ack_many(std::slice::from_ref(d))
    }

    /// Acknowledges several deliveries with one durable write. Each that is still the newest
    /// delivery of its record is acked; if some were not, the others are still acked and the
    /// first such one is returned as [`QueueError::LeaseLost`](crate::error::QueueError::LeaseLost).
    pub fn ack_many(&self, deliveries: &[Delivery]) -> Result<()> {
        let inner = &*self.inner;
        let _committing = inner.store.inner().state.committing();
        let mut lost = None;
        let mut done = Vec::with_capacity(deliveries.len());
        {
            let mut st = lock(&inner.state);
            for d in deliveries {
                match self.claim(&mut st, d) {
                    Ok(_) => {
                        st.stats.acked += 1;
                        done.push(d.offset());
                    }
                    Err(e) => {
                        lost.get_or_insert(e);
                    }
                }
            }
            let mut w = QueueWrites::default();
            st.finish(&done, &mut w);
            st.stage_head(&mut w);
            self.write(&w)?;
        }
        if !done.is_empty() {
            inner.store.inner().state.make_durable(inner.opts.durability)?;
        }
        lost.map_or(Ok(()), Err)
    }

    /// A failed attempt: the job is delivered again after the wait `QueueOptions::retry` gives
    /// for this attempt (at once without a policy), or dead-lettered with `error` in its reason
    /// once it has had `deliveries_max` deliveries. The next delivery carries `error` as
    /// `Delivery::last_error` (in this process; a restart forgets it, not the attempt count).
    pub fn retry(&self, d: &Delivery, error: &str) -> Result<()> {
        let wait = self.inner.opts.retry.map_or(Duration::ZERO, |p| p.delay(d.deliveries, d.offset()));
        let reason = format!("retried after {} deliveries (last error: {error})", d.deliveries);
        self.nack_because(d, wait, &reason, Some(error))
    }

    /// Gives a delivery back: redelivered after `delay` (to any worker), or dead-lettered if it
    /// has had `deliveries_max` deliveries. The delay survives a restart.
    pub fn nack(&self, d: &Delivery, delay: Duration) -> Result<()> {
        self.nack_because(d, delay, &format!("nacked after {} deliveries", d.deliveries), None)
    }

    /// `nack`, with the dead letter's reason when it is the last delivery, and the worker's
    /// error for the next delivery (kept only once the delivery is known to be `d`'s).
    fn nack_because(&self, d: &Delivery, delay: Duration, reason: &str, error: Option<&str>) -> Result<()> {
        let inner = &*self.inner;
        let _committing = inner.store.inner().state.committing();
        let offset = d.offset();
        let bury = {
            let mut st = lock(&inner.state);
            let mut slot = self.claim(&mut st, d)?;
            slot.lease = None;
            if let Some(e) = error {
                st.errors.insert(offset, Arc::from(e));
            }
            if slot.deliveries >= inner.opts.deliveries_max {
                slot.dying = true;
                st.slots.insert(offset, slot);
                true
            } else {
                // The delay runs on the monotonic clock here; the entry keeps its end as a time of
                // day, for after a restart.
                let clock = &inner.opts.clock;
                slot.due_ms = clock.monotonic_ms().saturating_add(duration_ms(delay));
                slot.delayed = true;
                slot.stored = true;
                st.slots.insert(offset, slot);
                st.delayed.insert((slot.due_ms, offset));
                let ready_at_ms = clock.now_ms().saturating_add(duration_ms(delay));
                let entry = QueueEntry { deliveries: slot.deliveries, ready_at_ms };
                self.write(&QueueWrites { entries: vec![(offset, entry)], ..QueueWrites::default() })?;
                false
            }
        };
        if bury {
            return self.bury(offset, reason);
        }
        // Wake workers waiting in `lease`.
        inner.store.inner().signal.notify();
        inner.store.inner().state.make_durable(inner.opts.durability)
    }

    /// Heartbeat: the lease of `d` now runs until `by` from now (on the monotonic clock), for a
    /// worker whose job takes longer than `lease_timeout`. Fails with
    /// [`QueueError::LeaseLost`](crate::error::QueueError::LeaseLost) when the lease is no
    /// longer `d`'s (it ran out, or the job was acked, cancelled or dead-lettered): the worker
    /// should stop. Nothing is written (leases live in memory).
    pub fn extend(&self, d: &Delivery, by: Duration) -> Result<()> {
        let monotonic = self.inner.opts.clock.monotonic_ms();
        let mut st = lock(&self.inner.state);
        let offset = d.offset();
        let slot = self.newest(&st, d)?;
        let Some((token, deadline)) = slot.lease.filter(|&(_, deadline)| deadline > monotonic) else {
            return Err(self.lease_lost(offset, "its lease ran out"));
        };
        let extended = monotonic.saturating_add(duration_ms(by));
        st.leased.remove(&(deadline, offset));
        st.leased.insert((extended, offset));
        if let Some(s) = st.slots.get_mut(&offset) {
            s.lease = Some((token, extended));
        }
        Ok(())
    }

    /// Cancels the job at `offset` from outside: pending (not yet read by the queue), ready,
    /// delayed, scheduled or leased, it is finished as an ack would finish it (durably, as
    /// `QueueOptions::durability` says) and never delivered again; a worker holding it learns at
    /// its next `extend` or `ack` (`LeaseLost`). Returns whether there was such a job (`false`:
    /// already finished, or no record at that offset yet).
    pub fn cancel(&self, offset: u64) -> Result<bool> {
        let inner = &*self.inner;
        let _committing = inner.store.inner().state.committing();
        {
            let mut st = lock(&inner.state);
            let mut w = QueueWrites::default();
            if offset >= st.cursor {
                // Not read yet: its ack bit makes the queue skip it when it gets there.
                if offset >= inner.topic.next_offset() || offset < inner.topic.first_offset() || st.is_acked(offset) {
                    return Ok(false);
                }
                let mut touched = std::collections::BTreeSet::new();
                st.set_acked(offset, &mut touched);
                w.ack_chunks.extend(touched.into_iter().filter_map(|c| st.chunks.get(&c).map(|bits| (c, *bits))));
            } else {
                if st.slots.get(&offset).is_none_or(|s| s.dying) {
                    return Ok(false); // finished, or on its way to the dead letters
                }
                st.unlink(offset);
                st.finish(&[offset], &mut w);
                st.stage_head(&mut w);
            }
            st.stats.cancelled += 1;
            self.write(&w)?;
        }
        inner.store.inner().state.make_durable(inner.opts.durability)?;
        Ok(true)
    }

    /// Up to `max` records that would be delivered next (due redeliveries, then new records),
    /// without leasing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>> {
        let inner = &*self.inner;
        let now = self.now();
        let mut st = lock(&inner.state);
        st.end_delays(now, inner.opts.clock.monotonic_ms());
        let mut out = Vec::new();
        for &(due, offset) in &st.ready {
            if due > now || out.len() >= max {
                break;
            }
            if let (Some(slot), Some(record)) = (st.slots.get(&offset), inner.topic.read(offset)?) {
                out.push(Peeked { record, deliveries: slot.deliveries });
            }
        }
        for r in inner.topic.iter(st.cursor.max(inner.topic.first_offset())) {
            if out.len() >= max {
                break;
            }
            out.push(Peeked { record: r?, deliveries: 0 });
        }
        Ok(out)
    }

    /// The queue's counts now.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.inner.state);
        let soon = self.inner.opts.clock.monotonic_ms().saturating_add(LEASE_EXPIRING_MS);
        QueueStats {
            backlog: self.inner.topic.next_offset().saturating_sub(st.cursor),
            ready: (st.ready.len() + st.delayed.len()) as u64,
            leased: st.leased.len() as u64,
            leases_expiring: st.leased.range(..(soon, u64::MAX)).count() as u64,
            ..st.stats
        }
    }
}

/// The counts of every work queue open in this process: (topic, group, counts).
pub(crate) fn open_queue_stats(store: &Store) -> Vec<(String, String, QueueStats)> {
    let open = store.inner().shared.values::<QueueInner>();
    let mut v: Vec<_> = open.into_iter().map(|((t, g), inner)| (t, g, Queue { inner }.stats())).collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

/// The stats file's lines for the queues open in `store` (see `store::stats_file`).
fn open_queue_figures(store: &Store) -> Vec<crate::store::QueueFigures> {
    open_queue_stats(store)
        .into_iter()
        .map(|(topic, queue, q)| crate::store::QueueFigures {
            topic,
            queue,
            backlog: q.backlog,
            ready: q.ready,
            leased: q.leased,
            scheduled: q.scheduled,
            dead_lettered: q.dead_lettered,
            delivered: q.delivered,
            redelivered: q.redelivered,
            acked: q.acked,
            leases_expiring: q.leases_expiring,
        })
        .collect()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
