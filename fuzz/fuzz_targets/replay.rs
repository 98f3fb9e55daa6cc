//! Random timestamps over 1–3 topics (logs in memory): replay, exact or streaming, with a tiny
//! or a large memory budget, emits exactly the model's sort by (timestamp, topic, offset), or
//! (streaming only) refuses with LatenessExceeded after an ordered prefix; `scan_events` lends
//! the same events and refuses at the same point.
#![no_main]

use evlog::error::ReplayError;
use evlog::storage::MemStorage;
use evlog::{Durability, Error, NewRecord, Options, Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static RUN: AtomicU64 = AtomicU64::new(0);

/// One store for the whole run (opening its sled database per input would cost more than the
/// replay): each input gets topics of its own, deleted after it.
fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("evlog-fuzz-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut log = Options::with_durability(Durability::Os);
        log.storage = Arc::new(MemStorage::new());
        log.segment_bytes_max = 512;
        log.record_bytes_max = 64;
        log.index_interval_bytes = 64;
        log.read_buffer_bytes = 256;
        log.preallocate_bytes = 0;
        Store::open(&root, StoreOptions::with_log(log)).expect("store")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else { return };
    let topics = usize::from(cfg % 3) + 1;
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let store = store();
    let names: Vec<String> = (0..topics).map(|t| format!("r{run}-t{t}")).collect();
    {
        let mut model = Vec::new();
        for pair in rest.chunks(2).take(200) {
            let t = usize::from(pair[0]) % topics;
            let ts = i64::from(*pair.get(1).unwrap_or(&0) as i8);
            let name = names[t].clone();
            let o = store
                .topic(&name)
                .expect("topic")
                .append_record(&NewRecord::new(&[pair[0]]).timestamp(ts))
                .expect("append");
            model.push((ts, name, o));
        }
        for name in &names {
            store.topic(name).expect("topic");
        }
        model.sort();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let streaming = cfg & 8 != 0;
        let builder = || {
            let b = store.replay(&refs).memory_bytes_max(if cfg & 4 == 0 { 300 } else { 1 << 20 });
            if streaming { b.max_lateness(Duration::from_millis(u64::from(cfg >> 4) * 4)) } else { b }
        };
        let mut got = Vec::new();
        let mut refused = false;
        for e in builder().start().expect("start") {
            match e {
                Ok(e) => got.push((e.timestamp, e.topic.to_string(), e.offset)),
                Err(Error::Replay(ReplayError::LatenessExceeded { .. })) if streaming => {
                    assert!(got.windows(2).all(|w| w[0] < w[1]), "emitted out of order");
                    refused = true;
                    break;
                }
                Err(Error::Replay(ReplayError::MemoryExceeded { .. })) if streaming => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        if refused {
            assert!(got.iter().all(|k| model.contains(k)), "emitted a record that does not exist");
        } else {
            assert_eq!(got, model);
        }
        // The lending scan hands out the same events and refuses at the same point.
        let mut lent = Vec::new();
        let scanned = builder().start().expect("start").scan_events(|e| {
            lent.push((e.timestamp, e.topic.to_string(), e.offset));
            std::ops::ControlFlow::Continue(())
        });
        assert_eq!(scanned.is_err(), refused, "scan_events and the iterator agree on refusing");
        assert_eq!(lent, got);
    }
    for name in &names {
        store.delete_topic(name).expect("delete");
    }
});
