//! Reading: a cursor positioned on an offset (`locate`), one record (`Log::read`), iteration
//! (`Iter`, `Log::scan`) and lookups by time (`Log::offset_for_timestamp`).
//!
//! Invariants:
//! - Readers of the active (last) segment in another process read it with `pread` (the
//!   writer's recovery may truncate its tail); in the writing process they read its published
//!   part from a map. Sealed segments are mapped for random access only; scans `pread` them.
//! - A cursor over a compacted sealed segment (header flag) accepts gaps between offsets; no
//!   other cursor does.
//! - A record whose checksum fails is an error, never handed out.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::log::cache::{CacheLimits, Sealed};
use crate::log::publish::Active;
use crate::log::record::{Record, RecordRef};
use crate::log::segment::{self, FrameCursor, RawStep, Step};
use crate::log::{Shared, consecutive, lock};
use std::sync::Arc;

impl Shared {
    pub fn sealed(&self, base: u64, end_offset: u64) -> Result<Arc<Sealed>> {
        lock(&self.cache).get(
            self.opts.storage.as_ref(),
            &self.dir,
            base,
            end_offset,
            CacheLimits { segments: self.opts.open_segments_max, bytes: self.opts.mapped_bytes_max },
            !self.read_only,
        )
    }

    /// Positions a cursor on `offset`, or `None` if it is not published. In a sealed segment,
    /// `Access::Scan` reads on with `pread`, `Access::Random` from the segment's map.
    fn locate(&self, offset: u64, access: Access) -> Result<Option<Cur>> {
        let (base, next_base, active, end, visible) = {
            let v = self.published.view();
            let (visible, active_end) = self.published.visible();
            let first = v.bases.first().copied().unwrap_or(0);
            if offset < first || offset >= visible {
                return Ok(None);
            }
            // `first <= offset`, so at least one base is <= offset.
            let i = v.bases.partition_point(|&b| b <= offset).saturating_sub(1);
            let base = v.bases.get(i).copied().unwrap_or(first);
            match v.bases.get(i + 1) {
                None => (base, None, Some(v.active.clone()), active_end, visible),
                Some(&end) => (base, Some(end), None, 0, visible),
            }
        };
        let rel = offset - base;
        let mut cur = match (next_base, active) {
            (Some(end_offset), _) => {
                let s = self.sealed(base, end_offset)?;
                let (r, pos) = s.index.as_ref().lookup(rel).unwrap_or((0, SEGMENT_HEADER_LEN as u64));
                let cursor = match access {
                    Access::Random => s.cursor(pos),
                    Access::Scan => s.scan_cursor(pos, self.opts.read_buffer_bytes),
                };
                Cur { end_offset: Some(end_offset), active: None, cursor, next: base + r, readable: end_offset }
            }
            (None, Some(a)) => {
                let (r, pos) = lock(&a.index).as_ref().lookup(rel).unwrap_or((0, SEGMENT_HEADER_LEN as u64));
                let cursor = a.cursor(pos, end, self.opts.read_buffer_bytes);
                Cur { end_offset: None, active: Some(a), cursor, next: base + r, readable: visible }
            }
            (None, None) => return Ok(None),
        };
        cur.skip_to(offset)?;
        Ok(Some(cur))
    }

    /// Steps `cur` until it yields `offset`.
    fn read_in(&self, cur: &mut Cur) -> Result<Option<Record>> {
        match cur.cursor.step(Some(cur.next))? {
            Step::Frame { frame, bytes, .. } => {
                cur.next = frame.offset + 1;
                Ok(Some(Record::from_frame(bytes, &frame)))
            }
            Step::End => Ok(None),
            Step::Bad { position, error } => Err(cur.corruption(position, error)),
        }
    }

    pub(crate) fn time_range(&self, base: u64, end_offset: u64) -> Result<Option<(i64, i64)>> {
        if let Some(r) = lock(&self.time_ranges).get(&base) {
            return Ok(*r);
        }
        let r = self.sealed(base, end_offset)?.index.as_ref().time_range();
        lock(&self.time_ranges).insert(base, r);
        Ok(r)
    }

