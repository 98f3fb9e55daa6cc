//! Quickstart: durable appends, an atomic batch of out-of-order events, a lookup by event time,
//! a simulated crash with a torn tail, and recovery.
//!
//! `cargo run --release --example quickstart`

use evlog::{Durability, Log, NewRecord, Options};
use std::time::Instant;

const T0: i64 = 1_800_000_000_000; // event time base, ms since the Unix epoch

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("evlog-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // 1. Durable appends: each returns once its record is on stable storage (fdatasync).
    let log = Log::open(&dir, Options::with_durability(Durability::Always))?;
    let t = Instant::now();
    for i in 0..1_000i64 {
        log.append_record(&NewRecord::new(format!("order {i} placed").as_bytes()).timestamp(T0 + i * 10))?;
    }
    println!("1,000 durable appends in {:?} ({} fdatasyncs)", t.elapsed(), log.stats().fsyncs);

    // 2. A batch is one write and one fsync, and atomic across crashes. Event times may be out
    //    of order: a late device reports readings from the past.
    let readings: Vec<String> = (0..100).map(|i| format!("sensor reading {i}")).collect();
    let batch: Vec<NewRecord<'_>> = readings
        .iter()
        .enumerate()
        .map(|(i, p)| {
            NewRecord::new(p.as_bytes())
                .timestamp(T0 + ((i as i64 * 37) % 100) * 10)
                .key(b"sensor-1")
                .header("unit", b"celsius")
        })
        .collect();
    let range = log.append_batch(&batch)?;
    println!("batch of 100 late events at offsets {range:?}");

    // 3. Earliest offset whose event time is >= T0 + 500 ms, exact despite the disorder.
    let at = log.offset_for_timestamp(T0 + 500)?;
    println!("earliest offset at or after T0+500ms: {at:?} (the 51st order)");

    // 4. Crash: the process dies without closing, and a torn write is left at the end.
    log.abandon();
    let segment = dir.join(evlog::format::segment_file_name(0));
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(&[0xE7, 0x01, 0x00, 0x00, 0x2A]); // half a frame header
    std::fs::write(&segment, &bytes)?;

    // 5. Reopen: recovery truncates the torn tail; every acknowledged event is back.
    let log = Log::open(&dir, Options::default())?;
    let report = log.recovery_report();
    println!(
        "recovered: scanned {} bytes from the checkpoint, truncated a torn tail of {} bytes",
        report.scanned_bytes, report.truncated_bytes
    );
    let records: Vec<_> = log.iter(0).collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 1_100);
    assert_eq!(records[0].payload(), b"order 0 placed");
    assert_eq!(records[1_000].key(), Some(&b"sensor-1"[..]));
    assert_eq!(records[1_000].header("unit"), Some(&b"celsius"[..]));
    println!("read back {} records, in order, byte for byte; next offset {}", records.len(), log.next_offset());
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
