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

mod builder;
mod exact;
mod held;
mod live;
mod progress;
mod source;
mod streaming;
pub(crate) mod window;

use crate::error::{Error, ReplayError, Result};
use crate::format::run::{self, RUN_ENTRY_HEADER_LEN};
use crate::format::state::ReplayProgress;
use crate::log::Iter;
use crate::storage::{Bytes, OpenMode, SharedBytes, StorageFile};
use crate::store::{Store, Topic, validate_name};
pub use builder::ReplayBuilder;
use exact::RunReader;
use held::{Chunks, Held, Reading};
use source::Source;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streaming::{Out, Pending};
pub use window::{Summary, Window, WindowSpec, Windows};

/// Default memory budget of a replay.
pub const REPLAY_MEMORY_BYTES_DEFAULT: u64 = 64 << 20;

/// Bytes counted per buffered record besides its key and payload.
const ENTRY_OVERHEAD_BYTES: u64 = 64;

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
        progress::save(&self.store.inner().state, name, &p)
    }

    #[inline]
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

    /// What the history hands out, as an owned entry.
    #[inline]
    fn owned(&mut self, out: Out) -> Entry {
        match out {
            Out::Entry(e) => e,
            Out::Held(h) => self.chunks.take(h, false),
        }
    }

    /// A history entry as lent by `scan_events`.
    #[inline]
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
    #[inline]
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
    #[inline]
    fn topic_name(&self, index: u16) -> Arc<str> {
        self.names.get(usize::from(index)).cloned().unwrap_or_else(|| Arc::from("?"))
    }

    #[inline]
    fn already_emitted(&self, key: Key) -> bool {
        self.resume_after.is_some_and(|r| key <= r)
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    #[inline]
    fn next_event(&mut self) -> Result<Option<ReplayEvent>> {
        if let Some(out) = self.next_history()? {
            let e = self.owned(out);
            return Ok(Some(self.emit(e, false)));
        }
        self.next_live()
    }
}

impl Iterator for Replay {
    type Item = Result<ReplayEvent>;
    #[inline]
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
