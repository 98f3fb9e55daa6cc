//! Named behaviours of the core log, each asserting an outcome.

mod common;

use evlog::log::{RecoveryMode, WritePath};
use evlog::storage::{CrashMode, Fault, FaultStorage, MemStorage, Op, Storage};
use evlog::{Durability, Log, LogError, NewRecord, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn mem_opts(mem: &MemStorage, durability: Durability) -> Options {
    let mut o = Options::with_durability(durability);
    o.storage = Arc::new(mem.clone());
    o
}

fn small(mut o: Options) -> Options {
    o.segment_bytes_max = 4096;
    o.record_bytes_max = 1024;
    o.index_interval_bytes = 256;
    o.checkpoint_interval_bytes = 1024;
    o.open_segments_max = 2;
    o.read_buffer_bytes = 512;
    o
}

fn dir() -> PathBuf {
    PathBuf::from("/log")
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn all_payloads(log: &Log) -> Vec<Vec<u8>> {
    log.iter(0).map(|r| r.expect("record").payload().to_vec()).collect()
}

fn segment_path(d: &Path, base: u64) -> PathBuf {
    d.join(evlog::format::segment_file_name(base))
}

#[test]
fn appends_get_contiguous_offsets_and_read_back_byte_for_byte_on_real_files() {
    // Real files, default options: offsets 0..n, reads and iteration return the same bytes,
    // and so does a reopened log.
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::with_durability(Durability::Os)).expect("open");
    for i in 0..500 {
        assert_eq!(log.append(&payload(i)).expect("append"), i);
    }
    assert_eq!(log.read(123).expect("read").expect("present").payload(), &payload(123)[..]);
    assert!(log.read(500).expect("read").is_none());
    drop(log);
    let log = Log::open(tmp.path(), Options::default()).expect("reopen");
    assert_eq!(log.next_offset(), 500);
    assert_eq!(all_payloads(&log), (0..500).map(payload).collect::<Vec<_>>());
}

#[test]
fn keys_headers_and_timestamps_are_stored_as_given() {
    // Every field of a record survives a reopen exactly, including an empty key.
    let mem = MemStorage::new();
    let log = Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("open");
    let r = NewRecord::new(b"p").timestamp(-5).key(b"").header("trace", b"abc").header("n", b"");
    log.append_record(&r).expect("append");
    log.append_record(&NewRecord::new(b"q").timestamp(i64::MAX)).expect("append");
    drop(log);
    let log = Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("reopen");
    let a = log.read(0).expect("read").expect("present");
    assert_eq!((a.timestamp(), a.key(), a.payload()), (-5, Some(&b""[..]), &b"p"[..]));
    assert_eq!(a.headers().collect::<Vec<_>>(), vec![("trace", &b"abc"[..]), ("n", &b""[..])]);
    assert_eq!(a.header("trace"), Some(&b"abc"[..]));
    let b = log.read(1).expect("read").expect("present");
    assert_eq!((b.timestamp(), b.key()), (i64::MAX, None));
}

#[test]
fn segments_roll_at_segment_bytes_max_and_reads_cross_them() {
    // With 4 KiB segments, 300 records fill many segments; each stays within the limit and
    // iteration crosses every boundary.
    let mem = MemStorage::new();
    let log = Log::open(dir(), small(mem_opts(&mem, Durability::Os))).expect("open");
    for i in 0..300 {
        log.append(&payload(i)).expect("append");
    }
    assert!(log.segment_count() > 5, "only {} segments", log.segment_count());
    for name in mem.list_dir(&dir()).expect("list") {
        if name.ends_with(".log") {
            let len = mem.read_file(&dir().join(&name)).expect("file").len();
            assert!(len <= 4096, "{name} is {len} bytes");
        }
    }
    assert_eq!(all_payloads(&log), (0..300).map(payload).collect::<Vec<_>>());
    for i in [0, 1, 57, 150, 299] {
        assert_eq!(log.read(i).expect("read").expect("present").payload(), &payload(i)[..]);
    }
    assert!(log.stats().mapped_segments <= 2, "open_segments_max caps maps: {}", log.stats().mapped_segments);
}

#[test]
fn writer_truncates_torn_tail_before_next_append() {
    // An unsynced append torn by a power cut (25 of its 60 bytes reached the disk) is cut back
    // to the last whole record, reported, and the next append continues at the next offset.
    // (No preallocation, so the segment ends exactly at the last frame.)
    let mem = MemStorage::new();
    let mem_opts = |mem: &MemStorage, d| {
        let mut o = mem_opts(mem, d);
        o.preallocate_bytes = 0;
        o
    };
    let log = Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("open");
    for i in 0..10 {
        log.append(&payload(i)).expect("append");
    }
    drop(log);
    let mut o = mem_opts(&mem, Durability::Os);
    o.checkpoint_interval_bytes = u64::MAX;
    let log = Log::open(dir(), o).expect("open");
    log.append(b"this one is torn").expect("append");
    let seg = segment_path(&dir(), 0);
    let bytes = mem.read_file(&seg).expect("segment");
    let frame = bytes[bytes.len() - 60..].to_vec();
    mem.crash(CrashMode::DropUnsynced);
    drop(log);
    mem.corrupt_file(&seg, |b| b.extend_from_slice(&frame[..25]));
    let log = Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("reopen");
    assert_eq!(log.recovery_report().truncated_bytes, 25);
    assert_eq!(mem.read_file(&seg).expect("segment").len(), bytes.len() - 60);
    assert_eq!(log.append(b"after").expect("append"), 10);
    let mut expected: Vec<_> = (0..10).map(payload).collect();
    expected.push(b"after".to_vec());
    assert_eq!(all_payloads(&log), expected);
}

#[test]
fn torn_tail_garbage_on_real_files_is_truncated_and_reported() {
    // Garbage bytes after the last frame of a real file: open truncates exactly them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::default()).expect("open");
    for i in 0..20 {
        log.append(&payload(i)).expect("append");
    }
    drop(log);
    let seg = segment_path(tmp.path(), 0);
    let len = std::fs::metadata(&seg).expect("stat").len();
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0xE7, 1, 0, 0, 9, 9, 9, 9, 9, 9, 9]);
    std::fs::write(&seg, &bytes).expect("write");
    let log = Log::open(tmp.path(), Options::default()).expect("reopen");
    assert_eq!(log.recovery_report().truncated_bytes, 11);
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), len);
    assert_eq!(log.append(b"next").expect("append"), 20);
}

