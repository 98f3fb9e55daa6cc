//! Atomic appends across topics (`Store::append_atomic`): either every record is in its topic
//! after any crash or power cut, or none is (FORMAT.md § Atomic appends).
//!
//! Design: a journal first, then the topics.
//! 1. The whole transaction (each record, its topic, and the topic's next offset at that moment)
//!    is appended to the store's journal (`<root>/txn/`, an evlog log of its own, `Always`):
//!    once that append returns, the transaction is committed.
//! 2. Each topic's records are appended as one atomic batch, topics in name order, each record
//!    carrying the `evlog.txn` header (the transaction's journal offset); then a done marker
//!    goes to the journal.
//! 3. When the store opens, every committed transaction without a done marker is rolled
//!    forward: a topic whose records are not found (from the offset the journal noted, by their
//!    `evlog.txn` header) gets them appended; then the marker. Journal segments whose
//!    transactions are all done are removed.
//!
//! Nothing reaches a topic before its transaction is committed, so no reader or consumer ever
//! sees a record that a crash could take back; after a crash the roll-forward completes what was
//! committed. A reader of one topic sees its part whole (one batch). A replay across topics reads
//! each topic only up to a cut taken between atomic appends (`consistent_ends`, under the lock
//! an atomic append holds from its commit to its done marker), in its history and in its live
//! tail, so it never sees part of one.

use crate::error::{Error, Result};
use crate::format::{self, reserved_headers::TXN};
use crate::log::Log;
use crate::log::options::Durability;
use crate::log::record::{NewRecord, Record};
use crate::storage::{Bytes, create_dir_durable};
use crate::store::{Store, validate_name};
use crate::sync::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The journal's directory under the store root.
pub(crate) const TXN_DIR: &str = "txn";

/// The journal: an evlog log with one record per transaction and one done marker each.
#[derive(Debug)]
pub(crate) struct Journal {
    log: Log,
    /// The oldest transaction the roll-forward had to leave pending: the journal keeps it.
    keep_from: std::sync::atomic::AtomicU64,
}

/// One topic's part of a transaction, as journaled.
struct Part {
    topic: String,
    /// The topic's next offset when the transaction was journaled: its records are at or after it.
    from: u64,
    records: Vec<Record>,
}

/// Encodes a transaction: part count (u16); per part the topic's name length (u16), the name,
/// the topic's next offset (u64), the record count (u32), then each record as a frame
/// (length u32, then the frame: checksummed like any frame).
fn encode(parts: &[(String, u64, Vec<NewRecord<'_>>)], now: i64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&checked_u16(parts.len(), "topics in one atomic append")?.to_le_bytes());
    for (topic, from, records) in parts {
        out.extend_from_slice(&checked_u16(topic.len(), "topic name")?.to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&from.to_le_bytes());
        out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_le_bytes());
        for r in records {
            let headers_len =
                format::headers_block_len(&r.headers).map_err(|reason| Error::InvalidHeaders { reason })?;
            let fields = format::FrameFields {
                offset: 0,
                durable_offset: 0,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key,
                headers: &r.headers,
                payload: r.payload,
                batch_continues: false,
            };
            let mut frame = Vec::new();
            format::encode_frame(&mut frame, &fields, headers_len);
            out.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&frame);
        }
    }
    Ok(out)
}

fn checked_u16(n: usize, what: &str) -> Result<u16> {
    u16::try_from(n).map_err(|_| Error::InvalidOptions { reason: format!("{what}: {n} is over {}", u16::MAX) })
}

