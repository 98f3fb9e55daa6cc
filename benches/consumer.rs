//! Consumer benchmarks; prints a markdown table (each figure is one run of many operations).
//!
//! - poll + durable commit every 1,000 records vs plain `Log::iter` over the same 1M records;
//! - tail latency: from `append` called (`Durability::Os`) to `poll` returning in another
//!   thread that was waiting (blocked at once, or busy-waiting 1 ms first: `spin_before_block`).
//!   One append every 200 µs, the producer sleeping in between; and, with the spinning consumer,
//!   the producer pacing itself by busy-waiting instead, as Chronicle Queue's latency harness
//!   (JLBH) does: a producer that slept starts its append with caches its idle vCPU lost;
//! - commit latency per `CommitDurability`.
//!
//! `cargo bench --bench consumer`

use evlog::store::CommitDurability;
use evlog::{ConsumerOptions, Durability, NewRecord, Options, Store, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(Options::with_durability(Durability::Os))).expect("store");
    let topic = store.topic("bench").expect("topic");
    let payload = [7u8; 100];
    let batch: Vec<NewRecord<'_>> = (0..1000).map(|_| NewRecord::new(&payload)).collect();
    let n = 1_000_000u64;
    for _ in 0..n / 1000 {
        topic.append_batch(&batch).expect("batch");
    }
    topic.sync().expect("sync");

    println!("| what | figure |");
    println!("|---|---|");

    // Throughput: iter vs poll + commit every 1000.
    let mut best_iter = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut count = 0u64;
        for r in topic.iter(0) {
            count += r.expect("record").payload().len() as u64 / 100;
        }
        assert_eq!(count, n);
        best_iter = best_iter.min(t.elapsed().as_secs_f64());
    }
    println!("| `iter`, 1M × 100 B | {:.2} M records/s |", n as f64 / best_iter / 1e6);
    for (i, durability) in
        [CommitDurability::Always, CommitDurability::Os, CommitDurability::Lazy].into_iter().enumerate()
    {
        let mut best = f64::MAX;
        for run in 0..3 {
            let mut o = ConsumerOptions::default();
            o.durability = durability;
            let mut c = store.consumer(&format!("g{i}-{run}"), "bench", o).expect("consumer");
            let t = Instant::now();
            let mut count = 0u64;
            while count < n {
                let got = c.poll(1000, Duration::ZERO).expect("poll");
                count += got.len() as u64;
                c.commit().expect("commit");
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "| `poll(1000)` + `commit()` ({durability:?}) per 1,000, 1M × 100 B | {:.2} M records/s = {:.2}× `iter` |",
            n as f64 / best / 1e6,
            best_iter / best
        );
    }

    // Tail latency: a consumer waiting in poll (blocked at once, or busy-waiting first), woken
    // by an append in another thread.
    for (topic, spin, pacing) in [
        ("tail", Duration::ZERO, Pacing::Sleep),
        ("tail-spin", Duration::from_millis(1), Pacing::Sleep),
        ("tail-spin-paced", Duration::from_millis(1), Pacing::BusyWait),
    ] {
        tail_latency(&store, topic, spin, pacing);
    }

    // Commit latency.
    for durability in [CommitDurability::Always, CommitDurability::Os, CommitDurability::Lazy] {
        let mut o = ConsumerOptions::default();
        o.durability = durability;
        let mut c = store.consumer(&format!("commit-{durability:?}"), "bench", o).expect("consumer");
        let mut lat = Vec::with_capacity(2000);
        for i in 0..2000u64 {
            let t = Instant::now();
            c.commit_offset(i).expect("commit");
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "| `commit` latency ({durability:?}) | p50 {}, p99 {} |",
            micros(percentile(&lat, 0.5)),
            micros(percentile(&lat, 0.99))
        );
    }
}

/// How the tail-latency producer waits between appends.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// `thread::sleep`: the producer's CPU idles.
    Sleep,
    /// A busy loop on the clock, as a latency-sensitive producer (and JLBH) paces itself.
    BusyWait,
}

/// Append → poll latency percentiles for a consumer that spins `spin` before it blocks.
fn tail_latency(store: &Store, topic: &str, spin: Duration, pacing: Pacing) {
    let tail = store.topic(topic).expect("topic");
    let mut opts = ConsumerOptions::default();
    opts.spin_before_block = spin;
    let mut c = store.consumer("tail", topic, opts).expect("consumer");
    let samples = 5_000;
    let ready = Arc::new(AtomicBool::new(false));
    let producer = {
        let tail = tail.clone();
        let ready = ready.clone();
        std::thread::spawn(move || {
            let mut sent = Vec::with_capacity(samples);
            for _ in 0..samples {
                // Wait until the consumer is (about to be) blocked again.
                while !ready.swap(false, Ordering::AcqRel) {
                    std::hint::spin_loop();
                }
                let gap = Duration::from_micros(200);
                match pacing {
                    Pacing::Sleep => std::thread::sleep(gap),
                    Pacing::BusyWait => {
                        let from = Instant::now();
                        while from.elapsed() < gap {
                            std::hint::spin_loop();
                        }
                    }
                }
                // Timed from the call: the consumer is often woken before `append` returns.
                let t = Instant::now();
                tail.append(b"tick").expect("append");
                sent.push(t);
            }
            sent
        })
    };
    let mut received = Vec::with_capacity(samples);
    for _ in 0..samples {
        ready.store(true, Ordering::Release);
        let got = c.poll(1, Duration::from_secs(10)).expect("poll");
        received.push(Instant::now());
        assert_eq!(got.len(), 1);
    }
    let sent = producer.join().expect("producer");
    let mut lat: Vec<Duration> = sent.iter().zip(&received).map(|(s, r)| r.saturating_duration_since(*s)).collect();
    lat.sort();
    println!(
        "| tail latency, `append` (Os) called → waiting `poll` (spin_before_block {spin:?}) returns in another thread, producer paced by {pacing:?} | p50 {}, p99 {}, p99.9 {}, max {} |",
        micros(percentile(&lat, 0.5)),
        micros(percentile(&lat, 0.99)),
        micros(percentile(&lat, 0.999)),
        micros(*lat.last().expect("samples"))
    );
}
