//! Event sourcing: a bank account as an aggregate of events.
//!
//! - The aggregate is loaded from its own events with `iter_key` (the key is the account id),
//!   reading those events and not the whole topic.
//! - Commands append with `append_expecting_key`: two tellers acting on the same account at once
//!   cannot both succeed on a stale balance; the loser reloads and retries.
//! - Events written by an older version of the program (v1: `Deposited { cents }`) are upcast to
//!   the current type (v2: `Deposited { cents, memo }`).
//! - A projection (total money in the bank) consumes the topic with `commit_with`, so its state
//!   and its offset move together: each event counts exactly once.
//!
//! `cargo run --release --example event_sourcing`

use evlog::{ConsumerOptions, Error, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The account's events as the first version of the program wrote them.
#[derive(Debug, Serialize, Deserialize)]
enum AccountEventV1 {
    Opened,
    Deposited { cents: i64 },
    Withdrawn { cents: i64 },
}

/// The current version: a deposit carries a memo.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountEvent {
    Opened,
    Deposited { cents: i64, memo: String },
    Withdrawn { cents: i64 },
}

fn upcast(old: AccountEventV1) -> AccountEvent {
    match old {
        AccountEventV1::Opened => AccountEvent::Opened,
        AccountEventV1::Deposited { cents } => AccountEvent::Deposited { cents, memo: String::new() },
        AccountEventV1::Withdrawn { cents } => AccountEvent::Withdrawn { cents },
    }
}

/// The aggregate: its balance and the offset of its last event (its version).
#[derive(Debug, Default)]
struct Account {
    balance: i64,
    version: Option<u64>,
}

fn apply(account: &mut Account, e: &AccountEvent) {
    match e {
        AccountEvent::Opened => {}
        AccountEvent::Deposited { cents, .. } => account.balance += cents,
        AccountEvent::Withdrawn { cents } => account.balance -= cents,
    }
}

type Events = evlog::TypedTopic<AccountEvent>;

fn load(events: &Events, id: &str) -> Result<Account, Error> {
    let mut a = Account::default();
    for e in events.iter_key(id.as_bytes(), 0) {
        let e = e?;
        apply(&mut a, &e.value);
        a.version = Some(e.offset());
    }
    Ok(a)
}

/// A withdrawal command: refused without the money; retried when another writer got first.
fn withdraw(events: &Events, id: &str, cents: i64) -> Result<bool, Error> {
    loop {
        let account = load(events, id)?;
        if account.balance < cents {
            return Ok(false);
        }
        match events.append_expecting_key(id.as_bytes(), account.version, &AccountEvent::Withdrawn { cents }) {
            Ok(_) => return Ok(true),
            Err(Error::KeyVersionMismatch { .. }) => continue, // someone else appended: reload
            Err(e) => return Err(e),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("evlog-event-sourcing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = Store::open(&root, StoreOptions::default())?;

    // Last year's program wrote v1 events.
    let old = store.typed_topic::<AccountEventV1>("accounts")?;
    for id in ["acct-1", "acct-2"] {
        old.append_record(&AccountEventV1::Opened, evlog::NewRecord::default().key(id.as_bytes()))?;
        old.append_record(
            &AccountEventV1::Deposited { cents: 10_000 },
            evlog::NewRecord::default().key(id.as_bytes()),
        )?;
    }

    // Today's program reads them as v2 and writes v2.
    let events: Events = store.typed_topic::<AccountEvent>("accounts")?.schema_version(2).upcast_from(1, upcast);
    let last = load(&events, "acct-1")?.version;
    let memo = AccountEvent::Deposited { cents: 2_500, memo: "birthday".into() };
    events.append_expecting_key(b"acct-1", last, &memo)?;

    // Eight tellers withdraw 20 € each from acct-1 (125 € in it) at the same time: exactly
    // six succeed, whatever the interleaving.
    let done: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| withdraw(&events, "acct-1", 2_000))).collect();
        handles.into_iter().map(|h| h.join().expect("teller").expect("withdraw")).collect()
    });
    let ok = done.iter().filter(|&&d| d).count();
    println!("withdrawals accepted: {ok} of 8");
    assert_eq!(ok, 6);
    let acct1 = load(&events, "acct-1")?;
    println!("acct-1 balance: {} cents after {:?}", acct1.balance, acct1.version);
    assert_eq!(acct1.balance, 500);

    // The projection: total money in the bank, exactly once with its offset.
    let mut projection = events.consumer("bank-total", ConsumerOptions::default())?;
    loop {
        let batch = projection.poll(100, Duration::from_millis(10))?;
        if batch.is_empty() {
            break;
        }
        let delta: i64 = batch
            .iter()
            .map(|e| match e.as_ref().map(|e| &e.value) {
                Ok(AccountEvent::Deposited { cents, .. }) => *cents,
                Ok(AccountEvent::Withdrawn { cents }) => -cents,
                _ => 0,
            })
            .sum();
        projection.inner().commit_with("bank", |tx| {
            let total = tx.get(b"total")?.map_or(0, |v| i64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
            tx.insert(b"total", &(total + delta).to_le_bytes())
        })?;
    }
    let total = store.state_get("bank", b"total")?.map_or(0, |v| i64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
    println!("money in the bank: {total} cents");
    assert_eq!(total, 10_000 + 500);

    drop((events, old, projection, store));
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
