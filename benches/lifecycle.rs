//! Storage lifecycle benchmarks; prints markdown tables.
//!
//! - compression: ratio, compression speed, and a full `Log::scan` before and after, on
//!   JSON-like telemetry and on random bytes (1,000,000 records of about 200 B, 16 MiB segments);
//! - compaction throughput: 1,000,000 records of 100 B over 10,000 keys (16 MiB segments),
//!   compacted once; records and bytes per second, bytes before and after;
//! - online backup of a 1 GiB store (1 KiB records) while one thread appends (`Os`, one
//!   `append` per record): backup time, and the appender's rate during it against its rate
//!   alone; to the same file system (sealed segments hard-linked) and, when `/dev/shm` exists,
//!   to another one (everything copied).
//!
//! `cargo bench --bench lifecycle`

use evlog::log::CompactOptions;
use evlog::{Durability, Log, NewRecord, Options, Store, StoreOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn compaction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 16 << 20;
    let log = Log::open(tmp.path(), o).expect("open");
    let payload = [5u8; 100];
    let keys: Vec<Vec<u8>> = (0..10_000).map(|k| format!("key-{k:05}").into_bytes()).collect();
    for chunk in 0..1_000usize {
        let batch: Vec<NewRecord<'_>> =
            (0..1_000).map(|i| NewRecord::new(&payload).key(&keys[(chunk * 1_000 + i) % keys.len()])).collect();
        log.append_batch(&batch).expect("batch");
    }
    log.sync().expect("sync");
    let started = Instant::now();
    let r = log.compact(&CompactOptions::default()).expect("compact");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| records | keys | sealed bytes before → after | segments rewritten | time | records/s | MB/s (sealed bytes read) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.1} MB → {:.2} MB | {} | {:.2} s | {:.2} M/s | {:.0} |",
        r.records_before,
        r.keys,
        r.bytes_before as f64 / 1e6,
        r.bytes_after as f64 / 1e6,
        r.segments_rewritten,
        secs,
        r.records_before as f64 / secs / 1e6,
        r.bytes_before as f64 / secs / 1e6
    );
}

/// Appends from one thread until `stop`; counts into `count`.
fn appender(store: &Store, stop: &AtomicBool, count: &AtomicU64) {
    let t = store.topic("events").expect("topic");
    let p = [9u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        t.append(&p).expect("append");
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The appender's rate over `d` while `during` runs (or alone when `during` returns at once).
fn rate_while(store: &Store, d: Duration, during: impl FnOnce() -> Duration) -> (f64, Duration) {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let (n, took, elapsed) = std::thread::scope(|s| {
        s.spawn(|| appender(store, &stop, &count));
        let start = Instant::now();
        let took = during();
        let left = d.saturating_sub(start.elapsed());
        std::thread::sleep(left);
        let n = count.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        (n, took, elapsed)
    });
    (n as f64 / elapsed.as_secs_f64(), took)
}

fn backup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let mut o = StoreOptions::with_log(Options::with_durability(Durability::Os));
    o.maintenance_interval = None;
    let store = Store::open(&root, o).expect("store");
    let t = store.topic("events").expect("topic");
    let p = [3u8; 1024];
    let batch: Vec<NewRecord<'_>> = (0..1_000).map(|_| NewRecord::new(&p)).collect();
    for _ in 0..1_000 {
        t.append_batch(&batch).expect("batch");
    }
    store.topic("events").expect("topic").sync().expect("sync");
    let mut targets = vec![("same file system (links)", tmp.path().join("copy"))];
    let shm = Path::new("/dev/shm").is_dir().then(|| tempfile::tempdir_in("/dev/shm").expect("tmp in /dev/shm"));
    if let Some(shm) = &shm {
        targets.push(("/dev/shm, another file system (copies)", shm.path().join("copy")));
    }
    println!(
        "| destination | store | backup time | bytes copied / linked | appender alone | appender over ≥ 250 ms holding the backup |"
    );
    println!("|---|---|---|---|---|---|");
    for (what, dest) in targets {
        // Short windows: the appender writes ≈ 0.7 GB/s here, and the store should stay ≈ 1 GiB.
        let (alone, _) = rate_while(&store, Duration::from_millis(250), || Duration::ZERO);
        let mut report = None;
        let (during, took) = rate_while(&store, Duration::from_millis(250), || {
            let start = Instant::now();
            report = Some(store.backup(&dest).expect("backup"));
            start.elapsed()
        });
        let r = report.expect("report");
        println!(
            "| {what} | {:.2} GB | {:.2} s | {:.0} MB / {:.0} MB | {:.0} k/s | {:.0} k/s ({:.2}×) |",
            (r.bytes_copied + r.bytes_linked) as f64 / 1e9,
            took.as_secs_f64(),
            r.bytes_copied as f64 / 1e6,
            r.bytes_linked as f64 / 1e6,
            alone / 1e3,
            during / 1e3,
            during / alone
        );
        let _ = std::fs::remove_dir_all(&dest);
    }
}

/// A JSON-like telemetry record, or random bytes of the same size.
fn record(i: u64, random: bool, x: &mut u64) -> Vec<u8> {
    if random {
        return (0..200)
            .map(|_| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x as u8
            })
            .collect();
    }
    format!(
        r#"{{"host":"web-{:03}","metric":"http.server.requests","status":{},"latency_ms":{},"region":"eu-west-1","trace":"{:016x}"}}"#,
        i % 173,
        [200, 200, 200, 201, 404, 500][(i % 6) as usize],
        (i * 7919) % 900,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
    .into_bytes()
}

/// Seconds of the fastest of 3 full scans.
fn scan_secs(log: &Log) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            log.scan(0, |r| {
                n += r.payload().len() as u64;
                std::ops::ControlFlow::Continue(())
            })
            .expect("scan");
            std::hint::black_box(n);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn compression() {
    println!("| data | records | sealed bytes plain → lz4 | ratio | compress | scan plain | scan compressed |");
    println!("|---|---|---|---|---|---|---|");
    for random in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut o = Options::with_durability(Durability::Os);
        o.segment_bytes_max = 16 << 20;
        let log = Log::open(tmp.path(), o).expect("open");
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let n = 1_000_000u64;
        for chunk in 0..n / 1_000 {
            let payloads: Vec<Vec<u8>> = (0..1_000).map(|i| record(chunk * 1_000 + i, random, &mut x)).collect();
            let batch: Vec<NewRecord<'_>> = payloads.iter().map(|p| NewRecord::new(p)).collect();
            log.append_batch(&batch).expect("batch");
        }
        log.sync().expect("sync");
        let plain = scan_secs(&log);
        let start = Instant::now();
        let r = log.compress().expect("compress");
        let took = start.elapsed().as_secs_f64();
        let packed = scan_secs(&log);
        println!(
            "| {} | {n} | {:.0} MB → {:.0} MB | {:.2}× | {:.0} MB/s | {:.1} M/s | {:.1} M/s ({:.2}×) |",
            if random { "random bytes, 200 B" } else { "JSON telemetry, ≈ 150 B" },
            r.bytes_before as f64 / 1e6,
            r.bytes_after as f64 / 1e6,
            r.bytes_before as f64 / r.bytes_after.max(1) as f64,
            r.bytes_before as f64 / took / 1e6,
            n as f64 / plain / 1e6,
            n as f64 / packed / 1e6,
            plain / packed
        );
    }
}

fn main() {
    compression();
    println!();
    compaction();
    println!();
    backup();
}
