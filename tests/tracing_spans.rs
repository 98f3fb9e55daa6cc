//! `tracing` spans (feature `tracing`): open, recovery, roll and retention are visible.
#![cfg(feature = "tracing")]

use evlog::store::RetentionOptions;
use evlog::{Options, Store, StoreOptions};
use std::sync::{Arc, Mutex};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records the name of every span created and every event's target.
#[derive(Default)]
struct Names(Mutex<Vec<String>>);

struct Collect(Arc<Names>);

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut v = self.0.0.lock().expect("lock");
        v.push(span.metadata().name().to_string());
        Id::from_u64(v.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        self.0.0.lock().expect("lock").push(format!("event in {}", event.metadata().target()));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn open_recovery_roll_and_retention_emit_spans() {
    let names = Arc::new(Names::default());
    let tmp = tempfile::tempdir().expect("tempdir");
    tracing::subscriber::with_default(Collect(names.clone()), || {
        let mut log = Options::default();
        log.segment_bytes_max = 1024;
        log.record_bytes_max = 256;
        let mut opts = StoreOptions::with_log(log);
        opts.retention = RetentionOptions { retention_bytes_max: Some(1), ..RetentionOptions::default() };
        let store = Store::open(tmp.path(), opts).expect("store");
        let t = store.topic("t").expect("topic");
        for _ in 0..40 {
            t.append(&[1u8; 100]).expect("append");
        }
        store.enforce_retention("t").expect("enforce");
    });
    let seen = names.0.lock().expect("lock").clone();
    for want in ["evlog.open", "evlog.recovery", "evlog.roll", "evlog.retention", "event in evlog::log"] {
        assert!(seen.iter().any(|s| s == want), "no {want:?} in {seen:?}");
    }
}
