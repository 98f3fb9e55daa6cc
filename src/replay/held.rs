//! The streaming merge's in-order records, held until the watermark passes them without a
//! reference count per record: each names one of the chunks its topic was read in (a slot), and
//! a chunk is kept (one reference) while a held record or its topic's reader still uses it.
//!
//! Invariants:
//! - A slot's `refs` counts the held records naming it plus one while it is a source's current
//!   chunk; a slot is dropped only at the front, once nothing names it, so a slot number stays
//!   valid for as long as anything holds it.
//! - A held record's ranges lie inside its slot's bytes (checked when it is made).
//! - A dropped slot's buffer is reused for a reader's next chunk only when nothing else owns it
//!   (`SharedBytes::into_unshared_vec`), so bytes a record is lent from are never overwritten.

use crate::replay::{ENTRY_OVERHEAD_BYTES, Entry, Key};
use crate::storage::{Bytes, SharedBytes};
use std::collections::VecDeque;
use std::ops::Range;

/// The chunks held records point into, by slot number (`base` is the front's).
#[derive(Debug, Default)]
pub(super) struct Chunks {
    slots: VecDeque<Slot>,
    base: u64,
    /// The buffer of a chunk dropped from the front, for a reader's next chunk.
    spare: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Slot {
    bytes: SharedBytes,
    refs: u32,
}

/// An in-order record waiting for the watermark: its sort key and where its payload (and key)
/// are in its slot's chunk. 48 bytes, no reference count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub key: Key,
    slot: u64,
    payload: (u32, u32),
    /// `None` for a record without a key.
    record_key: Option<(u32, u32)>,
}

/// Where a source reads now: its current chunk's slot, pinned while it reads there.
#[derive(Debug, Default)]
pub(super) struct Reading {
    slot: Option<u64>,
}

fn narrow(r: &Range<usize>) -> Option<(u32, u32)> {
    Some((u32::try_from(r.start).ok()?, u32::try_from(r.end).ok()?))
}

fn widen((start, end): (u32, u32)) -> Range<usize> {
    start as usize..end as usize
}

