//! A work-queue worker process is killed with SIGKILL again and again. Acked jobs are never
//! delivered again, every redelivery carries a higher count, and with an idempotent producer for
//! its output every job's effect lands exactly once.
//!
//! The test binary re-runs itself as the child (selected by an environment variable).

mod common;

use evlog::{Durability, NewRecord, QueueOptions, Store};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

const JOBS: u64 = 300;
const CHILD_DIR: &str = "EVLOG_KILL_QUEUE_DIR";
const TEST: &str = "a_killed_worker_never_gets_an_acked_job_again_and_each_effect_lands_once";

fn store(dir: &Path) -> Store {
    common::store_with(dir, common::small_log(Durability::Always, 8192, 1024))
}

/// Works until the queue is idle; reports each delivery and each ack on stdout.
fn child(dir: &Path) {
    let store = store(dir);
    let mut o = QueueOptions::default();
    o.deliveries_max = 1000;
    let queue = store.queue("workers", "jobs", o).expect("queue");
    let results = store.producer("results", "worker").expect("producer");
    let mut out = std::io::stdout().lock();
    while let Some(job) = queue.lease(Duration::from_millis(300)).expect("lease") {
        writeln!(out, "delivered {} {}", job.offset(), job.deliveries).expect("stdout");
        out.flush().expect("flush");
        // The job's effect: an output record, idempotent per job.
        results.send_with_sequence(job.offset(), &NewRecord::new(job.record.payload())).expect("send");
        queue.ack(&job).expect("ack");
        writeln!(out, "acked {}", job.offset()).expect("stdout");
        out.flush().expect("flush");
    }
    writeln!(out, "idle").expect("stdout");
}

#[test]
fn a_killed_worker_never_gets_an_acked_job_again_and_each_effect_lands_once() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = store(tmp.path());
        let t = s.topic("jobs").expect("topic");
        for i in 0..JOBS {
            t.append(format!("job {i}").as_bytes()).expect("append");
        }
    }
    let mut acked: HashSet<u64> = HashSet::new();
    let mut last_count: HashMap<u64, u32> = HashMap::new();
    let mut kills = 0;
    let mut idle = false;
    for round in 0..60u64 {
        let mut child = common::spawn_child(TEST, &[(CHILD_DIR, tmp.path().as_os_str())]);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Kill it after a different number of lines each round.
        let wanted = 3 + (round * 13) % 17;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            let mut words = line.split(' ');
            match (words.next(), words.next().and_then(|w| w.parse::<u64>().ok()), words.next()) {
                (Some("delivered"), Some(offset), Some(count)) => {
                    let count: u32 = count.parse().expect("count");
                    assert!(!acked.contains(&offset), "job {offset} delivered again after its ack");
                    let before = last_count.insert(offset, count).unwrap_or(0);
                    assert!(count > before, "job {offset}: delivery count {count} after {before}");
                }
                (Some("acked"), Some(offset), None) => {
                    acked.insert(offset);
                }
                (Some("idle"), None, None) => idle = true,
                _ => continue, // the test harness's own lines
            }
            seen += 1;
            if seen >= wanted || idle {
                break;
            }
        }
        if idle {
            let _ = child.wait();
            break;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
    }
    if !idle {
        child(tmp.path());
    }
    let s = store(tmp.path());
    let mut effects: Vec<String> = s
        .topic("results")
        .expect("topic")
        .iter(0)
        .map(|r| String::from_utf8(r.expect("record").payload().to_vec()).expect("utf-8"))
        .collect();
    assert_eq!(effects.len() as u64, JOBS, "each job's effect exactly once");
    effects.sort();
    effects.dedup();
    assert_eq!(effects.len() as u64, JOBS);
    let q = s.queue("workers", "jobs", QueueOptions::default()).expect("queue");
    assert!(q.try_lease().expect("lease").is_none(), "nothing left: every job was acked");
    assert!(kills >= 10, "only {kills} kills");
}
