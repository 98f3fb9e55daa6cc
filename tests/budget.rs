//! Disk budgets and per-topic configuration: `Options::budget`, `Store::configure_topic`, and
//! what each policy does when an append would go past the budget.

use evlog::defaults::BUDGET_BYTES_MIN;
use evlog::log::{Budget, WhenFull};
use evlog::storage::{CrashMode, MemStorage};
use evlog::{ConsumerOptions, Durability, Error, Log, LogError, NewRecord, Options, Store, StoreOptions, TopicConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("record {i:>10} ").into_bytes();
    p.resize(1000, b'x');
    p
}

fn mem_options(mem: &MemStorage, budget: Option<Budget>) -> Options {
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(mem.clone());
    o.budget = budget;
    o
}

/// The log in `mem` under `budget` (a log's budget is an option of its open).
fn mem_log(mem: &MemStorage, budget: Option<Budget>) -> Log {
    Log::open("/log", mem_options(mem, budget)).expect("open")
}

/// Appends until the budget refuses one; returns how many were appended.
fn fill(log: &Log) -> u64 {
    let mut n = 0;
    loop {
        match log.append(&payload(log.next_offset())) {
            Ok(_) => n += 1,
            Err(LogError::TopicFull { bytes_max, .. }) => {
                assert_eq!(bytes_max, log.budget().expect("budget").bytes_max);
                return n;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").metadata().expect("stat").len()).sum()
}

#[test]
fn an_append_past_an_error_budget_fails_with_topic_full_writes_nothing_and_the_handle_recovers() {
    let mem = MemStorage::new();
    let log = mem_log(&mem, Some(Budget::new(BUDGET_BYTES_MIN, WhenFull::Error)));
    let n = fill(&log);
    assert!(n > 900 && n < 1100, "about 1 MiB of 1 KiB records: {n}");
    let next = log.next_offset();
    assert!(matches!(log.append(&payload(next)), Err(LogError::TopicFull { .. })));
    assert_eq!(log.next_offset(), next, "nothing written");
    assert!(log.size_bytes().expect("size") <= BUDGET_BYTES_MIN + (1 << 20), "segments plus preallocation");
    // Every acknowledged record reads back, in order.
    let got: Vec<u64> = log.iter(0).map(|r| r.expect("record").offset()).collect();
    assert_eq!(got, (0..next).collect::<Vec<_>>());
    // Freeing space (what retention does) lets the same handle append again.
    let second = log.sealed_segments().expect("segments")[0].end_offset;
    log.remove_before(second).expect("remove");
    assert_eq!(log.append(&payload(next)).expect("append"), next);
}

#[test]
fn a_budget_below_the_floor_is_refused_and_records_larger_than_its_segments_are_too_large() {
    let mem = MemStorage::new();
    let too_small = Some(Budget::new(BUDGET_BYTES_MIN - 1, WhenFull::Error));
    let err = Log::open("/log", mem_options(&mem, too_small)).expect_err("too small");
    assert!(matches!(err, LogError::InvalidOptions { ref reason } if reason.contains("bytes_max")), "{err}");
    let log = mem_log(&mem, Some(Budget::new(BUDGET_BYTES_MIN, WhenFull::DropOldest)));
    // Segments are a quarter of the budget: a record of 300 KiB cannot fit in one.
    let big = vec![1u8; 300 << 10];
    assert!(matches!(log.append(&big), Err(LogError::RecordTooLarge { max, .. }) if max < BUDGET_BYTES_MIN / 4));
    log.close().expect("close");
    let log = mem_log(&mem, None);
    log.append(&big).expect("fits once the budget is lifted");
}

#[test]
fn drop_oldest_keeps_a_topic_under_its_budget_and_consumers_see_the_gap_as_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(Options::with_durability(Durability::Os))).expect("store");
    let config = TopicConfig::default().with_budget(10 * MIB, WhenFull::DropOldest);
    store.configure_topic("metrics", config).expect("configure");
    let topic = store.topic("metrics").expect("topic");
    let mut slow = store.consumer("slow", "metrics", ConsumerOptions::default()).expect("consumer");
    assert_eq!(slow.poll(1, Duration::ZERO).expect("poll").len(), 0);
    let dir = tmp.path().join("topics").join("metrics");
    // 100 MiB of 1 KiB records, in batches of 100.
    let mut largest = 0;
    for b in 0..1_000u64 {
        let payloads: Vec<Vec<u8>> = (0..100).map(|i| payload(b * 100 + i)).collect();
        let batch: Vec<NewRecord<'_>> = payloads.iter().map(|p| NewRecord::new(p)).collect();
        topic.append_batch(&batch).expect("batch");
        largest = largest.max(dir_bytes(&dir));
    }
    assert!(largest <= 10 * MIB + 10 * MIB / 4, "{} bytes on disk at most, budget 10 MiB", largest);
    // What is kept is a suffix of what was appended, byte for byte.
    let first = topic.first_offset();
    assert!(first > 80_000, "old segments were dropped: first offset {first}");
    let mut expected = first;
    for r in topic.iter(0) {
        let r = r.expect("record");
        assert_eq!((r.offset(), r.payload()), (expected, &payload(expected)[..]));
        expected += 1;
    }
    assert_eq!(expected, 100_000);
    // The group that had read nothing is told what it missed.
    let got = slow.poll(10, Duration::ZERO).expect("poll");
    assert_eq!(got[0].offset(), first);
    assert_eq!(slow.start_report().skipped, first);
}

#[test]
fn a_blocked_append_waits_for_space_and_gives_up_with_topic_full_after_its_timeout() {
    let mem = MemStorage::new();
    let log = mem_log(&mem, Some(Budget::new(BUDGET_BYTES_MIN, WhenFull::Error)));
    fill(&log);
    log.close().expect("close");
    let mut budget = Budget::new(BUDGET_BYTES_MIN, WhenFull::Block);
    budget.block_timeout = Duration::from_millis(100);
    let log = mem_log(&mem, Some(budget));
    let started = Instant::now();
    assert!(matches!(log.append(&payload(0)), Err(LogError::TopicFull { .. })));
    assert!(started.elapsed() >= Duration::from_millis(100), "waited for its timeout");
    // With a long timeout, an append goes on as soon as space is freed.
    budget.block_timeout = Duration::from_secs(60);
    log.close().expect("close");
    let log = Arc::new(mem_log(&mem, Some(budget)));
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&payload(7)))
    };
    let second = log.sealed_segments().expect("segments")[0].end_offset;
    log.remove_before(second).expect("free space");
    let offset = appender.join().expect("thread").expect("appended once space was freed");
    assert_eq!(log.read(offset).expect("read").expect("record").payload(), &payload(7)[..]);
}

