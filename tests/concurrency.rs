//! Public operations run at the same time, and partial failures: each test here reproduces one
//! defect found by running two public calls at once (issue 26) and asserts the promise that broke.

use evlog::log::{CompactOptions, WhenFull};
use evlog::storage::{Fault, FaultStorage, MemStorage, Op, OpenMode, Storage, StorageFile};
use evlog::{Durability, Error, Log, NewRecord, Options, Store, StoreOptions, TopicConfig};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Duration;

fn store_options(storage: Arc<dyn Storage>, segment_bytes_max: u64) -> StoreOptions {
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = segment_bytes_max;
    log.record_bytes_max = 4096;
    log.storage = storage;
    let mut o = StoreOptions::with_log(log);
    o.maintenance_interval = None;
    o
}

/// Item 1 of issue 26: two compactions and a compression looping beside an appender used one
/// temp name per segment and swapped without checking what they replaced: sealed segments came
/// out empty or uncompacted, and the newest record of a key was lost.
#[test]
fn concurrent_compactions_and_compressions_never_lose_the_newest_record_of_a_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(evlog::storage::RealStorage);
    let store = Store::open(tmp.path(), store_options(storage.clone(), 64 << 10)).expect("store");
    let topic = store.topic("t").expect("topic");
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut rewriters = Vec::new();
    for which in 0..3 {
        let (store, done, errors) = (store.clone(), done.clone(), errors.clone());
        rewriters.push(std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let r = if which < 2 {
                    store.compact_topic("t").map(|_| ())
                } else {
                    store.compress_topic("t").map(|_| ())
                };
                if let Err(e) = r {
                    errors.lock().expect("errors").push(e.to_string());
                }
            }
        }));
    }
    let mut newest: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    for i in 0..30_000u64 {
        let k = format!("key-{}", i % 50);
        let p = format!("value {i} {}", "x".repeat(80)).into_bytes();
        let o = topic.append_record(&NewRecord::new(&p).key(k.as_bytes())).expect("append");
        newest.insert(k, (o, p));
    }
    done.store(true, Ordering::Relaxed);
    for r in rewriters {
        r.join().expect("rewriter");
    }
    assert_eq!(errors.lock().expect("errors").as_slice(), &[] as &[String], "no rewrite failed");
    drop(topic);
    drop(store);
    let store = Store::open(tmp.path(), store_options(storage, 64 << 10)).expect("reopen");
    let topic = store.topic("t").expect("topic");
    let mut seen: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    for r in topic.iter(0) {
        let r = r.expect("every record reads back");
        let k = String::from_utf8(r.key().expect("keyed").to_vec()).expect("utf-8");
        seen.insert(k, (r.offset(), r.payload().to_vec()));
    }
    assert_eq!(seen, newest, "each key's newest acknowledged record is there");
}

/// Item 2: an atomic append whose part would overflow a full topic returned `TopicFull`
/// ("nothing written") after the other topic's part was already in.
#[test]
fn an_atomic_append_refused_by_a_full_topic_writes_nothing_anywhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), store_options(Arc::new(evlog::storage::RealStorage), 256 << 10)).expect("store");
    store.topic("a").expect("a");
    store.configure_topic("b", TopicConfig::default().with_budget(1 << 20, WhenFull::Error)).expect("config");
    let b = store.topic("b").expect("b");
    let filler = vec![1u8; 3000];
    while b.append(&filler).is_ok() {}
    let big = vec![2u8; 3500];
    let err =
        store.append_atomic(&[("a", NewRecord::new(b"small")), ("b", NewRecord::new(&big))]).expect_err("b is full");
    assert!(matches!(err, Error::TopicFull { .. }), "{err}");
    assert_eq!(store.topic("a").expect("a").next_offset(), 0, "nothing of the refused append reached a");
    // The next atomic append, to a alone, is whole and alone.
    store.append_atomic(&[("a", NewRecord::new(b"next"))]).expect("atomic");
    drop(b);
    drop(store);
    let store =
        Store::open(tmp.path(), store_options(Arc::new(evlog::storage::RealStorage), 256 << 10)).expect("reopen");
    let a: Vec<Vec<u8>> = store.topic("a").expect("a").iter(0).map(|r| r.expect("r").payload().to_vec()).collect();
    assert_eq!(a, vec![b"next".to_vec()]);
}

