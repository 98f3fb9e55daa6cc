//! Background maintenance: retention, `drop-oldest` budgets and compaction, run by a pass.

use evlog::log::WhenFull;
use evlog::store::Compression;
use evlog::{Durability, NewRecord, Options, Store, StoreOptions, TopicConfig};
use std::path::Path;
use std::time::{Duration, Instant};

fn store(dir: &Path, interval: Option<Duration>) -> Store {
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 256 << 10;
    log.record_bytes_max = 4096;
    let mut o = StoreOptions::with_log(log);
    o.maintenance_interval = interval;
    Store::open(dir, o).expect("store")
}

fn fill(store: &Store, topic: &str, n: u64, keys: u64, ts: i64) {
    let t = store.topic(topic).expect("topic");
    let p = vec![7u8; 1000];
    for i in 0..n {
        let k = format!("k{}", i % keys);
        t.append_record(&NewRecord::new(&p).key(k.as_bytes()).timestamp(ts)).expect("append");
    }
}

#[test]
fn a_maintenance_pass_applies_retention_budgets_and_compaction_and_counts_what_it_did() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store(tmp.path(), None);
    // Old records under a 1-day retention age.
    fill(&store, "old", 2_000, 2_000, 1_000);
    store
        .configure_topic("old", TopicConfig::default().with_retention_age(Some(Duration::from_secs(86_400))))
        .expect("config");
    // A state topic: 10 keys, compacted.
    fill(&store, "state", 2_000, 10, evlog_now());
    store
        .configure_topic(
            "state",
            TopicConfig::default().with_compaction(true, Duration::from_secs(60)).with_compression(Compression::Lz4),
        )
        .expect("config");
    // A budget lowered under what the topic holds: dropped down to it.
    fill(&store, "metrics", 4_000, 4_000, evlog_now());
    store
        .configure_topic("metrics", TopicConfig::default().with_budget(2 << 20, WhenFull::DropOldest))
        .expect("config");
    let before =
        (store.topic("old").expect("t").first_offset(), store.topic("state").expect("t").size_bytes().expect("size"));
    let pass = store.run_maintenance().expect("pass");
    assert_eq!((pass.passes, pass.errors), (1, 0), "{pass:?}");
    assert!(pass.retention_records_removed > 1_000, "{pass:?}");
    assert!(store.topic("old").expect("t").first_offset() > before.0);
    assert!(pass.budget_records_removed > 1_000, "{pass:?}");
    assert!(store.topic("metrics").expect("t").size_bytes().expect("size") <= (2 << 20) + (1 << 20));
    assert!(pass.segments_compacted > 0 && pass.compaction_bytes_freed > 0, "{pass:?}");
    assert!(pass.segments_compressed > 0, "{pass:?}");
    assert!(store.topic("state").expect("t").size_bytes().expect("size") < before.1);
    assert_eq!(store.maintenance_stats(), pass, "the store's totals after one pass");
    // Per topic, in `Store::stats`.
    let state = store.stats("state").expect("stats").maintenance;
    assert!(state.passes == 1 && state.segments_compacted > 0 && state.retention_records_removed == 0, "{state:?}");
    assert!(store.stats("old").expect("stats").maintenance.retention_records_removed > 1_000);
}

#[test]
fn the_maintenance_thread_runs_on_its_interval() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store(tmp.path(), Some(Duration::from_millis(10)));
    fill(&store, "state", 2_000, 10, evlog_now());
    store
        .configure_topic("state", TopicConfig::default().with_compaction(true, Duration::from_secs(60)))
        .expect("config");
    // Waits for the outcome (the thread's work), with a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.maintenance_stats().segments_compacted == 0 {
        assert!(Instant::now() < deadline, "no pass compacted within 30 s: {:?}", store.maintenance_stats());
        std::thread::yield_now();
    }
    assert!(store.maintenance_stats().passes >= 1);
}

fn evlog_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