    /// The first record at or after `ts` in a segment, scanning from the first granule whose
    /// largest timestamp reaches `ts`.
    fn first_at_or_after(&self, mut cursor: FrameCursor, mut next: u64, ts: i64) -> Result<Option<u64>> {
        loop {
            match cursor.step(Some(next))? {
                Step::Frame { frame, .. } => {
                    if frame.timestamp >= ts {
                        return Ok(Some(frame.offset));
                    }
                    next = frame.offset + 1;
                }
                Step::End => return Ok(None),
                Step::Bad { position, error } => {
                    return Err(Error::corruption(&cursor.path, position, Some(next), error.to_string()));
                }
            }
        }
    }

    /// The earliest offset whose timestamp is >= `ts` (see `Log::offset_for_timestamp`).
    pub(crate) fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        if self.read_only {
            self.refresh()?;
        }
        let (bases, active, end) = {
            let v = self.published.view();
            (v.bases.clone(), v.active.clone(), self.published.visible().1)
        };
        for (base, end_offset) in consecutive(&bases) {
            if self.time_range(base, end_offset)?.is_none_or(|(_, max)| max < ts) {
                continue;
            }
            let sealed = self.sealed(base, end_offset)?;
            let Some((rel, pos)) = sealed.index.as_ref().first_granule_reaching(ts) else { continue };
            let cursor = sealed.cursor(pos);
            if let Some(o) = self.first_at_or_after(cursor, base + rel, ts)? {
                return Ok(Some(o));
            }
        }
        let Some((rel, pos)) = active.granule_reaching(ts) else { return Ok(None) };
        let cursor = active.cursor(pos, end, self.opts.read_buffer_bytes);
        self.first_at_or_after(cursor, active.base + rel, ts)
    }

    /// The record at `offset`, if published and not compacted away.
    pub(crate) fn read(&self, offset: u64) -> Result<Option<Record>> {
        match self.locate(offset, Access::Random)? {
            // In a compacted segment the record may be gone: the cursor then holds a later one.
            Some(mut cur) => Ok(self.read_in(&mut cur)?.filter(|r| r.offset() == offset)),
            None => Ok(None),
        }
    }
}

impl Cur {
    /// Steps from the granule start the index gave to `offset` (or the segment's end).
    /// In a compacted segment `offset` may be gone: the cursor then stays on the first record
    /// after it, and `next` says `offset` (every offset below it has been passed).
    fn skip_to(&mut self, offset: u64) -> Result<()> {
        while self.next < offset {
            match self.cursor.step(Some(self.next))? {
                Step::Frame { position, frame, .. } if frame.offset >= offset => {
                    self.cursor.rewind_to(position);
                    self.next = offset;
                }
                Step::Frame { frame, .. } => self.next = frame.offset + 1,
                Step::End => break,
                Step::Bad { position, error } => return Err(self.corruption(position, error)),
            }
        }
        Ok(())
    }

    /// The error for bad bytes at `position`, where offset `self.next` was expected.
    fn corruption(&self, position: u64, error: crate::format::FrameError) -> Error {
        Error::corruption(&self.cursor.path, position, Some(self.next), error.to_string())
    }
}

/// Where an iterator or a read stands in one segment.
/// How a cursor will be used: decides how it reads a sealed segment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// A read of one record (`Log::read`): from the segment's map, no system call.
    Random,
    /// A sequential scan (`Iter`, `Log::scan`): with `pread` into a reused buffer.
    Scan,
}

#[derive(Debug)]
pub(crate) struct Cur {
    /// `None` while the segment is the active one.
    end_offset: Option<u64>,
    active: Option<Arc<Active>>,
    cursor: FrameCursor,
    /// Offset of the frame at the cursor's position.
    next: u64,
    /// Every offset below this is readable through the cursor as it is now (the segment's end
    /// for a sealed one, the published end when the cursor's end was last set otherwise).
    readable: u64,
}

/// Iterator over records from an offset; see [`Log::iter`].
#[derive(Debug)]
pub struct Iter {
    shared: Arc<Shared>,
    next: u64,
    cur: Option<Cur>,
    failed: bool,
}

