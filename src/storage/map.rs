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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, mpsc};

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
    Ok(Box::new(RealWriteMap(map_shared(file, len_max)?)))
}

/// The map of [`map_write`] with what the background thread shares.
fn map_shared(file: &File, len_max: u64) -> io::Result<Arc<MapShared>> {
    let len = usize::try_from(len_max).map_err(|_| io::Error::other("map longer than the address space"))?;
    let allocated = file.metadata()?.len().min(len_max);
    let file = file.try_clone()?;
    // A raw map is safe to make (it hands out pointers only); what makes its use sound is the
    // SAFETY argument in `write_with`. It is written only through
    // `RealWriteMap::write_with`, which hands out bytes below `allocated`: bytes of the file
    // that exist and have disk blocks, so no touch faults. Nothing else in the process reads or
    // writes this memory: readers of the active segment use `pread` or their own read-only map
    // below the published end; the background allocator writes only at and past `allocated`,
    // through the file, and its populate advice changes no byte. evlog never shrinks the file
    // while the map lives (the writer drops it, which waits for the allocator, before trimming).
    // Another evlog writer cannot open the log (directory lock).
    let map = memmap2::MmapOptions::new().len(len).map_raw(&file)?;
    let shared = Arc::new(MapShared {
        file,
        map,
        allocated: AtomicU64::new(allocated),
        written_back: AtomicU64::new(0),
        whole_file_allocated: std::sync::atomic::AtomicBool::new(false),
        state: Mutex::new(AllocState::default()),
        idle: Condvar::new(),
    });
    Ok(shared)
}

/// The page size assumed for aligning prefault requests (a multiple of it on every Linux
/// platform evlog runs on).
const PAGE_BYTES: u64 = 4096;

/// How long a writer that caught up with a background allocation yields before it sleeps
/// until the allocation publishes the step it needs.
const ALLOCATION_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The most bytes handed to the kernel's write-back (`MapShared::write_back`) between two looks
/// at whether the writer wants an allocation first.
const WRITE_BACK_PIECE_BYTES: u64 = 1 << 20;

/// A block of zeros for bringing allocated pages into the page cache (and the step in which a
/// background allocation publishes what it allocated).
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The writer's handle of a write map. Dropping it waits for a running background allocation
/// and cancels a queued one, so that the writer may trim the file right after.
struct RealWriteMap(Arc<MapShared>);

/// What the writer and the background allocator share.
struct MapShared {
    file: File,
    map: memmap2::MmapRaw,
    /// Bytes from the start of the file that have blocks and may be written. Only grows, and
    /// only by one allocation at a time (`AllocState::running`), in steps of `ZEROS.len()`.
    allocated: AtomicU64,
    /// Bytes from the start of the file already handed to the kernel's write-back
    /// (`write_back`); only the background thread moves it.
    written_back: AtomicU64,
    /// The first allocation (from the file's start) succeeded.
    whole_file_allocated: std::sync::atomic::AtomicBool,
    state: Mutex<AllocState>,
    /// Signalled when an allocation ends or publishes a step.
    idle: Condvar,
}

#[derive(Default)]
struct AllocState {
    /// An allocation (the writer's or the background's) is under way.
    running: bool,
    /// The map is queued at the background allocator.
    queued: bool,
    /// Where the queued background allocation should reach.
    wanted: u64,
    /// Below where the background should start write-back (see `WriteMap::write_back_behind`).
    write_back_wanted: u64,
    /// The writer dropped its handle: queued work is skipped.
    closed: bool,
}

impl std::fmt::Debug for RealWriteMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealWriteMap({} bytes mapped, {} allocated)", self.0.map.len(), self.0.allocated())
    }
}

