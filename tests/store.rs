//! Store, topics, consumer groups, acks, exactly-once commits, group admin and retention.

mod common;

use evlog::consume::{AckMode, AutoCommit, StartAt};
use evlog::storage::{CrashMode, Fault, FaultStorage, MemStorage, Op, RealStorage, Storage};
use evlog::store::{Abort, CommitDurability, RetentionOptions};
use evlog::{ConsumerOptions, Durability, Error, NewRecord, Options, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const NONE: Duration = Duration::ZERO;

fn small_log(durability: Durability) -> Options {
    let mut o = Options::with_durability(durability);
    o.segment_bytes_max = 2048;
    o.record_bytes_max = 512;
    o.index_interval_bytes = 256;
    o
}

fn open(root: &Path) -> Store {
    Store::open(root, StoreOptions::with_log(small_log(Durability::Always))).expect("open store")
}

/// The store at `root` opened again with `retention` (a store's retention is an option of its
/// open; a topic's own age is in its `TopicConfig`).
fn reopen_with_retention(store: Store, root: &Path, retention: RetentionOptions) -> Store {
    drop(store);
    let mut opts = StoreOptions::with_log(small_log(Durability::Always));
    opts.retention = retention;
    Store::open(root, opts).expect("open store")
}

fn fill(store: &Store, topic: &str, n: u64) {
    common::fill(store, topic, n, |i| format!("{topic}-{i}"));
}

fn offsets(records: &[evlog::Record]) -> Vec<u64> {
    records.iter().map(evlog::Record::offset).collect()
}

#[test]
fn topics_are_created_listed_and_deleted_with_their_groups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "orders", 3);
    fill(&store, "payments", 2);
    assert_eq!(store.topics().expect("topics"), vec!["orders".to_string(), "payments".to_string()]);
    let mut c = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
    c.poll(10, NONE).expect("poll");
    c.commit().expect("commit");
    // A live handle blocks deletion.
    assert!(matches!(store.delete_topic("orders"), Err(Error::TopicInUse { .. })));
    drop(c);
    store.delete_topic("orders").expect("delete");
    assert_eq!(store.topics().expect("topics"), vec!["payments".to_string()]);
    assert!(matches!(store.groups("orders"), Err(Error::NotFound { kind: "topic", .. })));
    assert!(matches!(store.delete_topic("orders"), Err(Error::NotFound { .. })));
    // Re-created, it starts empty and the old group is gone.
    let t = store.topic("orders").expect("topic");
    assert_eq!(t.next_offset(), 0);
    assert!(store.groups("orders").expect("groups").is_empty());
}

#[test]
fn invalid_names_are_rejected_and_touch_no_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let long = "a".repeat(250);
    for bad in ["../x", "a/b", "", ".", "..", long.as_str(), "nul\0byte", "space here", "é"] {
        assert!(matches!(store.topic(bad), Err(Error::InvalidName { .. })), "topic {bad:?}");
        assert!(matches!(store.consumer(bad, "ok", ConsumerOptions::default()), Err(Error::InvalidName { .. })));
    }
    assert!(store.topics().expect("topics").is_empty(), "no topic was created");
    assert!(!tmp.path().join("x").exists());
    store.topic(&"a".repeat(249)).expect("249 characters are fine");
    store.topic("Ab-9_.x").expect("all allowed characters");
}

#[test]
fn a_second_store_on_the_same_root_is_locked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _store = open(tmp.path());
    assert!(matches!(Store::open(tmp.path(), StoreOptions::default()), Err(Error::Locked { .. })));
}

