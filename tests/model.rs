//! Model-based test: random operations, crashes and reopens against a `Vec` model.
//!
//! The log runs on `MemStorage` with tiny limits so that a few records roll segments, cross
//! index granules and checkpoints. After every step the log must agree with the model; after a
//! crash it must hold a prefix of the model at least as long as everything acknowledged as
//! durable, and recovery must never mistake a crash for corruption.

use evlog::log::WritePath;
use evlog::storage::{CrashMode, MemStorage};
use evlog::{Durability, Log, NewRecord, Options};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    ts: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Action {
    Append(Rec),
    Batch(Vec<Rec>),
    Read(usize),
    Iter(usize),
    TimeLookup(i64),
    Sync,
    Reopen,
    Crash(CrashMode),
    RemoveBefore(usize),
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        -50i64..50,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        proptest::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(ts, key, payload)| Rec { ts, key, payload })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        10 => rec().prop_map(Action::Append),
        3 => proptest::collection::vec(rec(), 1..6).prop_map(Action::Batch),
        3 => any::<usize>().prop_map(Action::Read),
        1 => any::<usize>().prop_map(Action::Iter),
        2 => (-60i64..60).prop_map(Action::TimeLookup),
        2 => Just(Action::Sync),
        1 => Just(Action::Reopen),
        2 => prop_oneof![
            Just(CrashMode::ProcessKill),
            Just(CrashMode::DropUnsynced),
            any::<u64>().prop_map(|seed| CrashMode::TornWrite { seed }),
            any::<u64>().prop_map(|seed| CrashMode::RandomSubset { seed }),
        ]
        .prop_map(Action::Crash),
        1 => any::<usize>().prop_map(Action::RemoveBefore),
    ]
}

/// Both write paths: the map (the default where the storage has one) and the pwrite fallback.
fn write_path() -> impl Strategy<Value = WritePath> {
    prop_oneof![Just(WritePath::Auto), Just(WritePath::Pwrite)]
}

fn options(mem: &MemStorage, durability: Durability, path: WritePath) -> Options {
    let mut o = Options::with_durability(durability);
    o.write_path = path;
    o.storage = Arc::new(mem.clone());
    o.segment_bytes_max = 1024;
    o.record_bytes_max = 256;
    o.index_interval_bytes = 100;
    o.checkpoint_interval_bytes = 300;
    o.open_segments_max = 2;
    o.read_buffer_bytes = 64;
    o
}

struct Harness {
    mem: MemStorage,
    path: WritePath,
    durability: Durability,
    dir: PathBuf,
    log: Option<Log>,
    /// Every record appended, by offset (records below `first` were removed by retention).
    model: Vec<Rec>,
    first: u64,
    /// Offsets below this are durable: acknowledged under `Always`, or covered by `sync`.
    durable: u64,
}

