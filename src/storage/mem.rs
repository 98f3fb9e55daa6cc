//! In-memory storage that can simulate a power cut.
//!
//! A small file system of inodes. Each file keeps two images: `live` (what reads see, the page
//! cache) and `durable` (what is on the platter), plus the writes made since the last
//! `sync_data` in order. Each directory keeps two tables of entries (name → inode): `live` and
//! `durable`; only `sync_dir` of that directory copies the live table to the durable one. So a
//! crash undoes every create, mkdir, rename and unlink whose directory was not fsynced since, a
//! new directory vanishes with everything in it unless its parent was fsynced, and a rename can
//! survive while the renamed file's unsynced data does not: exactly what a strict file system
//! (or a real disk after a power cut) keeps. Only the root (`/`) exists from the start.
//!
//! [`MemStorage::crash`] throws the live state away and builds what a crash leaves behind, per
//! [`CrashMode`]. Handles opened before a crash belong to the dead process: every operation on them
//! fails afterwards, so a `Log` dropped after a crash cannot write anything.

use super::{Internal, LockGuard, OpenMode, SharedBytes, Storage, StorageFile, WriteMap};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a simulated crash leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// `kill -9`: the process dies, the kernel keeps every write and directory change.
    ProcessKill,
    /// Power cut: every unsynced write and directory change is lost.
    DropUnsynced,
    /// Power cut: unsynced writes reach the disk in order up to a point chosen from `seed`, and the
    /// write at that point is torn at a byte chosen from `seed`. Unsynced directory changes are lost.
    TornWrite {
        /// Chooses the point and the byte.
        seed: u64,
    },
    /// Power cut: each unsynced write independently reaches the disk or not (writes are not
    /// ordered without fsync); which ones is chosen from `seed`. Unsynced directory changes are
    /// lost.
    RandomSubset {
        /// Chooses the subset.
        seed: u64,
    },
}

/// In-memory [`Storage`] with crash simulation. Clones share the same files.
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock_state();
        write!(f, "MemStorage({} inodes, generation {})", s.nodes.len(), s.generation)
    }
}

/// The root directory's inode.
const ROOT: u64 = 0;

#[derive(Debug, Clone)]
struct MemState {
    generation: u64,
    next_id: u64,
    nodes: BTreeMap<u64, Node>,
    locks: BTreeSet<PathBuf>,
    /// Counts of operations, for tests that check a mode really syncs.
    syncs: u64,
    dir_syncs: u64,
}

impl Default for MemState {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirData::default()));
        MemState { generation: 0, next_id: ROOT + 1, nodes, locks: BTreeSet::new(), syncs: 0, dir_syncs: 0 }
    }
}

#[derive(Debug, Clone)]
enum Node {
    File(FileData),
    Dir(DirData),
}

#[derive(Debug, Default, Clone)]
struct DirData {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { pos, data } => {
            let Ok(pos) = usize::try_from(*pos) else { return };
            let end = pos.saturating_add(data.len());
            if image.len() < end {
                image.resize(end, 0);
            }
            if let Some(target) = image.get_mut(pos..end) {
                target.copy_from_slice(data);
            }
        }
        Pending::SetLen(len) => image.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

/// xorshift64*: a small deterministic generator, enough to pick crash points.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        // The result is below `n`, which came from a usize.
        if n == 0 { 0 } else { usize::try_from(self.next() % n).unwrap_or(0) }
    }
}

fn dead() -> io::Error {
    io::Error::other("handle from before a simulated crash")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", path.display()))
}

/// The names along `path` (root and `.` skipped). `..` is not supported: evlog never builds one.
/// The names of `path`'s components, borrowed (no allocation per component: every storage call
/// resolves its path).
fn names(path: &Path) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(n) => {
                out.push(n.to_str().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"))?)
            }
            Component::ParentDir => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "`..` in a MemStorage path"));
            }
        }
    }
    Ok(out)
}

