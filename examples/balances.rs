//! Exactly-once state: account balances rebuilt from a deposits topic.
//!
//! Each batch of deposits is applied to the balances (a state tree in the store's sled
//! database) in the same transaction that commits the consumer group's offset. However the
//! process stops — here a consumer is dropped mid-way as a crash would leave it — every deposit
//! counts exactly once.
//!
//! `cargo run --release --example balances`

use evlog::store::{Abort, StateTx};
use evlog::{ConsumerOptions, NewRecord, Store, StoreOptions};
use std::time::Duration;

fn balance(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
}

fn deposit(tx: &StateTx<'_>, account: &[u8], amount: u64) -> Result<(), Abort> {
    let old = balance(tx.get(account)?);
    tx.insert(account, &(old + amount).to_le_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("evlog-balances-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let accounts = [&b"alice"[..], b"bob", b"carol"];
    let mut expected = [0u64; 3];

    let store = Store::open(&root, StoreOptions::default())?;
    let deposits = store.topic("deposits")?;
    for i in 0..300u64 {
        let a = (i % 3) as usize;
        let amount = 1 + i % 10;
        expected[a] += amount;
        deposits.append_record(&NewRecord::new(&amount.to_le_bytes()).key(accounts[a]))?;
    }

    // Run the consumer twice: the first run stops after 100 records without any cleanup.
    for (run, limit) in [(1, Some(100)), (2, None)] {
        let mut consumer = store.consumer("balances", "deposits", ConsumerOptions::default())?;
        println!("run {run}: starting at offset {}", consumer.position());
        let mut applied = 0;
        loop {
            let batch = consumer.poll(32, Duration::from_millis(10))?;
            if batch.is_empty() || limit.is_some_and(|l| applied >= l) {
                break;
            }
            consumer.commit_with("accounts", |tx| {
                for r in &batch {
                    let amount = u64::from_le_bytes(r.payload().try_into().unwrap_or([0; 8]));
                    deposit(tx, r.key().unwrap_or(b"?"), amount)?;
                }
                Ok(())
            })?;
            applied += batch.len();
        }
        println!("run {run}: applied {applied} deposits, committed offset {:?}", consumer.committed());
    }

    for (i, a) in accounts.iter().enumerate() {
        let got = balance(store.state_get("accounts", a)?);
        println!("{}: {got} (expected {})", String::from_utf8_lossy(a), expected[i]);
        assert_eq!(got, expected[i]);
    }
    drop(deposits);
    drop(store);
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
