//! Event sourcing on the log: conditional appends (by next offset and by key), per-key streams.

use evlog::defaults::KEY_BYTES_MAX;
use evlog::storage::{CrashMode, MemStorage, Storage};
use evlog::{Durability, Log, LogError, NewRecord, Options};
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn options(storage: Arc<dyn Storage>) -> Options {
    let mut o = Options::with_durability(Durability::Always);
    o.segment_bytes_max = 2048;
    o.record_bytes_max = 256;
    o.index_interval_bytes = 200;
    o.storage = storage;
    o
}

fn event(key: u64, n: u64) -> Vec<u8> {
    format!("aggregate {key} event {n}").into_bytes()
}

#[test]
fn append_expecting_appends_only_while_the_next_offset_is_as_expected() {
    let log = Log::open("/log", options(Arc::new(MemStorage::new()))).expect("open");
    assert_eq!(log.append_expecting(0, &NewRecord::new(b"first")).expect("append"), 0);
    let err = log.append_expecting(0, &NewRecord::new(b"stale")).expect_err("stale expectation");
    assert!(matches!(err, LogError::OffsetMismatch { expected: 0, actual: 1, .. }), "{err}");
    assert_eq!(log.next_offset(), 1, "nothing written");
    assert_eq!(log.append_expecting(1, &NewRecord::new(b"second")).expect("append"), 1);
}

