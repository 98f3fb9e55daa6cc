//! Memory maps of real files: the crate's only `unsafe` code.
//!
//! Two kinds of map, each made in one function below:
//! - [`map_read`]: a read-only map of a file that no writer changes again (sealed segments,
//!   index files).
//! - [`map_write`]: a writable shared map of the active segment, written by the writer lock's
//!   holder only, and only below the blocks `fallocate` gave it.
//!
//! - [`map_published`]: a read-only map of the active segment for in-process readers, read
//!   only below the published end (bytes that never change while the log is open);
//!
//! and one unsafe advice: [`ReadMap::release`] (`MADV_DONTNEED` behind a sequential scan).
//!
//! What could still go wrong, and why it does not: a map of a file that shrinks under it raises
//! `SIGBUS` on the next touch of a page past the new end. evlog never truncates a file it has
//! mapped (the writer drops its write map before trimming the active segment; sealed segments are
//! unlinked or renamed, never truncated, which leaves existing maps intact), and the writer lock
//! keeps other evlog writers out. A foreign process that truncates evlog's files is outside what
//! any map-based design can defend against; ARCHITECTURE.md says so.

#![allow(unsafe_code)]

use super::{SharedBytes, WriteMap, past_allocation};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// A read-only map of the whole file as it is now.
pub(super) fn map_read(file: &File) -> io::Result<SharedBytes> {
    if file.metadata()?.len() == 0 {
        // Mapping an empty file fails on Linux; there is nothing to map.
        return Ok(SharedBytes::from_vec(Vec::new()));
    }
    // SAFETY: a map is undefined behaviour if the file changes under it. This is only called
    // (through `StorageFile::map`, which needs a token only evlog can make) for files that no
    // writer changes again: sealed segments (never written or truncated after the roll that
    // sealed them; retention and repair unlink or rename them, which leaves a map intact) and
    // index files (replaced by rename, never rewritten in place).
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(SharedBytes::from_map(ReadMap(map)))
}

/// A read-only map (see [`map_read`]).
pub(super) struct ReadMap(memmap2::Mmap);

impl ReadMap {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lets the process drop this map's pages in `[offset, offset + len)` (page-aligned by
    /// memmap2): they stay in the page cache, and a later touch maps the same bytes again. A
    /// sequential scan calls it behind its cursor so that reading a 10 GiB log leaves no trail
    /// in RSS. Best effort.
    pub(super) fn release(&self, offset: usize, len: usize) {
        // SAFETY: MADV_DONTNEED on a read-only *shared file* mapping only removes the pages from
        // the process's page tables; the next access maps the file's bytes again, unchanged (it
        // zeroes memory only for private or anonymous mappings, which this is not). No reference
        // into the map is invalidated and no byte it reads changes.
        let _ = unsafe { self.0.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    }

    /// Maps the pages of `[offset, offset + len)` into the process in one call (reading them
    /// into the page cache if needed), so a scan that is about to read them takes no page fault
    /// per page. Best effort: kernels before 5.14 do not know the advice.
    pub(super) fn prefetch(&self, offset: usize, len: usize) {
        let _ = self.0.advise_range(memmap2::Advice::PopulateRead, offset, len);
    }
}

/// A read-only map of `file`'s first `len_max` bytes (which may reach past its end) that is read
/// only through [`PublishedMap::prefix`]: the active segment as its in-process readers see it,
/// without a `pread` per read.
pub(super) fn map_published(file: &File, len_max: u64) -> io::Result<PublishedMap> {
    let len = usize::try_from(len_max).map_err(|_| io::Error::other("map longer than the address space"))?;
    // SAFETY: making the map reads nothing. Its bytes are only ever read through `prefix`, whose
    // contract keeps every read below the log's published end (see there).
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(PublishedMap(map))
}

/// See [`map_published`].
pub(super) struct PublishedMap(memmap2::Mmap);

impl PublishedMap {
    /// The map's first `len` bytes, or `None` past its length.
    ///
    /// Contract (the caller's, `SharedBytes::published_prefix`): `len` is at most the log's
    /// published end in this segment, read under the view that says so.
    pub(super) fn prefix(&self, len: usize) -> Option<&[u8]> {
        if len > self.0.len() {
            return None;
        }
        // SAFETY: the map is `self.0.len()` bytes long, so the range is inside it. Bytes below
        // the published end exist in the file (published ≤ written ≤ the file's length) and are
        // never written again while the log is open: appends go past the end, a trim cuts only
        // preallocated space past the last frame, and recovery truncates only at open, before
        // any map of the segment exists. So the slice neither faults nor changes while borrowed.
        // `as_ptr` points at the start of the map, which lives as long as `self`.
        Some(unsafe { std::slice::from_raw_parts(self.0.as_ptr(), len) })
    }
}

/// A writable shared map of `file`'s first `len_max` bytes (which may reach past its end: pages
/// there are never touched until `allocate` gave them blocks).
pub(super) fn map_write(file: &File, len_max: u64) -> io::Result<Box<dyn WriteMap>> {
    let len = usize::try_from(len_max).map_err(|_| io::Error::other("map longer than the address space"))?;
    let allocated = file.metadata()?.len().min(len_max);
    let file = file.try_clone()?;
    // SAFETY: the map is written only through `RealWriteMap::write`, which copies into bytes
    // below `allocated`: bytes of the file that exist and have disk blocks, so no touch faults.
    // Nothing else in the process reads or writes this memory (readers of the active segment use
    // `pread`, which the page cache keeps coherent with the map), and evlog never shrinks the
    // file while the map lives (the writer drops it before trimming). Another evlog writer
    // cannot open the log (directory lock).
    let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? };
    Ok(Box::new(RealWriteMap { file, map, allocated }))
}

