//! Format versions: a small store written by the release of 2026-12 (every file at format
//! version 1: segments, indexes, checkpoint, topic configuration, the consumer database) is
//! committed under `tests/fixtures/store-v1/`. Every later release must open it, verify it and
//! dump it exactly as recorded in `tests/fixtures/store-v1.expected`.
//!
//! To regenerate (only when the format version is bumped on purpose, keeping the old fixture):
//! `cargo test --release --test fixtures -- --ignored`.

use evlog::log::WhenFull;
use evlog::store::CommitDurability;
use evlog::{ConsumerOptions, Durability, NewRecord, Options, QueueOptions, Store, StoreOptions, TopicConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("store-v1")
}

fn expected_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("store-v1.expected")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn evlog(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_evlog")).arg("--dir").arg(dir).args(args).output().expect("run evlog");
    assert!(o.status.success(), "evlog {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8")
}

/// What the store shows: verify, dumps and groups, in a fixed order (the records and offsets
/// the format holds; configurations are compared through the library below, so a new field in
/// `evlog config`'s output does not count as a format change).
fn describe(dir: &Path) -> String {
    let mut out = String::new();
    out += &evlog(dir, &["verify"]);
    for topic in ["events", "orders"] {
        out += &format!("== dump {topic}\n");
        out += &evlog(dir, &["dump", topic]);
    }
    out += "== groups\n";
    out += &evlog(dir, &["groups", "list"]);
    out
}

#[test]
#[ignore = "rewrites the expected output from the committed fixture; only when the CLI's output changes on purpose"]
fn rewrite_the_expected_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture(), tmp.path());
    std::fs::write(expected_path(), describe(tmp.path())).expect("write expected");
}

#[test]
#[ignore = "writes the fixture; run on purpose only"]
fn write_the_fixture() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let mut log = Options::with_durability(Durability::Always);
    log.segment_bytes_max = 4096;
    log.record_bytes_max = 1024;
    log.index_interval_bytes = 512;
    log.preallocate_bytes = 0;
    let store = Store::open(&dir, StoreOptions::with_log(log)).expect("store");
    let orders = store.topic("orders").expect("topic");
    for i in 0..60u32 {
        let key = format!("customer-{}", i % 7);
        let payload = format!("{{\"order\":{i},\"amount\":{}}}", i * 13 % 101);
        let mut r = NewRecord::new(payload.as_bytes()).key(key.as_bytes());
        r.timestamp = Some(1_795_000_000_000 + i64::from(i) * 1_000);
        r.headers = vec![("source", b"fixture".as_slice())];
        orders.append_record(&r).expect("append");
    }
    let events = store.topic("events").expect("topic");
    let batch: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    let records: Vec<NewRecord<'_>> = batch
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = NewRecord::new(p);
            r.timestamp = Some(1_795_000_100_000 + i as i64);
            r
        })
        .collect();
    events.append_batch(&records).expect("batch");
    store.configure_topic("orders", TopicConfig::default().with_budget(2 << 20, WhenFull::DropOldest)).expect("config");
    let mut c = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
    assert_eq!(c.poll(25, Duration::ZERO).expect("poll").len(), 25);
    c.commit().expect("commit");
    drop(c);
    let mut qo = QueueOptions::default();
    qo.durability = CommitDurability::Always;
    let q = store.queue("workers", "events", qo).expect("queue");
    let leased = q.try_lease_many(3).expect("lease");
    q.ack(&leased[1]).expect("ack");
    drop((q, orders, events, store));
    let _ = std::fs::remove_file(dir.join("LOCK"));
    std::fs::write(expected_path(), describe(&dir)).expect("write expected");
}

#[test]
fn the_store_written_by_format_version_1_opens_verifies_and_dumps_as_it_did() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture(), tmp.path());
    let expected = std::fs::read_to_string(expected_path()).expect("expected");
    assert_eq!(describe(tmp.path()), expected);
    // The library reads it too, and its queue keeps its state: 2 of 3 leased records are
    // outstanding (their worker is gone), the acked one never comes back.
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    let q = store.queue("workers", "events", QueueOptions::default()).expect("queue");
    let got: Vec<(u64, u32)> =
        std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
    assert_eq!(&got[..2], &[(0, 2), (2, 2)]);
    assert_eq!(got.len(), 2 + 7);
    assert_eq!(store.groups("orders").expect("groups")[0].committed, 25);
    let config = store.topic_config("orders").expect("config");
    assert_eq!((config.bytes_max, config.when_full), (Some(2 << 20), WhenFull::DropOldest));
    assert!(!config.compact_by_key && store.topic_config("events").expect("config") == TopicConfig::default());
}
