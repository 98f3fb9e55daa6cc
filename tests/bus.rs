//! The event bus: delivery, retries, dead letters, filter/map, shutdown and resume.

use evlog::bus::SubscriptionOptions;
use evlog::consume::Typed;
use evlog::headers::{DEAD_DELIVERIES_HEADER, DEAD_REASON_HEADER};
use evlog::{EventBus, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: i64,
}

fn quick_retries(retries_max: u32) -> SubscriptionOptions {
    let mut o = SubscriptionOptions::default();
    o.retries_max = retries_max;
    o.backoff_initial = Duration::from_millis(1);
    o.backoff_max = Duration::from_millis(4);
    o
}

#[test]
fn every_published_event_reaches_the_handler_and_shutdown_commits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let (tx, rx) = mpsc::channel();
    let sub = bus
        .subscribe("billing", "orders", move |o: &Typed<Order>| tx.send(o.value.id).map_err(|e| e.to_string()))
        .expect("subscribe");
    for id in 0..50 {
        bus.publish("orders", &Order { id, cents: 100 }).expect("publish");
    }
    let got: Vec<u64> = (0..50).map(|_| rx.recv_timeout(WAIT).expect("event")).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    let stats = sub.shutdown().expect("shutdown");
    assert_eq!(stats.handled, 50);
    assert_eq!(store.groups("orders").expect("groups")[0].committed, 50);
}

#[test]
fn a_failing_handler_is_retried_and_then_succeeds_without_a_dead_letter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let (tx, rx) = mpsc::channel();
    let mut calls = 0;
    let sub = bus
        .subscription::<Order>("g", "orders")
        .options(quick_retries(3))
        .handle(move |o| {
            calls += 1;
            if calls <= 2 {
                return Err(format!("attempt {calls} failed"));
            }
            tx.send(o.value.id).map_err(|e| e.to_string())
        })
        .expect("subscribe");
    bus.publish("orders", &Order { id: 7, cents: 1 }).expect("publish");
    assert_eq!(rx.recv_timeout(WAIT).expect("handled"), 7);
    let stats = sub.shutdown().expect("shutdown");
    assert_eq!((stats.handled, stats.failures, stats.dead_lettered), (1, 2, 0));
}

#[test]
fn after_the_last_retry_an_event_is_dead_lettered_with_the_error_and_the_next_one_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let (tx, rx) = mpsc::channel();
    let sub = bus
        .subscription::<Order>("g", "orders")
        .options(quick_retries(2))
        .handle(move |o| {
            if o.value.cents < 0 {
                return Err("negative amount");
            }
            if o.value.cents == 0 {
                panic!("zero amount");
            }
            tx.send(o.value.id).map_err(|_| "closed")
        })
        .expect("subscribe");
    bus.publish("orders", &Order { id: 1, cents: -5 }).expect("publish");
    bus.publish("orders", &Order { id: 2, cents: 0 }).expect("publish");
    bus.publish("orders", &Order { id: 3, cents: 5 }).expect("publish");
    assert_eq!(rx.recv_timeout(WAIT).expect("the good one"), 3);
    let stats = sub.shutdown().expect("shutdown");
    assert_eq!((stats.handled, stats.failures, stats.dead_lettered), (1, 6, 2));
    let dead: Vec<_> = store.topic("orders.dead").expect("topic").iter(0).map(|r| r.expect("record")).collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].header(DEAD_REASON_HEADER), Some(&b"negative amount"[..]));
    assert_eq!(dead[0].header(DEAD_DELIVERIES_HEADER), Some(&b"3"[..]));
    assert_eq!(dead[1].header(DEAD_REASON_HEADER), Some(&b"handler panicked: zero amount"[..]));
    let typed = store.typed_topic::<Order>("orders.dead").expect("typed");
    assert_eq!(typed.read(0).expect("read").expect("there").value, Order { id: 1, cents: -5 });
}

#[test]
fn a_payload_that_does_not_decode_is_dead_lettered_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    store.topic("orders").expect("topic").append(&[0xFF; 3]).expect("garbage");
    bus.publish("orders", &Order { id: 9, cents: 9 }).expect("publish");
    let (tx, rx) = mpsc::channel();
    let sub = bus
        .subscribe("g", "orders", move |o: &Typed<Order>| tx.send(o.offset()).map_err(|e| e.to_string()))
        .expect("subscribe");
    assert_eq!(rx.recv_timeout(WAIT).expect("the good one"), 1);
    let stats = sub.shutdown().expect("shutdown");
    assert_eq!((stats.handled, stats.failures, stats.dead_lettered), (1, 0, 1));
    let dead = store.topic("orders.dead").expect("topic").read(0).expect("read").expect("there");
    assert!(dead.header(DEAD_REASON_HEADER).expect("reason").starts_with(b"cannot decode"));
}

#[test]
fn filter_and_map_shape_what_the_handler_sees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let (tx, rx) = mpsc::channel();
    let sub = bus
        .subscription::<Order>("big", "orders")
        .filter(|o| o.cents >= 1000)
        .map(|o| format!("order {} for {:.2}", o.id, o.cents as f64 / 100.0))
        .filter(|s| !s.starts_with("order 13 "))
        .handle(move |s| tx.send(s.value.clone()).map_err(|e| e.to_string()))
        .expect("subscribe");
    for (id, cents) in [(11, 500), (12, 1250), (13, 9999), (14, 1000)] {
        bus.publish("orders", &Order { id, cents }).expect("publish");
    }
    assert_eq!(rx.recv_timeout(WAIT).expect("first"), "order 12 for 12.50");
    assert_eq!(rx.recv_timeout(WAIT).expect("second"), "order 14 for 10.00");
    let stats = sub.shutdown().expect("shutdown");
    assert_eq!((stats.handled, stats.filtered), (2, 2));
}

#[test]
fn subscribers_resume_from_their_committed_offset_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
        let bus = EventBus::new(&store);
        let (tx, rx) = mpsc::channel();
        let _sub = bus
            .subscribe("g", "orders", move |o: &Typed<Order>| tx.send(o.value.id).map_err(|e| e.to_string()))
            .expect("subscribe");
        for id in 0..10 {
            bus.publish("orders", &Order { id, cents: 1 }).expect("publish");
        }
        for _ in 0..10 {
            rx.recv_timeout(WAIT).expect("event");
        }
        bus.shutdown().expect("shutdown");
        for id in 10..15 {
            bus.publish("orders", &Order { id, cents: 1 }).expect("publish while nobody listens");
        }
    }
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let (tx, rx) = mpsc::channel();
    let sub = bus
        .subscribe("g", "orders", move |o: &Typed<Order>| tx.send(o.value.id).map_err(|e| e.to_string()))
        .expect("subscribe");
    let got: Vec<u64> = (0..5).map(|_| rx.recv_timeout(WAIT).expect("event")).collect();
    assert_eq!(got, vec![10, 11, 12, 13, 14]);
    assert_eq!(sub.shutdown().expect("shutdown").handled, 5);
}

#[test]
fn a_busy_group_fails_at_subscribe_time_not_in_the_thread() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let bus = EventBus::new(&store);
    let _a = bus.subscribe("g", "orders", |_: &Typed<Order>| Ok::<(), String>(())).expect("first");
    let second = bus.subscribe("g", "orders", |_: &Typed<Order>| Ok::<(), String>(()));
    assert!(matches!(second, Err(evlog::Error::GroupBusy { .. })));
}
