//! Simulated power cuts swept over every storage operation of a whole store's life, starting from
//! a directory that does not exist yet (two levels deep).
//!
//! The workload creates the store, a topic, appends (rolling segments), commits a consumer group,
//! leases and acks a work queue, creates and deletes a second topic and enforces retention, all
//! under `Durability::Always` and `CommitDurability::Always`. The topics live on `MemStorage`,
//! whose crash model keeps only what an fsync made durable, names included. sled writes its own
//! files on the real file system; the storage that fsyncs them here (`Shadow`) records what each
//! file and directory fsync made durable, and a power cut rebuilds sled's directory from that
//! record alone. Both storages share one `FaultStorage` plan, so "the machine stopped after the
//! n-th change" is one point of one sequence. After every cut the store must open and hold every
//! acknowledged record, commit, ack and deletion.

use evlog::consume::StartAt;
use evlog::storage::{CrashMode, FaultStorage, MemStorage, OpenMode, RealStorage, Storage, StorageFile};
use evlog::store::{CommitDurability, RetentionOptions};
use evlog::{ConsumerOptions, Durability, Options, QueueOptions, Store, StoreOptions};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What fsyncs made durable on the real file system: each file's bytes at its last fsync, each
/// directory's entries (name → is a directory) at its last fsync.
#[derive(Debug, Default)]
struct Images {
    files: HashMap<PathBuf, Vec<u8>>,
    dirs: HashMap<PathBuf, BTreeMap<String, bool>>,
}

/// Real files, plus a record of what fsyncs made durable.
#[derive(Debug, Clone, Default)]
struct Shadow {
    images: Arc<Mutex<Images>>,
}

#[derive(Debug)]
struct ShadowFile {
    path: PathBuf,
    inner: Arc<dyn StorageFile>,
    images: Arc<Mutex<Images>>,
}

impl Shadow {
    /// A power cut: everything below `base` (a directory that existed and was durable before
    /// the test) becomes what the recorded fsyncs made durable, and nothing else.
    fn crash(&self, base: &Path) {
        for entry in std::fs::read_dir(base).expect("list base") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).expect("remove");
            } else {
                std::fs::remove_file(&p).expect("remove");
            }
        }
        let images = self.images.lock().expect("images");
        rebuild(&images, base);
    }
}

fn rebuild(images: &Images, dir: &Path) {
    let Some(entries) = images.dirs.get(dir) else { return };
    for (name, &is_dir) in entries {
        let p = dir.join(name);
        if is_dir {
            std::fs::create_dir(&p).expect("mkdir");
            rebuild(images, &p);
        } else {
            // A durable name whose data was never fsynced comes back empty.
            std::fs::write(&p, images.files.get(&p).cloned().unwrap_or_default()).expect("write");
        }
    }
}

impl Storage for Shadow {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealStorage.create_dir_all(path)
    }
    fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        RealStorage.dir_exists(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealStorage.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = RealStorage.open(path, mode)?;
        Ok(Arc::new(ShadowFile { path: path.to_path_buf(), inner, images: self.images.clone() }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealStorage.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealStorage.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealStorage.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealStorage.sync_dir(path)?;
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            entries.insert(e.file_name().to_string_lossy().into_owned(), e.file_type()?.is_dir());
        }
        self.images.lock().expect("images").dirs.insert(path.to_path_buf(), entries);
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn evlog::storage::LockGuard>> {
        RealStorage.lock(path)
    }
}

impl StorageFile for ShadowFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()?;
        let bytes = std::fs::read(&self.path)?;
        self.images.lock().expect("images").files.insert(self.path.clone(), bytes);
        Ok(())
    }
}

fn log_options(storage: Arc<dyn Storage>) -> Options {
    let mut o = Options::with_durability(Durability::Always);
    o.segment_bytes_max = 512;
    o.record_bytes_max = 128;
    o.index_interval_bytes = 100;
    o.checkpoint_interval_bytes = 300;
    o.read_buffer_bytes = 128;
    o.preallocate_bytes = 256;
    o.storage = storage;
    o
}

fn store_options(log: Arc<dyn Storage>, state: Arc<dyn Storage>) -> StoreOptions {
    let mut o = StoreOptions::with_log(log_options(log));
    o.state_storage = state;
    o.retention = RetentionOptions { retention_bytes_max: Some(1024), ..RetentionOptions::default() };
    o
}

fn payload(i: usize) -> Vec<u8> {
    format!("order {i} {}", "x".repeat(i % 17)).into_bytes()
}

/// What the workload was told before the machine stopped.
#[derive(Debug, Default)]
struct Acked {
    /// Every record whose append was attempted to `orders`, in offset order.
    attempted: Vec<Vec<u8>>,
    /// Appends to `orders` that returned.
    appended: usize,
    /// The `billing` group's last commit that returned.
    committed: Option<u64>,
    /// Offsets the queue's acks returned for.
    queue_acked: Vec<u64>,
    /// `audit` was created (an append to it returned), its deletion began, and it was deleted
    /// (`delete_topic` returned).
    audit_created: bool,
    audit_delete_started: bool,
    audit_deleted: bool,
}