/// The page size assumed for aligning prefault requests (a multiple of it on every Linux
/// platform evlog runs on).
const PAGE_BYTES: u64 = 4096;

/// A block of zeros for bringing allocated pages into the page cache.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

struct RealWriteMap {
    file: File,
    map: memmap2::MmapMut,
    allocated: u64,
}

impl std::fmt::Debug for RealWriteMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealWriteMap({} bytes mapped, {} allocated)", self.map.len(), self.allocated)
    }
}

impl WriteMap for RealWriteMap {
    fn allocated(&self) -> u64 {
        self.allocated
    }

    fn allocate(&mut self, upto: u64) -> io::Result<()> {
        let upto = upto.min(self.map.len() as u64);
        if upto <= self.allocated {
            return Ok(());
        }
        let len = libc::off_t::try_from(upto).map_err(|_| io::Error::other("allocation past off_t"))?;
        loop {
            // SAFETY: fallocate reads no memory of ours; the descriptor is owned by `self.file`.
            // Mode 0 allocates real blocks (not a hole) and extends the file's size to `upto`.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len) };
            if r == 0 {
                // Bring the new pages into the page cache with a write of zeros (a page fault
                // on an unwritten block zero-fills the page through the read path: about 4×
                // slower here), then map them writable in one call rather than one trap per
                // page on the append path. Both best effort: the blocks are allocated already;
                // kernels before 5.14 do not know the advice.
                let mut at = self.allocated;
                while at < upto {
                    let n = (upto - at).min(ZEROS.len() as u64);
                    if self.file.write_all_at(ZEROS.get(..n as usize).unwrap_or(&ZEROS), at).is_err() {
                        break;
                    }
                    at += n;
                }
                let from = self.allocated - self.allocated % PAGE_BYTES;
                if let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(upto)) {
                    let _ = self.map.advise_range(memmap2::Advice::PopulateWrite, from, to - from);
                }
                self.allocated = upto;
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn write(&mut self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.write_with(pos, data.len(), &mut |target| target.copy_from_slice(data))
    }

    fn write_with(&mut self, pos: u64, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let end = pos.saturating_add(len as u64);
        if end > self.allocated {
            return Err(past_allocation(pos, len, self.allocated));
        }
        let (Ok(start), Ok(end)) = (usize::try_from(pos), usize::try_from(end)) else {
            return Err(past_allocation(pos, len, self.allocated));
        };
        match self.map.get_mut(start..end) {
            Some(target) => {
                fill(target);
                Ok(())
            }
            None => Err(past_allocation(pos, len, self.allocated)),
        }
    }
}
