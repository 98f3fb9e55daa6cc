//! Per-key access: where each keyed record of a segment is, so that one key's records are found
//! without scanning the log (FORMAT.md § Key index).
//!
//! - Sealed segments: `<base>.keyindex`, entries `(key hash, relative offset, position)` sorted
//!   by hash then offset, written at the roll when the active segment's key map was built, or
//!   the first time a key is looked up in the segment; checked against the segment (base,
//!   covered bytes) and rebuilt by a scan when missing or invalid, like the other index files.
//!   Kept mapped, once checked, in `Shared::key_indexes` (apart from the segment cache, whose
//!   byte budget a scan of a large log cycles through).
//! - The active segment: `KeyMap` (`keymap.rs`), built by one scan of the segment the first time a
//!   key is looked up, then kept up to date by every append under the writer lock: positions by
//!   hash (for `iter_key`), and each key's newest offset by exact key (so a conditional append
//!   per key reads nothing).
//!
//! A lookup in a sealed segment reads each candidate record and compares its key, so hash
//! collisions cost a read, never a wrong answer.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, INDEX_HEADER_LEN, KEY_ENTRY_LEN, KEY_INDEX_MAGIC, SEGMENT_HEADER_LEN};
use crate::log::index::IndexBuilder;
use crate::log::keymap::KeyMap;
use crate::log::record::Record;
use crate::log::segment::{FrameCursor, RawStep, SealedFile, Source, Step};
use crate::log::{Active, Log, Shared, consecutive, lock};
use crate::storage::{OpenMode, SharedBytes};
use std::collections::VecDeque;
use std::sync::Arc;

/// Read size of a key index rebuild's scan.
const KEY_SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Read size when fetching one candidate record.
const RECORD_READ_BYTES: usize = 512;
/// Most key index files kept mapped at once (least recently loaded out).
pub(crate) const KEY_INDEXES_OPEN_MAX: usize = 4096;

/// Every keyed frame under `cursor` as (hash, relative offset, position), calling `each` with
/// its key; returns the frames seen.
fn scan_keys(cursor: &mut FrameCursor, base: u64, mut each: impl FnMut(&[u8], u32, u32)) -> Result<u64> {
    let mut frames = 0;
    loop {
        match cursor.step_raw(None)? {
            RawStep::Frame { position, rel } => {
                frames += 1;
                let frame = &cursor.last;
                let bytes = cursor.frame_slice(rel, frame.len).ok_or_else(|| cursor.outside(position, frame))?;
                if let Some(k) = frame.key.clone().and_then(|r| bytes.get(r)) {
                    each(k, format::checked_u32_from_u64(frame.offset - base), format::checked_u32_from_u64(position));
                }
            }
            RawStep::End => return Ok(frames),
            RawStep::Bad { position, error } => {
                return Err(Error::corruption(&cursor.path, position, None, format!("key scan: {error}")));
            }
        }
    }
}

/// Builds the key map of the active segment's bytes `[header, end)`, read with `pread`.
pub(crate) fn build_active_map(s: &Shared, active: &Active, end: u64) -> Result<KeyMap> {
    let mut map = KeyMap::default();
    extend_active_map(s, active, &mut map, SEGMENT_HEADER_LEN as u64, end)?;
    Ok(map)
}

/// Adds the keyed frames of the active segment's bytes `[from, end)` to `map`.
pub(crate) fn extend_active_map(s: &Shared, active: &Active, map: &mut KeyMap, from: u64, end: u64) -> Result<()> {
    let mut cursor = FrameCursor::new(
        Source::File(active.file.clone(), None),
        active.path.clone(),
        from,
        end,
        s.opts.read_buffer_bytes.max(KEY_SCAN_CHUNK_BYTES),
    );
    scan_keys(&mut cursor, active.base, |k, rel, pos| map.note(k, active.base, rel, pos))?;
    Ok(())
}

/// Encodes a key index file from (hash, relative offset, position) entries.
fn encode_key_index(header: &format::IndexHeader, mut entries: Vec<(u64, u32, u32)>) -> Vec<u8> {
    entries.sort_unstable();
    let mut bytes = Vec::with_capacity(entries.len() * KEY_ENTRY_LEN);
    for &(h, rel, pos) in &entries {
        format::encode_key_entry(&mut bytes, h, rel, pos);
    }
    let header = format::IndexHeader { entry_count: format::checked_u32(entries.len()), ..*header };
    format::encode_index(KEY_INDEX_MAGIC, KEY_ENTRY_LEN, &header, &bytes)
}

/// Writes `<base>.keyindex` like the other index files (temporary name, fdatasync, rename;
/// best effort: a cache).
fn write_key_index(s: &Shared, base: u64, bytes: &[u8]) {
    crate::log::index::write_cache_file(s.opts.storage.as_ref(), &s.dir, &format::key_index_file_name(base), bytes);
}

