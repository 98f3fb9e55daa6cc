//! The recovery checkpoint file: where open may start scanning.
//!
//! Invariants:
//! - A checkpoint is written only after every frame before its position was fsynced, so it
//!   never points past durable data.
//! - It is overwritten in place and fsynced; a torn or lost one fails its checksum and recovery
//!   falls back to scanning the whole last segment. It is a cache, never the only copy of a fact.

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, CHECKPOINT_LEN, Checkpoint};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The open checkpoint file of a writable log.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    pub last: Option<Checkpoint>,
}

/// Reads the checkpoint; `None` when missing, torn or invalid.
pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Option<Checkpoint> {
    let f = storage.open(&dir.join(format::CHECKPOINT_FILE), OpenMode::Read).ok()?;
    let b = f.read_vec(0, CHECKPOINT_LEN).ok()?;
    format::decode_checkpoint(&b).ok()
}

impl CheckpointFile {
    /// Opens (or creates, fsyncing the directory) the checkpoint file.
    pub fn open(storage: &dyn Storage, dir: &Path) -> Result<Self> {
        let path = dir.join(format::CHECKPOINT_FILE);
        let file = match storage.open(&path, OpenMode::ReadWrite) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
                storage.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
                f
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        Ok(CheckpointFile { path, file, last: None })
    }

    /// Writes and fsyncs a checkpoint. The caller has fsynced the data it points at.
    pub fn write(&mut self, c: Checkpoint) -> Result<()> {
        self.file.write_all_at(&format::encode_checkpoint(&c), 0).map_err(|e| Error::io("write", &self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io("fsync", &self.path, e))?;
        self.last = Some(c);
        Ok(())
    }
}
