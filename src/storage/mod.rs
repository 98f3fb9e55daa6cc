//! The storage trait: every byte evlog reads or writes goes through it.
//!
//! Three implementations:
//! - [`RealStorage`]: the operating system's files (`pread`/`pwrite`, `fdatasync`, `flock`),
//!   read-only maps of sealed files and a writable map of the active segment (`storage/map.rs`,
//!   the crate's only `unsafe`).
//! - [`MemStorage`]: in memory, with a separate "durable" image per file and a durable table of
//!   entries per directory, so a test can simulate a power cut ([`CrashMode`]) that drops or tears
//!   whatever was not synced, names included.
//! - [`FaultStorage`]: wraps any storage and fails chosen operations with EIO or ENOSPC, or tears
//!   a write after a chosen number of bytes.
//!
//! Invariants:
//! - Nothing above this module opens, syncs or maps a file by itself.
//! - Every directory an acknowledgement depends on is created by [`create_dir_durable`], which
//!   fsyncs each new directory into its parent before returning. (Replay spill directories are
//!   made with plain `create_dir_all`: nothing durable depends on them, and open removes them.)
//! - [`StorageFile::map`] is only called on files that no writer will change again (sealed
//!   segments and index files, which are replaced by rename, never rewritten in place).
//! - A `WriteMap` (the active segment's, one at a time, owned by the writer lock) is never
//!   written past the blocks it allocated, and is dropped before its file is truncated.
//! - Both map methods take an `Internal` token that only evlog can make, so no safe code
//!   outside evlog can make a map.

mod fault;
mod map;
mod mem;
mod real;

pub use fault::{Fault, FaultStorage, Op};
pub use mem::{CrashMode, MemStorage};
pub use real::RealStorage;

use std::fmt;
use std::io;
use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, reads only.
    Read,
    /// Existing file, reads and writes.
    ReadWrite,
    /// Create a new file (fails if it exists), reads and writes.
    CreateNew,
    /// Create or truncate to empty, reads and writes.
    CreateTruncate,
}

/// A directory of files, as evlog sees it.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` is an existing directory; `Ok(false)` if missing; an error names a
    /// non-directory as `NotADirectory`.
    fn dir_exists(&self, path: &Path) -> io::Result<bool>;
    /// File names (not paths) in a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing the target, or a directory (to a name that does not exist).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Gives the file `from` a second name `to` (on the same file system): what a backup uses
    /// for files that never change. `Unsupported` (the default) makes callers copy instead.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::Error::new(io::ErrorKind::Unsupported, "hard links are not supported by this storage"))
    }
    /// Bytes an unprivileged writer may still allocate on the file system holding `path`;
    /// `None` when the storage cannot tell (the default), which disables `disk_reserve_bytes`.
    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        let _ = path;
        Ok(None)
    }
    /// Takes an exclusive, non-blocking lock on `path` (a lock file, created if missing). Returns
    /// `ErrorKind::WouldBlock` when another holder has it. The lock is released when the returned
    /// guard is dropped.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Creates `dir` (and its missing parents) and makes its name durable: each directory from the
/// first one that already existed down to `dir`'s parent is fsynced, so after a power cut `dir`
/// exists with the path that leads to it. It fsyncs `dir`'s parent even when `dir` already
/// existed: a process killed between `mkdir` and that fsync leaves a directory that exists in
/// the page cache only, and nothing else would ever make it durable. Returns `NotADirectory`
/// when a file is in the way.
pub fn create_dir_durable(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    // The highest directory on the path that does not exist yet (or `dir` itself).
    let mut missing_top = dir;
    while let Some(p) = missing_top.parent().filter(|p| !p.as_os_str().is_empty()) {
        if storage.dir_exists(p)? {
            break;
        }
        missing_top = p;
    }
    storage.create_dir_all(dir)?;
    for d in dir.ancestors().skip(1) {
        // An empty parent is the working directory.
        storage.sync_dir(if d.as_os_str().is_empty() { Path::new(".") } else { d })?;
        if Some(d) == missing_top.parent() {
            break;
        }
    }
    Ok(())
}