impl MemState {
    fn dir(&self, id: u64) -> Option<&DirData> {
        match self.nodes.get(&id) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }
    fn dir_mut(&mut self, id: u64) -> Option<&mut DirData> {
        match self.nodes.get_mut(&id) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }
    fn file(&self, id: u64) -> Option<&FileData> {
        match self.nodes.get(&id) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }
    fn file_mut(&mut self, id: u64) -> Option<&mut FileData> {
        match self.nodes.get_mut(&id) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The inode at `path`, following live entries; `None` if a component is missing.
    fn resolve(&self, path: &Path) -> io::Result<Option<u64>> {
        self.walk(path, &names(path)?)
    }

    /// The inode reached from the root through `names`; `None` if one is missing.
    fn walk(&self, path: &Path, names: &[&str]) -> io::Result<Option<u64>> {
        let mut at = ROOT;
        for name in names {
            let Some(d) = self.dir(at) else { return Err(not_a_directory(path)) };
            match d.live.get(*name) {
                Some(&id) => at = id,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    /// The directory that holds `path`'s last name, and that name.
    fn parent_of(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut ns = names(path)?;
        let name = ns.pop().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        match self.walk(path, &ns)? {
            Some(id) if self.dir(id).is_some() => Ok((id, name.to_string())),
            Some(_) => Err(not_a_directory(path)),
            None => Err(not_found(path)),
        }
    }

    fn new_node(&mut self, node: Node) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, node);
        id
    }

    /// Drops every inode no directory entry reaches any more (after a crash).
    fn collect_unreachable(&mut self) {
        let mut reachable = BTreeSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(id) = todo.pop() {
            if let Some(d) = self.dir(id) {
                for &child in d.live.values() {
                    if reachable.insert(child) {
                        todo.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|id, _| reachable.contains(id));
    }
}

impl MemStorage {
    /// An empty storage: only the root directory `/` exists (and is durable).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every file and directory (live and durable images alike) that shares nothing
    /// with this storage, without its locks: a fixture built once and copied per test case.
    pub fn fork(&self) -> MemStorage {
        let mut copy = self.lock_state().clone();
        copy.locks.clear();
        MemStorage { state: Arc::new(Mutex::new(copy)) }
    }

    /// Simulates a crash: every handle opened so far dies, and files and directories become what
    /// the crash leaves behind per `mode`.
    pub fn crash(&self, mode: CrashMode) {
        let mut s = self.lock_state();
        s.generation += 1;
        s.locks.clear();
        if mode == CrashMode::ProcessKill {
            return;
        }
        let mut rng = match mode {
            CrashMode::TornWrite { seed } | CrashMode::RandomSubset { seed } => Rng::new(seed),
            _ => Rng::new(0),
        };
        for node in s.nodes.values_mut() {
            match node {
                Node::Dir(d) => d.live = d.durable.clone(),
                Node::File(f) => {
                    let mut image = f.durable.clone();
                    match mode {
                        CrashMode::DropUnsynced | CrashMode::ProcessKill => {}
                        CrashMode::TornWrite { .. } => {
                            let upto = rng.below(f.pending.len() + 1);
                            for op in f.pending.iter().take(upto) {
                                apply(&mut image, op);
                            }
                            if let Some(Pending::Write { pos, data }) = f.pending.get(upto) {
                                let keep = rng.below(data.len() + 1);
                                let torn = data.get(..keep).unwrap_or_default().to_vec();
                                apply(&mut image, &Pending::Write { pos: *pos, data: torn });
                            }
                        }
                        CrashMode::RandomSubset { .. } => {
                            for op in &f.pending {
                                if rng.below(2) == 1 {
                                    apply(&mut image, op);
                                }
                            }
                        }
                    }
                    *f = FileData { live: image.clone(), durable: image, pending: Vec::new() };
                }
            }
        }
        s.collect_unreachable();
    }

    /// Number of `sync_data` calls so far (all files).
    pub fn sync_count(&self) -> u64 {
        self.lock_state().syncs
    }

    /// Number of `sync_dir` calls so far.
    pub fn dir_sync_count(&self) -> u64 {
        self.lock_state().dir_syncs
    }

    /// The live bytes of a file, for tests that inspect or corrupt it.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock_state();
        let id = s.resolve(path).ok()??;
        s.file(id).map(|f| f.live.clone())
    }

    /// Overwrites a file's bytes in both images, as if the disk itself changed them (bit rot).
    pub fn corrupt_file(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut s = self.lock_state();
        let Ok(Some(id)) = s.resolve(path) else { return };
        if let Some(file) = s.file_mut(id) {
            f(&mut file.live);
            file.durable = file.live.clone();
            file.pending.clear();
        }
    }
}

#[derive(Debug, Clone)]
struct MemFile {
    storage: MemStorage,
    id: u64,
    generation: u64,
    writable: bool,
}

impl MemFile {
    fn with<T>(&self, f: impl FnOnce(&mut FileData) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.storage.lock_state();
        if s.generation != self.generation {
            return Err(dead());
        }
        f(s.file_mut(self.id).ok_or_else(dead)?)
    }

    fn writable(&self) -> io::Result<()> {
        if self.writable { Ok(()) } else { Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only")) }
    }
}

#[derive(Debug)]
struct MemLock {
    storage: MemStorage,
    path: PathBuf,
    generation: u64,
}
impl LockGuard for MemLock {}
impl Drop for MemLock {
    fn drop(&mut self) {
        let mut s = self.storage.lock_state();
        if s.generation == self.generation {
            s.locks.remove(&self.path);
        }
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let mut at = ROOT;
        for name in names(path)? {
            let existing = s.dir(at).ok_or_else(|| not_a_directory(path))?.live.get(name).copied();
            at = match existing {
                Some(id) => id,
                None => {
                    let id = s.new_node(Node::Dir(DirData::default()));
                    s.dir_mut(at).ok_or_else(|| not_a_directory(path))?.live.insert(name.to_string(), id);
                    id
                }
            };
        }
        if s.dir(at).is_none() {
            return Err(not_a_directory(path));
        }
        Ok(())
    }

    fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock_state();
        match s.resolve(path)? {
            Some(id) if s.dir(id).is_some() => Ok(true),
            Some(_) => Err(not_a_directory(path)),
            None => Ok(false),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock_state();
        let id = s.resolve(path)?.ok_or_else(|| not_found(path))?;
        let d = s.dir(id).ok_or_else(|| not_a_directory(path))?;
        Ok(d.live.keys().cloned().collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.lock_state();
        let (parent, name) = s.parent_of(path)?;
        let existing = s.dir(parent).and_then(|d| d.live.get(&name).copied());
        if existing.is_some_and(|id| s.file(id).is_none()) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())));
        }
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
            (OpenMode::Read | OpenMode::ReadWrite, Some(id)) => id,
            (OpenMode::CreateTruncate, Some(id)) => {
                let f = s.file_mut(id).ok_or_else(dead)?;
                f.live.clear();
                f.pending.push(Pending::SetLen(0));
                id
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                let id = s.new_node(Node::File(FileData::default()));
                s.dir_mut(parent).ok_or_else(|| not_found(path))?.live.insert(name, id);
                id
            }
        };
        let generation = s.generation;
        Ok(Arc::new(MemFile { storage: self.clone(), id, generation, writable: mode != OpenMode::Read }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let (parent, name) = s.parent_of(path)?;
        let id = s.dir(parent).and_then(|d| d.live.get(&name).copied()).ok_or_else(|| not_found(path))?;
        if s.file(id).is_none() {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())));
        }
        s.dir_mut(parent).ok_or_else(|| not_found(path))?.live.remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let (from_parent, from_name) = s.parent_of(from)?;
        let (to_parent, to_name) = s.parent_of(to)?;
        let id = s.dir(from_parent).and_then(|d| d.live.get(&from_name).copied()).ok_or_else(|| not_found(from))?;
        let target = s.dir(to_parent).and_then(|d| d.live.get(&to_name).copied());
        match target {
            // A directory moves only to a name that does not exist (all evlog needs).
            Some(_) if s.dir(id).is_some() => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
            }
            Some(t) if s.dir(t).is_some() => {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, "target is a directory"));
            }
            _ => {}
        }
        if s.dir(id).is_some() && to.starts_with(from) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a directory cannot move into itself"));
        }
        s.dir_mut(from_parent).ok_or_else(|| not_found(from))?.live.remove(&from_name);
        s.dir_mut(to_parent).ok_or_else(|| not_found(to))?.live.insert(to_name, id);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let (parent, name) = s.parent_of(path)?;
        let id = s.dir(parent).and_then(|d| d.live.get(&name).copied()).ok_or_else(|| not_found(path))?;
        if s.dir(id).is_none() {
            return Err(not_a_directory(path));
        }
        // Unlinked from its parent; its own entries stay as they were, so a crash before the
        // parent is fsynced brings the whole tree back, as on a real file system (where
        // `remove_dir_all` unlinks bottom-up: a crash may bring back any part of it).
        s.dir_mut(parent).ok_or_else(|| not_found(path))?.live.remove(&name);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let id = s.resolve(path)?.ok_or_else(|| not_found(path))?;
        let d = s.dir_mut(id).ok_or_else(|| not_a_directory(path))?;
        d.durable = d.live.clone();
        s.dir_syncs += 1;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut s = self.lock_state();
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked by another holder"));
        }
        Ok(Box::new(MemLock { storage: self.clone(), path: path.to_path_buf(), generation: s.generation }))
    }
}

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.with(|f| {
            let Ok(pos) = usize::try_from(pos) else { return Ok(0) };
            let Some(rest) = f.live.get(pos..) else { return Ok(0) };
            let n = buf.len().min(rest.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.writable()?;
        self.with(|f| {
            let op = Pending::Write { pos, data: buf.to_vec() };
            apply(&mut f.live, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|f| Ok(f.live.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        self.with(|f| {
            let op = Pending::SetLen(len);
            apply(&mut f.live, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut s = self.storage.lock_state();
            if s.generation == self.generation {
                s.syncs += 1;
            }
        }
        self.with(|f| {
            f.durable = f.live.clone();
            f.pending.clear();
            Ok(())
        })
    }

    fn map(&self, _: Internal) -> io::Result<SharedBytes> {
        self.with(|f| Ok(SharedBytes::from_vec(f.live.clone())))
    }

    fn map_write(&self, len_max: u64, _: Internal) -> io::Result<Box<dyn WriteMap>> {
        self.writable()?;
        let allocated = self.len()?.min(len_max);
        Ok(Box::new(MemWriteMap { file: self.clone(), len_max, allocated }))
    }
}

/// Size of the pages a write map is written back in: a power cut keeps or drops (or tears)
/// each page's unsynced bytes on its own, as the kernel's writeback of a shared map may.
const PAGE_BYTES: u64 = 4096;

/// A modelled writable map: allocation is a length change and each write is recorded page by
/// page as an unsynced write, so the crash modes treat mapped bytes like any other unsynced
/// data, page by page.
#[derive(Debug)]
struct MemWriteMap {
    file: MemFile,
    len_max: u64,
    allocated: u64,
}

impl WriteMap for MemWriteMap {
    fn allocated(&self) -> u64 {
        self.allocated
    }

    fn allocate(&mut self, upto: u64) -> io::Result<()> {
        let upto = upto.min(self.len_max);
        if upto <= self.allocated {
            return Ok(());
        }
        if self.file.len()? < upto {
            self.file.set_len(upto)?;
        }
        self.allocated = upto;
        Ok(())
    }

    fn write(&mut self, pos: u64, data: &[u8]) -> io::Result<()> {
        if pos.saturating_add(data.len() as u64) > self.allocated {
            return Err(super::past_allocation(pos, data.len(), self.allocated));
        }
        let mut at = pos;
        let mut rest = data;
        while !rest.is_empty() {
            let in_page = usize::try_from(PAGE_BYTES - at % PAGE_BYTES).unwrap_or(usize::MAX).min(rest.len());
            let (page, tail) = rest.split_at(in_page);
            self.file.write_all_at(page, at)?;
            at += in_page as u64;
            rest = tail;
        }
        Ok(())
    }
}
