//! A process that appends keyed records and compacts, over and over, is killed with SIGKILL
//! again and again (at different points, compactions included). After every kill the log opens,
//! every record in it is valid, and the newest acknowledged record of every key is there.
//!
//! The test binary re-runs itself as the child (selected by an environment variable).

mod common;

use evlog::log::CompactOptions;
use evlog::{Durability, Log, NewRecord};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

const CHILD_DIR: &str = "EVLOG_KILL_COMPACTION_DIR";
const TEST: &str = "a_killed_compaction_never_loses_the_newest_record_of_a_key";
const KEYS: u64 = 37;

fn open(dir: &Path) -> Log {
    Log::open(dir, common::small_log(Durability::Os, 16 << 10, 1024)).expect("open")
}

fn payload(key: u64, n: u64) -> Vec<u8> {
    format!("key {key} value {n} {}", "p".repeat((n % 50) as usize)).into_bytes()
}

/// Appends and compacts until killed; prints each acknowledged append.
fn child(dir: &Path) {
    let log = open(dir);
    let mut out = std::io::stdout().lock();
    let mut n = log.next_offset();
    loop {
        for _ in 0..300 {
            let key = n % KEYS;
            let k = format!("k{key}");
            let o = log.append_record(&NewRecord::new(&payload(key, n)).key(k.as_bytes())).expect("append");
            writeln!(out, "appended {o} {key} {n}").expect("stdout");
            n += 1;
        }
        out.flush().expect("flush");
        log.compact(&CompactOptions::default()).expect("compact");
        writeln!(out, "compacted").expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn a_killed_compaction_never_loses_the_newest_record_of_a_key() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // Newest acknowledged (offset, payload) per key.
    let mut newest: HashMap<u64, (u64, Vec<u8>)> = HashMap::new();
    let mut compactions = 0;
    for round in 0..25u64 {
        let mut child = common::spawn_child(TEST, &[(CHILD_DIR, tmp.path().as_os_str())]);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Kill after a different number of lines each round: some during appends, some during
        // the compaction that follows a batch.
        let wanted = 150 + (round * 97) % 600;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["appended", o, key, n] => {
                    let (o, key, n) = (o.parse().expect("o"), key.parse().expect("key"), n.parse().expect("n"));
                    newest.insert(key, (o, payload(key, n)));
                }
                ["compacted"] => compactions += 1,
                _ => continue, // the test harness's own lines
            }
            seen += 1;
            if seen >= wanted {
                break;
            }
        }
        child.kill().expect("kill");
        child.wait().expect("wait");
        let log = open(tmp.path());
        for r in log.iter(0) {
            r.unwrap_or_else(|e| panic!("round {round}: a record does not read back: {e}"));
        }
        for (key, (o, p)) in &newest {
            let r =
                log.read(*o).expect("read").unwrap_or_else(|| panic!("round {round}: key {key}'s newest ({o}) lost"));
            assert_eq!(r.payload(), &p[..], "round {round}: key {key}");
        }
    }
    assert!(compactions > 5, "only {compactions} compactions finished: kills land too early");
}
