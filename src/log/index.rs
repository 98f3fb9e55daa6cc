//! Sparse offset and time indexes of one segment. Caches: always rebuildable from the segment.
//!
//! A segment's frames are cut into granules: a granule starts at the first frame and at the
//! first frame after `index_interval_bytes` of frames. The offset index holds, per granule, the
//! relative offset and byte position of its first frame; the time index holds the same plus the
//! largest and smallest timestamp in the granule, so a lookup by time is exact even when
//! timestamps are not monotonic (the first granule whose maximum reaches `ts` holds the first
//! record at or after `ts`).
//!
//! Invariants:
//! - Entries are strictly increasing in both relative offset and position; the first entry is
//!   relative offset 0 at the segment header's end. A loaded file that breaks this is rejected.
//! - Index files are written whole to a temporary name and renamed into place, never changed in
//!   place, so a map of one stays valid. They are not fsynced: a lost or torn one fails its
//!   checksum or its `covered_bytes` check, and is rebuilt by scanning the segment.

// Lengths and positions read from disk are never narrowed with `as`: `try_from` or a checked
// helper, so an impossible value is an error, not a silently wrapped number.
#![deny(clippy::cast_possible_truncation)]

use crate::format::{
    self, IndexHeader, OFFSET_ENTRY_LEN, OFFSET_INDEX_MAGIC, SEGMENT_HEADER_LEN, TIME_ENTRY_LEN, TIME_ENTRY_MAX_TS_AT,
    TIME_ENTRY_MIN_TS_AT, TIME_INDEX_MAGIC, TimeEntry,
};
use crate::storage::{OpenMode, SharedBytes, Storage};
use std::path::Path;

/// Read access to a segment's index entries, however they are held.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexRef<'a> {
    pub offsets: &'a [u8],
    pub times: &'a [u8],
}

impl IndexRef<'_> {
    pub fn len(&self) -> usize {
        self.offsets.len() / OFFSET_ENTRY_LEN
    }

    /// The granule start at or before `rel_offset`: `(relative offset, position)`.
    pub fn lookup(&self, rel_offset: u64) -> Option<(u64, u64)> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        // Binary search for the last entry whose relative offset <= rel_offset.
        let (mut lo, mut hi) = (0usize, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if u64::from(format::offset_entry(self.offsets, mid).0) <= rel_offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (r, p) = format::offset_entry(self.offsets, lo);
        (u64::from(r) <= rel_offset).then_some((u64::from(r), u64::from(p)))
    }

    /// The first granule whose largest timestamp is >= `ts`: `(relative offset, position)`.
    pub fn first_granule_reaching(&self, ts: i64) -> Option<(u64, u64)> {
        (0..self.times.len() / TIME_ENTRY_LEN)
            .map(|i| format::time_entry(self.times, i))
            .find(|e| e.max_ts >= ts)
            .map(|e| (u64::from(e.rel_offset), u64::from(e.position)))
    }

    /// The last granule's start: `(relative offset, position)`.
    pub fn last_granule(&self) -> Option<(u64, u64)> {
        let n = self.times.len() / TIME_ENTRY_LEN;
        let e = format::time_entry(self.times, n.checked_sub(1)?);
        Some((u64::from(e.rel_offset), u64::from(e.position)))
    }

    /// Smallest and largest timestamp over all granules.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (0..self.times.len() / TIME_ENTRY_LEN).map(|i| format::time_entry(self.times, i)).fold(None, |acc, e| match acc
        {
            None => Some((e.min_ts, e.max_ts)),
            Some((lo, hi)) => Some((lo.min(e.min_ts), hi.max(e.max_ts))),
        })
    }
}

/// Builds the index of the active segment frame by frame, in the encoded form it is stored in.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    base_offset: u64,
    interval_bytes: u64,
    offsets: Vec<u8>,
    /// One entry per granule; the last one is the open granule and is updated in place.
    times: Vec<u8>,
    granule_bytes: u64,
    record_count: u64,
    covered_bytes: u64,
    /// The active segment's keyed records, once a key was looked up (`keys.rs`).
    pub keys: Option<crate::log::keymap::KeyMap>,
}

impl IndexBuilder {
    /// The segment's base offset.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// The header its files would have, with `entries` entries.
    pub fn header_with_entries(&self, entries: u32) -> IndexHeader {
        IndexHeader {
            base_offset: self.base_offset,
            covered_bytes: self.covered_bytes,
            record_count: self.record_count,
            entry_count: entries,
        }
    }

    /// Notes a keyed record in the key map, if one is kept.
    pub fn note_key(&mut self, key: Option<&[u8]>, rel_offset: u64, position: u64) {
        if let (Some(map), Some(k)) = (&mut self.keys, key) {
            let (rel, pos) = (format::checked_u32_from_u64(rel_offset), format::checked_u32_from_u64(position));
            map.note(k, self.base_offset, rel, pos);
        }
    }
    pub fn new(base_offset: u64, interval_bytes: u64) -> Self {
        IndexBuilder {
            base_offset,
            interval_bytes,
            offsets: Vec::new(),
            times: Vec::new(),
            granule_bytes: 0,
            record_count: 0,
            covered_bytes: SEGMENT_HEADER_LEN as u64,
            keys: None,
        }
    }