/// Decodes a journaled transaction (see `encode`); bytes that do not decode are corruption.
fn decode(journal: &Record) -> Result<Vec<Part>> {
    let b = journal.payload();
    let bad = |what: &str| Error::Corruption {
        path: PathBuf::from(TXN_DIR),
        position: 0,
        offset: Some(journal.offset()),
        reason: format!("atomic append journal entry: {what}"),
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = b.get(at..at + n).ok_or_else(|| bad("cut short"))?;
        at += n;
        Ok(s)
    };
    let u16_at = |s: &[u8]| u16::from_le_bytes([s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0)]);
    let parts = usize::from(u16_at(take(2)?));
    let mut out = Vec::with_capacity(parts);
    for _ in 0..parts {
        let len = usize::from(u16_at(take(2)?));
        let topic = std::str::from_utf8(take(len)?).map_err(|_| bad("topic name not UTF-8"))?.to_string();
        let from = format::le_u64(take(8)?, 0);
        let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("count"))?);
        let mut records = Vec::new();
        for _ in 0..count {
            let flen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("frame length"))?) as usize;
            let frame = take(flen)?.to_vec();
            let d = format::decode_frame(&frame, None).map_err(|e| bad(&format!("frame: {e}")))?;
            let bytes = Bytes::from_vec(frame).ok_or_else(|| bad("frame too large"))?;
            records.push(Record::from_frame(bytes, &d));
        }
        out.push(Part { topic, from, records });
    }
    Ok(out)
}

/// The transaction a record belongs to (a topic's record) or marks done (a journal record):
/// its `evlog.txn` header.
fn txn_of(r: &Record) -> Option<u64> {
    r.header(TXN).and_then(|v| <[u8; 8]>::try_from(v).ok()).map(u64::from_le_bytes)
}

