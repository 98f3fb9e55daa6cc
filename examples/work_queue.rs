//! A work queue shared by four worker threads, with priorities: jobs that fail are nacked and
//! retried, poison jobs end in the dead-letter topic with their reason.
//!
//! `cargo run --release --example work_queue`

use evlog::{NewRecord, QueueOptions, Store, StoreOptions};
use std::time::Duration;

fn main() -> Result<(), evlog::Error> {
    let root = std::env::temp_dir().join(format!("evlog-work-queue-{}", std::process::id()));
    let store = Store::open(&root, StoreOptions::default())?;
    let mut opts = QueueOptions::default();
    opts.deliveries_max = 3;
    let queue = store.priority_queue("workers", &["jobs.urgent", "jobs.batch"], opts)?;
    for i in 0..40 {
        // Every 13th job is poison: it always fails.
        let body = if i % 13 == 0 { format!("poison {i}") } else { format!("job {i}") };
        queue.push(usize::from(i % 4 != 0), &NewRecord::new(body.as_bytes()))?;
    }
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                s.spawn(move || -> Result<usize, evlog::Error> {
                    let mut done = 0;
                    while let Some(job) = queue.lease(Duration::from_millis(200))? {
                        if job.record.payload().starts_with(b"poison") {
                            queue.nack(&job, Duration::ZERO)?; // dead-lettered after the 3rd delivery
                        } else {
                            queue.ack(&job)?;
                            done += 1;
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker").expect("no storage error")).sum()
    });
    println!("done: {done} jobs");
    for lane in queue.lanes() {
        let dead = store.topic(lane.dead_letter_topic())?;
        for r in dead.iter(0) {
            let r = r?;
            println!(
                "dead letter from {}: {:?} because {:?}",
                lane.topic().name(),
                String::from_utf8_lossy(r.payload()),
                String::from_utf8_lossy(r.header(evlog::headers::DEAD_REASON_HEADER).unwrap_or_default())
            );
        }
    }
    drop(queue);
    drop(store);
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}