    pub fn as_ref(&self) -> IndexRef<'_> {
        IndexRef { offsets: &self.offsets, times: &self.times }
    }

    /// Adds the frame at `position` (relative offset `rel_offset`, `len` bytes, timestamp `ts`).
    /// Frames must come in order; the caller guarantees positions fit in 32 bits
    /// (`segment_bytes_max` <= u32::MAX) and so do relative offsets (a segment holds fewer frames
    /// than bytes).
    pub fn push(&mut self, rel_offset: u64, position: u64, len: u64, ts: i64) {
        if self.offsets.is_empty() || self.granule_bytes >= self.interval_bytes {
            let (rel, pos) = (format::checked_u32_from_u64(rel_offset), format::checked_u32_from_u64(position));
            format::encode_offset_entry(&mut self.offsets, rel, pos);
            format::encode_time_entry(
                &mut self.times,
                &TimeEntry { max_ts: ts, min_ts: ts, rel_offset: rel, position: pos },
            );
            self.granule_bytes = 0;
        } else {
            self.widen_open_granule(ts, ts);
        }
        self.granule_bytes += len;
        self.record_count += 1;
        self.covered_bytes = position + len;
    }

    /// Bytes of frames that may still join the open granule (what `push` adds to it rather
    /// than starting a new entry): 0 before the first entry.
    pub fn open_granule_room(&self) -> u64 {
        if self.offsets.is_empty() { 0 } else { self.interval_bytes.saturating_sub(self.granule_bytes) }
    }

    /// Adds frames that `push` would have put in the open granule, all at once: `count` frames of
    /// `bytes` bytes in all, ending at `end`, timestamps within `[min_ts, max_ts]`. The writer
    /// gathers them without this index's lock (see `PendingIndex` in `writer.rs`).
    pub fn extend_open_granule(&mut self, count: u64, bytes: u64, end: u64, min_ts: i64, max_ts: i64) {
        if count == 0 || self.times.is_empty() {
            return;
        }
        self.widen_open_granule(min_ts, max_ts);
        self.granule_bytes += bytes;
        self.record_count += count;
        self.covered_bytes = end;
    }

    fn widen_open_granule(&mut self, min_ts: i64, max_ts: i64) {
        let Some(at) = self.times.len().checked_sub(TIME_ENTRY_LEN) else { return };
        let max = format::le_i64(&self.times, at + TIME_ENTRY_MAX_TS_AT).max(max_ts);
        let min = format::le_i64(&self.times, at + TIME_ENTRY_MIN_TS_AT).min(min_ts);
        for (field, value) in [(TIME_ENTRY_MAX_TS_AT, max), (TIME_ENTRY_MIN_TS_AT, min)] {
            if let Some(slot) = self.times.get_mut(at + field..at + field + 8) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
        }
    }

    /// Encodes the offset index file and the time index file.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let h = IndexHeader {
            base_offset: self.base_offset,
            covered_bytes: self.covered_bytes,
            record_count: self.record_count,
            entry_count: format::checked_u32(self.offsets.len() / OFFSET_ENTRY_LEN),
        };
        (
            format::encode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &h, &self.offsets),
            format::encode_index(TIME_INDEX_MAGIC, TIME_ENTRY_LEN, &h, &self.times),
        )
    }

    /// Rebuilds a builder from loaded index files, keeping only the granules that start before
    /// `trusted_bytes` minus the last of them, which is reopened: the caller rescans from the
    /// returned `(relative offset, position)` (every frame from there is pushed again).
    pub fn resume(loaded: &LoadedIndex, interval_bytes: u64, trusted_bytes: u64) -> (Self, u64, u64) {
        let r = loaded.as_ref();
        let keep =
            (0..r.len()).take_while(|&i| u64::from(format::offset_entry(r.offsets, i).1) < trusted_bytes).count();
        let mut b = IndexBuilder::new(loaded.header.base_offset, interval_bytes);
        if keep == 0 {
            return (b, 0, SEGMENT_HEADER_LEN as u64);
        }
        let reopen = keep - 1;
        let (rel, pos) = format::offset_entry(r.offsets, reopen);
        // `reopen` < `r.len()`, the entry count both files were checked to hold.
        b.offsets.extend_from_slice(r.offsets.get(..reopen * OFFSET_ENTRY_LEN).unwrap_or_default());
        b.times.extend_from_slice(r.times.get(..reopen * TIME_ENTRY_LEN).unwrap_or_default());
        b.record_count = u64::from(rel);
        b.covered_bytes = u64::from(pos);
        // The granule before the reopened one is complete: its successor starts a new one.
        b.granule_bytes = b.interval_bytes;
        (b, u64::from(rel), u64::from(pos))
    }
}

