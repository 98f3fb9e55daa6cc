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

use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::checkpoint;
use crate::log::index::{self, IndexBuilder, LoadedIndex};
use crate::log::options::{Options, RecoveryMode};
use crate::log::segment::{self, FrameCursor, Scan, Source};
use crate::storage::{OpenMode, Storage, StorageFile};
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

/// Scans a segment from `from` (expecting offset `next`), feeding complete batches to `index`.
fn scan(
    ctx: &mut Ctx<'_>,
    file: &Arc<dyn StorageFile>,
    path: &Path,
    base: u64,
    from: u64,
    next: u64,
    mut index: Option<&mut IndexBuilder>,
) -> Result<Scan> {
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let mut cursor =
        FrameCursor::new(Source::File(file.clone()), path.to_path_buf(), from, len, ctx.opts.read_buffer_bytes);
    let s = segment::scan_batches(&mut cursor, base, next, |rel, pos, flen, ts| {
        if let Some(ix) = index.as_deref_mut() {
            ix.push(rel, pos, flen, ts);
        }
    })?;
    ctx.report.scanned_records += s.frames;
    ctx.report.scanned_bytes += s.bytes;
    Ok(s)
}

/// Counts valid frames in `file` from `from` and finds whether any proves (by its
/// `durable_offset`) that an offset >= `next` was durable. Returns (valid frames, proof).
/// Also returns how many bytes at the very end are zeros (preallocated space).
fn frames_after(file: &dyn StorageFile, path: &Path, from: u64, next: u64) -> Result<Tail> {
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    let tail = file
        .read_vec(from, byte_count(len.saturating_sub(from), path, from)?)
        .map_err(|e| Error::io("read", path, e))?;
    let zeros = tail.iter().rev().take_while(|&&b| b == 0).count() as u64;
    let (mut count, mut proof, mut at) = (0u64, None, 0usize);
    while let Some((p, f)) = format::find_valid_frame(&tail, at) {
        count += 1;
        if f.durable_offset > next && proof.is_none() {
            proof = Some((from + p as u64, f.durable_offset));
        }
        at = p + f.len;
    }
    Ok(Tail { valid_frames: count, proof, zeros })
}

/// What lies after the last complete batch of the active segment.
struct Tail {
    /// Valid frames in it (at any offset).
    valid_frames: u64,
    /// The first frame proving (by its `durable_offset`) that data there was durable:
    /// (its position, its durable offset).
    proof: Option<(u64, u64)>,
    /// Zero bytes at the very end.
    zeros: u64,
}

