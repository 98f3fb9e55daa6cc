//! An arbitrary sequence of operations (append, batch, read, iterate, sync, roll, retention,
//! crash of any kind, reopen, injected I/O faults) checked against a model.
//!
//! Consumer commits and acks live in sled, which does its own I/O outside the fault-injecting
//! storage; they are exercised by tests/store.rs and the kill tests instead.
#![no_main]

use evlog::storage::{CrashMode, Fault, FaultStorage, MemStorage, Op};
use evlog::{Durability, Log, NewRecord, Options};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

#[derive(Arbitrary, Debug)]
enum Action {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Read(u16),
    Iter(u16),
    Sync,
    Retain(u16),
    Reopen,
    Crash(u8, u64),
    Fault(u8, u8, bool),
}

#[derive(Arbitrary, Debug)]
struct Input {
    always: bool,
    actions: Vec<Action>,
}

fn options(storage: Arc<dyn evlog::storage::Storage>, always: bool) -> Options {
    let mut o = Options::with_durability(if always { Durability::Always } else { Durability::Os });
    o.storage = storage;
    o.segment_bytes_max = 600;
    o.record_bytes_max = 200;
    o.index_interval_bytes = 64;
    o.checkpoint_interval_bytes = 200;
    o.read_buffer_bytes = 48;
    o.open_segments_max = 2;
    // Preallocation, its zero tail and its trim stay exercised, at a size that costs little.
    o.preallocate_bytes = 256;
    o
}

fuzz_target!(|input: Input| {
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let dir = Path::new("/ops");
    let open = |faulty: &FaultStorage| Log::open(dir, options(Arc::new(faulty.clone()), input.always));
    let Ok(mut log) = open(&faulty) else { return };
    // Records by offset (None: removed by retention is tracked by `first`).
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut durable = 0usize;
    // Records of a failed append: they may or may not have reached the file.
    let mut maybe: Vec<Vec<u8>> = Vec::new();
    for a in input.actions.iter().take(64) {
        match a {
            Action::Append(p) => match log.append(p) {
                Ok(o) => {
                    assert_eq!(o, model.len() as u64);
                    model.push(p.clone());
                    if input.always {
                        durable = model.len();
                    }
                }
                Err(_) if p.len() > 200 => {}
                Err(e) => {
                    assert!(log.is_poisoned() || faulty.injected() > 0, "append failed: {e}");
                    if maybe.is_empty() && !log.is_poisoned() {
                        continue;
                    }
                    if maybe.is_empty() {
                        maybe = vec![p.clone()];
                    }
                }
            },
            Action::Batch(ps) => {
                let batch: Vec<Vec<u8>> = ps.iter().take(8).cloned().collect();
                let rs: Vec<NewRecord<'_>> = batch.iter().map(|p| NewRecord::new(p)).collect();
                match log.append_batch(&rs) {
                    Ok(r) => {
                        assert_eq!(r.start, model.len() as u64);
                        model.extend(batch);
                        if input.always {
                            durable = model.len();
                        }
                    }
                    Err(_) => {
                        if log.is_poisoned() && maybe.is_empty() {
                            maybe = batch;
                        }
                    }
                }
            }
            Action::Read(i) => {
                let o = u64::from(*i) % (model.len() as u64 + 2);
                match log.read(o) {
                    Ok(Some(r)) => assert_eq!(r.payload(), &model[o as usize][..]),
                    Ok(None) => assert!(o >= model.len() as u64 || o < log.first_offset()),
                    Err(e) => assert!(log.is_poisoned() || faulty.injected() > 0, "read failed: {e}"),
                }
            }
            Action::Iter(i) => {
                let from = u64::from(*i) % (model.len() as u64 + 1);
                for r in log.iter(from) {
                    match r {
                        Ok(r) => assert_eq!(r.payload(), &model[r.offset() as usize][..]),
                        Err(_) => {
                            assert!(faulty.injected() > 0, "iteration failed without an injected fault");
                            break;
                        }
                    }
                }
            }
            Action::Sync => {
                if log.sync().is_ok() {
                    durable = model.len();
                }
            }
            Action::Retain(i) => {
                let _ = log.remove_before(u64::from(*i) % (model.len() as u64 + 1));
            }
            Action::Reopen | Action::Crash(..) => {
                if let Action::Crash(kind, seed) = a {
                    let mode = match kind % 4 {
                        0 => CrashMode::ProcessKill,
                        1 => CrashMode::DropUnsynced,
                        2 => CrashMode::TornWrite { seed: *seed },
                        _ => CrashMode::RandomSubset { seed: *seed },
                    };
                    mem.crash(mode);
                } else if !log.is_poisoned() && log.sync().is_ok() {
                    durable = model.len();
                }
                drop(log);
                faulty.clear();
                log = open(&faulty).unwrap_or_else(|e| panic!("reopen after {a:?}: {e}"));
                let next = log.next_offset() as usize;
                assert!(next >= durable, "lost durable records: {next} < {durable}");
                assert!(next <= model.len() + maybe.len(), "{next} records, {} written", model.len());
                if next > model.len() {
                    let extra = next - model.len();
                    model.extend(maybe.drain(..extra));
                }
                maybe.clear();
                model.truncate(next);
                durable = next;
                for r in log.iter(0) {
                    let r = r.expect("recovered log reads");
                    assert_eq!(r.payload(), &model[r.offset() as usize][..]);
                }
            }
            Action::Fault(op, skip, nospace) => {
                let op = [Op::Write, Op::SyncData, Op::SetLen, Op::Open, Op::Rename, Op::SyncDir, Op::Remove]
                    [usize::from(*op) % 7];
                let fault = if *nospace { Fault::NoSpace } else { Fault::Eio };
                faulty.fail_once(op, None, u64::from(*skip % 4), fault);
            }
        }
    }
});
