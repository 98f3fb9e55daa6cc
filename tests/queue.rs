//! Work queues: leases, acks, nacks, lease timeouts, dead letters, priorities, restarts.

mod common;

use evlog::clock::ManualClock;
use evlog::error::QueueError;
use evlog::headers::{DEAD_DELIVERIES_HEADER, DEAD_OFFSET_HEADER, DEAD_REASON_HEADER};
use evlog::queue::Delivery;
use evlog::store::CommitDurability;
use evlog::{Error, NewRecord, QueueOptions, Store, StoreOptions};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const NONE: Duration = Duration::ZERO;
const LEASE: Duration = Duration::from_secs(10);

fn opts(clock: &Arc<ManualClock>, deliveries_max: u32) -> QueueOptions {
    let mut o = QueueOptions::default();
    o.clock = clock.clone();
    o.lease_timeout = LEASE;
    o.deliveries_max = deliveries_max;
    o
}

fn open(root: &Path) -> Store {
    Store::open(root, StoreOptions::default()).expect("store")
}

fn fill(store: &Store, topic: &str, n: u64) {
    common::fill(store, topic, n, |i| format!("job {i}"));
}

#[test]
fn a_lease_runs_on_the_monotonic_clock_whatever_steps_the_wall_clock_takes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000_000));
    fill(&store, "jobs", 1);
    let mut o = opts(&clock, 5);
    o.lease_timeout = Duration::from_secs(2);
    let q = store.queue("w", "jobs", o).expect("queue");
    let hung = q.try_lease().expect("lease").expect("job");
    // Stepped forward a day while the lease has 2 s to run: no second worker gets the job.
    clock.step_wall(86_400_000);
    assert!(q.try_lease().expect("lease").is_none(), "the job is still leased");
    // Stepped back a day and an hour: the job comes back after its 2 s, not an hour later.
    clock.step_wall(-86_400_000 - 3_600_000);
    clock.advance(Duration::from_millis(1_999));
    assert!(q.try_lease().expect("lease").is_none(), "1.999 s into a 2 s lease");
    clock.advance(Duration::from_millis(1));
    let again = q.try_lease().expect("lease").expect("redelivered once the lease ran out");
    assert_eq!((again.offset(), again.deliveries), (0, 2));
    assert!(matches!(q.ack(&hung), Err(Error::Queue(QueueError::LeaseLost { .. }))), "the hung worker's lease is gone");
    q.ack(&again).expect("ack");
}

#[test]
fn stats_count_redeliveries_and_the_leases_about_to_run_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000_000));
    fill(&store, "jobs", 2);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let first = q.try_lease().expect("lease").expect("job 0");
    let _second = q.try_lease().expect("lease").expect("job 1");
    let s = q.stats();
    assert_eq!((s.delivered, s.redelivered, s.leases_expiring), (2, 0, 0), "10 s leases, just taken");
    clock.advance(Duration::from_secs(3));
    q.nack(&first, NONE).expect("nack");
    let again = q.try_lease().expect("lease").expect("job 0 again");
    assert_eq!(again.deliveries, 2);
    // 5 s in: job 1's lease (taken at 0 s) runs out at 10 s, job 0's new one (3 s) at 13 s.
    clock.advance(Duration::from_secs(2));
    let s = q.stats();
    assert_eq!((s.delivered, s.redelivered), (3, 1), "one of three deliveries was a redelivery");
    assert_eq!(s.leases_expiring, 1, "job 1's lease runs out within 5 s; job 0's was renewed by its redelivery");
}

#[test]
fn a_nacks_delay_runs_on_the_monotonic_clock_and_survives_a_restart_as_a_time_of_day() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    {
        let store = open(tmp.path());
        fill(&store, "jobs", 1);
        let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
        let d = q.try_lease().expect("lease").expect("job");
        q.nack(&d, Duration::from_secs(5)).expect("nack");
        // Stepped forward a day: the retry is not delivered early.
        clock.step_wall(86_400_000);
        assert!(q.try_lease().expect("lease").is_none(), "a wall-clock step does not end the delay");
        assert_eq!(q.stats().ready, 1, "counted as waiting");
        clock.advance(Duration::from_secs(5));
        let again = q.try_lease().expect("lease").expect("due after 5 s");
        assert_eq!(again.deliveries, 2);
        q.nack(&again, Duration::from_secs(60)).expect("nack");
    }
    // After a restart the delay's end is a time of day: 60 s after the nack on the wall clock.
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    clock.advance(Duration::from_secs(59));
    assert!(q.try_lease().expect("lease").is_none());
    clock.advance(Duration::from_secs(1));
    assert_eq!(q.try_lease().expect("lease").expect("due").deliveries, 3);
}