#[test]
fn mid_log_corruption_is_detected_and_open_fails_with_its_position() {
    // A flipped byte in a durable record of the active segment: open fails naming the file,
    // the position of the bad frame and its offset, and changes nothing.
    let mem = MemStorage::new();
    let log = Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("open");
    let mut positions = Vec::new();
    let mut pos = evlog::format::SEGMENT_HEADER_LEN as u64;
    for i in 0..10 {
        log.append(&payload(i)).expect("append");
        positions.push(pos);
        pos += (evlog::format::FRAME_HEADER_LEN + payload(i).len()) as u64;
    }
    drop(log);
    let seg = segment_path(&dir(), 0);
    mem.corrupt_file(&seg, |b| b[positions[4] as usize + 50] ^= 0xFF);
    let before = mem.read_file(&seg);
    match Log::open(dir(), mem_opts(&mem, Durability::Always)) {
        Err(LogError::Corruption { path, position, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!((position, offset), (positions[4], Some(4)));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(mem.read_file(&seg), before, "a failed open changes nothing");
}

#[test]
fn corruption_after_the_checkpoint_proven_durable_by_later_frames_fails_open() {
    // No checkpoint covers the bad frame, but later frames were written after an fsync that
    // covered it (their durable_offset says so): that is corruption, not a torn tail.
    let mem = MemStorage::new();
    let mut o = mem_opts(&mem, Durability::Always);
    o.checkpoint_interval_bytes = u64::MAX;
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..10 {
        log.append(&payload(i)).expect("append");
    }
    mem.crash(CrashMode::ProcessKill); // no clean-close checkpoint
    drop(log);
    let seg = segment_path(&dir(), 0);
    let at = evlog::format::SEGMENT_HEADER_LEN + evlog::format::FRAME_HEADER_LEN + 3;
    mem.corrupt_file(&seg, |b| b[at] ^= 1);
    let err = Log::open(dir(), o).expect_err("corruption");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("durable"), "{err}");
}

#[test]
fn repair_mode_quarantines_everything_after_the_corruption_and_keeps_the_prefix() {
    // RecoveryMode::Repair cuts the log at the bad frame and moves the rest aside, deleting
    // nothing; appends continue after the kept prefix.
    let mem = MemStorage::new();
    let o = small(mem_opts(&mem, Durability::Always));
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..200 {
        log.append(&payload(i)).expect("append");
    }
    assert!(log.segment_count() >= 3);
    drop(log);
    let seg = segment_path(&dir(), 0);
    let at = evlog::format::SEGMENT_HEADER_LEN + 3 * (evlog::format::FRAME_HEADER_LEN + 10);
    // Corrupt a sealed segment: the checkpoint is past it, so open does not notice ...
    mem.corrupt_file(&seg, |b| b[at + 200] ^= 0x55);
    let log = Log::open(dir(), o.clone()).expect("open does not scan sealed segments");
    // ... but reading the bad record does, and never returns garbage.
    let errors: Vec<_> = log.iter(0).filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].is_corruption());
    let bad = (0..log.next_offset()).find(|&o| log.read(o).is_err()).expect("a record fails to read");
    match log.read(bad) {
        Err(LogError::Corruption { path, offset, .. }) => assert_eq!((path, offset), (seg.clone(), Some(bad))),
        other => panic!("expected corruption, got {other:?}"),
    }
    // Records beyond the damaged index granule still read.
    assert!(log.read(log.next_offset() - 1).expect("later records still read").is_some());
    drop(log);
    // Corrupt the active segment's durable data and repair.
    let names = mem.list_dir(&dir()).expect("list");
    let last = names.iter().rfind(|n| n.ends_with(".log")).expect("segment").clone();
    // The last record's payload: inside the granule that open verifies again.
    mem.corrupt_file(&dir().join(&last), |b| {
        let n = b.len();
        b[n - 3] ^= 1;
    });
    assert!(Log::open(dir(), o.clone()).expect_err("strict").is_corruption());
    let mut repair = o.clone();
    repair.recovery = RecoveryMode::Repair;
    let log = Log::open(dir(), repair).expect("repair");
    let rep = log.recovery_report().clone();
    assert!(rep.repaired_corruption.is_some());
    assert_eq!(rep.quarantined_files.len(), 1);
    assert_eq!(log.next_offset(), 199);
    let q = mem.list_dir(&dir().join("quarantine")).expect("quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(log.append(b"fresh").expect("append"), 199);
    assert_eq!(log.read(198).expect("read").expect("present").payload(), &payload(198)[..]);
}

#[test]
fn second_open_of_the_same_directory_fails_with_locked() {
    // The writer lock is exclusive in this process and against other processes.
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::default()).expect("open");
    match Log::open(tmp.path(), Options::default()) {
        Err(LogError::Locked { path }) => assert_eq!(path, tmp.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another process: flock(1) cannot take the lock either (skipped where flock is absent).
    if let Ok(status) = std::process::Command::new("flock").arg("-n").arg(tmp.path().join("LOCK")).arg("true").status()
    {
        assert!(!status.success(), "another process took the lock");
    }
    // Readers need no lock.
    let reader = Log::open_read_only(tmp.path(), Options::default()).expect("read-only");
    assert_eq!(reader.next_offset(), 0);
    drop(log);
    Log::open(tmp.path(), Options::default()).expect("lock released on drop");
}

#[test]
fn record_too_large_is_rejected_and_writes_nothing() {
    // Over record_bytes_max: RecordTooLarge with size and limit; the segment is untouched.
    let mem = MemStorage::new();
    let mut o = mem_opts(&mem, Durability::Always);
    o.record_bytes_max = 100;
    let log = Log::open(dir(), o).expect("open");
    log.append(b"ok").expect("append");
    let before = mem.read_file(&segment_path(&dir(), 0));
    match log.append(&[0u8; 101]) {
        Err(LogError::RecordTooLarge { size: 101, max: 100 }) => {}
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // Key and headers count towards the limit too.
    let big_key = [1u8; 60];
    assert!(matches!(
        log.append_record(&NewRecord::new(&[0u8; 50]).key(&big_key)),
        Err(LogError::RecordTooLarge { size: 110, .. })
    ));
    // A batch with one oversized record writes none of them.
    assert!(log.append_batch(&[NewRecord::new(b"a"), NewRecord::new(&[0u8; 200])]).is_err());
    assert_eq!(mem.read_file(&segment_path(&dir(), 0)), before);
    assert_eq!(log.append(b"next").expect("append"), 1);
}

#[test]
fn log_is_poisoned_after_an_injected_fsync_failure_and_never_reports_success() {
    // fsync fails once: that append errors, every later append and sync errors (no retry that
    // could report success), reads still work; reopening recovers and appends resume.
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = Options::with_durability(Durability::Always);
    o.storage = Arc::new(faulty.clone());
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..5 {
        log.append(&payload(i)).expect("append");
    }
    faulty.fail_once(Op::SyncData, Some(".log"), 0, Fault::Eio);
    let err = log.append(b"doomed").expect_err("fsync fails");
    assert!(matches!(err, LogError::Io { op: "fsync", .. }), "{err}");
    assert!(log.is_poisoned());
    assert!(matches!(log.append(b"later"), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.sync(), Err(LogError::Poisoned { .. })));
    assert_eq!(log.read(4).expect("read").expect("present").payload(), &payload(4)[..]);
    assert!(log.read(5).expect("read").is_none(), "the unsynced record was never published");
    drop(log);
    let log = Log::open(dir(), o).expect("reopen");
    assert!(!log.is_poisoned());
    let next = log.next_offset();
    assert!(next == 5 || next == 6, "the failed record may or may not have reached the disk");
    assert_eq!(log.append(b"again").expect("append"), next);
}

#[test]
fn failed_write_poisons_and_a_torn_write_is_cut_on_reopen() {
    // A write that stores 20 bytes of its frame then fails with EIO: poisoned; reopen truncates
    // it. On both write paths: a pwrite that stores part of its buffer, and a copy into the
    // map that stops part way.
    for path in [WritePath::Pwrite, WritePath::Auto] {
        let mem = MemStorage::new();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let mut o = Options::with_durability(Durability::Os);
        o.storage = Arc::new(faulty.clone());
        o.preallocate_bytes = 0;
        o.write_path = path;
        let log = Log::open(dir(), o.clone()).expect("open");
        log.append(b"first").expect("append");
        assert_eq!(log.stats().mapped_writes, path == WritePath::Auto);
        faulty.fail_once(Op::Write, Some(".log"), 0, Fault::TornWrite { keep_bytes: 20 });
        assert!(log.append(b"second, torn").is_err());
        assert!(matches!(log.append(b"third"), Err(LogError::Poisoned { .. })));
        drop(log);
        let log = Log::open(dir(), o).expect("reopen");
        let rep = log.recovery_report();
        assert!(rep.truncated_bytes > 0, "{path:?}");
        if path == WritePath::Pwrite {
            // The torn frame's trailing zero bytes are reported with the zero tail.
            assert_eq!(rep.truncated_bytes + rep.zero_tail_bytes, 20);
        } else {
            // The map had blocks (zeros) for the whole frame: all of it is cut.
            let frame = (evlog::format::FRAME_HEADER_LEN + b"second, torn".len()) as u64;
            assert_eq!(rep.truncated_bytes + rep.zero_tail_bytes, frame);
        }
        assert_eq!(all_payloads(&log), vec![b"first".to_vec()], "{path:?}");
    }
}

#[test]
fn disk_full_returns_storage_full_and_the_log_stays_readable_and_recovers() {
    // ENOSPC on write: a clear StorageFull error naming the file; reads keep working; after
    // space is freed and the log reopened, appends work again.
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = Options::with_durability(Durability::Always);
    o.storage = Arc::new(faulty.clone());
    let log = Log::open(dir(), o.clone()).expect("open");
    log.append(b"kept").expect("append");
    faulty.fail_always(Op::Write, None, 0, Fault::NoSpace);
    match log.append(b"no room") {
        Err(LogError::StorageFull { path, .. }) => assert_eq!(path, segment_path(&dir(), 0)),
        other => panic!("expected StorageFull, got {other:?}"),
    }
    assert!(
        LogError::StorageFull { op: "write", path: "p".into(), source: std::io::Error::other("x") }
            .to_string()
            .contains("free space")
    );
    assert_eq!(all_payloads(&log), vec![b"kept".to_vec()]);
    drop(log);
    faulty.clear();
    let log = Log::open(dir(), o).expect("reopen");
    assert_eq!(log.append(b"room again").expect("append"), 1);
}

#[test]
fn offset_for_timestamp_is_exact_with_out_of_order_timestamps() {
    // Random-looking timestamps over many segments: the answer always equals a brute-force
    // scan for the earliest offset with timestamp >= ts.
    let mem = MemStorage::new();
    let log = Log::open(dir(), small(mem_opts(&mem, Durability::Os))).expect("open");
    let mut ts = Vec::new();
    for i in 0..400u64 {
        let t = ((i * 7919) % 1000) as i64 - 300 + (i / 50) as i64 * 10;
        ts.push(t);
        log.append_record(&NewRecord::new(&payload(i)).timestamp(t)).expect("append");
    }
    assert!(log.segment_count() > 3);
    for probe in (-400..1200).step_by(7) {
        let expected = ts.iter().position(|&t| t >= probe).map(|p| p as u64);
        assert_eq!(log.offset_for_timestamp(probe).expect("lookup"), expected, "ts {probe}");
    }
    assert_eq!(log.offset_for_timestamp(i64::MIN).expect("lookup"), Some(0));
    assert_eq!(log.offset_for_timestamp(i64::MAX).expect("lookup"), None);
}

#[test]
fn time_lookups_and_ranges_see_each_record_of_the_open_granule_once_its_append_returns() {
    // Keyless records that join the open granule are indexed later, without the index's lock
    // on the append: the active segment's time range and a lookup by time must still reflect
    // each record as soon as its append returns, with timestamps widening both ways.
    let mem = MemStorage::new();
    let mut o = mem_opts(&mem, Durability::Os);
    o.index_interval_bytes = 1 << 20;
    let log = Log::open(dir(), o).expect("open");
    assert!(log.stats().mapped_writes, "the lock-free index path is the map path");
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for i in 0..300i64 {
        let t = if i % 2 == 0 { 1_000 + i } else { 1_000 - i };
        let offset = log.append_record(&NewRecord::new(b"event").timestamp(t)).expect("append");
        (lo, hi) = (lo.min(t), hi.max(t));
        let ranges = log.segment_time_ranges().expect("ranges");
        let &(_, end, range) = ranges.last().expect("the active segment");
        assert_eq!(end, offset + 1);
        assert_eq!(range, Some((lo, hi)), "after record {offset}");
        if i % 2 == 0 {
            assert_eq!(log.offset_for_timestamp(t).expect("lookup"), Some(offset), "ts {t}");
        }
        assert_eq!(log.offset_for_timestamp(hi + 1).expect("lookup"), None);
    }
}

#[test]
fn index_files_written_at_rolls_checkpoints_and_close_include_the_records_indexed_later() {
    // Records indexed without the lock on their append are in the index before it is written:
    // after a clean close no index file is found stale (none is rebuilt) and lookups by time
    // are exact, in sealed segments and the active one.
    for durability in [Durability::Os, Durability::Interval(std::time::Duration::from_secs(3600))] {
        let mem = MemStorage::new();
        let mut o = small(mem_opts(&mem, durability));
        o.segment_bytes_max = 8 << 10;
        o.index_interval_bytes = 1024;
        o.checkpoint_interval_bytes = 2048;
        let log = Log::open(dir(), o.clone()).expect("open");
        let ts = |i: u64| ((i * 7919) % 500) as i64;
        for i in 0..600u64 {
            log.append_record(&NewRecord::new(&payload(i)).timestamp(ts(i))).expect("append");
            if i % 97 == 0 {
                log.sync().expect("sync");
            }
        }
        log.close().expect("close");
        let log = Log::open(dir(), o).expect("reopen");
        assert!(log.segment_count() > 3);
        for probe in (0..520).step_by(13) {
            let expected = (0..600u64).find(|&i| ts(i) >= probe);
            assert_eq!(log.offset_for_timestamp(probe).expect("lookup"), expected, "ts {probe}");
        }
        assert_eq!(log.stats().index_rebuilds, 0, "{durability:?}: every index file read was whole");
    }
}

#[test]
fn indexes_are_rebuilt_after_index_files_are_deleted_or_damaged() {
    // Index files are caches: deleting or damaging them changes no answer.
    let mem = MemStorage::new();
    let o = small(mem_opts(&mem, Durability::Os));
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..300 {
        log.append_record(&NewRecord::new(&payload(i)).timestamp((i as i64 * 13) % 101)).expect("append");
    }
    let expected: Vec<_> = (0..120).step_by(5).map(|t| log.offset_for_timestamp(t).expect("ts")).collect();
    drop(log);
    let names = mem.list_dir(&dir()).expect("list");
    let mut damaged = false;
    for n in names.iter().filter(|n| n.ends_with("index")) {
        if damaged {
            mem.remove_file(&dir().join(n)).expect("remove");
        } else {
            mem.corrupt_file(&dir().join(n), |b| b[30] ^= 1);
        }
        damaged = !damaged;
    }
    let log = Log::open(dir(), o).expect("reopen");
    assert_eq!(all_payloads(&log), (0..300).map(payload).collect::<Vec<_>>());
    for (i, t) in (0..120).step_by(5).enumerate() {
        assert_eq!(log.offset_for_timestamp(t).expect("ts"), expected[i]);
    }
    for i in (0..300).step_by(17) {
        assert_eq!(log.read(i).expect("read").expect("present").payload(), &payload(i)[..]);
    }
    let rebuilt = mem.list_dir(&dir()).expect("list").iter().filter(|n| n.ends_with(".index")).count();
    assert!(rebuilt >= log.segment_count() - 1, "rebuilt index files are written back");
}

#[test]
fn concurrent_appenders_keep_a_gap_free_total_order() {
    // 8 threads append durably at once: offsets are 0..n with no gap or duplicate, each
    // thread's own records are in its order, and fsyncs are shared (group commit).
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(tmp.path(), Options::with_durability(Durability::Always)).expect("open"));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100u64).map(|i| (log.append(format!("{t}:{i}").as_bytes()).expect("append"), i)).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<u64> = Vec::new();
    for h in threads {
        let mine = h.join().expect("thread");
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0), "a thread's appends are ordered");
        offsets.extend(mine.iter().map(|m| m.0));
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..800).collect::<Vec<_>>());
    assert!(log.stats().fsyncs <= 800, "fsyncs {}", log.stats().fsyncs);
    let records: Vec<_> = log.iter(0).map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 800);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset(), i as u64);
    }
}

