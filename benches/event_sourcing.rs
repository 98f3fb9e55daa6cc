//! Event-sourcing benchmarks; prints markdown tables.
//!
//! - conditional appends: one `append` per record vs `append_expecting` (next offset) vs
//!   `append_expecting_key` (the key's newest offset), 100 B records, `Os`;
//! - loading one aggregate: `iter_key` of the 100 events of one key in a topic of 10,000,000
//!   records (100,000 keys, interleaved): the first lookup (key indexes built by one scan per
//!   segment) and warm lookups (median and p99 over 1,000 random keys).
//!
//! - scheduled jobs: `try_lease` + `ack` latency of due jobs with none and with 100,000
//!   scheduled jobs parked (not due), `Lazy` queue durability.
//!
//! `cargo bench --bench event_sourcing`

use evlog::store::CommitDurability;
use evlog::{Durability, Log, NewRecord, Options, QueueOptions, Store, StoreOptions};
use std::time::Instant;

fn rate(n: u64, secs: f64) -> String {
    format!("{:.2} M/s", n as f64 / secs / 1e6)
}

fn conditional() {
    let n = 300_000u64;
    let payload = [1u8; 100];
    let mut rows = Vec::new();
    for kind in ["append", "append, key map kept", "append_expecting", "append_expecting_key"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = Log::open(tmp.path(), Options::with_durability(Durability::Os)).expect("open");
        let keys: Vec<Vec<u8>> = (0..1_000).map(|k| format!("order-{k}").into_bytes()).collect();
        if kind == "append, key map kept" {
            // A topic read by key keeps its active segment's key map: every keyed append
            // updates it, conditional or not.
            assert_eq!(log.last_offset_for_key(b"nobody").expect("lookup"), None);
        }
        let mut last: Vec<Option<u64>> = vec![None; keys.len()];
        let start = Instant::now();
        for i in 0..n {
            let k = (i % 1_000) as usize;
            let r = NewRecord::new(&payload).key(&keys[k]);
            let o = match kind {
                "append" | "append, key map kept" => log.append_record(&r),
                "append_expecting" => log.append_expecting(i, &r),
                _ => log.append_expecting_key(&keys[k], last[k], &r),
            }
            .expect("append");
            last[k] = Some(o);
        }
        rows.push((kind, start.elapsed().as_secs_f64()));
    }
    println!("| append, 100 B keyed records, `Os` | rate | time ÷ plain `append` | ÷ `append` with the key map kept |");
    println!("|---|---|---|---|");
    let (plain, kept) = (rows[0].1, rows[1].1);
    for (kind, secs) in rows {
        println!("| `{kind}` | {} | {:.2}× | {:.2}× |", rate(n, secs), secs / plain, secs / kept);
    }
}

fn aggregates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::with_durability(Durability::Os)).expect("open");
    let payload = [2u8; 100];
    let keys: Vec<Vec<u8>> = (0..100_000).map(|k| format!("aggregate-{k:06}").into_bytes()).collect();
    for chunk in 0..10_000usize {
        let batch: Vec<NewRecord<'_>> =
            (0..1_000).map(|i| NewRecord::new(&payload).key(&keys[(chunk * 1_000 + i) % keys.len()])).collect();
        log.append_batch(&batch).expect("batch");
    }
    log.sync().expect("sync");
    let load = |k: usize| -> usize { log.iter_key(&keys[k], 0).inspect(|r| assert!(r.is_ok(), "{r:?}")).count() };
    let start = Instant::now();
    assert_eq!(load(42), 100);
    let cold = start.elapsed();
    let mut times: Vec<f64> = (0..1_000)
        .map(|i| {
            let k = (i * 7_919) % keys.len();
            let start = Instant::now();
            assert_eq!(load(k), 100);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("| `iter_key`, 100 events of one key in 10,000,000 records ({} segments) | time |", log.segment_count());
    println!("|---|---|");
    println!(
        "| first lookup (each segment's key index built by a scan and written) | {:.0} ms |",
        cold.as_secs_f64() * 1e3
    );
    println!("| warm, median of 1,000 random keys | {:.3} ms |", times[times.len() / 2]);
    println!("| warm, p99 | {:.3} ms |", times[times.len() * 99 / 100]);
}

fn scheduled() {
    println!("| `try_lease` + `ack` of a due job (`Lazy`) | median | p99 |");
    println!("|---|---|---|");
    for pending in [0u64, 100_000] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut o = StoreOptions::with_log(Options::with_durability(Durability::Os));
        o.maintenance_interval = None;
        let store = Store::open(tmp.path(), o).expect("store");
        let mut qo = QueueOptions::default();
        qo.durability = CommitDurability::Lazy;
        let q = store.queue("workers", "jobs", qo).expect("queue");
        let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
            as i64
            + 86_400_000;
        for i in 0..pending {
            q.push_at(&NewRecord::new(b"tomorrow"), later + i as i64).expect("push");
        }
        assert!(q.try_lease().expect("lease").is_none(), "parks the scheduled ones");
        for _ in 0..10_000 {
            q.push(&NewRecord::new(b"now")).expect("push");
        }
        let mut times: Vec<f64> = (0..10_000)
            .map(|_| {
                let start = Instant::now();
                let d = q.try_lease().expect("lease").expect("a due job");
                q.ack(&d).expect("ack");
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "| {pending} scheduled jobs pending | {:.1} µs | {:.1} µs |",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}

fn main() {
    scheduled();
    println!();
    conditional();
    println!();
    aggregates();
}