#[test]
fn a_heartbeat_extends_a_lease_and_fails_once_the_lease_is_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000_000));
    fill(&store, "jobs", 1);
    let mut o = opts(&clock, 5);
    o.lease_timeout = Duration::from_secs(2);
    let q = store.queue("w", "jobs", o).expect("queue");
    let d = q.try_lease().expect("lease").expect("job");
    clock.advance(Duration::from_millis(1_500));
    q.extend(&d, Duration::from_secs(2)).expect("extended while the lease runs");
    clock.advance(Duration::from_millis(1_500));
    assert!(q.try_lease().expect("lease").is_none(), "3 s after the lease, but 1.5 s after the heartbeat");
    clock.advance(Duration::from_millis(600));
    let again = q.try_lease().expect("lease").expect("redelivered once the extended lease ran out");
    assert!(matches!(q.extend(&d, LEASE), Err(Error::Queue(QueueError::LeaseLost { .. }))), "the old holder learns");
    q.extend(&again, LEASE).expect("the new holder may");
    q.ack(&again).expect("ack");
    assert!(
        matches!(q.extend(&again, LEASE), Err(Error::Queue(QueueError::LeaseLost { .. }))),
        "acked: nothing to extend"
    );
}

#[test]
fn a_cancelled_job_is_never_delivered_whether_pending_scheduled_or_leased_also_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    {
        let store = open(tmp.path());
        fill(&store, "jobs", 4);
        let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
        let scheduled = q.push_at(&NewRecord::new(b"later"), 2_000_000).expect("push_at");
        let leased = q.try_lease().expect("lease").expect("job 0");
        assert_eq!(leased.offset(), 0);
        assert!(q.cancel(0).expect("cancel a leased job"));
        assert!(q.cancel(2).expect("cancel a pending job the queue has not read"));
        assert!(q.cancel(scheduled).expect("cancel a scheduled job"));
        assert!(!q.cancel(2).expect("twice"), "already cancelled");
        assert!(!q.cancel(99).expect("no such record"), "nothing at 99");
        assert!(
            matches!(q.ack(&leased), Err(Error::Queue(QueueError::LeaseLost { .. }))),
            "the worker learns at its ack"
        );
        let one = q.try_lease().expect("lease").expect("job 1");
        assert_eq!(one.offset(), 1);
        q.ack(&one).expect("ack");
        assert_eq!(q.stats().cancelled, 3);
    }
    // After a restart: the cancellations held; job 3 is the only one left, the scheduled one
    // never comes, and the cancelled lease does not come back either.
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    clock.advance(LEASE * 200);
    let three = q.try_lease().expect("lease").expect("job 3");
    assert_eq!(three.offset(), 3);
    q.ack(&three).expect("ack");
    assert!(q.try_lease().expect("lease").is_none(), "nothing else: cancelled jobs stay cancelled");
}

#[test]
fn failed_attempts_back_off_exponentially_carry_the_last_error_and_name_it_in_the_dead_letter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000_000));
    fill(&store, "jobs", 1);
    let mut o = opts(&clock, 4);
    o.retry =
        Some(evlog::queue::RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.0));
    let q = store.queue("w", "jobs", o).expect("queue");
    let first = q.try_lease().expect("lease").expect("job");
    assert_eq!(first.last_error, None);
    q.retry(&first, "timeout talking to the bank").expect("retry");
    clock.advance(Duration::from_millis(999));
    assert!(q.try_lease().expect("lease").is_none(), "1 s after the first failure");
    clock.advance(Duration::from_millis(1));
    let second = q.try_lease().expect("lease").expect("after 1 s");
    assert_eq!((second.deliveries, second.last_error.as_deref()), (2, Some("timeout talking to the bank")));
    q.retry(&second, "bank said 503").expect("retry");
    clock.advance(Duration::from_millis(1_999));
    assert!(q.try_lease().expect("lease").is_none(), "2 s after the second");
    clock.advance(Duration::from_millis(1));
    let third = q.try_lease().expect("lease").expect("after 2 s");
    // Its worker hangs: the lease runs out, and that failure backs off 4 s too.
    clock.advance(LEASE);
    assert!(q.try_lease().expect("lease").is_none(), "the lease ran out; 4 s to wait");
    clock.advance(Duration::from_secs(4));
    let fourth = q.try_lease().expect("lease").expect("after 4 s");
    assert_eq!((third.deliveries, fourth.deliveries), (3, 4));
    assert!(matches!(q.retry(&third, "late"), Err(Error::Queue(QueueError::LeaseLost { .. }))), "not its job any more");
    q.retry(&fourth, "card declined").expect("the last attempt goes to the dead letters");
    let dead = store.topic("jobs.dead").expect("dead letters").read(0).expect("read").expect("a dead letter");
    let reason = String::from_utf8_lossy(dead.header(DEAD_REASON_HEADER).expect("reason")).into_owned();
    assert!(reason.contains("card declined"), "{reason}");
}

