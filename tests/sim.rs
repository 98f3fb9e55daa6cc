//! The seeded concurrent simulation (in the spirit of TigerBeetle's VOPR and FoundationDB's
//! simulation): several threads run a random mix of every public mutating operation of a store
//! at once — appends, batches, atomic appends across topics, conditional appends per key,
//! compaction, compression, retention, budgets and other configuration changes, deleting and
//! recreating a topic, maintenance passes (and the maintenance thread), backups, consumer polls
//! and commits, queue leases, acks and nacks — over the in-memory storage while faults are
//! injected (EIO on writes and reads, torn writes, a full disk), then a power cut at a random
//! point (or a clean close), a reopen, a check of everything against a model, a second round of
//! operations on the reopened store and a final check.
//!
//! What the model checks:
//! - every acknowledged record is read back, byte for byte, at its offset, unless a rule the
//!   test configured removed it (compaction keeping the newest record of each key; drop-oldest
//!   and retention below the topic's first offset);
//! - no record is read back twice, and none that no thread tried to append;
//! - an error that says nothing was written (a full topic or disk, a failed precondition, a
//!   refused record) left nothing; an atomic append is whole or absent, and one acknowledged, or
//!   whose error says it is committed, is whole after the reopen;
//! - a group's committed offset never goes back; no thread panics; no call hangs (a watchdog
//!   names the threads still running and the seed).
//!
//! A seed fixes each thread's operations and the faults; the interleaving is the scheduler's, so
//! a failing seed is replayed with `EVLOG_SIM_SEED=<seed>` and usually fails again within a few
//! runs. `cargo test` runs a short budget; `EVLOG_SIM_SEEDS=<n>` (and `EVLOG_SIM_OPS=<per thread>`)
//! run longer by hand.

use evlog::consume::AckMode;
use evlog::log::WhenFull;
use evlog::storage::{CrashMode, Fault, FaultStorage, MemStorage, Op};
use evlog::store::Compression;
use evlog::{ConsumerOptions, Durability, Error, NewRecord, Options, QueueOptions, Store, StoreOptions, TopicConfig};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Topics whose records the model follows: compacted by key, under a drop-oldest budget, plain.
const TOPICS: [&str; 3] = ["compacted", "budgeted", "plain"];
/// The topic one thread deletes and creates again while maintenance runs over it.
const SCRATCH: &str = "scratch";
const THREADS: u64 = 4;
const KEYS: u64 = 12;

/// A small, seeded generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One part of an atomic append: its topic, key and payload.
type Part = (&'static str, Option<Vec<u8>>, Vec<u8>);

/// What the store answered to one record's append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged at this offset.
    Acked(u64),
    /// An error saying nothing was written.
    Nothing,
    /// An error after which it may or may not be there.
    Unknown,
}

#[derive(Debug, Clone)]
struct Attempt {
    topic: &'static str,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    outcome: Outcome,
}

/// What an atomic append's caller was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnOutcome {
    Acked,
    /// Committed, to be completed (`AtomicAppendIncomplete`).
    Committed,
    Nothing,
    Unknown,
}

#[derive(Debug, Default)]
struct Model {
    /// By payload id.
    attempts: HashMap<u64, Attempt>,
    txns: Vec<(TxnOutcome, Vec<u64>)>,
}

/// Whether `e` says that nothing of the call took effect.
fn says_nothing_written(e: &Error) -> bool {
    matches!(
        e,
        Error::TopicFull { .. }
            | Error::RecordTooLarge { .. }
            | Error::BatchTooLarge { .. }
            | Error::InvalidHeaders { .. }
            | Error::KeyVersionMismatch { .. }
            | Error::OffsetMismatch { .. }
            | Error::StorageFull { .. }
            | Error::NotFound { .. }
            | Error::InvalidOptions { .. }
    )
}