/// Runs recovery. `writable`: the caller holds the directory lock and may truncate, remove,
/// quarantine and write. Otherwise nothing is changed.
pub(crate) fn recover(storage: &dyn Storage, dir: &Path, opts: &Options, writable: bool) -> Result<Recovered> {
    let mut ctx = Ctx { storage, dir, opts, writable, report: RecoveryReport::default() };
    let names = storage.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX)).collect();
    bases.sort_unstable();
    if writable {
        for n in &names {
            let orphan_index = [format::OFFSET_INDEX_SUFFIX, format::TIME_INDEX_SUFFIX]
                .iter()
                .any(|s| format::parse_file_name(n, s).is_some_and(|b| bases.binary_search(&b).is_err()));
            if n.ends_with(".tmp") || orphan_index {
                let p = dir.join(n);
                storage.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                ctx.report.removed_files.push(p);
            }
        }
    }

    // A last segment too short for its header is what a crash during a roll (or during the
    // very first create) leaves: it never held a frame, so it is removed.
    let active = loop {
        let Some(&last) = bases.last() else {
            if !writable {
                return Err(Error::io(
                    "open",
                    dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no segment files: not an evlog directory (yet)"),
                ));
            }
            let base = ctx
                .report
                .removed_files
                .iter()
                .filter_map(|p| {
                    p.file_name()?.to_str().and_then(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX))
                })
                .min()
                .unwrap_or(0);
            return fresh(ctx, base);
        };
        let path = seg_path(dir, last);
        let file = storage
            .open(&path, if writable { OpenMode::ReadWrite } else { OpenMode::Read })
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        match segment::check_header(file.as_ref(), &path, last) {
            Ok(()) => break file,
            Err(_) if len <= SEGMENT_HEADER_LEN as u64 => {
                if writable {
                    storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                    index::remove_index_files(storage, dir, last);
                    storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
                    ctx.report.removed_files.push(path);
                }
                bases.pop();
            }
            Err(e) => return Err(e),
        }
    };
    // The loop above left at least the active segment in `bases`.
    let (Some(last_idx), Some(&last)) = (bases.len().checked_sub(1), bases.last()) else {
        return Err(Error::corruption(dir, 0, None, "no segment left after recovery's checks"));
    };

    // Where to start: the checkpoint, if it names a segment we have and a position inside it.
    let ckpt = checkpoint::read(storage, dir).and_then(|c| {
        let i = bases.binary_search(&c.segment_base).ok()?;
        let len = if i == last_idx {
            active.len().ok()?
        } else {
            storage.open(&seg_path(dir, c.segment_base), OpenMode::Read).ok()?.len().ok()?
        };
        (c.position <= len).then_some((i, c))
    });
    ctx.report.checkpoint_used = ckpt.is_some();
    let (start_idx, start_pos, start_next, trusted_pos) = match ckpt {
        Some((i, c)) => (i, c.position, c.next_offset, c.position),
        None => (last_idx, SEGMENT_HEADER_LEN as u64, last, SEGMENT_HEADER_LEN as u64),
    };

    // Sealed segments after the checkpoint (a roll whose checkpoint was lost): verify them.
    let mut next = start_next;
    for (i, &base) in bases.iter().enumerate().take(last_idx).skip(start_idx) {
        let path = seg_path(dir, base);
        let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
        segment::check_header(file.as_ref(), &path, base)?;
        let from = if i == start_idx { start_pos } else { SEGMENT_HEADER_LEN as u64 };
        if i != start_idx && next != base {
            return Err(Error::corruption(
                &path,
                0,
                Some(next),
                format!("segment starts at offset {base}, previous ended at {next}"),
            ));
        }
        let s = scan(&mut ctx, &file, &path, base, from, next, None)?;
        if let Some((pos, err)) = s.bad {
            let e = Error::corruption(&path, pos, Some(s.complete_next), format!("sealed segment: {err}"));
            return repair_or_fail(ctx, &bases, i, s.complete_pos, s.complete_next, e);
        }
        next = s.complete_next;
        // `i < last_idx`, so a next segment exists.
        let next_base = bases.get(i + 1).copied().unwrap_or(last);
        if next != next_base {
            let e = Error::corruption(
                &path,
                s.complete_pos,
                Some(next),
                format!("segment ends before offset {next_base}, where the next one starts"),
            );
            return repair_or_fail(ctx, &bases, i, s.complete_pos, s.complete_next, e);
        }
    }

    // The active segment: resume its index from the index files when they cover trusted bytes.
    let path = seg_path(dir, last);
    let trusted_here = if start_idx == last_idx { trusted_pos } else { SEGMENT_HEADER_LEN as u64 };
    let loaded = LoadedIndex::load(storage, dir, last, false);
    ctx.report.active_index_rebuilt = loaded.is_none();
    let (mut builder, from, from_next) = match loaded {
        Some(loaded) if start_idx == last_idx => {
            let (b, rel, pos) = IndexBuilder::resume(&loaded, opts.index_interval_bytes, trusted_here);
            (b, pos, last + rel)
        }
        _ => (IndexBuilder::new(last, opts.index_interval_bytes), SEGMENT_HEADER_LEN as u64, last),
    };
    if start_idx != last_idx && next != last {
        return Err(Error::corruption(
            &path,
            0,
            Some(next),
            format!("segment starts at offset {last}, previous ended at {next}"),
        ));
    }
    let s = scan(&mut ctx, &active, &path, last, from, from_next, Some(&mut builder))?;
    let mut position = s.complete_pos;
    if let Some((bad_pos, err)) = s.bad {
        let corrupt = |reason: String| Error::corruption(&path, bad_pos, Some(s.complete_next), reason);
        if bad_pos < trusted_here {
            return repair_or_fail(
                ctx,
                &bases,
                last_idx,
                s.complete_pos,
                s.complete_next,
                corrupt(format!("{err} before the recovery checkpoint")),
            );
        }
        let Tail { valid_frames: valid_after, proof, zeros } =
            frames_after(active.as_ref(), &path, s.complete_pos, s.complete_next)?;
        if writable {
            if let Some((at, durable)) = proof {
                let e = corrupt(format!(
                    "{err}; the frame at byte {at} shows offsets below {durable} were already durable"
                ));
                return repair_or_fail(ctx, &bases, last_idx, s.complete_pos, s.complete_next, e);
            }
            let len = active.len().map_err(|e| Error::io("stat", &path, e))?;
            if opts.recovery == RecoveryMode::Repair && len - s.complete_pos > zeros {
                // Repair never deletes data: keep a copy of the torn bytes.
                let torn = active
                    .read_vec(s.complete_pos, byte_count(len - s.complete_pos - zeros, &path, s.complete_pos)?)
                    .map_err(|e| Error::io("read", &path, e))?;
                let saved = save_to_quarantine(storage, dir, last, s.complete_pos, &torn)?;
                ctx.report.quarantined_files.push(saved);
            }
            active.set_len(s.complete_pos).map_err(|e| Error::io("truncate", &path, e))?;
            ctx.report.zero_tail_bytes = zeros;
            ctx.report.truncated_bytes = len - s.complete_pos - zeros;
            ctx.report.dropped_records = valid_after;
        }
        // Read-only: the bytes past `complete_pos` may be a write in progress; stop before them.
        position = s.complete_pos;
    }
    if writable {
        finish_writable(&ctx, &active, &path, &builder, last, position, s.complete_next)?;
    }
    Ok(Recovered {
        bases,
        active_file: active,
        index: builder,
        position,
        next_offset: s.complete_next,
        report: ctx.report,
    })
}

