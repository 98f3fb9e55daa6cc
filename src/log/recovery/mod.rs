//! Open-time recovery: find the valid end of the log, starting from the checkpoint.
//!
//! Invariants:
//! - Only bytes after the checkpoint are scanned (plus at most one index granule before it), so
//!   open time does not grow with the log's size.
//! - A torn tail (bad bytes that no later frame proves were durable) is truncated, then fsynced,
//!   before the log accepts an append; what was dropped is reported.
//! - Corruption in durable data is never truncated silently: `Strict` fails with
//!   `Error::Corruption`; `Repair` moves every byte after the corruption into `quarantine/`.
//!   Durable means: before the checkpoint, in a sealed segment, or below the `durable_offset` of
//!   a later valid frame (the writer stamps each frame with what had been fsynced before it).
//! - Read-only recovery changes no file: it only finds the end of what is complete.

// Lengths and positions read from disk are never narrowed with `as`: `try_from` or a checked
// helper, so an impossible value is an error, not a silently wrapped number.
#![deny(clippy::cast_possible_truncation)]

mod classify;
mod repair;

pub use classify::{TailVerdict, classify_tail};
pub use repair::RepairReport;
pub(crate) use repair::quarantine_after;
use repair::save_to_quarantine;

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::checkpoint;
use crate::log::index::{self, IndexBuilder, LoadedIndex};
use crate::log::options::{Options, RecoveryMode};
use crate::log::segment::{self, Scan};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `open` found and did. Nothing in it is an error: corruption that stops `open` is
/// returned as [`Error::Corruption`] instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// A valid checkpoint was used, so only the log's tail was scanned.
    pub checkpoint_used: bool,
    /// Bytes of frames read and verified during recovery.
    pub scanned_bytes: u64,
    /// Frames read and verified during recovery.
    pub scanned_records: u64,
    /// Bytes cut from the end of the active segment (torn or unsynced tail).
    pub truncated_bytes: u64,
    /// Complete, valid frames inside those bytes (e.g. an unfinished atomic batch, or frames
    /// after a torn one), which were therefore never acknowledged as durable.
    pub dropped_records: u64,
    /// Files removed: an incomplete segment from a crashed roll, stale temporary files, index
    /// files without a segment.
    pub removed_files: Vec<PathBuf>,
    /// Files moved into `quarantine/` by `RecoveryMode::Repair`.
    pub quarantined_files: Vec<PathBuf>,
    /// The corruption that `RecoveryMode::Repair` cut away, as `Error::Corruption` would have
    /// described it.
    pub repaired_corruption: Option<String>,
    /// The active segment's index files were missing or invalid and were rebuilt by scanning it.
    pub active_index_rebuilt: bool,
    /// Zero bytes cut from the very end of the active segment: space preallocated by a writer
    /// that did not close cleanly (or zero bytes ending a torn write); not counted in
    /// `truncated_bytes`.
    pub zero_tail_bytes: u64,
}

/// The state recovery hands to the log.
pub(crate) struct Recovered {
    /// Base offsets of every segment, ascending; the last one is the active segment.
    pub bases: Vec<u64>,
    pub active_file: Arc<dyn StorageFile>,
    /// Index of the active segment up to `position`.
    pub index: IndexBuilder,
    /// End of the last complete frame (and batch) in the active segment.
    pub position: u64,
    pub next_offset: u64,
    pub report: RecoveryReport,
}

struct Ctx<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    opts: &'a Options,
    writable: bool,
    report: RecoveryReport,
}

fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format::segment_file_name(base))
}

/// Where the scan starts: segment `idx` of `bases` at byte `pos`, expecting offset `next`;
/// everything before `trusted` in that segment was durable (the checkpoint's position).
struct Start {
    idx: usize,
    pos: u64,
    next: u64,
    trusted: u64,
}