#[test]
fn each_record_is_leased_to_one_worker_and_an_acked_one_never_comes_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    fill(&store, "jobs", 3);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let worker2 = store.queue("w", "jobs", QueueOptions::default()).expect("the same queue");
    let a = q.try_lease().expect("lease").expect("job");
    let b = worker2.try_lease().expect("lease").expect("job");
    assert_eq!((a.offset(), b.offset(), a.deliveries), (0, 1, 1));
    assert_eq!(q.stats().leased, 2);
    q.ack(&a).expect("ack");
    assert!(matches!(q.ack(&a), Err(Error::Queue(QueueError::LeaseLost { offset: 0, .. }))), "a second ack is refused");
    worker2.ack(&b).expect("ack");
    let c = q.try_lease().expect("lease").expect("job");
    assert_eq!(c.offset(), 2);
    q.ack(&c).expect("ack");
    clock.advance(LEASE * 10);
    assert!(q.try_lease().expect("lease").is_none());
    let s = q.stats();
    assert_eq!((s.acked, s.delivered, s.backlog, s.leased, s.ready), (3, 3, 0, 0, 0));
}

#[test]
fn a_nack_redelivers_after_its_delay_with_the_count_raised() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    fill(&store, "jobs", 2);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let first = q.try_lease().expect("lease").expect("job 0");
    q.nack(&first, Duration::from_secs(5)).expect("nack");
    // Not due yet: the next new record comes first.
    let second = q.try_lease().expect("lease").expect("job 1");
    assert_eq!(second.offset(), 1);
    assert!(q.try_lease().expect("lease").is_none());
    assert_eq!(q.peek(10).expect("peek").len(), 0, "nothing due");
    clock.advance(Duration::from_secs(5));
    let peeked = q.peek(10).expect("peek");
    assert_eq!((peeked.len(), peeked[0].record.offset(), peeked[0].deliveries), (1, 0, 1));
    let again = q.try_lease().expect("lease").expect("job 0 again");
    assert_eq!((again.offset(), again.deliveries), (0, 2));
}

#[test]
fn a_lease_that_runs_out_goes_to_another_worker_and_the_first_loses_its_ack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    fill(&store, "jobs", 1);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let slow = q.try_lease().expect("lease").expect("job");
    clock.advance(LEASE - Duration::from_millis(1));
    assert!(q.try_lease().expect("lease").is_none(), "still leased");
    clock.advance(Duration::from_millis(1));
    let fast = q.try_lease().expect("lease").expect("redelivered");
    assert_eq!((fast.offset(), fast.deliveries), (0, 2));
    let lost = q.ack(&slow);
    assert!(matches!(&lost, Err(Error::Queue(QueueError::LeaseLost { .. }))), "{lost:?}");
    assert!(lost.unwrap_err().to_string().contains("offset 0"));
    q.ack(&fast).expect("the newest delivery acks");
}

