//! Quickstart: append events, read them back, look one up by time, reopen and check.
//!
//! `cargo run --release --example quickstart`

use evlog::{Durability, Log, NewRecord, Options};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("evlog-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Durable appends: each returns once its record is on stable storage.
    let log = Log::open(&dir, Options::with_durability(Durability::Always))?;
    let t = Instant::now();
    for i in 0..1_000u32 {
        log.append(format!("event {i}").as_bytes())?;
    }
    println!("1000 durable appends (one fsync each) in {:?}", t.elapsed());

    // Event timestamps may arrive out of order; a batch is one write and one fsync, atomic.
    let late: Vec<String> = (0..100).map(|i| format!("sensor reading {i}")).collect();
    let batch: Vec<NewRecord<'_>> = late
        .iter()
        .enumerate()
        .map(|(i, p)| {
            NewRecord::new(p.as_bytes()).timestamp(1_700_000_000_000 + ((i * 37) % 100) as i64).key(b"sensor-1")
        })
        .collect();
    let range = log.append_batch(&batch)?;
    println!("batch of 100 out-of-order events at offsets {range:?}");

    let first_late = log.offset_for_timestamp(1_700_000_000_050)?;
    println!("earliest offset with timestamp >= 1_700_000_000_050: {first_late:?}");
    drop(log);

    // Reopen: everything is back, in order, byte for byte.
    let log = Log::open(&dir, Options::default())?;
    println!("reopened: {:?}", log.recovery_report());
    let records: Vec<_> = log.iter(0).collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 1_100);
    assert_eq!(records[0].payload(), b"event 0");
    assert_eq!(records[1_000].key(), Some(&b"sensor-1"[..]));
    println!("read back {} records; offsets {}..{}", records.len(), log.first_offset(), log.next_offset());
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
