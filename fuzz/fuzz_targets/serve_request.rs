//! Arbitrary bytes as one request to `evlog serve` (a frame's contents, after its length),
//! decoded and answered against a real store (logs in memory, `Durability::Always`): every API
//! the server offers runs, produce, fetch and the group protocol included. Never panics, never
//! hangs (fetch and group waits capped at zero).
#![no_main]

use evlog::serve::{Dispatcher, ServeOptions};
use evlog::storage::MemStorage;
use evlog::{Durability, Options, Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Topics, and bytes in them, kept before they are all deleted (a CreateTopics input makes up
/// to thousands of topics; produce inputs fill memory).
const TOPICS_MAX: usize = 32;
const BYTES_MAX: u64 = 16 << 20;

static INPUTS: AtomicU64 = AtomicU64::new(0);

/// One store and dispatcher for the whole run (opening sled per input would cost more than the
/// request).
fn dispatcher() -> &'static (Store, Dispatcher) {
    static ONE: OnceLock<(Store, Dispatcher)> = OnceLock::new();
    ONE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("evlog-fuzz-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut log = Options::with_durability(Durability::Always);
        log.storage = Arc::new(MemStorage::new());
        log.segment_bytes_max = 64 << 10;
        log.record_bytes_max = 16 << 10;
        log.preallocate_bytes = 0;
        let store = Store::open(&root, StoreOptions::with_log(log)).expect("store");
        let mut opts = ServeOptions::default();
        opts.fetch_wait_max = Duration::ZERO;
        opts.group_wait_max = Duration::ZERO;
        opts.request_bytes_max = 1 << 20;
        opts.batch_bytes_max = 1 << 20;
        let dispatcher = Dispatcher::new(&store, opts);
        (store, dispatcher)
    })
}

fuzz_target!(|data: &[u8]| {
    let (store, dispatcher) = dispatcher();
    let _ = dispatcher.answer(bytes::Bytes::copy_from_slice(data));
    // The decoder alone, as before: no store touched.
    let _ = evlog::serve::request_decodes(bytes::Bytes::copy_from_slice(data));
    if INPUTS.fetch_add(1, Ordering::Relaxed) % 64 != 0 {
        return;
    }
    let topics = store.topics().expect("topics");
    let bytes: u64 = topics.iter().filter_map(|t| store.topic(t).ok()?.size_bytes().ok()).sum();
    if topics.len() > TOPICS_MAX || bytes > BYTES_MAX {
        for t in topics {
            store.delete_topic(&t).expect("delete topic");
        }
    }
});
