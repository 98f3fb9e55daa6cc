//! Scale: a log of 10,000 small segments opens, appends and reads with bounded file handles,
//! maps and memory. Prints a markdown table (not a criterion bench: each figure is one run).
//!
//! `cargo bench --bench scale [-- <segments>]`

use evlog::{Durability, Log, Options};
use std::time::Instant;

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn maps_of(dir: &std::path::Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let d = dir.to_string_lossy();
    maps.lines().filter(|l| l.contains(d.as_ref())).count()
}

fn main() {
    let segments: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = Options::with_durability(Durability::Os);
    o.segment_bytes_max = 4096;
    o.record_bytes_max = 1024;
    let payload = [1u8; 100];
    let per_segment = (4096 - 32) / (100 + 44);
    let records = segments * per_segment as u64;
    let t = Instant::now();
    {
        let log = Log::open(tmp.path(), o.clone()).expect("open");
        for _ in 0..records {
            log.append(&payload).expect("append");
        }
        log.close().expect("close");
    }
    let build = t.elapsed();

    // Peak RSS from here on only (Linux: writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status("VmRSS:");
    let fds_before = open_fds();
    let t = Instant::now();
    let log = Log::open(tmp.path(), o).expect("open");
    let open = t.elapsed();
    let segs = log.segment_count();
    let t = Instant::now();
    log.append(&payload).expect("append");
    let append = t.elapsed();
    let t = Instant::now();
    let mut n = 0u64;
    let (mut fds_max, mut maps_max) = (0usize, 0usize);
    for r in log.iter(0) {
        r.expect("record");
        n += 1;
        if n.is_multiple_of(5_000) {
            fds_max = fds_max.max(open_fds());
            maps_max = maps_max.max(maps_of(tmp.path()));
        }
    }
    let read = t.elapsed();
    let t = Instant::now();
    for o in (0..n).step_by(997) {
        log.read(o).expect("read").expect("present");
    }
    let random = t.elapsed();
    let peak = status("VmHWM:");
    println!("| what | figure |");
    println!("|---|---|");
    println!("| segments | {segs} ({records} records of 100 B, built in {:.1} s) |", build.as_secs_f64());
    println!("| open (clean) | {:.2} ms |", open.as_secs_f64() * 1e3);
    println!("| first append after open | {:.2} ms |", append.as_secs_f64() * 1e3);
    println!("| iterate all {n} records | {:.0} ms |", read.as_secs_f64() * 1e3);
    println!("| {} random reads | {:.0} ms |", n.div_ceil(997), random.as_secs_f64() * 1e3);
    println!("| file descriptors (before open → max while iterating) | {fds_before} → {fds_max} |");
    println!("| maps of log files (max while iterating) | {maps_max} (open_segments_max = 32, 3 maps per segment) |");
    println!("| mapped segments now | {} |", log.stats().mapped_segments);
    println!("| RSS before open → peak after | {} KiB → {} KiB |", rss_before, peak);
}