#[test]
fn an_atomic_batch_survives_a_crash_whole_or_not_at_all() {
    // Whatever a power cut leaves of an unsynced batch, recovery keeps all of it or none.
    for seed in 0..40 {
        let mem = MemStorage::new();
        let mut o = mem_opts(&mem, Durability::Os);
        o.checkpoint_interval_bytes = u64::MAX;
        let log = Log::open(dir(), o.clone()).expect("open");
        log.append(b"before").expect("append");
        log.sync().expect("sync");
        let batch: Vec<Vec<u8>> = (0..20).map(payload).collect();
        let records: Vec<NewRecord<'_>> = batch.iter().map(|p| NewRecord::new(p)).collect();
        assert_eq!(log.append_batch(&records).expect("batch"), 1..21);
        mem.crash(if seed % 2 == 0 { CrashMode::TornWrite { seed } } else { CrashMode::RandomSubset { seed } });
        drop(log);
        let log = Log::open(dir(), o).expect("reopen");
        let n = log.next_offset();
        assert!(n == 1 || n == 21, "seed {seed}: {n} records survived");
        assert_eq!(all_payloads(&log).len() as u64, n);
    }
}

#[test]
fn batch_larger_than_a_segment_is_rejected() {
    let mem = MemStorage::new();
    let log = Log::open(dir(), small(mem_opts(&mem, Durability::Os))).expect("open");
    let p = vec![0u8; 1000];
    let records: Vec<NewRecord<'_>> = (0..5).map(|_| NewRecord::new(&p)).collect();
    assert!(matches!(log.append_batch(&records), Err(LogError::BatchTooLarge { .. })));
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn crash_during_roll_leaves_no_orphan_segment() {
    // A segment file created but never given its header (a crash mid-roll) is removed on open
    // and the log continues from the previous segment.
    let mem = MemStorage::new();
    let o = small(mem_opts(&mem, Durability::Always));
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..10 {
        log.append(&payload(i)).expect("append");
    }
    drop(log);
    let orphan = segment_path(&dir(), 10);
    mem.open(&orphan, evlog::storage::OpenMode::CreateNew).expect("create").write_all_at(b"EVLOG", 0).expect("write");
    let log = Log::open(dir(), o).expect("reopen");
    assert_eq!(log.recovery_report().removed_files, vec![orphan.clone()]);
    assert!(mem.read_file(&orphan).is_none());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.append(b"x").expect("append"), 10);
}

