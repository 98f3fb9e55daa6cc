//! Dead letters: records that failed too often (or were buried) go to the dead-letter topic
//! through an idempotent producer keyed by the source offset, so a crash never puts one
//! there twice.

use super::*;

/// The dead-letter writer of one queue or subscription: `(group, source topic)` into its
/// dead-letter topic through an idempotent producer (id `<kind>.<group>.<topic>`) made on first
/// use. The sequence is the source offset, so sending a record again (after a crash) appends
/// nothing.
#[derive(Debug)]
pub(crate) struct DeadLetters {
    pub(super) store: Store,
    pub(super) group: String,
    pub(super) source: String,
    pub(super) topic: String,
    pub(super) producer_id: String,
    pub(super) producer: Mutex<Option<Producer>>,
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

impl Queue {
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
    pub(super) fn bury(&self, offset: u64, reason: &str) -> Result<()> {
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
}
