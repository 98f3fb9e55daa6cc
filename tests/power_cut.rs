//! Simulated power cuts swept over every point of a scripted workload.
//!
//! The workload (appends, atomic batches, syncs, segment rolls, retention) runs on
//! `FaultStorage` over `MemStorage`. For every n, the machine stops after the n-th operation that
//! changes storage (every later one fails), then power is cut in each of three ways: all unsynced
//! writes lost; unsynced writes reaching the disk in order up to one torn at a random byte; a random
//! subset of unsynced writes reaching the disk. Reopening must then succeed (a crash is never
//! reported as corruption) and yield a prefix of what was written that holds everything the
//! durability mode promised.

use evlog::log::WritePath;
use evlog::storage::{CrashMode, FaultStorage, MemStorage, Storage};
use evlog::{Durability, Log, NewRecord, Options};
use std::path::Path;
use std::sync::Arc;

fn options(durability: Durability) -> Options {
    options_on(durability, WritePath::Auto)
}

fn options_on(durability: Durability, path: WritePath) -> Options {
    let mut o = Options::with_durability(durability);
    o.write_path = path;
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
    run_on(durability, WritePath::Auto, stop_after, mode)
}

fn run_on(durability: Durability, path: WritePath, stop_after: Option<u64>, mode: CrashMode) -> u64 {
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = options_on(durability, path);
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
    let mut o = options_on(durability, path);
    o.storage = Arc::new(mem.clone());
    let ctx = format!("{durability:?}, {path:?}, stop after {stop_after:?} changes, {mode:?}");
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
    sweep_on(durability, WritePath::Auto);
}

/// Every point of the workload, three kinds of power cut at each, on one write path.
fn sweep_on(durability: Durability, path: WritePath) {
    let total = run_on(durability, path, None, CrashMode::DropUnsynced);
    assert!(total > 100, "the workload makes {total} storage changes");
    for n in 0..=total {
        for mode in
            [CrashMode::DropUnsynced, CrashMode::TornWrite { seed: n }, CrashMode::RandomSubset { seed: n * 31 + 7 }]
        {
            run_on(durability, path, Some(n), mode);
        }
    }
}

#[test]
fn a_power_cut_at_any_point_of_the_pwrite_fallback_loses_nothing_acknowledged_or_only_what_os_allows() {
    // The Os and Interval sweeps above run on the map path (MemStorage models mapped writes
    // page by page); this one covers the fallback that file systems without fallocate get.
    sweep_on(Durability::Always, WritePath::Pwrite);
    sweep_on(Durability::Os, WritePath::Pwrite);
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

/// Each segment file of a log: (name, bytes).
type SegmentFiles = Vec<(String, Vec<u8>)>;

/// A clean log of several sealed segments with one byte flipped in the middle of the second:
/// the storage, the log's directory, each segment file and every payload.
fn corrupt_log() -> (MemStorage, &'static Path, SegmentFiles, Vec<Vec<u8>>) {
    let mem = MemStorage::new();
    let dir = Path::new("/repair/log");
    let mut o = options(Durability::Always);
    o.storage = Arc::new(mem.clone());
    let log = Log::open(dir, o).expect("open");
    let payloads: Vec<Vec<u8>> = (0..80).map(payload).collect();
    for p in &payloads {
        log.append(p).expect("append");
    }
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    log.close().expect("close");
    let mut segments: Vec<String> =
        mem.list_dir(dir).expect("list").into_iter().filter(|n| n.ends_with(".log")).collect();
    segments.sort();
    let second = dir.join(&segments[1]);
    mem.corrupt_file(&second, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
    });
    let originals = segments.iter().map(|n| (n.clone(), mem.read_file(&dir.join(n)).expect("segment"))).collect();
    (mem, dir, originals, payloads)
}

/// Every file below `dir`, recursively, as bytes.
fn all_files(mem: &MemStorage, dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in mem.list_dir(dir).unwrap_or_default() {
        let p = dir.join(name);
        if mem.dir_exists(&p).unwrap_or(false) {
            out.extend(all_files(mem, &p));
        } else if let Some(b) = mem.read_file(&p) {
            out.push(b);
        }
    }
    out
}

#[test]
fn a_power_cut_at_any_point_of_a_repair_loses_no_byte_and_keeps_every_record_before_the_corruption() {
    // Repair moves the segments after a corrupt one and the corrupt one itself into quarantine/
    // and rewrites the good prefix. Cut the power after each storage operation of it, in each
    // of the three ways, then repair again: the log must end exactly where an uninterrupted
    // repair ends it, and every original segment file must still exist byte for byte somewhere.
    let repaired_end = {
        let (mem, dir, _, _) = corrupt_log();
        let mut o = options(Durability::Always);
        o.storage = Arc::new(mem.clone());
        let report = Log::repair(dir, o.clone()).expect("repair");
        assert!(report.sealed_corruption.is_some() && !report.moved_files.is_empty(), "{report:?}");
        Log::open(dir, o).expect("open").next_offset()
    };
    let mut n = 0u64;
    loop {
        let mut finished = false;
        for mode in [CrashMode::DropUnsynced, CrashMode::TornWrite { seed: n }, CrashMode::RandomSubset { seed: n + 5 }]
        {
            let (mem, dir, originals, payloads) = corrupt_log();
            let faulty = FaultStorage::new(Arc::new(mem.clone()));
            faulty.stop_after(n);
            let mut o = options(Durability::Always);
            o.storage = Arc::new(faulty.clone());
            finished = Log::repair(dir, o).is_ok();
            mem.crash(mode);
            let ctx = format!("stop after {n} changes, {mode:?}");
            let mut o = options(Durability::Always);
            o.storage = Arc::new(mem.clone());
            Log::repair(dir, o.clone()).unwrap_or_else(|e| panic!("{ctx}: repair again: {e}"));
            let log = Log::open(dir, o).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
            assert_eq!(log.next_offset(), repaired_end, "{ctx}: the log ends before the corrupt record");
            let got: Vec<Vec<u8>> = log.iter(0).map(|r| r.expect("record").payload().to_vec()).collect();
            assert_eq!(got, payloads[..got.len()], "{ctx}: every record before the corruption is kept");
            let files = all_files(&mem, Path::new("/repair"));
            for (name, bytes) in &originals {
                assert!(files.contains(bytes), "{ctx}: segment {name} was lost");
            }
        }
        if finished {
            break;
        }
        n += 1;
    }
    assert!(n > 10, "the repair makes {n} storage changes");
}