/// Replaces the file at `path` with `bytes` so that after a crash or power cut it holds either
/// its old content or all of the new: written to `<path>.tmp`, fdatasynced, renamed over `path`,
/// and the directory fsynced (the rename is what the caller's acknowledgement depends on). A
/// `.tmp` left by a crash is ignored by readers and overwritten by the next replacement.
/// Returns the operation that failed with its error.
#[cfg_attr(not(feature = "store"), allow(dead_code))] // topic configurations and store ids
pub(crate) fn replace_file_durable(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<(), StepError> {
    let step = |op: &'static str| move |source: io::Error| StepError { op, source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let f = storage.open(tmp, OpenMode::CreateTruncate).map_err(step("create"))?;
    f.write_all_at(bytes, 0).map_err(step("write"))?;
    f.sync_data().map_err(step("fsync"))?;
    drop(f);
    storage.rename(tmp, path).map_err(step("rename"))?;
    storage.sync_dir(dir).map_err(step("fsync directory"))
}

/// The step of a multi-step file operation that failed, and the system's error.
#[derive(Debug)]
#[cfg_attr(not(feature = "store"), allow(dead_code))]
pub(crate) struct StepError {
    /// What was being done: "create", "write", "fsync", "rename", "fsync directory".
    pub op: &'static str,
    pub source: io::Error,
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// One open file.
#[allow(clippy::len_without_is_empty)] // a file's length is a position, not a collection size
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data (and the length) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// A read-only view of the whole file as it is now: real files are mapped, the default reads
    /// the file into memory. Callable inside evlog only (the `Internal` token cannot be made
    /// elsewhere): a map of a file that changes under it is undefined behaviour, and only evlog
    /// knows which of its files never change again.
    fn map(&self, _: Internal) -> io::Result<SharedBytes> {
        let len = usize::try_from(self.len()?).map_err(|_| io::Error::other("file too large to map"))?;
        Ok(SharedBytes::from_vec(self.read_vec(0, len)?))
    }

    /// A writable shared map of the file's first `len_max` bytes, for the active segment's
    /// appends (see `WriteMap`). Callable inside evlog only, for the same reason as `map`;
    /// `Unsupported` by default, and then evlog writes with `write_all_at`.
    fn map_write(&self, _len_max: u64, _: Internal) -> io::Result<Box<dyn WriteMap>> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "this storage has no writable maps"))
    }

    /// A read-only map of the file's first `len_max` bytes for the active segment's in-process
    /// readers, read only below the published end (see `PublishedMap`); `None` (the default)
    /// makes them read with `read_at`. Callable inside evlog only.
    fn map_published(&self, _len_max: u64, _: Internal) -> io::Result<Option<PublishedMap>> {
        Ok(None)
    }

    /// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends early")),
                n => {
                    buf = buf.get_mut(n..).unwrap_or_default();
                    pos += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Reads `[pos, pos + len)` into a new buffer, or fewer bytes if the file ends first.
    fn read_vec(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(pos, len, &mut buf)?;
        Ok(buf)
    }

    /// Reads `[pos, pos + len)` into `buf`, replacing what it held (its allocation is reused),
    /// or fewer bytes if the file ends first.
    fn read_into(&self, pos: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            let Some(rest) = buf.get_mut(filled..) else { break };
            match self.read_at(rest, pos + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(())
    }
}

/// Types the storage traits mention but code outside evlog cannot name: they are `pub` inside a
/// private module, so the traits stay implementable (their methods that take or return these
/// keep their defaults) while nothing outside evlog reaches a writable map or makes the token.
mod sealed {
    use std::sync::Arc;
    use std::{fmt, io};

    /// Proof that a call comes from inside evlog: its field is private to this module, so code
    /// outside evlog can neither make one nor call the methods that take one. Implementors outside
    /// evlog cannot name it either, so they keep the default methods.
    #[derive(Debug, Clone, Copy)]
    pub struct Internal(pub(super) ());

    /// A writable shared map of a file that is being appended to. Bytes copied into it are in the
    /// kernel's page cache the moment the copy ends (a killed process loses nothing); they are on
    /// the disk after the file's `sync_data`. Only bytes below `WriteMap::allocated` are ever
    /// touched: a page of a map past the file's allocated blocks would raise `SIGBUS`.
    pub trait WriteMap: Send + Sync + fmt::Debug {
        /// Bytes from the start of the file that have disk blocks (and may be written).
        fn allocated(&self) -> u64;
        /// Allocates disk blocks up to `upto` (at most the map's length), growing the file. Fails
        /// with `StorageFull` when the disk is full, `Unsupported` when the file system cannot
        /// allocate; either way nothing that was written changes.
        fn allocate(&mut self, upto: u64) -> io::Result<()>;
        /// Asks for blocks up to `upto` to be allocated in the background, off the append path;
        /// returns whether that will happen (by default it does not, and `allocate` does it all).
        /// Failures there are not reported: an append that needs the space calls `allocate`.
        fn allocate_ahead(&mut self, upto: u64) -> bool {
            let _ = upto;
            false
        }
        /// Asks for the written bytes below `upto` to be sent to the disk in the background, with
        /// no wait (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`): a hint that lets a later
        /// fdatasync find little left to write. It makes nothing durable and reports nothing (an
        /// I/O error it meets is still reported by the next fdatasync). Returns whether that will
        /// happen (by default it does not).
        fn write_back_behind(&mut self, upto: u64) -> bool {
            let _ = upto;
            false
        }
        /// Copies `data` into the file at `pos`. Fails, touching nothing, unless `pos + data.len()`
        /// is within `WriteMap::allocated`.
        fn write(&mut self, pos: u64, data: &[u8]) -> io::Result<()>;
        /// Lets `fill` write `len` bytes at `pos` in place (a real map hands it the mapped bytes, so
        /// a frame is encoded straight into the page cache with no copy in between); the same
        /// bounds as `write`. By default `fill` writes into a buffer that `write` then copies.
        fn write_with(&mut self, pos: u64, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
            let mut buf = vec![0u8; len];
            fill(&mut buf);
            self.write(pos, &buf)
        }
    }

    /// A read-only map of the active segment for readers in the writing process: reading the
    /// published part of the segment costs no system call. Only its published prefix is ever read.
    #[derive(Clone)]
    pub struct PublishedMap(pub(super) Arc<super::map::PublishedMap>);
}

pub(crate) use sealed::{Internal, PublishedMap, WriteMap};

/// The token for evlog's own calls of [`StorageFile::map`] and [`StorageFile::map_write`].
pub(crate) const INTERNAL: Internal = Internal(());

/// The error a `WriteMap` returns for a write past its allocated bytes.
pub(crate) fn past_allocation(pos: u64, len: usize, allocated: u64) -> io::Error {
    io::Error::other(format!(
        "write of {len} bytes at {pos} past the {allocated} allocated bytes of a map (refused: it would fault)"
    ))
}

/// Shared, immutable bytes: a read-only map or a heap buffer. Cheap to clone; slices of it are
/// handed out as zero-copy [`Bytes`].
#[derive(Clone)]
pub struct SharedBytes(Owner);

/// What holds the bytes. An enum rather than a trait object: reading a record's bytes is on
/// every scan's hot path, and a match is cheaper than a virtual call.
#[derive(Clone)]
enum Owner {
    Heap(Arc<Vec<u8>>),
    Map(Arc<map::ReadMap>),
    /// The first `.1` bytes of the active segment's published map (a `u32`, like every
    /// position in `Bytes`: it keeps the handle, and each record, 8 bytes smaller).
    Published(Arc<map::PublishedMap>, u32),
}

impl PublishedMap {
    /// The segment's first `end` bytes. `end` must be at most the log's published end in this
    /// segment (read under the view that says so): those bytes never change while the log is
    /// open. `None` past the map.
    pub(crate) fn prefix(&self, end: u64) -> Option<SharedBytes> {
        let len = u32::try_from(end).ok()?;
        self.0.prefix(len as usize)?;
        Some(SharedBytes(Owner::Published(self.0.clone(), len)))
    }
}

impl fmt::Debug for PublishedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublishedMap")
    }
}