#[test]
fn a_group_resumes_at_its_committed_offset_after_reopen() {
    // Drop without close, reopen: the group picks up exactly where its last commit left it.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = open(tmp.path());
        fill(&store, "t", 10);
        let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
        assert_eq!(offsets(&c.poll(4, NONE).expect("poll")), vec![0, 1, 2, 3]);
        c.commit().expect("commit");
        assert_eq!(offsets(&c.poll(3, NONE).expect("poll")), vec![4, 5, 6]); // not committed
    }
    let store = open(tmp.path());
    let mut c = store.consumer("g", "t", ConsumerOptions::starting_at(StartAt::Latest)).expect("consumer");
    assert_eq!(c.start_report().committed, Some(4));
    assert_eq!(c.position(), 4);
    assert_eq!(offsets(&c.poll(100, NONE).expect("poll")), (4..10).collect::<Vec<_>>());
}

#[test]
fn new_groups_start_where_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    for (i, ts) in [50i64, 10, 30, 70].into_iter().enumerate() {
        t.append_record(&NewRecord::new(format!("{i}").as_bytes()).timestamp(ts)).expect("append");
    }
    let pos = |name: &str, s: StartAt| {
        store.consumer(name, "t", ConsumerOptions::starting_at(s)).expect("consumer").position()
    };
    assert_eq!(pos("a", StartAt::Earliest), 0);
    assert_eq!(pos("b", StartAt::Latest), 4);
    assert_eq!(pos("c", StartAt::Timestamp(25)), 0); // offset 0 has ts 50 >= 25
    assert_eq!(pos("d", StartAt::Timestamp(60)), 3);
    assert_eq!(pos("e", StartAt::Timestamp(100)), 4);
    assert_eq!(pos("f", StartAt::Offset(2)), 2);
    assert_eq!(pos("g", StartAt::Offset(99)), 4);
}

#[test]
fn poll_blocks_until_an_append_wakes_it_and_times_out_otherwise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    assert!(c.poll(10, Duration::from_millis(1)).expect("poll").is_empty(), "empty after the timeout");
    let producer = std::thread::spawn(move || t.append(b"wake up").expect("append"));
    let got = c.poll(10, LONG).expect("poll");
    producer.join().expect("producer");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), b"wake up");
}

#[test]
fn groups_are_independent_and_each_sees_every_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "t", 5);
    let mut a = store.consumer("a", "t", ConsumerOptions::default()).expect("a");
    let mut b = store.consumer("b", "t", ConsumerOptions::default()).expect("b");
    assert_eq!(offsets(&a.poll(10, NONE).expect("poll")), vec![0, 1, 2, 3, 4]);
    a.commit().expect("commit");
    assert_eq!(offsets(&b.poll(2, NONE).expect("poll")), vec![0, 1]);
    b.commit().expect("commit");
    let groups = store.groups("t").expect("groups");
    assert_eq!(
        groups.iter().map(|g| (g.group.as_str(), g.committed, g.lag)).collect::<Vec<_>>(),
        vec![("a", 5, 0), ("b", 2, 3)]
    );
}

#[test]
fn a_second_live_consumer_of_a_group_is_group_busy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let c = store.consumer("g", "t", ConsumerOptions::default()).expect("first");
    assert!(matches!(store.consumer("g", "t", ConsumerOptions::default()), Err(Error::GroupBusy { .. })));
    store.consumer("other", "t", ConsumerOptions::default()).expect("another group is fine");
    drop(c);
    store.consumer("g", "t", ConsumerOptions::default()).expect("free again after drop");
}

#[test]
fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    // Acks 0, 2, 3, 5 then 1: the commit point moves 1, then to 4; 5 waits for 4.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = open(tmp.path());
        fill(&store, "t", 8);
        let mut o = ConsumerOptions::default();
        o.ack_mode = AckMode::Explicit;
        let mut c = store.consumer("g", "t", o).expect("consumer");
        c.poll(8, NONE).expect("poll");
        for a in [0, 2, 3, 5] {
            c.ack(a).expect("ack");
        }
        c.commit().expect("commit");
        assert_eq!(c.committed(), Some(1));
        c.ack(1).expect("ack");
        c.commit().expect("commit");
        assert_eq!(c.committed(), Some(4));
        assert!(matches!(c.ack(8), Err(Error::AckNotPolled { offset: 8, .. })), "cannot ack what was not polled");
    }
    // After a restart the group resumes at 4: record 4 (never acked) is delivered again.
    let store = open(tmp.path());
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    assert_eq!(offsets(&c.poll(1, NONE).expect("poll")), vec![4]);
}

