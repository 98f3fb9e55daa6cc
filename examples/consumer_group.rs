//! A consumer group: a producer thread appends, a consumer blocks in `poll` until records arrive,
//! processes them and commits; a second run of the group picks up after the last commit.
//!
//! `cargo run --release --example consumer_group`

use evlog::{ConsumerOptions, Store, StoreOptions};
use std::time::Duration;

fn main() -> Result<(), evlog::Error> {
    let root = std::env::temp_dir().join(format!("evlog-consumer-group-{}", std::process::id()));
    let store = Store::open(&root, StoreOptions::default())?;
    let orders = store.topic("orders")?;
    let producer = {
        let orders = orders.clone();
        std::thread::spawn(move || -> Result<(), evlog::Error> {
            for i in 0..100 {
                orders.append(format!("order {i}").as_bytes())?;
            }
            Ok(())
        })
    };
    let mut consumer = store.consumer("billing", "orders", ConsumerOptions::default())?;
    let mut processed = 0;
    while processed < 60 {
        let batch = consumer.poll(25, Duration::from_secs(5))?; // woken by the producer's appends
        processed += batch.len();
        consumer.commit()?; // durable on return
    }
    println!("first run: processed {processed}, committed {:?}", consumer.committed());
    drop(consumer);
    producer.join().expect("producer thread")?;

    let mut consumer = store.consumer("billing", "orders", ConsumerOptions::default())?;
    println!("second run starts at offset {} with lag {}", consumer.position(), consumer.lag());
    let rest = consumer.poll(1000, Duration::ZERO)?;
    consumer.commit()?;
    println!("second run: processed {} more; groups: {:?}", rest.len(), store.groups("orders")?);
    drop((consumer, orders, store));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
