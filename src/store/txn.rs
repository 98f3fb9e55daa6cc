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
use crate::log::writer::room::Reservation;
use crate::storage::{Bytes, create_dir_durable};
use crate::store::{Store, Topic, validate_name};
use crate::sync::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The journal's directory under the store root.
pub(crate) const TXN_DIR: &str = "txn";

/// The journal: an evlog log with one record per transaction and one done marker each.
#[derive(Debug)]
pub(crate) struct Journal {
    log: Log,
    /// Committed transactions not completed yet (a part failed after the commit, or the
    /// roll-forward at open could not apply one), with the topics whose part is already in: the
    /// journal keeps every segment from the oldest of them on.
    pending: BTreeMap<u64, BTreeSet<String>>,
}

impl Journal {
    /// Removes the journal's sealed segments whose transactions are all done.
    fn trim(&self) -> Result<()> {
        let keep_from = self.pending.keys().next().copied().unwrap_or(u64::MAX);
        self.log.remove_before(keep_from.min(self.log.next_offset()))?;
        Ok(())
    }
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
        Ok(Journal { log: Log::open(&dir, o)?, pending: BTreeMap::new() })
    }
}

/// Each record of `rs` with the `evlog.txn` header naming transaction `mark` (u64 LE) in place
/// of any it had, and a timestamp (`now` where it had none).
fn marked<'a>(rs: impl Iterator<Item = NewRecord<'a>>, mark: &'a [u8; 8], now: i64) -> Vec<NewRecord<'a>> {
    rs.map(|r| {
        let mut headers: Vec<(&str, &[u8])> = r.headers.iter().copied().filter(|(n, _)| *n != TXN).collect();
        headers.push((TXN, mark));
        NewRecord { timestamp: Some(r.timestamp.unwrap_or(now)), key: r.key, headers, payload: r.payload }
    })
    .collect()
}

/// Whether the reason an append failed is one of the record or the topic's limits (nothing was
/// written) rather than the disk's.
fn refused(e: &Error) -> bool {
    !matches!(e, Error::Io { .. } | Error::Corruption { .. } | Error::Poisoned { .. } | Error::StorageFull { .. })
}