#[test]
fn always_mode_loses_no_acknowledged_record_in_any_power_cut() {
    // Every crash mode after acknowledged Always appends: all of them come back.
    for (k, mode) in [CrashMode::DropUnsynced, CrashMode::TornWrite { seed: 9 }, CrashMode::RandomSubset { seed: 4 }]
        .into_iter()
        .enumerate()
    {
        let mem = MemStorage::new();
        let o = small(mem_opts(&mem, Durability::Always));
        let log = Log::open(dir(), o.clone()).expect("open");
        for i in 0..60 {
            log.append(&payload(i)).expect("append");
        }
        mem.crash(mode);
        drop(log);
        let log = Log::open(dir(), o).expect("reopen");
        assert_eq!(all_payloads(&log), (0..60).map(payload).collect::<Vec<_>>(), "mode {k}");
    }
}

#[test]
fn os_mode_survives_a_process_kill() {
    // kill -9 keeps the kernel's page cache: every Os-mode append comes back.
    let mem = MemStorage::new();
    let o = small(mem_opts(&mem, Durability::Os));
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..100 {
        log.append(&payload(i)).expect("append");
    }
    mem.crash(CrashMode::ProcessKill);
    drop(log);
    let log = Log::open(dir(), o).expect("reopen");
    assert_eq!(all_payloads(&log), (0..100).map(payload).collect::<Vec<_>>());
}

