//! Timestamp-ordered replay against a sorted model, spills, resume, streaming, live tail.

mod common;

use evlog::error::ReplayError;
use evlog::replay::ReplayEvent;
use evlog::{Durability, Error, NewRecord, Options, Store, StoreOptions};
use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;

fn open(root: &Path) -> Store {
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 1024;
    log.record_bytes_max = 256;
    log.index_interval_bytes = 128;
    Store::open(root, StoreOptions::with_log(log)).expect("store")
}

/// (timestamp, topic, offset, payload) of everything appended.
type Model = Vec<(i64, String, u64, Vec<u8>)>;

fn append_all(store: &Store, records: &[(usize, i64)], topics: usize) -> Model {
    let mut model = Model::new();
    for t in 0..topics {
        store.topic(&format!("t{t}")).expect("topic");
    }
    for (i, &(t, ts)) in records.iter().enumerate() {
        let name = format!("t{}", t % topics);
        let payload = format!("p{i}").into_bytes();
        let o =
            store.topic(&name).expect("topic").append_record(&NewRecord::new(&payload).timestamp(ts)).expect("append");
        model.push((ts, name, o, payload));
    }
    model.sort();
    model
}

fn expected(model: &Model, from: i64, to: i64) -> Vec<(i64, String, u64)> {
    model.iter().filter(|m| m.0 >= from && m.0 < to).map(|m| (m.0, m.1.clone(), m.2)).collect()
}

fn keys(events: &[ReplayEvent]) -> Vec<(i64, String, u64)> {
    events.iter().map(|e| (e.timestamp, e.topic.to_string(), e.offset)).collect()
}