#[test]
fn committing_past_the_end_is_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "t", 3);
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    c.commit_offset(2).expect("commit");
    match c.commit_offset(4) {
        Err(Error::CommitOutOfRange { offset: 4, next_offset: 3, .. }) => {}
        other => panic!("expected CommitOutOfRange, got {other:?}"),
    }
    assert_eq!(c.committed(), Some(2));
    assert_eq!(store.groups("t").expect("groups")[0].committed, 2);
}

#[test]
fn a_committed_offset_beyond_the_recovered_end_is_clamped_and_reported() {
    // An Os-mode tail is lost in a power cut after the group committed past it: the offset is
    // clamped to the new end, durably, and reported; new records are not skipped.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mem = MemStorage::new();
    let mut log = small_log(Durability::Os);
    log.storage = Arc::new(mem.clone());
    let opts = StoreOptions::with_log(log);
    {
        let store = Store::open(tmp.path(), opts.clone()).expect("store");
        let t = store.topic("t").expect("topic");
        t.append(b"durable").expect("append");
        t.sync().expect("sync");
        for i in 0..5 {
            t.append(format!("lost {i}").as_bytes()).expect("append");
        }
        let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
        assert_eq!(c.poll(10, NONE).expect("poll").len(), 6);
        c.commit().expect("commit"); // durable in sled: offset 6
        mem.crash(CrashMode::DropUnsynced);
    }
    let store = Store::open(tmp.path(), opts).expect("store");
    let t = store.topic("t").expect("topic");
    assert_eq!(t.next_offset(), 1);
    assert_eq!(t.clamped_groups(), vec![("g".to_string(), 6)]);
    assert_eq!(store.groups("t").expect("groups")[0].committed, 1);
    t.append(b"new").expect("append");
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    assert_eq!(c.start_report().clamped_from, Some(6));
    let got = c.poll(10, NONE).expect("poll");
    assert_eq!(got.iter().map(|r| r.payload().to_vec()).collect::<Vec<_>>(), vec![b"new".to_vec()]);
}

#[test]
fn a_group_below_the_first_offset_continues_from_it_and_reports_what_it_missed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "t", 200);
    let mut c = store.consumer("slow", "t", ConsumerOptions::default()).expect("consumer");
    c.poll(3, NONE).expect("poll");
    c.commit().expect("commit");
    drop(c);
    let retention = RetentionOptions { retention_bytes_max: Some(4096), ..RetentionOptions::default() };
    let store = reopen_with_retention(store, tmp.path(), retention);
    let r = store.enforce_retention("t").expect("retention");
    assert!(r.first_offset > 3, "{r:?}");
    let mut c = store.consumer("slow", "t", ConsumerOptions::default()).expect("consumer");
    assert_eq!(c.start_report().skipped, r.first_offset - 3);
    assert_eq!(c.poll(1, NONE).expect("poll")[0].offset(), r.first_offset);
}