/// Runs recovery. `writable`: the caller holds the directory lock and may truncate, remove,
/// quarantine and write. Otherwise nothing is changed. The phases, in order: list the segments
/// (and remove stale files), find the active segment, pick the start from the checkpoint, verify
/// sealed segments after it, then scan the active segment and classify its tail.
pub(crate) fn recover(storage: &dyn Storage, dir: &Path, opts: &Options, writable: bool) -> Result<Recovered> {
    let mut ctx = Ctx { storage, dir, opts, writable, report: RecoveryReport::default() };
    let mut bases = ctx.list_segments()?;
    let Some(active) = ctx.open_active(&mut bases)? else {
        if !writable {
            return Err(Error::io(
                "open",
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no segment files: not an evlog directory (yet)"),
            ));
        }
        // A log whose only segment was removed as header-less keeps that segment's base.
        let base = ctx
            .report
            .removed_files
            .iter()
            .filter_map(|p| p.file_name()?.to_str().and_then(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX)))
            .min()
            .unwrap_or(0);
        return ctx.fresh(base);
    };
    let start = ctx.start_point(&bases, &active);
    let next = match ctx.verify_sealed(&bases, &start)? {
        ControlFlow::Continue(next) => next,
        ControlFlow::Break(repaired) => return Ok(repaired),
    };
    ctx.recover_active(bases, active, &start, next)
}