fn names(topics: usize) -> Vec<String> {
    (0..topics).map(|t| format!("t{t}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_the_models_sort_with_and_without_spilling_and_across_a_resume(
        topics in 1usize..4,
        records in proptest::collection::vec((0usize..3, -20i64..20), 0..150),
        from in -25i64..25,
        span in 0i64..50,
        memory in prop_oneof![Just(1u64), Just(2_000u64), Just(64u64 << 20)],
        stop_after in 0usize..40,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let to = from + span;
        let want = {
            let store = open(tmp.path());
            let model = append_all(&store, &records, topics);
            expected(&model, from, to)
        };
        let store = open(tmp.path());
        let n = names(topics);
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        // Whole replay.
        let all: Vec<ReplayEvent> = store.replay(&refs).from(from).to(to).memory_bytes_max(memory).start().expect("start")
            .collect::<Result<_, _>>().expect("replay");
        prop_assert_eq!(keys(&all), want.clone());
        // Named: stop after some events, checkpoint, "crash" (drop everything), resume.
        let first: Vec<ReplayEvent> = {
            let mut r = store.replay(&refs).from(from).to(to).memory_bytes_max(memory).name("resume").start().expect("start");
            let got: Vec<ReplayEvent> = r.by_ref().take(stop_after).collect::<Result<_, _>>().expect("replay");
            r.checkpoint().expect("checkpoint");
            got
        };
        drop(store);
        let store = open(tmp.path());
        // New records after the checkpoint are not history of the resumed replay.
        store.topic("t0").expect("topic").append_record(&NewRecord::new(b"late").timestamp(from)).expect("append");
        let rest: Vec<ReplayEvent> = store.replay(&refs).from(from).to(to).memory_bytes_max(memory).name("resume").start().expect("resume")
            .collect::<Result<_, _>>().expect("replay");
        let mut joined = keys(&first);
        joined.extend(keys(&rest));
        prop_assert_eq!(joined, want);
    }

    #[test]
    fn streaming_replay_is_exact_or_refuses_never_out_of_order(
        topics in 1usize..4,
        records in proptest::collection::vec((0usize..3, 0i64..100), 0..150),
        lateness in 0u64..40,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path());
        let model = append_all(&store, &records, topics);
        let want = expected(&model, i64::MIN, i64::MAX);
        let n = names(topics);
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        let mut got = Vec::new();
        for e in store.replay(&refs).max_lateness(Duration::from_millis(lateness)).start().expect("start") {
            match e {
                Ok(e) => got.push(e),
                Err(Error::Replay(ReplayError::LatenessExceeded { timestamp, emitted, .. })) => {
                    // Refused rather than emit out of order: what was emitted is in order, every
                    // record of it is real, and the refused record belonged before the last one.
                    let k = keys(&got);
                    prop_assert!(k.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(k.iter().all(|x| want.contains(x)));
                    prop_assert!(timestamp <= emitted);
                    return Ok(());
                }
                Err(e) => panic!("{e}"),
            }
        }
        prop_assert_eq!(keys(&got), want);
    }
}

#[test]
fn streaming_replay_of_data_within_the_declared_lateness_is_exact_and_holds_little() {
    // Three producers, each late by at most 10 ms: the streaming merge never refuses.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let mut recs = Vec::new();
    for i in 0..600i64 {
        recs.push(((i % 3) as usize, i - (i * 7919 % 11)));
    }
    let model = append_all(&store, &recs, 3);
    let got: Vec<ReplayEvent> = store
        .replay(&["t0", "t1", "t2"])
        .max_lateness(Duration::from_millis(10))
        .memory_bytes_max(8 << 10)
        .start()
        .expect("start")
        .collect::<Result<_, _>>()
        .expect("replay");
    assert_eq!(keys(&got), expected(&model, i64::MIN, i64::MAX));
}

#[test]
fn a_streaming_replay_takes_in_many_records_per_read_yet_stays_within_a_budget_of_a_few_dozen() {
    // One 256 KiB read holds about a thousand of these records, and the merge takes in up to
    // 256 of them per round instead of one; it stops once something can go out and the held
    // records use half the budget, so a budget of about 60 records (16 KiB) is never exceeded.
    // Exact against the model, as an iterator and lent.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 1 << 20;
    log.record_bytes_max = 512;
    let store = Store::open(tmp.path(), StoreOptions::with_log(log)).expect("store");
    let topic = store.topic("t0").expect("topic");
    let mut want = Vec::new();
    for i in 0..5_000i64 {
        let ts = i - (i * 7919 % 5);
        let payload = vec![(i % 251) as u8; 200];
        let o = topic.append_record(&NewRecord::new(&payload).timestamp(ts)).expect("append");
        want.push((ts, "t0".to_string(), o));
    }
    want.sort();
    let start = || store.replay(&["t0"]).max_lateness(Duration::from_millis(5)).memory_bytes_max(16 << 10).start();
    let got: Vec<ReplayEvent> = start().expect("start").collect::<Result<_, _>>().expect("within the budget");
    assert_eq!(keys(&got), want);
    let mut lent = Vec::new();
    start()
        .expect("start")
        .scan_events(|e| {
            lent.push((e.timestamp, e.topic.to_string(), e.offset));
            std::ops::ControlFlow::Continue(())
        })
        .expect("within the budget");
    assert_eq!(lent, want);
}

#[test]
fn a_tiny_memory_budget_spills_runs_that_are_removed_afterwards() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let recs: Vec<(usize, i64)> = (0..500i64).map(|i| ((i % 2) as usize, (i * 7919) % 503)).collect();
    let model = append_all(&store, &recs, 2);
    let mut r = store.replay(&["t0", "t1"]).memory_bytes_max(4 << 10).start().expect("start");
    let got: Vec<ReplayEvent> = r.by_ref().collect::<Result<_, _>>().expect("replay");
    assert_eq!(keys(&got), expected(&model, i64::MIN, i64::MAX));
    assert!(r.stats().runs_spilled > 5, "{:?}", r.stats());
    assert!(tmp.path().join("replay-tmp").read_dir().expect("dir").count() == 1, "runs exist while the replay lives");
    drop(r);
    assert_eq!(tmp.path().join("replay-tmp").read_dir().expect("dir").count(), 0, "and are removed after");
}

#[test]
fn runs_left_by_a_crash_are_removed_when_the_store_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(open(tmp.path()));
    let left = tmp.path().join("replay-tmp/123-456");
    std::fs::create_dir_all(&left).expect("dir");
    std::fs::write(left.join("run-0"), b"partial").expect("run");
    drop(open(tmp.path()));
    assert!(!tmp.path().join("replay-tmp").exists());
}

#[test]
fn replaying_the_last_part_of_the_time_range_skips_older_segments() {
    // 2,000 records in time order over many segments: the last 1% of the time range reads a
    // small fraction of the log.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    for i in 0..2000i64 {
        t.append_record(&NewRecord::new(format!("{i:08}").as_bytes()).timestamp(i)).expect("append");
    }
    let total = t.size_bytes().expect("size");
    let mut r = store.replay(&["t"]).from(1980).start().expect("start");
    assert_eq!(r.by_ref().count(), 20);
    let s = r.stats();
    assert!(s.segments_skipped > 20, "{s:?}");
    assert!(s.bytes_read * 20 <= total, "read {} of {total} bytes", s.bytes_read);
}

