//! Repair: what `RecoveryMode::Repair` and `Log::repair` do with corruption. Never deletes a
//! byte: every file it takes out of the log is renamed into `quarantine/` (created durable), and
//! `quarantine/` is fsynced before the log's directory, so a power cut leaves a moved file in one
//! place or both, never in neither.

use super::{Ctx, Recovered, RecoveryReport, byte_count, seg_path};
use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::index::{self, IndexBuilder};
use crate::log::options::RecoveryMode;
use crate::storage::{OpenMode, Storage};
use std::path::{Path, PathBuf};

impl Ctx<'_> {
    /// In `Strict` mode (or read-only) returns `err`. In `Repair` mode cuts the log at `cut_pos` of
    /// segment `idx`: the segment and every later one move into `quarantine/`, the segment's bytes
    /// before `cut_pos` are written back under its name, and recovery ends there.
    pub(super) fn repair_or_fail(
        &mut self,
        bases: &[u64],
        idx: usize,
        cut_pos: u64,
        cut_next: u64,
        err: Error,
    ) -> Result<Recovered> {
        if !self.writable || self.opts.recovery != RecoveryMode::Repair {
            return Err(err);
        }
        let (storage, dir) = (self.storage, self.dir);
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
            self.report.quarantined_files.push(to);
        }
        storage.sync_dir(&qdir).map_err(|e| Error::io("fsync directory", &qdir, e))?;
        // Renamed aside rather than truncated in place: a reader that mapped the old file keeps a
        // valid map of the old inode.
        let file = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
        file.write_all_at(&prefix, 0).map_err(|e| Error::io("write", &path, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
        storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
        self.report.repaired_corruption = Some(err.to_string());
        // Re-index the rewritten segment from its start (it is now the active one).
        let mut builder = IndexBuilder::new(base, self.opts.index_interval_bytes);
        let s = self.scan(&file, &path, base, SEGMENT_HEADER_LEN as u64, base, Some(&mut builder))?;
        if s.bad.is_some() || s.complete_next != cut_next {
            return Err(Error::corruption(
                &path,
                s.complete_pos,
                Some(s.complete_next),
                "segment prefix did not verify after repair",
            ));
        }
        self.finish_writable(&file, &path, &builder, base, cut_pos, cut_next)?;
        Ok(Recovered {
            bases: bases.get(..=idx).unwrap_or_default().to_vec(),
            active_file: file,
            index: builder,
            position: cut_pos,
            next_offset: cut_next,
            report: std::mem::take(&mut self.report),
        })
    }
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
        let later =
            [format::SEGMENT_SUFFIX, format::OFFSET_INDEX_SUFFIX, format::TIME_INDEX_SUFFIX, format::KEY_INDEX_SUFFIX]
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
pub(super) fn save_to_quarantine(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    position: u64,
    bytes: &[u8],
) -> Result<PathBuf> {
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
