use super::*;
use crate::store::StoreOptions;
use std::path::Path;

#[test]
fn entries_written_without_their_cursor_count_as_delivered_after_a_crash() {
    // `persist::apply` writes a lease's entries before its cursor, one sled write each; a
    // crash in between leaves entries at or past the saved cursor. Those records were
    // delivered: the reopened queue must redeliver them with a higher count, not deliver
    // them as new, and must not skip the record after them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let topic = store.topic("jobs").expect("topic");
    for p in [b"a", b"b", b"c"] {
        topic.append(p).expect("append");
    }
    let entry = QueueEntry { deliveries: 1, ready_at_ms: 0 };
    let db = &store.inner().state;
    persist::write_legacy(db, &persist::tree(db, "jobs", "workers").expect("tree"), None, &[(0, entry), (1, entry)]);
    let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
    let got: Vec<(u64, u32)> =
        (0..3).map(|_| q.try_lease().expect("lease").expect("a record")).map(|d| (d.offset(), d.deliveries)).collect();
    assert_eq!(got, vec![(0, 2), (1, 2), (2, 1)]);
    assert!(q.try_lease().expect("lease").is_none());
}

fn jobs(tmp: &Path, n: usize) -> Store {
    let store = Store::open(tmp, StoreOptions::default()).expect("store");
    let topic = store.topic("jobs").expect("topic");
    for i in 0..n {
        topic.append(format!("job {i}").as_bytes()).expect("append");
    }
    store
}

fn lazy() -> QueueOptions {
    QueueOptions { durability: CommitDurability::Lazy, ..QueueOptions::default() }
}

#[test]
fn thousands_of_leases_and_out_of_order_acks_leave_a_handful_of_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = jobs(tmp.path(), 5_000);
    let q = store.queue("workers", "jobs", lazy()).expect("queue");
    // Acks in batches of 100 taken out of order, one record held back until the end.
    let held = q.try_lease().expect("lease").expect("a job");
    loop {
        let mut got = q.try_lease_many(100).expect("lease");
        if got.is_empty() {
            break;
        }
        got.reverse();
        q.ack_many(&got).expect("ack");
    }
    let db = &store.inner().state;
    let tree = persist::tree(db, "jobs", "workers").expect("tree");
    // The head, and the ack chunks above the held record (5,000 bits in 5 chunks).
    assert!(persist::key_count(db, &tree) <= 6, "{} keys", persist::key_count(db, &tree));
    q.ack(&held).expect("ack");
    // The head, and the chunk the floor (5,000) is in.
    assert_eq!(
        persist::key_count(db, &tree),
        2,
        "only the head and the floor's chunk are left once every job is acked"
    );
    drop(q);
    let q = store.queue("workers", "jobs", lazy()).expect("reopen");
    assert!(q.try_lease().expect("lease").is_none(), "no acked job comes back");
}

#[test]
fn a_queue_in_the_older_per_entry_layout_opens_with_its_jobs_and_is_rewritten_compactly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = jobs(tmp.path(), 12);
    let db = &store.inner().state;
    let tree = persist::tree(db, "jobs", "workers").expect("tree");
    // Delivered up to 10; 3 was delivered twice and nacked far into the future, 7 once.
    let later = QueueEntry { deliveries: 2, ready_at_ms: i64::MAX / 2 };
    let once = QueueEntry { deliveries: 1, ready_at_ms: 0 };
    persist::write_legacy(db, &tree, Some(10), &[(3, later), (7, once)]);
    for expected in [[(7, 2), (10, 1), (11, 1)], [(7, 3), (10, 2), (11, 2)]] {
        let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
        let got: Vec<(u64, u32)> =
            std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
        assert_eq!(got, expected);
        assert_eq!(q.stats().ready, 1, "3 waits for its delay");
        // Closed without acking: the next open sees the compact layout with the same jobs.
        drop(q);
        let saved = persist::load(db, &tree).expect("load");
        assert_eq!((saved.head, saved.legacy_cursor), (Some((3, 12)), None));
    }
}

#[test]
fn a_crash_after_an_acks_head_and_before_its_entry_removal_redelivers_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = jobs(tmp.path(), 3);
    let db = &store.inner().state;
    let tree = persist::tree(db, "jobs", "workers").expect("tree");
    // As an ack of 0 (delivered twice, so with an entry) leaves things when it is cut after
    // the head: floor 1, and 0's entry still there.
    let twice = QueueEntry { deliveries: 2, ready_at_ms: 0 };
    let w = QueueWrites { entries: vec![(0, twice)], head: Some((1, 2)), ..QueueWrites::default() };
    persist::apply(db, &tree, &w).expect("apply");
    let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
    let got: Vec<(u64, u32)> =
        std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
    assert_eq!(got, vec![(1, 2), (2, 1)], "1 was delivered once before; 0 is finished");
    assert!(persist::load(db, &tree).expect("load").entries.iter().all(|(o, _)| *o != 0), "0's entry removed");
}

#[test]
fn a_set_ack_bit_above_the_floor_outweighs_the_entry_it_was_to_remove() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = jobs(tmp.path(), 3);
    let db = &store.inner().state;
    let tree = persist::tree(db, "jobs", "workers").expect("tree");
    // 0 and 1 delivered; 1 (with an entry) acked, cut before its entry was removed.
    let mut bits = [0u8; crate::format::state::QUEUE_ACK_CHUNK_LEN];
    bits[0] = 0b10;
    let w = QueueWrites {
        entries: vec![(1, QueueEntry { deliveries: 3, ready_at_ms: 0 })],
        ack_chunks: vec![(0, bits)],
        head: Some((0, 2)),
        ..QueueWrites::default()
    };
    persist::apply(db, &tree, &w).expect("apply");
    let q = store.queue("workers", "jobs", QueueOptions::default()).expect("queue");
    let got: Vec<(u64, u32)> =
        std::iter::from_fn(|| q.try_lease().expect("lease")).map(|d| (d.offset(), d.deliveries)).collect();
    assert_eq!(got, vec![(0, 2), (2, 1)]);
}
