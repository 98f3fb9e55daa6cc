//! The one path that rewrites a sealed segment (compaction and compression both use it): open
//! the segment and note what it is, write the new bytes into a fresh temp file, fdatasync it,
//! swap it in under the writer lock if the segment is still the file that was read.
//!
//! Invariants:
//! - One owner at a time: `Rewrites::owner` is held for the whole of `Log::compact`,
//!   `Log::compress`, `Log::backup_into` (its links and copies of sealed segments) and
//!   `Log::remove_before` (retention). Drop-oldest budgets remove segments on the append path
//!   without it, under the writer lock; the swap sees that the segment is gone.
//! - A rewrite never changes a segment in place and never shares a temp file: the new bytes go
//!   to `<segment>.<kind>.<n>.tmp` (`n` unique in the process), created new (never truncating
//!   someone else's), fdatasynced, renamed over the segment under the writer lock, and the
//!   directory fsynced. A crash leaves the old segment or the new one; a leftover `.tmp` is
//!   removed when the log next opens for writing.
//! - The swap replaces only the file that was read: the segment is still in the log, no swap
//!   replaced it since (`Rewrites::swaps`), and its length and header flags are those read.
//!   Otherwise the temp file is removed, nothing changes, and the rewrite reports nothing done.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format;
use crate::log::Shared;
use crate::log::index::IndexBuilder;
use crate::log::segment;
use crate::storage::{OpenMode, StorageFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Makes temp names unique within the process (the directory lock keeps other processes out).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a sealed segment was when a rewrite read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// File length.
    pub len: u64,
    /// Header flags (compacted, compressed).
    pub flags: u16,
    /// How many times this log swapped the segment before (`Rewrites::swaps`).
    swaps: u64,
}

/// A sealed segment opened for a rewrite.
#[derive(Debug)]
pub(crate) struct Input {
    pub base: u64,
    /// The offset after the segment's records (the next segment's base).
    pub end: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub identity: Identity,
}

/// The one owner of sealed-segment rewrites: its lock, and how many times each segment was
/// swapped (a swap replaces only the file its rewrite read).
#[derive(Debug, Default)]
pub(crate) struct Rewrites {
    owner: Mutex<()>,
    swaps: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    /// Takes the log's rewrite lock: held by whatever rewrites, links or removes sealed files
    /// outside the append path (see the module docs).
    pub(crate) fn rewrite_owner(&self) -> MutexGuard<'_, ()> {
        crate::sync::lock(&self.rewrites.owner)
    }

    /// How many times segment `base` was swapped by this handle.
    fn swaps_of(&self, base: u64) -> u64 {
        crate::sync::lock(&self.rewrites.swaps).get(&base).copied().unwrap_or(0)
    }

    /// Opens sealed segment `base` (records up to `end`) for a rewrite and notes what it is;
    /// `None` when a drop-oldest budget removed it since it was listed.
    pub(crate) fn open_for_rewrite(&self, base: u64, end: u64) -> Result<Option<Input>> {
        let path = self.dir.join(format::segment_file_name(base));
        let swaps = self.swaps_of(base);
        let file = match self.opts.storage.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.published.view().bases.contains(&base) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let flags = segment::check_header(file.as_ref(), &path, base)?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        Ok(Some(Input { base, end, path, file, identity: Identity { len, flags, swaps } }))
    }

    /// Whether segment `base` is still the file `input` read (under the writer lock).
    fn still_as_read(&self, input: &Input) -> Result<bool> {
        if self.swaps_of(input.base) != input.identity.swaps {
            return Ok(false);
        }
        let file = match self.opts.storage.open(&input.path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", &input.path, e)),
        };
        let len = file.len().map_err(|e| Error::io("stat", &input.path, e))?;
        let flags = segment::check_header(file.as_ref(), &input.path, input.base)?;
        Ok(len == input.identity.len && flags == input.identity.flags)
    }

    /// Writes a replacement of `input` with `write` (given the new file and its path; returns
    /// the new file's index and length) into a temp file of its own, fdatasyncs it and swaps it
    /// in if the segment is still the one read. Returns the new length, or `None` when the
    /// segment went or changed meanwhile (nothing changed then).
    pub(crate) fn replace_sealed(
        &self,
        input: &Input,
        kind: &str,
        write: impl FnOnce(&dyn StorageFile, &Path) -> Result<(IndexBuilder, u64)>,
    ) -> Result<Option<u64>> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = PathBuf::from(format!("{}.{kind}.{n}.tmp", input.path.display()));
        let storage = self.opts.storage.as_ref();
        let written =
            storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create", &tmp, e)).and_then(|out| {
                let (index, len) = write(out.as_ref(), &tmp)?;
                out.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
                Ok((index, len))
            });
        let swapped = written.and_then(|(index, len)| {
            let swapped = self.swap_sealed(input.base, input.end, &tmp, &index, || self.still_as_read(input))?;
            if swapped {
                *crate::sync::lock(&self.rewrites.swaps).entry(input.base).or_insert(0) += 1;
            }
            Ok(swapped.then_some(len))
        });
        if !matches!(swapped, Ok(Some(_))) {
            // Not swapped (or failed before the rename): the temp file is ours alone to remove.
            let _ = storage.remove_file(&tmp);
        }
        swapped
    }
}
