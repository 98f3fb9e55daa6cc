//! Atomic appends across topics: all or nothing, after any crash.

mod common;

use evlog::storage::{CrashMode, FaultStorage, MemStorage, RealStorage, Storage};
use evlog::{Durability, Error, NewRecord, Options, Store, StoreOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

const TOPICS: [&str; 3] = ["orders", "payments", "shipments"];

fn options(storage: Arc<dyn Storage>, durability: Durability) -> StoreOptions {
    let mut log = Options::with_durability(durability);
    log.segment_bytes_max = 2048;
    log.record_bytes_max = 256;
    log.storage = storage;
    let mut o = StoreOptions::with_log(log);
    o.maintenance_interval = None;
    o
}

/// Transaction `i`: one record in each of the first `1 + i % 3` topics (in varying order).
fn txn(i: u64) -> Vec<(&'static str, Vec<u8>)> {
    (0..1 + i % 3).map(|p| (TOPICS[((i + p) % 3) as usize], format!("txn {i} part {p}").into_bytes())).collect()
}

/// Per transaction, how many of its parts each topic holds.
fn parts_seen(store: &Store) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for t in TOPICS {
        let Ok(topic) = store.topic(t) else { continue };
        for r in topic.iter(0) {
            let r = r.expect("record");
            let text = String::from_utf8(r.payload().to_vec()).expect("utf-8");
            let i: u64 = text.split(' ').nth(1).expect("id").parse().expect("number");
            *seen.entry(i).or_default() += 1;
        }
    }
    seen
}

#[test]
fn an_atomic_append_lands_in_every_topic_with_its_offsets_in_the_order_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), options(Arc::new(RealStorage), Durability::Always)).expect("store");
    for t in TOPICS {
        store.topic(t).expect("topic").append(b"before").expect("append");
    }
    let offsets = store
        .append_atomic(&[
            ("payments", NewRecord::new(b"paid 10")),
            ("orders", NewRecord::new(b"order 1").key(b"customer-7")),
            ("payments", NewRecord::new(b"fee 1")),
        ])
        .expect("atomic");
    assert_eq!(offsets, vec![1, 1, 2]);
    let p = store.topic("payments").expect("topic");
    assert_eq!(p.read(2).expect("read").expect("record").payload(), b"fee 1");
    let o = store.topic("orders").expect("topic").read(1).expect("read").expect("record");
    assert_eq!((o.payload(), o.key()), (&b"order 1"[..], Some(&b"customer-7"[..])));
    assert!(o.header(evlog::format::reserved_headers::TXN).is_some(), "marked with its transaction");
    // Bad input writes nothing.
    let err = store.append_atomic(&[]).expect_err("empty");
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
    let err = store
        .append_atomic(&[("orders", NewRecord::new(b"x")), ("nowhere", NewRecord::new(b"y"))])
        .expect_err("no such topic");
    assert!(matches!(&err, Error::NotFound { name, .. } if name == "nowhere"), "{err}");
    let too_big = vec![0u8; 1024];
    let err = store
        .append_atomic(&[("orders", NewRecord::new(b"x")), ("payments", NewRecord::new(&too_big))])
        .expect_err("too large for its topic");
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    assert_eq!(store.topic("orders").expect("topic").next_offset(), 2, "nothing written by the refused ones");
}