#[test]
fn a_topics_configuration_survives_reopen_and_a_power_cut_and_is_applied_when_it_opens() {
    // Topics live in the simulated disk; sled (always on the real file system) in a tempdir.
    let mem = MemStorage::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let options = || {
        let mut o = StoreOptions::with_log(Options::with_durability(Durability::Always));
        o.log.storage = Arc::new(mem.clone());
        o
    };
    let config = TopicConfig::default()
        .with_budget(2 * MIB, WhenFull::Error)
        .with_block_timeout(Duration::from_secs(5))
        .with_retention_age(Some(Duration::from_secs(7 * 86_400)));
    {
        let store = Store::open(&root, options()).expect("store");
        assert_eq!(
            store.topic_config("orders").map_err(|e| e.to_string()).expect_err("no topic"),
            "topic \"orders\" not found"
        );
        store.configure_topic("orders", config).expect("configure");
        assert_eq!(store.topic_config("orders").expect("config"), config);
    }
    mem.crash(CrashMode::DropUnsynced);
    let store = Store::open(&root, options()).expect("reopen");
    assert_eq!(store.topic_config("orders").expect("config"), config, "durable once configure_topic returned");
    let topic = store.topic("orders").expect("topic");
    assert_eq!(topic.budget().expect("budget applied at open").bytes_max, 2 * MIB);
    let mut n = 0u64;
    let err = loop {
        match topic.append(&payload(n)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    let is_full =
        matches!(err, LogError::TopicFull { ref topic, bytes_max, .. } if topic == "orders" && bytes_max == 2 * MIB);
    assert!(is_full, "{err}");
    assert!(err.to_string().contains("orders") && err.to_string().contains("2097152"), "{err}");
}

#[test]
fn invalid_configurations_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let small = TopicConfig::default().with_budget(1000, WhenFull::Error);
    assert!(matches!(store.configure_topic("t", small), Err(Error::InvalidOptions { .. })));
    let zero_age = TopicConfig::default().with_retention_age(Some(Duration::ZERO));
    assert!(matches!(store.configure_topic("t", zero_age), Err(Error::InvalidOptions { .. })));
    assert!(!tmp.path().join("topics").join("t").join("topic.config").exists());
    // A damaged file is an error naming it, never a silent default.
    store.configure_topic("t", TopicConfig::default()).expect("configure");
    let path = tmp.path().join("topics").join("t").join("topic.config");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[20] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    let err = store.topic_config("t").expect_err("damaged");
    assert!(matches!(err, Error::Corruption { ref path, .. } if path.ends_with("topic.config")), "{err}");
}

#[test]
fn appends_are_refused_while_free_space_is_below_the_reserve_and_go_on_once_there_is_room() {
    use evlog::storage::FaultStorage;
    let faulty = FaultStorage::new(Arc::new(MemStorage::new()));
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(faulty.clone());
    o.disk_reserve_bytes = 10 * MIB;
    let log = Log::open("/log", o).expect("open");
    log.append(b"plenty of room").expect("append");
    faulty.set_available_bytes(Some(5 * MIB));
    // Checked once per MiB appended: within a MiB of the last look the append may still pass.
    let err = (0..2_000).find_map(|i| log.append(&payload(i)).err()).expect("refused below the reserve");
    assert!(matches!(err, LogError::StorageFull { op: "reserve space", .. }), "{err}");
    assert!(err.to_string().contains("disk_reserve_bytes"), "{err}");
    let next = log.next_offset();
    faulty.set_available_bytes(Some(100 * MIB));
    assert_eq!(log.append(b"room again").expect("not poisoned"), next);
    // The real file system answers too.
    let real = evlog::storage::RealStorage;
    let free = evlog::storage::Storage::available_bytes(&real, std::path::Path::new("/")).expect("statvfs");
    assert!(free.is_some_and(|f| f > 0));
}
