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
//!   another worker is [`QueueError::LeaseLost`](crate::QueueError::LeaseLost).

use crate::consume::consumer::StartAt;
use crate::consume::producer::{PRODUCER_ID_HEADER, Producer, SEQUENCE_HEADER};
use crate::error::{Error, QueueError, Result};
use crate::format::state::QUEUE_ACK_CHUNK_OFFSETS;
use crate::log::record::{NewRecord, Record};
use crate::log::{Iter, lock};
use crate::store::state::{AckChunk, CommitDurability, QueueEntry, QueueState, QueueTree, QueueWrites};
use crate::store::{Store, Topic, validate_name};
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
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    deliveries: u32,
    /// When a ready slot becomes due (also its key in `ready`).
    due_ms: i64,
    /// (token, deadline) while leased.
    lease: Option<(u64, i64)>,
    /// On its way to the dead-letter topic: not deliverable.
    dying: bool,
    /// Has a queue entry in the database (else it is stored as "delivered once, due at once").
    stored: bool,
}

impl Slot {
    fn new(deliveries: u32, due_ms: i64, stored: bool) -> Slot {
        Slot { deliveries, due_ms, lease: None, dying: false, stored }
    }
}

#[derive(Debug)]
struct State {
    cursor: u64,
    /// Reads new records from `cursor` on.
    iter: Iter,
    slots: BTreeMap<u64, Slot>,
    /// (due, offset) of ready slots.
    ready: BTreeSet<(i64, u64)>,
    /// (deadline, offset) of leased slots.
    leased: BTreeSet<(i64, u64)>,
    next_token: u64,
    stats: QueueStats,
    /// The (floor, cursor) the database holds, once it holds one.
    stored_head: Option<(u64, u64)>,
    /// The database's ack chunks that are not wholly below the floor, by number.
    chunks: BTreeMap<u64, AckChunk>,
}

/// The ack chunk that covers `offset`, and the byte and bit in it.
fn ack_bit(offset: u64) -> (u64, usize, u8) {
    let i = offset % QUEUE_ACK_CHUNK_OFFSETS;
    (offset / QUEUE_ACK_CHUNK_OFFSETS, (i / 8) as usize, 1 << (i % 8))
}

impl State {
    /// The lowest outstanding offset, or the cursor if none is.
    fn floor(&self) -> u64 {
        self.slots.first_key_value().map_or(self.cursor, |(&o, _)| o.min(self.cursor))
    }

    fn is_acked(&self, offset: u64) -> bool {
        let (chunk, byte, bit) = ack_bit(offset);
        self.chunks.get(&chunk).and_then(|c| c.get(byte)).is_some_and(|b| b & bit != 0)
    }

    /// Sets `offset`'s ack bit, noting its chunk in `touched`.
    fn set_acked(&mut self, offset: u64, touched: &mut BTreeSet<u64>) {
        let (chunk, byte, bit) = ack_bit(offset);
        if let Some(b) =
            self.chunks.entry(chunk).or_insert([0; crate::format::state::QUEUE_ACK_CHUNK_LEN]).get_mut(byte)
        {
            *b |= bit;
        }
        touched.insert(chunk);
    }

    /// Marks records finished (acked, dead-lettered, or removed by retention): their slots go,
    /// their entries are removed, and those left above the new floor get their ack bit. The
    /// slots must already be out of `ready`/`leased`.
    fn finish(&mut self, offsets: &[u64], w: &mut QueueWrites) {
        let mut gone = Vec::with_capacity(offsets.len());
        for &offset in offsets {
            if let Some(slot) = self.slots.remove(&offset) {
                if slot.stored {
                    w.remove_entries.push(offset);
                }
                gone.push(offset);
            }
        }
        let floor = self.floor();
        let mut touched = BTreeSet::new();
        for offset in gone.into_iter().filter(|&o| o >= floor) {
            self.set_acked(offset, &mut touched);
        }
        w.ack_chunks.extend(touched.into_iter().filter_map(|c| self.chunks.get(&c).map(|bits| (c, *bits))));
    }

    /// Adds the head to `w` if it moved since it was stored, and removes the chunks wholly
    /// below the floor.
    fn stage_head(&mut self, w: &mut QueueWrites) {
        let head = (self.floor(), self.cursor);
        if self.stored_head != Some(head) {
            w.head = Some(head);
            self.stored_head = Some(head);
        }
        while let Some((&chunk, _)) = self.chunks.first_key_value() {
            if chunk.saturating_add(1).saturating_mul(QUEUE_ACK_CHUNK_OFFSETS) > head.0 {
                break;
            }
            self.chunks.pop_first();
            w.remove_chunks.push(chunk);
        }
    }

