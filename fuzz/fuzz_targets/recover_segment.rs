//! Arbitrary segment contents (optionally behind a valid header) with a random truncation: open
//! succeeds or reports corruption, never panics, and never yields a record that does not verify;
//! `iter` and `scan` agree.
#![no_main]

use evlog::format::{decode_frame, encode_segment_header, segment_file_name};
use evlog::storage::{MemStorage, OpenMode, Storage};
use evlog::{Durability, Log, LogError, Options};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = Vec::new();
    if mode & 1 == 1 {
        bytes.extend_from_slice(&encode_segment_header(0));
    }
    bytes.extend_from_slice(rest);
    let cut = usize::from(mode >> 1) * bytes.len() / 127;
    bytes.truncate(cut.max(bytes.len().min(32)));
    let mem = MemStorage::new();
    let dir = Path::new("/r");
    mem.create_dir_all(dir).expect("dir");
    let f = mem.open(&dir.join(segment_file_name(0)), OpenMode::CreateNew).expect("segment");
    f.write_all_at(&bytes, 0).expect("write");
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(mem.clone());
    o.read_buffer_bytes = 64;
    let log = match Log::open(dir, o) {
        Ok(log) => log,
        Err(LogError::Corruption { .. }) => return,
        Err(e) => panic!("open failed with something other than corruption: {e}"),
    };
    let kept = mem.read_file(&dir.join(segment_file_name(0))).expect("segment");
    let mut pos = 32usize;
    for (i, r) in log.iter(0).enumerate() {
        let r = r.expect("a recovered log reads back");
        assert_eq!(r.offset(), i as u64);
        // The record's bytes are a frame that verifies at its place in the file.
        let f = decode_frame(&kept[pos..], Some(i as u64)).expect("verifies");
        assert_eq!(&kept[pos..][f.payload.clone()], r.payload());
        pos += f.len;
    }
    assert_eq!(pos, kept.len(), "nothing unverified is left after recovery");
    // The lending scan (its tight loop over each read) hands out the same records.
    let count = log.iter(0).count() as u64;
    let mut next = 0u64;
    let end = log
        .scan(0, |r| {
            assert_eq!(r.offset(), next, "scan skipped or repeated a record");
            next += 1;
            std::ops::ControlFlow::Continue(())
        })
        .expect("a recovered log scans");
    assert_eq!((next, end), (count, count));
});