#[test]
fn interval_mode_syncs_in_the_background() {
    // The flusher fsyncs within the interval without any append asking for it.
    let mem = MemStorage::new();
    let o = mem_opts(&mem, Durability::Interval(std::time::Duration::from_millis(5)));
    let log = Log::open(dir(), o).expect("open");
    let base = mem.sync_count();
    log.append(b"x").expect("append");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while mem.sync_count() == base && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(mem.sync_count() > base, "the flusher synced");
    assert!(log.stats().fsyncs >= 1, "the append itself did not sync; the flusher did");
}

#[test]
fn read_only_log_follows_a_writer_and_never_modifies_files() {
    // A reader opened beside a writer sees what is published, follows new records and rolls,
    // and changes no byte on disk.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 4096;
    o.record_bytes_max = 1024;
    let log = Log::open(tmp.path(), o.clone()).expect("open");
    for i in 0..10 {
        log.append(&payload(i)).expect("append");
    }
    let reader = Log::open_read_only(tmp.path(), o.clone()).expect("reader");
    let mut it = reader.iter(0);
    let first: Vec<_> = it.by_ref().map(|r| r.expect("record").payload().to_vec()).collect();
    assert_eq!(first, (0..10).map(payload).collect::<Vec<_>>());
    for i in 10..200 {
        log.append(&payload(i)).expect("append");
    }
    let rest: Vec<_> = it.by_ref().map(|r| r.expect("record").payload().to_vec()).collect();
    assert_eq!(rest, (10..200).map(payload).collect::<Vec<_>>());
    assert_eq!(reader.next_offset(), 200);
    assert_eq!(reader.read(150).expect("read").expect("present").payload(), &payload(150)[..]);
    assert!(matches!(reader.append(b"no"), Err(LogError::ReadOnly { .. })));
    let snapshot = |p: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .expect("dir")
            .map(|e| {
                let e = e.expect("entry");
                (e.file_name(), std::fs::read(e.path()).unwrap_or_default())
            })
            .collect();
        v.sort();
        v
    };
    drop(log);
    let before = snapshot(tmp.path());
    let reader2 = Log::open_read_only(tmp.path(), o).expect("reader");
    assert_eq!(reader2.iter(0).count(), 200);
    drop(reader2);
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn iterators_follow_new_appends_and_wait_for_wakes_on_append() {
    let mem = MemStorage::new();
    let log = Arc::new(Log::open(dir(), mem_opts(&mem, Durability::Always)).expect("open"));
    let mut it = log.iter(0);
    assert!(it.next().is_none());
    log.append(b"a").expect("append");
    assert_eq!(it.next().expect("some").expect("ok").payload(), b"a");
    assert!(it.next().is_none());
    let l2 = log.clone();
    let waiter = std::thread::spawn(move || l2.wait_for(1, std::time::Duration::from_secs(30)).expect("wait"));
    log.append(b"b").expect("append");
    assert!(waiter.join().expect("thread"));
    assert!(!log.wait_for(5, std::time::Duration::from_millis(1)).expect("wait"));
}