impl Chunks {
    #[inline]
    fn slot(&self, n: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(n.checked_sub(self.base)?).ok()?)
    }

    #[inline]
    fn slot_mut(&mut self, n: u64) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(n.checked_sub(self.base)?).ok()?)
    }

    /// Holds a record read at `payload` (and `key`) in `chunk` by a source reading at `at`;
    /// `None` when the ranges are not inside the chunk (never expected: they were decoded from
    /// it). Inlined: called once per record, and its answer returned through memory stalls.
    #[inline(always)]
    pub fn hold(
        &mut self,
        at: &mut Reading,
        chunk: &SharedBytes,
        key: Key,
        record_key: Option<&Range<usize>>,
        payload: &Range<usize>,
    ) -> Option<Held> {
        let inside = |r: &Range<usize>| r.start <= r.end && r.end <= chunk.len();
        if !inside(payload) || !record_key.is_none_or(inside) {
            return None;
        }
        let current = at.slot.filter(|&n| self.slot(n).is_some_and(|s| s.bytes.same(chunk)));
        let slot = match current {
            Some(n) => n,
            None => {
                // A new chunk: the source lets go of its old one and pins this one.
                if let Some(old) = at.slot.take() {
                    self.release(old);
                }
                let n = self.base + self.slots.len() as u64;
                self.slots.push_back(Slot { bytes: chunk.clone(), refs: 1 });
                at.slot = Some(n);
                n
            }
        };
        let record_key = match record_key {
            Some(r) => Some(narrow(r)?),
            None => None,
        };
        let held = Held { key, slot, payload: narrow(payload)?, record_key };
        self.slot_mut(slot)?.refs += 1;
        Some(held)
    }

    /// The source reads no more: its current chunk is unpinned.
    #[inline]
    pub fn stop_reading(&mut self, at: &mut Reading) {
        if let Some(n) = at.slot.take() {
            self.release(n);
        }
    }

    /// The payload and key of a held record, borrowed from its chunk.
    #[inline]
    pub fn get(&self, h: &Held) -> (&[u8], Option<&[u8]>) {
        let Some(s) = self.slot(h.slot) else { return (&[], None) };
        let payload = s.bytes.get(widen(h.payload)).unwrap_or_default();
        let key = h.record_key.and_then(|k| s.bytes.get(widen(k)));
        (payload, key)
    }

    /// The bytes a held record is counted for against the memory budget.
    #[inline]
    pub fn bytes_of(h: &Held) -> u64 {
        let len = |(start, end): (u32, u32)| u64::from(end - start);
        ENTRY_OVERHEAD_BYTES + len(h.payload) + h.record_key.map_or(0, len)
    }

    /// The record as an owned entry: its payload a reference into the chunk (`copy` false) or a
    /// copy (`copy` true: for a record that may be held long after its neighbours, so that it
    /// does not keep their chunk alive). Lets go of the record's hold.
    #[inline]
    pub fn take(&mut self, h: Held, copy: bool) -> Entry {
        let payload = match self.slot(h.slot) {
            Some(s) if copy => s.bytes.get(widen(h.payload)).and_then(|p| Bytes::from_vec(p.to_vec())),
            Some(s) => s.bytes.slice(widen(h.payload)),
            None => None,
        };
        let record_key = self.get(&h).1.map(Box::from);
        self.release(h.slot);
        Entry { key: h.key, record_key, payload: payload.unwrap_or_else(Bytes::empty) }
    }

    /// Lets go of a held record (handed out or skipped).
    #[inline]
    pub fn release_held(&mut self, h: Held) {
        self.release(h.slot);
    }

    /// Lets go of one hold on slot `n`; drops the slots at the front that nothing holds.
    #[inline]
    fn release(&mut self, n: u64) {
        if let Some(s) = self.slot_mut(n) {
            s.refs = s.refs.saturating_sub(1);
        }
        while self.slots.front().is_some_and(|s| s.refs == 0) {
            if let Some(slot) = self.slots.pop_front()
                && self.spare.is_none()
            {
                self.spare = slot.bytes.into_unshared_vec();
            }
            self.base += 1;
        }
    }

    /// The buffer of a dropped chunk nothing else owns, if one is kept: a reader reads its next
    /// chunk into it.
    #[inline]
    pub fn take_spare(&mut self) -> Option<Vec<u8>> {
        self.spare.take()
    }

    /// Chunks kept now (for tests).
    #[cfg(test)]
    #[inline]
    pub fn kept(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline]
    fn chunk(n: usize) -> SharedBytes {
        SharedBytes::from_vec((0..n).map(|i| i as u8).collect())
    }

    #[test]
    #[inline]
    fn a_chunk_is_kept_while_a_held_record_or_its_reader_uses_it_and_dropped_after() {
        let mut chunks = Chunks::default();
        let mut at = Reading::default();
        let (a, b) = (chunk(64), chunk(64));
        let h1 = chunks.hold(&mut at, &a, (1, 0, 0), None, &(0..4)).expect("inside");
        let h2 = chunks.hold(&mut at, &a, (2, 0, 1), Some(&(4..6)), &(6..10)).expect("inside");
        assert_eq!(chunks.kept(), 1, "one slot for both records of one chunk");
        assert_eq!(chunks.get(&h2), (&[6u8, 7, 8, 9][..], Some(&[4u8, 5][..])));
        let h3 = chunks.hold(&mut at, &b, (3, 0, 2), None, &(0..2)).expect("inside");
        assert_eq!(chunks.kept(), 2);
        chunks.release(h1.slot);
        assert_eq!(chunks.kept(), 2, "h2 still holds the first chunk");
        let e = chunks.take(h2, false);
        assert_eq!((&*e.payload, e.record_key.as_deref()), (&[6u8, 7, 8, 9][..], Some(&[4u8, 5][..])));
        assert_eq!(chunks.kept(), 1, "the first chunk went once nothing held it");
        chunks.release(h3.slot);
        assert_eq!(chunks.kept(), 1, "the reader still reads in the second chunk");
        chunks.stop_reading(&mut at);
        assert_eq!(chunks.kept(), 0);
        assert!(chunks.hold(&mut at, &a, (4, 0, 3), None, &(60..65)).is_none(), "a range past the chunk");
    }
}
