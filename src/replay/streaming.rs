//! The streaming path: topics read in offset order and merged behind a watermark (the
//! smallest over topics of the largest timestamp seen minus the declared lateness); records
//! held in the chunks they were read in until the watermark passes them.

use super::*;

/// Records the streaming merge reads from one topic before looking at the watermark again.
pub(super) const STREAM_BURST: usize = 256;

/// Streaming path's waiting records: the in-order ones (most of them) in a queue, O(1) each,
/// held in the chunks they were read in; the few that arrive out of order in a heap, copied.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) in_order: std::collections::VecDeque<Held>,
    pub(super) late: BinaryHeap<Reverse<Entry>>,
}

/// What the history hands out next: an entry, or a record still held in its chunk.
pub(super) enum Out {
    Entry(Entry),
    Held(Held),
}

impl Pending {
    #[inline]
    pub(super) fn push(&mut self, h: Held, chunks: &mut Chunks) {
        if self.in_order.back().is_none_or(|b| b.key <= h.key) {
            self.in_order.push_back(h);
        } else {
            // Held until the watermark passes it, maybe long after its neighbours: a copy, so it
            // does not keep the chunk it came in alive.
            self.late.push(Reverse(chunks.take(h, true)));
        }
    }
    #[inline]
    pub(super) fn min_key(&self) -> Option<Key> {
        match (self.in_order.front(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.key.min(b.key)),
            (Some(a), None) => Some(a.key),
            (None, Some(Reverse(b))) => Some(b.key),
            (None, None) => None,
        }
    }
    /// The record with the smallest key and the bytes it was counted for.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<(Out, u64)> {
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
pub(super) struct Intake<'a> {
    pub(super) chunks: &'a mut Chunks,
    pub(super) pending: &'a mut Pending,
    pub(super) held_bytes: &'a mut u64,
    pub(super) memory_bytes_max: u64,
    pub(super) last: Option<Key>,
    pub(super) resume_after: Option<Key>,
    pub(super) names: &'a [Arc<str>],
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
    pub(super) fn take_in(&mut self, h: Held) -> Result<()> {
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

impl Replay {
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
    #[inline]
    pub(super) fn drain_ready(
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
    #[inline]
    pub(super) fn held_ref<'a>(&'a self, h: &Held) -> ReplayEventRef<'a> {
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

    /// Streaming path: emit below the watermark, reading the topic that holds it back.
    pub(super) fn next_streaming(&mut self) -> Result<Option<Out>> {
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
    #[inline]
    pub(super) fn intake(&mut self) -> Option<Intake<'_>> {
        let Mode::Streaming(pending) = &mut self.mode else { return None };
        Some(intake!(self, pending))
    }

    /// Whether the burst reading source `i` should stop: something can go out, or another
    /// topic holds the watermark back.
    #[inline]
    pub(super) fn can_emit(&self, i: usize, lateness: i64, others: i64) -> bool {
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
    #[inline]
    pub(super) fn take_in_chunk(
        &mut self,
        i: usize,
        lateness: i64,
        others: i64,
        taken: &mut usize,
    ) -> (Option<Error>, bool) {
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
}