impl SharedBytes {
    /// Takes ownership of a buffer.
    pub fn from_vec(v: Vec<u8>) -> Self {
        SharedBytes(Owner::Heap(Arc::new(v)))
    }
    /// The heap buffer back, if these bytes are one and nothing else shares them (a reader
    /// reuses its chunk buffer once no record of the last chunk is held).
    pub(crate) fn into_unshared_vec(self) -> Option<Vec<u8>> {
        match self.0 {
            Owner::Heap(v) => Arc::try_unwrap(v).ok(),
            Owner::Map(_) | Owner::Published(..) => None,
        }
    }
    fn from_map(map: map::ReadMap) -> Self {
        SharedBytes(Owner::Map(Arc::new(map)))
    }
    /// Tells the system the bytes `range` will not be read again soon: for a map, its pages
    /// leave the process's resident set (they stay in the page cache and come back on the next
    /// touch); for a heap buffer, nothing. What a sequential scan calls behind its cursor.
    pub(crate) fn release(&self, range: Range<usize>) {
        if let Owner::Map(m) = &self.0
            && range.start < range.end
            && range.end <= m.bytes().len()
        {
            m.release(range.start, range.end - range.start);
        }
    }

    /// Tells the system the bytes `range` are about to be read in order: for a map, its pages
    /// are mapped in one call instead of one fault each; for a heap buffer, nothing.
    pub(crate) fn prefetch(&self, range: Range<usize>) {
        if let Owner::Map(m) = &self.0 {
            let end = range.end.min(m.bytes().len());
            if range.start < end {
                m.prefetch(range.start, end - range.start);
            }
        }
    }