#[test]
fn after_deliveries_max_a_record_moves_to_the_dead_letter_topic_with_its_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    let t = store.topic("jobs").expect("topic");
    t.append_record(&NewRecord::new(b"poison").key(b"k").timestamp(77).header("trace", b"abc")).expect("append");
    t.append(b"fine").expect("append");
    let q = store.queue("w", "jobs", opts(&clock, 2)).expect("queue");
    let d1 = q.try_lease().expect("lease").expect("poison");
    q.nack(&d1, NONE).expect("nack");
    let d2 = q.try_lease().expect("lease").expect("poison again");
    assert_eq!((d2.offset(), d2.deliveries), (0, 2));
    q.nack(&d2, NONE).expect("nack: the last delivery, so it is dead-lettered");
    // The lease of offset 1 runs out twice: dead-lettered as well.
    let e1 = q.try_lease().expect("lease").expect("fine");
    assert_eq!(e1.offset(), 1);
    clock.advance(LEASE);
    let e2 = q.try_lease().expect("lease").expect("fine again");
    assert_eq!(e2.deliveries, 2);
    clock.advance(LEASE);
    assert!(q.try_lease().expect("lease").is_none());
    assert_eq!(q.stats().dead_lettered, 2);

    let dead = store.topic(q.dead_letter_topic()).expect("dead letters");
    assert_eq!(q.dead_letter_topic(), "jobs.dead");
    let d: Vec<_> = dead.iter(0).map(|r| r.expect("record")).collect();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].payload(), d[0].key(), d[0].timestamp()), (&b"poison"[..], Some(&b"k"[..]), 77));
    assert_eq!(d[0].header("trace"), Some(&b"abc"[..]));
    assert_eq!(d[0].header(DEAD_REASON_HEADER), Some(&b"nacked after 2 deliveries"[..]));
    assert_eq!(d[0].header(DEAD_OFFSET_HEADER), Some(&b"0"[..]));
    assert_eq!(d[1].header(DEAD_REASON_HEADER), Some(&b"lease expired after 2 deliveries"[..]));
    assert_eq!(d[1].header(DEAD_DELIVERIES_HEADER), Some(&b"2"[..]));
}

#[test]
fn an_explicit_dead_letter_keeps_the_applications_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    fill(&store, "jobs", 1);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let d = q.try_lease().expect("lease").expect("job");
    q.dead_letter(&d, "schema v1 is no longer supported").expect("dead-letter");
    let dead = store.topic("jobs.dead").expect("topic").read(0).expect("read").expect("there");
    assert_eq!(dead.header(DEAD_REASON_HEADER), Some(&b"schema v1 is no longer supported"[..]));
    assert!(q.try_lease().expect("lease").is_none());
}

#[test]
fn after_a_restart_unacked_leases_come_back_with_their_counts_and_acked_ones_never() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000));
    {
        let store = open(tmp.path());
        fill(&store, "jobs", 4);
        let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
        let d0 = q.try_lease().expect("lease").expect("0");
        let d1 = q.try_lease().expect("lease").expect("1");
        let d2 = q.try_lease().expect("lease").expect("2");
        q.ack(&d1).expect("ack");
        q.nack(&d2, Duration::from_secs(60)).expect("nack with a delay");
        let _ = d0; // leased when the process "dies"
    }
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let a = q.try_lease().expect("lease").expect("offset 0 again");
    assert_eq!((a.offset(), a.deliveries), (0, 2));
    let b = q.try_lease().expect("lease").expect("then the never-delivered 3");
    assert_eq!((b.offset(), b.deliveries), (3, 1));
    assert!(q.try_lease().expect("lease").is_none(), "2 waits for its delay, 1 is done");
    q.ack(&a).expect("ack");
    q.ack(&b).expect("ack");
    clock.advance(Duration::from_secs(60));
    let c = q.try_lease().expect("lease").expect("2 after its delay");
    assert_eq!((c.offset(), c.deliveries), (2, 2));
}

#[test]
fn a_waiting_worker_is_woken_by_an_append_from_another_thread() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", QueueOptions::default()).expect("queue");
    std::thread::scope(|s| {
        let worker = s.spawn(|| q.lease(Duration::from_secs(60)).expect("lease"));
        store.topic("jobs").expect("topic").append(b"wake up").expect("append");
        let got = worker.join().expect("worker").expect("a job before the timeout");
        assert_eq!(got.record.payload(), b"wake up");
    });
}

