//! A tight `Durability::Os` append loop, for profilers: `cargo run --release --example
//! append_loop -- <records> <payload bytes>`.

use evlog::{Durability, Log, Options};
use std::time::Instant;

fn main() -> Result<(), evlog::Error> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("evlog-append-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = Log::open(&dir, Options::with_durability(Durability::Os))?;
    let payload = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..n {
        log.append(&payload)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{n} appends of {size} B in {secs:.3} s: {:.0} records/s", n as f64 / secs);
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
