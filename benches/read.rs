//! Read and recovery benchmarks over real files.
//!
//! - `iter_1gib/<record size>`: `Log::iter` over a 1 GiB log (every frame's CRC checked, a
//!   `Record` built per frame) and `Log::scan` (records lent, no reference count), beside
//!   `crc32fast_bare`: a bare `crc32fast::hash` over the same segment files, read into memory.
//!   Throughput in bytes. For 100 B records also the two floors of a CRC-checked scan
//!   (`raw_memory_scan`: walk the frames by their length fields and CRC each, over bytes already
//!   in memory, the raw scan; `raw_pread_scan`: the same over 256 KiB `pread`s of the
//!   segment files, the floor of a scan that cannot `SIGBUS`, which is how evlog scans).
//! - `open_unclean/<size>`: `Log::open` after an unclean shutdown (`Durability::Always`, the
//!   process "dies" without closing) of a 10 MiB and a 1 GiB log. Each sample restores the files
//!   recovery rewrites (checkpoint, active index), so every open starts from the same crash.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use evlog::{Durability, Log, NewRecord, Options};
use std::path::{Path, PathBuf};
use std::time::Duration;

const GIB: u64 = 1 << 30;

/// Appends records of `size` bytes in batches until the log holds `bytes` of frames.
fn build(dir: &Path, bytes: u64, size: usize, durability: Durability) -> Log {
    let log = Log::open(dir, Options::with_durability(durability)).expect("open");
    let payload = vec![0x5Au8; size];
    let per_batch = ((1 << 20) / (size + 44)).max(1);
    let batch: Vec<NewRecord<'_>> = (0..per_batch).map(|_| NewRecord::new(&payload)).collect();
    let frames = bytes / (size as u64 + 44);
    let mut written = 0;
    while written < frames {
        let n = (frames - written).min(per_batch as u64) as usize;
        log.append_batch(&batch[..n]).expect("batch");
        written += n as u64;
    }
    log
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn iter_1gib(c: &mut Criterion) {
    let mut g = c.benchmark_group("iter_1gib");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for size in [100usize, 1024, 16 * 1024] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = build(tmp.path(), GIB, size, Durability::Os);
        log.sync().expect("sync");
        let total: u64 = segment_files(tmp.path()).iter().map(|p| std::fs::metadata(p).expect("stat").len()).sum();
        g.throughput(Throughput::Bytes(total));
        g.bench_function(BenchmarkId::new("evlog", size), |b| {
            b.iter(|| {
                let mut n = 0u64;
                for r in log.iter(0) {
                    n += r.expect("record").payload().len() as u64;
                }
                n
            });
        });
        g.bench_function(BenchmarkId::new("evlog_scan", size), |b| {
            b.iter(|| {
                let mut n = 0u64;
                log.scan(0, |r| {
                    n += r.payload().len() as u64;
                    std::ops::ControlFlow::Continue(())
                })
                .expect("scan");
                n
            });
        });
        if size == 100 {
            let files = segment_files(tmp.path());
            let in_memory: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).expect("read")).collect();
            g.bench_function(BenchmarkId::new("raw_memory_scan", size), |b| {
                b.iter(|| in_memory.iter().map(|m| raw_scan(m)).sum::<u64>());
            });
            g.bench_function(BenchmarkId::new("raw_pread_scan", size), |b| {
                b.iter(|| files.iter().map(|p| raw_pread_scan(p)).sum::<u64>());
            });
        }
        if size == 1024 {
            let maps: Vec<_> = segment_files(tmp.path()).iter().map(|p| std::fs::read(p).expect("read")).collect();
            g.bench_function("crc32fast_bare", |b| {
                b.iter(|| maps.iter().map(|m| u64::from(crc32fast::hash(m))).sum::<u64>());
            });
        }
    }
    g.finish();
}

/// Length of the frame at the start of `b`, if its header is there.
fn frame_len(b: &[u8]) -> Option<usize> {
    use evlog::format::{FRAME_HEADER_LEN, FRAME_KEY_LEN_AT};
    let h = b.get(..FRAME_HEADER_LEN)?;
    let field = |i: usize| u32::from_le_bytes(h[FRAME_KEY_LEN_AT + 4 * i..][..4].try_into().expect("4 bytes")) as usize;
    Some(FRAME_HEADER_LEN + field(0) + field(1) + field(2))
}

/// Walks the frames of `b` (after the segment header) by their lengths, checking each CRC;
/// returns how many passed. Stops at the first incomplete frame.
fn raw_scan_from(b: &[u8], mut at: usize, frames: &mut u64) -> usize {
    use evlog::format::{FRAME_CRC_AT, FRAME_CRC_FROM, FRAME_MAGIC, FRAME_MAGIC_AT};
    while let Some(len) = frame_len(&b[at..]).filter(|&l| at + l <= b.len() && b[at + FRAME_MAGIC_AT] == FRAME_MAGIC) {
        let stored = u32::from_le_bytes(b[at + FRAME_CRC_AT..][..4].try_into().expect("4 bytes"));
        *frames += u64::from(crc32fast::hash(&b[at + FRAME_CRC_FROM..at + len]) == stored);
        at += len;
    }
    at
}

fn raw_scan(segment: &[u8]) -> u64 {
    let mut frames = 0;
    raw_scan_from(segment, evlog::format::SEGMENT_HEADER_LEN, &mut frames);
    frames
}

/// `raw_scan` over 256 KiB preads of the file (a frame cut by a chunk's end is read again at
/// the start of the next chunk).
fn raw_pread_scan(path: &Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("stat").len();
    let mut buf = vec![0u8; 256 << 10];
    let (mut pos, mut frames) = (evlog::format::SEGMENT_HEADER_LEN as u64, 0u64);
    while pos < len {
        let n = buf.len().min((len - pos) as usize);
        file.read_exact_at(&mut buf[..n], pos).expect("pread");
        let used = raw_scan_from(&buf[..n], 0, &mut frames);
        if used == 0 {
            break; // preallocated zeros or a frame larger than the buffer: the end here
        }
        pos += used as u64;
    }
    frames
}

/// A log left by a crash, and the bytes of the files an open rewrites.
struct Crashed {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    saved: Vec<(PathBuf, Vec<u8>)>,
}

fn crashed(bytes: u64) -> Crashed {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let log = build(&dir, bytes, 1024, Durability::Always);
    log.abandon();
    let saved = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_none_or(|e| e != "log"))
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    Crashed { _tmp: tmp, dir, saved }
}

fn open_unclean(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_unclean");
    g.sample_size(20);
    for (name, bytes) in [("10MiB", 10u64 << 20), ("1GiB", GIB)] {
        let crash = crashed(bytes);
        let restore = || {
            for (p, b) in &crash.saved {
                std::fs::write(p, b).expect("restore");
            }
        };
        restore();
        let probe = Log::open(&crash.dir, Options::default()).expect("open");
        eprintln!(
            "open_unclean/{name}: recovery scanned {} bytes, {} segments",
            probe.recovery_report().scanned_bytes,
            probe.segment_count()
        );
        probe.abandon();
        g.bench_function(name, |b| {
            b.iter_batched(
                restore,
                |()| Log::open(&crash.dir, Options::default()).expect("open").abandon(),
                criterion::BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, iter_1gib, open_unclean);
criterion_main!(benches);
