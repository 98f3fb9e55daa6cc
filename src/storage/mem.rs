//! In-memory storage that can simulate a power cut.
//!
//! Each file keeps two images: `live` (what reads see, the page cache) and `durable` (what is on
//! the platter), plus the writes made since the last `sync_data` in order. Each directory's
//! entries likewise have a live and a durable view; `sync_dir` makes the live one durable.
//! [`MemStorage::crash`] throws the live state away and builds what a crash leaves behind, per
//! [`CrashMode`]. Handles opened before a crash belong to the dead process: every operation on them
//! fails afterwards, so a `Log` dropped after a crash cannot write anything.

use super::{LockGuard, OpenMode, SharedBytes, Storage, StorageFile};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
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
    /// ordered without fsync); which ones is chosen from `seed`.
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
        write!(f, "MemStorage({} files, generation {})", s.live.len(), s.generation)
    }
}

#[derive(Debug, Default)]
struct MemState {
    generation: u64,
    next_id: u64,
    files: HashMap<u64, FileData>,
    dirs: BTreeSet<PathBuf>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    locks: BTreeSet<PathBuf>,
    /// Counts of operations, for tests that check a mode really syncs.
    syncs: u64,
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
            let pos = *pos as usize;
            if image.len() < pos + data.len() {
                image.resize(pos + data.len(), 0);
            }
            image[pos..pos + data.len()].copy_from_slice(data);
        }
        Pending::SetLen(len) => image.resize(*len as usize, 0),
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
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn dead() -> io::Error {
    io::Error::other("handle from before a simulated crash")
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        let durable = s.durable.clone();
        let mut files = HashMap::new();
        for id in durable.values() {
            let Some(f) = s.files.get(id) else { continue };
            let mut image = f.durable.clone();
            match mode {
                CrashMode::DropUnsynced | CrashMode::ProcessKill => {}
                CrashMode::TornWrite { .. } => {
                    if !f.pending.is_empty() {
                        let upto = rng.below(f.pending.len() as u64 + 1) as usize;
                        for op in &f.pending[..upto.min(f.pending.len())] {
                            apply(&mut image, op);
                        }
                        if let Some(Pending::Write { pos, data }) = f.pending.get(upto) {
                            let keep = rng.below(data.len() as u64 + 1) as usize;
                            apply(&mut image, &Pending::Write { pos: *pos, data: data[..keep].to_vec() });
                        }
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
            files.insert(*id, FileData { live: image.clone(), durable: image, pending: Vec::new() });
        }
        s.files = files;
        s.live = durable;
    }

    /// Number of `sync_data` calls so far (all files).
    pub fn sync_count(&self) -> u64 {
        self.lock_state().syncs
    }

    /// The live bytes of a file, for tests that inspect or corrupt it.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock_state();
        s.live.get(path).and_then(|id| s.files.get(id)).map(|f| f.live.clone())
    }

    /// Overwrites a file's bytes in both images, as if the disk itself changed them (bit rot).
    pub fn corrupt_file(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut s = self.lock_state();
        let Some(id) = s.live.get(path).copied() else { return };
        if let Some(file) = s.files.get_mut(&id) {
            f(&mut file.live);
            file.durable = file.live.clone();
            file.pending.clear();
        }
    }
}

#[derive(Debug)]
struct MemFile {
    storage: MemStorage,
    id: u64,
    generation: u64,
    writable: bool,
}

impl MemFile {
    fn with<T>(&self, f: impl FnOnce(&mut MemState, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.storage.lock_state();
        if s.generation != self.generation || !s.files.contains_key(&self.id) {
            return Err(dead());
        }
        f(&mut s, self.id)
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

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        if s.live.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "a file is in the way"));
        }
        // Directories are durable as soon as they exist: a simplification that keeps crash
        // simulation about the files evlog writes.
        for a in path.ancestors() {
            if !a.as_os_str().is_empty() {
                s.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock_state();
        if s.live.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(s.dirs.contains(path))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock_state();
        if !s.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut names: Vec<String> = s
            .live
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.lock_state();
        let parent_ok = path.parent().is_some_and(|p| s.dirs.contains(p));
        let id = match (mode, s.live.get(path).copied()) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
            (OpenMode::Read | OpenMode::ReadWrite, Some(id)) => id,
            (OpenMode::CreateTruncate, Some(id)) => {
                let f = s.files.get_mut(&id).ok_or_else(dead)?;
                f.live.clear();
                f.pending.push(Pending::SetLen(0));
                id
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                if !parent_ok {
                    return Err(not_found(path));
                }
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, FileData::default());
                s.live.insert(path.to_path_buf(), id);
                id
            }
        };
        let generation = s.generation;
        Ok(Arc::new(MemFile { storage: self.clone(), id, generation, writable: mode != OpenMode::Read }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.live.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        if s.dirs.contains(from) {
            // A directory: move it and everything below it (durable at once, like creation).
            if s.dirs.contains(to) || s.live.contains_key(to) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
            }
            let moved = |p: &PathBuf| p.strip_prefix(from).ok().map(|rest| to.join(rest));
            let st = &mut *s;
            st.dirs = st.dirs.iter().map(|d| moved(d).unwrap_or_else(|| d.clone())).collect();
            for map in [&mut st.live, &mut st.durable] {
                *map = map.iter().map(|(p, id)| (moved(p).unwrap_or_else(|| p.clone()), *id)).collect();
            }
            return Ok(());
        }
        let id = s.live.remove(from).ok_or_else(|| not_found(from))?;
        s.live.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        if !s.dirs.contains(path) {
            return Err(not_found(path));
        }
        s.dirs.retain(|d| !d.starts_with(path));
        s.live.retain(|p, _| !p.starts_with(path));
        s.durable.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        if !s.dirs.contains(path) {
            return Err(not_found(path));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        let live: Vec<(PathBuf, u64)> =
            s.live.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        s.durable.retain(|p, _| !in_dir(p));
        s.durable.extend(live);
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
        self.with(|s, id| {
            let f = &s.files[&id];
            let Ok(pos) = usize::try_from(pos) else { return Ok(0) };
            if pos >= f.live.len() {
                return Ok(0);
            }
            let n = buf.len().min(f.live.len() - pos);
            buf[..n].copy_from_slice(&f.live[pos..pos + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        self.with(|s, id| {
            let f = s.files.get_mut(&id).ok_or_else(dead)?;
            let op = Pending::Write { pos, data: buf.to_vec() };
            apply(&mut f.live, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s, id| Ok(s.files[&id].live.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        self.with(|s, id| {
            let f = s.files.get_mut(&id).ok_or_else(dead)?;
            let op = Pending::SetLen(len);
            apply(&mut f.live, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|s, id| {
            s.syncs += 1;
            let f = s.files.get_mut(&id).ok_or_else(dead)?;
            f.durable = f.live.clone();
            f.pending.clear();
            Ok(())
        })
    }

    fn map(&self) -> io::Result<SharedBytes> {
        self.with(|s, id| Ok(SharedBytes::from_vec(s.files[&id].live.clone())))
    }
}