fn payload(id: u64, rng: &mut Rng) -> Vec<u8> {
    let mut p = format!("id={id};").into_bytes();
    p.resize(p.len() + rng.below(300) as usize, b'a' + (id % 26) as u8);
    p
}

fn id_of(payload: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(payload).ok()?;
    s.strip_prefix("id=")?.split(';').next()?.parse().ok()
}

struct Sim {
    seed: u64,
    ops_per_thread: u64,
    root: PathBuf,
    tmp: tempfile::TempDir,
    mem: MemStorage,
    model: Mutex<Model>,
    next_id: AtomicU64,
    faults: AtomicU64,
}

impl Sim {
    fn options(&self, fault: &FaultStorage) -> StoreOptions {
        let mut log = Options::with_durability(Durability::Always);
        log.segment_bytes_max = 16 << 10;
        log.record_bytes_max = 1024;
        log.disk_reserve_bytes = 1;
        log.storage = Arc::new(fault.clone());
        let mut o = StoreOptions::with_log(log);
        o.maintenance_interval = Some(Duration::from_millis(2));
        o
    }

    fn open(&self, fault: &FaultStorage) -> Store {
        let store =
            Store::open(&self.root, self.options(fault)).unwrap_or_else(|e| panic!("seed {}: open: {e}", self.seed));
        store
            .configure_topic(
                "compacted",
                TopicConfig::default()
                    .with_compaction(true, Duration::from_secs(3600))
                    .with_compression(Compression::Lz4),
            )
            .unwrap_or_else(|e| panic!("seed {}: configure: {e}", self.seed));
        store
            .configure_topic("budgeted", TopicConfig::default().with_budget(1 << 20, WhenFull::DropOldest))
            .unwrap_or_else(|e| panic!("seed {}: configure: {e}", self.seed));
        store.topic("plain").unwrap_or_else(|e| panic!("seed {}: topic: {e}", self.seed));
        store
    }

    fn record(&self, topic: &'static str, key: Option<Vec<u8>>, payload: &[u8], outcome: Outcome) {
        let id = id_of(payload).expect("an id");
        let a = Attempt { topic, key, payload: payload.to_vec(), outcome };
        self.model.lock().expect("model").attempts.insert(id, a);
    }

    fn outcome(&self, r: &Result<u64, Error>) -> Outcome {
        match r {
            Ok(o) => Outcome::Acked(*o),
            Err(e) if says_nothing_written(e) => Outcome::Nothing,
            Err(_) => Outcome::Unknown,
        }
    }

