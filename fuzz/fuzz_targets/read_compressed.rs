//! A sealed segment flagged compressed (and maybe compacted) whose blocks, table and trailer are
//! arbitrary bytes, before an empty active segment: opening and reading the log (by iterator, by
//! offset, by time) succeeds or reports corruption, never panics, and every record it yields
//! has an offset inside the segment's range, in increasing order.
#![no_main]

use evlog::format::{
    SEGMENT_FLAG_COMPACTED, SEGMENT_FLAG_COMPRESSED, encode_segment_header, encode_segment_header_with_flags,
    segment_file_name,
};
use evlog::storage::{MemStorage, OpenMode, Storage};
use evlog::{Durability, Log, LogError, Options};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

const NEXT_BASE: u64 = 1_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let flags = SEGMENT_FLAG_COMPRESSED | if mode & 1 == 1 { SEGMENT_FLAG_COMPACTED } else { 0 };
    let mut sealed = encode_segment_header_with_flags(0, flags).to_vec();
    sealed.extend_from_slice(rest);
    let mem = MemStorage::new();
    let dir = Path::new("/c");
    mem.create_dir_all(dir).expect("dir");
    for (base, bytes) in [(0, sealed), (NEXT_BASE, encode_segment_header(NEXT_BASE).to_vec())] {
        let f = mem.open(&dir.join(segment_file_name(base)), OpenMode::CreateNew).expect("segment");
        f.write_all_at(&bytes, 0).expect("write");
    }
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(mem.clone());
    o.read_buffer_bytes = 64;
    let log = match Log::open(dir, o) {
        Ok(log) => log,
        Err(LogError::Corruption { .. }) => return,
        Err(e) => panic!("open failed with something other than corruption: {e}"),
    };
    let mut last = None;
    for r in log.iter(0) {
        let Ok(r) = r else { break };
        assert!(r.offset() < NEXT_BASE && last.is_none_or(|l| r.offset() > l), "offset {} after {last:?}", r.offset());
        last = Some(r.offset());
    }
    for o in [0, 1, NEXT_BASE / 2] {
        if let Ok(Some(r)) = log.read(o) {
            assert_eq!(r.offset(), o);
        }
    }
    let _ = log.offset_for_timestamp(i64::from(mode));
});
