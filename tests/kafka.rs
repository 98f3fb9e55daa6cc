//! Forwarding to Kafka and importing back, against a real Kafka-protocol broker (tansu, started
//! by the test on a free port with sqlite storage in a temporary directory). Feature `kafka`;
//! `tansu` must be on PATH (or named by `TANSU`); `.ci/run` installs it.
#![cfg(feature = "kafka")]

use evlog::kafka::{Forwarder, ForwarderOptions, Importer, ImporterOptions, SOURCE_HEADER, SourceMark, partition_for};
use evlog::{Durability, NewRecord, Options, Store, StoreOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// 20,000, not the 100,000 the issue asks for: tansu 0.6 serves a fetch in time proportional to
/// what follows the fetch offset in the partition (about 14 s from the start of a 10,000-record
/// partition here), so reading 100,000 records back would take many minutes. Forwarding itself
/// is not the limit (about 15,000 records/s).
const RECORDS: u64 = 20_000;
const KEYS: u64 = 50;
const PARTITIONS: u32 = 3;

fn tansu() -> PathBuf {
    std::env::var_os("TANSU").map_or_else(|| PathBuf::from("tansu"), PathBuf::from)
}

/// A tansu broker; killed (by process id) when dropped.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut b = Broker { dir: tempfile::tempdir().expect("tempdir"), port, child: None };
        b.up();
        b
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process and waits until it says it is ready.
    fn up(&mut self) {
        let mut child = Command::new(tansu())
            .args(["broker", "--listener-url", &self.url(), "--advertised-listener-url", &self.url()])
            // A relative sqlite path: tansu 0.6 misreads an absolute one.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (install it: cargo install tansu --locked --features dynostore,libsql)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        for line in lines.by_ref() {
            if line.expect("broker output").contains("ready") {
                break;
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker", &self.url()])
            .current_dir(self.dir.path())
            .output()
            .expect("tansu topic create");
        assert!(out.status.success(), "topic create: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

fn store(root: &Path) -> Store {
    Store::open(root, StoreOptions::with_log(Options::with_durability(Durability::Os))).expect("store")
}

/// A record read back from Kafka: (partition, Kafka offset, source offset, key, payload).
type Read = (i32, i64, u64, Vec<u8>, Vec<u8>);

/// Every record of every partition, with its source offset (from its `evlog.source` mark).
fn read_all(brokers: &str, topic: &str) -> Vec<Read> {
    read_records(brokers, topic)
        .into_iter()
        .map(|r| {
            let mark = r.headers.iter().find(|(k, _)| k == SOURCE_HEADER).map(|(_, v)| v.as_slice());
            let src = mark.and_then(SourceMark::decode).expect("source header").offset;
            (r.partition, r.offset, src, r.key, r.payload)
        })
        .collect()
}

/// A Kafka record as read back.
struct Fetched {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

/// Every record of every partition of `topic`, in partition then offset order.
fn read_records(brokers: &str, topic: &str) -> Vec<Fetched> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "evlog-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut out = Vec::new();
    for p in 0..PARTITIONS as i32 {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(lo)).expect("tpl");
        c.assign(&tpl).expect("assign");
        let (mut next, deadline) = (lo, Instant::now() + Duration::from_secs(300));
        while next < hi {
            assert!(Instant::now() < deadline, "reading {topic}/{p} timed out at {next} of {hi}");
            let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
            let m = m.expect("message");
            next = m.offset() + 1;
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            out.push(Fetched {
                partition: p,
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

fn evlog_child(root: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_evlog"))
        .args(["--dir", root.to_str().expect("utf-8")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evlog")
}

/// Runs `evlog --dir root ARGS` again and again, SIGKILLing it at varied moments once its first
/// line on stderr contains `started`, for up to `rounds` rounds or until a run finishes by
/// itself; `each_round` runs while the child is alive (e.g. to restart the broker). Then runs it
/// once more to the end, which must succeed. Returns how many times it was killed.
fn run_with_kills(root: &Path, args: &[&str], started: &str, rounds: u64, mut each_round: impl FnMut(u64)) -> u32 {
    let mut kills = 0;
    for round in 0..rounds {
        let mut child = evlog_child(root, args);
        // Wait until it has connected and is working, then let it run a little.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        std::thread::spawn(move || for _ in lines {});
        if !first.contains(started) {
            break; // it failed or finished; the final run below reports why
        }
        std::thread::sleep(Duration::from_millis(5 + (round * 17) % 60));
        each_round(round);
        if child.try_wait().expect("try_wait").is_some() {
            break; // it finished before the kill
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    let mut last = evlog_child(root, args);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut last.stderr.take().expect("stderr"), &mut log).expect("stderr");
    let status = last.wait().expect("final run");
    assert!(status.success(), "the last run of evlog {args:?} finishes: {log}");
    kills
}

#[test]
fn forwarding_through_kills_and_a_broker_restart_delivers_each_record_once_and_imports_back() {
    let mut broker = Broker::start();
    broker.create_topic("events", PARTITIONS);
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = store(tmp.path());
        let t = s.topic("orders").expect("topic");
        let mut batch = Vec::new();
        let keys: Vec<String> = (0..KEYS).map(|k| format!("customer-{k}")).collect();
        let payloads: Vec<Vec<u8>> = (0..RECORDS)
            .map(|i| {
                let mut p = i.to_le_bytes().to_vec();
                p.resize(100, b'.');
                p
            })
            .collect();
        for i in 0..RECORDS {
            batch.push(
                NewRecord::new(&payloads[i as usize])
                    .key(keys[(i % KEYS) as usize].as_bytes())
                    .timestamp(1_700_000_000_000 + i as i64),
            );
            if batch.len() == 1000 {
                t.append_batch(&batch).expect("append");
                batch.clear();
            }
        }
        t.sync().expect("sync");
    }

    // SIGKILL the forwarder at varied moments; restart the broker under a running forwarder once.
    let brokers = broker.brokers();
    let args = ["forward", "orders", "--brokers", &brokers, "--kafka-topic", "events", "--until-caught-up"];
    let kills = run_with_kills(tmp.path(), &args, "forwarding", 40, |round| {
        if round == 5 {
            broker.down();
            std::thread::sleep(Duration::from_millis(500));
            broker.up();
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    assert!(kills >= 10, "only {kills} kills");

    let all = read_all(&broker.brokers(), "events");
    let mut seen = vec![0u32; RECORDS as usize];
    let mut last_in_partition: HashMap<i32, u64> = HashMap::new();
    for (p, _, src, key, payload) in &all {
        seen[*src as usize] += 1;
        assert_eq!(u64::from_le_bytes(payload[..8].try_into().expect("8")), *src, "payload of {src}");
        assert_eq!(*p as u32, partition_for(Some(key), *src, PARTITIONS), "partition of {src}");
        // Per partition (so per key) the source order is kept.
        if let Some(prev) = last_in_partition.insert(*p, *src) {
            assert!(*src > prev, "partition {p}: {src} after {prev}");
        }
    }
    let dupes = seen.iter().filter(|&&n| n > 1).count();
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert_eq!((dupes, missing), (0, 0), "every record exactly once");

    // Import the topic back into a fresh store; a second run finds nothing new.
    let back = tempfile::tempdir().expect("tempdir");
    let s = store(back.path());
    let stop = AtomicBool::new(false);
    let mut imp = Importer::start(&s, "imported", ImporterOptions::new(&broker.brokers(), "events")).expect("import");
    assert_eq!(imp.run(&stop, true, |_, _| {}).expect("run"), RECORDS);
    drop(imp);
    let mut again = Importer::start(&s, "imported", ImporterOptions::new(&broker.brokers(), "events")).expect("import");
    assert_eq!(again.run(&stop, true, |_, _| {}).expect("run"), 0, "resumed from the local tail");
    let t = s.topic("imported").expect("topic");
    assert_eq!(t.next_offset(), RECORDS);
    let mut got = vec![false; RECORDS as usize];
    for r in t.iter(0) {
        let r = r.expect("record");
        let mark = SourceMark::decode(r.header(SOURCE_HEADER).expect("header")).expect("a source mark");
        let src = mark.offset;
        assert_eq!((mark.topic.as_str(), mark.timestamp), ("orders", 1_700_000_000_000 + src as i64));
        assert_eq!(u64::from_le_bytes(r.payload()[..8].try_into().expect("8")), src);
        assert_eq!(r.timestamp(), 1_700_000_000_000 + src as i64, "the event timestamp travels");
        got[src as usize] = true;
    }
    assert!(got.iter().all(|&g| g));
}

#[test]
fn unreachable_brokers_and_a_missing_topic_are_clear_errors_and_touch_nothing_local() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = store(tmp.path());
    s.topic("orders").expect("topic").append(b"x").expect("append");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut o = ForwarderOptions::new(&format!("127.0.0.1:{closed}"), "events");
    o.connect_timeout = Duration::from_secs(2);
    let e = Forwarder::start(&s, "orders", o).expect_err("nobody listens");
    assert!(e.to_string().contains("cannot reach"), "{e}");
    let mut o = ForwarderOptions::new(&broker.brokers(), "no-such-topic");
    o.connect_timeout = Duration::from_secs(5);
    let e = Forwarder::start(&s, "orders", o).expect_err("missing topic");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(s.groups("orders").expect("groups").is_empty(), "no group offset was written");
    assert_eq!(s.topic("orders").expect("topic").next_offset(), 1);

    // A record larger than the broker accepts (librdkafka's message.max.bytes, 1 MB by default).
    broker.create_topic("big", 1);
    s.topic("huge").expect("topic").append(&vec![1u8; 2 << 20]).expect("a 2 MiB record is fine locally");
    let mut f = Forwarder::start(&s, "huge", ForwarderOptions::new(&broker.brokers(), "big")).expect("start");
    let e = f.run(&AtomicBool::new(false), true, |_| {}).expect_err("too large for Kafka");
    assert!(e.to_string().contains("larger than the broker accepts"), "{e}");
    assert!(s.groups("huge").expect("groups").iter().all(|g| g.committed == 0), "not committed past it");
}

const CHAIN_RECORDS: u64 = 2_000;

#[test]
fn a_two_hop_chain_through_kills_keeps_each_hops_marks_its_own_and_every_record_once() {
    // evlog A forwards to Kafka X, evlog B imports X and forwards to Kafka Y, evlog C imports Y;
    // every hop is SIGKILLed at varied moments. Each hop must resume from its own marks, never
    // from an earlier hop's: Y holds every A record exactly once under B's mark only, and B and
    // C hold every record exactly once with exactly one mark of each kind.
    let broker = Broker::start();
    broker.create_topic("x", PARTITIONS);
    broker.create_topic("y", PARTITIONS);
    let (a, b, c) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"), tempfile::tempdir().expect("c"));
    let a_id = {
        let s = store(a.path());
        let t = s.topic("orders").expect("topic");
        let payloads: Vec<Vec<u8>> = (0..CHAIN_RECORDS).map(|i| i.to_le_bytes().to_vec()).collect();
        let keys: Vec<String> = (0..KEYS).map(|k| format!("customer-{k}")).collect();
        let batch: Vec<NewRecord<'_>> = (0..CHAIN_RECORDS as usize)
            .map(|i| NewRecord::new(&payloads[i]).key(keys[i % KEYS as usize].as_bytes()).timestamp(i as i64))
            .collect();
        t.append_batch(&batch).expect("append");
        t.sync().expect("sync");
        s.id().expect("id")
    };
    let brokers = broker.brokers();
    let hop = |root: &Path, args: &[&str], started: &str| {
        let kills = run_with_kills(root, args, started, 12, |_| {});
        assert!(kills >= 2, "{args:?}: only {kills} kills");
    };
    hop(
        a.path(),
        &["forward", "orders", "--brokers", &brokers, "--kafka-topic", "x", "--until-caught-up"],
        "forwarding",
    );
    hop(b.path(), &["import", "orders", "--brokers", &brokers, "--kafka-topic", "x", "--until-caught-up"], "importing");
    hop(
        b.path(),
        &["forward", "orders", "--brokers", &brokers, "--kafka-topic", "y", "--until-caught-up"],
        "forwarding",
    );
    hop(c.path(), &["import", "orders", "--brokers", &brokers, "--kafka-topic", "y", "--until-caught-up"], "importing");

    let source_of = |payload: &[u8]| u64::from_le_bytes(payload.try_into().expect("an 8-byte payload"));
    let count = |headers: &[(&str, &[u8])], name: &str| headers.iter().filter(|(n, _)| *n == name).count();
    // B: every A record once, with A's mark and exactly one import mark.
    let b_id = {
        let s = store(b.path());
        let mut seen = vec![0u32; CHAIN_RECORDS as usize];
        for r in s.topic("orders").expect("topic").iter(0) {
            let r = r.expect("record");
            seen[source_of(r.payload()) as usize] += 1;
            let h: Vec<(&str, &[u8])> = r.headers().collect();
            assert_eq!(
                (count(&h, SOURCE_HEADER), count(&h, "kafka.partition"), count(&h, "kafka.offset")),
                (1, 1, 1),
                "{h:?}"
            );
            let mark = SourceMark::decode(r.header(SOURCE_HEADER).expect("mark")).expect("a source mark");
            assert_eq!(mark.store, a_id, "B keeps A's mark: where the event came from");
        }
        assert!(seen.iter().all(|&n| n == 1), "B holds every A record exactly once");
        s.id().expect("id")
    };
    // Y: every record once, each with exactly one header: B's mark, in B's offset order per partition.
    let y = read_records(&brokers, "y");
    let mut seen = vec![0u32; CHAIN_RECORDS as usize];
    let mut last: HashMap<i32, u64> = HashMap::new();
    for Fetched { partition: p, headers, payload, .. } in &y {
        seen[source_of(payload) as usize] += 1;
        assert_eq!(headers.len(), 1, "only B's own mark travels on: {headers:?}");
        let mark = SourceMark::decode(&headers[0].1).expect("a source mark");
        assert_eq!((headers[0].0.as_str(), mark.store.as_str()), (SOURCE_HEADER, b_id.as_str()));
        if let Some(prev) = last.insert(*p, mark.offset) {
            assert!(mark.offset > prev, "partition {p}: B offset {} after {prev}", mark.offset);
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "Y holds every record exactly once");
    // C: every record once; its import marks are Y's partition and offset, one of each.
    let s = store(c.path());
    let y_positions: std::collections::HashSet<(u32, i64)> = y.iter().map(|r| (r.partition as u32, r.offset)).collect();
    let mut seen = vec![0u32; CHAIN_RECORDS as usize];
    for r in s.topic("orders").expect("topic").iter(0) {
        let r = r.expect("record");
        seen[source_of(r.payload()) as usize] += 1;
        let h: Vec<(&str, &[u8])> = r.headers().collect();
        assert_eq!((count(&h, "kafka.partition"), count(&h, "kafka.offset")), (1, 1), "{h:?}");
        let p = u32::from_le_bytes(r.header("kafka.partition").expect("p").try_into().expect("4"));
        let o = i64::from_le_bytes(r.header("kafka.offset").expect("o").try_into().expect("8"));
        assert!(y_positions.contains(&(p, o)), "C's marks name Y: ({p}, {o})");
    }
    assert!(seen.iter().all(|&n| n == 1), "C holds every record exactly once");
}

#[test]
fn the_kafka_marks_are_the_ones_format_md_specifies() {
    let spec = include_str!("../FORMAT.md");
    let names: Vec<&str> = spec
        .lines()
        .skip_while(|l| !l.starts_with("The Kafka bridge"))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| row.split('|').nth(1).expect("name cell").trim().trim_matches('`'))
        .collect();
    assert_eq!(names, [SOURCE_HEADER, evlog::kafka::KAFKA_PARTITION_HEADER, evlog::kafka::KAFKA_OFFSET_HEADER]);
}
