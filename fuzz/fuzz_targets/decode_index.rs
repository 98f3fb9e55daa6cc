//! Arbitrary bytes as a sealed segment's index file: the log either trusts a valid index or
//! rebuilds it from the segment; every answer stays right.
#![no_main]

use evlog::format::{offset_index_file_name, time_index_file_name};
use evlog::storage::{MemStorage, OpenMode, Storage};
use evlog::{Durability, Log, NewRecord, Options};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn options(mem: &MemStorage) -> Options {
    let mut o = Options::with_durability(Durability::Os);
    o.storage = Arc::new(mem.clone());
    o.segment_bytes_max = 400;
    o.record_bytes_max = 64;
    o.index_interval_bytes = 50;
    o.read_buffer_bytes = 256;
    o.preallocate_bytes = 0;
    o
}

const N: u64 = 24;

fn ts(i: u64) -> i64 {
    ((i * 37) % 11) as i64
}

/// The log every input starts from, built once: `N` records over two segments, closed.
fn fixture() -> &'static MemStorage {
    static FIXTURE: OnceLock<MemStorage> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mem = MemStorage::new();
        let log = Log::open("/f", options(&mem)).expect("open");
        for i in 0..N {
            log.append_record(&NewRecord::new(format!("r{i}").as_bytes()).timestamp(ts(i))).expect("append");
        }
        log.close().expect("close");
        mem
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let mem = fixture().fork();
    let dir = Path::new("/f");
    let name = if which % 2 == 0 { offset_index_file_name(0) } else { time_index_file_name(0) };
    let f = mem.open(&dir.join(name), OpenMode::CreateTruncate).expect("index");
    f.write_all_at(bytes, 0).expect("write");
    let log = Log::open(dir, options(&mem)).expect("reopen");
    for i in 0..N {
        let r = log.read(i).expect("read").expect("present");
        assert_eq!(r.payload(), format!("r{i}").as_bytes());
    }
    for t in -1..12 {
        let expected = (0..N).find(|&i| ts(i) >= t);
        assert_eq!(log.offset_for_timestamp(t).expect("ts"), expected);
    }
});