    /// Takes a slot out of `ready`/`leased`, whichever holds it.
    fn unlink(&mut self, offset: u64) {
        if let Some(s) = self.slots.get(&offset) {
            match s.lease {
                Some((_, deadline)) => self.leased.remove(&(deadline, offset)),
                None => self.ready.remove(&(s.due_ms, offset)),
            };
        }
    }
}

#[derive(Debug)]
pub(crate) struct QueueInner {
    store: Store,
    topic: Arc<Topic>,
    group: String,
    opts: QueueOptions,
    dead: DeadLetters,
    tree: QueueTree,
    state: Mutex<State>,
}

impl Drop for QueueInner {
    fn drop(&mut self) {
        self.store.inner().shared.forget_dead::<QueueInner>((self.topic.name(), &self.group));
    }
}

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
        for group in db.queue_groups(topic) {
            let saved = db.queue_load(&db.queue_tree(topic, &group)?)?;
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
        Ok(Queue { inner })
    }

    /// Forgets the saved state of a work queue (its cursor and outstanding records). Fails with
    /// [`Error::GroupBusy`] while the queue is open.
    pub fn delete_queue(&self, group: &str, topic: &str) -> Result<()> {
        if self.inner().shared.is_live::<QueueInner>((topic, group)) {
            return Err(Error::GroupBusy { topic: topic.to_string(), group: group.to_string() });
        }
        self.inner().state.queue_delete(topic, group)
    }
}

impl QueueInner {
    /// Loads a queue's saved state and sets it up; `Store::queue` registers it.
    fn open(store: &Store, t: Arc<Topic>, group: &str, opts: QueueOptions) -> Result<Arc<QueueInner>> {
        let topic = t.name();
        if opts.deliveries_max == 0 {
            return Err(Error::InvalidOptions { reason: "deliveries_max must be at least 1".into() });
        }
        let dead = DeadLetters::new(store, "queue", group, topic, opts.dead_letter_topic.as_deref())?;
        let db = &store.inner().state;
        let tree = db.queue_tree(topic, group)?;
        let saved = db.queue_load(&tree)?;
        let (first, next) = (t.first_offset(), t.next_offset());
        let mut writes = QueueWrites::default();
        let st = load_state(saved, &opts, &t, (first, next), &mut writes)?;
        db.queue_apply(&tree, &writes)?;
        if !writes.is_empty() {
            db.make_durable(opts.durability)?;
        }
        Ok(Arc::new(QueueInner {
            store: store.clone(),
            topic: t,
            group: group.to_string(),
            opts,
            dead,
            tree,
            state: Mutex::new(st),
        }))
    }
}

