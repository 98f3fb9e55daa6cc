//! Compaction by key: Kafka semantics, sparse offsets for every reader, crash safety.

use evlog::log::CompactOptions;
use evlog::storage::{CrashMode, FaultStorage, MemStorage, Storage};
use evlog::{Durability, Log, NewRecord, Options};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn options(storage: Arc<dyn Storage>) -> Options {
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 64 << 10;
    o.record_bytes_max = 1024;
    o.index_interval_bytes = 512;
    o.storage = storage;
    o
}

fn key(k: u64) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn payload(i: u64) -> Vec<u8> {
    format!("value {i} {}", "v".repeat((i % 13) as usize)).into_bytes()
}

/// Appends `n` records over `keys` keys (and every 10th without a key), then tombstones for
/// `tombstoned` keys with an old timestamp, then enough records to seal all of that. Returns
/// each offset's (key, payload, is tombstone).
fn fill(log: &Log, n: u64, keys: u64, tombstoned: u64) -> BTreeMap<u64, (Option<u64>, Vec<u8>, bool)> {
    let mut all = BTreeMap::new();
    for i in 0..n {
        let p = payload(i);
        let k = (i % 10 != 9).then_some(i % keys);
        let kb = k.map(key);
        let mut r = NewRecord::new(&p);
        r.key = kb.as_deref();
        let o = log.append_record(&r).expect("append");
        all.insert(o, (k, p, false));
    }
    let old = evlog_now_ms() - 3_600_000;
    for k in 0..tombstoned {
        let kb = key(k);
        let o = log.append_record(&NewRecord::tombstone(&kb).timestamp(old)).expect("tombstone");
        all.insert(o, (Some(k), Vec::new(), true));
    }
    // Fresh records without keys push the tombstones into sealed segments.
    for i in 0..2_000 {
        let p = payload(n + i);
        let o = log.append(&p).expect("append");
        all.insert(o, (None, p, false));
    }
    all
}

fn evlog_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What compaction must leave: every record of the active segment; in sealed segments records
/// without a key, and the newest of each key unless that is a tombstone (old enough to go).
fn expected(log: &Log, all: &BTreeMap<u64, (Option<u64>, Vec<u8>, bool)>) -> Vec<u64> {
    let active_base = log.sealed_segments().expect("segments").last().map_or(0, |s| s.end_offset);
    let mut newest: HashMap<u64, u64> = HashMap::new();
    for (&o, (k, _, _)) in all {
        if let Some(k) = k {
            newest.insert(*k, o);
        }
    }
    all.iter()
        .filter(|&(&o, (k, _, tomb))| {
            o >= active_base
                || match k {
                    None => true,
                    Some(k) => newest[k] == o && !tomb,
                }
        })
        .map(|(&o, _)| o)
        .collect()
}

fn offsets(log: &Log, from: u64) -> Vec<u64> {
    log.iter(from).map(|r| r.expect("record").offset()).collect()
}

#[test]
fn compacting_100000_records_over_1000_keys_keeps_exactly_the_newest_of_each_key_minus_tombstones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), options(Arc::new(evlog::storage::RealStorage))).expect("open");
    let all = fill(&log, 100_000, 1_000, 100);
    let want = expected(&log, &all);
    let before_bytes = log.size_bytes().expect("size");
    let report =
        log.compact(&CompactOptions::default().with_tombstone_retention(Duration::from_secs(60))).expect("compact");
    assert_eq!(report.tombstones_removed, 100);
    assert!(report.segments_rewritten > 10 && report.records_after < report.records_before / 5, "{report:?}");
    assert!(log.size_bytes().expect("size") < before_bytes / 3);
    assert_eq!(offsets(&log, 0), want, "iter yields exactly what compaction must keep, in order");
    // Every kept record reads back byte for byte, by offset too; a dropped one is gone.
    for &o in want.iter().step_by(97) {
        let r = log.read(o).expect("read").expect("kept");
        assert_eq!(r.payload(), &all[&o].1[..]);
        assert_eq!(r.key().map(<[u8]>::to_vec), all[&o].0.map(key));
    }
    let dropped = (0..100_000).find(|o| !want.contains(o)).expect("something was dropped");
    assert!(log.read(dropped).expect("read").is_none());
    // An iterator started inside a gap begins at the next kept record.
    let after = want.iter().copied().find(|&o| o > dropped).expect("a later record");
    assert_eq!(log.iter(dropped).next().expect("one").expect("record").offset(), after);
    // The same after reopening (indexes from the rewrite, then rebuilt when missing).
    drop(log);
    let log = Log::open(tmp.path(), options(Arc::new(evlog::storage::RealStorage))).expect("reopen");
    assert_eq!(offsets(&log, 0), want);
    for e in std::fs::read_dir(tmp.path()).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
            std::fs::remove_file(p).expect("remove index");
        }
    }
    drop(log);
    let log = Log::open(tmp.path(), options(Arc::new(evlog::storage::RealStorage))).expect("reopen");
    assert_eq!(offsets(&log, 0), want, "indexes rebuilt from compacted segments");
    // Compacting again changes nothing.
    let again = log.compact(&CompactOptions::default()).expect("compact");
    assert_eq!(again.segments_rewritten, 0, "{again:?}");
}