#[test]
fn scan_events_lends_exactly_what_the_iterator_returns_and_stops_where_told() {
    // Streaming and exact replays of three topics with keys and late records: scanning in
    // stretches (stopped by the callback), with iterator steps in between, lends the same
    // events, byte for byte, as iterating a second replay.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    for i in 0..300i64 {
        let topic = store.topic(&format!("t{}", i % 3)).expect("topic");
        let key = format!("k{}", i % 7);
        let payload = format!("p{i}");
        let ts = i - (i * 7919 % 9);
        topic.append_record(&NewRecord::new(payload.as_bytes()).key(key.as_bytes()).timestamp(ts)).expect("append");
    }
    let topics = ["t0", "t1", "t2"];
    for lateness in [Some(Duration::from_millis(10)), None] {
        let start = || {
            let b = store.replay(&topics).memory_bytes_max(4 << 10);
            match lateness {
                Some(l) => b.max_lateness(l).start().expect("start"),
                None => b.start().expect("start"),
            }
        };
        let want: Vec<ReplayEvent> = start().collect::<Result<_, _>>().expect("replay");
        assert_eq!(want.len(), 300);
        let mut r = start();
        let mut got: Vec<ReplayEvent> = Vec::new();
        let mut stretch = 1;
        loop {
            let mut lent = 0;
            let given = r
                .scan_events(|e| {
                    got.push(ReplayEvent {
                        topic: e.topic.into(),
                        offset: e.offset,
                        timestamp: e.timestamp,
                        key: e.key.map(<[u8]>::to_vec),
                        payload: evlog::storage::Bytes::from_vec(e.payload.to_vec()).expect("payload"),
                        late: e.late,
                    });
                    lent += 1;
                    if lent == stretch { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
                })
                .expect("scan");
            assert_eq!(given, lent);
            match r.next() {
                Some(e) => got.push(e.expect("event")),
                None => break,
            }
            stretch += 5;
        }
        assert_eq!(got, want, "lateness {lateness:?}");
        assert_eq!(r.scan_events(|_| std::ops::ControlFlow::Continue(())).expect("scan"), 0, "nothing after the end");
        assert_eq!(r.stats().records_emitted, 300);
    }
}

#[test]
fn then_live_continues_with_new_records_and_flags_late_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let t = store.topic("t").expect("topic");
    for ts in [30, 10, 20] {
        t.append_record(&NewRecord::new(b"old").timestamp(ts)).expect("append");
    }
    let mut r = store.replay(&["t"]).then_live().start().expect("start");
    let history: Vec<i64> = r.by_ref().take(3).map(|e| e.expect("event").timestamp).collect();
    assert_eq!(history, vec![10, 20, 30]);
    let producer = std::thread::spawn(move || {
        t.append_record(&NewRecord::new(b"new").timestamp(40)).expect("append");
        t.append_record(&NewRecord::new(b"late").timestamp(5)).expect("append");
    });
    let live: Vec<ReplayEvent> = r.by_ref().take(2).collect::<Result<_, _>>().expect("live");
    producer.join().expect("producer");
    assert_eq!(live.iter().map(|e| (e.timestamp, e.late)).collect::<Vec<_>>(), vec![(40, false), (5, true)]);
    assert_eq!(r.stats().late_records, 1);
}

#[test]
fn bad_replay_input_gives_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    store.topic("t").expect("topic");
    assert!(matches!(store.replay(&["t"]).from(10).to(5).start(), Err(Error::InvalidOptions { .. })));
    assert!(matches!(store.replay(&["missing"]).start(), Err(Error::NotFound { kind: "topic", .. })));
    assert!(matches!(store.replay(&["t"]).memory_bytes_max(0).start(), Err(Error::InvalidOptions { .. })));
    assert!(matches!(store.replay(&[]).start(), Err(Error::InvalidOptions { .. })));
    assert!(matches!(store.replay(&["../x"]).start(), Err(Error::InvalidName { .. })));
    let mut r = store.replay(&["t"]).start().expect("start");
    assert!(matches!(r.checkpoint(), Err(Error::Replay(ReplayError::NotNamed))), "unnamed replays have no checkpoint");
}