/// Builds a queue's state from what the database holds (`first..next` are the topic's
/// offsets), adding to `w` what tidies it: the conversion of the older per-entry layout, the
/// removal of entries of finished records, a head that moved.
fn load_state(
    saved: QueueState,
    opts: &QueueOptions,
    t: &Arc<Topic>,
    (first, next): (u64, u64),
    w: &mut QueueWrites,
) -> Result<State> {
    let legacy = saved.head.is_none();
    let had_state = !legacy || saved.legacy_cursor.is_some() || !saved.entries.is_empty();
    let entries: BTreeMap<u64, QueueEntry> = saved.entries.into_iter().collect();
    let (floor, cursor) = match saved.head {
        Some(head) => head,
        None => {
            // The older layout: every record below the cursor without an entry is finished.
            let cursor = match saved.legacy_cursor {
                Some(c) => c,
                None => opts.start.resolve(t)?,
            };
            (entries.keys().next().map_or(cursor, |&o| o.min(cursor)), cursor)
        }
    };
    // A crash between a lease's entries and the head that covers them leaves entries at or
    // past the stored cursor: those records were delivered, so the cursor goes past them.
    // Entries past the topic's end (a tail lost in a power cut) are not; they are dropped.
    let past_entries = entries.range(..next).next_back().map_or(0, |(&o, _)| o + 1);
    let cursor = cursor.max(past_entries).clamp(first, next);
    // Below the topic's first offset, retention removed the records: nothing to deliver.
    let floor = floor.clamp(first, cursor);
    let mut st = State {
        cursor,
        iter: t.iter(cursor),
        slots: BTreeMap::new(),
        ready: BTreeSet::new(),
        leased: BTreeSet::new(),
        next_token: 1,
        stats: QueueStats::default(),
        stored_head: saved.head,
        chunks: saved.ack_chunks.into_iter().collect(),
    };
    let mut touched = BTreeSet::new();
    for offset in floor..cursor {
        if st.is_acked(offset) {
            continue;
        }
        // Its worker is gone: ready at once, or when its nack delay ends.
        let slot = match entries.get(&offset) {
            Some(e) => Slot::new(e.deliveries, e.ready_at_ms, true),
            None if legacy => {
                st.set_acked(offset, &mut touched);
                continue;
            }
            None => Slot::new(1, 0, false),
        };
        st.slots.insert(offset, slot);
        st.ready.insert((slot.due_ms, offset));
    }
    w.ack_chunks.extend(touched.into_iter().filter_map(|c| st.chunks.get(&c).map(|bits| (c, *bits))));
    w.remove_entries.extend(entries.keys().filter(|o| !st.slots.get(o).is_some_and(|s| s.stored)));
    w.remove_legacy_cursor = saved.legacy_cursor.is_some();
    if had_state {
        st.stage_head(w);
    }
    Ok(st)
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

    fn lease_lost(&self, offset: u64, reason: &str) -> Error {
        Error::Queue(QueueError::LeaseLost {
            topic: self.inner.topic.name().to_string(),
            group: self.inner.group.clone(),
            offset,
            reason: reason.to_string(),
        })
    }

    /// Leases the next record if one is due now: redeliveries first (oldest due first), then
    /// new records in offset order. Never blocks on other workers' leases.
    pub fn try_lease(&self) -> Result<Option<Delivery>> {
        Ok(self.try_lease_many(1)?.pop())
    }

    /// Leases up to `max` due records at once (same order as [`Queue::try_lease`]), with one
    /// durable write for all of them.
    pub fn try_lease_many(&self, max: usize) -> Result<Vec<Delivery>> {
        let inner = &*self.inner;
        let _committing = inner.store.inner().state.committing();
        let now = self.now();
        let mut dying = Vec::new();
        let leased = self.lease_locked(now, max, &mut dying);
        // Dead letters found on the way are sent even if leasing failed.
        for (offset, reason) in dying {
            self.bury(offset, &reason)?;
        }
        let leased = leased?;
        if !leased.is_empty() {
            inner.store.inner().state.make_durable(inner.opts.durability)?;
        }
        Ok(leased)
    }

    fn lease_locked(&self, now: i64, max: usize, dying: &mut Vec<(u64, String)>) -> Result<Vec<Delivery>> {
        let inner = &*self.inner;
        let deliveries_max = inner.opts.deliveries_max;
        let mut st = lock(&inner.state);
        // Leases that ran out: ready again, or dead if they used their last delivery.
        while let Some(&(deadline, offset)) = st.leased.first() {
            if deadline > now {
                break;
            }
            st.leased.pop_first();
            let Some(slot) = st.slots.get_mut(&offset) else { continue };
            slot.lease = None;
            if slot.deliveries >= deliveries_max {
                slot.dying = true;
                dying.push((offset, format!("lease expired after {} deliveries", slot.deliveries)));
            } else {
                slot.due_ms = deadline;
                st.ready.insert((deadline, offset));
            }
        }
        let deadline = now.saturating_add(duration_ms(inner.opts.lease_timeout));
        let (mut out, mut w) = (Vec::new(), QueueWrites::default());
        while out.len() < max {
            let Some((record, is_new)) = self.pick(&mut st, now, dying, &mut w)? else { break };
            let offset = record.offset();
            let token = st.next_token;
            st.next_token += 1;
            // `pick` returns only offsets it has a slot for.
            let Some(slot) = st.slots.get_mut(&offset) else {
                debug_assert!(false, "picked offset {offset} has no slot");
                break;
            };
            slot.deliveries += 1;
            slot.lease = Some((token, deadline));
            let deliveries = slot.deliveries;
            if !is_new {
                // A first delivery is stored by the head; later ones need an entry.
                slot.stored = true;
                w.entries.push((offset, QueueEntry { deliveries, ready_at_ms: 0 }));
            }
            st.leased.insert((deadline, offset));
            st.stats.delivered += 1;
            out.push(Delivery { record, deliveries, topic: inner.topic.name().into(), token });
        }
        st.stage_head(&mut w);
        // Written under the lock so sled sees the queue's changes in memory order.
        self.write(&w)?;
        Ok(out)
    }

    /// Applies one operation's writes to the database (not yet durable).
    fn write(&self, w: &QueueWrites) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        self.inner.store.inner().state.queue_apply(&self.inner.tree, w)
    }

    /// The next deliverable record, with whether it is new (the cursor moved).
    fn pick(
        &self,
        st: &mut State,
        now: i64,
        dying: &mut Vec<(u64, String)>,
        w: &mut QueueWrites,
    ) -> Result<Option<(Record, bool)>> {
        let inner = &*self.inner;
        while let Some(&(due, offset)) = st.ready.first() {
            if due > now {
                break;
            }
            st.ready.pop_first();
            let Some(slot) = st.slots.get_mut(&offset) else { continue };
            if slot.deliveries >= inner.opts.deliveries_max {
                // Only after a restart: its last delivery was never acked.
                slot.dying = true;
                dying.push((offset, format!("not acked after {} deliveries", slot.deliveries)));
                continue;
            }
            match inner.topic.read(offset)? {
                Some(record) => return Ok(Some((record, false))),
                None => {
                    // Removed by retention: nothing left to deliver.
                    st.finish(&[offset], w);
                }
            }
        }
        let first = inner.topic.first_offset();
        if st.cursor < first {
            st.cursor = first;
            st.iter = inner.topic.iter(first);
        }
        for r in st.iter.by_ref() {
            let record = r?;
            let offset = record.offset();
            st.cursor = offset + 1;
            match deliver_at(&record).filter(|&at| at > now) {
                // Scheduled for later: parked as a stored entry (never delivered yet), due then.
                Some(at) => {
                    st.slots.insert(offset, Slot::new(0, at, true));
                    st.ready.insert((at, offset));
                    st.stats.scheduled += 1;
                    w.entries.push((offset, QueueEntry { deliveries: 0, ready_at_ms: at }));
                }
                None => {
                    st.slots.insert(offset, Slot::new(0, 0, false));
                    return Ok(Some((record, true)));
                }
            }
        }
        Ok(None)
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

    /// Leases the next record, waiting up to `timeout` for one to be appended, nacked back or
    /// freed by a lease timeout (woken by appends and nacks, not by polling).
    pub fn lease(&self, timeout: Duration) -> Result<Option<Delivery>> {
        wait_for_lease(&self.inner, timeout, || self.try_lease(), || self.next_due())
    }

    /// The store-wide append signal and the queue's clock (for async waiting).
    #[cfg(feature = "tokio")]
    pub(crate) fn waiting_parts(&self) -> (Arc<crate::sync::AppendSignal>, Arc<dyn Clock>) {
        (self.inner.store.inner().signal.clone(), self.inner.opts.clock.clone())
    }

    /// When the next lease runs out or the next delayed record becomes due (ms).
    pub(crate) fn next_due(&self) -> i64 {
        let st = lock(&self.inner.state);
        let lease_end = st.leased.first().map_or(i64::MAX, |e| e.0);
        lease_end.min(st.ready.first().map_or(i64::MAX, |e| e.0))
    }

    /// Checks that `d` is the newest delivery of its record and takes the slot out of the
    /// ready/leased sets. Returns the slot.
    fn claim(&self, st: &mut State, d: &Delivery) -> Result<Slot> {
        let offset = d.offset();
        let Some(slot) = st.slots.get(&offset).copied() else {
            return Err(self.lease_lost(offset, "already acked or dead-lettered"));
        };
        let newest = slot.deliveries == d.deliveries && slot.lease.is_none_or(|(t, _)| t == d.token);
        if !newest || slot.dying {
            return Err(self.lease_lost(offset, "delivered to another worker since its lease ran out"));
        }
        st.unlink(offset);
        Ok(slot)
    }

    /// Acknowledges a delivery: the record is done and is never delivered again. Durable on
    /// return (per `QueueOptions::durability`).
    pub fn ack(&self, d: &Delivery) -> Result<()> {
        self.ack_many(std::slice::from_ref(d))
    }

    /// Acknowledges several deliveries with one durable write. Each that is still the newest
    /// delivery of its record is acked; if some were not, the others are still acked and the
    /// first such one is returned as [`QueueError::LeaseLost`](crate::QueueError::LeaseLost).
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

    /// Gives a delivery back: redelivered after `delay` (to any worker), or dead-lettered if it
    /// has had `deliveries_max` deliveries. The delay survives a restart.
    pub fn nack(&self, d: &Delivery, delay: Duration) -> Result<()> {
        let inner = &*self.inner;
        let _committing = inner.store.inner().state.committing();
        let offset = d.offset();
        let bury = {
            let mut st = lock(&inner.state);
            let mut slot = self.claim(&mut st, d)?;
            slot.lease = None;
            if slot.deliveries >= inner.opts.deliveries_max {
                slot.dying = true;
                st.slots.insert(offset, slot);
                true
            } else {
                slot.due_ms = self.now().saturating_add(duration_ms(delay));
                slot.stored = true;
                st.slots.insert(offset, slot);
                st.ready.insert((slot.due_ms, offset));
                let entry = QueueEntry { deliveries: slot.deliveries, ready_at_ms: slot.due_ms };
                self.write(&QueueWrites { entries: vec![(offset, entry)], ..QueueWrites::default() })?;
                false
            }
        };
        if bury {
            return self.bury(offset, &format!("nacked after {} deliveries", d.deliveries));
        }
        // Wake workers waiting in `lease`.
        inner.store.inner().signal.notify();
        inner.store.inner().state.make_durable(inner.opts.durability)
    }

    /// Sends a delivery to the dead-letter topic now, with `reason` (a poison message).
    pub fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()> {
        {
            let mut st = lock(&self.inner.state);
            let mut slot = self.claim(&mut st, d)?;
            slot.lease = None;
            slot.dying = true;
            st.slots.insert(d.offset(), slot);
        }
        self.bury(d.offset(), reason)
    }

    /// Appends the record at `offset` to the dead-letter topic (once, even across a crash) and
    /// then removes its entry.
    fn bury(&self, offset: u64, reason: &str) -> Result<()> {
        let inner = &*self.inner;
        let deliveries = lock(&inner.state).slots.get(&offset).map_or(0, |s| s.deliveries);
        if let Some(record) = inner.topic.read(offset)? {
            inner.dead.send(&record, reason, deliveries)?;
        }
        {
            let mut st = lock(&inner.state);
            let mut w = QueueWrites::default();
            st.finish(&[offset], &mut w);
            st.stage_head(&mut w);
            st.stats.dead_lettered += 1;
            self.write(&w)?;
        }
        inner.store.inner().state.make_durable(inner.opts.durability)
    }

    /// Up to `max` records that would be delivered next (due redeliveries, then new records),
    /// without leasing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>> {
        let inner = &*self.inner;
        let now = self.now();
        let st = lock(&inner.state);
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
        QueueStats {
            backlog: self.inner.topic.next_offset().saturating_sub(st.cursor),
            ready: st.ready.len() as u64,
            leased: st.leased.len() as u64,
            ..st.stats
        }
    }
}

