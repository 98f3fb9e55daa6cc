//! Simulated power cuts swept over every point of a scripted workload.
//!
//! The workload (appends, atomic batches, syncs, segment rolls, retention) runs on
//! `FaultStorage` over `MemStorage`. For every n, the machine stops after the n-th operation that
//! changes storage (every later one fails), then power is cut in each of three ways: all unsynced
//! writes lost; unsynced writes reaching the disk in order up to one torn at a random byte; a random
//! subset of unsynced writes reaching the disk. Reopening must then succeed (a crash is never
//! reported as corruption) and yield a prefix of what was written that holds everything the
//! durability mode promised.

use evlog::storage::{CrashMode, FaultStorage, MemStorage};
use evlog::{Durability, Log, NewRecord, Options};
use std::path::Path;
use std::sync::Arc;

fn options(durability: Durability) -> Options {
    let mut o = Options::with_durability(durability);
    o.segment_bytes_max = 1024;
    o.record_bytes_max = 256;
    o.index_interval_bytes = 100;
    o.checkpoint_interval_bytes = 300;
    o.read_buffer_bytes = 128;
    o
}

fn payload(i: usize) -> Vec<u8> {
    format!("record {i} {}", "z".repeat(i % 23)).into_bytes()
}

/// What the workload did before the machine stopped.
#[derive(Debug, Default)]
struct Outcome {
    /// Every record whose append was attempted, in offset order (a failed append's records may
    /// or may not survive).
    attempted: Vec<Vec<u8>>,
    /// Offsets below this are durable by the mode's promise.
    durable: usize,
    /// Records whose append returned successfully.
    acknowledged: usize,
}

/// Runs the script until an operation fails; returns what was attempted and promised.
fn workload(log: &Log, durability: Durability) -> Outcome {
    let mut out = Outcome::default();
    for step in 0..60usize {
        let segments = log.segment_count();
        let first_of_op = out.attempted.len();
        let result = match step % 6 {
            0 | 1 | 3 => {
                out.attempted.push(payload(first_of_op));
                log.append(&payload(first_of_op)).map(|_| ())
            }
            2 => {
                let ps: Vec<Vec<u8>> = (0..3).map(|k| payload(first_of_op + k)).collect();
                out.attempted.extend(ps.iter().cloned());
                let rs: Vec<NewRecord<'_>> = ps.iter().map(|p| NewRecord::new(p)).collect();
                log.append_batch(&rs).map(|_| ())
            }
            4 => log.sync().map(|()| out.durable = out.attempted.len()),
            _ => {
                if step % 12 == 5 {
                    log.remove_before(out.attempted.len() as u64 / 2).map(|_| ())
                } else {
                    out.attempted.push(payload(first_of_op));
                    log.append(&payload(first_of_op)).map(|_| ())
                }
            }
        };
        if result.is_err() {
            return out;
        }
        out.acknowledged = out.attempted.len();
        if durability == Durability::Always {
            out.durable = out.attempted.len();
        } else if log.segment_count() > segments {
            // A roll fsyncs everything before the record that caused it.
            out.durable = out.durable.max(first_of_op);
        }
    }
    out
}

fn run(durability: Durability, stop_after: Option<u64>, mode: CrashMode) -> u64 {
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = options(durability);
    o.storage = Arc::new(faulty.clone());
    let dir = Path::new("/sweep");
    if let Some(n) = stop_after {
        faulty.stop_after(n);
    }
    let outcome = match Log::open(dir, o) {
        Ok(log) => {
            let out = workload(&log, durability);
            mem.crash(mode);
            drop(log);
            out
        }
        Err(_) => {
            mem.crash(mode);
            Outcome::default()
        }
    };
    let changes = faulty.changes();
    let mut o = options(durability);
    o.storage = Arc::new(mem.clone());
    let ctx = format!("{durability:?}, stop after {stop_after:?} changes, {mode:?}");
    let log = Log::open(dir, o).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let (first, next) = (log.first_offset() as usize, log.next_offset() as usize);
    assert!(next >= outcome.durable, "{ctx}: lost durable records: end {next} < {}", outcome.durable);
    assert!(next <= outcome.attempted.len(), "{ctx}: {next} records, only {} attempted", outcome.attempted.len());
    let got: Vec<Vec<u8>> =
        log.iter(0).map(|r| r.unwrap_or_else(|e| panic!("{ctx}: {e}")).payload().to_vec()).collect();
    assert_eq!(got.len(), next - first, "{ctx}: offsets are contiguous");
    assert_eq!(got, outcome.attempted[first..next], "{ctx}: the recovered log is a prefix of what was written");
    // And it takes appends again.
    assert_eq!(log.append(b"after").unwrap_or_else(|e| panic!("{ctx}: {e}")), next as u64);
    changes
}

fn sweep(durability: Durability) {
    let total = run(durability, None, CrashMode::DropUnsynced);
    assert!(total > 100, "the workload makes {total} storage changes");
    for n in 0..=total {
        for mode in
            [CrashMode::DropUnsynced, CrashMode::TornWrite { seed: n }, CrashMode::RandomSubset { seed: n * 31 + 7 }]
        {
            run(durability, Some(n), mode);
        }
    }
}

#[test]
fn a_power_cut_at_any_point_loses_nothing_acknowledged_under_always() {
    sweep(Durability::Always);
}

#[test]
fn a_power_cut_at_any_point_loses_only_what_os_mode_allows() {
    sweep(Durability::Os);
}

#[test]
fn a_process_kill_at_any_point_loses_nothing_under_os() {
    // kill -9 keeps the page cache: every acknowledged append survives, in every mode.
    let total = run(Durability::Os, None, CrashMode::ProcessKill);
    for n in 0..=total {
        let mem = MemStorage::new();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let mut o = options(Durability::Os);
        o.storage = Arc::new(faulty.clone());
        faulty.stop_after(n);
        let Ok(log) = Log::open("/kill", o) else { continue };
        let out = workload(&log, Durability::Os);
        mem.crash(CrashMode::ProcessKill);
        drop(log);
        let mut o = options(Durability::Os);
        o.storage = Arc::new(mem.clone());
        let log = Log::open("/kill", o).unwrap_or_else(|e| panic!("stop after {n}: {e}"));
        // Everything acknowledged is there; the failed operation's records may be too.
        let next = log.next_offset() as usize;
        assert!(next >= out.acknowledged, "stop after {n}: {next} < {}", out.acknowledged);
        assert!(next <= out.attempted.len());
    }
}

#[test]
fn a_power_cut_at_any_point_loses_only_what_interval_mode_allows() {
    // An interval longer than the test: only syncs, rolls and checkpoints make data durable,
    // exactly the README's bound for a flusher that has not fired yet.
    sweep(Durability::Interval(std::time::Duration::from_secs(3600)));
}
