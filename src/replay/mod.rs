//! Replay: history of one or more topics in event-time order, exactly, with bounded memory.
//!
//! Order is by (timestamp, topic name, offset): total and deterministic.
//!
//! Two paths:
//! - **Exact** (no `max_lateness`): an external merge sort. Records in `[from, to)` are gathered
//!   into a buffer of at most half of `memory_bytes_max`; a full buffer is sorted and spilled as a
//!   run file under `<root>/replay-tmp/`; the runs and the last buffer are merged with a heap.
//! - **Streaming** (`max_lateness(L)` declared): topics are read in offset order and merged behind
//!   a watermark `min over topics (largest timestamp seen - L)`; a record is emitted once its
//!   timestamp is below the watermark. A record later than declared is still placed exactly if
//!   nothing after it was emitted yet; otherwise the replay returns `ReplayError::LatenessExceeded` (it
//!   never emits out of order). Memory is about the lateness window; past `memory_bytes_max` the
//!   replay fails with `ReplayError::MemoryExceeded` rather than grow.
//!
//! Invariants:
//! - Segments whose time range cannot meet `[from, to)` are not read (time index).
//! - History ends at each topic's end when the replay started (saved with a named replay), so a
//!   resumed replay covers exactly the same records; later records are "live".
//! - Run files are removed when the replay is dropped, and `<root>/replay-tmp` is emptied when the
//!   store opens (runs left by a crash).
//! - A named replay's progress (the last emitted key and the topics' ends) is saved in sled at each
//!   `checkpoint()`; resuming skips every key up to it: no gap, no duplicate.

mod held;
pub(crate) mod window;

use crate::error::{Error, ReplayError, Result};
use crate::format::run::{self, RUN_ENTRY_HEADER_LEN};
use crate::format::state::ReplayProgress;
use crate::log::Iter;
use crate::storage::{Bytes, OpenMode, SharedBytes, StorageFile};
use crate::store::{Store, Topic, validate_name};
use held::{Chunks, Held, Reading};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default memory budget of a replay.
pub const REPLAY_MEMORY_BYTES_DEFAULT: u64 = 64 << 20;
/// Bytes counted per buffered record besides its key and payload.
const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Records the streaming merge reads from one topic before looking at the watermark again.
const STREAM_BURST: usize = 256;
/// Read and write buffer of one run file.
const RUN_BUFFER_BYTES: usize = 64 << 10;

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEvent {
    /// The record's topic.
    pub topic: Arc<str>,
    /// The record's offset.
    pub offset: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The record's key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload; zero-copy when it comes straight from a mapped segment.
    pub payload: Bytes,
    /// A live record (after history) older than the last history record emitted.
    pub late: bool,
}

/// One replayed record lent by [`Replay::scan_events`]: the same fields as a [`ReplayEvent`], borrowed
/// from the replay for the length of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEventRef<'a> {
    /// The record's topic.
    pub topic: &'a str,
    /// The record's offset.
    pub offset: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The record's key, if any.
    pub key: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
    /// A live record (after history) older than the last history record emitted.
    pub late: bool,
}

impl ReplayEvent {
    /// The event as a [`ReplayEventRef`] (what [`Replay::scan_events`] lends).
    pub fn as_event_ref(&self) -> ReplayEventRef<'_> {
        ReplayEventRef {
            topic: &self.topic,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            payload: &self.payload,
            late: self.late,
        }
    }
}

/// What a replay read and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayStats {
    /// Frame bytes read from the logs (header, key and payload of every record scanned).
    pub bytes_read: u64,
    /// Records scanned.
    pub records_read: u64,
    /// Segments skipped thanks to the time index.
    pub segments_skipped: u64,
    /// Sorted runs spilled to disk, and their bytes.
    pub runs_spilled: u64,
    /// Bytes of those runs.
    pub bytes_spilled: u64,
    /// Records emitted.
    pub records_emitted: u64,
    /// Live records delivered flagged `late`.
    pub late_records: u64,
}

/// Builds a replay; see [`Store::replay`].
#[derive(Debug, Clone)]
pub struct ReplayBuilder {
    store: Store,
    topics: Vec<String>,
    from: Option<i64>,
    to: Option<i64>,
    max_lateness: Option<Duration>,
    memory_bytes_max: u64,
    name: Option<String>,
    live: bool,
}

/// The sort key: (timestamp, topic rank by name, offset).
type Key = (i64, u16, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: Key,
    record_key: Option<Box<[u8]>>,
    payload: Bytes,
}

impl Entry {
    fn bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES + self.payload.len() as u64 + self.record_key.as_ref().map_or(0, |k| k.len() as u64)
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Store {
    /// A replay of `topics` in event-time order. Configure it, then call `start`.
    pub fn replay(&self, topics: &[&str]) -> ReplayBuilder {
        ReplayBuilder {
            store: self.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            from: None,
            to: None,
            max_lateness: None,
            memory_bytes_max: REPLAY_MEMORY_BYTES_DEFAULT,
            name: None,
            live: false,
        }
    }
}

impl ReplayBuilder {
    /// Only records with timestamp >= `ts`.
    pub fn from(mut self, ts: i64) -> Self {
        self.from = Some(ts);
        self
    }
    /// Only records with timestamp < `ts`.
    pub fn to(mut self, ts: i64) -> Self {
        self.to = Some(ts);
        self
    }
    /// Declares that a record is never more than `d` older than the newest record before it in
    /// its topic: enables the streaming merge.
    pub fn max_lateness(mut self, d: Duration) -> Self {
        self.max_lateness = Some(d);
        self
    }
    /// Memory budget for buffered records (default 64 MiB).
    pub fn memory_bytes_max(mut self, n: u64) -> Self {
        self.memory_bytes_max = n;
        self
    }
    /// Makes the replay resumable under this name (progress saved at each `checkpoint`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// After history, continue with records appended since the replay began.
    pub fn then_live(mut self) -> Self {
        self.live = true;
        self
    }