#[test]
fn a_tombstone_younger_than_its_retention_stays_and_hides_older_records_of_its_key() {
    let mem = MemStorage::new();
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
    log.append_record(&NewRecord::new(b"v1").key(b"user-1")).expect("append");
    log.append_record(&NewRecord::new(b"v2").key(b"user-1")).expect("append");
    let tomb = log.append_record(&NewRecord::tombstone(b"user-1")).expect("tombstone");
    for i in 0..2_000 {
        log.append(&payload(i)).expect("append");
    }
    let report = log.compact(&CompactOptions::default()).expect("compact");
    assert_eq!(report.tombstones_removed, 0);
    let first = log.iter(0).next().expect("one").expect("record");
    assert_eq!(first.offset(), tomb, "v1 and v2 are gone, the tombstone stays");
    assert!(first.is_tombstone() && first.payload().is_empty());
}

#[test]
fn consumers_and_time_lookups_cross_compacted_segments_and_empty_ones() {
    let mem = MemStorage::new();
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
    // Whole segments of one key, rewritten by later values: they end up empty.
    for i in 0..3_000u64 {
        let p = payload(i);
        log.append_record(&NewRecord::new(&p).key(b"same").timestamp(1_000 + i as i64)).expect("append");
    }
    let last_keyed = log.next_offset() - 1;
    for i in 0..2_000u64 {
        let p = payload(i);
        log.append_record(&NewRecord::new(&p).timestamp(10_000 + i as i64)).expect("append");
    }
    log.compact(&CompactOptions::default()).expect("compact");
    assert_eq!(offsets(&log, 0).first(), Some(&last_keyed), "only the newest `same` is left before the keyless ones");
    assert_eq!(offsets(&log, 0).len(), 2_001);
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Some(last_keyed));
    assert_eq!(log.offset_for_timestamp(10_500).expect("lookup"), Some(last_keyed + 501));
    let mut scanned = 0;
    log.scan(0, |_| {
        scanned += 1;
        std::ops::ControlFlow::Continue(())
    })
    .expect("scan");
    assert_eq!(scanned, 2_001);
}

#[test]
fn a_power_cut_at_any_point_of_a_compaction_leaves_the_old_or_the_new_segment_never_a_mix() {
    // Build the log once, then sweep a machine stop over every storage change the compaction
    // makes, cutting power after it: reopening must succeed and show either each segment's old
    // records or its compacted ones, never lose a newest-per-key record, never show a torn one.
    let build = || {
        let mem = MemStorage::new();
        let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
        let all = fill(&log, 3_000, 50, 5);
        log.close().expect("close");
        (mem, all)
    };
    let total = {
        let (mem, _) = build();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let before = faulty.changes();
        let log = Log::open("/log", options(Arc::new(faulty.clone()))).expect("open");
        log.compact(&CompactOptions::default().with_tombstone_retention(Duration::from_secs(60))).expect("compact");
        faulty.changes() - before
    };
    assert!(total > 10, "compaction makes {total} storage changes");
    for n in 0..total {
        let (mem, all) = build();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let log = Log::open("/log", options(Arc::new(faulty.clone()))).expect("open");
        faulty.stop_after(n);
        let _ = log.compact(&CompactOptions::default().with_tombstone_retention(Duration::from_secs(60)));
        drop(log);
        mem.crash(CrashMode::DropUnsynced);
        let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen after the cut");
        let got = offsets(&log, 0);
        let want = expected(&log, &all);
        // Everything compaction must keep is there, and everything there was appended, in order.
        assert!(want.iter().all(|o| got.binary_search(o).is_ok()), "stop after {n}: a kept record is missing");
        for r in log.iter(0) {
            let r = r.expect("record");
            assert_eq!(r.payload(), &all[&r.offset()].1[..], "stop after {n}");
        }
        // And a full compaction afterwards reaches the same end state.
        log.compact(&CompactOptions::default().with_tombstone_retention(Duration::from_secs(60))).expect("compact");
        assert_eq!(offsets(&log, 0), want, "stop after {n}");
        let leftovers = mem.list_dir(Path::new("/log")).expect("list");
        assert!(leftovers.iter().all(|f| !f.ends_with(".tmp")), "stop after {n}: {leftovers:?}");
    }
}