/// Makes everything recovery kept durable (so nothing read now can vanish in a later power
/// cut), writes the active index and a checkpoint at the end.
fn finish_writable(
    ctx: &Ctx<'_>,
    active: &Arc<dyn StorageFile>,
    path: &Path,
    builder: &IndexBuilder,
    base: u64,
    position: u64,
    next: u64,
) -> Result<()> {
    active.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    index::write_index_files(ctx.storage, ctx.dir, builder);
    let mut ck = checkpoint::CheckpointFile::open(ctx.storage, ctx.dir)?;
    ck.write(format::Checkpoint { segment_base: base, position, next_offset: next })
}

/// A new, empty log whose first offset is `base`.
fn fresh(mut ctx: Ctx<'_>, base: u64) -> Result<Recovered> {
    let file = segment::create_segment(ctx.storage, ctx.dir, base)?;
    let builder = IndexBuilder::new(base, ctx.opts.index_interval_bytes);
    let path = seg_path(ctx.dir, base);
    finish_writable(&ctx, &file, &path, &builder, base, SEGMENT_HEADER_LEN as u64, base)?;
    ctx.report.checkpoint_used = false;
    Ok(Recovered {
        bases: vec![base],
        active_file: file,
        index: builder,
        position: SEGMENT_HEADER_LEN as u64,
        next_offset: base,
        report: ctx.report,
    })
}