impl Store {
    /// Appends records to several topics atomically: after any crash or power cut either all
    /// of them are in their topics or none is, and no reader, consumer or replay ever sees a
    /// record of a transaction that could still be lost (see the module docs of `txn.rs` in
    /// ARCHITECTURE.md). Returns each record's offset, in the order given. Every topic must
    /// exist ([`Error::NotFound`] otherwise, nothing written); an empty list is refused. Durable
    /// on return (the journal is fsynced; the topics' parts are rolled forward after a crash).
    ///
    /// Errors: before the commit, every part is checked under its topic's writer lock (its
    /// size, its budget under the topic's `when_full`, poison, free space) and the lock is held
    /// until the part is written, so a refused append returns a plain error and wrote nothing.
    /// After the commit it never returns a plain error: [`Error::AtomicAppendIncomplete`] (with
    /// the transaction's id) when a part could not be written or made durable, and
    /// [`Error::AtomicAppendUnknown`] when the journal write itself failed; the journal keeps
    /// every unfinished transaction until it is completed.
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
            topics.push(self.existing_topic(name)?);
        }
        let mut journal = lock(&self.inner().journal);
        if journal.is_none() {
            *journal = Some(Journal::open(self)?);
        }
        let Some(j) = journal.as_mut() else { return Err(Error::InvalidOptions { reason: "no journal".into() }) };
        if j.log.is_poisoned() {
            // Refused before anything is written.
            j.log.sync()?;
        }
        self.complete_pending(j);
        let now = crate::clock::now_ms();
        let placeholder = [0u8; 8];
        // Each topic's writer lock, in name order, with room made for its marked part: nothing
        // can refuse the part once the transaction is committed (but the disk).
        let mut held = Vec::with_capacity(topics.len());
        let mut parts: Vec<(String, u64, Vec<NewRecord<'_>>)> = Vec::with_capacity(topics.len());
        for ((name, rs), t) in by_topic.iter().zip(&topics) {
            let reservation = t.reserve_batch(&marked(rs.iter().map(|(_, r)| r.clone()), &placeholder, now))?;
            held.push(reservation);
            parts.push((name.to_string(), t.next_offset(), rs.iter().map(|(_, r)| r.clone()).collect()));
        }
        let payload = encode(&parts, now)?;
        let id = match j.log.append(&payload) {
            Ok(id) => id,
            Err(e) if j.log.is_poisoned() => return Err(Error::AtomicAppendUnknown { source: Box::new(e.into()) }),
            Err(e) => return Err(e.into()),
        };
        // Committed. Now the topics, in name order, each under the lock it holds.
        let mut offsets = vec![0u64; records.len()];
        let (applied, failure) = write_parts(&by_topic, held, &topics, id, now, &mut offsets);
        if let Some((topic, source)) = failure {
            j.pending.insert(id, applied);
            return Err(Error::AtomicAppendIncomplete { txn: id, topic, source: Box::new(source) });
        }
        if let Err(e) = mark_done(j, id) {
            // Every part is in and durable; only the marker is missing, and the roll-forward
            // at the next open finds the parts and writes it.
            j.pending.insert(id, by_topic.keys().map(|n| n.to_string()).collect());
            return Err(Error::AtomicAppendIncomplete { txn: id, topic: TXN_DIR.to_string(), source: Box::new(e) });
        }
        Ok(offsets)
    }

    /// Tries to complete the transactions a failure left pending in this process; what still
    /// fails stays pending (and is completed when the store next opens).
    fn complete_pending(&self, j: &mut Journal) {
        let ids: Vec<u64> = j.pending.keys().copied().collect();
        for id in ids {
            let Ok(Some(entry)) = j.log.read(id) else { continue };
            let applied = j.pending.get(&id).cloned().unwrap_or_default();
            if matches!(self.roll_forward(id, &entry, &applied), Ok(true)) && mark_done(j, id).is_ok() {
                j.pending.remove(&id);
            }
        }
    }

    /// Applies the parts of transaction `id` (journal record `entry`) that are not in their
    /// topics yet, except those of `applied`; true when every part is in. A read error is
    /// returned, never taken for "not applied".
    fn roll_forward(&self, id: u64, entry: &Record, applied: &BTreeSet<String>) -> Result<bool> {
        for part in decode(entry)? {
            if applied.contains(&part.topic) || !self.inner().topic_exists(&part.topic)? {
                continue; // in already, or deleted since: nothing to complete
            }
            let t = self.existing_topic(&part.topic)?;
            let mut found = false;
            for r in t.iter(part.from) {
                if txn_of(&r?) == Some(id) {
                    found = true;
                    break;
                }
            }
            if found {
                continue;
            }
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
            let mark = id.to_le_bytes();
            let batch = marked(records.into_iter(), &mark, 0);
            match t.reserve_batch(&batch).and_then(|reservation| reservation.write(&batch, 0)).map_err(Error::from) {
                Ok(_) => t.sync()?,
                // A part that cannot be appended now (a full topic, say) stays pending.
                Err(e) if refused(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
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
        let mut j = Journal::open(self)?;
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
            // Transactions are completed in commit order: one that cannot be yet keeps itself
            // and every later one pending (the store still opens; the next open tries again).
            if !j.pending.is_empty() || !self.roll_forward(*id, entry, &BTreeSet::new())? {
                j.pending.insert(*id, BTreeSet::new());
                continue;
            }
            mark_done(&j, *id)?;
        }
        j.trim()?;
        *lock(&self.inner().journal) = Some(j);
        Ok(())
    }
}

/// Marks transaction `id` done, then removes the journal's sealed segments whose
/// transactions are all done (never one holding a pending transaction).
fn mark_done(j: &Journal, id: u64) -> Result<()> {
    let mark = id.to_le_bytes();
    let marker = [NewRecord::new(&[]).header(TXN, &mark)];
    j.log.reserve_batch(&marker)?.write(&marker, crate::clock::now_ms())?;
    j.log.sync()?;
    j.trim()
}

/// Writes each part of committed transaction `id` under the lock its reservation holds (a part
/// after a failed one is not written; dropping its reservation lets the lock go), then, with
/// every lock let go, makes each part durable (under `Always` that publishes it). Fills
/// `offsets` (in the order the records were given); returns the topics whose part is in, and
/// the first failure.
fn write_parts(
    by_topic: &BTreeMap<&str, Vec<(usize, NewRecord<'_>)>>,
    held: Vec<Reservation<'_>>,
    topics: &[Arc<Topic>],
    id: u64,
    now: i64,
    offsets: &mut [u64],
) -> (BTreeSet<String>, Option<(String, Error)>) {
    let mark = id.to_le_bytes();
    let mut applied = BTreeSet::new();
    let mut failure = None;
    for ((name, rs), reservation) in by_topic.iter().zip(held) {
        if failure.is_some() {
            continue;
        }
        match reservation.write(&marked(rs.iter().map(|(_, r)| r.clone()), &mark, now), now) {
            Ok(range) => {
                for (k, (i, _)) in rs.iter().enumerate() {
                    if let Some(o) = offsets.get_mut(*i) {
                        *o = range.start + k as u64;
                    }
                }
                applied.insert(name.to_string());
            }
            Err(e) => failure = Some((name.to_string(), Error::from(e))),
        }
    }
    if failure.is_none() {
        for (name, t) in by_topic.keys().zip(topics) {
            if let Err(e) = t.sync() {
                applied.remove(*name);
                failure = Some((name.to_string(), e.into()));
                break;
            }
        }
    }
    (applied, failure)
}