impl Harness {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        self.log = None;
        self.log = Some(
            Log::open(&self.dir, options(&self.mem, self.durability, self.path))
                .unwrap_or_else(|e| panic!("reopen: {e}")),
        );
    }

    fn check(&self) {
        let log = self.log();
        assert_eq!(log.next_offset(), self.model.len() as u64, "next offset");
        assert_eq!(log.first_offset(), self.first, "first offset");
        let got: Vec<Rec> = log
            .iter(0)
            .map(|r| {
                let r = r.expect("record");
                Rec { ts: r.timestamp(), key: r.key().map(<[u8]>::to_vec), payload: r.payload().to_vec() }
            })
            .collect();
        assert_eq!(got, self.model[self.first as usize..], "contents");
    }

    fn apply(&mut self, a: &Action) {
        let always = self.durability == Durability::Always;
        match a {
            Action::Append(r) => {
                let nr = NewRecord {
                    timestamp: Some(r.ts),
                    key: r.key.as_deref(),
                    headers: Vec::new(),
                    payload: &r.payload,
                };
                let o = self.log().append_record(&nr).expect("append");
                assert_eq!(o, self.model.len() as u64);
                self.model.push(r.clone());
                if always {
                    self.durable = self.model.len() as u64;
                }
            }
            Action::Batch(rs) => {
                let nrs: Vec<NewRecord<'_>> = rs
                    .iter()
                    .map(|r| NewRecord {
                        timestamp: Some(r.ts),
                        key: r.key.as_deref(),
                        headers: Vec::new(),
                        payload: &r.payload,
                    })
                    .collect();
                let range = self.log().append_batch(&nrs).expect("batch");
                assert_eq!(range, self.model.len() as u64..(self.model.len() + rs.len()) as u64);
                self.model.extend(rs.iter().cloned());
                if always {
                    self.durable = self.model.len() as u64;
                }
            }
            Action::Read(i) => {
                let n = self.model.len() + 2;
                let o = (*i % n) as u64;
                let got = self.log().read(o).expect("read");
                match self.model.get(o as usize) {
                    Some(r) if o >= self.first => {
                        let g = got.expect("present");
                        assert_eq!((g.offset(), g.timestamp(), g.payload()), (o, r.ts, &r.payload[..]));
                    }
                    _ => assert!(got.is_none(), "offset {o} should be absent"),
                }
            }
            Action::Iter(i) => {
                let from = (*i % (self.model.len() + 1)) as u64;
                let n = self.log().iter(from).count() as u64;
                assert_eq!(n, self.model.len() as u64 - from.max(self.first));
            }
            Action::TimeLookup(ts) => {
                let expected = self
                    .model
                    .iter()
                    .enumerate()
                    .skip(self.first as usize)
                    .find(|(_, r)| r.ts >= *ts)
                    .map(|(i, _)| i as u64);
                assert_eq!(self.log().offset_for_timestamp(*ts).expect("lookup"), expected, "ts {ts}");
            }
            Action::Sync => {
                self.log().sync().expect("sync");
                self.durable = self.model.len() as u64;
            }
            Action::Reopen => {
                self.reopen();
                // A clean close is durable.
                self.durable = self.model.len() as u64;
            }
            Action::Crash(mode) => {
                self.mem.crash(*mode);
                self.reopen();
                let n = self.log().next_offset();
                if *mode == CrashMode::ProcessKill {
                    assert_eq!(n, self.model.len() as u64, "kill -9 loses nothing");
                }
                assert!(n >= self.durable, "lost durable records: {n} < {}", self.durable);
                assert!(n <= self.model.len() as u64);
                self.model.truncate(n as usize);
                // Retention is a directory change: a crash can undo an unsynced one, never
                // leave a gap. First offset is whatever segment survived first.
                self.first = self.log().first_offset();
                self.durable = n;
            }
            Action::RemoveBefore(i) => {
                let o = (*i % (self.model.len() + 1)) as u64;
                self.log().remove_before(o).expect("retention");
                let first = self.log().first_offset();
                assert!(first <= o.max(self.first) && first >= self.first);
                self.first = first;
            }
        }
        self.check();
    }
}

fn run(durability: Durability, path: WritePath, actions: &[Action]) {
    let mem = MemStorage::new();
    let dir = Path::new("/model").to_path_buf();
    let log = Log::open(&dir, options(&mem, durability, path)).expect("open");
    let mut h = Harness { mem, durability, path, dir, log: Some(log), model: Vec::new(), first: 0, durable: 0 };
    for a in actions {
        h.apply(a);
    }
}

proptest! {
    // PROPTEST_CASES=10000 for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model_under_always_durability(actions in proptest::collection::vec(action(), 1..60), path in write_path()) {
        run(Durability::Always, path, &actions);
    }

    #[test]
    fn log_matches_the_model_under_os_durability(actions in proptest::collection::vec(action(), 1..60), path in write_path()) {
        run(Durability::Os, path, &actions);
    }
}
