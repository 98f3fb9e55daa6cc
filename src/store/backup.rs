//! Online backup of a whole store into a new directory, while the application appends and
//! commits.
//!
//! Consistency: the consumer database is copied first, with its writes held off (so each
//! commit, `commit_with` state included, is in the copy whole or not at all); then each topic is
//! copied up to the end readers see right after. Every committed offset in the copy is therefore
//! at or below its topic's end in the copy, and every topic holds everything up to a moment no
//! earlier than the groups' commits. Sealed segments are hard-linked when the destination is on
//! the same file system (they never change); the rest is copied and fdatasynced, and every new
//! directory's name made durable. A failed backup removes what it wrote; the source is never
//! written.

use crate::error::{Error, Result};
use crate::format::topic_config::TOPIC_CONFIG_FILE;
use crate::storage::{OpenMode, create_dir_durable, replace_file_durable};
use crate::store::Store;
use std::path::Path;

/// What [`Store::backup`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Topics copied.
    pub topics: u64,
    /// Records in the copy (offset ranges of its topics).
    pub records: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Bytes of sealed segments hard-linked instead of copied.
    pub bytes_linked: u64,
    /// Keys of the consumer database copied (group offsets, queue state, application state).
    pub state_keys: u64,
}

impl Store {
    /// Writes a consistent copy of this store into `dest`, a directory that must not exist or
    /// be empty (see the module docs for what "consistent" means). The copy opens, verifies and
    /// serves reads on its own. On failure (a full disk, say) the partial copy is removed and
    /// the error returned; the store itself is untouched.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref();
        crate::trace::span!("evlog.backup", dest = %dest.display());
        let storage = self.inner().storage();
        match storage.list_dir(dest) {
            Ok(names) if !names.is_empty() => {
                return Err(Error::InvalidOptions {
                    reason: format!("backup destination {} is not empty", dest.display()),
                });
            }
            _ => {}
        }
        let r = self.backup_unchecked(dest);
        if r.is_err() {
            let _ = storage.remove_dir_all(dest);
            if let Some(parent) = dest.parent() {
                let _ = storage.sync_dir(parent);
            }
        }
        r
    }

    fn backup_unchecked(&self, dest: &Path) -> Result<BackupReport> {
        let inner = self.inner();
        let storage = inner.storage();
        let mut report = BackupReport::default();
        for d in [dest.to_path_buf(), dest.join("topics"), dest.join("trash")] {
            create_dir_durable(storage, &d).map_err(|e| Error::io("create directory", &d, e))?;
        }
        let state_dir = dest.join("consumers");
        create_dir_durable(inner.opts.state_storage.as_ref(), &state_dir)
            .map_err(|e| Error::io("create directory", &state_dir, e))?;
        report.state_keys = inner.state.backup_into(&state_dir)?;
        for name in self.topics()? {
            // Held, never opened anew: a topic deleted since it was listed is not in the copy,
            // and a delete waits for its copy to end instead of failing.
            let Some(hold) = self.hold_topic(&name, true)? else { continue };
            let Some(topic) = hold.topic() else { continue };
            let to = dest.join("topics").join(&name);
            let b = topic.backup_into(&to)?;
            report.topics += 1;
            report.records += b.next_offset - b.first_offset;
            report.bytes_copied += b.bytes_copied;
            report.bytes_linked += b.bytes_linked;
            let config = inner.topics_dir().join(&name).join(TOPIC_CONFIG_FILE);
            if let Ok(f) = storage.open(&config, OpenMode::Read) {
                let len = f.len().map_err(|e| Error::io("stat", &config, e))?;
                let bytes =
                    f.read_vec(0, usize::try_from(len).unwrap_or(0)).map_err(|e| Error::io("read", &config, e))?;
                let target = to.join(TOPIC_CONFIG_FILE);
                replace_file_durable(storage, &target, &bytes).map_err(|e| Error::io(e.op, &target, e.source))?;
            }
        }
        let topics = dest.join("topics");
        storage.sync_dir(&topics).map_err(|e| Error::io("fsync directory", &topics, e))?;
        Ok(report)
    }
}