/// Item 2: an atomic append whose part fails after the commit says so (with its id), and the
/// journal keeps it until it is completed: the next atomic append's done marker used to remove
/// the journal segment that held it.
#[test]
fn a_committed_atomic_append_whose_part_failed_says_so_and_is_completed_at_the_next_open() {
    let mem = MemStorage::new();
    let fault = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = store_options(Arc::new(fault.clone()), 4096);
    o.log.record_bytes_max = 512;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().join("s"), o.clone()).expect("store");
    store.topic("a").expect("a");
    store.topic("b").expect("b");
    // Fill the journal so that it rolls: the unfinished transaction's segment gets sealed.
    for i in 0..40u64 {
        let p = format!("warm {i}");
        store.append_atomic(&[("a", NewRecord::new(p.as_bytes()))]).expect("atomic");
    }
    fault.fail_once(Op::Write, Some("topics/b/"), 0, Fault::Eio);
    let err = store
        .append_atomic(&[("a", NewRecord::new(b"half a")), ("b", NewRecord::new(b"half b"))])
        .expect_err("b's write fails");
    let Error::AtomicAppendIncomplete { txn, .. } = &err else { panic!("a committed-but-incomplete error: {err}") };
    assert!(err.to_string().contains("committed"), "{err}");
    let txn = *txn;
    fault.clear();
    // More transactions, enough to roll the journal past the unfinished one.
    for i in 0..60u64 {
        let p = format!("after {i} {}", "y".repeat(100));
        store.append_atomic(&[("a", NewRecord::new(p.as_bytes()))]).expect("atomic");
    }
    drop(store);
    let store = Store::open(tmp.path().join("s"), o).expect("reopen");
    let b: Vec<Vec<u8>> = store.topic("b").expect("b").iter(0).map(|r| r.expect("r").payload().to_vec()).collect();
    assert_eq!(b, vec![b"half b".to_vec()], "transaction {txn}'s part in b was completed");
    let a_has = store.topic("a").expect("a").iter(0).filter(|r| r.as_ref().expect("r").payload() == b"half a").count();
    assert_eq!(a_has, 1, "its part in a is there once");
}

/// Item 2: the reserved transaction header is refused on ordinary appends, so no foreign record
/// can make a part of an atomic append look applied.
#[test]
fn an_ordinary_append_carrying_the_reserved_transaction_header_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::default()).expect("log");
    let id = 0u64.to_le_bytes();
    let err = log.append_record(&NewRecord::new(b"x").header("evlog.txn", &id)).expect_err("reserved");
    assert!(matches!(err, evlog::LogError::InvalidHeaders { .. }), "{err}");
    let err = log.append_batch(&[NewRecord::new(b"y").header("evlog.txn", &id)]).expect_err("reserved");
    assert!(matches!(err, evlog::LogError::InvalidHeaders { .. }), "{err}");
    assert_eq!(log.next_offset(), 0);
}

/// Item 3: a maintenance pass over a topic being deleted created it again.
#[test]
fn maintenance_beside_topic_deletions_never_brings_a_deleted_topic_back_nor_refuses_a_delete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), store_options(Arc::new(MemStorage::new()), 64 << 10)).expect("store");
    let done = Arc::new(AtomicBool::new(false));
    let pass = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                store.run_maintenance().expect("pass");
            }
        })
    };
    for round in 0..300 {
        let name = format!("t{}", round % 8);
        store.topic(&name).expect("topic").append(b"x").expect("append");
        store.delete_topic(&name).expect("a delete waits for the pass instead of failing");
    }
    done.store(true, Ordering::Relaxed);
    pass.join().expect("pass thread");
    store.run_maintenance().expect("pass");
    assert_eq!(store.topics().expect("topics"), Vec::<String>::new(), "every deleted topic stays deleted");
}

