//! A consumer process is killed with SIGKILL again and again while it applies records with
//! `commit_with`; the application state it leaves is exact: every record applied once.
//!
//! The test binary re-runs itself as the child (selected by an environment variable).

mod common;

use evlog::store::{Abort, StateTx};
use evlog::{ConsumerOptions, Durability, NewRecord, Store};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

const RECORDS: u64 = 600;
const KEYS: u64 = 7;
const CHILD_DIR: &str = "EVLOG_KILL_TEST_DIR";

fn store(dir: &Path) -> Store {
    common::store_with(dir, common::small_log(Durability::Always, 4096, 1024))
}

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
}

fn add(tx: &StateTx<'_>, key: &[u8], n: u64) -> Result<(), Abort> {
    let old = read_u64(tx.get(key)?);
    tx.insert(key, &(old + n).to_le_bytes())
}

/// Consumes in small batches; after each commit prints the running total.
fn child(dir: &Path) {
    let store = store(dir);
    let mut c = store.consumer("g", "events", ConsumerOptions::default()).expect("consumer");
    loop {
        let total = read_u64(store.state_get("balances", b"total").expect("get"));
        println!("committed {total}");
        if total >= RECORDS {
            return;
        }
        let batch = c.poll(5, Duration::from_millis(500)).expect("poll");
        c.commit_with("balances", |tx| {
            for r in &batch {
                add(tx, r.key().unwrap_or(b"?"), u64::from_le_bytes(r.payload().try_into().unwrap_or([0; 8])))?;
            }
            add(tx, b"total", batch.len() as u64)
        })
        .expect("commit_with");
    }
}

#[test]
fn committed_offsets_and_state_survive_kill_9_exactly_once() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = store(tmp.path());
        let t = s.topic("events").expect("topic");
        for i in 0..RECORDS {
            let key = format!("k{}", i % KEYS);
            t.append_record(&NewRecord::new(&1u64.to_le_bytes()).key(key.as_bytes())).expect("append");
        }
    }
    let mut kills = 0;
    let mut last_total = 0u64;
    for round in 0..40u64 {
        let mut child = common::spawn_child(
            "committed_offsets_and_state_survive_kill_9_exactly_once",
            &[(CHILD_DIR, tmp.path().as_os_str())],
        );
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Let it commit a few batches (a different number each round), then kill it.
        let wanted = 1 + (round * 7) % 5;
        let mut seen = 0;
        let mut done = false;
        while let Some(Ok(line)) = lines.next() {
            if let Some(total) = line.strip_prefix("committed ").and_then(|t| t.parse::<u64>().ok()) {
                assert!(total >= last_total, "the committed total went back from {last_total} to {total}");
                last_total = total;
                done = total >= RECORDS;
                seen += 1;
                if seen > wanted || done {
                    break;
                }
            }
        }
        if done {
            let _ = child.wait();
            break;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
    }
    // Finish in this process and check the state is exact.
    child(tmp.path());
    let s = store(tmp.path());
    assert_eq!(read_u64(s.state_get("balances", b"total").expect("get")), RECORDS);
    for k in 0..KEYS {
        let expected = (0..RECORDS).filter(|i| i % KEYS == k).count() as u64;
        let key = format!("k{k}");
        assert_eq!(read_u64(s.state_get("balances", key.as_bytes()).expect("get")), expected, "{key}");
    }
    assert_eq!(s.groups("events").expect("groups")[0].committed, RECORDS);
    assert!(kills >= 10, "only {kills} kills");
}
