//! A copy of a live log as it is at one moment: its sealed segments (hard-linked when the
//! storage allows: they never change; copied otherwise) and its active segment's bytes up to the
//! end readers could see then, each fdatasynced, and the directory fsynced. The copy is a valid
//! log on its own: recovery finds the copied active segment ending on a frame boundary.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format;
use crate::log::{Log, consecutive};
use crate::storage::{OpenMode, Storage, create_dir_durable};
use std::path::Path;

/// Bytes copied per read and write.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What [`Log::backup_into`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogBackup {
    /// The first offset and the offset after the last record in the copy.
    pub first_offset: u64,
    /// Offset after the copy's last record.
    pub next_offset: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Bytes of segments hard-linked instead of copied.
    pub bytes_linked: u64,
}

impl Log {
    /// Writes a copy of this log as it is now into the new directory `dest` (see the module
    /// docs): every record up to the end readers see at the call, nothing after. Appends go on
    /// meanwhile. `dest` must not hold a log; on failure it may hold part of one (the caller
    /// removes it).
    pub fn backup_into(&self, dest: &Path) -> Result<LogBackup> {
        let s = &self.shared;
        let storage = s.opts.storage.as_ref();
        // The sealed segments are linked while no compaction, compression or retention
        // rewrites or removes them (`rewrite.rs`); a drop-oldest budget still may, see below.
        let _owner = s.rewrite_owner();
        let (bases, active_base, (next, end)) = {
            let v = s.published.view();
            (v.bases.clone(), v.active.base, s.published.visible())
        };
        create_dir_durable(storage, dest).map_err(|e| Error::io("create directory", dest, e))?;
        let mut b = LogBackup { next_offset: next, ..LogBackup::default() };
        let mut first = None;
        let mut copied = Vec::new();
        for (base, _) in consecutive(&bases) {
            let name = format::segment_file_name(base);
            let (from, to) = (s.dir.join(&name), dest.join(&name));
            let done = match storage.hard_link(&from, &to) {
                Ok(()) => storage_len(storage, &to).map(|n| b.bytes_linked += n),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::io("link", &from, e)),
                Err(_) => copy_file(storage, &from, &to, None).map(|n| b.bytes_copied += n),
            };
            match done {
                Ok(()) => {
                    first.get_or_insert(base);
                    copied.push(to);
                }
                // A drop-oldest budget removed the oldest segments since (oldest first, so every
                // segment before this one too): the copy starts after them.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    for p in copied.drain(..) {
                        storage.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    }
                    first = None;
                }
                Err(e) => return Err(e),
            }
        }
        let name = format::segment_file_name(active_base);
        b.bytes_copied += copy_file(storage, &s.dir.join(&name), &dest.join(&name), Some(end))?;
        b.first_offset = first.unwrap_or(active_base);
        storage.sync_dir(dest).map_err(|e| Error::io("fsync directory", dest, e))?;
        Ok(b)
    }
}

fn storage_len(storage: &dyn Storage, path: &Path) -> Result<u64> {
    storage.open(path, OpenMode::Read).and_then(|f| f.len()).map_err(|e| Error::io("stat", path, e))
}

/// Copies `from` (its first `len` bytes, or all of it) to the new file `to` and fdatasyncs it;
/// returns the bytes copied.
fn copy_file(storage: &dyn Storage, from: &Path, to: &Path, len: Option<u64>) -> Result<u64> {
    let src = storage.open(from, OpenMode::Read).map_err(|e| Error::io("open", from, e))?;
    let len = match len {
        Some(l) => l,
        None => src.len().map_err(|e| Error::io("stat", from, e))?,
    };
    let dst = storage.open(to, OpenMode::CreateNew).map_err(|e| Error::io("create", to, e))?;
    let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES);
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from(len - at).unwrap_or(usize::MAX).min(COPY_CHUNK_BYTES);
        src.read_into(at, n, &mut buf).map_err(|e| Error::io("read", from, e))?;
        if buf.is_empty() {
            return Err(Error::corruption(from, at, None, format!("file ends at {at}, {len} bytes were visible")));
        }
        dst.write_all_at(&buf, at).map_err(|e| Error::io("write", to, e))?;
        at += buf.len() as u64;
    }
    dst.sync_data().map_err(|e| Error::io("fsync", to, e))?;
    Ok(len)
}