#[test]
fn retention_deletes_whole_sealed_segments_by_size_and_age_and_can_wait_for_lagging_groups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    // Old events first (timestamp 1000 = 1970), then current ones.
    for i in 0..100 {
        t.append_record(&NewRecord::new(format!("old {i}").as_bytes()).timestamp(1000)).expect("append");
    }
    for i in 0..100 {
        t.append(format!("new {i}").as_bytes()).expect("append");
    }
    let segments = t.segment_count();
    assert!(segments > 4);
    // A lagging group at offset 10 holds everything back when asked to.
    let mut c = store.consumer("lag", "t", ConsumerOptions::default()).expect("consumer");
    c.commit_offset(10).expect("commit");
    drop(c);
    let age = RetentionOptions {
        retention_age_max: Some(Duration::from_secs(3600)),
        keep_uncommitted: true,
        ..Default::default()
    };
    drop(t);
    let store = reopen_with_retention(store, tmp.path(), age);
    let r = store.enforce_retention("t").expect("retention");
    assert!(r.first_offset <= 10, "kept for the lagging group: {r:?}");
    // Without that, every sealed segment whose newest event is old goes, and only those.
    let store = reopen_with_retention(store, tmp.path(), RetentionOptions { keep_uncommitted: false, ..age });
    let r = store.enforce_retention("t").expect("retention");
    assert!(r.first_offset > 10 && r.first_offset <= 100, "{r:?}");
    assert!(store.topic("t").expect("topic").read(r.first_offset).expect("read").is_some());
    // Size: never the active segment.
    let retention = RetentionOptions { retention_bytes_max: Some(0), ..Default::default() };
    let store = reopen_with_retention(store, tmp.path(), retention);
    store.enforce_retention("t").expect("retention");
    let t = store.topic("t").expect("topic");
    assert_eq!(t.segment_count(), 1);
    assert_eq!(t.next_offset(), 200);
}

#[test]
fn commit_with_keeps_state_and_offset_in_one_transaction() {
    // Balances are applied exactly once: the state and the offset commit together, and an
    // abort after writing state leaves neither changed.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("deposits").expect("topic");
    for amount in [5u64, 7, 11] {
        t.append_record(&NewRecord::new(&amount.to_le_bytes()).key(b"alice")).expect("append");
    }
    let mut c = store.consumer("balances", "deposits", ConsumerOptions::default()).expect("consumer");
    let records = c.poll(2, NONE).expect("poll");
    let sum: u64 = records.iter().map(|r| u64::from_le_bytes(r.payload().try_into().expect("8 bytes"))).sum();
    let apply = |tx: &evlog::store::StateTx<'_>, add: u64| -> Result<(), Abort> {
        let old = tx.get(b"alice")?.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
        tx.insert(b"alice", &(old + add).to_le_bytes())
    };
    c.commit_with("accounts", |tx| apply(tx, sum)).expect("commit_with");
    assert_eq!(c.committed(), Some(2));
    let balance = |s: &Store| {
        s.state_get("accounts", b"alice").expect("get").map(|v| u64::from_le_bytes(v.try_into().expect("8")))
    };
    assert_eq!(balance(&store), Some(12));
    // The next record's commit fails after writing state: nothing changes.
    c.poll(1, NONE).expect("poll");
    let err = c
        .commit_with("accounts", |tx| {
            apply(tx, 11)?;
            Err(Abort("injected failure after the state write".into()))
        })
        .expect_err("aborted");
    assert!(matches!(err, Error::StateAborted { .. }));
    assert_eq!(balance(&store), Some(12));
    assert_eq!(store.groups("deposits").expect("groups")[0].committed, 2);
}