/// A scrape (`Store::stats` through `record_metrics`) and the stats file's writer list the
/// topics and then read each: a topic deleted in between must neither come back nor make the
/// delete fail as "in use".
#[test]
fn statistics_beside_topic_deletions_never_bring_a_deleted_topic_back_nor_refuse_a_delete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), store_options(Arc::new(MemStorage::new()), 64 << 10)).expect("store");
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for name in store.topics().expect("topics") {
                    match store.stats(&name) {
                        Ok(_) | Err(Error::NotFound { .. }) => {}
                        Err(e) => panic!("stats of {name}: {e}"),
                    }
                }
                evlog::monitor::record_metrics(&store).expect("metrics");
                store.write_stats_file().expect("stats file");
            }
        })
    };
    for round in 0..300 {
        let name = format!("t{}", round % 8);
        store.topic(&name).expect("topic").append(b"x").expect("append");
        store.delete_topic(&name).expect("a delete waits for the statistics instead of failing");
    }
    done.store(true, Ordering::Relaxed);
    scraper.join().expect("scraper thread");
    assert_eq!(store.topics().expect("topics"), Vec::<String>::new(), "every deleted topic stays deleted");
}

/// The file whose reads block, who hears of the first one, and what releases it.
type Blocked = (String, mpsc::Sender<()>, Arc<Barrier>);

/// A storage where an open or a read of one file blocks until released: a slow disk under one
/// segment.
#[derive(Debug, Clone)]
struct Gate {
    inner: Arc<dyn Storage>,
    blocked: Arc<Mutex<Option<Blocked>>>,
    /// Opens and reads of the gated file let through before one blocks.
    pass_first: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
struct GateFile {
    inner: Arc<dyn StorageFile>,
    path: String,
    gate: Gate,
}

impl StorageFile for GateFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.gate.pass(&self.path);
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
        self.inner.sync_data()
    }
}

impl Gate {
    /// An open or a read of `path`: the first one of the gated file past `pass_first` tells the
    /// test and waits until it is released (once).
    fn pass(&self, path: &str) {
        let hold = {
            let mut blocked = self.blocked.lock().expect("gate");
            match blocked.as_ref() {
                Some((p, ..)) if path.ends_with(p.as_str()) => {
                    if self.pass_first.load(Ordering::Relaxed) > 0 {
                        self.pass_first.fetch_sub(1, Ordering::Relaxed);
                        None
                    } else {
                        blocked.take().map(|(_, tx, release)| (tx, release))
                    }
                }
                _ => None,
            }
        };
        if let Some((tx, release)) = hold {
            let _ = tx.send(());
            release.wait();
        }
    }
}

