//! Async polling (feature `tokio`): woken by appends, never by polling.
#![cfg(feature = "tokio")]

use evlog::{ConsumerOptions, NewRecord, QueueOptions, Store, StoreOptions};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A waker that counts how often it is woken.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_waiting_poll_is_woken_once_by_an_append_and_never_otherwise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let topic = store.topic("t").expect("topic");
    let mut consumer = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(consumer.poll_async(10));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "polling again registers, it does not spin");
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "nothing wakes it before an append");
    topic.append(b"hello").expect("append");
    assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the append wakes it exactly once");
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(records)) => assert_eq!(records[0].payload(), b"hello"),
        other => panic!("expected the record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_async_returns_what_another_thread_appends() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let mut typed = store.typed_topic::<u64>("n").expect("topic").consumer("g", ConsumerOptions::default()).expect("c");
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let t = store.typed_topic::<u64>("n").expect("topic");
            for i in 0..100u64 {
                t.append(&i).expect("append");
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let got = tokio::time::timeout(WAIT, typed.poll_async(32)).await.expect("in time").expect("poll");
        seen.extend(got.into_iter().map(|t| t.expect("decodes").value));
    }
    writer.join().expect("writer");
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_async_is_woken_by_an_append_a_nack_and_a_lease_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let mut o = QueueOptions::default();
    o.lease_timeout = Duration::from_millis(50);
    let q = store.queue("w", "jobs", o).expect("queue");
    // An append from another task.
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.lease_async().await }
    });
    q.push(&NewRecord::new(b"job")).expect("push");
    let d = tokio::time::timeout(WAIT, waiter).await.expect("in time").expect("task").expect("lease");
    assert_eq!((d.record.payload(), d.deliveries), (&b"job"[..], 1));
    // A nack while another task waits.
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.lease_async().await }
    });
    q.nack(&d, Duration::ZERO).expect("nack");
    let d2 = tokio::time::timeout(WAIT, waiter).await.expect("in time").expect("task").expect("lease");
    assert_eq!(d2.deliveries, 2);
    // Nobody acks: the lease runs out and the timer hands it out again.
    let d3 = tokio::time::timeout(WAIT, q.lease_async()).await.expect("in time").expect("lease");
    assert_eq!((d3.offset(), d3.deliveries), (0, 3));
    q.ack(&d3).expect("ack");
}

/// The next item of a stream (futures-core has no `StreamExt`).
fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *s).poll_next(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_stream_gives_history_in_timestamp_order_then_live_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let t = store.topic("t").expect("topic");
    for ts in [30, 10, 20] {
        t.append_record(&NewRecord::new(b"old").timestamp(ts)).expect("append");
    }
    let mut stream = store.replay(&["t"]).then_live().start().expect("replay").into_stream();
    let mut ts = Vec::new();
    for _ in 0..3 {
        ts.push(next(&mut stream).await.expect("event").expect("ok").timestamp);
    }
    assert_eq!(ts, vec![10, 20, 30]);
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || t.append_record(&NewRecord::new(b"live").timestamp(40)).expect("append"))
    };
    let live = tokio::time::timeout(WAIT, next(&mut stream)).await.expect("in time").expect("event").expect("ok");
    writer.join().expect("writer");
    assert_eq!((live.timestamp, &live.payload[..], live.late), (40, &b"live"[..], false));
}
