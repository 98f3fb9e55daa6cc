//! Leasing: picking the next ready record (new ones from the topic, redeliveries when their
//! delay is up), writing its delivery count before it is handed out, waiting for one.

use super::*;

/// Calls `attempt` until it leases something or `timeout` passes (on the monotonic clock); in
/// between, sleeps until an append or nack anywhere in the store, or for `next_due` ms (a lease
/// running out, a delay ending).
pub(super) fn wait_for_lease(
    inner: &QueueInner,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<Delivery>>,
    next_due: impl Fn() -> i64,
) -> Result<Option<Delivery>> {
    let signal = &inner.store.inner().signal;
    let clock = &inner.opts.clock;
    let deadline = clock.monotonic_ms().saturating_add(duration_ms(timeout));
    loop {
        let generation = signal.generation();
        if let Some(d) = attempt()? {
            return Ok(Some(d));
        }
        let now = clock.monotonic_ms();
        if now >= deadline {
            return Ok(None);
        }
        let wait_ms = deadline.saturating_sub(now).min(next_due()).max(1);
        signal.wait_past(generation, Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX)));
    }
}

impl Queue {
    pub(super) fn lease_lost(&self, offset: u64, reason: &str) -> Error {
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

    pub(super) fn lease_locked(&self, now: i64, max: usize, dying: &mut Vec<(u64, String)>) -> Result<Vec<Delivery>> {
        let inner = &*self.inner;
        let deliveries_max = inner.opts.deliveries_max;
        // Leases run on the monotonic clock: a stepped wall clock neither holds a job an hour
        // longer nor hands it to a second worker while the first one's lease still runs.
        let monotonic = inner.opts.clock.monotonic_ms();
        let mut st = lock(&inner.state);
        st.end_delays(now, monotonic);
        // Leases that ran out: ready again (due now), or dead if they used their last delivery.
        while let Some(&(deadline, offset)) = st.leased.first() {
            if deadline > monotonic {
                break;
            }
            st.leased.pop_first();
            let last_error = st.errors.get(&offset).map(|e| format!(" (last error: {e})")).unwrap_or_default();
            let Some(slot) = st.slots.get_mut(&offset) else { continue };
            slot.lease = None;
            if slot.deliveries >= deliveries_max {
                slot.dying = true;
                dying.push((offset, format!("lease expired after {} deliveries{last_error}", slot.deliveries)));
            } else if let Some(policy) = inner.opts.retry {
                // A lease that ran out is a failed attempt: back off as the policy says.
                let wait = i64::try_from(policy.delay(slot.deliveries, offset).as_millis()).unwrap_or(i64::MAX);
                let due = monotonic.saturating_add(wait);
                slot.due_ms = due;
                slot.delayed = true;
                st.delayed.insert((due, offset));
            } else {
                slot.due_ms = now;
                st.ready.insert((now, offset));
            }
        }
        let deadline = monotonic.saturating_add(duration_ms(inner.opts.lease_timeout));
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
            st.stats.redelivered += u64::from(deliveries > 1);
            let last_error = st.errors.get(&offset).cloned();
            out.push(Delivery { record, deliveries, topic: inner.topic.name().into(), last_error, token });
        }
        st.stage_head(&mut w);
        // Written under the lock so sled sees the queue's changes in memory order.
        self.write(&w)?;
        Ok(out)
    }

    /// The next deliverable record, with whether it is new (the cursor moved).
    pub(super) fn pick(
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
            // Cancelled before the queue read it (`Queue::cancel`): its ack bit is set.
            let (chunk, byte, bit) = super::state::ack_bit(offset);
            if st.chunks.get(&chunk).and_then(|c| c.get(byte)).is_some_and(|b| b & bit != 0) {
                continue;
            }
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

    /// Leases the next record, waiting up to `timeout` for one to be appended, nacked back or
    /// freed by a lease timeout (woken by appends and nacks, not by polling).
    pub fn lease(&self, timeout: Duration) -> Result<Option<Delivery>> {
        wait_for_lease(&self.inner, timeout, || self.try_lease(), || self.next_due())
    }

    /// The store-wide append signal (for async waiting).
    #[cfg(feature = "tokio")]
    pub(crate) fn waiting_signal(&self) -> Arc<crate::sync::AppendSignal> {
        self.inner.store.inner().signal.clone()
    }

    /// Milliseconds until the next lease runs out or nack delay ends (monotonic) or the next
    /// scheduled record becomes due (wall clock); `i64::MAX` when nothing is waiting.
    pub(crate) fn next_due(&self) -> i64 {
        let clock = &self.inner.opts.clock;
        let (now, monotonic) = (clock.now_ms(), clock.monotonic_ms());
        let st = lock(&self.inner.state);
        let on_monotonic = |set: &BTreeSet<(i64, u64)>| set.first().map_or(i64::MAX, |e| e.0.saturating_sub(monotonic));
        let ready = st.ready.first().map_or(i64::MAX, |e| e.0.saturating_sub(now));
        on_monotonic(&st.leased).min(on_monotonic(&st.delayed)).min(ready)
    }

    /// Checks that `d` is the newest delivery of its record and takes the slot out of the
    /// ready/leased sets. Returns the slot.
    pub(super) fn claim(&self, st: &mut State, d: &Delivery) -> Result<Slot> {
        let slot = self.newest(st, d)?;
        st.unlink(d.offset());
        Ok(slot)
    }

    /// The slot of `d`'s record if `d` is its newest delivery (what `claim` and `extend` check).
    pub(super) fn newest(&self, st: &State, d: &Delivery) -> Result<Slot> {
        let offset = d.offset();
        let Some(slot) = st.slots.get(&offset).copied() else {
            return Err(self.lease_lost(offset, "already acked, cancelled or dead-lettered"));
        };
        let newest = slot.deliveries == d.deliveries && slot.lease.is_none_or(|(t, _)| t == d.token);
        if !newest || slot.dying {
            return Err(self.lease_lost(offset, "delivered to another worker since its lease ran out"));
        }
        Ok(slot)
    }
}
