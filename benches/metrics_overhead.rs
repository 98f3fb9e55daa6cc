//! What watching a store costs its appends (issue 29): `Durability::Os` appends of 100 B through
//! `Topic::append` (the README's first API), 2 s per run, three set-ups in turns, three rounds:
//! - `bare`: no stats file (`stats_interval: None`), no metrics;
//! - `noop`: the stats file each second (the default) and a thread recording `record_metrics`
//!   each second into a no-op recorder;
//! - `prometheus`: the same with the Prometheus recorder `evlog serve --metrics` uses, rendered
//!   each second as a scrape would.
//!
//! `cargo bench --bench metrics_overhead`

use evlog::{Durability, Options, Store, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Bare,
    Noop,
    Prometheus,
}

/// Appends per second for `RUN` under `setup`.
fn run(setup: Setup) -> f64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::with_log(Options::with_durability(Durability::Os));
    if setup == Setup::Bare {
        opts.stats_interval = None;
    }
    let store = Store::open(tmp.path(), opts).expect("store");
    let topic = store.topic("t").expect("topic");
    topic.append(b"warm").expect("append");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = (setup != Setup::Bare).then(|| {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = prometheus.handle();
            while !stop.load(Ordering::Relaxed) {
                match setup {
                    Setup::Prometheus => {
                        metrics::with_local_recorder(&prometheus, || evlog::monitor::record_metrics(&store))
                            .expect("metrics");
                        assert!(!handle.render().is_empty());
                    }
                    _ => {
                        metrics::with_local_recorder(&metrics::NoopRecorder, || evlog::monitor::record_metrics(&store))
                            .expect("metrics")
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    });
    let payload = [0x5Au8; 100];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..1000 {
            topic.append(&payload).expect("append");
        }
        n += 1000;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        w.join().expect("watcher");
    }
    rate
}

fn main() {
    let setups = [Setup::Bare, Setup::Noop, Setup::Prometheus];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for _ in 0..3 {
        for (i, s) in setups.iter().enumerate() {
            rates[i].push(run(*s));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bare = median(&mut rates[0].clone());
    println!("| set-up | appends/s (median of 3, 2 s each, in turns) | vs bare |");
    println!("|---|---|---|");
    for (i, s) in setups.iter().enumerate() {
        let m = median(&mut rates[i]);
        println!("| {s:?} | {m:.0} | {:.3}× |", m / bare);
    }
}