/// The dead-letter writer of one queue or subscription: `(group, source topic)` into its
/// dead-letter topic through an idempotent producer (id `<kind>.<group>.<topic>`) made on first
/// use. The sequence is the source offset, so sending a record again (after a crash) appends
/// nothing.
#[derive(Debug)]
pub(crate) struct DeadLetters {
    store: Store,
    group: String,
    source: String,
    topic: String,
    producer_id: String,
    producer: Mutex<Option<Producer>>,
}

impl DeadLetters {
    /// Checks the names: `dead_topic` (default `<source>.dead`) must be valid and differ from
    /// the source, and so must the producer id `<kind>.<group>.<source>`.
    pub(crate) fn new(store: &Store, kind: &str, group: &str, source: &str, dead_topic: Option<&str>) -> Result<Self> {
        let topic = dead_topic.map_or_else(|| format!("{source}.dead"), str::to_string);
        validate_name(&topic)?;
        if topic == source {
            return Err(Error::InvalidOptions { reason: "the dead-letter topic must differ from the source".into() });
        }
        let producer_id = format!("{kind}.{group}.{source}");
        validate_name(&producer_id)?;
        Ok(DeadLetters {
            store: store.clone(),
            group: group.to_string(),
            source: source.to_string(),
            topic,
            producer_id,
            producer: Mutex::new(None),
        })
    }

