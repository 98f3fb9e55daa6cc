//! Replay in event-time order: two producers whose clocks disagree, replayed by timestamp, then
//! summarised in tumbling one-second windows.
//!
//! `cargo run --release --example replay`

use evlog::replay::{Summary, WindowSpec};
use evlog::{NewRecord, Store, StoreOptions};

fn main() -> Result<(), evlog::Error> {
    let root = std::env::temp_dir().join(format!("evlog-replay-{}", std::process::id()));
    let store = Store::open(&root, StoreOptions::default())?;
    let (a, b) = (store.topic("sensor-a")?, store.topic("sensor-b")?);
    for i in 0..50i64 {
        // Sensor b's clock runs 700 ms behind, and its readings arrive in bursts.
        a.append_record(&NewRecord::new(&(i as f64).to_le_bytes()).timestamp(i * 100))?;
        b.append_record(&NewRecord::new(&(100.0 + i as f64).to_le_bytes()).timestamp(i * 100 - 700))?;
    }
    let first: Vec<String> = store
        .replay(&["sensor-a", "sensor-b"])
        .start()?
        .take(6)
        .map(|e| e.map(|e| format!("{}@{}", e.topic, e.timestamp)))
        .collect::<Result<_, _>>()?;
    println!("first events by event time: {first:?}");
    let value = |e: &evlog::replay::ReplayEvent| f64::from_le_bytes(e.payload[..].try_into().unwrap_or([0; 8]));
    for w in store.replay(&["sensor-a", "sensor-b"]).start()?.windows(
        WindowSpec::tumbling(1000),
        Summary::default(),
        |s, e| s.add(value(e)),
    )? {
        let w = w?;
        println!(
            "window ending {:>5} ms: {:>2} readings, sum {:>7.1}, min {:?}, max {:?}",
            w.end, w.count, w.value.sum, w.value.min, w.value.max
        );
    }
    drop((a, b, store));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