#[test]
fn a_power_cut_at_any_point_of_atomic_appends_leaves_each_whole_or_absent() {
    let run = |stop: Option<u64>| -> (u64, Vec<u64>, MemStorage, tempfile::TempDir) {
        let mem = MemStorage::new();
        let tmp = tempfile::tempdir().expect("tempdir");
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let store =
            Store::open(tmp.path().join("s"), options(Arc::new(faulty.clone()), Durability::Os)).expect("store");
        for t in TOPICS {
            store.topic(t).expect("topic");
        }
        let start = faulty.changes();
        if let Some(n) = stop {
            faulty.stop_after(n);
        }
        let mut acked = Vec::new();
        for i in 0..12u64 {
            let parts = txn(i);
            let records: Vec<(&str, NewRecord<'_>)> = parts.iter().map(|(t, p)| (*t, NewRecord::new(p))).collect();
            if store.append_atomic(&records).is_ok() {
                acked.push(i);
            } else {
                break;
            }
        }
        let changes = faulty.changes() - start;
        drop(store);
        (changes, acked, mem, tmp)
    };
    let (total, acked, _, _) = run(None);
    assert_eq!(acked.len(), 12);
    for n in 0..total {
        let (_, acked, mem, tmp) = run(Some(n));
        mem.crash(CrashMode::DropUnsynced);
        // The topics and the journal move to a new root in the simulated disk, so that sled
        // (on the real file system, not part of this test) starts afresh there instead of
        // racing the first store's background flusher for its lock.
        mem.rename(&tmp.path().join("s"), &tmp.path().join("r")).expect("move");
        let store = Store::open(tmp.path().join("r"), options(Arc::new(mem.clone()), Durability::Os))
            .unwrap_or_else(|e| panic!("stop after {n}: reopen: {e}"));
        let seen = parts_seen(&store);
        for (i, count) in &seen {
            assert_eq!(*count, txn(*i).len(), "stop after {n}: transaction {i} is partly there");
        }
        for i in &acked {
            assert!(seen.contains_key(i), "stop after {n}: acknowledged transaction {i} lost");
        }
    }
}

const CHILD_DIR: &str = "EVLOG_KILL_ATOMIC_DIR";
const KILL_TEST: &str = "a_killed_process_never_leaves_an_atomic_append_half_done";

#[test]
fn a_killed_process_never_leaves_an_atomic_append_half_done() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let store = Store::open(&dir, options(Arc::new(RealStorage), Durability::Os)).expect("store");
        for t in TOPICS {
            store.topic(t).expect("topic");
        }
        let mut out = std::io::stdout().lock();
        let mut i = parts_seen(&store).keys().max().map_or(0, |m| m + 1);
        loop {
            let parts = txn(i);
            let records: Vec<(&str, NewRecord<'_>)> = parts.iter().map(|(t, p)| (*t, NewRecord::new(p))).collect();
            store.append_atomic(&records).expect("atomic");
            writeln!(out, "committed {i}").expect("stdout");
            out.flush().expect("flush");
            i += 1;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut acked = Vec::new();
    for round in 0..15u64 {
        let mut child = common::spawn_child(KILL_TEST, &[(CHILD_DIR, tmp.path().as_os_str())]);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let wanted = 5 + (round * 7) % 30;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(i) = line.strip_prefix("committed ") {
                acked.push(i.parse::<u64>().expect("id"));
                seen += 1;
                if seen >= wanted {
                    break;
                }
            }
        }
        child.kill().expect("kill");
        child.wait().expect("wait");
        let store = Store::open(tmp.path(), options(Arc::new(RealStorage), Durability::Os)).expect("reopen");
        let parts = parts_seen(&store);
        for (i, count) in &parts {
            assert_eq!(*count, txn(*i).len(), "round {round}: transaction {i} is partly there");
        }
        for i in &acked {
            assert!(parts.contains_key(i), "round {round}: acknowledged transaction {i} lost");
        }
    }
    assert!(!acked.is_empty());
}

#[test]
fn a_replay_beside_atomic_appends_sees_each_one_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), options(Arc::new(RealStorage), Durability::Os)).expect("store");
    for t in ["left", "right"] {
        store.topic(t).expect("topic");
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..400u64 {
                let p = format!("txn {i}").into_bytes();
                let records = [
                    ("left", NewRecord::new(&p).timestamp(i as i64)),
                    ("right", NewRecord::new(&p).timestamp(i as i64)),
                ];
                store.append_atomic(&records).expect("atomic");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // A live replay from the start: every transaction arrives, both parts, once.
        let live = s.spawn(|| {
            let mut parts: HashMap<Vec<u8>, usize> = HashMap::new();
            let mut r = store.replay(&["left", "right"]).then_live().start().expect("replay");
            while parts.len() < 400 || parts.values().any(|&n| n < 2) {
                let e = r.next().expect("live never ends").expect("event");
                *parts.entry(e.payload.to_vec()).or_default() += 1;
            }
            assert!(parts.values().all(|&n| n == 2), "{parts:?}");
        });
        let mut replays = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || replays < 3 {
            let mut parts: HashMap<Vec<u8>, usize> = HashMap::new();
            for e in store.replay(&["left", "right"]).start().expect("replay") {
                *parts.entry(e.expect("event").payload.to_vec()).or_default() += 1;
            }
            assert!(parts.values().all(|&n| n == 2), "a replay saw part of an atomic append: {parts:?}");
            replays += 1;
        }
        live.join().expect("live replay");
    });
}
