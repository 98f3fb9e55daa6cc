//! A queue's state in memory: the floor, the cursor, the outstanding slots and the finished
//! bits above the floor; loaded from the consumer database when the queue opens, and the
//! writes each operation makes to it.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) deliveries: u32,
    /// When a ready slot becomes due (also its key in `ready`, or in `delayed` when `delayed`).
    pub(super) due_ms: i64,
    /// Waiting out a nack's delay in this process: `due_ms` is on the monotonic clock.
    pub(super) delayed: bool,
    /// (token, deadline) while leased.
    pub(super) lease: Option<(u64, i64)>,
    /// On its way to the dead-letter topic: not deliverable.
    pub(super) dying: bool,
    /// Has a queue entry in the database (else it is stored as "delivered once, due at once").
    pub(super) stored: bool,
}

impl Slot {
    pub(super) fn new(deliveries: u32, due_ms: i64, stored: bool) -> Slot {
        Slot { deliveries, due_ms, delayed: false, lease: None, dying: false, stored }
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) cursor: u64,
    /// Reads new records from `cursor` on.
    pub(super) iter: Iter,
    pub(super) slots: BTreeMap<u64, Slot>,
    /// (due, offset) of ready slots, due on the wall clock (scheduled jobs; after a restart,
    /// nacked ones).
    pub(super) ready: BTreeSet<(i64, u64)>,
    /// (due, offset) of slots waiting out a nack's delay, due on the monotonic clock.
    pub(super) delayed: BTreeSet<(i64, u64)>,
    /// The last error a worker gave for an outstanding job (`Queue::retry`), in memory only.
    pub(super) errors: std::collections::HashMap<u64, Arc<str>>,
    /// (deadline, offset) of leased slots.
    pub(super) leased: BTreeSet<(i64, u64)>,
    pub(super) next_token: u64,
    pub(super) stats: QueueStats,
    /// The (floor, cursor) the database holds, once it holds one.
    pub(super) stored_head: Option<(u64, u64)>,
    /// The database's ack chunks that are not wholly below the floor, by number.
    pub(super) chunks: BTreeMap<u64, AckChunk>,
}

/// The ack chunk that covers `offset`, and the byte and bit in it.
pub(super) fn ack_bit(offset: u64) -> (u64, usize, u8) {
    let i = offset % QUEUE_ACK_CHUNK_OFFSETS;
    (offset / QUEUE_ACK_CHUNK_OFFSETS, (i / 8) as usize, 1 << (i % 8))
}

impl State {
    /// The lowest outstanding offset, or the cursor if none is.
    pub(super) fn floor(&self) -> u64 {
        self.slots.first_key_value().map_or(self.cursor, |(&o, _)| o.min(self.cursor))
    }

    pub(super) fn is_acked(&self, offset: u64) -> bool {
        let (chunk, byte, bit) = ack_bit(offset);
        self.chunks.get(&chunk).and_then(|c| c.get(byte)).is_some_and(|b| b & bit != 0)
    }

    /// Sets `offset`'s ack bit, noting its chunk in `touched`.
    pub(super) fn set_acked(&mut self, offset: u64, touched: &mut BTreeSet<u64>) {
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
    pub(super) fn finish(&mut self, offsets: &[u64], w: &mut QueueWrites) {
        let mut gone = Vec::with_capacity(offsets.len());
        for &offset in offsets {
            self.errors.remove(&offset);
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
    pub(super) fn stage_head(&mut self, w: &mut QueueWrites) {
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

    /// Takes a slot out of `ready`/`delayed`/`leased`, whichever holds it.
    pub(super) fn unlink(&mut self, offset: u64) {
        if let Some(s) = self.slots.get(&offset) {
            match s.lease {
                Some((_, deadline)) => self.leased.remove(&(deadline, offset)),
                None if s.delayed => self.delayed.remove(&(s.due_ms, offset)),
                None => self.ready.remove(&(s.due_ms, offset)),
            };
        }
    }

    /// Moves the slots whose nack delay ended by `monotonic` to `ready`, due at `now`.
    pub(super) fn end_delays(&mut self, now: i64, monotonic: i64) {
        while let Some(&(due, offset)) = self.delayed.first() {
            if due > monotonic {
                break;
            }
            self.delayed.pop_first();
            if let Some(slot) = self.slots.get_mut(&offset) {
                slot.delayed = false;
                slot.due_ms = now;
                self.ready.insert((now, offset));
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct QueueInner {
    pub(super) store: Store,
    pub(super) topic: Arc<Topic>,
    pub(super) group: String,
    pub(super) opts: QueueOptions,
    pub(super) dead: DeadLetters,
    pub(super) tree: QueueTree,
    pub(super) state: Mutex<State>,
}

impl Drop for QueueInner {
    fn drop(&mut self) {
        self.store.inner().shared.forget_dead::<QueueInner>((self.topic.name(), &self.group));
    }
}

impl QueueInner {
    /// Loads a queue's saved state and sets it up; `Store::queue` registers it.
    pub(super) fn open(store: &Store, t: Arc<Topic>, group: &str, opts: QueueOptions) -> Result<Arc<QueueInner>> {
        let topic = t.name();
        if opts.deliveries_max == 0 {
            return Err(Error::InvalidOptions { reason: "deliveries_max must be at least 1".into() });
        }
        let dead = DeadLetters::new(store, "queue", group, topic, opts.dead_letter_topic.as_deref())?;
        let db = &store.inner().state;
        let tree = persist::tree(db, topic, group)?;
        let saved = persist::load(db, &tree)?;
        let (first, next) = (t.first_offset(), t.next_offset());
        let mut writes = QueueWrites::default();
        let st = load_state(saved, &opts, &t, (first, next), &mut writes)?;
        persist::apply(db, &tree, &writes)?;
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
pub(super) fn load_state(
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
        delayed: BTreeSet::new(),
        errors: std::collections::HashMap::new(),
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