impl Journal {
    /// Opens (creating durably) the journal of the store at `root`.
    pub(crate) fn open(store: &Store) -> Result<Journal> {
        let inner = store.inner();
        let dir = inner.root.join(TXN_DIR);
        create_dir_durable(inner.storage(), &dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let mut o = inner.opts.log.clone();
        o.durability = Durability::Always;
        o.append_signal = None;
        Ok(Journal { log: Log::open(&dir, o)?, keep_from: std::sync::atomic::AtomicU64::new(u64::MAX) })
    }
}

impl Store {
    /// Appends records to several topics atomically: after any crash or power cut either all
    /// of them are in their topics or none is, and no reader, consumer or replay ever sees a
    /// record of a transaction that could still be lost (see the module docs of `txn.rs` in
    /// ARCHITECTURE.md). Returns each record's offset, in the order given. Every topic must
    /// exist ([`Error::NotFound`] otherwise, nothing written); an empty list is refused. Durable
    /// on return (the journal is fsynced; the topics' parts are rolled forward after a crash).
    pub fn append_atomic(&self, records: &[(&str, NewRecord<'_>)]) -> Result<Vec<u64>> {
        if records.is_empty() {
            return Err(Error::InvalidOptions { reason: "an atomic append needs at least one record".into() });
        }
        crate::trace::span!("evlog.append_atomic", records = records.len());
        let mut by_topic: BTreeMap<&str, Vec<(usize, NewRecord<'_>)>> = BTreeMap::new();
        for (i, (topic, r)) in records.iter().enumerate() {
            validate_name(topic)?;
            by_topic.entry(topic).or_default().push((i, r.clone()));
        }
        let mut topics = Vec::with_capacity(by_topic.len());
        for name in by_topic.keys() {
            if !self.inner().topic_exists(name)? {
                return Err(Error::NotFound { kind: "topic", name: name.to_string() });
            }
            topics.push(self.topic(name)?);
        }
        let mut journal = lock(&self.inner().journal);
        if journal.is_none() {
            *journal = Some(Journal::open(self)?);
        }
        let Some(j) = journal.as_ref() else { return Err(Error::InvalidOptions { reason: "no journal".into() }) };
        let now = crate::clock::now_ms();
        let parts: Vec<(String, u64, Vec<NewRecord<'_>>)> = by_topic
            .iter()
            .zip(&topics)
            .map(|((name, rs), t)| (name.to_string(), t.next_offset(), rs.iter().map(|(_, r)| r.clone()).collect()))
            .collect();
        // Every part must fit its topic before anything is committed.
        for ((_, _, rs), t) in parts.iter().zip(&topics) {
            t.validate_batch(rs)?;
        }
        let payload = encode(&parts, now)?;
        let id = j.log.append(&payload)?;
        // Committed. Now the topics, in name order.
        let mut offsets = vec![0u64; records.len()];
        for (((_, rs), t), (_, _, _)) in by_topic.iter().zip(&topics).zip(&parts) {
            let first = apply(t, rs.iter().map(|(_, r)| r.clone()), id, now)?;
            for (k, (i, _)) in rs.iter().enumerate() {
                if let Some(o) = offsets.get_mut(*i) {
                    *o = first + k as u64;
                }
            }
        }
        mark_done(j, id)?;
        Ok(offsets)
    }

    /// The next offset of each of `topics` at one moment between atomic appends (taken under
    /// the lock an atomic append holds from its commit to the end of its application): a reader
    /// that reads each topic up to its cut sees every atomic append whole or not at all.
    pub(crate) fn consistent_ends(&self, topics: &[std::sync::Arc<crate::store::Topic>]) -> Vec<u64> {
        let _between = lock(&self.inner().journal);
        topics.iter().map(|t| t.next_offset()).collect()
    }

    /// Rolls forward every committed transaction that is not marked done (a crash came between
    /// its commit and the end of its application), then removes journal segments whose
    /// transactions are all done. Called when the store opens.
    pub(crate) fn recover_atomic_appends(&self) -> Result<()> {
        let dir = self.inner().root.join(TXN_DIR);
        if !self.inner().storage().dir_exists(&dir).map_err(|e| Error::io("stat", &dir, e))? {
            return Ok(());
        }
        let j = Journal::open(self)?;
        let mut pending: BTreeMap<u64, Record> = BTreeMap::new();
        let mut done = BTreeSet::new();
        for r in j.log.iter(0) {
            let r = r?;
            match txn_of(&r) {
                Some(id) => {
                    done.insert(id);
                }
                None => {
                    pending.insert(r.offset(), r);
                }
            }
        }
        for (id, entry) in pending.iter().filter(|(id, _)| !done.contains(id)) {
            for part in decode(entry)? {
                if !self.inner().topic_exists(&part.topic)? {
                    continue; // deleted since: nothing to complete
                }
                let t = self.topic(&part.topic)?;
                let applied = t.iter(part.from).any(|r| r.is_ok_and(|r| txn_of(&r) == Some(*id)));
                if !applied {
                    // A part that cannot be appended now (a full topic, say) stays pending: the
                    // store still opens, and the next open tries again.
                    let records: Vec<NewRecord<'_>> = part
                        .records
                        .iter()
                        .map(|r| NewRecord {
                            timestamp: Some(r.timestamp()),
                            key: r.key(),
                            headers: r.headers().collect(),
                            payload: r.payload(),
                        })
                        .collect();
                    if let Err(e) = apply(&t, records.into_iter(), *id, 0) {
                        if matches!(e, Error::Corruption { .. } | Error::Io { .. }) {
                            return Err(e);
                        }
                        j.keep_from.store(*id, std::sync::atomic::Ordering::Relaxed);
                        *lock(&self.inner().journal) = Some(j);
                        return Ok(());
                    }
                }
            }
            mark_done(&j, *id)?;
        }
        // Every transaction is done now: the journal's sealed segments can go.
        j.log.remove_before(j.log.next_offset())?;
        *lock(&self.inner().journal) = Some(j);
        Ok(())
    }
}

/// Appends one topic's part as one atomic batch, each record marked with the transaction.
fn apply<'a>(t: &crate::store::Topic, records: impl Iterator<Item = NewRecord<'a>>, id: u64, now: i64) -> Result<u64> {
    let mark = id.to_le_bytes();
    let batch: Vec<NewRecord<'_>> = records
        .map(|r| {
            let mut headers: Vec<(&str, &[u8])> = r.headers.iter().copied().filter(|(n, _)| *n != TXN).collect();
            headers.push((TXN, &mark));
            NewRecord { timestamp: Some(r.timestamp.unwrap_or(now)), key: r.key, headers, payload: r.payload }
        })
        .collect();
    let range = t.append_batch(&batch)?;
    if t.durability() != Durability::Always {
        t.sync()?;
    }
    Ok(range.start)
}

/// Marks transaction `id` done; the journal's sealed segments go (transactions are applied one
/// at a time, so every transaction before this one is done too).
fn mark_done(j: &Journal, id: u64) -> Result<()> {
    let mark = id.to_le_bytes();
    j.log.append_record(&NewRecord::new(&[]).header(TXN, &mark))?;
    j.log.remove_before(id.min(j.keep_from.load(std::sync::atomic::Ordering::Relaxed)))?;
    Ok(())
}