    /// The dead-letter topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Appends `record` with its timestamp, key and headers plus the `evlog.dead.*` headers.
    pub(crate) fn send(&self, record: &Record, reason: &str, deliveries: u32) -> Result<()> {
        let producer = {
            let mut slot = lock(&self.producer);
            match &*slot {
                Some(p) => p.clone(),
                None => slot.insert(self.store.producer(&self.topic, &self.producer_id)?).clone(),
            }
        };
        let (offset_text, deliveries_text) = (record.offset().to_string(), deliveries.to_string());
        let mut headers: Vec<(&str, &[u8])> =
            record.headers().filter(|(n, _)| *n != PRODUCER_ID_HEADER && *n != SEQUENCE_HEADER).collect();
        headers.extend([
            (DEAD_REASON_HEADER, reason.as_bytes()),
            (DEAD_TOPIC_HEADER, self.source.as_bytes()),
            (DEAD_OFFSET_HEADER, offset_text.as_bytes()),
            (DEAD_GROUP_HEADER, self.group.as_bytes()),
            (DEAD_DELIVERIES_HEADER, deliveries_text.as_bytes()),
        ]);
        let dead =
            NewRecord { timestamp: Some(record.timestamp()), key: record.key(), headers, payload: record.payload() };
        producer.send_with_sequence(record.offset(), &dead).map(|_| ())
    }
}

