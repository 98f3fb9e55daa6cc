//! Bad bytes on disk: bit flips in segments and indexes, misdirected and stale frames, crashes
//! around directory operations. evlog must always detect, report with a position, and never
//! return a wrong record.

use evlog::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, segment_file_name};
use evlog::storage::{CrashMode, MemStorage, OpenMode, Storage};
use evlog::{Durability, Log, LogError, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn options(mem: &MemStorage) -> Options {
    let mut o = Options::with_durability(Durability::Always);
    o.storage = Arc::new(mem.clone());
    o.segment_bytes_max = 300;
    o.record_bytes_max = 100;
    o.index_interval_bytes = 64;
    o
}

fn payload(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "q".repeat((i % 5) as usize)).into_bytes()
}

fn dir() -> PathBuf {
    PathBuf::from("/c")
}

/// A log whose first segment is sealed; returns the records and the first segment's frame spans.
fn build(mem: &MemStorage, n: u64) -> (Vec<Vec<u8>>, Vec<(usize, usize)>) {
    let log = Log::open(dir(), options(mem)).expect("open");
    let mut spans = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    for i in 0..n {
        let before = log.segment_count();
        log.append(&payload(i)).expect("append");
        if log.segment_count() == 1 && before == 1 {
            let len = FRAME_HEADER_LEN + payload(i).len();
            spans.push((pos, pos + len));
            pos += len;
        }
    }
    assert!(log.segment_count() >= 3, "segment 0 is sealed");
    drop(log);
    ((0..n).map(payload).collect(), spans)
}

/// Opens and reads everything; returns the records read (all must be right) and the first error.
fn read_all(mem: &MemStorage, expected: &[Vec<u8>]) -> (usize, Option<LogError>) {
    let log = match Log::open(dir(), options(mem)) {
        Ok(l) => l,
        Err(e) => return (0, Some(e)),
    };
    // The borrowing scan must agree with the iterator: the same records, the same error.
    let mut scanned = 0;
    let scan = log.scan(0, |r| {
        assert_eq!(r.payload(), &expected[r.offset() as usize][..], "scan returned a wrong record at {}", r.offset());
        scanned += 1;
        std::ops::ControlFlow::Continue(())
    });
    let mut n = 0;
    for r in log.iter(0) {
        match r {
            Ok(r) => {
                assert_eq!(
                    r.payload(),
                    &expected[r.offset() as usize][..],
                    "a wrong record was returned at {}",
                    r.offset()
                );
                n += 1;
            }
            Err(e) => {
                assert_eq!(scanned, n, "scan and iter stop at the same record");
                assert_eq!(scan.err().map(|e| e.to_string()), Some(e.to_string()), "scan and iter report the same");
                return (n, Some(e));
            }
        }
    }
    assert_eq!((scanned, scan.ok()), (n, Some(n as u64)), "scan saw what iter saw");
    (n, None)
}

#[test]
fn every_byte_flip_in_a_sealed_segment_is_detected_with_its_position() {
    // Flip every byte of the sealed first segment (every bit pattern 0xFF and one low bit):
    // iteration reports corruption at the frame holding the byte (or the header) and every record
    // it returns before that is correct.
    let mem = MemStorage::new();
    let (expected, spans) = build(&mem, 30);
    let seg = dir().join(segment_file_name(0));
    let original = mem.read_file(&seg).expect("segment");
    for i in 0..original.len() {
        for mask in [0xFFu8, 0x01] {
            mem.corrupt_file(&seg, |b| b[i] ^= mask);
            let (n, err) = read_all(&mem, &expected);
            let err = err.unwrap_or_else(|| panic!("flip at byte {i} went unnoticed"));
            match err {
                LogError::Corruption { path, position, .. } => {
                    assert_eq!(path, seg);
                    let span = spans.iter().position(|&(s, e)| s <= i && i < e);
                    match span {
                        Some(k) => {
                            assert_eq!(position as usize, spans[k].0, "flip at {i}: reported position");
                            assert_eq!(n, k, "flip at {i}: records before the bad one are returned");
                        }
                        None => assert_eq!(position, 0, "flip in the header at {i}"),
                    }
                }
                other => panic!("flip at {i}: expected corruption, got {other}"),
            }
            mem.corrupt_file(&seg, |b| b.copy_from_slice(&original));
        }
    }
    let (n, err) = read_all(&mem, &expected);
    assert!(n == 30 && err.is_none(), "restored: {n} records, {err:?}");
}

#[test]
fn every_byte_flip_in_an_index_file_is_rebuilt_and_reported() {
    // Index files are caches: any damage is noticed, rebuilt from the segment, counted, and
    // changes no answer.
    let mem = MemStorage::new();
    let (expected, _) = build(&mem, 30);
    for name in [evlog::format::offset_index_file_name(0), evlog::format::time_index_file_name(0)] {
        let path = dir().join(&name);
        let original = mem.read_file(&path).expect("index");
        for i in 0..original.len() {
            mem.corrupt_file(&path, |b| b[i] ^= 0x10);
            let log = Log::open(dir(), options(&mem)).expect("open");
            for o in [0u64, 3, 7] {
                assert_eq!(log.read(o).expect("read").expect("present").payload(), &expected[o as usize][..]);
            }
            assert_eq!(log.offset_for_timestamp(i64::MIN).expect("ts"), Some(0));
            assert_eq!(log.stats().index_rebuilds, 1, "{name} byte {i}: the rebuild is reported");
            drop(log);
            mem.corrupt_file(&path, |b| {
                b.clear();
                b.extend_from_slice(&original);
            });
        }
    }
}