#[test]
fn a_durable_commit_fsyncs_the_database_files_and_a_failed_fsync_poisons_commits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(Arc::new(RealStorage));
    let mut opts = StoreOptions::with_log(small_log(Durability::Always));
    opts.state_storage = Arc::new(faulty.clone());
    let store = Store::open(tmp.path(), opts).expect("store");
    fill(&store, "t", 3);
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    c.poll(1, NONE).expect("poll");
    // Every file of the database is fdatasynced: fail the fsync of the main `db` file.
    faulty.fail_once(Op::SyncData, Some("consumers/db"), 0, Fault::Eio);
    let err = c.commit().expect_err("fsync failed");
    assert!(matches!(err, Error::Io { op: "fsync", .. }), "{err}");
    assert_eq!(faulty.injected(), 1, "the commit reached the database file's fsync");
    c.poll(1, NONE).expect("poll");
    assert!(matches!(c.commit(), Err(Error::Poisoned { .. })), "never reports a later commit durable");
    // Commits that opted out of durability never fsync: with every fsync of the database
    // failing, a Lazy commit still succeeds and no fault is hit.
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(Arc::new(RealStorage));
    let mut opts = StoreOptions::with_log(small_log(Durability::Always));
    opts.state_storage = Arc::new(faulty.clone());
    let store = Store::open(tmp.path(), opts).expect("store");
    fill(&store, "t", 3);
    let mut o = ConsumerOptions::default();
    o.durability = CommitDurability::Lazy;
    let mut c = store.consumer("g", "t", o).expect("consumer");
    c.poll(2, NONE).expect("poll");
    faulty.fail_always(Op::SyncData, Some("consumers"), 0, Fault::Eio);
    c.commit().expect("a lazy commit needs no fsync");
    assert_eq!(faulty.injected(), 0);
    assert_eq!(c.committed(), Some(2));
}

#[test]
fn group_admin_lists_resets_and_deletes_groups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    for i in 0..10 {
        t.append_record(&NewRecord::new(b"x").timestamp(i * 100)).expect("append");
    }
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    c.poll(4, NONE).expect("poll");
    c.commit().expect("commit");
    assert!(matches!(store.reset_group("g", "t", StartAt::Offset(0)), Err(Error::GroupBusy { .. })));
    drop(c);
    assert_eq!(store.groups("t").expect("groups")[0].lag, 6);
    assert_eq!(store.reset_group("g", "t", StartAt::Timestamp(650)).expect("reset"), 7);
    assert_eq!(store.groups("t").expect("groups")[0].committed, 7);
    assert_eq!(store.reset_group("g", "t", StartAt::Earliest).expect("reset"), 0);
    assert!(matches!(store.reset_group("nobody", "t", StartAt::Earliest), Err(Error::NotFound { kind: "group", .. })));
    assert!(matches!(store.groups("missing"), Err(Error::NotFound { kind: "topic", .. })));
    store.delete_group("g", "t").expect("delete");
    assert!(store.groups("t").expect("groups").is_empty());
    assert!(matches!(store.delete_group("g", "t"), Err(Error::NotFound { .. })));
}

#[test]
fn auto_commit_seek_position_and_lag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    for i in 0..20 {
        t.append_record(&NewRecord::new(b"x").timestamp(i * 10)).expect("append");
    }
    let mut o = ConsumerOptions::default();
    o.auto_commit = Some(AutoCommit { every_records: 5, every: Duration::from_secs(3600) });
    let mut c = store.consumer("g", "t", o).expect("consumer");
    c.poll(5, NONE).expect("poll");
    assert_eq!(c.committed(), None, "auto-commit happens at the next poll");
    c.poll(2, NONE).expect("poll");
    assert_eq!(c.committed(), Some(5));
    assert_eq!((c.position(), c.lag()), (7, 13));
    c.seek(15).expect("seek");
    assert_eq!(c.poll(1, NONE).expect("poll")[0].offset(), 15);
    c.seek_to_timestamp(95).expect("seek");
    assert_eq!(c.position(), 10);
    drop(c); // auto-commit on drop: position 10 (2 records polled since the last commit)
    assert_eq!(store.groups("t").expect("groups")[0].committed, 10);
}

#[test]
fn an_interrupted_topic_deletion_is_finished_at_open() {
    // A crash after the topic moved to trash/ but before its groups and files were removed.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = open(tmp.path());
        fill(&store, "gone", 3);
        let mut c = store.consumer("g", "gone", ConsumerOptions::default()).expect("consumer");
        c.poll(1, NONE).expect("poll");
        c.commit().expect("commit");
    }
    std::fs::rename(tmp.path().join("topics/gone"), tmp.path().join("trash/gone.1")).expect("rename");
    let store = open(tmp.path());
    assert!(store.topics().expect("topics").is_empty());
    assert_eq!(std::fs::read_dir(tmp.path().join("trash")).expect("trash").count(), 0);
    store.topic("gone").expect("re-created");
    assert!(store.groups("gone").expect("groups").is_empty(), "the old group was forgotten");
}

