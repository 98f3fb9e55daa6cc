//! Durable commits in a loop, for strace/perf: `cargo run --release --example commit_loop`.

use evlog::{ConsumerOptions, Store, StoreOptions};
use std::time::Instant;

fn main() -> Result<(), evlog::Error> {
    let root = std::env::temp_dir().join(format!("evlog-commit-loop-{}", std::process::id()));
    let store = Store::open(&root, StoreOptions::default())?;
    let t = store.topic("t")?;
    for _ in 0..2000 {
        t.append(b"x")?;
    }
    let mut c = store.consumer("g", "t", ConsumerOptions::default())?;
    let start = Instant::now();
    for i in 0..2000 {
        c.commit_offset(i)?;
    }
    println!("2000 durable commits: {:.1} µs each", start.elapsed().as_secs_f64() * 1e6 / 2000.0);
    drop(c);
    drop(t);
    drop(store);
    if std::env::var_os("KEEP").is_some() {
        println!("kept {}", root.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