#[test]
fn higher_priorities_go_first_fifo_within_a_lane_and_low_lanes_still_get_a_share() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    let pq = store.priority_queue("w", &["p0", "p1", "p2"], opts(&clock, 5)).expect("pq").low_share_every(4);
    for i in 0..20 {
        pq.push(0, &NewRecord::new(format!("high {i}").as_bytes())).expect("push");
    }
    for i in 0..3 {
        pq.push(1, &NewRecord::new(format!("mid {i}").as_bytes())).expect("push");
        pq.push(2, &NewRecord::new(format!("low {i}").as_bytes())).expect("push");
    }
    let mut order = Vec::new();
    while let Some(d) = pq.try_lease().expect("lease") {
        order.push(String::from_utf8(d.record.payload().to_vec()).expect("utf-8"));
        pq.ack(&d).expect("ack");
    }
    assert_eq!(order.len(), 26);
    // FIFO within each lane.
    for lane in ["high", "mid", "low"] {
        let seen: Vec<&String> = order.iter().filter(|s| s.starts_with(lane)).collect();
        let mut sorted = seen.clone();
        sorted.sort_by_key(|s| s.split(' ').nth(1).and_then(|n| n.parse::<u32>().ok()));
        assert_eq!(seen, sorted, "{lane} out of order: {order:?}");
    }
    // Every 4th lease goes to a lower lane (in rotation) while the high lane is busy.
    assert_eq!(&order[..4], ["high 0", "high 1", "high 2", "mid 0"]);
    assert_eq!(&order[4..8], ["high 3", "high 4", "high 5", "low 0"]);
    let first_lows = order.iter().position(|s| s.starts_with("low")).expect("a low one");
    assert!(first_lows < 8, "low priority starved: {order:?}");
    // Strict priorities when asked.
    let strict = store.priority_queue("strict", &["p0", "p1", "p2"], opts(&clock, 5)).expect("pq");
    let strict = strict.low_share_every(u32::MAX);
    let firsts: Vec<u64> = (0..20).map(|_| strict.try_lease().expect("lease").expect("job").offset()).collect();
    assert_eq!(firsts, (0..20).collect::<Vec<_>>());
    assert_eq!(&*strict.try_lease().expect("lease").expect("job").topic, "p1");
}

#[test]
fn four_worker_threads_finish_every_record_once_with_random_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    fill(&store, "jobs", 400);
    let mut o = QueueOptions::default();
    o.deliveries_max = 3;
    o.durability = CommitDurability::Os;
    let q = store.queue("w", "jobs", o).expect("queue");
    let acked: Vec<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let q = q.clone();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let mut n = w;
                    while let Some(d) = q.lease(Duration::from_millis(200)).expect("lease") {
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if (n >> 33) % 3 == 0 {
                            q.nack(&d, NONE).expect("nack");
                        } else {
                            q.ack(&d).expect("ack");
                            acked.push(d.offset());
                        }
                    }
                    acked
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    let mut done: Vec<u64> = acked.into_iter().flatten().collect();
    let dead: Vec<u64> = store
        .topic("jobs.dead")
        .map(|t| {
            t.iter(0)
                .map(|r| {
                    let r = r.expect("record");
                    std::str::from_utf8(r.header(evlog::headers::DEAD_OFFSET_HEADER).expect("header"))
                        .expect("utf-8")
                        .parse()
                        .expect("number")
                })
                .collect()
        })
        .expect("topic");
    done.extend(&dead);
    done.sort_unstable();
    assert_eq!(done, (0..400).collect::<Vec<_>>(), "each record acked once or dead-lettered once");
    assert_eq!(q.stats().dead_lettered, dead.len() as u64);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Lease,
    Ack(usize),
    Nack(usize, u8),
    Advance(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1u8..4).prop_map(Op::Append),
        4 => Just(Op::Lease),
        3 => (0usize..8).prop_map(Op::Ack),
        2 => (0usize..8, 0u8..3).prop_map(|(i, d)| Op::Nack(i, d)),
        1 => (1u8..15).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

