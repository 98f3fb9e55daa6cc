//! Storage lifecycle benchmarks; prints markdown tables.
//!
//! - compaction throughput: 1,000,000 records of 100 B over 10,000 keys (16 MiB segments),
//!   compacted once; records and bytes per second, bytes before and after;
//! - online backup of a 1 GiB store (1 KiB records) while one thread appends (`Os`, one
//!   `append` per record): backup time, and the appender's rate during it against its rate
//!   alone; to the same file system (sealed segments hard-linked) and, when `/dev/shm` exists,
//!   to another one (everything copied).
//!
//! `cargo bench --bench lifecycle`

use evlog::{CompactOptions, Durability, Log, NewRecord, Options, Store, StoreOptions};
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
        "| destination | store | backup time | bytes copied / linked | appender alone | appender during the backup |"
    );
    println!("|---|---|---|---|---|---|");
    for (what, dest) in targets {
        let (alone, _) = rate_while(&store, Duration::from_secs(2), || Duration::ZERO);
        let mut report = None;
        let (during, took) = rate_while(&store, Duration::ZERO, || {
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

fn main() {
    compaction();
    println!();
    backup();
}