fn workload(store: &Store, acked: &mut Acked) -> evlog::Result<()> {
    let orders = store.topic("orders")?;
    let append = |acked: &mut Acked, n: usize| -> evlog::Result<()> {
        for _ in 0..n {
            let p = payload(acked.attempted.len());
            acked.attempted.push(p.clone());
            orders.append(&p)?;
            acked.appended = acked.attempted.len();
        }
        Ok(())
    };
    append(acked, 6)?;
    let mut billing = store.consumer("billing", "orders", ConsumerOptions::starting_at(StartAt::Earliest))?;
    let got = billing.poll(4, Duration::ZERO)?;
    billing.commit()?;
    acked.committed = Some(got.len() as u64);
    let q = store.queue("work", "orders", QueueOptions::default())?;
    let leased = q.try_lease_many(3)?;
    if let Some(first) = leased.first() {
        q.ack(first)?;
        acked.queue_acked.push(first.offset());
    }
    let audit = store.topic("audit")?;
    audit.append(b"audit 0")?;
    acked.audit_created = true;
    drop(audit);
    acked.audit_delete_started = true;
    store.delete_topic("audit")?;
    acked.audit_deleted = true;
    append(acked, 10)?;
    let got = billing.poll(100, Duration::ZERO)?;
    billing.commit()?;
    acked.committed = Some(acked.committed.unwrap_or(0) + got.len() as u64);
    store.enforce_retention("orders")?;
    if let Some(second) = leased.get(1) {
        q.ack(second)?;
        acked.queue_acked.push(second.offset());
    }
    append(acked, 3)?;
    Ok(())
}

/// Runs the workload until the machine stops after `stop_after` changes (never, if `None`),
/// cuts the power, reopens and checks. Returns how many changes the run made.
fn run(stop_after: Option<u64>, mode: CrashMode) -> u64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("a").join("b").join("store");
    let mem = MemStorage::new();
    let shadow = Shadow::default();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let faulty_state = faulty.sharing_plan(Arc::new(shadow.clone()));
    if let Some(n) = stop_after {
        faulty.stop_after(n);
    }
    let mut acked = Acked::default();
    match Store::open(&root, store_options(Arc::new(faulty.clone()), Arc::new(faulty_state))) {
        Ok(store) => {
            let _ = workload(&store, &mut acked);
            mem.crash(mode);
            drop(store);
        }
        Err(_) => mem.crash(mode),
    }
    shadow.crash(tmp.path());
    let changes = faulty.changes();

    let ctx = format!("stop after {stop_after:?} changes, {mode:?}");
    let store = Store::open(&root, store_options(Arc::new(mem.clone()), Arc::new(RealStorage)))
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let topics = store.topics().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    if acked.appended > 0 {
        assert!(topics.contains(&"orders".to_string()), "{ctx}: topic lost: {topics:?}");
    }
    let orders = store.topic("orders").unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let (first, next) = (orders.log().first_offset() as usize, orders.log().next_offset() as usize);
    assert!(next >= acked.appended, "{ctx}: lost acknowledged records: end {next} < {}", acked.appended);
    assert!(next <= acked.attempted.len(), "{ctx}: {next} records, {} attempted", acked.attempted.len());
    let got: Vec<Vec<u8>> =
        orders.log().iter(0).map(|r| r.unwrap_or_else(|e| panic!("{ctx}: {e}")).payload().to_vec()).collect();
    assert_eq!(got, acked.attempted[first..next], "{ctx}: the recovered topic is a prefix of what was written");
    if stop_after.is_none() {
        assert!(first > 0, "{ctx}: retention removed the oldest segments");
        assert!(acked.audit_deleted && acked.queue_acked.len() == 2, "{ctx}: the whole workload ran: {acked:?}");
    }
    let groups = store.groups("orders").unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let billing = groups.iter().find(|g| g.group == "billing").map(|g| g.committed);
    if let Some(c) = acked.committed {
        assert!(billing.is_some_and(|b| b >= c), "{ctx}: commit {c} lost, found {billing:?}");
    }
    if !acked.queue_acked.is_empty() {
        let mut o = QueueOptions::default();
        o.durability = CommitDurability::Lazy;
        let q = store.queue("work", "orders", o).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let again = q.try_lease_many(1000).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        for d in &again {
            assert!(!acked.queue_acked.contains(&d.offset()), "{ctx}: acked offset {} delivered again", d.offset());
        }
    }
    if acked.audit_deleted {
        assert!(!topics.contains(&"audit".to_string()), "{ctx}: a deleted topic came back");
    } else if acked.audit_created && !acked.audit_delete_started {
        assert!(topics.contains(&"audit".to_string()), "{ctx}: an acknowledged topic was lost");
    }
    changes
}

fn sweep(modes: impl Fn(u64) -> Vec<CrashMode>) {
    let total = run(None, CrashMode::DropUnsynced);
    assert!(total > 100, "the workload makes {total} storage changes");
    for n in 0..=total {
        for mode in modes(n) {
            run(Some(n), mode);
        }
    }
}

#[test]
fn a_power_cut_at_any_point_of_a_new_stores_life_loses_nothing_acknowledged() {
    sweep(|_| vec![CrashMode::DropUnsynced]);
}

#[test]
fn a_power_cut_that_tears_or_reorders_unsynced_writes_loses_nothing_acknowledged() {
    sweep(|n| vec![CrashMode::TornWrite { seed: n }, CrashMode::RandomSubset { seed: n * 31 + 7 }]);
}