    /// Whether `other` is these very bytes (the same buffer or map, the same length), not just
    /// equal ones: a reader holding one can tell whether a cursor still reads in it.
    #[cfg(feature = "store")]
    pub(crate) fn same(&self, other: &SharedBytes) -> bool {
        match (&self.0, &other.0) {
            (Owner::Heap(a), Owner::Heap(b)) => Arc::ptr_eq(a, b),
            (Owner::Map(a), Owner::Map(b)) => Arc::ptr_eq(a, b),
            (Owner::Published(a, n), Owner::Published(b, m)) => Arc::ptr_eq(a, b) && n == m,
            _ => false,
        }
    }

    /// The bytes `range` as an owned, zero-copy handle; `None` when the range is not inside
    /// these bytes (or ends past 4 GiB, which no segment reaches).
    #[inline]
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        Some(Bytes {
            owner: self.clone(),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Owner::Heap(v) => v,
            Owner::Map(m) => m.bytes(),
            // Checked against the map's length when the prefix was made.
            Owner::Published(m, len) => m.prefix(*len as usize).unwrap_or_default(),
        }
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}

/// A range of [`SharedBytes`]: owned, `Send`, and zero-copy when it points into a map.
/// 32-bit positions keep it small (24 bytes): replay holds many of them.
///
/// Invariant: `start <= end <= owner.len()`. Every constructor checks it, so the range is never
/// out of bounds when the bytes are read.
#[derive(Clone)]
pub struct Bytes {
    owner: SharedBytes,
    start: u32,
    end: u32,
}

impl Bytes {
    /// Takes ownership of a buffer; `None` for one of 4 GiB or more.
    pub fn from_vec(v: Vec<u8>) -> Option<Self> {
        let end = u32::try_from(v.len()).ok()?;
        Some(Bytes { owner: SharedBytes::from_vec(v), start: 0, end })
    }
    /// No bytes.
    pub fn empty() -> Self {
        Bytes { owner: SharedBytes::from_vec(Vec::new()), start: 0, end: 0 }
    }
    /// The positions of `range` (relative to these bytes) in the owner, if it lies inside them.
    fn inner(&self, range: &Range<usize>) -> Option<(u32, u32)> {
        let len = (self.end - self.start) as usize;
        if range.start > range.end || range.end > len {
            return None;
        }
        // Both fit: they are at most `self.end`, a u32.
        Some((self.start + u32::try_from(range.start).ok()?, self.start + u32::try_from(range.end).ok()?))
    }
    /// These bytes narrowed to a sub-range (relative to them), without a new reference; `None`
    /// when the range is not inside them.
    pub fn narrow(mut self, range: Range<usize>) -> Option<Bytes> {
        (self.start, self.end) = self.inner(&range)?;
        Some(self)
    }
    /// A sub-range of these bytes (relative to them); `None` when the range is not inside them.
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        let (start, end) = self.inner(&range)?;
        Some(Bytes { owner: self.owner.clone(), start, end })
    }
}

impl Deref for Bytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let range = self.start as usize..self.end as usize;
        // Never out of bounds: every constructor checked the range (see the type's invariant).
        debug_assert!(self.owner.get(range.clone()).is_some());
        self.owner.get(range).unwrap_or_default()
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
impl Eq for Bytes {}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}