/// Calls `attempt` until it leases something or `timeout` passes; in between, sleeps until an
/// append or nack anywhere in the store, or until `next_due` (a lease running out, a delay
/// ending).
fn wait_for_lease(
    inner: &QueueInner,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<Delivery>>,
    next_due: impl Fn() -> i64,
) -> Result<Option<Delivery>> {
    let signal = &inner.store.inner().signal;
    let clock = &inner.opts.clock;
    let deadline = clock.now_ms().saturating_add(duration_ms(timeout));
    loop {
        let generation = signal.generation();
        if let Some(d) = attempt()? {
            return Ok(Some(d));
        }
        let now = clock.now_ms();
        if now >= deadline {
            return Ok(None);
        }
        let wait_ms = deadline.min(next_due()).saturating_sub(now).max(1);
        signal.wait_past(generation, Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX)));
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Default of [`PriorityQueue::low_share_every`].
pub const LOW_SHARE_EVERY_DEFAULT: u32 = 8;

/// A priority queue over lanes: one work queue per lane topic, highest priority first.
/// `lease` serves the highest lane that has a due record, FIFO within a lane.
///
/// Guard against starvation: of every `low_share_every` leases, one is offered to the lanes
/// below the top first, taking them in rotation (the top lane still gets it if they are all
/// empty). So while higher lanes never run dry, each lower lane with work still gets at least
/// one lease in `low_share_every × (lanes − 1)`.
///
/// ```
/// use evlog::{NewRecord, QueueOptions, Store, StoreOptions};
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// let pq = store.priority_queue("workers", &["jobs.high", "jobs.low"], QueueOptions::default())?;
/// pq.push(1, &NewRecord::new(b"backfill"))?;
/// pq.push(0, &NewRecord::new(b"page the on-call"))?;
/// let d = pq.try_lease()?.expect("work");
/// assert_eq!(d.record.payload(), b"page the on-call");
/// pq.ack(&d)?;
/// # Ok::<(), evlog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PriorityQueue {
    lanes: Arc<[Queue]>,
    low_share_every: u32,
    /// Leases so far and the next lower lane in rotation.
    turn: Arc<Mutex<(u64, usize)>>,
}

impl Store {
    /// A priority queue of `group` over `lanes` (topic names, highest priority first), each
    /// lane a [`Queue`] with `opts`.
    pub fn priority_queue(&self, group: &str, lanes: &[&str], opts: QueueOptions) -> Result<PriorityQueue> {
        if lanes.is_empty() {
            return Err(Error::InvalidOptions { reason: "a priority queue needs at least one lane".into() });
        }
        let lanes = lanes.iter().map(|t| self.queue(group, t, opts.clone())).collect::<Result<Vec<_>>>()?;
        Ok(PriorityQueue { lanes: lanes.into(), low_share_every: LOW_SHARE_EVERY_DEFAULT, turn: Arc::default() })
    }
}

