//! Compaction by key (Kafka semantics): in sealed segments only the newest record of each key
//! survives; records without a key stay; a tombstone removes its key's older records and is
//! itself removed once older than `tombstone_retention`. Offsets never change, so a compacted
//! segment has gaps (FORMAT.md § Compaction).
//!
//! Invariants:
//! - A record is dropped only when a newer record of its key was seen (or it is a tombstone
//!   past its retention with no newer record): whatever the key map could not hold is kept.
//! - A rewrite never changes a segment in place: it goes through `rewrite.rs` (one owner at a
//!   time, a temp file of its own, swapped only if the segment is still the file it read). A
//!   crash leaves the old segment or the new one, never both and never neither.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_FLAG_COMPACTED, SEGMENT_HEADER_LEN};
use crate::log::index::IndexBuilder;
use crate::log::record::RecordRef;
use crate::log::rewrite::Input;
use crate::log::segment::{self, FrameCursor, RawStep};
use crate::log::{Log, Shared, consecutive};
use crate::storage::StorageFile;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use std::time::Duration;

/// Bytes counted per key in the key map besides the key itself.
const KEY_OVERHEAD_BYTES: u64 = 64;
/// Read and write buffer of a segment rewrite.
const REWRITE_BUFFER_BYTES: usize = 1 << 20;
/// Default of [`CompactOptions::tombstone_retention`].
pub const TOMBSTONE_RETENTION_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Default of [`CompactOptions::keys_bytes_max`].
pub const COMPACT_KEYS_BYTES_DEFAULT: u64 = 256 << 20;

/// How [`Log::compact`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactOptions {
    /// A tombstone is removed once its timestamp is older than this (and no newer record of
    /// its key exists); until then it stays, so consumers that lag see the deletion.
    pub tombstone_retention: Duration,
    /// Memory for the map from key to newest offset (keys plus 64 bytes each). Keys first seen
    /// once it is full are not compacted this time (their records are all kept).
    pub keys_bytes_max: u64,
    /// Seal the active segment first, so that every record appended before the call is
    /// compacted (an explicit compaction: `Store::compact_topic`, `evlog compact`). Off by
    /// default and in background maintenance, which would otherwise cut a small segment at
    /// every pass.
    pub seal_active: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            tombstone_retention: TOMBSTONE_RETENTION_DEFAULT,
            keys_bytes_max: COMPACT_KEYS_BYTES_DEFAULT,
            seal_active: false,
        }
    }
}

impl CompactOptions {
    /// These options with `retention` as the tombstone retention.
    pub fn with_tombstone_retention(self, retention: Duration) -> Self {
        CompactOptions { tombstone_retention: retention, ..self }
    }