/// At a roll: writes the sealed segment's key index from its key map, if one was built.
pub(crate) fn write_at_roll(s: &Shared, ix: &IndexBuilder) {
    if let Some(map) = &ix.keys {
        let entries = map.entries().collect();
        write_key_index(s, ix.base_offset(), &encode_key_index(&ix.header_with_entries(0), entries));
    }
}

impl Shared {
    /// Segment `base`'s key index file, checked (mapped from its file, or rebuilt by a scan and
    /// written); its entries follow the `INDEX_HEADER_LEN`-byte header.
    fn key_index(&self, base: u64, reader: &SealedFile) -> Result<SharedBytes> {
        // A cached index stands only for the file it was built from: one loaded from a segment
        // that a compaction replaced meanwhile (the lookup runs beside it, outside the writer
        // lock) covers other bytes, and is built again.
        if let Some(k) = lock(&self.key_indexes).get(&base)
            && format::decode_index(KEY_INDEX_MAGIC, KEY_ENTRY_LEN, k).is_ok_and(|h| h.covered_bytes == reader.len)
        {
            return Ok(k.clone());
        }
        let loaded = self
            .opts
            .storage
            .open(&self.dir.join(format::key_index_file_name(base)), OpenMode::Read)
            .ok()
            .and_then(|f| f.map(crate::storage::INTERNAL).ok())
            .filter(|m| {
                format::decode_index(KEY_INDEX_MAGIC, KEY_ENTRY_LEN, m)
                    .is_ok_and(|h| h.base_offset == base && h.covered_bytes == reader.len)
                    && sorted(m.get(INDEX_HEADER_LEN..).unwrap_or_default())
            });
        let file = match loaded {
            Some(m) => m,
            None => {
                let mut entries = Vec::new();
                let mut cursor = reader.cursor(SEGMENT_HEADER_LEN as u64, KEY_SCAN_CHUNK_BYTES);
                let frames = scan_keys(&mut cursor, base, |k, rel, pos| entries.push((format::key_hash(k), rel, pos)))?;
                let header = format::IndexHeader {
                    base_offset: base,
                    covered_bytes: reader.len,
                    record_count: frames,
                    entry_count: 0,
                };
                let bytes = encode_key_index(&header, entries);
                if !self.read_only {
                    write_key_index(self, base, &bytes);
                }
                SharedBytes::from_vec(bytes)
            }
        };
        let mut cache = lock(&self.key_indexes);
        if cache.len() >= KEY_INDEXES_OPEN_MAX
            && let Some(&oldest) = cache.keys().min()
        {
            cache.remove(&oldest);
        }
        cache.insert(base, file.clone());
        Ok(file)
    }

    /// Forgets the checked key index of segment `base` (rewritten or removed).
    pub(crate) fn forget_key_index(&self, base: u64) {
        lock(&self.key_indexes).remove(&base);
    }
}

/// Entries sorted by (hash, relative offset), as the format requires.
fn sorted(entries: &[u8]) -> bool {
    let mut prev = None;
    for i in 0..entries.len() / KEY_ENTRY_LEN {
        let (h, rel, _) = format::key_entry(entries, i);
        if prev.is_some_and(|p| p >= (h, rel)) {
            return false;
        }
        prev = Some((h, rel));
    }
    true
}

/// (relative offset, position) of the entries with hash `h`, in offset order.
fn candidates(entries: &[u8], h: u64) -> Vec<(u32, u32)> {
    let n = entries.len() / KEY_ENTRY_LEN;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if format::key_entry(entries, mid).0 < h {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo..n).map(|i| format::key_entry(entries, i)).take_while(|e| e.0 == h).map(|(_, rel, pos)| (rel, pos)).collect()
}

/// The record `cursor` is on (expected to be `offset`), if its key is `key`.
fn keyed_record_at(mut cursor: FrameCursor, offset: u64, key: &[u8]) -> Result<Option<Record>> {
    match cursor.step(Some(offset))? {
        Step::Frame { frame, bytes, .. } if frame.offset == offset => {
            let r = Record::from_frame(bytes, &frame);
            Ok((r.key() == Some(key)).then_some(r))
        }
        Step::Frame { frame, .. } => Err(Error::corruption(
            &cursor.path,
            cursor.position(),
            Some(offset),
            format!("key index points at offset {offset}, the frame there holds {}", frame.offset),
        )),
        Step::End => Ok(None),
        Step::Bad { position, error } => {
            Err(Error::corruption(&cursor.path, position, Some(offset), error.to_string()))
        }
    }
}

/// A segment to search.
enum Seg {
    Sealed { base: u64, end: u64 },
    Active { active: Arc<Active>, end: u64, visible: u64 },
}

