//! Fault injection: wraps any storage and fails chosen operations deterministically.

use super::{Internal, LockGuard, OpenMode, PublishedMap, SharedBytes, Storage, StorageFile, WriteMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// An operation that a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Reads (and maps).
    Read,
    /// Writes.
    Write,
    /// fdatasync of a file.
    SyncData,
    /// Truncation or extension.
    SetLen,
    /// Opening or creating a file.
    Open,
    /// Removing a file or directory.
    Remove,
    /// Renaming.
    Rename,
    /// fsync of a directory.
    SyncDir,
    /// Creating directories.
    CreateDir,
    /// Making a writable map of a file (the active segment's).
    MapWrite,
    /// Allocating blocks for a writable map (`fallocate`).
    Allocate,
}

/// What happens to a targeted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with EIO, having done nothing.
    Eio,
    /// Fails with ENOSPC, having done nothing.
    NoSpace,
    /// A write that stores only its first `keep_bytes` bytes, then fails with EIO.
    TornWrite {
        /// Bytes of the write that land before the failure.
        keep_bytes: usize,
    },
}

#[derive(Debug)]
struct Rule {
    op: Op,
    path_contains: Option<String>,
    skip: u64,
    fault: Fault,
    sticky: bool,
}

#[derive(Debug, Default)]
struct Plan {
    rules: Vec<Rule>,
    injected: u64,
    /// Operations other than reads seen so far.
    changes: u64,
    /// From this many changes on, every operation but reads fails (the machine stopped).
    stop_after_changes: Option<u64>,
    /// What `available_bytes` reports instead of asking the inner storage.
    available_bytes: Option<u64>,
}

/// A [`Storage`] that passes everything to an inner storage except the operations a test marked
/// to fail. Clones share the plan.
#[derive(Debug, Clone)]
pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    plan: Arc<Mutex<Plan>>,
}

impl FaultStorage {
    /// Wraps `inner`, failing nothing until told to.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        FaultStorage { inner, plan: Arc::default() }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the matching operation after `skip` matching ones have gone through, once.
    /// `path_contains` narrows the target to paths containing that text.
    pub fn fail_once(&self, op: Op, path_contains: Option<&str>, skip: u64, fault: Fault) {
        self.plan().rules.push(Rule {
            op,
            path_contains: path_contains.map(str::to_string),
            skip,
            fault,
            sticky: false,
        });
    }

    /// Fails every matching operation from now on (after `skip` go through), until `clear`.
    pub fn fail_always(&self, op: Op, path_contains: Option<&str>, skip: u64, fault: Fault) {
        self.plan().rules.push(Rule {
            op,
            path_contains: path_contains.map(str::to_string),
            skip,
            fault,
            sticky: true,
        });
    }

    /// A storage over `inner` that shares this one's plan: its operations count towards the same
    /// `changes` and `stop_after`, and the same rules apply. A store whose topics and consumer
    /// database live on different storages stops at one point of one sequence.
    pub fn sharing_plan(&self, inner: Arc<dyn Storage>) -> Self {
        FaultStorage { inner, plan: self.plan.clone() }
    }

    /// Removes every planned fault (the disk is healthy again).
    pub fn clear(&self) {
        self.plan().rules.clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.plan().injected
    }

    /// Operations other than reads (writes, fsyncs, truncations, opens, renames, removals,
    /// directory creations and fsyncs) performed so far.
    pub fn changes(&self) -> u64 {
        self.plan().changes
    }

    /// Makes `available_bytes` report `n` free bytes (`None`: ask the inner storage again): a
    /// nearly full disk without filling one.
    pub fn set_available_bytes(&self, n: Option<u64>) {
        self.plan().available_bytes = n;
    }

    /// After `n` more operations other than reads, every such operation fails with EIO: the
    /// machine stopped there. Pair with `MemStorage::crash` to sweep a power cut over every
    /// point of a workload.
    pub fn stop_after(&self, n: u64) {
        let mut plan = self.plan();
        plan.stop_after_changes = Some(plan.changes + n);
    }

    fn check(&self, op: Op, path: &Path) -> Option<Fault> {
        let mut plan = self.plan();
        if op != Op::Read {
            if plan.stop_after_changes.is_some_and(|stop| plan.changes >= stop) {
                plan.injected += 1;
                return Some(Fault::Eio);
            }
            plan.changes += 1;
        }
        let path = path.to_string_lossy();
        let hit = plan.rules.iter_mut().position(|r| {
            if r.op != op || r.path_contains.as_ref().is_some_and(|p| !path.contains(p.as_str())) {
                return false;
            }
            if r.skip > 0 {
                r.skip -= 1;
                return false;
            }
            true
        })?;
        let rule = plan.rules.get(hit)?;
        let (fault, sticky) = (rule.fault, rule.sticky);
        if !sticky {
            plan.rules.remove(hit);
        }
        plan.injected += 1;
        Some(fault)
    }
}

