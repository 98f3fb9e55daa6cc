//! Append throughput.
//!
//! Every sample writes into a fresh directory that is deleted afterwards, so no sample pays for
//! the page-cache writeback of earlier ones (this machine throttles writers once a few GB are
//! dirty, which would otherwise dominate every figure).
//!
//! - `append_os/<size>`: `Log::append` with `Durability::Os`, one thread, records of 100 B,
//!   1 KiB and 16 KiB, beside `baseline_bufwriter/<size>`: the same framed bytes (same encoder,
//!   same CRC) written through a plain `BufWriter<File>`.
//! - `baseline_pwrite/100`: one `pwrite` per framed record, the floor for an append that must
//!   survive `kill -9` (its bytes must be in the kernel when the call returns).
//! - `append_os_parts/<part>` (100 B): where the gap between `append_os` and BufWriter goes.
//!   `bufwriter_clock`: the BufWriter baseline reading the wall clock per record (as a log that
//!   stamps records must); `bufwriter_clock_mutex`: plus a mutex taken per record (the least a
//!   log shared by threads needs); `evlog_given_timestamp`: `append_record` with a timestamp, so
//!   evlog reads no clock.
//! - `append_os_large_parts/<part>/<size>` (1 KiB, 16 KiB): what bounds the large-record rows.
//!   `bufwriter_synced_per_segment`: the BufWriter baseline with the durability points an `Os`
//!   log keeps (an fdatasync of each 64 MiB written, where evlog rolls a segment);
//!   `evlog_one_segment`: `append_os` into one segment as large as a segment can be, so no
//!   sample rolls (and none fdatasyncs).
//! - `append_os_sustained/{evlog,bufwriter_synced_per_segment}/<size>`: one log (one BufWriter
//!   file) kept across all samples, sealed segments dropped between samples, so the run writes
//!   gigabytes through many rolls and the bytes reach the disk, as in a long-running
//!   application; the BufWriter fdatasyncs and starts a new file every 64 MiB, as a roll does.
//! - `append_batch_os/100`: 100 B records through `append_batch`, 1,000 per batch.
//! - `append_always_threads/<n>`: durable appends (`Durability::Always`: group commit, one
//!   fdatasync per group) from 1, 4, 8 and 16 threads; throughput counts records over all
//!   threads; records per fsync (`LogStats::records_per_fsync`) printed after each.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use evlog::format::{FrameFields, encode_frame};
use evlog::{Durability, Log, NewRecord, Options};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [100, 1024, 16 * 1024];

fn os_options() -> Options {
    let mut o = Options::with_durability(Durability::Os);
    o.record_bytes_max = 1 << 20;
    o
}

fn frame_of(buf: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    buf.clear();
    let f = FrameFields {
        offset,
        durable_offset: 0,
        timestamp: 1,
        key: None,
        headers: &[],
        payload,
        batch_continues: false,
    };
    encode_frame(buf, &f, 0);
}

fn append_os(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_os");
    for size in SIZES {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let log = Log::open(tmp.path(), os_options()).expect("open");
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(p).expect("append");
                }
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn baseline_bufwriter(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline_bufwriter");
    for size in SIZES {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let file = std::fs::File::create(tmp.path().join("baseline")).expect("create");
                let mut w = std::io::BufWriter::with_capacity(256 << 10, file);
                let mut frame = Vec::with_capacity(size + 64);
                let start = Instant::now();
                for offset in 0..iters {
                    frame_of(&mut frame, offset, p);
                    w.write_all(&frame).expect("write");
                }
                w.flush().expect("flush");
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn append_os_parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_os_parts");
    let payload = vec![7u8; 100];
    g.throughput(Throughput::Elements(1));
    for locked in [false, true] {
        let name = if locked { "bufwriter_clock_mutex" } else { "bufwriter_clock" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let file = std::fs::File::create(tmp.path().join("baseline")).expect("create");
                let mut plain = std::io::BufWriter::with_capacity(256 << 10, file.try_clone().expect("clone"));
                let shared = std::sync::Mutex::new(std::io::BufWriter::with_capacity(256 << 10, file));
                let mut frame = Vec::with_capacity(256);
                let start = Instant::now();
                for offset in 0..iters {
                    frame.clear();
                    let f = FrameFields {
                        offset,
                        durable_offset: 0,
                        timestamp: wall_clock_ms(),
                        key: None,
                        headers: &[],
                        payload: &payload,
                        batch_continues: false,
                    };
                    encode_frame(&mut frame, &f, 0);
                    if locked {
                        shared.lock().expect("lock").write_all(&frame).expect("write");
                    } else {
                        plain.write_all(&frame).expect("write");
                    }
                }
                plain.flush().expect("flush");
                shared.lock().expect("lock").flush().expect("flush");
                start.elapsed()
            });
        });
    }
    g.bench_function("evlog_given_timestamp", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let log = Log::open(tmp.path(), os_options()).expect("open");
            let start = Instant::now();
            for _ in 0..iters {
                log.append_record(&NewRecord::new(&payload).timestamp(1)).expect("append");
            }
            start.elapsed()
        });
    });
    g.finish();
}

