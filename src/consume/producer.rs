//! Idempotent producers: a retried append of the same (producer id, sequence) returns the
//! original offset instead of appending twice, also after a crash and reopen.
//!
//! Each record a [`Producer`] appends carries two reserved headers, `evlog.producer` (the id) and
//! `evlog.seq` (the sequence, u64 little-endian). Per topic, a table maps (id, sequence) to
//! offset for the records among the last `dedupe_window_records` of the topic. It is built, on
//! the first `Store::producer` call after the topic is opened, by reading that many records from
//! the log's tail — so whatever the log recovered after a crash is exactly what is recognised —
//! and kept current by every producer append after that.
//!
//! Invariants:
//! - Appends of one producer id are serialised (its lock is held across the append), so the
//!   check "already in the log?" and the append are one step for that id; different ids append
//!   concurrently and share group commits.
//! - An entry is used only while its offset is within the window of the topic's current end;
//!   older ones count as absent even before they are pruned.

use crate::error::{Error, Result};
use crate::log::record::NewRecord;
use crate::store::{Store, Topic};
use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Header that names the producer of a record (reserved).
pub const PRODUCER_ID_HEADER: &str = crate::format::reserved_headers::PRODUCER_ID;
/// Header that carries the producer's sequence number, u64 little-endian (reserved).
pub const SEQUENCE_HEADER: &str = crate::format::reserved_headers::SEQUENCE;

/// One producer id's recent sequences.
#[derive(Debug, Default)]
struct Sequences {
    offsets: HashMap<u64, u64>,
    /// (offset, sequence) in append order, for pruning.
    order: VecDeque<(u64, u64)>,
    /// One past the highest sequence seen.
    next: u64,
}

impl Sequences {
    fn record(&mut self, seq: u64, offset: u64) {
        self.offsets.insert(seq, offset);
        self.order.push_back((offset, seq));
        self.next = self.next.max(seq.saturating_add(1));
    }

    fn prune(&mut self, oldest_kept: u64) {
        while let Some(&(offset, seq)) = self.order.front() {
            if offset >= oldest_kept {
                break;
            }
            self.order.pop_front();
            if self.offsets.get(&seq) == Some(&offset) {
                self.offsets.remove(&seq);
            }
        }
    }
}

/// The per-topic table of producer sequences.
#[derive(Debug)]
pub(crate) struct Dedupe {
    window: u64,
    producers: Mutex<HashMap<String, Arc<Mutex<Sequences>>>>,
}

impl Dedupe {
    /// Reads the last `window` records of `topic` and indexes their producer headers.
    fn build(topic: &Topic, window: u64) -> Result<Dedupe> {
        let mut producers: HashMap<String, Sequences> = HashMap::new();
        let from = topic.next_offset().saturating_sub(window).max(topic.first_offset());
        for r in topic.iter(from) {
            let r = r?;
            if let Some((id, seq)) = producer_headers(r.header(PRODUCER_ID_HEADER), r.header(SEQUENCE_HEADER)) {
                producers.entry(id).or_default().record(seq, r.offset());
            }
        }
        let producers = producers.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))).collect();
        Ok(Dedupe { window, producers: Mutex::new(producers) })
    }

    fn sequences(&self, id: &str) -> Arc<Mutex<Sequences>> {
        let mut producers = lock(&self.producers);
        if let Some(s) = producers.get(id) {
            return s.clone();
        }
        // A new id: also drop ids whose every entry has left the window (they are idle, so
        // try_lock only skips one that is appending right now).
        producers.retain(|_, s| Arc::strong_count(s) > 1 || s.try_lock().map_or(true, |s| !s.order.is_empty()));
        producers.entry(id.to_string()).or_default().clone()
    }
}

fn producer_headers(id: Option<&[u8]>, seq: Option<&[u8]>) -> Option<(String, u64)> {
    let id = std::str::from_utf8(id?).ok()?.to_string();
    let seq = u64::from_le_bytes(seq?.try_into().ok()?);
    Some((id, seq))
}

/// What a [`Producer::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The record's offset: new, or the original one for a duplicate.
    pub offset: u64,
    /// The sequence number the record carries.
    pub sequence: u64,
    /// True when this (producer id, sequence) was already in the log: nothing was appended.
    pub duplicate: bool,
}

/// An idempotent producer for one topic: every record carries (producer id, sequence), and
/// sending a pair that is already among the topic's last `dedupe_window_records` records returns
/// the original offset instead of appending again — in this process and after a crash and
/// reopen, as far as the log kept the original (under `Durability::Always`, every acknowledged
/// one).
///
/// ```
/// use evlog::{NewRecord, Store, StoreOptions};
/// # let root = tempfile::tempdir().unwrap();
/// let store = Store::open(root.path(), StoreOptions::default())?;
/// let producer = store.producer("payments", "billing-service")?;
/// let first = producer.send_with_sequence(41, &NewRecord::new(b"charge 42"))?;
/// let retry = producer.send_with_sequence(41, &NewRecord::new(b"charge 42"))?; // e.g. after a timeout
/// assert_eq!((retry.offset, retry.duplicate), (first.offset, true));
/// assert_eq!(store.topic("payments")?.next_offset(), 1);
/// # Ok::<(), evlog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    topic: Arc<Topic>,
    id: String,
    sequences: Arc<Mutex<Sequences>>,
    window: u64,
}

