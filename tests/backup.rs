//! Online backup: a consistent copy of a live store, and a clean failure when the disk fills.

use evlog::storage::{Fault, FaultStorage, Op, RealStorage};
use evlog::store::CommitDurability;
use evlog::{ConsumerOptions, Durability, Error, Options, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

fn options() -> StoreOptions {
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 64 << 10;
    log.record_bytes_max = 1024;
    let mut o = StoreOptions::with_log(log);
    o.maintenance_interval = None;
    o
}

fn number(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload).expect("utf-8").trim_start_matches("order ").parse().expect("a number")
}

fn get_u64(store: &Store, key: &[u8]) -> u64 {
    store.state_get("totals", key).expect("state").map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")))
}

#[test]
fn a_backup_taken_while_appending_and_committing_is_consistent_and_opens_on_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dest) = (tmp.path().join("live"), tmp.path().join("copy"));
    let store = Store::open(&src, options()).expect("store");
    let orders = store.topic("orders").expect("topic");
    let stop = Arc::new(AtomicBool::new(false));
    let (progress, progressed) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                orders.append(format!("order {i}").as_bytes()).expect("append");
                i += 1;
            }
        });
        s.spawn(|| {
            // Exactly-once bookkeeping: the count and sum of the records up to the committed
            // offset, committed with it.
            let mut o = ConsumerOptions::default();
            o.durability = CommitDurability::Os;
            let mut c = store.consumer("billing", "orders", o).expect("consumer");
            let mut commits = 0;
            while !stop.load(Ordering::Relaxed) {
                let got = c.poll(50, Duration::from_millis(10)).expect("poll");
                let (n, sum) = (got.len() as u64, got.iter().map(|r| number(r.payload())).sum::<u64>());
                c.commit_with("totals", |tx| {
                    let read = |k: &[u8]| {
                        tx.get(k).map(|v| v.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))))
                    };
                    tx.insert(b"count", &(read(b"count")? + n).to_le_bytes())?;
                    tx.insert(b"sum", &(read(b"sum")? + sum).to_le_bytes())
                })
                .expect("commit");
                commits += 1;
                if commits == 20 {
                    progress.send(()).expect("send");
                }
            }
        });
        progressed.recv().expect("the consumer got going");
        let report = store.backup(&dest).expect("backup");
        assert!(report.topics == 1 && report.records > 0 && report.state_keys > 0, "{report:?}");
        assert!(report.bytes_linked > 0, "sealed segments are hard-linked on the same file system: {report:?}");
        stop.store(true, Ordering::Relaxed);
    });
    drop((orders, store));
    // The copy on its own: verifies, holds a prefix of what was appended, and its group's
    // offset and state agree.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(&dest)
        .arg("verify")
        .output()
        .expect("evlog verify");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let copy = Store::open(&dest, options()).expect("open the copy");
    let t = copy.topic("orders").expect("topic");
    for r in t.iter(0) {
        let r = r.expect("record");
        assert_eq!(number(r.payload()), r.offset(), "a prefix of what was appended, byte for byte");
    }
    let committed = copy.groups("orders").expect("groups")[0].committed;
    assert!(committed <= t.next_offset(), "no group offset past its topic's end in the copy");
    assert_eq!(get_u64(&copy, b"count"), committed, "state and offset from the same moment");
    assert_eq!(get_u64(&copy, b"sum"), committed * committed.saturating_sub(1) / 2);
}

#[test]
fn a_full_disk_during_a_backup_removes_the_partial_copy_and_leaves_the_store_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, dest) = (tmp.path().join("live"), tmp.path().join("copy"));
    let faulty = FaultStorage::new(Arc::new(RealStorage));
    let mut o = options();
    o.log.storage = Arc::new(faulty.clone());
    let store = Store::open(&src, o).expect("store");
    let t = store.topic("orders").expect("topic");
    for i in 0..3_000u64 {
        t.append(format!("order {i}").as_bytes()).expect("append");
    }
    // This storage cannot hard-link: segments are copied, and the disk fills on the third write.
    faulty.fail_always(Op::Write, Some("copy"), 2, Fault::NoSpace);
    let err = store.backup(&dest).expect_err("the disk is full");
    assert!(matches!(err, Error::StorageFull { .. }), "{err}");
    assert!(!dest.exists(), "the partial copy is removed");
    faulty.clear();
    assert_eq!(t.iter(0).count(), 3_000, "the store is untouched");
    t.append(b"order 3000").expect("and goes on");
    store.backup(&dest).expect("a backup once there is room");
    assert!(Path::new(&dest).join("topics").join("orders").is_dir());
}