#[test]
fn clean_close_then_open_scans_almost_nothing() {
    // After a clean close the checkpoint is at the end: open rescans at most one index granule.
    let mem = MemStorage::new();
    let o = mem_opts(&mem, Durability::Os);
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..2000 {
        log.append(&payload(i)).expect("append");
    }
    log.close().expect("close");
    let log = Log::open(dir(), o).expect("reopen");
    let rep = log.recovery_report();
    assert!(rep.checkpoint_used);
    assert!(rep.scanned_bytes <= 4096 + 200, "scanned {}", rep.scanned_bytes);
    assert_eq!(log.next_offset(), 2000);
}

#[test]
fn remove_before_drops_whole_sealed_segments_only() {
    let mem = MemStorage::new();
    let log = Log::open(dir(), small(mem_opts(&mem, Durability::Os))).expect("open");
    for i in 0..300 {
        log.append(&payload(i)).expect("append");
    }
    let removed = log.remove_before(150).expect("retention");
    let first = log.first_offset();
    assert_eq!(removed, first);
    assert!(first <= 150 && first > 0);
    assert!(log.read(first - 1).expect("read").is_none());
    assert_eq!(log.iter(0).next().expect("some").expect("ok").offset(), first);
    drop(log);
    let log = Log::open(dir(), small(mem_opts(&mem, Durability::Os))).expect("reopen");
    assert_eq!(log.first_offset(), first);
    assert_eq!(log.next_offset(), 300);
}

#[test]
fn bad_paths_and_options_give_errors_that_name_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    match Log::open(&file, Options::default()) {
        Err(LogError::NotADirectory { path }) => assert_eq!(path, file),
        other => panic!("expected NotADirectory, got {other:?}"),
    }
    let missing = tmp.path().join("missing");
    let err = Log::open_read_only(&missing, Options::default()).expect_err("missing");
    assert!(err.to_string().contains("missing"), "{err}");
    let mut o = Options::default();
    o.record_bytes_max = o.segment_bytes_max;
    assert!(matches!(Log::open(tmp.path().join("a"), o), Err(LogError::InvalidOptions { .. })));
    let mut o = Options::default();
    o.durability = Durability::Interval(std::time::Duration::ZERO);
    assert!(matches!(Log::open(tmp.path().join("b"), o), Err(LogError::InvalidOptions { .. })));
}

#[test]
fn preallocated_space_is_trimmed_at_close_and_cut_without_loss_after_a_crash() {
    // Zero-filled space ahead of the data end: a clean close leaves the segment at its exact
    // length; after a crash recovery cuts the zeros, reports them apart from torn bytes, and
    // keeps every record.
    let mem = MemStorage::new();
    let mut o = mem_opts(&mem, Durability::Always);
    o.preallocate_bytes = 4096;
    let log = Log::open(dir(), o.clone()).expect("open");
    for i in 0..20 {
        log.append(&payload(i)).expect("append");
    }
    let seg = segment_path(&dir(), 0);
    let data_end = evlog::format::SEGMENT_HEADER_LEN
        + (0..20).map(|i| evlog::format::FRAME_HEADER_LEN + payload(i).len()).sum::<usize>();
    assert!(mem.read_file(&seg).expect("segment").len() > data_end, "space is preallocated");
    mem.crash(CrashMode::DropUnsynced);
    drop(log);
    let log = Log::open(dir(), o.clone()).expect("reopen");
    let rep = log.recovery_report().clone();
    assert!(rep.zero_tail_bytes > 0 && rep.truncated_bytes == 0, "{rep:?}");
    assert_eq!(all_payloads(&log), (0..20).map(payload).collect::<Vec<_>>());
    log.append(b"more").expect("append");
    log.close().expect("close");
    assert_eq!(mem.read_file(&seg).expect("segment").len(), data_end + evlog::format::FRAME_HEADER_LEN + 4);
}