impl Storage for Gate {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.dir_exists(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        self.pass(&path.display().to_string());
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(GateFile { inner, path: path.display().to_string(), gate: self.clone() }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn evlog::storage::LockGuard>> {
        self.inner.lock(path)
    }
}

impl Gate {
    /// Arms the gate on the file named `file`: returns where its hold is announced and the
    /// barrier that releases it.
    fn hold(&self, file: &str) -> (mpsc::Receiver<()>, Arc<Barrier>) {
        let (tx, rx) = mpsc::channel();
        let release = Arc::new(Barrier::new(2));
        *self.blocked.lock().expect("gate") = Some((file.to_string(), tx, release.clone()));
        (rx, release)
    }
}

/// A log over in-memory storage behind a gate, with small segments (8 KiB, records to 1 KiB).
fn gated_log(dir: &str) -> (Gate, Arc<Log>) {
    let gate = Gate { inner: Arc::new(MemStorage::new()), blocked: Arc::default(), pass_first: Arc::default() };
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 8 << 10;
    o.record_bytes_max = 1024;
    o.storage = Arc::new(gate.clone());
    (gate, Arc::new(Log::open(dir, o).expect("log")))
}

/// Item 4: a conditional append for a key found in no active record looked through every sealed
/// segment while holding the writer lock, so every other append waited on that read.
#[test]
fn a_conditional_append_reading_sealed_segments_does_not_hold_other_appends_back() {
    let (gate, log) = gated_log("/k");
    for i in 0..400u64 {
        log.append_record(
            &NewRecord::new(format!("v{i} {}", "p".repeat(100)).as_bytes()).key(format!("k{}", i % 7).as_bytes()),
        )
        .expect("append");
    }
    assert!(log.segment_count() > 3, "several sealed segments");
    // No key index file yet for the oldest segment's lookup: the lookup reads the segment.
    let (rx, release) = gate.hold(&format!("{:020}.log", log.first_offset()));
    let conditional = {
        let log = log.clone();
        std::thread::spawn(move || {
            log.append_expecting_key(b"never-seen", None, &NewRecord::new(b"first").key(b"never-seen"))
        })
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the lookup reads the oldest segment");
    // The lookup is stuck on a slow read; a plain append goes through meanwhile.
    let (done_tx, done_rx) = mpsc::channel();
    let plain = {
        let log = log.clone();
        std::thread::spawn(move || {
            let r = log.append(b"plain");
            let _ = done_tx.send(());
            r
        })
    };
    let went_through = done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
    *gate.blocked.lock().expect("gate") = None;
    release.wait();
    plain.join().expect("plain").expect("plain append");
    conditional.join().expect("conditional").expect("conditional append");
    assert!(went_through, "a plain append waited for a conditional append's read of sealed segments");
}

/// Item 5: `compact` on a topic whose records all sat in the active segment compacted nothing.
#[test]
fn an_explicit_compaction_seals_the_active_segment_and_compacts_what_it_held() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), store_options(Arc::new(MemStorage::new()), 64 << 20)).expect("store");
    let t = store.topic("t").expect("topic");
    for i in 0..10_000u64 {
        let k = format!("k{}", i % 100);
        t.append_record(&NewRecord::new(format!("v{i}").as_bytes()).key(k.as_bytes())).expect("append");
    }
    assert_eq!(t.segment_count(), 1, "everything is in the active segment");
    let r = store.compact_topic("t").expect("compact");
    assert_eq!((r.records_before, r.records_after), (10_000, 100), "{r:?}");
    assert_eq!(r.compacted_below, 10_000, "{r:?}");
    assert_eq!(t.iter(0).count(), 100);
    // Appends go on into a fresh active segment.
    assert_eq!(t.append(b"after").expect("append"), 10_000);
    // `Log::compact` without sealing leaves the active segment as it is, and says so.
    let log_only = t.compact(&CompactOptions::default()).expect("compact");
    assert_eq!(log_only.compacted_below, 10_000, "{log_only:?}");
}

/// Found by the simulation: a zero-fill write ahead of the data that failed half way (torn)
/// left bytes past what the writer counted as allocated, a roll then sealed the segment with
/// those zeros in it, and every reader of the sealed segment reported corruption.
#[test]
fn a_torn_zero_fill_before_a_roll_never_leaves_zeros_inside_a_sealed_segment() {
    let mem = MemStorage::new();
    let fault = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = Options::with_durability(Durability::Always);
    o.storage = Arc::new(fault.clone());
    let log = Log::open("/z", o.clone()).expect("log");
    // The first append's data write goes through; the zero-fill after it is torn.
    fault.fail_once(Op::Write, Some(".log"), 1, Fault::TornWrite { keep_bytes: 100 });
    log.append_record(&NewRecord::new(b"one").key(b"k")).expect("append");
    assert_eq!(fault.injected(), 1, "the zero-fill was torn");
    log.compact(&CompactOptions::default().sealing_active()).expect("compact seals the active segment");
    log.append(b"two").expect("append");
    let read: Vec<Vec<u8>> = log.iter(0).map(|r| r.expect("every record reads back").payload().to_vec()).collect();
    assert_eq!(read, vec![b"one".to_vec(), b"two".to_vec()]);
    log.close().expect("close");
    let log = Log::open("/z", o).expect("reopen");
    assert_eq!(log.iter(0).filter(|r| r.is_ok()).count(), 2);
}