    /// These options with `seal_active` set: the active segment is sealed and compacted too.
    pub fn sealing_active(self) -> Self {
        CompactOptions { seal_active: true, ..self }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Sealed segments rewritten.
    pub segments_rewritten: u64,
    /// Records and file bytes of the sealed segments before and after.
    pub records_before: u64,
    /// Records kept.
    pub records_after: u64,
    /// Bytes of the sealed segments before.
    pub bytes_before: u64,
    /// Bytes of the sealed segments after.
    pub bytes_after: u64,
    /// Tombstones removed (past their retention).
    pub tombstones_removed: u64,
    /// Distinct keys tracked.
    pub keys: u64,
    /// Records whose key did not fit in `keys_bytes_max` (kept).
    pub records_untracked: u64,
    /// Every record below this offset was in the compacted (sealed) segments; records from here
    /// on (the active segment's) were left as they are.
    pub compacted_below: u64,
}

impl CompactReport {
    /// Adds one segment's figures (records, bytes, tombstones, whether it was rewritten).
    fn add_segment(&mut self, r: &CompactReport) {
        self.records_before += r.records_before;
        self.records_after += r.records_after;
        self.bytes_before += r.bytes_before;
        self.bytes_after += r.bytes_after;
        self.tombstones_removed += r.tombstones_removed;
        self.segments_rewritten += r.segments_rewritten;
    }
}

/// The newest offset of each key, over the log as it was when compaction began.
struct Newest {
    offsets: HashMap<Box<[u8]>, u64>,
    bytes: u64,
    untracked: u64,
}

impl Newest {
    fn build(log: &Log, bytes_max: u64) -> Result<Newest> {
        let mut n = Newest { offsets: HashMap::new(), bytes: 0, untracked: 0 };
        log.scan(log.first_offset(), |r| {
            if let Some(k) = r.key() {
                match n.offsets.get_mut(k) {
                    Some(o) => *o = r.offset(),
                    None if n.bytes + k.len() as u64 + KEY_OVERHEAD_BYTES <= bytes_max => {
                        n.offsets.insert(k.into(), r.offset());
                        n.bytes += k.len() as u64 + KEY_OVERHEAD_BYTES;
                    }
                    None => n.untracked += 1,
                }
            }
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }

    /// Whether `r` stays: no key, a key not tracked, the newest of its key, and not a tombstone
    /// whose time is up. Counts removed tombstones.
    fn keeps(&self, r: &RecordRef<'_>, tombstone_cutoff_ms: i64, tombstones_removed: &mut u64) -> bool {
        let Some(k) = r.key() else { return true };
        match self.offsets.get(k) {
            None => true,
            Some(&newest) if newest > r.offset() => false,
            Some(_) if r.is_tombstone() && r.timestamp() < tombstone_cutoff_ms => {
                *tombstones_removed += 1;
                false
            }
            Some(_) => true,
        }
    }
}

impl Log {
    /// Compacts the log by key now: see [`CompactOptions`]. With `seal_active` (what
    /// [`Store::compact_topic`](crate::Store::compact_topic) and `evlog compact` use) the active
    /// segment is sealed first, so everything appended before the call is compacted; without
    /// it only the sealed segments are. [`CompactReport::compacted_below`] says where the
    /// compacted part ends: records from there on were left as they are. Readers and consumers
    /// go on meanwhile; those past a rewritten segment see the same records, those before it
    /// see fewer (offsets keep their values: gaps). One rewrite of the log runs at a time
    /// (compaction, compression, backup's links, retention wait for each other).
    pub fn compact(&self, opts: &CompactOptions) -> Result<CompactReport> {
        let s = &self.shared;
        s.writable()?;
        crate::trace::span!("evlog.compact", dir = %s.dir.display());
        let _owner = s.rewrite_owner();
        if opts.seal_active {
            s.seal_active()?;
        }
        let (sealed, compacted_below): (Vec<(u64, u64)>, u64) = {
            let v = s.published.view();
            (consecutive(&v.bases).collect(), v.active.base)
        };
        let mut report = CompactReport { compacted_below, ..CompactReport::default() };
        if sealed.is_empty() {
            return Ok(report);
        }
        let newest = Newest::build(self, opts.keys_bytes_max)?;
        report.keys = newest.offsets.len() as u64;
        report.records_untracked = newest.untracked;
        let retention_ms = i64::try_from(opts.tombstone_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = crate::clock::now_ms().saturating_sub(retention_ms);
        for (base, end) in sealed {
            report.add_segment(&rewrite(s, base, end, &newest, cutoff)?);
        }
        Ok(report)
    }
}

/// Calls `each` with every frame of the segment (its bytes and record), in order.
fn walk(cursor: &mut FrameCursor, mut each: impl FnMut(&[u8], &RecordRef<'_>, bool) -> Result<()>) -> Result<()> {
    loop {
        match cursor.step_raw(None)? {
            RawStep::Frame { position, rel } => {
                let frame = &cursor.last;
                let bytes = cursor.frame_slice(rel, frame.len).ok_or_else(|| cursor.outside(position, frame))?;
                each(bytes, &RecordRef::from_frame(bytes, frame), frame.batch_continues())?;
            }
            RawStep::End => return Ok(()),
            RawStep::Bad { position, error } => {
                return Err(Error::corruption(&cursor.path, position, None, format!("sealed segment: {error}")));
            }
        }
    }
}

/// A cursor over the frames of the segment a rewrite opened.
fn cursor_of(input: &Input) -> Result<FrameCursor> {
    segment::sealed_cursor(input.file.clone(), &input.path, input.base, SEGMENT_HEADER_LEN as u64, REWRITE_BUFFER_BYTES)
}

/// Rewrites segment `base` (records `base..end`) without what compaction drops, if it drops
/// anything.
fn rewrite(s: &Shared, base: u64, end: u64, newest: &Newest, cutoff: i64) -> Result<CompactReport> {
    let Some(input) = s.open_for_rewrite(base, end)? else { return Ok(CompactReport::default()) };
    let len = input.identity.len;
    let mut r = CompactReport { bytes_before: len, ..CompactReport::default() };
    let mut dropped = 0u64;
    let mut tombstones = 0u64;
    walk(&mut cursor_of(&input)?, |_, rec, _| {
        r.records_before += 1;
        if !newest.keeps(rec, cutoff, &mut tombstones) {
            dropped += 1;
        }
        Ok(())
    })?;
    if dropped == 0 {
        r.records_after = r.records_before;
        r.bytes_after = len;
        return Ok(r);
    }
    let mut kept = 0u64;
    let swapped = s.replace_sealed(&input, "compact", |out, tmp| {
        let (index, new_len, n) = write_compacted(s, &input, out, tmp, newest, cutoff)?;
        kept = n;
        Ok((index, new_len))
    })?;
    let Some(new_len) = swapped else {
        // Removed by a budget, or changed, meanwhile: nothing was swapped.
        return Ok(CompactReport::default());
    };
    r.records_after = kept;
    r.bytes_after = new_len;
    r.tombstones_removed = tombstones;
    r.segments_rewritten = 1;
    Ok(r)
}

/// Writes the kept frames of the segment `input` read to `out` (header flagged compacted);
/// returns its index, length and record count.
fn write_compacted(
    s: &Shared,
    input: &Input,
    out: &dyn StorageFile,
    tmp: &Path,
    newest: &Newest,
    cutoff: i64,
) -> Result<(IndexBuilder, u64, u64)> {
    let base = input.base;
    let mut buf = Vec::with_capacity(REWRITE_BUFFER_BYTES);
    buf.extend_from_slice(&format::encode_segment_header_with_flags(base, SEGMENT_FLAG_COMPACTED));
    let mut at = 0u64;
    let mut index = IndexBuilder::new(base, s.opts.index_interval_bytes);
    let mut kept = 0u64;
    let mut ignored = 0u64;
    let flush = |buf: &mut Vec<u8>, at: &mut u64| -> Result<()> {
        out.write_all_at(buf, *at).map_err(|e| Error::io("write", tmp, e))?;
        *at += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    walk(&mut cursor_of(input)?, |bytes, rec, continues| {
        if !newest.keeps(rec, cutoff, &mut ignored) {
            return Ok(());
        }
        let position = at + buf.len() as u64;
        index.push(rec.offset() - base, position, bytes.len() as u64, rec.timestamp());
        let start = buf.len();
        buf.extend_from_slice(bytes);
        if continues {
            format::clear_batch_flag(buf.get_mut(start..).unwrap_or_default());
        }
        kept += 1;
        if buf.len() >= REWRITE_BUFFER_BYTES {
            flush(&mut buf, &mut at)?;
        }
        Ok(())
    })?;
    flush(&mut buf, &mut at)?;
    Ok((index, at, kept))
}