fn to_error(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::new(io::ErrorKind::StorageFull, "injected: no space left on device"),
        Fault::Eio | Fault::TornWrite { .. } => io::Error::other("injected: input/output error"),
    }
}

impl Storage for FaultStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.check(Op::CreateDir, path) {
            return Err(to_error(f));
        }
        self.inner.create_dir_all(path)
    }
    fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.dir_exists(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(f) = self.check(Op::Open, path) {
            return Err(to_error(f));
        }
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultFile { storage: self.clone(), path: path.to_path_buf(), inner }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.check(Op::Remove, path) {
            return Err(to_error(f));
        }
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(f) = self.check(Op::Rename, from) {
            return Err(to_error(f));
        }
        self.inner.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.check(Op::Remove, path) {
            return Err(to_error(f));
        }
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.check(Op::SyncDir, path) {
            return Err(to_error(f));
        }
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        // Not passed through: a test of copies (and of faults in them) gets copies.
        let _ = (from, to);
        Err(io::Error::new(io::ErrorKind::Unsupported, "FaultStorage does not hard-link"))
    }
    fn available_bytes(&self, path: &Path) -> io::Result<Option<u64>> {
        match self.plan().available_bytes {
            Some(n) => Ok(Some(n)),
            None => self.inner.available_bytes(path),
        }
    }
    // dir_exists, list_dir and lock pass through unchecked: they change nothing on disk.
}

#[derive(Debug)]
struct FaultFile {
    storage: FaultStorage,
    path: PathBuf,
    inner: Arc<dyn StorageFile>,
}

impl StorageFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        if let Some(f) = self.storage.check(Op::Read, &self.path) {
            return Err(to_error(f));
        }
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        match self.storage.check(Op::Write, &self.path) {
            None => self.inner.write_all_at(buf, pos),
            Some(Fault::TornWrite { keep_bytes }) => {
                self.inner.write_all_at(buf.get(..keep_bytes).unwrap_or(buf), pos)?;
                Err(to_error(Fault::Eio))
            }
            Some(f) => Err(to_error(f)),
        }
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if let Some(f) = self.storage.check(Op::SetLen, &self.path) {
            return Err(to_error(f));
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(f) = self.storage.check(Op::SyncData, &self.path) {
            return Err(to_error(f));
        }
        self.inner.sync_data()
    }
    fn map(&self, token: Internal) -> io::Result<SharedBytes> {
        if let Some(f) = self.storage.check(Op::Read, &self.path) {
            return Err(to_error(f));
        }
        self.inner.map(token)
    }
    fn map_published(&self, len_max: u64, token: Internal) -> io::Result<Option<PublishedMap>> {
        if let Some(f) = self.storage.check(Op::Read, &self.path) {
            return Err(to_error(f));
        }
        self.inner.map_published(len_max, token)
    }
    fn map_write(&self, len_max: u64, token: Internal) -> io::Result<Box<dyn WriteMap>> {
        if let Some(f) = self.storage.check(Op::MapWrite, &self.path) {
            return Err(to_error(f));
        }
        let inner = self.inner.map_write(len_max, token)?;
        Ok(Box::new(FaultWriteMap { storage: self.storage.clone(), path: self.path.clone(), inner }))
    }
}

/// A write map whose allocations and writes count as changes and can be failed like any other.
#[derive(Debug)]
struct FaultWriteMap {
    storage: FaultStorage,
    path: PathBuf,
    inner: Box<dyn WriteMap>,
}

impl WriteMap for FaultWriteMap {
    fn allocated(&self) -> u64 {
        self.inner.allocated()
    }
    fn allocate(&mut self, upto: u64) -> io::Result<()> {
        if let Some(f) = self.storage.check(Op::Allocate, &self.path) {
            return Err(to_error(f));
        }
        self.inner.allocate(upto)
    }
    fn write(&mut self, pos: u64, data: &[u8]) -> io::Result<()> {
        match self.storage.check(Op::Write, &self.path) {
            None => self.inner.write(pos, data),
            Some(Fault::TornWrite { keep_bytes }) => {
                self.inner.write(pos, data.get(..keep_bytes).unwrap_or(data))?;
                Err(to_error(Fault::Eio))
            }
            Some(f) => Err(to_error(f)),
        }
    }
}