/// A key looked up beside a compaction of the segment it reads: the lookup (outside the writer
/// lock) built the segment's key index from the file the compaction then replaced, and cached
/// it after the compaction had forgotten the old one; later lookups read the new file at the old
/// positions.
#[test]
fn a_key_lookup_beside_a_compaction_never_leaves_a_key_index_of_the_replaced_file() {
    let (gate, log) = gated_log("/kc");
    let mut newest = HashMap::new();
    for i in 0..300u64 {
        // Early keys of their own survive compaction, at other positions in the rewritten file.
        let k = if i < 40 && i % 2 == 0 { format!("u{i}") } else { format!("k{}", i % 7) };
        let o = log
            .append_record(&NewRecord::new(format!("v{i} {}", "p".repeat(100)).as_bytes()).key(k.as_bytes()))
            .expect("append");
        newest.insert(k, o);
    }
    let (rx, release) = gate.hold(&format!("{:020}.log", log.first_offset()));
    // A key found in no segment: the lookup reads every sealed one; the oldest is opened, then
    // its first read held up.
    gate.pass_first.store(1, Ordering::Relaxed);
    let lookup = {
        let log = log.clone();
        std::thread::spawn(move || log.last_offset_for_key(b"absent"))
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the lookup opened the oldest segment");
    log.compact(&CompactOptions::default()).expect("compact");
    release.wait();
    assert_eq!(lookup.join().expect("lookup").expect("lookup"), None);
    for (k, o) in &newest {
        assert_eq!(log.last_offset_for_key(k.as_bytes()).expect("lookup after the compaction"), Some(*o), "{k}");
        let all: Vec<u64> = log.iter_key(k.as_bytes(), 0).map(|r| r.expect("record").offset()).collect();
        assert_eq!(all.last(), Some(o), "{k}: {all:?}");
    }
}

/// Found by the simulation: an iterator loaded a sealed segment (its flags, its index), a
/// compression swapped the file, and the iterator's scan opened the segment by name again:
/// the compressed bytes were read as plain frames (or a compacted file without its gaps), and
/// the read reported corruption.
#[test]
fn an_iterator_beside_a_compression_reads_the_file_it_loaded_not_the_one_swapped_in() {
    let (gate, log) = gated_log("/ic");
    let mut want = Vec::new();
    for i in 0..200u64 {
        let p = format!("v{i} {}", "p".repeat(100)).into_bytes();
        log.append(&p).expect("append");
        want.push(p);
    }
    let (rx, release) = gate.hold(&format!("{:020}.log", log.first_offset()));
    // The load opens the file and reads its header and all of it (this storage has no maps)
    // under the segment cache's lock; what comes next (the scan) is held up.
    gate.pass_first.store(3, Ordering::Relaxed);
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || log.iter(0).map(|r| r.map(|r| r.payload().to_vec())).collect::<Vec<_>>())
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the iterator opened the oldest segment");
    let c = log.compress().expect("compress");
    assert!(c.segments_compressed > 0, "{c:?}");
    release.wait();
    let got: Vec<Vec<u8>> =
        reader.join().expect("reader").into_iter().map(|r| r.expect("every record reads back")).collect();
    assert_eq!(got, want);
}

/// The stats file's writers (its thread and explicit calls) share one temp name: two at once must
/// never rename the other's temp file away (found by the simulation, seed 24330).
#[test]
fn stats_file_writes_beside_each_other_all_succeed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), store_options(Arc::new(MemStorage::new()), 64 << 10)).expect("store");
    store.topic("t").expect("topic").append(b"x").expect("append");
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    store.write_stats_file().expect("a stats file write beside another");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
}
