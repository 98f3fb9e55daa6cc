//! `evlog demo`: what evlog is for, in one command.
//!
//! 1. A child process runs four producer threads appending events whose timestamps are out of
//!    order (`Durability::Always`), and a consumer group committing as it goes; it reports every
//!    acknowledged event. The demo SIGKILLs it in the middle.
//! 2. The demo reopens the store, prints the recovery report and checks every acknowledged event
//!    is there, once.
//! 3. The consumer group resumes from its committed offset and finishes.
//! 4. The history is replayed in timestamp order.

use crate::commands::CmdResult;
use evlog::{ConsumerOptions, Durability, NewRecord, Options, Store, StoreOptions};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 4;
const TOPIC: &str = "sensor-readings";
const GROUP: &str = "dashboard";

fn store(dir: &Path) -> Result<Store, String> {
    let mut log = Options::with_durability(Durability::Always);
    log.segment_bytes_max = 256 << 10;
    log.record_bytes_max = 64 << 10;
    Store::open(dir, StoreOptions::with_log(log)).map_err(|e| e.to_string())
}

/// The child: producers and a consumer until killed.
fn child(dir: &Path) -> CmdResult {
    let store = store(dir)?;
    let topic = store.topic(TOPIC).map_err(|e| e.to_string())?;
    let base = 1_800_000_000_000i64;
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let topic = topic.clone();
            s.spawn(move || {
                for i in 0u64.. {
                    // Each producer's clock is skewed and some readings arrive late.
                    let ts = base + (i * 10) as i64 - (p as i64 * 37) - if i % 7 == 0 { 500 } else { 0 };
                    let payload = format!("device-{p} reading {i}");
                    let key = format!("device-{p}");
                    let Ok(o) =
                        topic.append_record(&NewRecord::new(payload.as_bytes()).timestamp(ts).key(key.as_bytes()))
                    else {
                        return;
                    };
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {o} {payload}");
                    let _ = out.flush();
                }
            });
        }
        let store = store.clone();
        s.spawn(move || {
            let Ok(mut c) = store.consumer(GROUP, TOPIC, ConsumerOptions::default()) else { return };
            loop {
                if c.poll(50, Duration::from_millis(100)).is_err() || c.commit().is_err() {
                    return;
                }
            }
        });
    });
    Ok(ExitCode::SUCCESS)
}

pub fn run(dir: Option<&Path>, is_child: bool) -> CmdResult {
    let (dir, _tmp): (PathBuf, Option<TempDir>) = match dir {
        Some(d) => (d.to_path_buf(), None),
        None => {
            let t = TempDir::new()?;
            (t.0.clone(), Some(t))
        }
    };
    if is_child {
        return child(&dir);
    }
    println!("evlog demo in {}", dir.display());
    println!(
        "1. a child process: {PRODUCERS} producers append out-of-order sensor readings durably; a consumer group commits as it reads"
    );
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the evlog binary: {e}"))?;
    let started = Instant::now();
    let mut proc = Command::new(exe)
        .arg("--dir")
        .arg(&dir)
        .args(["demo", "--child"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the child process: {e}"))?;
    let stdout = proc.stdout.take().ok_or("no child stdout")?;
    let mut acked: Vec<(u64, String)> = Vec::new();
    let bar = indicatif::ProgressBar::new(4000);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some((o, p)) = line.strip_prefix("ack ").and_then(|r| r.split_once(' ')) {
            acked.push((o.parse().map_err(|_| "bad child output")?, p.to_string()));
            bar.inc(1);
        }
        if acked.len() >= 4000 {
            break;
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    proc.kill().map_err(|e| format!("kill: {e}"))?;
    let _ = proc.wait();
    println!(
        "   {} events acknowledged in {secs:.2} s ({:.0} durable appends/s), then the child got SIGKILL",
        acked.len(),
        acked.len() as f64 / secs
    );

    println!("2. reopen and recover");
    let store = store(&dir)?;
    let topic = store.topic(TOPIC).map_err(|e| e.to_string())?;
    let r = topic.recovery_report();
    println!(
        "   recovery: checkpoint used {}, scanned {} bytes / {} records, torn tail cut {} bytes ({} unacknowledged records), preallocated zeros {} bytes",
        r.checkpoint_used, r.scanned_bytes, r.scanned_records, r.truncated_bytes, r.dropped_records, r.zero_tail_bytes
    );
    let mut lost = 0;
    for (o, p) in &acked {
        match topic.read(*o) {
            Ok(Some(rec)) if rec.payload() == p.as_bytes() => {}
            _ => lost += 1,
        }
    }
    let mut payloads = HashSet::new();
    let mut duplicated = 0;
    for rec in topic.iter(0) {
        let rec = rec.map_err(|e| e.to_string())?;
        if !payloads.insert(rec.payload().to_vec()) {
            duplicated += 1;
        }
    }
    let recovered = payloads.len();
    println!(
        "   {recovered} events in the log; of the {} acknowledged: lost {lost}, duplicated {duplicated}",
        acked.len()
    );

    println!("3. the consumer group resumes from its committed offset");
    let mut c = store.consumer(GROUP, TOPIC, ConsumerOptions::default()).map_err(|e| e.to_string())?;
    let from = c.position();
    let mut consumed = 0;
    loop {
        let batch = c.poll(1000, Duration::ZERO).map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        consumed += batch.len();
        c.commit().map_err(|e| e.to_string())?;
    }
    println!("   resumed at offset {from}, processed the remaining {consumed} events, committed {:?}", c.committed());
    drop(c);

    println!("4. replay the history in timestamp order");
    let t = Instant::now();
    let mut replay = store.replay(&[TOPIC]).start().map_err(|e| e.to_string())?;
    let mut last = i64::MIN;
    let mut ordered = true;
    let mut n = 0;
    let mut first_events = Vec::new();
    for e in replay.by_ref() {
        let e = e.map_err(|e| e.to_string())?;
        ordered &= e.timestamp >= last;
        last = e.timestamp;
        if n < 5 {
            first_events.push(format!("{} @{} {}", e.offset, e.timestamp, String::from_utf8_lossy(&e.payload)));
        }
        n += 1;
    }
    for line in &first_events {
        println!("   {line}");
    }
    println!(
        "   … {n} events replayed in {:.1} ms, in timestamp order: {}",
        t.elapsed().as_secs_f64() * 1e3,
        if ordered { "yes" } else { "NO" }
    );

    println!();
    println!(
        "summary: acknowledged {}, recovered {recovered}, lost {lost}, duplicated {duplicated}, replay ordered {}",
        acked.len(),
        if ordered { "yes" } else { "no" }
    );
    Ok(if lost == 0 && duplicated == 0 && ordered { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A temporary directory removed on drop (no extra dependency for one directory).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!("evlog-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
