//! Following a log another process writes: a read-only handle looks at the directory again
//! for new frames and segments (`refresh`); waiting for a record (`Log::wait_for`).

use crate::error::{LogError as Error, LogResult as Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::log::index::IndexBuilder;
use crate::log::publish::Active;
use crate::log::{Shared, lock};
use crate::storage::OpenMode;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Shared {
    /// Read-only logs: looks at the directory again for new frames and segments. Returns whether
    /// anything new became visible.
    pub fn refresh(&self) -> Result<bool> {
        let _g = lock(&self.refresh_lock);
        let storage = self.opts.storage.as_ref();
        let names = storage.list_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        let mut bases: Vec<u64> =
            names.iter().filter_map(|n| format::parse_file_name(n, format::SEGMENT_SUFFIX)).collect();
        bases.sort_unstable();
        let (old_bases, active, mut next, mut end) = {
            let v = self.published.view();
            let (next, end) = self.published.visible();
            (v.bases.clone(), v.active.clone(), next, end)
        };
        // A newest segment still without a complete header is a roll in progress: not yet there.
        while bases.len() > 1 {
            let last = *bases.last().unwrap_or(&0);
            let path = self.dir.join(format::segment_file_name(last));
            let ok = storage
                .open(&path, OpenMode::Read)
                .ok()
                .is_some_and(|f| crate::log::segment::check_header(f.as_ref(), &path, last).is_ok());
            if ok {
                break;
            }
            bases.pop();
        }
        let Some(&last) = bases.last() else { return Ok(false) };
        let mut active = active;
        if last != active.base {
            let path = self.dir.join(format::segment_file_name(last));
            let file = storage.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
            let index = IndexBuilder::new(last, self.opts.index_interval_bytes);
            active = Arc::new(Active::new(last, path, file, index, &self.opts, false));
            next = last;
            end = SEGMENT_HEADER_LEN as u64;
            lock(&self.cache).forget_outside(bases.first().copied().unwrap_or(last), last);
        }
        // Scan the active segment from the published end, over complete batches only.
        let len = active.file.len().map_err(|e| Error::io("stat", &active.path, e))?;
        let mut cursor = active.cursor(end, len, self.opts.read_buffer_bytes);
        let scan = {
            let mut ix = lock(&active.index);
            crate::log::segment::scan_batches(&mut cursor, active.base, next, |rel, pos, flen, ts| {
                ix.push(rel, pos, flen, ts)
            })?
        };
        let (new_next, new_end) = (scan.complete_next, scan.complete_pos);
        let changed = bases != old_bases || new_next != next || !Arc::ptr_eq(&active, &self.published.view().active);
        if changed {
            {
                let mut v = self.published.view_mut();
                v.bases = bases;
                v.active = active;
                self.published.set_visible(new_next, new_end);
            }
            self.published.wake_waiters();
        }
        Ok(changed)
    }

    /// Blocks until a record at `offset` is readable or `timeout` passes (see `Log::wait_for`).
    pub(crate) fn wait_for(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        if self.read_only {
            self.refresh()?;
            return Ok(self.published.next_offset() > offset);
        }
        Ok(self.published.wait_for(offset, deadline, || self.poison.is_set()))
    }

    /// Like `wait_for`, busy-waiting up to `spin` first (see `Log::wait_for_spinning`).
    pub(crate) fn wait_for_spinning(&self, offset: u64, spin: Duration, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        if !self.read_only
            && !spin.is_zero()
            && self.published.spin_for(offset, spin.min(timeout), || self.poison.is_set())
        {
            return Ok(true);
        }
        self.wait_for(offset, timeout.saturating_sub(started.elapsed()))
    }
}