#[test]
fn paced_replay_keeps_the_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let model = append_all(&store, &[(0, 3), (0, 1), (0, 2)], 1);
    let got: Vec<ReplayEvent> =
        store.replay(&["t0"]).start().expect("start").paced(1e6).collect::<Result<_, _>>().expect("replay");
    assert_eq!(keys(&got), expected(&model, i64::MIN, i64::MAX));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_a_brute_force_model(
        timestamps in proptest::collection::vec(-30i64..60, 0..80),
        size in 1i64..20,
        slide_div in 1i64..5,
    ) {
        let slide = (size / slide_div).max(1);
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path());
        let t = store.topic("t").expect("topic");
        for (i, ts) in timestamps.iter().enumerate() {
            t.append_record(&NewRecord::new(&(i as u64).to_le_bytes()).timestamp(*ts)).expect("append");
        }
        let value = |e: &ReplayEvent| u64::from_le_bytes(e.payload[..].try_into().expect("8")) as f64;
        let got: Vec<evlog::replay::Window<evlog::replay::Summary>> = store
            .replay(&["t"])
            .start()
            .expect("start")
            .windows(evlog::replay::WindowSpec::sliding(size, slide), evlog::replay::Summary::default(), |s, e| s.add(value(e)))
            .expect("windows")
            .collect::<Result<_, _>>()
            .expect("windows");
        // Brute force: every window end that is a multiple of the slide near the data.
        let mut want = Vec::new();
        let mut end = (-30 - slide).div_euclid(slide) * slide;
        while end <= 60 + size + slide {
            let mut s = evlog::replay::Summary::default();
            let mut count = 0;
            for (i, &ts) in timestamps.iter().enumerate() {
                if end - size < ts && ts <= end {
                    count += 1;
                    s.add(i as f64);
                }
            }
            if count > 0 {
                want.push(evlog::replay::Window { end, count, value: s });
            }
            end += slide;
        }
        // Sums are of small integers: exact in f64, though the fold order differs.
        prop_assert_eq!(got, want);
    }
}

#[test]
fn bad_window_specs_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    store.topic("t").expect("topic");
    for spec in [
        evlog::replay::WindowSpec::tumbling(0),
        evlog::replay::WindowSpec::sliding(5, 10),
        evlog::replay::WindowSpec::sliding(5, -1),
    ] {
        let r = store.replay(&["t"]).start().expect("start");
        assert!(matches!(r.windows(spec, 0u64, |n, _| *n += 1), Err(Error::InvalidOptions { .. })));
    }
}

#[test]
fn then_live_over_several_topics_wakes_on_an_append_to_any_of_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let (a, b) = (store.topic("a").expect("topic"), store.topic("b").expect("topic"));
    a.append_record(&NewRecord::new(b"history").timestamp(1)).expect("append");
    let mut r = store.replay(&["a", "b"]).then_live().start().expect("start");
    assert_eq!(r.next().expect("event").expect("ok").payload[..], b"history"[..]);
    let producer =
        std::thread::spawn(move || b.append_record(&NewRecord::new(b"live on b").timestamp(2)).expect("append"));
    let e = r.next().expect("event").expect("ok");
    producer.join().expect("producer");
    assert_eq!((&*e.topic, &e.payload[..]), ("b", &b"live on b"[..]));
    drop(a);
}

#[test]
fn an_exact_replay_of_a_log_far_larger_than_its_budget_leaves_no_trail_in_resident_memory() {
    // 200,000 shuffled records of 1 KiB (≈ 200 MiB of segments) through a 16 MiB budget: the
    // exact path copies what it sorts and spills, so the segment pages its scan passed are not
    // touched again and leave the resident set behind the cursor.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 32 << 20;
    let store = Store::open(tmp.path(), StoreOptions::with_log(log)).expect("store");
    let t = store.topic("big").expect("topic");
    let payload = vec![0x5Au8; 1024];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..200 {
        let ts: Vec<i64> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1_000_000_000) as i64
            })
            .collect();
        let batch: Vec<NewRecord<'_>> = ts.iter().map(|&ts| NewRecord::new(&payload).timestamp(ts)).collect();
        t.append_batch(&batch).expect("batch");
    }
    drop(t);
    drop(store);
    let mut log = Options::with_durability(Durability::Os);
    log.segment_bytes_max = 32 << 20;
    let store = Store::open(tmp.path(), StoreOptions::with_log(log)).expect("reopen");
    let before = common::rss_file_bytes();
    let mut replay = store.replay(&["big"]).memory_bytes_max(16 << 20).start().expect("replay");
    let (mut n, mut last, mut peak) = (0u64, i64::MIN, 0u64);
    for e in &mut replay {
        let e = e.expect("event");
        assert!(e.timestamp >= last, "timestamp order");
        last = e.timestamp;
        n += 1;
        if n.is_multiple_of(10_000) {
            peak = peak.max(common::rss_file_bytes());
        }
    }
    assert_eq!(n, 200_000);
    let grown = peak.saturating_sub(before);
    // The active segment (read from its map, up to 32 MiB) may stay resident; nothing else.
    assert!(grown < 64 << 20, "resident file pages grew by {} MiB during the replay", grown >> 20);
}