impl Ctx<'_> {
    /// Base offsets of every segment file, ascending. When writable, removes `*.tmp` files and
    /// index files whose segment is gone (rule 1).
    fn list_segments(&mut self) -> Result<Vec<u64>> {
        let names = self.storage.list_dir(self.dir).map_err(|e| Error::io("list", self.dir, e))?;
        let mut bases: Vec<u64> =
            names.iter().filter_map(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX)).collect();
        bases.sort_unstable();
        if self.writable {
            for n in &names {
                let orphan_index = [format::OFFSET_INDEX_SUFFIX, format::TIME_INDEX_SUFFIX, format::KEY_INDEX_SUFFIX]
                    .iter()
                    .any(|s| format::parse_file_name(n, s).is_some_and(|b| bases.binary_search(&b).is_err()));
                if n.ends_with(".tmp") || orphan_index {
                    let p = self.dir.join(n);
                    self.storage.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    self.report.removed_files.push(p);
                }
            }
        }
        Ok(bases)
    }

    /// Opens the last segment. One too short for its header is what a crash during a roll (or
    /// the very first create) leaves: it never held a frame, so it is removed (when writable) and
    /// the one before becomes the last. `None` when no segment is left.
    fn open_active(&mut self, bases: &mut Vec<u64>) -> Result<Option<Arc<dyn StorageFile>>> {
        while let Some(&last) = bases.last() {
            let path = seg_path(self.dir, last);
            let mode = if self.writable { OpenMode::ReadWrite } else { OpenMode::Read };
            let file = self.storage.open(&path, mode).map_err(|e| Error::io("open", &path, e))?;
            let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
            match segment::check_header(file.as_ref(), &path, last) {
                Ok(_) => return Ok(Some(file)),
                Err(_) if len <= SEGMENT_HEADER_LEN as u64 => {
                    if self.writable {
                        self.storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                        index::remove_index_files(self.storage, self.dir, last);
                        self.storage.sync_dir(self.dir).map_err(|e| Error::io("fsync directory", self.dir, e))?;
                        self.report.removed_files.push(path);
                    }
                    bases.pop();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The checkpoint, if it names a segment we have and a position inside it (rule 2);
    /// otherwise the first frame of the last segment.
    fn start_point(&mut self, bases: &[u64], active: &Arc<dyn StorageFile>) -> Start {
        let last_idx = bases.len().saturating_sub(1);
        let ckpt = checkpoint::read(self.storage, self.dir).and_then(|c| {
            let i = bases.binary_search(&c.segment_base).ok()?;
            let len = if i == last_idx {
                active.len().ok()?
            } else {
                self.storage.open(&seg_path(self.dir, c.segment_base), OpenMode::Read).ok()?.len().ok()?
            };
            (c.position <= len).then_some((i, c))
        });
        self.report.checkpoint_used = ckpt.is_some();
        match ckpt {
            Some((idx, c)) => Start { idx, pos: c.position, next: c.next_offset, trusted: c.position },
            None => {
                let base = bases.get(last_idx).copied().unwrap_or(0);
                let header = SEGMENT_HEADER_LEN as u64;
                Start { idx: last_idx, pos: header, next: base, trusted: header }
            }
        }
    }

    /// Verifies the sealed segments from the start up to the active one (a roll whose checkpoint
    /// was lost leaves some). Continues with the offset the active segment must start at; breaks
    /// with the repaired log when `Repair` cut one of them.
    fn verify_sealed(&mut self, bases: &[u64], start: &Start) -> Result<ControlFlow<Recovered, u64>> {
        let last_idx = bases.len().saturating_sub(1);
        let mut next = start.next;
        for (i, (base, next_base)) in crate::log::consecutive(bases).enumerate().skip(start.idx) {
            let path = seg_path(self.dir, base);
            let file = self.storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
            let compacted = segment::check_header(file.as_ref(), &path, base)? & format::SEGMENT_FLAG_COMPACTED != 0;
            let from = if i == start.idx { start.pos } else { SEGMENT_HEADER_LEN as u64 };
            if i != start.idx && next != base {
                let e = format!("segment starts at offset {base}, previous ended at {next}");
                return Err(Error::corruption(&path, 0, Some(next), e));
            }
            let s = self.scan(&file, &path, base, from, next, None)?;
            let bad = match s.bad {
                Some((pos, err)) => {
                    Some(Error::corruption(&path, pos, Some(s.complete_next), format!("sealed segment: {err}")))
                }
                // A compacted segment may have lost its last records: it ends at or before the next base.
                None if compacted && s.complete_next <= next_base => None,
                None if s.complete_next != next_base => Some(Error::corruption(
                    &path,
                    s.complete_pos,
                    Some(s.complete_next),
                    format!("segment ends before offset {next_base}, where the next one starts"),
                )),
                None => None,
            };
            if let Some(e) = bad {
                return self.repair_or_fail(bases, i, s.complete_pos, s.complete_next, e).map(ControlFlow::Break);
            }
            next = if compacted { next_base } else { s.complete_next };
        }
        debug_assert!(start.idx <= last_idx);
        Ok(ControlFlow::Continue(next))
    }

    /// Scans the active segment from where its index files (or the checkpoint) let it start,
    /// then decides what any bad bytes after the last complete batch are (rules 3–4).
    fn recover_active(
        &mut self,
        bases: Vec<u64>,
        active: Arc<dyn StorageFile>,
        start: &Start,
        next: u64,
    ) -> Result<Recovered> {
        let last_idx = bases.len().saturating_sub(1);
        let last = bases.last().copied().unwrap_or(0);
        let path = seg_path(self.dir, last);
        let in_active = start.idx == last_idx;
        let trusted = if in_active { start.trusted } else { SEGMENT_HEADER_LEN as u64 };
        let loaded = LoadedIndex::load(self.storage, self.dir, last, false);
        self.report.active_index_rebuilt = loaded.is_none();
        let (mut builder, from, from_next) = match loaded {
            Some(loaded) if in_active => {
                let (b, rel, pos) = IndexBuilder::resume(&loaded, self.opts.index_interval_bytes, trusted);
                (b, pos, last + rel)
            }
            _ => (IndexBuilder::new(last, self.opts.index_interval_bytes), SEGMENT_HEADER_LEN as u64, last),
        };
        if !in_active && next != last {
            let e = format!("segment starts at offset {last}, previous ended at {next}");
            return Err(Error::corruption(&path, 0, Some(next), e));
        }
        let s = self.scan(&active, &path, last, from, from_next, Some(&mut builder))?;
        if let Some((bad_pos, err)) = s.bad {
            let corrupt = |reason: String| Error::corruption(&path, bad_pos, Some(s.complete_next), reason);
            if bad_pos < trusted {
                let e = corrupt(format!("{err} before the recovery checkpoint"));
                return self.repair_or_fail(&bases, last_idx, s.complete_pos, s.complete_next, e);
            }
            // Read-only: the bytes past `complete_pos` may be a write in progress; stop before
            // them and change nothing.
            if self.writable {
                let len = active.len().map_err(|e| Error::io("stat", &path, e))?;
                let tail = active
                    .read_vec(s.complete_pos, byte_count(len - s.complete_pos, &path, s.complete_pos)?)
                    .map_err(|e| Error::io("read", &path, e))?;
                match classify_tail(&tail, s.complete_pos, s.complete_next) {
                    TailVerdict::Durable { proof_at, durable_offset } => {
                        let e = corrupt(format!(
                            "{err}; the frame at byte {proof_at} shows offsets below {durable_offset} were already durable"
                        ));
                        return self.repair_or_fail(&bases, last_idx, s.complete_pos, s.complete_next, e);
                    }
                    torn @ TailVerdict::Torn { .. } => {
                        self.cut_torn_tail(active.as_ref(), &path, last, s.complete_pos, &tail, torn)?;
                    }
                }
            }
        }
        if self.writable {
            self.finish_writable(&active, &path, &builder, last, s.complete_pos, s.complete_next)?;
        }
        Ok(Recovered {
            bases,
            active_file: active,
            index: builder,
            position: s.complete_pos,
            next_offset: s.complete_next,
            report: std::mem::take(&mut self.report),
        })
    }
    /// Cuts the torn tail `tail` of the active segment `last` off at `complete_pos` (a copy kept
    /// in `quarantine/` under `RecoveryMode::Repair`), and reports what was cut.
    fn cut_torn_tail(
        &mut self,
        active: &dyn StorageFile,
        path: &Path,
        last: u64,
        complete_pos: u64,
        tail: &[u8],
        verdict: TailVerdict,
    ) -> Result<()> {
        let TailVerdict::Torn { dropped_records, zero_tail_bytes, truncated_bytes } = verdict else { return Ok(()) };
        if self.opts.recovery == RecoveryMode::Repair && truncated_bytes > 0 {
            // Repair never deletes data: keep a copy of the torn bytes.
            let torn = tail.get(..byte_count(truncated_bytes, path, complete_pos)?).unwrap_or_default();
            let saved = save_to_quarantine(self.storage, self.dir, last, complete_pos, torn)?;
            self.report.quarantined_files.push(saved);
        }
        active.set_len(complete_pos).map_err(|e| Error::io("truncate", path, e))?;
        self.report.zero_tail_bytes = zero_tail_bytes;
        self.report.truncated_bytes = truncated_bytes;
        self.report.dropped_records = dropped_records;
        Ok(())
    }

    /// Scans a segment from `from` (expecting offset `next`), feeding complete batches to `index`.
    fn scan(
        &mut self,
        file: &Arc<dyn StorageFile>,
        path: &Path,
        base: u64,
        from: u64,
        next: u64,
        mut index: Option<&mut IndexBuilder>,
    ) -> Result<Scan> {
        // A compacted segment (sealed, or made active again by a repair) may skip offsets; a
        // compressed one (sealed) is read block by block.
        let mut cursor = segment::sealed_cursor(file.clone(), path, base, from, self.opts.read_buffer_bytes)?;
        let s = segment::scan_batches(&mut cursor, base, next, |rel, pos, flen, ts| {
            if let Some(ix) = index.as_deref_mut() {
                ix.push(rel, pos, flen, ts);
            }
        })?;
        self.report.scanned_records += s.frames;
        self.report.scanned_bytes += s.bytes;
        Ok(s)
    }

    /// Makes everything recovery kept durable (so nothing read now can vanish in a later power
    /// cut), writes the active index and a checkpoint at the end.
    fn finish_writable(
        &self,
        active: &Arc<dyn StorageFile>,
        path: &Path,
        builder: &IndexBuilder,
        base: u64,
        position: u64,
        next: u64,
    ) -> Result<()> {
        active.sync_data().map_err(|e| Error::io("fsync", path, e))?;
        index::write_index_files(self.storage, self.dir, builder);
        let mut ck = checkpoint::CheckpointFile::open(self.storage, self.dir)?;
        ck.write(format::Checkpoint { segment_base: base, position, next_offset: next })
    }

    /// A new, empty log whose first offset is `base`.
    fn fresh(&mut self, base: u64) -> Result<Recovered> {
        let file = segment::create_segment(self.storage, self.dir, base)?;
        let builder = IndexBuilder::new(base, self.opts.index_interval_bytes);
        let path = seg_path(self.dir, base);
        self.finish_writable(&file, &path, &builder, base, SEGMENT_HEADER_LEN as u64, base)?;
        self.report.checkpoint_used = false;
        Ok(Recovered {
            bases: vec![base],
            active_file: file,
            index: builder,
            position: SEGMENT_HEADER_LEN as u64,
            next_offset: base,
            report: std::mem::take(&mut self.report),
        })
    }
}

/// A count of bytes at `position` of `path` to read into memory, as a `usize`.
fn byte_count(n: u64, path: &Path, position: u64) -> Result<usize> {
    usize::try_from(n)
        .map_err(|_| Error::corruption(path, position, None, format!("{n} bytes do not fit in this machine's memory")))
}