#[test]
fn of_threads_racing_with_the_same_expectation_exactly_one_wins() {
    let log = Arc::new(Log::open("/log", options(Arc::new(MemStorage::new()))).expect("open"));
    for round in 0..20u64 {
        let next = log.next_offset();
        let last = log.last_offset_for_key(b"order-1").expect("last");
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let log = log.clone();
                    s.spawn(move || {
                        let p = event(round, t);
                        if round % 2 == 0 {
                            log.append_expecting(next, &NewRecord::new(&p)).is_ok()
                        } else {
                            log.append_expecting_key(b"order-1", last, &NewRecord::new(&p)).is_ok()
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(wins.iter().filter(|&&w| w).count(), 1, "round {round}: {wins:?}");
    }
}

#[test]
fn iter_key_and_last_offset_for_key_find_a_keys_records_across_segments_reopen_and_lost_indexes() {
    let mem = MemStorage::new();
    let mut model: HashMap<u64, Vec<u64>> = HashMap::new();
    {
        let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
        for n in 0..600u64 {
            let k = (n * 7) % 13;
            let key = format!("agg-{k}");
            let expected = model.get(&k).and_then(|v| v.last().copied());
            let o = log.append_expecting_key(key.as_bytes(), expected, &NewRecord::new(&event(k, n))).expect("append");
            model.entry(k).or_default().push(o);
            if n % 50 == 0 {
                // Keyless records in between.
                log.append(b"no key").expect("append");
            }
        }
        assert!(log.segment_count() > 10);
        check(&log, &model);
    }
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen");
    check(&log, &model);
    drop(log);
    for f in mem.list_dir(Path::new("/log")).expect("list") {
        if f.ends_with(".keyindex") {
            mem.remove_file(&Path::new("/log").join(f)).expect("remove");
        }
    }
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen");
    check(&log, &model);
    drop(log);
    // Damaged key index files (a flipped byte, a cut file) are found out and rebuilt.
    for (i, f) in
        mem.list_dir(Path::new("/log")).expect("list").into_iter().filter(|f| f.ends_with(".keyindex")).enumerate()
    {
        let p = Path::new("/log").join(f);
        mem.corrupt_file(&p, |b| if i % 2 == 0 { b[60] ^= 0x10 } else { b.truncate(b.len() - 3) });
    }
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen");
    check(&log, &model);
    let stale = model[&3].first().copied();
    let err = log.append_expecting_key(b"agg-3", stale, &NewRecord::new(b"late")).expect_err("stale");
    assert!(matches!(err, LogError::KeyVersionMismatch { .. }), "{err}");
    assert!(log.append_expecting_key(b"agg-new", None, &NewRecord::new(b"first")).is_ok());
    let err = log.append_expecting_key(b"agg-new", None, &NewRecord::new(b"again")).expect_err("exists now");
    assert!(matches!(err, LogError::KeyVersionMismatch { expected: None, actual: Some(_), .. }), "{err}");
}

fn check(log: &Log, model: &HashMap<u64, Vec<u64>>) {
    for (k, offsets) in model {
        let key = format!("agg-{k}");
        assert_eq!(log.last_offset_for_key(key.as_bytes()).expect("last"), offsets.last().copied(), "key {k}");
        let got: Vec<u64> = log.iter_key(key.as_bytes(), 0).map(|r| r.expect("record").offset()).collect();
        assert_eq!(&got, offsets, "key {k}");
        let from = offsets[offsets.len() / 2];
        let tail: Vec<u64> = log.iter_key(key.as_bytes(), from).map(|r| r.expect("record").offset()).collect();
        assert_eq!(&tail[..], &offsets[offsets.len() / 2..], "key {k} from {from}");
    }
    assert_eq!(log.last_offset_for_key(b"nobody").expect("last"), None);
    assert_eq!(log.iter_key(b"nobody", 0).count(), 0);
}

#[test]
fn a_key_over_the_limit_is_refused_and_nothing_is_written() {
    let log = Log::open("/log", options(Arc::new(MemStorage::new()))).expect("open");
    let long = vec![b'k'; KEY_BYTES_MAX + 1];
    let err = log.append_record(&NewRecord::new(b"x").key(&long)).expect_err("too long");
    assert!(matches!(err, LogError::KeyTooLarge { .. }), "{err}");
    assert_eq!(log.next_offset(), 0);
}

#[derive(Debug, Clone)]
enum Step {
    /// Append to key `k` expecting its true newest offset (or a stale one when `stale`).
    AppendKey {
        k: u8,
        stale: bool,
    },
    /// Append expecting the true next offset (or one behind when `stale`).
    AppendNext {
        stale: bool,
    },
    Reopen,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..5, any::<bool>()).prop_map(|(k, stale)| Step::AppendKey { k, stale }),
        2 => any::<bool>().prop_map(|stale| Step::AppendNext { stale }),
        1 => Just(Step::Reopen),
        1 => Just(Step::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn conditional_appends_match_the_model_across_reopens_and_power_cuts(steps in proptest::collection::vec(step(), 1..80)) {
        let mem = MemStorage::new();
        let mut log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
        // The model: each offset's key (None for `AppendNext`).
        let mut model: Vec<Option<u8>> = Vec::new();
        let last = |model: &[Option<u8>], k: u8| model.iter().rposition(|&x| x == Some(k)).map(|o| o as u64);
        for (i, s) in steps.into_iter().enumerate() {
            match s {
                Step::AppendKey { k, stale } => {
                    let truth = last(&model, k);
                    let expected = if stale { truth.map_or(Some(0), |o| o.checked_sub(1)) } else { truth };
                    let key = [b'k', k];
                    let r = log.append_expecting_key(&key, expected, &NewRecord::new(&[i as u8]));
                    if expected == truth {
                        prop_assert_eq!(r.expect("append"), model.len() as u64);
                        model.push(Some(k));
                    } else {
                        prop_assert!(matches!(r, Err(LogError::KeyVersionMismatch { .. })), "step {}: {:?}", i, r);
                    }
                }
                Step::AppendNext { stale } => {
                    let next = model.len() as u64;
                    let expected = if stale { next.wrapping_sub(1) } else { next };
                    let r = log.append_expecting(expected, &NewRecord::new(&[i as u8]));
                    if expected == next {
                        prop_assert_eq!(r.expect("append"), next);
                        model.push(None);
                    } else {
                        prop_assert!(matches!(r, Err(LogError::OffsetMismatch { .. })), "step {}: {:?}", i, r);
                    }
                }
                Step::Reopen => {
                    drop(log);
                    log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen");
                }
                Step::Crash => {
                    drop(log);
                    // `Always`: everything acknowledged survives the power cut.
                    mem.crash(CrashMode::DropUnsynced);
                    log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen after the cut");
                }
            }
            prop_assert_eq!(log.next_offset(), model.len() as u64);
        }
        for k in 0..5u8 {
            let key = [b'k', k];
            prop_assert_eq!(log.last_offset_for_key(&key).expect("last"), last(&model, k));
            let want: Vec<u64> = model.iter().enumerate().filter(|(_, x)| **x == Some(k)).map(|(o, _)| o as u64).collect();
            let got: Vec<u64> = log.iter_key(&key, 0).map(|r| r.expect("record").offset()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
