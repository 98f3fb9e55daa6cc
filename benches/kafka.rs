//! Forwarding throughput against a bare rdkafka producer sending the same records to the same
//! broker (feature `kafka`). Starts tansu itself (on PATH, or `TANSU`) with sqlite storage in a
//! temporary directory; prints a markdown table.
//!
//! `cargo bench --features kafka --bench kafka`

use evlog::kafka::{Forwarder, ForwarderOptions};
use evlog::{Durability, NewRecord, Options, Store, StoreOptions};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const RECORDS: u64 = 20_000;

fn main() {
    let tansu = std::env::var_os("TANSU").unwrap_or_else(|| "tansu".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("tcp://127.0.0.1:{port}");
    let brokers = format!("127.0.0.1:{port}");
    let mut broker = Command::new(&tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let mut lines = BufReader::new(broker.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        if line.expect("output").contains("ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    for t in ["bare", "forwarded"] {
        let ok = Command::new(&tansu)
            .args(["topic", "create", t, "--partitions", "3", "--broker", &url])
            .current_dir(dir.path())
            .status()
            .expect("topic create");
        assert!(ok.success());
    }
    let keys: Vec<String> = (0..50).map(|k| format!("customer-{k}")).collect();
    let payload = [7u8; 100];

    // Bare producer: same settings the forwarder uses, same records.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let t = Instant::now();
    for i in 0..RECORDS {
        let key = &keys[(i % 50) as usize];
        let p = evlog::kafka::partition_for(Some(key.as_bytes()), i, 3) as i32;
        let mut rec = BaseRecord::<[u8], [u8]>::to("bare").key(key.as_bytes()).payload(&payload[..]).partition(p);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let bare = RECORDS as f64 / t.elapsed().as_secs_f64();

    let root = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(root.path(), StoreOptions::with_log(Options::with_durability(Durability::Os))).expect("store");
    let topic = store.topic("orders").expect("topic");
    for i in 0..RECORDS {
        topic.append_record(&NewRecord::new(&payload).key(keys[(i % 50) as usize].as_bytes())).expect("append");
    }
    let t = Instant::now();
    let mut f = Forwarder::start(&store, "orders", ForwarderOptions::new(&brokers, "forwarded")).expect("forwarder");
    let stats = f.run(&AtomicBool::new(false), true, |_| {}).expect("run");
    assert_eq!(stats.forwarded, RECORDS);
    let forwarded = RECORDS as f64 / t.elapsed().as_secs_f64();

    println!("| what | records/s |");
    println!("|---|---|");
    println!("| bare rdkafka producer (idempotent, acks=all), {RECORDS} × 100 B | {bare:.0} |");
    println!(
        "| evlog Forwarder, same records, incl. start and the durable group commits | {forwarded:.0} = {:.2}× bare |",
        forwarded / bare
    );
    let _ = broker.kill();
    let _ = broker.wait();
}