impl Iter {
    pub(crate) fn new(shared: Arc<Shared>, from_offset: u64) -> Self {
        Iter { shared, next: from_offset, cur: None, failed: false }
    }

    /// The offset the next record will have.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    #[inline]
    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let bytes = c.cursor.frame_bytes(rel, frame.len).ok_or_else(|| c.cursor.outside(c.cursor.position(), frame))?;
        Ok(Some(Record::from_frame(bytes, frame)))
    }

    /// The next record, borrowed from the bytes the iterator holds: no allocation and no
    /// reference count (what [`Log::scan`] uses). It lives until the next call.
    #[inline]
    pub fn next_ref(&mut self) -> Result<Option<RecordRef<'_>>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let bytes = c.cursor.frame_slice(rel, frame.len).ok_or_else(|| c.cursor.outside(c.cursor.position(), frame))?;
        Ok(Some(RecordRef::from_frame(bytes, frame)))
    }

    /// Hands `f` the records below `stop` that the current cursor already holds, each as
    /// `next_in_chunk` would, in a tight loop (see `FrameCursor::scan_frames`: `f` says whether
    /// it took each and whether to go on); returns whether `f` stopped the loop. Hands nothing
    /// when there is no such record: `next_in_chunk` then reads on.
    #[cfg(feature = "store")]
    #[inline]
    pub(crate) fn scan_in_chunk(&mut self, stop: u64, mut f: impl FnMut(InChunk<'_>) -> segment::Taken) -> bool {
        self.scan_cursor(stop, |chunk, rel, _, frame| {
            let shift = |r: &std::ops::Range<usize>| rel + r.start..rel + r.end;
            f(InChunk {
                offset: frame.offset,
                timestamp: frame.timestamp,
                chunk,
                key: frame.key.as_ref().map(shift),
                payload: shift(&frame.payload),
            })
        })
    }

    /// The fast path of `scan_chunk` and `scan_in_chunk`: the current cursor's frames below
    /// `stop` and what is known readable, through `FrameCursor::scan_frames`, keeping the
    /// iterator's position with the cursor's; whether `f` stopped the loop. Nothing when the
    /// cursor is not where the iterator is (the general step moves it).
    #[inline]
    fn scan_cursor(
        &mut self,
        stop: u64,
        f: impl FnMut(&crate::storage::SharedBytes, usize, &[u8], &crate::format::DecodedFrame) -> segment::Taken,
    ) -> bool {
        let Some(c) = &mut self.cur else { return false };
        if c.next != self.next {
            return false;
        }
        let (next, stopped) = c.cursor.scan_frames(self.next, c.readable.min(stop), f);
        self.next = next;
        c.next = next;
        stopped
    }

    /// The next record's offset and timestamp, the chunk of bytes the iterator read it in, and
    /// where its key and payload are in that chunk: for a reader that holds records without a
    /// reference count each (the streaming replay keeps one per chunk).
    #[cfg(feature = "store")]
    pub(crate) fn next_in_chunk(&mut self) -> Result<Option<InChunk<'_>>> {
        let Some(rel) = self.advance()? else { return Ok(None) };
        let Some(c) = &self.cur else { return Ok(None) };
        let frame = &c.cursor.last;
        let shift = |r: &std::ops::Range<usize>| rel + r.start..rel + r.end;
        Ok(Some(InChunk {
            offset: frame.offset,
            timestamp: frame.timestamp,
            chunk: c.cursor.chunk(),
            key: frame.key.as_ref().map(shift),
            payload: shift(&frame.payload),
        }))
    }

    /// Offers a spare buffer to the current cursor (see `FrameCursor::offer_buffer`).
    #[cfg(feature = "store")]
    pub(crate) fn offer_buffer(&mut self, buf: Vec<u8>) {
        if let Some(c) = &mut self.cur {
            c.cursor.offer_buffer(buf);
        }
    }

    /// Hands `f` the records the current cursor already holds below what is known readable
    /// (see `FrameCursor::scan_chunk`); the fast path of `Log::scan`.
    pub(crate) fn scan_chunk(
        &mut self,
        f: &mut impl FnMut(RecordRef<'_>) -> std::ops::ControlFlow<()>,
    ) -> std::ops::ControlFlow<()> {
        let stopped = self.scan_cursor(u64::MAX, |_, _, bytes, frame| {
            if f(RecordRef::from_frame(bytes, frame)).is_break() { segment::Taken::Stop } else { segment::Taken::Next }
        });
        if stopped { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
    }

    /// Moves to the next record; returns where its bytes are in the current cursor's chunk
    /// (its decoded frame is the cursor's `last`).
    ///
    /// Inlined (the slow path is not): a reader calls it once per record, and its answer
    /// returned through memory costs a stalled load per record.
    #[inline]
    fn advance(&mut self) -> Result<Option<usize>> {
        // Fast path: below what the cursor already knows to be readable (a sealed segment's end,
        // or the published end last seen), no look at the shared view is needed.
        if let Some(c) = &mut self.cur
            && self.next < c.readable
            && c.next == self.next
        {
            match c.cursor.step_raw(Some(self.next))? {
                RawStep::Frame { rel, .. } => {
                    // `+ 1` of the expected offset, except past a compacted segment's gap.
                    self.next = c.cursor.last.offset + 1;
                    c.next = self.next;
                    return Ok(Some(rel));
                }
                RawStep::End | RawStep::Bad { .. } => {} // handled (and reported) by the slow path
            }
        }
        self.advance_slow()
    }

    /// `advance` past what the cursor knows: a new chunk's end, a new segment, a refresh, an
    /// error to report.
    #[inline(never)]
    fn advance_slow(&mut self) -> Result<Option<usize>> {
        // A few tries cover races with rolls and refreshes; stepping over a compacted segment
        // that lost all its records is progress, not a try.
        let mut tries = 0;
        while tries < 4 {
            tries += 1;
            let (first, visible, active_base, active_end) = {
                let v = self.shared.published.view();
                let (visible, active_end) = self.shared.published.visible();
                (v.bases.first().copied().unwrap_or(0), visible, v.active.base, active_end)
            };
            if self.next < first {
                self.next = first;
                self.cur = None;
            }
            if self.next >= visible {
                if self.shared.read_only && self.shared.refresh()? {
                    continue;
                }
                return Ok(None);
            }
            // A cursor on what was the active segment is dropped once that segment is sealed:
            // the sealed one is mapped instead.
            if let Some(c) = &mut self.cur {
                let stale = c.next != self.next
                    || match &c.active {
                        Some(a) => a.base != active_base,
                        None => c.end_offset.is_some_and(|e| self.next >= e),
                    };
                if stale {
                    self.cur = None;
                } else if c.active.is_some() {
                    c.cursor.set_end(active_end);
                    c.readable = visible;
                }
            }
            if self.cur.is_none() {
                self.cur = self.shared.locate(self.next, Access::Scan)?;
            }
            let Some(c) = &mut self.cur else { continue };
            match c.cursor.step_raw(Some(self.next))? {
                RawStep::Frame { rel, .. } => {
                    self.next = c.cursor.last.offset + 1;
                    c.next = self.next;
                    return Ok(Some(rel));
                }
                RawStep::End => {
                    if let Some(end) = c.end_offset
                        && self.next < end
                        && c.cursor.gaps()
                    {
                        // A compacted segment whose last records were dropped.
                        self.next = end;
                        tries = 0;
                    } else if let Some(end) = c.end_offset
                        && self.next < end
                    {
                        let reason = format!("sealed segment ends before offset {end}, where the next one starts");
                        return Err(Error::corruption(&c.cursor.path, c.cursor.position(), Some(self.next), reason));
                    }
                    self.cur = None;
                }
                RawStep::Bad { position, error } => {
                    return Err(c.corruption(position, error));
                }
            }
        }
        Ok(None)
    }
}

/// A record as `Iter::next_in_chunk` gives it: where it lies in the chunk it was read in.
#[cfg(feature = "store")]
pub(crate) struct InChunk<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub chunk: &'a crate::storage::SharedBytes,
    pub key: Option<std::ops::Range<usize>>,
    pub payload: std::ops::Range<usize>,
}

impl Iterator for Iter {
    type Item = Result<Record>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