    /// Checks the settings and returns the topics' names, sorted and without duplicates.
    fn checked_names(&self) -> Result<Vec<String>> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return bad(format!("replay from {f} is after to {t}"));
        }
        if self.memory_bytes_max == 0 {
            return bad("replay memory_bytes_max must be more than 0".into());
        }
        if self.topics.is_empty() {
            return bad("replay needs at least one topic".into());
        }
        let mut names = self.topics.clone();
        names.sort();
        names.dedup();
        if names.len() > usize::from(u16::MAX) {
            return bad("too many topics".into());
        }
        if let Some(n) = &self.name {
            validate_name(n)?;
        }
        Ok(names)
    }

    /// Checks the settings, opens the topics and starts the replay.
    pub fn start(self) -> Result<Replay> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        let names = self.checked_names()?;
        let existing = self.store.topics()?;
        let mut topics = Vec::with_capacity(names.len());
        for n in &names {
            validate_name(n)?;
            if !existing.contains(n) {
                return Err(Error::NotFound { kind: "topic", name: n.clone() });
            }
            topics.push(self.store.topic(n)?);
        }
        let saved = match &self.name {
            Some(n) => self.store.inner().state.replay_progress(n)?,
            None => None,
        };
        let ends: Vec<u64> = match &saved {
            Some(p) => {
                if p.topics != names {
                    return bad(format!(
                        "replay {:?} was saved for topics {:?}",
                        self.name.as_deref().unwrap_or(""),
                        p.topics
                    ));
                }
                p.ends.clone()
            }
            // A cut between atomic appends: history never holds part of one.
            None => self.store.consistent_ends(&topics),
        };
        let resume_after = saved.and_then(|p| p.last);
        let from = self.from.unwrap_or(i64::MIN);
        let to = self.to.unwrap_or(i64::MAX);
        let mut stats = ReplayStats::default();
        let mut sources = Vec::with_capacity(topics.len());
        for (rank, (t, &end)) in topics.iter().zip(&ends).enumerate() {
            sources.push(Source::new(t.clone(), rank as u16, end, (from, to), &mut stats)?);
        }
        let names: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
        let mode = if self.max_lateness.is_some() { Mode::Streaming(Pending::default()) } else { Mode::Gather };
        Ok(Replay {
            store: self.store,
            names,
            topics,
            ends,
            sources,
            from,
            to,
            lateness_ms: self.max_lateness.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            memory_bytes_max: self.memory_bytes_max,
            name: self.name,
            resume_after,
            last: resume_after,
            mode,
            stats,
            spill_dir: None,
            live: self.live.then(Vec::new),
            live_cut: Vec::new(),
            live_held: Vec::new(),
            failed: false,
            pace: None,
            held_bytes: 0,
            chunks: Chunks::default(),
            watermark: None,
        })
    }
}

/// Payload bytes a source copies out of the log per batch. Records are copied into a private
/// buffer rather than held as references into the mapped segments: a scan releases the pages
/// behind its cursor, and a replay that touched them again later (sorting, spilling, emitting
/// from the lateness window) would map the whole log back into its resident set.
const COPY_BATCH_BYTES: usize = 1 << 20;

/// A record read into a copy batch: its payload is `range` of the batch's buffer.
struct Copied {
    key: Key,
    record_key: Option<Box<[u8]>>,
    range: Range<usize>,
    /// The source's `max_seen` as of reading it.
    seen: Option<i64>,
}

/// A topic's records in `[from, to)` below its history end, in offset order, skipping segments
/// whose time range misses the interval.
#[derive(Debug)]
struct Source {
    rank: u16,
    /// Offset ranges still to read.
    ranges: Vec<(u64, u64)>,
    iter: Option<(Iter, u64)>,
    topic: Arc<Topic>,
    window: Window,
    /// Largest timestamp of the records handed out so far, and of those skipped (outside
    /// `[from, to)`) before them: the streaming watermark, which must not run ahead of what
    /// the merge has seen.
    max_seen: Option<i64>,
    /// Records read and copied (exact path), not handed out yet, each with `max_seen` as of
    /// reading it.
    ready: std::collections::VecDeque<(Entry, Option<i64>)>,
    /// Every range was read; `done` once `ready` is empty too.
    exhausted: bool,
    done: bool,
    /// Streaming: the chunk the source reads in now. (The exact path, which holds records long
    /// while it sorts and spills, copies payloads out of the log instead: `next`.)
    reading: Reading,
}

impl Source {
    fn new(topic: Arc<Topic>, rank: u16, end: u64, range: (i64, i64), stats: &mut ReplayStats) -> Result<Self> {
        let (from, to) = range;
        let mut ranges = Vec::new();
        for (start, stop, range) in topic.segment_time_ranges()? {
            let stop = stop.min(end);
            if start >= stop {
                continue;
            }
            match range {
                Some((lo, hi)) if hi >= from && lo < to => ranges.push((start, stop)),
                _ => stats.segments_skipped += 1,
            }
        }
        ranges.reverse();
        Ok(Source {
            rank,
            ranges,
            iter: None,
            topic,
            window: Window { from, to, read_seen: None },
            max_seen: None,
            ready: std::collections::VecDeque::new(),
            exhausted: false,
            done: false,
            reading: Reading::default(),
        })
    }

