//! Work-queue benchmarks; prints a markdown table (each figure is the best of a few runs).
//!
//! - queue throughput with 1 and 4 worker threads, one `lease` + `ack` per record, for each
//!   `CommitDurability`, and 1 worker taking 100 at a time (`try_lease_many` + `ack_many`);
//! - the same records through a plain consumer group with one `poll(1)` + `commit` per record
//!   (the same per-record bookkeeping, without leases), to show the queue's overhead.
//!
//! `cargo bench --bench queue`

use evlog::store::CommitDurability;
use evlog::{ConsumerOptions, Durability, NewRecord, Options, QueueOptions, Store, StoreOptions};
use std::time::{Duration, Instant};

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(Options::with_durability(Durability::Os))).expect("store");
    let payload = [7u8; 100];
    let batch: Vec<NewRecord<'_>> = (0..1000).map(|_| NewRecord::new(&payload)).collect();
    let mut run = 0;
    println!(
        "| durability | records | plain group, poll(1) + commit | queue, 1 worker | queue, 4 workers | queue 1 worker ÷ group | queue, 1 worker, 100 per lease_many/ack_many |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (durability, n) in
        [(CommitDurability::Always, 2_000u64), (CommitDurability::Os, 20_000), (CommitDurability::Lazy, 200_000)]
    {
        let mut best = [f64::MAX; 4];
        for _ in 0..3 {
            run += 1;
            let topic = format!("t{run}");
            let t = store.topic(&topic).expect("topic");
            for _ in 0..n / 1000 {
                t.append_batch(&batch).expect("batch");
            }
            // Plain consumer group: one record, one commit.
            let mut o = ConsumerOptions::default();
            o.durability = durability;
            let mut c = store.consumer("g", &topic, o).expect("consumer");
            let start = Instant::now();
            for _ in 0..n {
                assert_eq!(c.poll(1, Duration::ZERO).expect("poll").len(), 1);
                c.commit().expect("commit");
            }
            best[0] = best[0].min(start.elapsed().as_secs_f64());
            c.close().expect("close");
            // Queues: lease + ack per record.
            for (slot, workers, batch) in [(1usize, 1usize, 1usize), (2, 4, 1), (3, 1, 100)] {
                let mut qo = QueueOptions::default();
                qo.durability = durability;
                let q = store.queue(&format!("q{workers}-{batch}"), &topic, qo).expect("queue");
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..workers {
                        let q = q.clone();
                        s.spawn(move || {
                            loop {
                                let got = q.try_lease_many(batch).expect("lease");
                                if got.is_empty() {
                                    break;
                                }
                                q.ack_many(&got).expect("ack");
                            }
                        });
                    }
                });
                best[slot] = best[slot].min(start.elapsed().as_secs_f64());
                assert_eq!(q.stats().acked, n);
            }
        }
        let rate = |secs: f64| {
            let r = n as f64 / secs;
            if r >= 1e6 { format!("{:.2} M/s", r / 1e6) } else { format!("{:.1} k/s", r / 1e3) }
        };
        println!(
            "| {durability:?} | {n} | {} | {} | {} | {:.2}× | {} |",
            rate(best[0]),
            rate(best[1]),
            rate(best[2]),
            best[0] / best[1],
            rate(best[3])
        );
    }
}