impl Store {
    /// An idempotent producer `producer_id` (1–249 characters, see [`crate::validate_name`]) for
    /// `topic`. Handles with the same id share one sequence.
    pub fn producer(&self, topic: &str, producer_id: &str) -> Result<Producer> {
        crate::store::validate_name(producer_id)?;
        let topic = self.topic(topic)?;
        let window = self.inner().opts.dedupe_window_records;
        let dedupe = topic.extensions.get_or_make(|| Dedupe::build(&topic, window))?;
        let sequences = dedupe.sequences(producer_id);
        Ok(Producer { topic, id: producer_id.to_string(), sequences, window: dedupe.window })
    }
}

impl Producer {
    /// The producer id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sequence the next [`Producer::send`] will use: one past the highest this id has used
    /// within the window (recovered from the log after a restart).
    pub fn next_sequence(&self) -> u64 {
        lock(&self.sequences).next
    }

    /// Appends `record` with the next sequence number.
    pub fn send(&self, record: &NewRecord<'_>) -> Result<Sent> {
        let mut seqs = lock(&self.sequences);
        let seq = seqs.next;
        self.send_locked(&mut seqs, seq, record)
    }

    /// Appends `record` with sequence `sequence` unless this (id, sequence) is already among the
    /// last `dedupe_window_records` records, in which case it returns the original offset.
    /// Sequences need not be consecutive; use the application's own idempotency key (a request
    /// number, a source offset) to make retries after a crash safe.
    pub fn send_with_sequence(&self, sequence: u64, record: &NewRecord<'_>) -> Result<Sent> {
        let mut seqs = lock(&self.sequences);
        self.send_locked(&mut seqs, sequence, record)
    }

    /// Appends `records` with sequences `first_sequence`, `first_sequence + 1`, … as one atomic
    /// batch, leaving out the leading ones already in the log (a retried batch of which a
    /// prefix went in before a crash). Returns the offset of the first record, original or new,
    /// and the offset after the batch's last record. For `evlog serve`'s idempotent Kafka
    /// producers, whose batches carry a base sequence: the write does not wait for durability
    /// (see `Log::append_batch_deferred`), so the caller acknowledges the batch only after
    /// `wait_durable` of the returned end, the original's end for a retried batch.
    #[cfg(feature = "serve")]
    pub(crate) fn send_batch_with_sequence(
        &self,
        first_sequence: u64,
        records: &[NewRecord<'_>],
    ) -> Result<(u64, u64)> {
        let mut seqs = lock(&self.sequences);
        let oldest_kept = self.topic.next_offset().saturating_sub(self.window);
        seqs.prune(oldest_kept);
        let seq = |i: usize| first_sequence.wrapping_add(i as u64);
        let present = (0..records.len()).take_while(|&i| seqs.offsets.contains_key(&seq(i))).count();
        let first_offset = seqs.offsets.get(&first_sequence).copied();
        if present == records.len() {
            let next = || self.topic.next_offset();
            let end = records.len().checked_sub(1).and_then(|last| seqs.offsets.get(&seq(last))).map(|o| o + 1);
            return Ok((first_offset.unwrap_or_else(next), end.unwrap_or_else(next)));
        }
        let seq_bytes: Vec<[u8; 8]> = (present..records.len()).map(|i| seq(i).to_le_bytes()).collect();
        let batch: Vec<NewRecord<'_>> = records
            .get(present..)
            .unwrap_or_default()
            .iter()
            .zip(&seq_bytes)
            .map(|(r, b)| {
                let mut headers = r.headers.clone();
                headers.push((PRODUCER_ID_HEADER, self.id.as_bytes()));
                headers.push((SEQUENCE_HEADER, b));
                NewRecord { headers, ..r.clone() }
            })
            .collect();
        let range = self.topic.append_batch_deferred(&batch)?;
        for (k, offset) in range.clone().enumerate() {
            seqs.record(seq(present + k), offset);
        }
        Ok((first_offset.unwrap_or(range.start), range.end))
    }

    fn send_locked(&self, seqs: &mut Sequences, sequence: u64, record: &NewRecord<'_>) -> Result<Sent> {
        let oldest_kept = self.topic.next_offset().saturating_sub(self.window);
        seqs.prune(oldest_kept);
        if let Some(&offset) = seqs.offsets.get(&sequence) {
            return Ok(Sent { offset, sequence, duplicate: true });
        }
        if record.headers.iter().any(|(n, _)| *n == PRODUCER_ID_HEADER || *n == SEQUENCE_HEADER) {
            return Err(Error::InvalidHeaders {
                reason: format!("{PRODUCER_ID_HEADER} and {SEQUENCE_HEADER} are reserved for the producer"),
            });
        }
        let seq_bytes = sequence.to_le_bytes();
        let mut headers = record.headers.clone();
        headers.push((PRODUCER_ID_HEADER, self.id.as_bytes()));
        headers.push((SEQUENCE_HEADER, &seq_bytes));
        let offset = self.topic.append_record(&NewRecord { headers, ..record.clone() })?;
        seqs.record(sequence, offset);
        Ok(Sent { offset, sequence, duplicate: false })
    }
}