#[test]
fn a_valid_frame_copied_to_the_wrong_place_is_rejected() {
    // Misdirected write inside a sealed segment: frame 2's bytes land on frame 1 (same length).
    let mem = MemStorage::new();
    let (expected, spans) = build(&mem, 30);
    let seg = dir().join(segment_file_name(0));
    let (s1, e1) = spans[1];
    // Record 6's frame, as the writer made it (payload lengths repeat every 5 records).
    let p6 = payload(6);
    let mut frame = Vec::new();
    let f = evlog::format::FrameFields {
        offset: 6,
        durable_offset: 6,
        timestamp: 0,
        key: None,
        headers: &[],
        payload: &p6,
        batch_continues: false,
    };
    evlog::format::encode_frame(&mut frame, &f, 0);
    assert_eq!(frame.len(), e1 - s1);
    mem.corrupt_file(&seg, |b| b[s1..e1].copy_from_slice(&frame));
    let (n, err) = read_all(&mem, &expected);
    assert_eq!(n, 1);
    assert!(matches!(err, Some(LogError::Corruption { position, offset: Some(1), .. }) if position as usize == s1));
}

#[test]
fn a_stale_frame_after_the_tail_is_cut_not_served() {
    // A valid frame from an older generation (an earlier record's bytes) follows the last frame
    // of the active segment: it is at the wrong offset, proves nothing durable, and is truncated.
    let mem = MemStorage::new();
    let (expected, spans) = build(&mem, 30);
    let seg0 = mem.read_file(&dir().join(segment_file_name(0))).expect("segment");
    let stale = seg0[spans[2].0..spans[2].1].to_vec();
    let names = mem.list_dir(&dir()).expect("list");
    let last = dir().join(names.iter().rfind(|n| n.ends_with(".log")).expect("segment"));
    mem.corrupt_file(&last, |b| b.extend_from_slice(&stale));
    let log = Log::open(dir(), options(&mem)).expect("open");
    assert_eq!(log.recovery_report().truncated_bytes as usize, stale.len());
    assert_eq!(log.recovery_report().dropped_records, 1);
    assert_eq!(log.next_offset(), 30);
    assert_eq!(log.iter(0).count(), expected.len());
}

#[test]
fn a_crash_right_after_creating_a_segment_before_the_directory_fsync_leaves_no_orphan() {
    // The new segment's file (and header) existed only in the page cache when power was cut.
    let mem = MemStorage::new();
    let log = Log::open(dir(), options(&mem)).expect("open");
    for i in 0..6 {
        log.append(&payload(i)).expect("append");
    }
    // An unsynced segment file as a roll would start it, then the power cut.
    let next = dir().join(segment_file_name(log.next_offset()));
    mem.open(&next, OpenMode::CreateNew)
        .expect("create")
        .write_all_at(&evlog::format::encode_segment_header(6), 0)
        .expect("write");
    mem.crash(CrashMode::DropUnsynced);
    drop(log);
    assert!(mem.read_file(&next).is_none(), "never made durable");
    let log = Log::open(dir(), options(&mem)).expect("reopen");
    assert_eq!(log.next_offset(), 6);
    // Same with the file durable but its header torn (crash between create and header fsync).
    mem.open(&next, OpenMode::CreateNew).expect("create").write_all_at(b"EVL", 0).expect("write");
    mem.sync_dir(&dir()).expect("sync dir");
    mem.crash(CrashMode::ProcessKill);
    drop(log);
    let log = Log::open(dir(), options(&mem)).expect("reopen");
    assert_eq!(log.recovery_report().removed_files, vec![next]);
    assert_eq!(log.append(b"x").expect("append"), 6);
}

#[test]
fn a_crash_in_the_middle_of_retention_leaves_contiguous_offsets() {
    // Retention unlinks oldest first and then fsyncs the directory: a power cut before that fsync
    // brings some unlinked segments back, never a gap.
    let mem = MemStorage::new();
    let (expected, _) = build(&mem, 60);
    let log = Log::open(dir(), options(&mem)).expect("open");
    let removed = log.remove_before(40).expect("retention");
    assert!(removed > 0);
    mem.crash(CrashMode::DropUnsynced); // the directory fsync may or may not have happened
    drop(log);
    let log = Log::open(dir(), options(&mem)).expect("reopen");
    let first = log.first_offset();
    let got: Vec<_> = log.iter(0).map(|r| r.expect("record")).collect();
    assert_eq!(got.len() as u64, 60 - first);
    for r in &got {
        assert_eq!(r.payload(), &expected[r.offset() as usize][..]);
    }
}

#[test]
fn reopening_a_directory_with_a_foreign_file_ignores_it() {
    let mem = MemStorage::new();
    build(&mem, 10);
    mem.open(Path::new("/c/notes.txt"), OpenMode::CreateNew).expect("create").write_all_at(b"hello", 0).expect("write");
    let log = Log::open(dir(), options(&mem)).expect("open");
    assert_eq!(log.next_offset(), 10);
}