#[test]
fn producers_and_consumers_on_threads_process_every_record_exactly_once_across_a_restart() {
    // Two producer threads, two groups on consumer threads using commit_with to keep a count
    // per producer. The consumers stop mid-way (a restart), come back, and finish. Each group's
    // counts equal what was produced: nothing lost, nothing applied twice.
    let tmp = tempfile::tempdir().expect("tempdir");
    let per_producer = 300u64;
    let run_consumers = |store: &Store, limit: Option<u64>| {
        std::thread::scope(|s| {
            for group in ["g1", "g2"] {
                let store = store.clone();
                s.spawn(move || {
                    let mut c = store.consumer(group, "events", ConsumerOptions::default()).expect("consumer");
                    let mut seen = 0u64;
                    loop {
                        let total = store
                            .state_get(group, b"total")
                            .expect("get")
                            .map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8")));
                        if total >= 2 * per_producer || limit.is_some_and(|l| seen >= l) {
                            return;
                        }
                        let batch = c.poll(50, Duration::from_millis(200)).expect("poll");
                        seen += batch.len() as u64;
                        c.commit_with(group, |tx| {
                            for r in &batch {
                                let key = r.key().unwrap_or(b"?");
                                let old =
                                    tx.get(key)?.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                                tx.insert(key, &(old + 1).to_le_bytes())?;
                            }
                            let old =
                                tx.get(b"total")?.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                            tx.insert(b"total", &(old + batch.len() as u64).to_le_bytes())
                        })
                        .expect("commit_with");
                    }
                });
            }
        });
    };
    {
        let store = open(tmp.path());
        let topic = store.topic("events").expect("topic");
        std::thread::scope(|s| {
            for p in [b"p1", b"p2"] {
                let topic = topic.clone();
                s.spawn(move || {
                    for i in 0..per_producer {
                        topic.append_record(&NewRecord::new(&i.to_le_bytes()).key(p)).expect("append");
                    }
                });
            }
            run_consumers(&store, Some(150));
        });
    }
    let store = open(tmp.path());
    run_consumers(&store, None);
    for group in ["g1", "g2"] {
        for p in [&b"p1"[..], &b"p2"[..]] {
            let n = store.state_get(group, p).expect("get").map(|v| u64::from_le_bytes(v.try_into().expect("8")));
            assert_eq!(n, Some(per_producer), "{group} counted {p:?}");
        }
        assert_eq!(
            store.groups("events").expect("groups").iter().find(|g| g.group == group).expect("group").committed,
            2 * per_producer
        );
    }
}

#[test]
fn store_on_memory_storage_survives_a_power_cut_of_the_logs() {
    // Always-mode topics on simulated storage: every acknowledged record survives a crash that
    // drops all unsynced writes, and committed offsets stay within the logs.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mem = MemStorage::new();
    let mut log = small_log(Durability::Always);
    log.storage = Arc::new(mem.clone());
    let opts = StoreOptions::with_log(log);
    {
        let store = Store::open(tmp.path(), opts.clone()).expect("store");
        fill(&store, "a", 50);
        let mut c = store.consumer("g", "a", ConsumerOptions::default()).expect("consumer");
        c.poll(30, NONE).expect("poll");
        c.commit().expect("commit");
        mem.crash(CrashMode::TornWrite { seed: 7 });
    }
    let store = Store::open(tmp.path(), opts).expect("store");
    let t = store.topic("a").expect("topic");
    assert_eq!(t.next_offset(), 50);
    assert!(t.clamped_groups().is_empty());
    let mut c = store.consumer("g", "a", ConsumerOptions::default()).expect("consumer");
    assert_eq!(c.poll(100, NONE).expect("poll").len(), 20);
    assert!(mem.list_dir(&tmp.path().join("topics")).expect("list").contains(&"a".to_string()));
}