fn lock(state: &Mutex<AllocState>) -> MutexGuard<'_, AllocState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MapShared {
    fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }

    /// Runs `f` (an allocation) once no other allocation runs; returns `None`, not running it,
    /// when `skip_if_closed` and the writer has dropped its handle.
    fn exclusively<T>(&self, skip_if_closed: bool, f: impl FnOnce() -> T) -> Option<T> {
        let mut s = lock(&self.state);
        while s.running {
            s = self.idle.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if skip_if_closed && s.closed {
            return None;
        }
        s.running = true;
        drop(s);
        let r = f();
        lock(&self.state).running = false;
        self.idle.notify_all();
        Some(r)
    }

    /// Gives the file blocks up to `upto` and brings them into the page cache and this map;
    /// the caller runs it exclusively.
    fn extend(&self, upto: u64) -> io::Result<()> {
        let upto = upto.min(self.map.len() as u64);
        let from = self.allocated();
        if upto <= from {
            return Ok(());
        }
        // The map's first allocation covers the file from its start, so no hole below what
        // was there before the map can be written through it; later ones only the new range
        // (a whole-file fallocate each time walks every page of the file on tmpfs: quadratic).
        let start = if self.whole_file_allocated.load(Ordering::Acquire) { from } else { 0 };
        let offset = libc::off_t::try_from(start).map_err(|_| io::Error::other("allocation past off_t"))?;
        let len = libc::off_t::try_from(upto - start).map_err(|_| io::Error::other("allocation past off_t"))?;
        loop {
            // SAFETY: fallocate reads no memory of ours; the descriptor is owned by `self.file`.
            // Mode 0 allocates real blocks (not a hole) and extends the file's size to `upto`.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, len) };
            if r == 0 {
                self.whole_file_allocated.store(true, Ordering::Release);
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Bring the new pages into the page cache with a write of zeros (a page fault on an
        // unwritten block zero-fills the page through the read path: about 4× slower here),
        // then map them writable in one call rather than one trap per page on the append path.
        // Both best effort: the blocks are allocated already; kernels before 5.14 do not know
        // the advice. The zeros go only at and past the published `allocated`, which the
        // writer does not touch yet. Each step is published as soon as it is ready, so a writer
        // that caught up with a background allocation goes on while the rest is zero-filled
        // (the two overlap instead of taking turns; see `RealWriteMap::allocate`).
        let mut at = from;
        while at < upto {
            let n = (upto - at).min(ZEROS.len() as u64);
            if self.file.write_all_at(ZEROS.get(..n as usize).unwrap_or(&ZEROS), at).is_err() {
                break;
            }
            let page = at - at % PAGE_BYTES;
            if let (Ok(page), Ok(to)) = (usize::try_from(page), usize::try_from(at + n)) {
                let _ = self.map.advise_range(memmap2::Advice::PopulateWrite, page, to - page);
            }
            at += n;
            self.publish(at);
        }
        self.publish(upto);
        Ok(())
    }

    /// Starts the disk write of the pages below `upto` (rounded down to a page, so the page the
    /// writer is filling is left alone) that were not handed over before; no wait. In pieces of
    /// `WRITE_BACK_PIECE_BYTES`, stopping early when an allocation is wanted (the writer may be
    /// about to wait for it; the allocation request queues the map again, and the rest follows
    /// it) or once the writer dropped its handle (a roll or close fdatasyncs the file itself).
    fn write_back(&self, upto: u64) {
        let upto = upto - upto % PAGE_BYTES;
        loop {
            let from = self.written_back.load(Ordering::Acquire);
            if upto <= from {
                return;
            }
            {
                let s = lock(&self.state);
                if s.closed || s.wanted > self.allocated() {
                    return;
                }
            }
            let to = upto.min(from + WRITE_BACK_PIECE_BYTES);
            let (Ok(start), Ok(n)) = (usize::try_from(from), usize::try_from(to - from)) else { return };
            // Unmap the finished pages first: write-back write-protects every mapped page it
            // cleans, one TLB shootdown of the writer's CPU per page (measured: 2.4× slower
            // appends); unmapping the range costs one for all of it.
            // SAFETY: MADV_DONTNEED on a *shared file* mapping only removes the pages from this
            // process's page tables, moving their dirty bits to the page cache, whose pages keep
            // the bytes; a later touch maps the same bytes again (it zeroes memory only for
            // private or anonymous mappings, which this is not). Nothing is touched here anyway:
            // the writer writes only at and past its position, and `upto` is at most that.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, n) };
            let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(to - from)) else {
                return;
            };
            // SAFETY: sync_file_range reads no memory of ours; the descriptor is owned by
            // `self.file`. SYNC_FILE_RANGE_WRITE alone starts write-back of dirty pages in the
            // range and returns without waiting; it neither changes a byte nor consumes the
            // file's write-back error state (only the WAIT flags do), so an I/O error it meets
            // is still reported by the writer's next fdatasync, which poisons the log. Best
            // effort: an error here only means the fdatasync has more to write.
            let _ = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
            self.written_back.store(to, Ordering::Release);
        }
    }

    /// Queues this map at the background thread unless it is queued already; returns whether
    /// the background will look at `state` again.
    fn enqueue(self: &Arc<Self>, s: &mut AllocState) -> bool {
        let Some(queue) = background() else { return false };
        if !s.queued {
            let sent = queue.lock().unwrap_or_else(|e| e.into_inner()).send(self.clone());
            s.queued = sent.is_ok();
        }
        s.queued
    }

    /// Moves `allocated` to `upto` (blocks and page-cache pages exist below it) and wakes a
    /// writer waiting for it. The lock is taken between the store and the wake-up, so a writer
    /// that looked before the store is already waiting when it is woken.
    fn publish(&self, upto: u64) {
        self.allocated.fetch_max(upto, Ordering::Release);
        drop(lock(&self.state));
        self.idle.notify_all();
    }
}

impl Drop for RealWriteMap {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.closed = true;
        while s.running {
            s = self.0.idle.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The process's background allocator: one thread, started on first use, that extends the
/// write maps queued at it, so that appends rarely wait for `fallocate` and zero-filling, and
/// starts the disk write of the pages behind their writers.
fn background() -> Option<&'static Mutex<mpsc::Sender<Arc<MapShared>>>> {
    static QUEUE: OnceLock<Option<Mutex<mpsc::Sender<Arc<MapShared>>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Arc<MapShared>>();
            let spawned = std::thread::Builder::new().name("evlog-allocate".into()).spawn(move || {
                for map in rx {
                    let (wanted, write_back_wanted) = {
                        let mut s = lock(&map.state);
                        s.queued = false;
                        (s.wanted, s.write_back_wanted)
                    };
                    // Errors are left for the writer: an append that needs the space allocates
                    // it itself and reports a full disk or a file system without fallocate.
                    // Allocation first: a writer may be waiting for it.
                    let _ = map.exclusively(true, || map.extend(wanted));
                    map.write_back(write_back_wanted);
                }
            });
            spawned.ok().map(|_| Mutex::new(tx))
        })
        .as_ref()
}

impl WriteMap for RealWriteMap {
    fn allocated(&self) -> u64 {
        self.0.allocated()
    }

    fn allocate(&mut self, upto: u64) -> io::Result<()> {
        // A background allocation under way publishes its steps as they are ready: wait for the
        // one that covers `upto` rather than for the whole chunk, then allocate whatever is
        // still missing here (and meet any error the background dropped).
        // The next step is usually a few µs away, less than a wake-up from a condition variable
        // costs on a small VM: yield for a while first, then sleep until a step is published.
        let shared = &self.0;
        let started = std::time::Instant::now();
        while shared.allocated() < upto && started.elapsed() < ALLOCATION_SPIN {
            if !lock(&shared.state).running {
                break;
            }
            std::thread::yield_now();
        }
        {
            let mut s = lock(&shared.state);
            while s.running && shared.allocated() < upto {
                s = shared.idle.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.allocated() >= upto {
            return Ok(());
        }
        shared.exclusively(false, || shared.extend(upto)).unwrap_or(Ok(()))
    }

    fn allocate_ahead(&mut self, upto: u64) -> bool {
        let mut s = lock(&self.0.state);
        s.wanted = s.wanted.max(upto);
        self.0.enqueue(&mut s)
    }

    fn write_back_behind(&mut self, upto: u64) -> bool {
        let mut s = lock(&self.0.state);
        s.write_back_wanted = s.write_back_wanted.max(upto);
        self.0.enqueue(&mut s)
    }

    fn write(&mut self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.write_with(pos, data.len(), &mut |target| target.copy_from_slice(data))
    }

    fn write_with(&mut self, pos: u64, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let allocated = self.0.allocated();
        let end = pos.saturating_add(len as u64);
        if end > allocated {
            return Err(past_allocation(pos, len, allocated));
        }
        let Ok(start) = usize::try_from(pos) else {
            return Err(past_allocation(pos, len, allocated));
        };
        // SAFETY: `start + len ≤ allocated ≤ map.len()` (allocations stop at the map's length),
        // so the slice lies inside the map, on pages with blocks (no fault). `&mut self` on the
        // one handle makes this the only reference to these bytes: the background allocator
        // writes only at and past `allocated` and through the file, readers use their own maps
        // below the published end, which never reaches bytes being written.
        let target = unsafe { std::slice::from_raw_parts_mut(self.0.map.as_mut_ptr().add(start), len) };
        fill(target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_hands_each_finished_page_to_the_kernel_once_and_never_the_page_being_filled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = File::options().read(true).write(true).create_new(true).open(tmp.path().join("s")).expect("create");
        let shared = map_shared(&file, 1 << 20).expect("map");
        shared.extend(256 << 10).expect("allocate");
        shared.write_back(3 * PAGE_BYTES + 100);
        assert_eq!(shared.written_back.load(Ordering::Acquire), 3 * PAGE_BYTES, "the partial page stays out");
        shared.write_back(2 * PAGE_BYTES);
        assert_eq!(shared.written_back.load(Ordering::Acquire), 3 * PAGE_BYTES, "never goes back");
        shared.write_back(10 * PAGE_BYTES);
        assert_eq!(shared.written_back.load(Ordering::Acquire), 10 * PAGE_BYTES);
        lock(&shared.state).closed = true;
        shared.write_back(20 * PAGE_BYTES);
        assert_eq!(shared.written_back.load(Ordering::Acquire), 10 * PAGE_BYTES, "nothing once the writer left");
    }
}