/// In `Strict` mode (or read-only) returns `err`. In `Repair` mode cuts the log at `cut_pos` of
/// segment `idx`: the segment and every later one move into `quarantine/`, the segment's bytes
/// before `cut_pos` are written back under its name, and recovery ends there.
fn repair_or_fail(
    mut ctx: Ctx<'_>,
    bases: &[u64],
    idx: usize,
    cut_pos: u64,
    cut_next: u64,
    err: Error,
) -> Result<Recovered> {
    if !ctx.writable || ctx.opts.recovery != RecoveryMode::Repair {
        return Err(err);
    }
    let (storage, dir) = (ctx.storage, ctx.dir);
    let qdir = dir.join(format::QUARANTINE_DIR);
    crate::storage::create_dir_durable(storage, &qdir).map_err(|e| Error::io("create directory", &qdir, e))?;
    let Some(&base) = bases.get(idx) else { return Err(err) };
    let path = seg_path(dir, base);
    let prefix = {
        let f = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
        f.read_vec(0, byte_count(cut_pos, &path, 0)?).map_err(|e| Error::io("read", &path, e))?
    };
    for &b in bases.get(idx..).unwrap_or_default() {
        let from = seg_path(dir, b);
        let to = qdir.join(format!("{}.{}", format::segment_file_name(b), unique_suffix(storage, &qdir, b)));
        storage.rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
        index::remove_index_files(storage, dir, b);
        ctx.report.quarantined_files.push(to);
    }
    storage.sync_dir(&qdir).map_err(|e| Error::io("fsync directory", &qdir, e))?;
    // Renamed aside rather than truncated in place: a reader that mapped the old file keeps a
    // valid map of the old inode.
    let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
    file.write_all_at(&prefix, 0).map_err(|e| Error::io("write", &path, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    ctx.report.repaired_corruption = Some(err.to_string());
    // Re-index the rewritten segment from its start (it is now the active one).
    let mut builder = IndexBuilder::new(base, ctx.opts.index_interval_bytes);
    let s = scan(&mut ctx, &file, &path, base, SEGMENT_HEADER_LEN as u64, base, Some(&mut builder))?;
    if s.bad.is_some() || s.complete_next != cut_next {
        return Err(Error::corruption(
            &path,
            s.complete_pos,
            Some(s.complete_next),
            "segment prefix did not verify after repair",
        ));
    }
    finish_writable(&ctx, &file, &path, &builder, base, cut_pos, cut_next)?;
    Ok(Recovered {
        bases: bases.get(..=idx).unwrap_or_default().to_vec(),
        active_file: file,
        index: builder,
        position: cut_pos,
        next_offset: cut_next,
        report: ctx.report,
    })
}

/// A count of bytes at `position` of `path` to read into memory, as a `usize`.
fn byte_count(n: u64, path: &Path, position: u64) -> Result<usize> {
    usize::try_from(n)
        .map_err(|_| Error::corruption(path, position, None, format!("{n} bytes do not fit in this machine's memory")))
}

/// What [`Log::repair`](crate::Log::repair) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The first open in repair mode: torn tails cut, corruption after the checkpoint moved.
    pub at_open: RecoveryReport,
    /// Corruption found by verifying every sealed segment, as `Error::Corruption` describes it.
    pub sealed_corruption: Option<String>,
    /// Files moved into `quarantine/` because they follow that corruption.
    pub moved_files: Vec<PathBuf>,
    /// The second open, which cut the corrupt segment itself (when `sealed_corruption` is set).
    pub after_cut: Option<RecoveryReport>,
}

/// Moves every segment after `base` (and its index files) into `quarantine/` and drops the
/// caches (checkpoint, `base`'s index files) that would let recovery skip `base`'s bytes, so
/// that the next open in repair mode verifies `base` from its start and cuts it at the
/// corruption. The caller holds the directory lock. Never deletes a segment: each is renamed,
/// `quarantine/` is fsynced before the log's directory, so a power cut leaves every moved file
/// in one place or both, never in neither.
pub(crate) fn quarantine_after(storage: &dyn Storage, dir: &Path, base: u64) -> Result<Vec<PathBuf>> {
    let qdir = dir.join(format::QUARANTINE_DIR);
    crate::storage::create_dir_durable(storage, &qdir).map_err(|e| Error::io("create directory", &qdir, e))?;
    let names = storage.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut moved = Vec::new();
    for name in names {
        let later = [format::SEGMENT_SUFFIX, format::OFFSET_INDEX_SUFFIX, format::TIME_INDEX_SUFFIX]
            .iter()
            .any(|suffix| format::parse_file_name(&name, suffix).is_some_and(|b| b > base));
        if later {
            let (from, to) = (dir.join(&name), qdir.join(format!("{name}.moved")));
            storage.rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
            moved.push(to);
        }
    }
    storage.sync_dir(&qdir).map_err(|e| Error::io("fsync directory", &qdir, e))?;
    for cache in
        [format::CHECKPOINT_FILE.to_string(), format::offset_index_file_name(base), format::time_index_file_name(base)]
    {
        let p = dir.join(cache);
        match storage.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &p, e)),
        }
    }
    storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(moved)
}

/// Writes `bytes` (cut from segment `base` at `position`) into `quarantine/`, fsynced.
fn save_to_quarantine(storage: &dyn Storage, dir: &Path, base: u64, position: u64, bytes: &[u8]) -> Result<PathBuf> {
    let qdir = dir.join(format::QUARANTINE_DIR);
    crate::storage::create_dir_durable(storage, &qdir).map_err(|e| Error::io("create directory", &qdir, e))?;
    let path = qdir.join(format!(
        "{}.tail-at-{position}.{}",
        format::segment_file_name(base),
        unique_suffix(storage, &qdir, base)
    ));
    let f = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
    f.write_all_at(bytes, 0).map_err(|e| Error::io("write", &path, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
    storage.sync_dir(&qdir).map_err(|e| Error::io("fsync directory", &qdir, e))?;
    Ok(path)
}

/// A suffix that makes a quarantined file name unique (repairs may happen more than once).
fn unique_suffix(storage: &dyn Storage, qdir: &Path, base: u64) -> u64 {
    let existing = storage.list_dir(qdir).unwrap_or_default();
    let prefix = format::segment_file_name(base);
    (0u64..).find(|n| !existing.contains(&format!("{prefix}.{n}"))).unwrap_or(0)
}