#[test]
fn auto_commit_by_time_commits_at_the_next_poll_once_the_interval_passed() {
    // An interval of zero has always passed: every poll first commits what the previous polls
    // returned (the records limit is out of reach).
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "t", 6);
    let mut o = ConsumerOptions::default();
    o.auto_commit = Some(AutoCommit { every_records: u64::MAX, every: Duration::ZERO });
    let mut c = store.consumer("g", "t", o).expect("consumer");
    c.poll(2, NONE).expect("poll");
    assert_eq!(c.committed(), None);
    c.poll(2, NONE).expect("poll");
    assert_eq!(c.committed(), Some(2));
    c.poll(2, NONE).expect("poll");
    assert_eq!(c.committed(), Some(4));
}

#[test]
fn metrics_report_sizes_rates_lags_and_fsyncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("m").expect("topic");
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64 - 3_600_000)
        .expect("clock");
    for i in 0..10 {
        t.append_record(&NewRecord::new(b"x").timestamp(hour_ago + i)).expect("append");
    }
    let mut c = store.consumer("g", "m", ConsumerOptions::default()).expect("consumer");
    c.poll(4, NONE).expect("poll");
    c.commit().expect("commit");
    let first = store.stats("m").expect("metrics");
    assert_eq!((first.first_offset, first.next_offset), (0, 10));
    assert!(first.append_rate.is_none(), "no rate before a second sample");
    assert!(first.bytes_on_disk > 0 && first.segments >= 1);
    assert_eq!(first.counters.appended, 10);
    assert!(first.counters.fsyncs >= 10, "Always: at least one fsync per lone append");
    assert!(first.counters.fsync_max >= first.counters.fsync_mean);
    let g = &first.groups[0];
    assert_eq!((g.group.as_str(), g.committed, g.lag_records), ("g", 4, 6));
    assert!(g.lag_seconds >= 3_599.0, "offset 4 is an hour old: {}", g.lag_seconds);
    for _ in 0..5 {
        t.append(b"y").expect("append");
    }
    c.poll(100, NONE).expect("poll");
    c.commit().expect("commit");
    let second = store.stats("m").expect("metrics");
    assert!(second.append_rate.is_some_and(|r| r > 0.0));
    let g = &second.groups[0];
    assert_eq!((g.lag_records, g.lag_seconds), (0, 0.0));
    assert!(g.consume_rate.is_some_and(|r| r > 0.0));
}

#[test]
fn a_committed_offset_that_does_not_decode_is_an_error_naming_the_key_never_a_silent_restart() {
    // Before, a committed value of the wrong size was skipped and the group restarted at its
    // StartAt, re-reading or skipping records without a word. Write such a value into sled
    // directly, then open the group.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = open(tmp.path());
        fill(&store, "orders", 3);
        let mut c = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
        c.poll(10, NONE).expect("poll");
        c.commit().expect("commit");
    }
    {
        let db = sled::open(tmp.path().join("consumers")).expect("sled");
        db.open_tree("groups").expect("tree").insert(b"orders\0billing", &[1u8, 2, 3][..]).expect("insert");
        db.flush().expect("flush");
    }
    let store = open(tmp.path());
    let err = store.consumer("billing", "orders", ConsumerOptions::default()).expect_err("corrupt offset");
    assert!(matches!(err, Error::CorruptState { .. }) && err.is_corruption(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("orders/billing") && text.contains("3 bytes"), "{text}");
    // The rest of the topic works, and resetting the group repairs it.
    assert_eq!(store.topic("orders").expect("topic").next_offset(), 3);
    store.reset_group("billing", "orders", StartAt::Offset(1)).expect("reset");
    let mut c = store.consumer("billing", "orders", ConsumerOptions::default()).expect("consumer");
    assert_eq!(offsets(&c.poll(10, NONE).expect("poll")), vec![1, 2]);
}