/// What the model knows of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Open,
    Acked,
    Dead,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random appends, leases, acks, nacks, lease timeouts and restarts against a model: a
    /// lease returns a record that is neither acked nor dead nor validly leased elsewhere, with
    /// a delivery count one above the model's; acks of stale deliveries fail; in the end every
    /// record is acked exactly once or dead-lettered exactly once.
    #[test]
    fn queue_matches_the_model_across_restarts(ops in proptest::collection::vec(op(), 1..70)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let max = 3u32;
        let mut store = open(tmp.path());
        let mut q = store.queue("w", "jobs", opts(&clock, max)).expect("queue");
        let mut appended = 0u64;
        let mut deliveries: BTreeMap<u64, u32> = BTreeMap::new();
        let mut fate: BTreeMap<u64, Fate> = BTreeMap::new();
        let mut held: Vec<Delivery> = Vec::new();
        let mut acks: HashMap<u64, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Append(n) => {
                    for _ in 0..n {
                        store.topic("jobs").expect("topic").append(&appended.to_le_bytes()).expect("append");
                        fate.insert(appended, Fate::Open);
                        appended += 1;
                    }
                }
                Op::Lease => {
                    if let Some(d) = q.try_lease().expect("lease") {
                        let o = d.offset();
                        prop_assert_eq!(fate[&o], Fate::Open, "leased a finished record {}", o);
                        let before = deliveries.get(&o).copied().unwrap_or(0);
                        prop_assert_eq!(d.deliveries, before + 1);
                        deliveries.insert(o, d.deliveries);
                        held.push(d);
                    }
                }
                Op::Ack(i) if !held.is_empty() => {
                    let d = held.remove(i % held.len());
                    let newest = deliveries[&d.offset()] == d.deliveries && fate[&d.offset()] == Fate::Open;
                    match q.ack(&d) {
                        Ok(()) => {
                            prop_assert!(newest, "acked a stale delivery of {}", d.offset());
                            *acks.entry(d.offset()).or_default() += 1;
                            fate.insert(d.offset(), Fate::Acked);
                        }
                        Err(Error::Queue(QueueError::LeaseLost { .. })) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("ack: {e}"))),
                    }
                }
                Op::Nack(i, delay) if !held.is_empty() => {
                    let d = held.remove(i % held.len());
                    match q.nack(&d, Duration::from_secs(u64::from(delay))) {
                        Ok(()) => {
                            if d.deliveries >= max {
                                fate.insert(d.offset(), Fate::Dead);
                            }
                        }
                        Err(Error::Queue(QueueError::LeaseLost { .. })) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("nack: {e}"))),
                    }
                }
                Op::Ack(_) | Op::Nack(..) => {}
                Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(s))),
                Op::Restart => {
                    drop(q);
                    drop(store);
                    store = open(tmp.path());
                    q = store.queue("w", "jobs", opts(&clock, max)).expect("queue");
                    held.clear(); // their workers are gone
                }
            }
        }
        // Drain: let every lease run out, then ack whatever comes.
        loop {
            clock.advance(LEASE + Duration::from_secs(5));
            match q.try_lease().expect("lease") {
                Some(d) => {
                    prop_assert_eq!(fate[&d.offset()], Fate::Open);
                    q.ack(&d).expect("ack");
                    *acks.entry(d.offset()).or_default() += 1;
                    fate.insert(d.offset(), Fate::Acked);
                }
                None if q.stats().leased == 0 && q.stats().ready == 0 => break,
                None => {}
            }
        }
        let dead: Vec<u64> = match store.topic("jobs.dead") {
            Ok(t) => t
                .iter(0)
                .map(|r| {
                    let r = r.expect("record");
                    u64::from_le_bytes(r.payload().try_into().expect("8 bytes"))
                })
                .collect(),
            Err(e) => return Err(TestCaseError::fail(format!("dead topic: {e}"))),
        };
        let mut dead_sorted = dead.clone();
        dead_sorted.sort_unstable();
        dead_sorted.dedup();
        prop_assert_eq!(dead_sorted.len(), dead.len(), "a record dead-lettered twice");
        for o in 0..appended {
            let a = acks.get(&o).copied().unwrap_or(0);
            let d = dead.contains(&o);
            prop_assert!((a == 1) ^ d, "offset {} acked {} times, dead {}", o, a, d);
        }
    }
}