/// The large-record rows apart (see the module comment): BufWriter paying evlog's roll
/// fdatasyncs, and evlog not paying them.
fn append_os_large_parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_os_large_parts");
    let segment_bytes = os_options().segment_bytes_max;
    for size in [1024usize, 16 * 1024] {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("bufwriter_synced_per_segment", size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let file = std::fs::File::create(tmp.path().join("baseline")).expect("create");
                let mut synced = SyncedBufWriter::new(std::io::BufWriter::with_capacity(256 << 10, file), size);
                let start = Instant::now();
                synced.write(iters, p, segment_bytes, |_| {});
                start.elapsed()
            });
        });
        g.bench_with_input(BenchmarkId::new("evlog_one_segment", size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let mut o = os_options();
                o.segment_bytes_max = evlog::defaults::SEGMENT_BYTES_LIMIT;
                let log = Log::open(tmp.path(), o).expect("open");
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(p).expect("append");
                }
                start.elapsed()
            });
        });
    }
    g.finish();
}

/// Sustained appends (see the module comment): one log, and one BufWriter file, kept across
/// samples, so that the run writes gigabytes and every segment's bytes reach the disk.
fn append_os_sustained(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_os_sustained");
    // Few, long samples: each spans several rolls, so a roll's cost is not a sample's outlier.
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let segment_bytes = os_options().segment_bytes_max;
    for size in SIZES {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("baseline");
        let file = std::fs::File::create(&path).expect("create");
        let mut synced = SyncedBufWriter::new(std::io::BufWriter::with_capacity(256 << 10, file), size);
        g.bench_with_input(BenchmarkId::new("bufwriter_synced_per_segment", size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                // A new file at each fdatasync, as a roll makes (the old one dropped, as
                // retention does).
                synced.write(iters, p, segment_bytes, |w| {
                    *w = std::io::BufWriter::with_capacity(256 << 10, std::fs::File::create(&path).expect("create"));
                });
                start.elapsed()
            });
        });
        let log = Log::open(tmp.path().join("log"), os_options()).expect("open");
        g.bench_with_input(BenchmarkId::new("evlog", size), &payload, |b, p| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(p).expect("append");
                }
                let took = start.elapsed();
                // Retention between samples keeps the disk from filling.
                log.remove_before(log.next_offset()).expect("remove");
                took
            });
        });
    }
    g.finish();
}

/// The BufWriter baseline with the durability points of an `Os` log: frames written through
/// a BufWriter, fdatasynced each time a segment's worth was written since the last.
struct SyncedBufWriter {
    w: std::io::BufWriter<std::fs::File>,
    frame: Vec<u8>,
    since_sync: u64,
}

impl SyncedBufWriter {
    fn new(w: std::io::BufWriter<std::fs::File>, size: usize) -> Self {
        SyncedBufWriter { w, frame: Vec::with_capacity(size + 64), since_sync: 0 }
    }

    /// Writes `iters` frames of `payload`; after each fdatasync calls `at_sync` (which may put
    /// a new file in place); flushes at the end.
    fn write(
        &mut self,
        iters: u64,
        payload: &[u8],
        segment_bytes: u64,
        mut at_sync: impl FnMut(&mut std::io::BufWriter<std::fs::File>),
    ) {
        for offset in 0..iters {
            frame_of(&mut self.frame, offset, payload);
            self.w.write_all(&self.frame).expect("write");
            self.since_sync += self.frame.len() as u64;
            if self.since_sync >= segment_bytes {
                self.w.flush().expect("flush");
                self.w.get_ref().sync_data().expect("fdatasync");
                self.since_sync = 0;
                at_sync(&mut self.w);
            }
        }
        self.w.flush().expect("flush");
    }
}

/// Milliseconds since the Unix epoch, from the same vDSO clock evlog reads.
fn wall_clock_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_secs() as i64 * 1000 + i64::from(d.subsec_millis())
}

fn baseline_pwrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline_pwrite");
    let payload = vec![7u8; 100];
    g.throughput(Throughput::Elements(1));
    g.bench_function("100", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let file = std::fs::File::create(tmp.path().join("baseline")).expect("create");
            let mut frame = Vec::with_capacity(256);
            let mut pos = 0u64;
            let start = Instant::now();
            for offset in 0..iters {
                frame_of(&mut frame, offset, &payload);
                file.write_all_at(&frame, pos).expect("write");
                pos += frame.len() as u64;
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn append_batch_os(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_batch_os");
    let payload = vec![7u8; 100];
    let batch: Vec<NewRecord<'_>> = (0..1000).map(|_| NewRecord::new(&payload)).collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("100", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let log = Log::open(tmp.path(), os_options()).expect("open");
            let start = Instant::now();
            for _ in 0..iters {
                log.append_batch(&batch).expect("batch");
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn append_always_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_always_threads");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let payload = vec![7u8; 100];
    for threads in [1usize, 4, 8, 16] {
        g.throughput(Throughput::Elements(threads as u64));
        let (mut records, mut fsyncs) = (0u64, 0u64);
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &threads| {
            // One iteration = one durable append on every thread.
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let log = Arc::new(Log::open(tmp.path(), Options::with_durability(Durability::Always)).expect("open"));
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let log = log.clone();
                        let p = &payload;
                        s.spawn(move || {
                            for _ in 0..iters {
                                log.append(p).expect("append");
                            }
                        });
                    }
                });
                let elapsed = start.elapsed();
                let stats = log.stats();
                records += stats.synced_records;
                fsyncs += stats.fsyncs;
                elapsed
            });
        });
        eprintln!(
            "append_always_threads/{threads}: {:.2} records per data fsync ({records} records, {fsyncs} fsyncs)",
            records as f64 / fsyncs.max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    append_os,
    baseline_bufwriter,
    append_os_parts,
    append_os_large_parts,
    append_os_sustained,
    baseline_pwrite,
    append_batch_os,
    append_always_threads
);
criterion_main!(benches);