#[test]
fn a_store_dropped_and_reopened_at_once_in_the_same_process_opens_every_time() {
    // sled lets go of its lock a moment after the last handle; the store waits for that
    // instead of reporting itself locked.
    let tmp = tempfile::tempdir().expect("tempdir");
    for round in 0..20u64 {
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let t = store.topic("t").expect("topic");
        t.append(&round.to_le_bytes()).expect("append");
        let mut c = store.consumer("g", "t", evlog::ConsumerOptions::default()).expect("consumer");
        assert_eq!(c.poll(100, std::time::Duration::ZERO).expect("poll").len(), 1, "round {round}");
        c.commit().expect("commit");
    }
}

#[test]
fn a_topics_own_retention_by_size_is_kept_with_it_and_applied_after_a_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "big", 200);
    fill(&store, "other", 200);
    let config = evlog::TopicConfig::default().with_retention_bytes(Some(4096));
    store.configure_topic("big", config).expect("configure");
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.topic_config("big").expect("config").retention_bytes, Some(4096), "kept with the topic");
    assert!(store.enforce_retention("big").expect("retention").first_offset > 0, "its own size applies");
    assert_eq!(
        store.enforce_retention("other").expect("retention").first_offset,
        0,
        "the store's default (none) applies"
    );
    let zero = evlog::TopicConfig::default().with_retention_bytes(Some(0));
    assert!(store.configure_topic("big", zero).is_err(), "zero refused");
}

#[test]
fn the_stats_file_shows_another_process_the_holders_fsyncs_groups_and_queues() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::with_log(Options::with_durability(Durability::Always));
    opts.stats_interval = None;
    let store = Store::open(tmp.path(), opts).expect("store");
    common::fill(&store, "t", 5, |i| format!("r{i}"));
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    c.poll(2, Duration::ZERO).expect("poll");
    c.commit().expect("commit");
    common::fill(&store, "jobs", 3, |i| format!("job {i}"));
    let q = store.queue("w", "jobs", evlog::QueueOptions::default()).expect("queue");
    let _leased = q.try_lease().expect("lease").expect("job");
    assert_eq!(evlog::store::StatsFile::read(tmp.path()), None, "nothing written with no interval");

    store.write_stats_file().expect("stats file");
    let file = evlog::store::StatsFile::read(tmp.path()).expect("a whole stats file");
    assert_eq!(file.pid, std::process::id());
    let t = file.topics.iter().find(|t| t.topic == "t").expect("topic t");
    let counters = store.topic("t").expect("topic").stats();
    assert_eq!((t.next_offset, t.fsyncs), (5, counters.fsyncs));
    assert!(t.fsyncs > 0, "appends under Always fsync");
    assert_eq!(t.fsync_latency.count(), t.fsyncs, "every fsync is in the histogram");
    assert!(t.fsync_latency.quantile(0.99).expect("p99") >= t.fsync_latency.quantile(0.5).expect("p50"));
    let g = file.groups.iter().find(|g| g.group == "g").expect("group g");
    assert_eq!((g.topic.as_str(), g.committed), ("t", 2));
    let w = file.queues.iter().find(|q| q.queue == "w").expect("queue w");
    assert_eq!((w.topic.as_str(), w.leased, w.backlog), ("jobs", 1, 2));
    assert_eq!((t.used_bytes, t.budget_bytes), (store.topic("t").expect("topic").used_bytes().expect("used"), None));
    assert!(file.recoveries.iter().any(|r| r.topic == "t" && !r.repaired), "what recovery found at open");
    let history = file.history.iter().find(|h| h.topic == "t" && h.group.is_none()).expect("t's history");
    assert_eq!(history.points.iter().map(|p| p.1).collect::<Vec<_>>(), vec![5], "the first write takes a sample");
}
