//! An event bus: typed events published durably, two subscriptions on their own threads (one
//! filters and maps, one fails on some events and dead-letters them after its retries).
//!
//! `cargo run --release --example event_bus`

use evlog::bus::SubscriptionOptions;
use evlog::consume::Typed;
use evlog::{EventBus, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedUp {
    user: u64,
    email: String,
    marketing_ok: bool,
}

fn main() -> Result<(), evlog::Error> {
    let root = std::env::temp_dir().join(format!("evlog-event-bus-{}", std::process::id()));
    let store = Store::open(&root, StoreOptions::default())?;
    let bus = EventBus::new(&store);
    let (mails, mailbox) = mpsc::channel();
    let welcome = bus
        .subscription::<SignedUp>("welcome-mail", "signups")
        .filter(|e| e.marketing_ok)
        .map(|e| e.email)
        .handle(move |email: &Typed<String>| mails.send(email.value.clone()).map_err(|e| e.to_string()))?;
    let mut opts = SubscriptionOptions::default();
    opts.retries_max = 2;
    let crm = bus.subscription::<SignedUp>("crm-sync", "signups").options(opts).handle(|e| {
        if e.value.email.ends_with(".invalid") { Err(format!("CRM rejects {}", e.value.email)) } else { Ok(()) }
    })?;
    for (user, email, marketing_ok) in
        [(1, "ada@example.com", true), (2, "bob@example.invalid", true), (3, "cy@example.com", false)]
    {
        bus.publish("signups", &SignedUp { user, email: email.into(), marketing_ok })?;
    }
    for _ in 0..2 {
        println!("welcome mail to {}", mailbox.recv_timeout(Duration::from_secs(10)).expect("a mail"));
    }
    println!("welcome-mail: {:?}", welcome.shutdown()?);
    // Wait until the CRM subscription has dead-lettered bob (after its retries).
    let dead = store.topic("signups.dead")?;
    dead.wait_for(0, Duration::from_secs(10))?;
    println!("crm-sync: {:?}", crm.shutdown()?);
    let typed = store.typed_topic::<SignedUp>("signups.dead")?;
    for d in typed.iter(0) {
        let d = d?;
        println!(
            "dead letter: user {} because {:?}",
            d.value.user,
            String::from_utf8_lossy(d.record.header(evlog::headers::DEAD_REASON_HEADER).unwrap_or_default())
        );
    }
    drop((dead, typed));
    drop(store);
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}