#[test]
fn scan_lends_every_record_iter_returns_stops_when_told_and_says_where_to_go_on() {
    let mem = MemStorage::new();
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(mem.clone());
    o.segment_bytes_max = 1024; // several sealed segments and the active one
    o.record_bytes_max = 256;
    let log = Log::open(dir(), o).expect("open");
    for i in 0..100u64 {
        let key = format!("k{}", i % 7);
        log.append_record(&NewRecord::new(&payload(i)).key(key.as_bytes()).header("n", &i.to_le_bytes()))
            .expect("append");
    }
    let mut seen = Vec::new();
    let next = log
        .scan(10, |r| {
            assert_eq!(r.key(), Some(format!("k{}", r.offset() % 7).as_bytes()));
            assert_eq!(r.header("n"), Some(&r.offset().to_le_bytes()[..]));
            seen.push((r.offset(), r.payload().to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(next, 100);
    let iterated: Vec<(u64, Vec<u8>)> =
        log.iter(10).map(|r| r.expect("record")).map(|r| (r.offset(), r.payload().to_vec())).collect();
    assert_eq!(seen, iterated);
    let mut count = 0;
    let next = log
        .scan(0, |r| {
            count += 1;
            if r.offset() == 41 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
        })
        .expect("scan");
    assert_eq!((count, next), (42, 42), "stops after the record that said stop, and goes on after it");
    assert_eq!(log.scan(100, |_| panic!("nothing after the end")).expect("scan"), 100);
}

#[test]
fn a_sequential_scan_of_a_large_log_leaves_no_trail_in_resident_memory() {
    // 256 MiB of sealed segments: a scan reads them with pread into one reused buffer (the
    // active segment from its map, releasing pages behind), so resident file pages grow by a
    // few MiB, not by the log's size.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 32 << 20;
    let payload = vec![0x5Au8; 1000];
    {
        let log = Log::open(tmp.path(), o.clone()).expect("open");
        let batch: Vec<NewRecord<'_>> = (0..1000).map(|_| NewRecord::new(&payload)).collect();
        for _ in 0..256 {
            log.append_batch(&batch).expect("batch");
        }
        log.close().expect("close");
    }
    let log = Log::open(tmp.path(), o).expect("reopen");
    let before = common::rss_file_bytes();
    let (mut records, mut peak) = (0u64, 0u64);
    log.scan(0, |r| {
        assert_eq!(r.payload().len(), 1000);
        records += 1;
        if records.is_multiple_of(20_000) {
            peak = peak.max(common::rss_file_bytes());
        }
        std::ops::ControlFlow::Continue(())
    })
    .expect("scan");
    assert_eq!(records, 256_000);
    let grown = peak.saturating_sub(before);
    assert!(grown < 48 << 20, "resident file pages grew by {} MiB during a 256 MiB scan", grown >> 20);
}

#[test]
fn a_sealed_segment_cut_short_by_another_program_is_a_corruption_error_for_scans_never_sigbus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 64 << 10;
    o.record_bytes_max = 1024;
    let log = Log::open(tmp.path(), o.clone()).expect("open");
    for i in 0..3_000 {
        log.append(&payload(i)).expect("append");
    }
    // Read once, so the segments are loaded (mapped, indexed) before the file shrinks under them.
    assert_eq!(log.iter(0).count(), 3_000);
    let bases: Vec<u64> = log.sealed_segments().expect("segments").iter().map(|s| s.base_offset).collect();
    let victim = *bases.get(1).expect("three sealed segments or more");
    let path = segment_path(tmp.path(), victim);
    let len = std::fs::metadata(&path).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len / 2).expect("truncate");
    // `iter`, `scan` and a scan from inside the cut segment each stop with an error at the cut.
    let mut seen = 0u64;
    let err = log.iter(0).map(|r| r.map(|_| seen += 1)).find_map(Result::err).expect("an error");
    assert!(matches!(err, LogError::Corruption { .. }), "{err}");
    assert!(seen >= victim && seen < victim + 3_000, "records before the cut are served ({seen})");
    let err = log.scan(victim, |_| std::ops::ControlFlow::Continue(())).expect_err("scan stops at the cut");
    assert!(matches!(err, LogError::Corruption { .. }), "{err}");
    // A new handle meets it when it loads the segment (its index no longer matches the file).
    drop(log);
    let log = Log::open(tmp.path(), o).expect("reopen");
    assert!(log.iter(0).any(|r| r.is_err()), "the cut is found, not skipped");
}

#[test]
fn an_in_process_reader_follows_appends_on_real_files_across_rolls() {
    // The active segment's in-process readers read its published part from a map, not with
    // pread: a reader that follows the writer sees every record, in order, exactly once,
    // through rolls (each new segment is mapped anew).
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 64 << 10;
    o.record_bytes_max = 4096;
    let log = Arc::new(Log::open(tmp.path(), o).expect("open"));
    let n = 20_000u64;
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut it = log.iter(0);
            let mut next = 0u64;
            while next < n {
                match it.next() {
                    Some(r) => {
                        let r = r.expect("record");
                        assert_eq!(r.offset(), next);
                        assert_eq!(r.payload(), &payload(next)[..]);
                        next += 1;
                    }
                    None => {
                        log.wait_for(next, std::time::Duration::from_secs(10)).expect("wait");
                    }
                }
            }
            next
        })
    };
    for i in 0..n {
        assert_eq!(log.append(&payload(i)).expect("append"), i);
    }
    assert_eq!(reader.join().expect("reader"), n);
    assert!(log.segment_count() > 10, "the reader crossed rolls");
}

