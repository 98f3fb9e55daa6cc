//! Crash loop with real processes.
//!
//! A writer process appends (single records and atomic batches; `Always` or `Interval`), rolls
//! small segments, commits a consumer group and runs retention, and reports every acknowledged
//! record on its stdout. The parent SIGKILLs it at pseudo-random moments, then reopens the store
//! and checks: every acknowledged record still in the log is there, byte-identical, once; offsets
//! are contiguous; the committed offset never goes back and never passes the end. Meanwhile a
//! read-only reader process tails the log; nothing it ever shows may differ from the log.
//!
//! 60 kills by default; `EVLOG_CRASH_KILLS=1000 cargo test --release --test crash_loop` for a
//! long run. Both children are this test binary, selected by an environment variable. Writers
//! alternate between the mapped write path and pwrite (by pid parity).

mod common;

use evlog::log::WritePath;
use evlog::store::RetentionOptions;
use evlog::{ConsumerOptions, Durability, Log, NewRecord, Options, Store, StoreOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROLE: &str = "EVLOG_CRASH_ROLE";
const DIR: &str = "EVLOG_CRASH_DIR";
const TEST: &str = "writer_kill_loop_never_loses_or_changes_an_acknowledged_record";

fn log_options() -> Options {
    // Writer processes alternate (by pid parity) between the mapped write path (`Interval`:
    // maps serve `Os` and `Interval`) and `pwrite` (`Always`), so the loop covers both and logs
    // written by one and continued by the other. A kill keeps the page cache, so every
    // acknowledged record must survive either way.
    let mut o = if std::process::id().is_multiple_of(2) {
        Options::with_durability(Durability::Interval(Duration::from_millis(20)))
    } else {
        Options::with_durability(Durability::Always)
    };
    o.write_path = WritePath::Auto;
    o.segment_bytes_max = 8 << 10;
    o.record_bytes_max = 1024;
    o.index_interval_bytes = 512;
    o.checkpoint_interval_bytes = 4 << 10;
    // Write-back behind the writer (map path) after every page, so kills land while pages are
    // being unmapped and handed to the disk.
    o.write_back_interval_bytes = 4096;
    o
}

fn open_store(dir: &Path) -> Store {
    let mut opts = StoreOptions::with_log(log_options());
    opts.retention = RetentionOptions { retention_bytes_max: Some(64 << 10), ..RetentionOptions::default() };
    Store::open(dir, opts).expect("store")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The writer child: appends forever, reporting what was acknowledged.
fn writer(dir: &Path) {
    let store = open_store(dir);
    let topic = store.topic("t").expect("topic");
    let pid = std::process::id();
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut consumer = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    for i in 0u64.. {
        let payloads: Vec<Vec<u8>> = (0..if i % 4 == 0 { 3 } else { 1 })
            .map(|k| format!("{pid}-{i}-{k}-{}", "p".repeat(((i * 7 + k) % 200) as usize)).into_bytes())
            .collect();
        let records: Vec<NewRecord<'_>> = payloads.iter().map(|p| NewRecord::new(p)).collect();
        let range = topic.append_batch(&records).expect("append");
        for (o, p) in range.clone().zip(&payloads) {
            writeln!(out, "ack {o} {}", hex(p)).expect("pipe");
        }
        if i % 10 == 9 {
            let target = range.end.saturating_sub(5).max(consumer.position());
            consumer.seek(target).expect("seek");
            consumer.commit().expect("commit");
            writeln!(out, "commit {target}").expect("pipe");
        }
        if i % 25 == 24 {
            store.enforce_retention("t").expect("retention");
        }
        out.flush().expect("flush");
    }
}

/// The reader child: tails the log read-only and prints everything it sees.
fn reader(dir: &Path) {
    let path = dir.join("topics").join("t");
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut next = 0u64;
    loop {
        let log = match Log::open_read_only(&path, log_options()) {
            Ok(l) => l,
            Err(e) => {
                writeln!(out, "readerr {e}").expect("pipe");
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        };
        let mut it = log.iter(next);
        loop {
            match it.next() {
                Some(Ok(r)) => {
                    next = r.offset() + 1;
                    writeln!(out, "read {} {}", r.offset(), hex(r.payload())).expect("pipe");
                }
                Some(Err(e)) => {
                    // A segment removed by retention under us, or a roll in progress: reopen.
                    writeln!(out, "readerr {e}").expect("pipe");
                    break;
                }
                None => {
                    out.flush().expect("flush");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

fn spawn(role: &str, dir: &Path) -> Child {
    common::spawn_child(TEST, &[(ROLE, role.as_ref()), (DIR, dir.as_os_str())])
}

/// (offset, payload) pairs the reader printed.
type Seen = Vec<(u64, Vec<u8>)>;

struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn writer_kill_loop_never_loses_or_changes_an_acknowledged_record() {
    if let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) {
        match role.as_str() {
            "writer" => writer(Path::new(&dir)),
            _ => reader(Path::new(&dir)),
        }
        return;
    }
    let kills: u64 = std::env::var("EVLOG_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().to_path_buf();
    drop(open_store(&dir).topic("t").expect("topic"));

    // The reader runs for the whole loop; a thread collects what it shows.
    let mut reader_child = spawn("reader", &dir);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let reader_thread = {
        let seen = seen.clone();
        let stdout = reader_child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("read ") {
                    let (o, p) = rest.split_once(' ').unwrap_or((rest, ""));
                    seen.lock().expect("seen").push((o.parse().expect("offset"), unhex(p)));
                }
            }
        })
    };

    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut acked: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut committed_floor = 0u64;
    let mut total_acked = 0u64;
    for round in 0..kills {
        let mut child = spawn("writer", &dir);
        let stdout = child.stdout.take().expect("stdout");
        let want = 1 + rng.next() % 120;
        let mut lines = BufReader::new(stdout).lines();
        let mut n = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("ack ") {
                let (o, p) = rest.split_once(' ').expect("ack line");
                acked.insert(o.parse().expect("offset"), unhex(p));
                total_acked += 1;
                n += 1;
                if n >= want {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");

        // Recover and check.
        let store = open_store(&dir);
        let topic = store.topic("t").expect("topic");
        let (first, next) = (topic.first_offset(), topic.next_offset());
        let max_acked = acked.keys().max().copied().unwrap_or(0);
        assert!(next > max_acked, "round {round}: acknowledged offset {max_acked} lost (end {next})");
        let mut expect_offset = first;
        let mut payloads = std::collections::HashSet::new();
        for r in topic.iter(0) {
            let r = r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(r.offset(), expect_offset, "round {round}: offsets are contiguous");
            expect_offset += 1;
            if let Some(p) = acked.get(&r.offset()) {
                assert_eq!(r.payload(), &p[..], "round {round}: offset {} changed", r.offset());
            }
            assert!(payloads.insert(r.payload().to_vec()), "round {round}: a record appears twice");
        }
        assert_eq!(expect_offset, next);
        acked.retain(|&o, _| o >= first);
        if let Some(g) = store.groups("t").expect("groups").first() {
            assert!(g.committed >= committed_floor, "round {round}: committed went back");
            assert!(g.committed <= next, "round {round}: committed past the end");
            committed_floor = g.committed;
        }
    }

    // The reader never showed anything that differs from the log (or from what was acked).
    reader_child.kill().expect("kill reader");
    reader_child.wait().expect("wait reader");
    reader_thread.join().expect("reader thread");
    let store = open_store(&dir);
    let topic = store.topic("t").expect("topic");
    let seen = seen.lock().expect("seen");
    assert!(!seen.is_empty(), "the reader saw records");
    let first = topic.first_offset();
    for (o, p) in seen.iter().filter(|(o, _)| *o >= first) {
        let r = topic.read(*o).expect("read").expect("present");
        assert_eq!(r.payload(), &p[..], "the reader saw offset {o} differently");
    }
    eprintln!(
        "crash loop: {kills} kills, {total_acked} acknowledged records, lost 0, duplicated 0; reader showed {} records",
        seen.len()
    );
}