#[test]
fn lease_many_and_ack_many_share_one_write_and_ack_what_is_still_theirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    fill(&store, "jobs", 5);
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    let first = q.try_lease_many(3).expect("lease");
    assert_eq!(first.iter().map(Delivery::offset).collect::<Vec<_>>(), vec![0, 1, 2]);
    clock.advance(LEASE);
    // Their leases ran out; another worker takes 0 and 1 again (and the new 3).
    let second = q.try_lease_many(3).expect("lease");
    assert_eq!(second.iter().map(Delivery::offset).collect::<Vec<_>>(), vec![0, 1, 2]);
    let r = q.ack_many(&first);
    assert!(matches!(r, Err(Error::Queue(QueueError::LeaseLost { offset: 0, .. }))), "{r:?}");
    q.ack_many(&second).expect("the newest deliveries ack");
    let rest = q.try_lease_many(10).expect("lease");
    assert_eq!(rest.iter().map(Delivery::offset).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn a_queue_entry_that_does_not_parse_is_an_error_naming_the_key_never_skipped() {
    // Skipping it would hand the job out again (or never) without a word.
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let store = open(tmp.path());
        fill(&store, "jobs", 2);
        let q = store.queue("w", "jobs", QueueOptions::default()).expect("queue");
        q.try_lease().expect("lease").expect("job");
    }
    {
        let db = sled::open(tmp.path().join("consumers")).expect("sled");
        let tree = db.open_tree("queue:jobs:w").expect("tree");
        tree.insert(0u64.to_be_bytes(), &[9u8; 5][..]).expect("insert");
        db.flush().expect("flush");
    }
    let store = open(tmp.path());
    let err = store.queue("w", "jobs", QueueOptions::default()).expect_err("corrupt entry");
    assert!(err.is_corruption(), "{err:?}");
    assert!(err.to_string().contains("queue:jobs:w"), "{err}");
}

#[test]
fn a_scheduled_job_is_not_leased_before_its_time_and_is_leased_at_it_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000));
    {
        let store = open(tmp.path());
        let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
        q.push_at(&NewRecord::new(b"in an hour"), 1_000 + 3_600_000).expect("push");
        q.push_at(&NewRecord::new(b"overdue"), 500).expect("push");
        q.push_after(&NewRecord::new(b"in a minute"), Duration::from_secs(60)).expect("push");
        q.push(&NewRecord::new(b"now")).expect("push");
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.try_lease().expect("lease"))
            .map(|d| {
                q.ack(&d).expect("ack");
                d.record.payload().to_vec()
            })
            .collect();
        assert_eq!(got, vec![b"overdue".to_vec(), b"now".to_vec()], "a past time is delivered at once");
        assert_eq!(q.stats().scheduled, 2);
    }
    // Restarted: the parked jobs keep their times.
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    assert!(q.try_lease().expect("lease").is_none());
    clock.advance(Duration::from_secs(61));
    let d = q.try_lease().expect("lease").expect("due now");
    assert_eq!((d.record.payload(), d.deliveries), (&b"in a minute"[..], 1));
    q.ack(&d).expect("ack");
    assert!(q.try_lease().expect("lease").is_none(), "the far one waits");
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(q.try_lease().expect("lease").expect("due").record.payload(), b"in an hour");
}

#[test]
fn a_blocking_lease_wakes_for_a_scheduled_job_when_it_is_due() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let q = store.queue("w", "jobs", QueueOptions::default()).expect("queue");
    // Timed from before the push: its due time is counted from when it reads the clock, and a
    // durable push on a busy machine can take a while.
    let started = std::time::Instant::now();
    q.push_after(&NewRecord::new(b"soon"), Duration::from_millis(50)).expect("push");
    let d = q.lease(Duration::from_secs(10)).expect("lease").expect("woken for it");
    assert_eq!(d.record.payload(), b"soon");
    assert!(started.elapsed() >= Duration::from_millis(45), "not before its time: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "woken when due, not at the timeout");
}

#[test]
fn many_scheduled_jobs_do_not_stand_in_front_of_due_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let clock = Arc::new(ManualClock::new(1_000));
    let q = store.queue("w", "jobs", opts(&clock, 5)).expect("queue");
    // An hour from now by the wall clock, which `queue_infos` counts by (and far in the future
    // of the queue's manual clock).
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
        + 3_600_000;
    for i in 0..10_000i64 {
        q.push_at(&NewRecord::new(b"later"), later + i).expect("push");
    }
    q.push(&NewRecord::new(b"now")).expect("push");
    let d = q.try_lease().expect("lease").expect("the due one");
    assert_eq!(d.record.payload(), b"now");
    let info = store.queue_infos("jobs").expect("infos");
    assert_eq!((info[0].group.as_str(), info[0].scheduled), ("w", 10_000));
}
