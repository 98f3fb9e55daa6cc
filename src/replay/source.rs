//! A replay's source: one topic read in offset order within the time window, skipping
//! segments the time index rules out.

use super::*;

/// Payload bytes a source copies out of the log per batch. Records are copied into a private
/// buffer rather than held as references into the mapped segments: a scan releases the pages
/// behind its cursor, and a replay that touched them again later (sorting, spilling, emitting
/// from the lateness window) would map the whole log back into its resident set.
pub(super) const COPY_BATCH_BYTES: usize = 1 << 20;

/// A record read into a copy batch: its payload is `range` of the batch's buffer.
pub(super) struct Copied {
    pub(super) key: Key,
    pub(super) record_key: Option<Box<[u8]>>,
    pub(super) range: Range<usize>,
    /// The source's `max_seen` as of reading it.
    pub(super) seen: Option<i64>,
}

/// A topic's records in `[from, to)` below its history end, in offset order, skipping segments
/// whose time range misses the interval.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) rank: u16,
    /// Offset ranges still to read.
    pub(super) ranges: Vec<(u64, u64)>,
    pub(super) iter: Option<(Iter, u64)>,
    pub(super) topic: Arc<Topic>,
    pub(super) window: Window,
    /// Largest timestamp of the records handed out so far, and of those skipped (outside
    /// `[from, to)`) before them: the streaming watermark, which must not run ahead of what
    /// the merge has seen.
    pub(super) max_seen: Option<i64>,
    /// Records read and copied (exact path), not handed out yet, each with `max_seen` as of
    /// reading it.
    pub(super) ready: std::collections::VecDeque<(Entry, Option<i64>)>,
    /// Every range was read; `done` once `ready` is empty too.
    pub(super) exhausted: bool,
    pub(super) done: bool,
    /// Streaming: the chunk the source reads in now. (The exact path, which holds records long
    /// while it sorts and spills, copies payloads out of the log instead: `next`.)
    pub(super) reading: Reading,
}

impl Source {
    pub(super) fn new(
        topic: Arc<Topic>,
        rank: u16,
        end: u64,
        range: (i64, i64),
        stats: &mut ReplayStats,
    ) -> Result<Self> {
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
    pub(super) fn next(&mut self, stats: &mut ReplayStats) -> Result<Option<Entry>> {
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
    pub(super) fn read_batch(&mut self, stats: &mut ReplayStats) -> Result<()> {
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
    pub(super) fn next_held(&mut self, stats: &mut ReplayStats, chunks: &mut Chunks) -> Result<Option<Held>> {
        let h = self.read_held(stats, chunks)?;
        self.max_seen = self.max_seen.max(self.window.read_seen);
        if h.is_none() {
            self.done = true;
            chunks.stop_reading(&mut self.reading);
        }
        Ok(h)
    }

    pub(super) fn read_held(&mut self, stats: &mut ReplayStats, chunks: &mut Chunks) -> Result<Option<Held>> {
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
pub(super) fn current_iter<'a>(
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
pub(super) struct Window {
    pub(super) from: i64,
    pub(super) to: i64,
    /// Largest timestamp read so far (skipped records included).
    pub(super) read_seen: Option<i64>,
}

impl Window {
    /// Counts a record read (`body` bytes of key and payload) and notes its timestamp; whether
    /// it lies in `[from, to)`.
    #[inline]
    pub(super) fn admits(&mut self, stats: &mut ReplayStats, ts: i64, body: usize) -> bool {
        stats.records_read += 1;
        stats.bytes_read += (crate::format::FRAME_HEADER_LEN + body) as u64;
        self.read_seen = Some(self.read_seen.map_or(ts, |m| m.max(ts)));
        ts >= self.from && ts < self.to
    }
}

impl Replay {
    /// The next entry of source `i` (none past the last source).
    #[inline]
    pub(super) fn source_next(&mut self, i: usize) -> Result<Option<Entry>> {
        match self.sources.get_mut(i) {
            Some(s) => s.next(&mut self.stats),
            None => Ok(None),
        }
    }

    /// Streaming: the next record of source `i`, held in its chunk (none past the last source).
    #[inline]
    pub(super) fn source_next_held(&mut self, i: usize) -> Result<Option<Held>> {
        match self.sources.get_mut(i) {
            Some(s) => s.next_held(&mut self.stats, &mut self.chunks),
            None => Ok(None),
        }
    }
}