impl PriorityQueue {
    /// Sets the starvation guard: one lease in `every` goes to the lower lanes first (at least 2;
    /// `u32::MAX` makes priorities strict).
    pub fn low_share_every(mut self, every: u32) -> Self {
        self.low_share_every = every.max(2);
        self
    }

    /// The lanes, highest priority first.
    pub fn lanes(&self) -> &[Queue] {
        &self.lanes
    }

    /// Appends a record to lane `priority` (0 = highest).
    pub fn push(&self, priority: usize, record: &NewRecord<'_>) -> Result<u64> {
        self.lane(priority)?.push(record)
    }

    fn lane(&self, i: usize) -> Result<&Queue> {
        self.lanes.get(i).ok_or_else(|| {
            Error::Queue(QueueError::NoSuchLane { what: format!("priority {i}"), lanes: self.lanes.len() })
        })
    }

    fn lane_of(&self, d: &Delivery) -> Result<&Queue> {
        self.lanes.iter().find(|q| q.topic().name() == &*d.topic).ok_or_else(|| {
            Error::Queue(QueueError::NoSuchLane {
                what: format!("a delivery from topic {:?}", d.topic),
                lanes: self.lanes.len(),
            })
        })
    }

    /// Leases from the highest lane with a due record (see the starvation guard above).
    pub fn try_lease(&self) -> Result<Option<Delivery>> {
        let n = self.lanes.len();
        let order: Vec<usize> = {
            let mut turn = lock(&self.turn);
            turn.0 += 1;
            if n > 1 && turn.0.is_multiple_of(u64::from(self.low_share_every)) {
                let start = 1 + turn.1 % (n - 1);
                turn.1 = turn.1.wrapping_add(1);
                (start..n).chain(1..start).chain([0]).collect()
            } else {
                (0..n).collect()
            }
        };
        for i in order {
            if let Some(d) = self.lanes.get(i).map(Queue::try_lease).transpose()?.flatten() {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Like [`Queue::lease`] across the lanes.
    pub fn lease(&self, timeout: Duration) -> Result<Option<Delivery>> {
        let next_due = || self.lanes.iter().map(Queue::next_due).min().unwrap_or(i64::MAX);
        // A priority queue has at least one lane (checked when it is made).
        let Some(first) = self.lanes.first() else { return Ok(None) };
        wait_for_lease(&first.inner, timeout, || self.try_lease(), next_due)
    }

    /// Acks a delivery on its lane.
    pub fn ack(&self, d: &Delivery) -> Result<()> {
        self.lane_of(d)?.ack(d)
    }

    /// Nacks a delivery on its lane.
    pub fn nack(&self, d: &Delivery, delay: Duration) -> Result<()> {
        self.lane_of(d)?.nack(d, delay)
    }

    /// Dead-letters a delivery from its lane.
    pub fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<()> {
        self.lane_of(d)?.dead_letter(d, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use std::path::Path;

    #[test]
    fn entries_written_without_their_cursor_count_as_delivered_after_a_crash() {
        // `queue_apply` writes a lease's entries before its cursor, one sled write each; a
        // crash in between leaves entries at or past the saved cursor. Those records were
        // delivered: the reopened queue must redeliver them with a higher count, not deliver
        // them as new, and must not skip the record after them.
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
        let topic = store.topic("jobs").expect("topic");
        for p in [b"a", b"b", b"c"] {
            topic.append(p).expect("append");
        }
        let entry = QueueEntry { deliveries: 1, ready_at_ms: 0 };
        let db = &store.inner().state;
        db.queue_write_legacy(&db.queue_tree("jobs", "workers").expect("tree"), None, &[(0, entry), (1, entry)]);
        let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
        let got: Vec<(u64, u32)> = (0..3)
            .map(|_| q.try_lease().expect("lease").expect("a record"))
            .map(|d| (d.offset(), d.deliveries))
            .collect();
        assert_eq!(got, vec![(0, 2), (1, 2), (2, 1)]);
        assert!(q.try_lease().expect("lease").is_none());
    }

    fn jobs(tmp: &Path, n: usize) -> Store {
        let store = Store::open(tmp, StoreOptions::default()).expect("store");
        let topic = store.topic("jobs").expect("topic");
        for i in 0..n {
            topic.append(format!("job {i}").as_bytes()).expect("append");
        }
        store
    }

    fn lazy() -> QueueOptions {
        QueueOptions { durability: CommitDurability::Lazy, ..QueueOptions::default() }
    }

    #[test]
    fn thousands_of_leases_and_out_of_order_acks_leave_a_handful_of_keys() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = jobs(tmp.path(), 5_000);
        let q = store.queue("workers", "jobs", lazy()).expect("queue");
        // Acks in batches of 100 taken out of order, one record held back until the end.
        let held = q.try_lease().expect("lease").expect("a job");
        loop {
            let mut got = q.try_lease_many(100).expect("lease");
            if got.is_empty() {
                break;
            }
            got.reverse();
            q.ack_many(&got).expect("ack");
        }
        let db = &store.inner().state;
        let tree = db.queue_tree("jobs", "workers").expect("tree");
        // The head, and the ack chunks above the held record (5,000 bits in 5 chunks).
        assert!(db.queue_key_count(&tree) <= 6, "{} keys", db.queue_key_count(&tree));
        q.ack(&held).expect("ack");
        // The head, and the chunk the floor (5,000) is in.
        assert_eq!(
            db.queue_key_count(&tree),
            2,
            "only the head and the floor's chunk are left once every job is acked"
        );
        drop(q);
        let q = store.queue("workers", "jobs", lazy()).expect("reopen");
        assert!(q.try_lease().expect("lease").is_none(), "no acked job comes back");
    }

    #[test]
    fn a_queue_in_the_older_per_entry_layout_opens_with_its_jobs_and_is_rewritten_compactly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = jobs(tmp.path(), 12);
        let db = &store.inner().state;
        let tree = db.queue_tree("jobs", "workers").expect("tree");
        // Delivered up to 10; 3 was delivered twice and nacked far into the future, 7 once.
        let later = QueueEntry { deliveries: 2, ready_at_ms: i64::MAX / 2 };
        let once = QueueEntry { deliveries: 1, ready_at_ms: 0 };
        db.queue_write_legacy(&tree, Some(10), &[(3, later), (7, once)]);
        for expected in [[(7, 2), (10, 1), (11, 1)], [(7, 3), (10, 2), (11, 2)]] {
            let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
            let got: Vec<(u64, u32)> =
                std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
            assert_eq!(got, expected);
            assert_eq!(q.stats().ready, 1, "3 waits for its delay");
            // Closed without acking: the next open sees the compact layout with the same jobs.
            drop(q);
            let saved = db.queue_load(&tree).expect("load");
            assert_eq!((saved.head, saved.legacy_cursor), (Some((3, 12)), None));
        }
    }

    #[test]
    fn a_crash_after_an_acks_head_and_before_its_entry_removal_redelivers_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = jobs(tmp.path(), 3);
        let db = &store.inner().state;
        let tree = db.queue_tree("jobs", "workers").expect("tree");
        // As an ack of 0 (delivered twice, so with an entry) leaves things when it is cut after
        // the head: floor 1, and 0's entry still there.
        let twice = QueueEntry { deliveries: 2, ready_at_ms: 0 };
        let w = QueueWrites { entries: vec![(0, twice)], head: Some((1, 2)), ..QueueWrites::default() };
        db.queue_apply(&tree, &w).expect("apply");
        let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
        let got: Vec<(u64, u32)> =
            std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
        assert_eq!(got, vec![(1, 2), (2, 1)], "1 was delivered once before; 0 is finished");
        assert!(db.queue_load(&tree).expect("load").entries.iter().all(|(o, _)| *o != 0), "0's entry removed");
    }

    #[test]
    fn a_set_ack_bit_above_the_floor_outweighs_the_entry_it_was_to_remove() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = jobs(tmp.path(), 3);
        let db = &store.inner().state;
        let tree = db.queue_tree("jobs", "workers").expect("tree");
        // 0 and 1 delivered; 1 (with an entry) acked, cut before its entry was removed.
        let mut bits = [0u8; crate::format::state::QUEUE_ACK_CHUNK_LEN];
        bits[0] = 0b10;
        let w = QueueWrites {
            entries: vec![(1, QueueEntry { deliveries: 3, ready_at_ms: 0 })],
            ack_chunks: vec![(0, bits)],
            head: Some((0, 2)),
            ..QueueWrites::default()
        };
        db.queue_apply(&tree, &w).expect("apply");
        let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
        let got: Vec<(u64, u32)> =
            std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
        assert_eq!(got, vec![(0, 2), (2, 1)]);
    }
}