/// A validated index loaded from its two files.
#[derive(Debug, Clone)]
pub(crate) struct LoadedIndex {
    pub header: IndexHeader,
    offsets: SharedBytes,
    times: SharedBytes,
}

impl LoadedIndex {
    pub fn as_ref(&self) -> IndexRef<'_> {
        let o = self.offsets.get(format::INDEX_HEADER_LEN..).unwrap_or(&[]);
        let t = self.times.get(format::INDEX_HEADER_LEN..).unwrap_or(&[]);
        IndexRef { offsets: o, times: t }
    }

    pub fn from_builder(b: &IndexBuilder) -> Self {
        let (o, t) = b.encode();
        let header = IndexHeader {
            base_offset: b.base_offset,
            covered_bytes: b.covered_bytes,
            record_count: b.record_count,
            entry_count: format::checked_u32(b.offsets.len() / OFFSET_ENTRY_LEN),
        };
        LoadedIndex { header, offsets: SharedBytes::from_vec(o), times: SharedBytes::from_vec(t) }
    }

    /// Loads and validates the index files of the segment at `base_offset`. `map` maps them
    /// (sealed segments) instead of reading them into the heap. Returns `None` when either file
    /// is missing, torn, inconsistent or does not belong to this segment: the caller rebuilds.
    pub fn load(storage: &dyn Storage, dir: &Path, base_offset: u64, map: bool) -> Option<Self> {
        let read = |name: String| -> Option<SharedBytes> {
            let f = storage.open(&dir.join(name), OpenMode::Read).ok()?;
            if map {
                f.map(crate::storage::INTERNAL).ok()
            } else {
                let len = usize::try_from(f.len().ok()?).ok()?;
                f.read_vec(0, len).ok().map(SharedBytes::from_vec)
            }
        };
        let offsets = read(format::offset_index_file_name(base_offset))?;
        let times = read(format::time_index_file_name(base_offset))?;
        let h = format::decode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &offsets).ok()?;
        let ht = format::decode_index(TIME_INDEX_MAGIC, TIME_ENTRY_LEN, &times).ok()?;
        if h != ht || h.base_offset != base_offset {
            return None;
        }
        let loaded = LoadedIndex { header: h, offsets, times };
        loaded.entries_are_consistent().then_some(loaded)
    }

    /// Entries strictly increasing, within the covered bytes and the record count, and the two
    /// files agreeing entry by entry.
    fn entries_are_consistent(&self) -> bool {
        let r = self.as_ref();
        let h = &self.header;
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..r.len() {
            let (rel, pos) = format::offset_entry(r.offsets, i);
            let t = format::time_entry(r.times, i);
            let ok = t.rel_offset == rel
                && t.position == pos
                && t.min_ts <= t.max_ts
                && u64::from(rel) < h.record_count
                && u64::from(pos) < h.covered_bytes
                && match prev {
                    None => rel == 0 && pos as usize == SEGMENT_HEADER_LEN,
                    Some((pr, pp)) => rel > pr && pos > pp,
                };
            if !ok {
                return false;
            }
            prev = Some((rel, pos));
        }
        (r.len() == 0) == (h.record_count == 0) && h.covered_bytes >= SEGMENT_HEADER_LEN as u64
    }
}

/// Writes a segment's two index files (temporary name, fdatasync, then rename). Best effort:
/// they are caches, so a failure only means the next open rebuilds them. The data is fsynced
/// before the rename so that a rename that survives a power cut never names a file with missing
/// bytes; the directory is not fsynced here: a lost rename leaves the previous index file (or
/// none), which `LoadedIndex::load` checks against the segment and recovery rebuilds.
pub(crate) fn write_index_files(storage: &dyn Storage, dir: &Path, b: &IndexBuilder) {
    let (o, t) = b.encode();
    write_cache_file(storage, dir, &format::offset_index_file_name(b.base_offset), &o);
    write_cache_file(storage, dir, &format::time_index_file_name(b.base_offset), &t);
}

/// Writes one index-like cache file: to `<name>.tmp`, fdatasynced, renamed into place (no
/// directory fsync: see `write_index_files`). Best effort.
pub(crate) fn write_cache_file(storage: &dyn Storage, dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    let ok = storage
        .open(&tmp, OpenMode::CreateTruncate)
        .and_then(|f| f.write_all_at(bytes, 0).and_then(|()| f.sync_data()))
        .and_then(|()| storage.rename(&tmp, &dir.join(name)));
    if ok.is_err() {
        let _ = storage.remove_file(&tmp);
    }
}

/// Removes a segment's index files, if present.
pub(crate) fn remove_index_files(storage: &dyn Storage, dir: &Path, base_offset: u64) {
    let _ = storage.remove_file(&dir.join(format::offset_index_file_name(base_offset)));
    let _ = storage.remove_file(&dir.join(format::time_index_file_name(base_offset)));
    let _ = storage.remove_file(&dir.join(format::key_index_file_name(base_offset)));
}