#[test]
fn a_consumer_acking_records_one_by_one_commits_past_compaction_gaps_and_reports_no_skips() {
    use evlog::consume::AckMode;
    use evlog::{ConsumerOptions, Store, StoreOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = StoreOptions::with_log(options(Arc::new(evlog::storage::RealStorage)));
    o.log.durability = Durability::Os;
    let store = Store::open(tmp.path(), o).expect("store");
    let topic = store.topic("accounts").expect("topic");
    for i in 0..5_000u64 {
        let p = payload(i);
        let k = key(i % 20);
        topic.append_record(&NewRecord::new(&p).key(&k)).expect("append");
    }
    let report = store.compact_topic("accounts").expect("compact");
    assert!(report.records_after < report.records_before / 10, "{report:?}");
    let mut co = ConsumerOptions::default();
    co.ack_mode = AckMode::Explicit;
    let mut c = store.consumer("balances", "accounts", co).expect("consumer");
    let mut seen = 0;
    loop {
        let got = c.poll(100, Duration::ZERO).expect("poll");
        if got.is_empty() {
            break;
        }
        for r in got.iter().rev() {
            c.ack(r.offset()).expect("ack");
        }
        seen += got.len();
    }
    c.commit().expect("commit");
    assert_eq!(c.start_report().skipped, 0, "gaps left by compaction are not skipped records");
    assert_eq!(store.groups("accounts").expect("groups")[0].committed, topic.next_offset());
    assert_eq!(seen as u64, topic.iter(0).count() as u64);
}

#[test]
fn replay_of_compacted_topics_emits_each_kept_record_once_in_time_order() {
    use evlog::{Store, StoreOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(options(Arc::new(evlog::storage::RealStorage)))).expect("store");
    for name in ["a", "b"] {
        let t = store.topic(name).expect("topic");
        for i in 0..4_000u64 {
            let p = payload(i);
            // Later keys only in early segments: whole tails of segments are dropped.
            let k = key(if i < 3_000 { i % 3 } else { i });
            t.append_record(&NewRecord::new(&p).key(&k).timestamp(i as i64 * 10 + i64::from(name == "b")))
                .expect("append");
        }
        store.compact_topic(name).expect("compact");
    }
    let kept = |name: &str| -> Vec<(i64, u64)> {
        store
            .topic(name)
            .expect("topic")
            .iter(0)
            .map(|r| r.expect("record"))
            .map(|r| (r.timestamp(), r.offset()))
            .collect()
    };
    let mut want: Vec<(i64, String, u64)> =
        ["a", "b"].iter().flat_map(|n| kept(n).into_iter().map(move |(ts, o)| (ts, n.to_string(), o))).collect();
    want.sort();
    for lateness in [None, Some(Duration::from_secs(1))] {
        let mut b = store.replay(&["a", "b"]);
        if let Some(l) = lateness {
            b = b.max_lateness(l);
        }
        let got: Vec<(i64, String, u64)> = b
            .start()
            .expect("start")
            .map(|e| e.expect("event"))
            .map(|e| (e.timestamp, e.topic.to_string(), e.offset))
            .collect();
        assert_eq!(got, want, "lateness {lateness:?}");
    }
}

#[test]
fn a_full_disk_during_compaction_leaves_the_segment_as_it_was_and_no_partial_rewrite() {
    use evlog::storage::{Fault, Op};
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let log = Log::open("/log", options(Arc::new(faulty.clone()))).expect("open");
    let all = fill(&log, 3_000, 50, 0);
    let before = offsets(&log, 0);
    let want = expected(&log, &all);
    // Full from the first write of a rewrite: nothing changes. From a later one: the segments
    // rewritten before stay compacted (each is whole), the one being rewritten is untouched.
    for skip in [0, 1] {
        faulty.fail_always(Op::Write, Some(".compact."), skip, Fault::NoSpace);
        let err = log.compact(&CompactOptions::default()).expect_err("the disk is full");
        assert!(matches!(err, evlog::LogError::StorageFull { .. }), "{err}");
        let files = mem.list_dir(Path::new("/log")).expect("list");
        assert!(files.iter().all(|f| !f.ends_with(".tmp")), "the partial rewrite is removed");
        let now = offsets(&log, 0);
        if skip == 0 {
            assert!(now == before, "nothing changed");
        }
        assert!(want.iter().all(|o| now.binary_search(o).is_ok()), "nothing compaction keeps is lost");
        assert!(now.iter().all(|o| before.binary_search(o).is_ok()), "nothing new appears");
        faulty.clear();
    }
    log.compact(&CompactOptions::default()).expect("compacts once there is room");
    assert!(offsets(&log, 0) == want, "the full compaction afterwards");
}
