//! Compressed sealed segments: the same records, by offset and by time, checksummed blocks,
//! crash-safe rewrites.

use evlog::log::CompactOptions;
use evlog::storage::{CrashMode, FaultStorage, MemStorage, Storage};
use evlog::{Durability, Log, LogError, NewRecord, Options};
use std::path::Path;
use std::sync::Arc;

fn options(storage: Arc<dyn Storage>) -> Options {
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 256 << 10;
    o.record_bytes_max = 4096;
    o.index_interval_bytes = 1024;
    o.storage = storage;
    o
}

fn telemetry(i: u64) -> Vec<u8> {
    format!(
        r#"{{"host":"web-{:02}","metric":"http.requests","status":{},"latency_ms":{},"region":"eu-west-1","ts":{}}}"#,
        i % 17,
        [200, 200, 200, 404, 500][(i % 5) as usize],
        (i * 7919) % 250,
        1_795_000_000_000u64 + i * 10
    )
    .into_bytes()
}

fn fill(log: &Log, n: u64) {
    for i in 0..n {
        let p = telemetry(i);
        let k = format!("web-{:02}", i % 17);
        let r = NewRecord::new(&p).key(k.as_bytes()).timestamp(1_000 + i as i64).header("source", b"agent");
        log.append_record(&r).expect("append");
    }
}

type Seen = Vec<(u64, i64, Option<Vec<u8>>, Vec<u8>)>;

/// Every record, read with `iter`; `scan` (which walks each decompressed block in one loop)
/// must lend the same.
fn all(log: &Log) -> Seen {
    let seen: Seen = log
        .iter(0)
        .map(|r| r.expect("record"))
        .map(|r| (r.offset(), r.timestamp(), r.key().map(<[u8]>::to_vec), r.payload().to_vec()))
        .collect();
    let mut lent = Seen::new();
    log.scan(0, |r| {
        lent.push((r.offset(), r.timestamp(), r.key().map(<[u8]>::to_vec), r.payload().to_vec()));
        std::ops::ControlFlow::Continue(())
    })
    .expect("scan");
    assert!(lent == seen, "scan lends what iter returns");
    seen
}

#[test]
fn compressed_segments_read_back_the_same_records_by_offset_by_time_and_after_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real: Arc<dyn Storage> = Arc::new(evlog::storage::RealStorage);
    let log = Log::open(tmp.path(), options(real.clone())).expect("open");
    fill(&log, 20_000);
    let before = all(&log);
    let times: Vec<Option<u64>> =
        [0, 1_500, 9_999, 30_000].iter().map(|&t| log.offset_for_timestamp(t).expect("lookup")).collect();
    let report = log.compress().expect("compress");
    assert!(report.segments_compressed > 5, "{report:?}");
    assert!(report.bytes_after * 3 < report.bytes_before, "JSON-like telemetry compresses: {report:?}");
    assert!(all(&log) == before, "the same records after compression");
    for o in (0..20_000).step_by(613) {
        let r = log.read(o).expect("read").expect("record");
        assert_eq!(r.payload(), &telemetry(o)[..]);
        assert_eq!(r.header("source"), Some(&b"agent"[..]));
    }
    let times_after: Vec<Option<u64>> =
        [0, 1_500, 9_999, 30_000].iter().map(|&t| log.offset_for_timestamp(t).expect("lookup")).collect();
    assert_eq!(times_after, times);
    assert_eq!(log.compress().expect("again").segments_compressed, 0, "compressed segments are left alone");
    drop(log);
    // Reopened; then with its index files gone (rebuilt from the compressed blocks).
    for round in 0..2 {
        if round == 1 {
            for e in std::fs::read_dir(tmp.path()).expect("dir") {
                let p = e.expect("entry").path();
                if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
                    std::fs::remove_file(p).expect("remove");
                }
            }
        }
        let log = Log::open(tmp.path(), options(real.clone())).expect("reopen");
        assert!(all(&log) == before, "round {round}");
    }
    // Compaction reads compressed segments (and writes plain ones, compressed again later).
    let log = Log::open(tmp.path(), options(real)).expect("reopen");
    let c = log.compact(&CompactOptions::default()).expect("compact");
    assert!(c.records_after < c.records_before, "{c:?}");
    assert!(log.compress().expect("compress").segments_compressed > 0);
    let kept = all(&log);
    assert!(kept.len() > 17 && kept.iter().all(|r| before.contains(r)));
}

#[test]
fn random_bytes_compress_to_about_their_size_and_still_read_back() {
    let mem = MemStorage::new();
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..3_000 {
        let p: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        log.append(&p).expect("append");
    }
    let before = all(&log);
    let r = log.compress().expect("compress");
    assert!(r.bytes_after <= r.bytes_before + r.bytes_before / 50, "{r:?}");
    assert!(all(&log) == before);
}

#[test]
fn a_damaged_compressed_block_is_corruption_naming_the_file_never_a_panic() {
    let mem = MemStorage::new();
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
    fill(&log, 5_000);
    log.compress().expect("compress");
    let first = log.sealed_segments().expect("segments")[0].base_offset;
    drop(log);
    let path = Path::new("/log").join(evlog::format::segment_file_name(first));
    // A byte inside the first block's compressed bytes.
    mem.corrupt_file(&path, |b| b[100] ^= 0x40);
    let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open: the active segment is fine");
    let err = log.iter(0).find_map(Result::err).expect("the bad block is found");
    assert!(matches!(&err, LogError::Corruption { path: p, .. } if p == &path), "{err}");
    assert!(err.to_string().contains("block"), "{err}");
    assert!(log.read(first).is_err(), "random access too");
}

#[test]
fn a_power_cut_at_any_point_of_a_compression_leaves_each_segment_whole() {
    let build = || {
        let mem = MemStorage::new();
        let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("open");
        fill(&log, 2_000);
        log.close().expect("close");
        mem
    };
    let before = {
        let mem = build();
        all(&Log::open("/log", options(Arc::new(mem))).expect("open"))
    };
    let total = {
        let mem = build();
        let faulty = FaultStorage::new(Arc::new(mem));
        let log = Log::open("/log", options(Arc::new(faulty.clone()))).expect("open");
        let start = faulty.changes();
        log.compress().expect("compress");
        faulty.changes() - start
    };
    assert!(total > 5, "compression makes {total} storage changes");
    for n in 0..total {
        let mem = build();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let log = Log::open("/log", options(Arc::new(faulty.clone()))).expect("open");
        faulty.stop_after(n);
        let _ = log.compress();
        drop(log);
        mem.crash(CrashMode::DropUnsynced);
        let log = Log::open("/log", options(Arc::new(mem.clone()))).expect("reopen after the cut");
        assert!(all(&log) == before, "stop after {n}: the same records");
        log.compress().expect("compress after the cut");
        assert!(all(&log) == before, "stop after {n}: and after compressing the rest");
    }
}

#[test]
#[ignore = "writes a seed for the read_compressed fuzz target; run on purpose"]
fn write_the_fuzz_seed() {
    let mem = MemStorage::new();
    let mut o = options(Arc::new(mem.clone()));
    o.segment_bytes_max = 8 << 10;
    let log = Log::open("/log", o).expect("open");
    fill(&log, 100);
    log.compress().expect("compress");
    let path = Path::new("/log").join(evlog::format::segment_file_name(0));
    let bytes = mem.read_file(&path).expect("segment");
    let mut seed = vec![0u8];
    seed.extend_from_slice(&bytes[32..]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_compressed");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("compressed-segment"), seed).expect("seed");
}