    /// One thread's operations.
    fn worker(&self, store: &Store, fault: &FaultStorage, w: u64, phase: u64) {
        let mut rng = Rng::new(self.seed ^ (w + 1).wrapping_mul(0xA24B_AED4_963E_E407) ^ phase);
        let group = format!("g{w}");
        let mut committed = 0u64;
        let cut_at = (w == 0 && phase == 0 && rng.chance(60)).then(|| rng.below(self.ops_per_thread));
        let mut scratch_deleted = None;
        let mut full_until = None;
        for n in 0..self.ops_per_thread {
            if cut_at == Some(n) {
                // The machine stops: from now on every change fails (the power cut comes later).
                fault.stop_after(rng.below(20));
            }
            let topic = TOPICS[rng.below(3) as usize];
            let key = rng.chance(85).then(|| format!("k{}", rng.below(KEYS)).into_bytes());
            match rng.below(100) {
                0..=29 => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let p = payload(id, &mut rng);
                    let mut r = NewRecord::new(&p);
                    r.key = key.as_deref();
                    let t = store.topic(topic);
                    let res = t.and_then(|t| t.append_record(&r).map_err(Error::from));
                    self.record(topic, key.clone(), &p, self.outcome(&res));
                }
                30..=39 => {
                    let ids: Vec<u64> =
                        (0..1 + rng.below(5)).map(|_| self.next_id.fetch_add(1, Ordering::Relaxed)).collect();
                    let ps: Vec<Vec<u8>> = ids.iter().map(|&id| payload(id, &mut rng)).collect();
                    let batch: Vec<NewRecord<'_>> = ps
                        .iter()
                        .map(|p| {
                            let mut r = NewRecord::new(p);
                            r.key = key.as_deref();
                            r
                        })
                        .collect();
                    let res = store.topic(topic).and_then(|t| t.append_batch(&batch).map_err(Error::from));
                    for (i, p) in ps.iter().enumerate() {
                        let one = res.as_ref().map(|range| range.start + i as u64).map_err(clone_kind);
                        self.record(topic, key.clone(), p, self.outcome(&one));
                    }
                }
                40..=49 => self.atomic(store, &mut rng),
                50..=51 => {
                    // Appends expecting the next offset: of racing writers, one wins.
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let p = payload(id, &mut rng);
                    let mut r = NewRecord::new(&p);
                    r.key = key.as_deref();
                    let res = store.topic(topic).and_then(|t| Ok(t.append_expecting(t.next_offset(), &r)?));
                    self.record(topic, key.clone(), &p, self.outcome(&res));
                }
                52..=56 => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let p = payload(id, &mut rng);
                    let k = format!("k{}", rng.below(KEYS)).into_bytes();
                    let res = store.topic(topic).and_then(|t| {
                        let last = t.last_offset_for_key(&k)?;
                        Ok(t.append_expecting_key(&k, last, &NewRecord::new(&p).key(&k))?)
                    });
                    self.record(topic, Some(k), &p, self.outcome(&res));
                }
                57..=61 => {
                    let r = store.compact_topic(topic).map(|_| ());
                    self.never_damage("compact_topic", r);
                }
                62..=63 => {
                    let r = store.compress_topic(topic).map(|_| ());
                    self.never_damage("compress_topic", r);
                }
                64..=65 => {
                    let r = store.run_maintenance().map(|pass| pass.last_error);
                    if let Ok(Some(e)) = &r {
                        assert!(
                            !e.contains("corruption") && !e.contains("No such file"),
                            "seed {}: maintenance: {e}",
                            self.seed
                        );
                    }
                    // The stats file and statistics beside every other operation: never damage,
                    // never a deleted topic back (the model's checks see the topics).
                    self.never_damage("write_stats_file", store.write_stats_file());
                    self.never_damage("stats", store.stats(topic).map(|_| ()));
                }
                66..=67 => {
                    // Retention by age on the budgeted topic only (the model allows removals there).
                    let _ = store.enforce_retention("budgeted");
                }
                68..=69 => {
                    // The budget and its policy change under the appenders.
                    let bytes = [1 << 20, 2 << 20][rng.below(2) as usize];
                    let when_full = [WhenFull::DropOldest, WhenFull::Error, WhenFull::Block][rng.below(3) as usize];
                    let config = TopicConfig::default()
                        .with_budget(bytes, when_full)
                        .with_block_timeout(Duration::from_millis(5));
                    let _ = store.configure_topic("budgeted", config);
                }
                70..=73 if w == 1 => {
                    // The scratch topic: created, written, deleted, over and over.
                    if rng.chance(50) {
                        let _ = store.topic(SCRATCH).and_then(|t| Ok(t.append(b"scratch")?));
                        scratch_deleted = Some(false);
                    } else {
                        match store.delete_topic(SCRATCH) {
                            Ok(()) => scratch_deleted = Some(true),
                            Err(Error::NotFound { .. }) => {}
                            Err(Error::TopicInUse { .. }) => {
                                panic!("seed {}: a delete refused while only maintenance held the topic", self.seed)
                            }
                            Err(_) => scratch_deleted = None,
                        }
                    }
                }
                74..=76 => {
                    let dest = self.tmp.path().join(format!("backup-{phase}-{w}-{n}"));
                    if store.backup(&dest).is_ok() {
                        self.check_backup(&dest);
                    }
                }
                77..=86 => {
                    let mut co = ConsumerOptions::default();
                    co.ack_mode = AckMode::Explicit;
                    if let Ok(mut c) = store.consumer(&group, "plain", co) {
                        if let Ok(got) = c.poll(1 + rng.below(20) as usize, Duration::ZERO) {
                            for r in &got {
                                let _ = c.ack(r.offset());
                            }
                        }
                        if c.commit().is_ok() {
                            let now = store
                                .groups("plain")
                                .ok()
                                .and_then(|gs| gs.into_iter().find(|g| g.group == group))
                                .map_or(committed, |g| g.committed);
                            assert!(
                                now >= committed,
                                "seed {}: group {group} went back from {committed} to {now}",
                                self.seed
                            );
                            committed = now;
                        }
                    }
                }
                87..=93 => {
                    let mut qo = QueueOptions::default();
                    qo.lease_timeout = Duration::from_secs(60);
                    if let Ok(q) = store.queue(&format!("q{w}"), "plain", qo)
                        && let Ok(Some(d)) = q.lease(Duration::ZERO)
                    {
                        let _ = if rng.chance(80) { q.ack(&d) } else { q.nack(&d, Duration::ZERO) };
                    }
                }
                // Faults are rare, so that most operations run on a healthy disk between them.
                _ if rng.chance(15) => full_until = self.fault(fault, &mut rng).then_some(n + 3),
                _ => {}
            }
            if full_until == Some(n) {
                fault.set_available_bytes(None);
            }
        }
        if w == 1 && scratch_deleted == Some(true) {
            let _ = store.run_maintenance();
            assert!(
                !store.topics().unwrap_or_default().contains(&SCRATCH.to_string()),
                "seed {}: maintenance brought back a deleted topic",
                self.seed
            );
        }
    }

    /// Faults are EIO, ENOSPC and torn writes: an operation may fail with those, but one that
    /// reports corrupt bytes or a file that vanished under it met another operation's damage.
    fn never_damage(&self, what: &str, r: Result<(), Error>) {
        match r {
            Err(e @ Error::Corruption { .. }) => panic!("seed {}: {what} met corruption: {e}", self.seed),
            Err(Error::Io { source, op, path }) if source.kind() == std::io::ErrorKind::NotFound => {
                panic!("seed {}: {what}: {op} {}: a file vanished: {source}", self.seed, path.display())
            }
            _ => {}
        }
    }

    /// An atomic append over two or three of the followed topics.
    fn atomic(&self, store: &Store, rng: &mut Rng) {
        let n = 2 + rng.below(2);
        let mut parts: Vec<Part> = Vec::new();
        for i in 0..n {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let topic = TOPICS[((rng.below(3)) + i) as usize % 3];
            // Keys of their own: compaction never removes a part, so a missing part is a lost one
            // (unless the drop-oldest budget took it).
            let key = rng.chance(50).then(|| format!("txn-{id}").into_bytes());
            // Now and then a part too large for its topic: the whole append is refused.
            let mut p = payload(id, rng);
            if rng.chance(3) {
                p.resize(2000, b'z');
            }
            parts.push((topic, key, p));
        }
        let records: Vec<(&str, NewRecord<'_>)> = parts
            .iter()
            .map(|(t, k, p)| {
                let mut r = NewRecord::new(p);
                r.key = k.as_deref();
                (*t, r)
            })
            .collect();
        let res = store.append_atomic(&records);
        let (outcome, each) = match &res {
            Ok(offsets) => (TxnOutcome::Acked, offsets.iter().map(|&o| Outcome::Acked(o)).collect::<Vec<_>>()),
            Err(Error::AtomicAppendIncomplete { .. }) => (TxnOutcome::Committed, vec![Outcome::Unknown; parts.len()]),
            Err(e) if says_nothing_written(e) => (TxnOutcome::Nothing, vec![Outcome::Nothing; parts.len()]),
            Err(_) => (TxnOutcome::Unknown, vec![Outcome::Unknown; parts.len()]),
        };
        let mut model = self.model.lock().expect("model");
        let ids = parts.iter().map(|(_, _, p)| id_of(p).expect("id")).collect();
        model.txns.push((outcome, ids));
        for ((topic, key, p), o) in parts.into_iter().zip(each) {
            let id = id_of(&p).expect("id");
            model.attempts.insert(id, Attempt { topic, key, payload: p, outcome: o });
        }
    }

    /// Plans a fault: EIO or a torn write on a topic's (or the journal's) next writes, EIO on a
    /// read, or a full disk for the next few operations (true then).
    fn fault(&self, fault: &FaultStorage, rng: &mut Rng) -> bool {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let path = match rng.below(4) {
            3 => "/txn/".to_string(),
            t => format!("topics/{}/", TOPICS[t as usize]),
        };
        match rng.below(5) {
            0 => fault.fail_once(Op::Write, Some(&path), rng.below(5), Fault::Eio),
            4 => fault.fail_once(Op::Write, Some(&path), rng.below(5), Fault::NoSpace),
            1 => fault.fail_once(
                Op::Write,
                Some(&path),
                rng.below(5),
                Fault::TornWrite { keep_bytes: rng.below(64) as usize },
            ),
            2 => fault.fail_once(Op::Read, Some(&path), rng.below(5), Fault::Eio),
            _ => {
                fault.set_available_bytes(Some(0));
                return true;
            }
        }
        false
    }

    /// A backup opens on its own and every record in it reads back.
    fn check_backup(&self, dest: &Path) {
        let mut o = self.options(&FaultStorage::new(Arc::new(self.mem.clone())));
        o.maintenance_interval = None;
        let b = Store::open(dest, o).unwrap_or_else(|e| panic!("seed {}: a backup does not open: {e}", self.seed));
        for t in b.topics().expect("topics") {
            for r in b.topic(&t).expect("topic").iter(0) {
                r.unwrap_or_else(|e| panic!("seed {}: backup topic {t}: {e}", self.seed));
            }
        }
    }

    /// Checks the store against the model after a reopen.
    fn check(&self, store: &Store, after: &str) {
        let seed = self.seed;
        let model = self.model.lock().expect("model");
        // What each followed topic holds: id -> (offset, key, payload); the first offsets.
        let mut present: HashMap<u64, (&'static str, u64)> = HashMap::new();
        let mut newest_by_key: HashMap<(&'static str, Vec<u8>), u64> = HashMap::new();
        let mut first: HashMap<&'static str, u64> = HashMap::new();
        for topic in TOPICS {
            let t = store.topic(topic).unwrap_or_else(|e| panic!("seed {seed} {after}: topic {topic}: {e}"));
            first.insert(topic, t.first_offset());
            for r in t.iter(0) {
                let r = r.unwrap_or_else(|e| panic!("seed {seed} {after}: {topic}: a record does not read back: {e}"));
                let id = id_of(r.payload())
                    .unwrap_or_else(|| panic!("seed {seed} {after}: {topic}: a record nobody appended"));
                let a = model
                    .attempts
                    .get(&id)
                    .unwrap_or_else(|| panic!("seed {seed} {after}: {topic}: id {id} nobody appended"));
                assert_eq!(a.topic, topic, "seed {seed} {after}: id {id} in the wrong topic");
                assert_eq!(r.payload(), &a.payload[..], "seed {seed} {after}: id {id}: bytes differ");
                assert_eq!(r.key(), a.key.as_deref(), "seed {seed} {after}: id {id}: key differs");
                let dup = present.insert(id, (topic, r.offset()));
                assert!(dup.is_none(), "seed {seed} {after}: id {id} read back twice");
                if let Some(k) = &a.key {
                    let e = newest_by_key.entry((topic, k.clone())).or_insert(0);
                    *e = (*e).max(r.offset());
                }
            }
        }
        // A missing record is allowed only where a configured rule removed it.
        let may_be_gone = |a: &Attempt, offset: u64| -> bool {
            let removed_below = first.get(a.topic).is_some_and(|&f| offset < f);
            let compacted =
                a.key.as_ref().is_some_and(|k| newest_by_key.get(&(a.topic, k.clone())).is_some_and(|&n| n > offset));
            (a.topic == "budgeted" && removed_below) || compacted
        };
        for (id, a) in &model.attempts {
            match a.outcome {
                Outcome::Acked(offset) => match present.get(id) {
                    Some((_, at)) => {
                        assert_eq!(*at, offset, "seed {seed} {after}: id {id} acknowledged at {offset}, read at {at}")
                    }
                    None => assert!(
                        may_be_gone(a, offset),
                        "seed {seed} {after}: acknowledged id {id} ({} offset {offset}) is lost",
                        a.topic
                    ),
                },
                Outcome::Nothing => {
                    assert!(
                        !present.contains_key(id),
                        "seed {seed} {after}: id {id}'s error said nothing was written, it is there"
                    )
                }
                Outcome::Unknown => {}
            }
        }
        for (i, (outcome, ids)) in model.txns.iter().enumerate() {
            let here: Vec<bool> = ids.iter().map(|id| present.contains_key(id)).collect();
            let whole = here.iter().all(|&h| h);
            let none = here.iter().all(|&h| !h);
            // Parts have keys of their own, so compaction never removes one: a part missing from a
            // transaction otherwise there can only be one the drop-oldest budget took.
            let explained = |id: &u64| {
                let a = &model.attempts[id];
                a.topic == "budgeted" && first.get("budgeted").is_some_and(|&f| f > 0)
            };
            let partial_ok = ids.iter().zip(&here).all(|(id, &h)| h || explained(id));
            match outcome {
                TxnOutcome::Acked | TxnOutcome::Committed => {
                    assert!(
                        whole || partial_ok,
                        "seed {seed} {after}: atomic append {i} ({outcome:?}) is not whole: {here:?}"
                    )
                }
                TxnOutcome::Nothing => {
                    assert!(none, "seed {seed} {after}: atomic append {i} was refused but left {here:?}")
                }
                TxnOutcome::Unknown => {
                    assert!(
                        whole || none || partial_ok,
                        "seed {seed} {after}: atomic append {i} is half there: {here:?}"
                    )
                }
            }
        }
    }

    fn run_phase(self: &Arc<Self>, store: &Store, fault: &FaultStorage, phase: u64) {
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for w in 0..THREADS {
            let (sim, store, fault, tx) = (self.clone(), store.clone(), fault.clone(), tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("sim-{}-w{w}", self.seed))
                .spawn(move || {
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.worker(&store, &fault, w, phase)));
                    let _ = tx.send((w, r.err().map(|p| panic_text(&p))));
                })
                .expect("spawn");
            handles.push(h);
        }
        drop(tx);
        let mut running: HashSet<u64> = (0..THREADS).collect();
        while !running.is_empty() {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok((w, None)) => {
                    running.remove(&w);
                }
                Ok((w, Some(p))) => panic!("seed {}: thread w{w} panicked: {p}", self.seed),
                Err(_) => {
                    let names: Vec<String> = running.iter().map(|w| format!("sim-{}-w{w}", self.seed)).collect();
                    panic!("seed {}: deadlock? threads still running after 120 s: {names:?}", self.seed)
                }
            }
        }
        for h in handles {
            h.join().expect("worker");
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// The same error's kind again, for each record of a batch (errors are not `Clone`).
fn clone_kind(e: &Error) -> Error {
    if says_nothing_written(e) {
        Error::InvalidOptions { reason: e.to_string() }
    } else {
        Error::Io { op: "append", path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }
    }
}

fn run_seed(seed: u64, ops_per_thread: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let mem = MemStorage::new();
    let sim = Arc::new(Sim {
        seed,
        ops_per_thread,
        root,
        tmp,
        mem: mem.clone(),
        model: Mutex::default(),
        next_id: AtomicU64::new(0),
        faults: AtomicU64::new(0),
    });
    let mut rng = Rng::new(seed);
    // Phase 0: everything at once, faults, then a power cut (or a clean close).
    let fault = FaultStorage::new(Arc::new(mem.clone()));
    let store = sim.open(&fault);
    sim.run_phase(&store, &fault, 0);
    let power_cut = rng.chance(70);
    if power_cut {
        fault.stop_after(0);
    }
    drop(store);
    if power_cut {
        let mode = match rng.below(3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TornWrite { seed },
            _ => CrashMode::RandomSubset { seed },
        };
        mem.crash(mode);
    }
    // Phase 1: reopen on a healthy disk, check, go on, close, reopen, check.
    let fault = FaultStorage::new(Arc::new(mem.clone()));
    let store = sim.open(&fault);
    sim.check(&store, if power_cut { "after the power cut" } else { "after a clean close" });
    sim.run_phase(&store, &fault, 1);
    drop(store);
    let fault = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = sim.options(&fault);
    o.maintenance_interval = None;
    let store = Store::open(&sim.root, o).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
    sim.check(&store, "at the end");
    let model = sim.model.lock().expect("model");
    let count = |o: Outcome| {
        model.attempts.values().filter(|a| std::mem::discriminant(&a.outcome) == std::mem::discriminant(&o)).count()
    };
    let txns = |o: TxnOutcome| model.txns.iter().filter(|t| t.0 == o).count();
    let held: usize = TOPICS.iter().map(|t| store.topic(t).map_or(0, |t| t.iter(0).count())).sum();
    eprintln!(
        "sim: seed {seed}: {} records acknowledged, {} refused, {} unknown; atomic appends {} acknowledged, {} committed-incomplete, {} refused, {} unknown; {} records held at the end; power cut: {power_cut}; faults injected: {}",
        count(Outcome::Acked(0)),
        count(Outcome::Nothing),
        count(Outcome::Unknown),
        txns(TxnOutcome::Acked),
        txns(TxnOutcome::Committed),
        txns(TxnOutcome::Nothing),
        txns(TxnOutcome::Unknown),
        held,
        sim.faults.load(Ordering::Relaxed),
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeded_concurrent_operations_with_faults_and_power_cuts_keep_every_promise() {
    let ops = env_u64("EVLOG_SIM_OPS").unwrap_or(120);
    if let Some(seed) = env_u64("EVLOG_SIM_SEED") {
        run_seed(seed, ops);
        return;
    }
    let seeds = env_u64("EVLOG_SIM_SEEDS").unwrap_or(12);
    let base = env_u64("EVLOG_SIM_BASE").unwrap_or(0x5EED);
    for seed in base..base + seeds {
        eprintln!("sim: seed {seed} ({THREADS} threads x {ops} operations, 2 phases)");
        run_seed(seed, ops);
    }
}

#[test]
fn the_simulation_model_notices_a_lost_acknowledged_record() {
    // The check must be able to fail: a model that claims an extra acknowledged record.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mem = MemStorage::new();
    let sim = Arc::new(Sim {
        seed: 0,
        ops_per_thread: 0,
        root: tmp.path().join("store"),
        tmp,
        mem: mem.clone(),
        model: Mutex::default(),
        next_id: AtomicU64::new(0),
        faults: AtomicU64::new(0),
    });
    let fault = FaultStorage::new(Arc::new(mem));
    let store = sim.open(&fault);
    sim.record("plain", None, b"id=7;", Outcome::Acked(0));
    let lost = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.check(&store, "test")));
    assert!(lost.is_err(), "the model misses a lost record");
}