/// One segment's records of `key` at or after `from`, read and checked, in offset order.
fn segment_records(s: &Shared, seg: &Seg, key: &[u8], from: u64) -> Result<Vec<Record>> {
    let h = format::key_hash(key);
    let mut out = Vec::new();
    match seg {
        Seg::Sealed { base, .. } => {
            let path = s.dir.join(format::segment_file_name(*base));
            let file = s.opts.storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
            let reader = SealedFile::open(file, &path, *base)?;
            let file = s.key_index(*base, &reader)?;
            for (rel, pos) in candidates(file.get(INDEX_HEADER_LEN..).unwrap_or_default(), h) {
                let offset = base + u64::from(rel);
                if offset >= from
                    && let Some(r) = keyed_record_at(reader.cursor(u64::from(pos), RECORD_READ_BYTES), offset, key)?
                {
                    out.push(r);
                }
            }
        }
        Seg::Active { active, end, visible } => {
            for (rel, pos) in active_candidates(s, active, *end, h)? {
                let offset = active.base + u64::from(rel);
                if offset >= from
                    && offset < *visible
                    && let Some(r) =
                        keyed_record_at(active.cursor(u64::from(pos), *end, RECORD_READ_BYTES), offset, key)?
                {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

/// The active segment's candidates for hash `h`: from its key map, built first if needed
/// (by a scan up to `end`; a read-only handle scans each time, its writer is elsewhere).
fn active_candidates(s: &Shared, active: &Active, end: u64, h: u64) -> Result<Vec<(u32, u32)>> {
    if s.read_only {
        return Ok(build_active_map(s, active, end)?.positions(h));
    }
    if lock(&active.index).keys.is_none() {
        // Built outside the writer lock, caught up under it (`Shared::ensure_active_map`).
        s.ensure_active_map()?;
    }
    let ix = lock(&active.index);
    Ok(ix.keys.as_ref().map(|m| m.positions(h)).unwrap_or_default())
}

impl Shared {
    /// The segments as readers see them now, oldest first.
    fn key_segments(&self) -> Vec<Seg> {
        let v = self.published.view();
        let (visible, end) = self.published.visible();
        let mut segs: Vec<Seg> = consecutive(&v.bases).map(|(base, end)| Seg::Sealed { base, end }).collect();
        segs.push(Seg::Active { active: v.active.clone(), end, visible });
        segs
    }

    /// The newest offset of `key` in the sealed segments (what `append_expecting_key` compares
    /// with when the active segment has no record of the key).
    pub(crate) fn last_offset_for_key_sealed(&self, key: &[u8]) -> Result<Option<u64>> {
        let bases = self.published.view().bases.clone();
        let sealed: Vec<(u64, u64)> = consecutive(&bases).collect();
        for (base, end) in sealed.into_iter().rev() {
            if let Some(r) = segment_records(self, &Seg::Sealed { base, end }, key, 0)?.pop() {
                return Ok(Some(r.offset()));
            }
        }
        Ok(None)
    }
}

impl Log {
    /// The offset of the newest record with `key`, or `None` if no record has it. Reads the
    /// key index of each segment from the newest back, never the whole log.
    pub fn last_offset_for_key(&self, key: &[u8]) -> Result<Option<u64>> {
        if self.shared.read_only {
            self.shared.refresh()?;
        }
        for seg in self.shared.key_segments().iter().rev() {
            if let Some(r) = segment_records(&self.shared, seg, key, 0)?.pop() {
                return Ok(Some(r.offset()));
            }
        }
        Ok(None)
    }

    /// The records with `key`, from `from_offset` on, in offset order, through the key
    /// indexes: loading one aggregate's events reads those events, not the topic.
    pub fn iter_key(&self, key: &[u8], from_offset: u64) -> KeyIter {
        KeyIter {
            shared: self.shared.clone(),
            key: key.to_vec(),
            from: from_offset,
            segs: VecDeque::new(),
            started: false,
            ready: VecDeque::new(),
            failed: false,
        }
    }
}

/// The records of one key, in offset order (see [`Log::iter_key`]). A segment's records are
/// looked up when the iterator reaches it; records appended after it read the active segment
/// are not yielded.
pub struct KeyIter {
    shared: Arc<Shared>,
    key: Vec<u8>,
    from: u64,
    segs: VecDeque<Seg>,
    started: bool,
    ready: VecDeque<Record>,
    failed: bool,
}

impl std::fmt::Debug for KeyIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIter").field("key", &self.key).field("from", &self.from).finish_non_exhaustive()
    }
}

impl Iterator for KeyIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            if self.shared.read_only
                && let Err(e) = self.shared.refresh()
            {
                self.failed = true;
                return Some(Err(e));
            }
            let from = self.from;
            self.segs = self
                .shared
                .key_segments()
                .into_iter()
                .filter(|seg| match seg {
                    Seg::Sealed { end, .. } => *end > from,
                    Seg::Active { .. } => true,
                })
                .collect();
        }
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            let seg = self.segs.pop_front()?;
            match segment_records(&self.shared, &seg, &self.key, self.from) {
                Ok(rs) => self.ready.extend(rs),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