    /// Exact path: the next record of this topic in `[from, to)`, its payload copied out of the
    /// log in batches, or `None` at its history end.
    fn next(&mut self, stats: &mut ReplayStats) -> Result<Option<Entry>> {
        if self.ready.is_empty() {
            // Records skipped after the last one handed out count as seen before what follows.
            self.max_seen = self.max_seen.max(self.window.read_seen);
            if !self.exhausted {
                self.read_batch(stats)?;
            }
        }
        match self.ready.pop_front() {
            Some((e, seen)) => {
                self.max_seen = self.max_seen.max(seen);
                Ok(Some(e))
            }
            None => {
                self.max_seen = self.max_seen.max(self.window.read_seen);
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Reads records (borrowed from the log) until about `COPY_BATCH_BYTES` of payload were
    /// copied into one private buffer, or the history ends.
    fn read_batch(&mut self, stats: &mut ReplayStats) -> Result<()> {
        let mut copied = Vec::with_capacity(COPY_BATCH_BYTES);
        let mut read: Vec<Copied> = Vec::new();
        while copied.len() < COPY_BATCH_BYTES {
            let Some((iter, stop)) = current_iter(&mut self.iter, &mut self.ranges, &self.topic, &mut self.exhausted)
            else {
                break;
            };
            // Past `stop` (a compacted segment that lost its last records) the record belongs
            // to a later range, or to after the history end.
            let Some(r) = iter.next_ref()?.filter(|r| r.offset() < stop) else {
                self.iter = None;
                continue;
            };
            let ts = r.timestamp();
            if !self.window.admits(stats, ts, r.payload().len() + r.key().map_or(0, <[u8]>::len)) {
                continue;
            }
            let at = copied.len();
            copied.extend_from_slice(r.payload());
            let (key, record_key) = ((ts, self.rank, r.offset()), r.key().map(Box::from));
            read.push(Copied { key, record_key, range: at..copied.len(), seen: self.window.read_seen });
        }
        let shared = SharedBytes::from_vec(copied);
        for Copied { key, record_key, range, seen } in read {
            let payload = shared.slice(range).unwrap_or_else(Bytes::empty);
            self.ready.push_back((Entry { key, record_key, payload }, seen));
        }
        Ok(())
    }

    /// Streaming: the next record of this topic in `[from, to)`, held in the chunk it was read
    /// in (no copy, no reference count of its own), or `None` at its history end.
    fn next_held(&mut self, stats: &mut ReplayStats, chunks: &mut Chunks) -> Result<Option<Held>> {
        let h = self.read_held(stats, chunks)?;
        self.max_seen = self.max_seen.max(self.window.read_seen);
        if h.is_none() {
            self.done = true;
            chunks.stop_reading(&mut self.reading);
        }
        Ok(h)
    }

    fn read_held(&mut self, stats: &mut ReplayStats, chunks: &mut Chunks) -> Result<Option<Held>> {
        loop {
            let Some((iter, stop)) = current_iter(&mut self.iter, &mut self.ranges, &self.topic, &mut self.exhausted)
            else {
                return Ok(None);
            };
            if let Some(buf) = chunks.take_spare() {
                iter.offer_buffer(buf);
            }
            let Some(r) = iter.next_in_chunk()?.filter(|r| r.offset < stop) else {
                self.iter = None;
                continue;
            };
            if self.window.admits(stats, r.timestamp, r.payload.len() + r.key.as_ref().map_or(0, Range::len)) {
                let key = (r.timestamp, self.rank, r.offset);
                let held = chunks.hold(&mut self.reading, r.chunk, key, r.key.as_ref(), &r.payload);
                return held.map(Some).ok_or_else(|| {
                    let reason = "record outside the bytes read";
                    Error::corruption(self.topic.log().dir(), 0, Some(key.2), reason)
                });
            }
        }
    }
}

/// The iterator over a source's current offset range, moving to the next range when one is used
/// up; `None` (and `exhausted` set) once every range was read. Takes the source's fields apart
/// so that a record borrowed from the iterator can live beside the source's other fields.
fn current_iter<'a>(
    iter: &'a mut Option<(Iter, u64)>,
    ranges: &mut Vec<(u64, u64)>,
    topic: &Topic,
    exhausted: &mut bool,
) -> Option<(&'a mut Iter, u64)> {
    loop {
        match iter {
            Some((it, stop)) if it.next_offset() < *stop => break,
            Some(_) => *iter = None,
            None => {
                let Some((start, stop)) = ranges.pop() else {
                    *exhausted = true;
                    return None;
                };
                *iter = Some((topic.iter(start), stop));
            }
        }
    }
    iter.as_mut().map(|(it, stop)| (it, *stop))
}

/// A source's time window and what it has seen of the topic.
#[derive(Debug)]
struct Window {
    from: i64,
    to: i64,
    /// Largest timestamp read so far (skipped records included).
    read_seen: Option<i64>,
}

impl Window {
    /// Counts a record read (`body` bytes of key and payload) and notes its timestamp; whether
    /// it lies in `[from, to)`.
    fn admits(&mut self, stats: &mut ReplayStats, ts: i64, body: usize) -> bool {
        stats.records_read += 1;
        stats.bytes_read += (crate::format::FRAME_HEADER_LEN + body) as u64;
        self.read_seen = Some(self.read_seen.map_or(ts, |m| m.max(ts)));
        ts >= self.from && ts < self.to
    }
}

#[derive(Debug)]
enum Mode {
    /// Exact path, before the sort: nothing gathered yet.
    Gather,
    /// Exact path, merging the sorted runs and the last buffer.
    Merge { heap: BinaryHeap<Reverse<(Entry, usize)>>, runs: Vec<RunReader>, buffer: std::vec::IntoIter<Entry> },
    /// Streaming path: records waiting for the watermark.
    Streaming(Pending),
    /// History is over.
    Done,
}

/// Streaming path's waiting records: the in-order ones (most of them) in a queue, O(1) each,
/// held in the chunks they were read in; the few that arrive out of order in a heap, copied.
#[derive(Debug, Default)]
struct Pending {
    in_order: std::collections::VecDeque<Held>,
    late: BinaryHeap<Reverse<Entry>>,
}

/// What the history hands out next: an entry, or a record still held in its chunk.
enum Out {
    Entry(Entry),
    Held(Held),
}

impl Pending {
    fn push(&mut self, h: Held, chunks: &mut Chunks) {
        if self.in_order.back().is_none_or(|b| b.key <= h.key) {
            self.in_order.push_back(h);
        } else {
            // Held until the watermark passes it, maybe long after its neighbours: a copy, so it
            // does not keep the chunk it came in alive.
            self.late.push(Reverse(chunks.take(h, true)));
        }
    }
    fn min_key(&self) -> Option<Key> {
        match (self.in_order.front(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.key.min(b.key)),
            (Some(a), None) => Some(a.key),
            (None, Some(Reverse(b))) => Some(b.key),
            (None, None) => None,
        }
    }
    /// The record with the smallest key and the bytes it was counted for.
    fn pop(&mut self) -> Option<(Out, u64)> {
        let from_queue = match (self.in_order.front(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => a.key <= b.key,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_queue {
            self.in_order.pop_front().map(|h| (Out::Held(h), Chunks::bytes_of(&h)))
        } else {
            self.late.pop().map(|Reverse(e)| {
                let bytes = e.bytes();
                (Out::Entry(e), bytes)
            })
        }
    }
}

/// Where the streaming merge takes in a record a source read: skipped when a resumed replay
/// emitted it already, refused when it comes later than the lateness allowed, counted against
/// the memory budget, queued.
struct Intake<'a> {
    chunks: &'a mut Chunks,
    pending: &'a mut Pending,
    held_bytes: &'a mut u64,
    memory_bytes_max: u64,
    last: Option<Key>,
    resume_after: Option<Key>,
    names: &'a [Arc<str>],
}

/// The intake over a replay's fields (each borrowed on its own, so that a source can be
/// borrowed beside it) and its queue of waiting records.
macro_rules! intake {
    ($replay:expr, $pending:expr) => {
        Intake {
            chunks: &mut $replay.chunks,
            pending: $pending,
            held_bytes: &mut $replay.held_bytes,
            memory_bytes_max: $replay.memory_bytes_max,
            last: $replay.last,
            resume_after: $replay.resume_after,
            names: &$replay.names,
        }
    };
}

impl Intake<'_> {
    #[inline]
    fn take_in(&mut self, h: Held) -> Result<()> {
        if self.resume_after.is_some_and(|r| h.key <= r) {
            self.chunks.release_held(h);
            return Ok(());
        }
        if let Some(l) = self.last.filter(|&l| h.key < l) {
            let topic = self.names.get(usize::from(h.key.1)).map_or("?", |n| n).to_string();
            let (offset, timestamp, emitted) = (h.key.2, h.key.0, l.0);
            return Err(Error::Replay(ReplayError::LatenessExceeded { topic, offset, timestamp, emitted }));
        }
        *self.held_bytes += Chunks::bytes_of(&h);
        if *self.held_bytes > self.memory_bytes_max {
            return Err(ReplayError::MemoryExceeded { held: *self.held_bytes, max: self.memory_bytes_max }.into());
        }
        self.pending.push(h, self.chunks);
        Ok(())
    }
}

/// A replay in progress; an iterator of [`ReplayEvent`]s.
#[derive(Debug)]
pub struct Replay {
    store: Store,
    names: Vec<Arc<str>>,
    topics: Vec<Arc<Topic>>,
    ends: Vec<u64>,
    sources: Vec<Source>,
    from: i64,
    to: i64,
    lateness_ms: Option<i64>,
    memory_bytes_max: u64,
    name: Option<String>,
    resume_after: Option<Key>,
    last: Option<Key>,
    mode: Mode,
    stats: ReplayStats,
    spill_dir: Option<PathBuf>,
    /// `then_live`: per-topic iterators from the history ends, created when history is over.
    live: Option<Vec<Iter>>,
    /// Live phase: how far each topic may be read (a cut between atomic appends, moved on
    /// when every topic is read up to it), and a record read past its cut, held for the next.
    live_cut: Vec<u64>,
    live_held: Vec<Option<crate::log::record::Record>>,
    failed: bool,
    pace: Option<Pace>,
    /// Streaming path: bytes of the records waiting for the watermark.
    held_bytes: u64,
    /// Streaming path: the chunks the waiting in-order records are held in.
    chunks: Chunks,
    /// Streaming path: the watermark, until the next read.
    watermark: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Pace {
    speed: f64,
    start: Option<(Instant, i64)>,
}

impl Replay {
    /// What the replay has read and done so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Replays with the original gaps between event timestamps, divided by `speed` (2.0 = twice
    /// as fast). For testing downstream systems, like JetStream's "original" replay policy.
    pub fn paced(mut self, speed: f64) -> Self {
        self.pace = Some(Pace { speed: if speed > 0.0 { speed } else { 1.0 }, start: None });
        self
    }

    /// Event-time windows over this replay: `fold` folds each event into every window of `spec`
    /// that holds it, starting from `init`; windows come out in order of their end, each once
    /// the replay has passed it.
    pub fn windows<A, F>(
        self,
        spec: crate::replay::window::WindowSpec,
        init: A,
        fold: F,
    ) -> Result<crate::replay::window::Windows<Self, A, F>>
    where
        A: Clone,
        F: FnMut(&mut A, &ReplayEvent),
    {
        crate::replay::window::Windows::new(self, spec, init, fold)
    }

    /// Saves progress (the last emitted record and the history ends) of a named replay,
    /// durably. After a crash, starting the same named replay resumes right after it.
    pub fn checkpoint(&mut self) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(ReplayError::NotNamed.into());
        };
        let p = ReplayProgress {
            topics: self.names.iter().map(|n| n.to_string()).collect(),
            ends: self.ends.clone(),
            last: self.last,
        };
        self.store.inner().state.save_replay_progress(name, &p)
    }

    fn emit(&mut self, e: Entry, late: bool) -> ReplayEvent {
        self.account(e.key, late);
        ReplayEvent {
            topic: self.topic_name(e.key.1),
            offset: e.key.2,
            timestamp: e.key.0,
            key: e.record_key.map(Vec::from),
            payload: e.payload,
            late,
        }
    }

    /// Hands `f` the events `next` would return, in the same order, each lent for the call: no
    /// `ReplayEvent` is built and no topic name reference is counted per event. `f` returns
    /// `ControlFlow::Break(())` to stop; the next `scan` or `next` goes on after the last event
    /// `f` was given. Returns how many events `f` was given. Like `next`, a `then_live` replay
    /// waits for live records once history is over (only `f` can stop it), and after an error
    /// the replay yields nothing more.
    pub fn scan_events(&mut self, mut f: impl FnMut(ReplayEventRef<'_>) -> std::ops::ControlFlow<()>) -> Result<u64> {
        let mut given = 0;
        while !self.failed {
            let flow = match self.next_history() {
                Ok(Some(Out::Entry(e))) => {
                    self.account(e.key, false);
                    f(self.entry_ref(&e))
                }
                Ok(Some(Out::Held(h))) => {
                    self.account(h.key, false);
                    let flow = f(self.held_ref(&h));
                    self.chunks.release_held(h);
                    if flow.is_break() {
                        flow
                    } else {
                        given += 1;
                        // Usually many more records have passed the watermark: handed out
                        // without another round of the merge.
                        let (drained, flow) = self.drain_ready(&mut f);
                        given += drained;
                        if flow.is_break() {
                            break;
                        }
                        continue;
                    }
                }
                Ok(None) => match self.next_live() {
                    Ok(Some(event)) => f(event.as_event_ref()),
                    Ok(None) => break,
                    Err(err) => {
                        self.failed = true;
                        return Err(err);
                    }
                },
                Err(err) => {
                    self.failed = true;
                    return Err(err);
                }
            };
            given += 1;
            if flow.is_break() {
                break;
            }
        }
        Ok(given)
    }

    /// Hands `f` the in-order records the cached watermark has already passed, in the order
    /// `next_streaming` would (a late record with a smaller key goes first, so the loop stops
    /// there and leaves it to the merge); returns how many and whether `f` asked to stop.
    fn drain_ready(
        &mut self,
        f: &mut impl FnMut(ReplayEventRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> (u64, std::ops::ControlFlow<()>) {
        let mut given = 0;
        let Some(watermark) = self.watermark else { return (0, std::ops::ControlFlow::Continue(())) };
        while let Mode::Streaming(pending) = &mut self.mode {
            let Some(&h) = pending.in_order.front() else { break };
            let ready = h.key.0 < watermark || watermark == i64::MAX;
            if !ready || pending.late.peek().is_some_and(|Reverse(e)| e.key < h.key) {
                break;
            }
            pending.in_order.pop_front();
            self.held_bytes -= Chunks::bytes_of(&h);
            self.account(h.key, false);
            let flow = f(self.held_ref(&h));
            self.chunks.release_held(h);
            given += 1;
            if flow.is_break() {
                return (given, flow);
            }
        }
        (given, std::ops::ControlFlow::Continue(()))
    }

    /// A record held in its chunk as lent by `scan_events`.
    fn held_ref<'a>(&'a self, h: &Held) -> ReplayEventRef<'a> {
        let (payload, key) = self.chunks.get(h);
        ReplayEventRef {
            topic: self.names.get(usize::from(h.key.1)).map_or("?", |n| n),
            offset: h.key.2,
            timestamp: h.key.0,
            key,
            payload,
            late: false,
        }
    }

    /// What the history hands out, as an owned entry.
    fn owned(&mut self, out: Out) -> Entry {
        match out {
            Out::Entry(e) => e,
            Out::Held(h) => self.chunks.take(h, false),
        }
    }

    /// A history entry as lent by `scan_events`.
    fn entry_ref<'a>(&'a self, e: &'a Entry) -> ReplayEventRef<'a> {
        ReplayEventRef {
            topic: self.names.get(usize::from(e.key.1)).map_or("?", |n| n),
            offset: e.key.2,
            timestamp: e.key.0,
            key: e.record_key.as_deref(),
            payload: &e.payload,
            late: false,
        }
    }

    /// Notes an event about to be handed out: the resume point, the counters, the pace.
    fn account(&mut self, key: Key, late: bool) {
        if !late {
            self.last = Some(key);
        }
        self.stats.records_emitted += 1;
        self.stats.late_records += u64::from(late);
        if let Some(p) = &mut self.pace {
            let ts = key.0;
            match p.start {
                None => p.start = Some((Instant::now(), ts)),
                Some((t0, ts0)) => {
                    let due = Duration::from_secs_f64((ts.saturating_sub(ts0)).max(0) as f64 / 1000.0 / p.speed);
                    let elapsed = t0.elapsed();
                    if due > elapsed {
                        std::thread::sleep(due - elapsed);
                    }
                }
            }
        }
    }

    /// The name of source `index` (entries only carry indexes of this replay's sources).
    fn topic_name(&self, index: u16) -> Arc<str> {
        self.names.get(usize::from(index)).cloned().unwrap_or_else(|| Arc::from("?"))
    }

    /// The next entry of source `i` (none past the last source).
    fn source_next(&mut self, i: usize) -> Result<Option<Entry>> {
        match self.sources.get_mut(i) {
            Some(s) => s.next(&mut self.stats),
            None => Ok(None),
        }
    }

    /// Streaming: the next record of source `i`, held in its chunk (none past the last source).
    fn source_next_held(&mut self, i: usize) -> Result<Option<Held>> {
        match self.sources.get_mut(i) {
            Some(s) => s.next_held(&mut self.stats, &mut self.chunks),
            None => Ok(None),
        }
    }

    fn already_emitted(&self, key: Key) -> bool {
        self.resume_after.is_some_and(|r| key <= r)
    }

    fn next_history(&mut self) -> Result<Option<Out>> {
        loop {
            match &mut self.mode {
                Mode::Gather => self.gather()?,
                Mode::Merge { heap, runs, buffer } => {
                    if let Some(Reverse((e, src))) = heap.pop() {
                        let next = match runs.get_mut(src) {
                            Some(run) => run.next()?,
                            None => buffer.next(), // `src` is usize::MAX for the in-memory buffer
                        };
                        if let Some(n) = next {
                            heap.push(Reverse((n, src)));
                        }
                        return Ok(Some(Out::Entry(e)));
                    }
                    self.mode = Mode::Done;
                }
                Mode::Streaming(_) => return self.next_streaming(),
                Mode::Done => return Ok(None),
            }
        }
    }

    /// Exact path: reads everything, spilling sorted runs, then sets up the merge.
    fn gather(&mut self) -> Result<()> {
        let budget = self.memory_bytes_max / 2;
        let mut buffer: Vec<Entry> = Vec::new();
        let mut bytes = 0u64;
        let mut runs = Vec::new();
        for i in 0..self.sources.len() {
            while let Some(e) = self.source_next(i)? {
                if self.already_emitted(e.key) {
                    continue;
                }
                bytes += e.bytes();
                buffer.push(e);
                if bytes >= budget {
                    buffer.sort_unstable();
                    runs.push(self.spill(&buffer)?);
                    buffer.clear();
                    bytes = 0;
                }
            }
        }
        buffer.sort_unstable();
        let mut runs: Vec<RunReader> = runs;
        let mut heap = BinaryHeap::new();
        for (i, r) in runs.iter_mut().enumerate() {
            if let Some(e) = r.next()? {
                heap.push(Reverse((e, i)));
            }
        }
        let mut buffer = buffer.into_iter();
        if let Some(e) = buffer.next() {
            heap.push(Reverse((e, usize::MAX)));
        }
        self.mode = Mode::Merge { heap, runs, buffer };
        Ok(())
    }

    fn spill(&mut self, sorted: &[Entry]) -> Result<RunReader> {
        let storage = self.store.inner().opts.log.storage.clone();
        let dir = match &self.spill_dir {
            Some(d) => d.clone(),
            None => {
                let nanos = crate::clock::now_nanos();
                let d = self.store.root().join(REPLAY_TMP_DIR).join(format!("{}-{nanos}", std::process::id()));
                // Not made durable: runs live only as long as this replay, and open removes them.
                storage.create_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
                self.spill_dir = Some(d.clone());
                d
            }
        };
        let path = dir.join(format!("run-{}", self.stats.runs_spilled));
        let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
        let mut buf = Vec::with_capacity(RUN_BUFFER_BYTES);
        let mut pos = 0u64;
        for e in sorted {
            encode_run_entry(&mut buf, e);
            if buf.len() >= RUN_BUFFER_BYTES {
                file.write_all_at(&buf, pos).map_err(|err| Error::io("write", &path, err))?;
                pos += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, pos).map_err(|err| Error::io("write", &path, err))?;
        pos += buf.len() as u64;
        self.stats.runs_spilled += 1;
        self.stats.bytes_spilled += pos;
        Ok(RunReader { file, path, pos: 0, len: pos, buf: Vec::new(), at: 0 })
    }

    /// Streaming path: emit below the watermark, reading the topic that holds it back.
    fn next_streaming(&mut self) -> Result<Option<Out>> {
        let lateness = self.lateness_ms.unwrap_or(0);
        loop {
            // Only reading moves the watermark, so it is cached between reads.
            let watermark = match self.watermark {
                Some(w) => w,
                None => {
                    let w = self
                        .sources
                        .iter()
                        .filter(|s| !s.done)
                        .map(|s| s.max_seen.map_or(i64::MIN, |m| m.saturating_sub(lateness)))
                        .min()
                        .unwrap_or(i64::MAX);
                    self.watermark = Some(w);
                    w
                }
            };
            let Mode::Streaming(pending) = &mut self.mode else { return Ok(None) };
            let ready = pending.min_key().is_some_and(|k| k.0 < watermark || watermark == i64::MAX);
            if ready {
                let Some((out, bytes)) = pending.pop() else { continue };
                self.held_bytes -= bytes;
                return Ok(Some(out));
            }
            if watermark == i64::MAX {
                self.mode = Mode::Done;
                return Ok(None);
            }
            // Read from the topic with the lowest watermark.
            let Some(i) = (self.sources.iter().enumerate())
                .filter(|(_, s)| !s.done)
                .min_by_key(|&(i, s)| (s.max_seen.unwrap_or(i64::MIN), i))
                .map(|(i, _)| i)
            else {
                continue;
            };
            self.watermark = None;
            // Read a burst from it, until something can be emitted (the watermark only rises).
            let others = (self.sources.iter().enumerate())
                .filter(|&(j, s)| j != i && !s.done)
                .map(|(_, s)| s.max_seen.map_or(i64::MIN, |m| m.saturating_sub(lateness)))
                .min()
                .unwrap_or(i64::MAX);
            let mut taken = 0;
            while taken < STREAM_BURST {
                // The records the source's reader already holds in its current chunk, in a tight
                // loop: every check of the general step below, and the same order.
                let (failure, burst_over) = self.take_in_chunk(i, lateness, others, &mut taken);
                if let Some(e) = failure {
                    return Err(e);
                }
                if burst_over || (taken > 0 && self.can_emit(i, lateness, others)) {
                    break;
                }
                // The general step: one record, reading the next chunk or range when needed.
                let Some(h) = self.source_next_held(i)? else { break };
                taken += 1;
                let Some(mut intake) = self.intake() else { return Ok(None) };
                intake.take_in(h)?;
                if self.can_emit(i, lateness, others) {
                    break;
                }
            }
        }
    }

    /// The streaming merge's intake, borrowed apart from the sources.
    fn intake(&mut self) -> Option<Intake<'_>> {
        let Mode::Streaming(pending) = &mut self.mode else { return None };
        Some(intake!(self, pending))
    }

    /// Whether the burst reading source `i` should stop: something can go out, or another
    /// topic holds the watermark back.
    fn can_emit(&self, i: usize, lateness: i64, others: i64) -> bool {
        let mine = self.sources.get(i).and_then(|s| s.max_seen).map_or(i64::MIN, |m| m.saturating_sub(lateness));
        let Mode::Streaming(pending) = &self.mode else { return true };
        mine > others || pending.min_key().is_some_and(|k| k.0 < mine)
    }

    /// Takes in the records source `i`'s reader holds in its current chunk (see
    /// `Iter::scan_in_chunk`) until the burst is over: `STREAM_BURST` records, or another
    /// topic holding the watermark back. Once something can go out, a record is taken in only
    /// while the held records stay within half the memory budget with it (otherwise it is left
    /// for the next round, after the merge has emitted): reading on costs nothing the budget
    /// minds and saves a round of the merge per record, and a budget the one-record-at-a-time
    /// merge keeps to is never exceeded. Returns a failure and whether the burst is over.
    fn take_in_chunk(&mut self, i: usize, lateness: i64, others: i64, taken: &mut usize) -> (Option<Error>, bool) {
        use crate::log::segment::Taken;
        let (mut failure, mut over) = (None, false);
        let Mode::Streaming(pending) = &mut self.mode else { return (None, true) };
        // Borrows the replay's fields one by one, so the source's reader can be borrowed too.
        let mut intake = intake!(self, pending);
        let Some(src) = self.sources.get_mut(i) else { return (None, true) };
        let Some((it, stop)) = src.iter.as_mut() else { return (None, false) };
        let (stop, rank, dir) = (*stop, src.rank, src.topic.log().dir());
        let (window, max_seen, reading, stats) =
            (&mut src.window, &mut src.max_seen, &mut src.reading, &mut self.stats);
        // The burst starts when nothing can go out (`next_streaming` emits first).
        let mut ready = false;
        // Whether it stopped early is in `failure` and `over`.
        let _ = it.scan_in_chunk(stop, |r| {
            let body = r.payload.len() + r.key.as_ref().map_or(0, Range::len);
            if ready && *intake.held_bytes + ENTRY_OVERHEAD_BYTES + body as u64 > intake.memory_bytes_max / 2 {
                over = true;
                return Taken::Leave;
            }
            if !window.admits(stats, r.timestamp, body) {
                return Taken::Next;
            }
            let key = (r.timestamp, rank, r.offset);
            let Some(h) = intake.chunks.hold(reading, r.chunk, key, r.key.as_ref(), &r.payload) else {
                failure = Some(Error::corruption(dir, 0, Some(key.2), "record outside the bytes read"));
                return Taken::Stop;
            };
            *max_seen = (*max_seen).max(window.read_seen);
            if let Err(e) = intake.take_in(h) {
                failure = Some(e);
                return Taken::Stop;
            }
            *taken += 1;
            let mine = max_seen.map_or(i64::MIN, |m| m.saturating_sub(lateness));
            ready = intake.pending.min_key().is_some_and(|k| k.0 < mine);
            over = *taken >= STREAM_BURST || mine > others;
            if over { Taken::Stop } else { Taken::Next }
        });
        (failure, over)
    }

    /// One step of the live phase without blocking: an event, the end (no live phase), or the
    /// signal generation to wait past.
    fn step_live(&mut self) -> Result<LiveStep> {
        let Some(iters) = &mut self.live else { return Ok(LiveStep::End) };
        if iters.is_empty() {
            *iters = self.topics.iter().zip(&self.ends).map(|(t, &e)| t.iter(e)).collect();
            self.live_cut = self.ends.clone();
            self.live_held = vec![None; self.topics.len()];
        }
        loop {
            // Read the generation before looking, so an append in between still wakes the wait.
            let generation = self.store.inner().signal.generation();
            let iters = self.live.as_mut().map_or(&mut [][..], |v| &mut v[..]);
            let mut found = None;
            for (rank, it) in iters.iter_mut().enumerate() {
                let cut = self.live_cut.get(rank).copied().unwrap_or(0);
                let Some(held) = self.live_held.get_mut(rank) else { continue };
                let r = match held.take() {
                    Some(r) => r,
                    None => match it.next() {
                        Some(r) => r?,
                        None => continue,
                    },
                };
                // Only below the cut: past it, an atomic append may still be half applied.
                if r.offset() < cut {
                    found = Some((rank, r));
                    break;
                }
                *held = Some(r);
            }
            let Some((rank, r)) = found else {
                let cut = self.store.consistent_ends(&self.topics);
                if cut != self.live_cut {
                    self.live_cut = cut;
                    continue;
                }
                return Ok(LiveStep::Wait(generation));
            };
            let key = (r.timestamp(), rank as u16, r.offset());
            let e = Entry { key, record_key: r.key().map(Box::from), payload: r.payload_bytes() };
            if e.key.0 < self.from || e.key.0 >= self.to {
                continue;
            }
            let late = self.last.is_some_and(|l| key.0 < l.0);
            return Ok(LiveStep::Event(self.emit(e, late)));
        }
    }

    fn next_live(&mut self) -> Result<Option<ReplayEvent>> {
        loop {
            match self.step_live()? {
                LiveStep::Event(e) => return Ok(Some(e)),
                LiveStep::End => return Ok(None),
                // Wait for an append to any of the topics: one wake-up for the whole store.
                LiveStep::Wait(generation) => {
                    let signal = self.store.inner().signal.clone();
                    signal.wait_past(generation, Duration::from_secs(1));
                }
            }
        }
    }

    /// Like `Iterator::next`, but returns the generation to wait past instead of blocking in
    /// the live phase (for the async stream).
    #[cfg(feature = "tokio")]
    pub(crate) fn next_or_wait(&mut self) -> Option<std::result::Result<Result<ReplayEvent>, u64>> {
        if self.failed {
            return None;
        }
        let step = match self.next_history() {
            Ok(Some(out)) => {
                let e = self.owned(out);
                return Some(Ok(Ok(self.emit(e, false))));
            }
            Ok(None) => self.step_live(),
            Err(e) => Err(e),
        };
        match step {
            Ok(LiveStep::Event(e)) => Some(Ok(Ok(e))),
            Ok(LiveStep::End) => None,
            Ok(LiveStep::Wait(generation)) => Some(Err(generation)),
            Err(e) => {
                self.failed = true;
                Some(Ok(Err(e)))
            }
        }
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn next_event(&mut self) -> Result<Option<ReplayEvent>> {
        if let Some(out) = self.next_history()? {
            let e = self.owned(out);
            return Ok(Some(self.emit(e, false)));
        }
        self.next_live()
    }
}

/// What the live phase has for the reader right now.
enum LiveStep {
    Event(ReplayEvent),
    End,
    Wait(u64),
}

impl Iterator for Replay {
    type Item = Result<ReplayEvent>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(d) = &self.spill_dir {
            let _ = self.store.inner().opts.log.storage.remove_dir_all(d);
        }
    }
}

/// Directory under the store root for replay run files.
use crate::store::REPLAY_TMP_DIR;

fn encode_run_entry(out: &mut Vec<u8>, e: &Entry) {
    run::encode_run_entry(out, e.key, e.record_key.as_deref(), &e.payload);
}

/// Reads a run file back, entry by entry, with one bounded buffer; checks every entry.
#[derive(Debug)]
struct RunReader {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    pos: u64,
    len: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader {
    fn fill(&mut self, need: usize) -> Result<bool> {
        if self.buf.len() - self.at >= need {
            return Ok(true);
        }
        let rest = self.buf.split_off(self.at);
        let want = need.max(RUN_BUFFER_BYTES).min((self.len - self.pos) as usize + rest.len()) - rest.len();
        let more = self.file.read_vec(self.pos, want).map_err(|e| Error::io("read", &self.path, e))?;
        self.pos += more.len() as u64;
        self.buf = rest;
        self.buf.extend_from_slice(&more);
        self.at = 0;
        Ok(self.buf.len() >= need)
    }

    fn next(&mut self) -> Result<Option<Entry>> {
        if self.at == self.buf.len() && self.pos == self.len {
            return Ok(None);
        }
        let (path, pos) = (self.path.clone(), self.pos);
        let bad = |what: &str| Error::corruption(&path, pos, None, format!("replay run: {what}"));
        if !self.fill(RUN_ENTRY_HEADER_LEN)? {
            return Err(bad("entry header cut short"));
        }
        let Some(h) = self.buf.get(self.at..).and_then(<[u8]>::first_chunk::<RUN_ENTRY_HEADER_LEN>) else {
            return Err(bad("entry header cut short"));
        };
        let head = run::decode_run_entry_header(h).map_err(bad)?;
        let total = head.entry_len();
        if !self.fill(total)? {
            return Err(bad("entry cut short"));
        }
        let Some(body) = self.buf.get(self.at + RUN_ENTRY_HEADER_LEN..self.at + total) else {
            return Err(bad("entry cut short"));
        };
        let (key, payload) = head.check_body(body).map_err(bad)?;
        let record_key = key.map(Box::from);
        let payload = Bytes::from_vec(payload.to_vec()).ok_or_else(|| bad("payload over 4 GiB"))?;
        self.at += total;
        let key = head.key;
        Ok(Some(Entry { key, record_key, payload }))
    }
}