#[test]
fn a_roll_that_finds_no_room_for_its_new_segment_fails_cleanly_and_loses_nothing() {
    // ENOSPC while the roll writes the new segment's header: StorageFull, nothing of the record
    // written, the half-made file removed, the log not poisoned; once there is room the same
    // handle rolls and appends, and a power cut right after keeps every acknowledged record.
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let mut o = small(Options::with_durability(Durability::Always));
    o.storage = Arc::new(faulty.clone());
    let log = Log::open(dir(), o.clone()).expect("open");
    // The first record goes into segment 0 itself; from then on the next offset names a
    // segment that only a roll creates.
    let mut acknowledged = vec![payload(log.append(&payload(0)).expect("append"))];
    let refused = loop {
        let next = log.next_offset();
        let name = evlog::format::segment_file_name(next);
        faulty.fail_once(Op::Write, Some(&name), 0, Fault::NoSpace);
        let r = log.append(&payload(next));
        faulty.clear();
        match r {
            Ok(offset) => acknowledged.push(payload(offset)),
            Err(e) => break (next, e),
        }
        assert!(acknowledged.len() < 1000, "no roll happened");
    };
    let (next, err) = refused;
    assert!(matches!(err, LogError::StorageFull { .. }), "{err:?}");
    assert!(!log.is_poisoned(), "{err}");
    let names = mem.list_dir(&dir()).expect("list");
    assert!(!names.contains(&evlog::format::segment_file_name(next)), "the half-made segment is gone: {names:?}");
    assert_eq!(all_payloads(&log), acknowledged);
    assert_eq!(log.append(&payload(next)).expect("append once there is room"), next);
    acknowledged.push(payload(next));
    mem.crash(CrashMode::DropUnsynced);
    drop(log);
    let mut o = small(Options::with_durability(Durability::Always));
    o.storage = Arc::new(mem.clone());
    let log = Log::open(dir(), o).expect("reopen after a power cut");
    assert_eq!(all_payloads(&log), acknowledged);
}

#[test]
fn records_copied_while_the_background_allocator_zero_fills_ahead_read_back_byte_for_byte() {
    // The allocator publishes space in steps while it goes on zero-filling past them, and the
    // writer copies records into what was published meanwhile: no zero it writes may land on a
    // record. Records of many sizes (some spanning several steps) read back exactly, before and
    // after a reopen.
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 4 << 20;
    o.preallocate_bytes = 256 << 10;
    o.record_bytes_max = 200 << 10;
    copy_records_of_many_sizes_and_read_them_back(o);
}

#[test]
fn records_written_back_behind_the_writer_read_back_byte_for_byte_across_rolls() {
    // Write-back started behind the writer after every page (and segments that roll every
    // megabyte) may not touch a byte the writer is still filling, nor one it filled.
    for durability in [Durability::Os, Durability::Interval(std::time::Duration::from_millis(1))] {
        let mut o = Options::with_durability(durability);
        o.segment_bytes_max = 1 << 20;
        o.preallocate_bytes = 64 << 10;
        o.record_bytes_max = 200 << 10;
        o.write_back_interval_bytes = 4096;
        copy_records_of_many_sizes_and_read_them_back(o);
    }
}

/// Appends 600 records of 1 B to 150 KiB through a write map, then reads them back byte for
/// byte before and after a reopen.
fn copy_records_of_many_sizes_and_read_them_back(o: Options) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let payload = |i: u64| -> Vec<u8> {
        let len = [1usize, 100, 1000, 4096, 16 << 10, 150 << 10][(i % 6) as usize] + (i as usize % 97);
        (0..len).map(|j| (i as usize * 31 + j) as u8 | 1).collect()
    };
    let n = 600u64;
    let log = Log::open(tmp.path(), o.clone()).expect("open");
    assert!(log.stats().mapped_writes, "appends go through the map on this file system");
    for i in 0..n {
        assert_eq!(log.append(&payload(i)).expect("append"), i);
    }
    let check = |log: &Log| {
        let mut next = 0;
        for r in log.iter(0) {
            let r = r.expect("read");
            assert_eq!(r.payload(), &payload(next)[..], "record {next}");
            next += 1;
        }
        assert_eq!(next, n);
    };
    check(&log);
    drop(log);
    let log = Log::open(tmp.path(), o).expect("reopen");
    check(&log);
}

#[test]
fn segments_sealed_while_space_is_allocated_in_the_background_end_at_their_last_frame() {
    // On a real file system the next chunk of the active segment is allocated by a background
    // thread; a roll or a close must wait for it and cut everything past the last frame, so a
    // sealed segment holds frames only and a clean reopen finds no zeros to cut.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 256 << 10;
    o.preallocate_bytes = 64 << 10;
    o.record_bytes_max = 4096;
    let payload = [b'e'; 200];
    let frame = (evlog::format::FRAME_HEADER_LEN + payload.len()) as u64;
    let log = Log::open(tmp.path(), o.clone()).expect("open");
    assert!(log.stats().mapped_writes, "appends go through the map on this file system");
    let n = 10_000u64;
    for _ in 0..n {
        log.append(&payload).expect("append");
    }
    log.close().expect("close");
    let mut frames = 0;
    let mut segments = 0;
    for entry in std::fs::read_dir(tmp.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(evlog::format::SEGMENT_SUFFIX) {
            let len = std::fs::metadata(&path).expect("stat").len() - evlog::format::SEGMENT_HEADER_LEN as u64;
            assert_eq!(len % frame, 0, "{} ends inside a frame or in zeros", path.display());
            frames += len / frame;
            segments += 1;
        }
    }
    assert!(segments > 5, "the log rolled ({segments} segments)");
    assert_eq!(frames, n, "the segments hold every frame and nothing else");
    let log = Log::open(tmp.path(), o).expect("reopen");
    let rep = log.recovery_report().clone();
    assert!(rep.zero_tail_bytes == 0 && rep.truncated_bytes == 0, "{rep:?}");
    assert_eq!(log.next_offset(), n);
}

#[test]
fn used_bytes_counts_the_records_not_the_preallocated_tail_also_for_a_reader_in_another_handle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Log::open(tmp.path(), Options::with_durability(Durability::Os)).expect("open");
    log.append(b"first").expect("append");
    let reader = Log::open_read_only(tmp.path(), Options::default()).expect("read-only");
    let before = log.used_bytes().expect("used");
    assert_eq!(reader.used_bytes().expect("used"), before);
    assert!(before < log.size_bytes().expect("size"), "the preallocated zeros are not counted");
    log.append(b"second").expect("append");
    let after = log.used_bytes().expect("used");
    assert!(after > before);
    assert_eq!(reader.used_bytes().expect("used"), after, "the reader sees the new record's bytes");
}
