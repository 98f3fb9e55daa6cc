//! `evlog serve` (the Kafka wire protocol) side by side with tansu, the peer (a
//! Kafka-compatible broker written in Rust, SQLite engine); prints a markdown table, one run.
//!
//! - **Python (confluent-kafka / librdkafka)**, the same script against both
//!   (`benches/serve/python_client.py`): an idempotent producer with `acks=all`, `linger.ms=5`,
//!   records of 100 B, timed to the last acknowledgement; then a consumer fetching them all.
//!   evlog serves its store under `Durability::Always` (every acknowledged batch fdatasynced).
//! - **Rust (rdkafka, the `kafka` feature's client)**: the same settings, evlog only.
//! - **Latency**: rdkafka at a steady 10,000 records/s for 5 s, `linger.ms=0` (a linger would be
//!   the latency), send → delivery report, p50 / p99 / max, under `Always`.
//! - **What the wire costs**: the same pre-encoded batches of 1,000 records sent over loopback with
//!   this crate's codec (5 requests in flight, as an idempotent producer may) against
//!   `Topic::append_batch` of the same records in process, both under `Always`.
//!
//! `cargo bench --features kafka --bench serve [-- <records>] [--no-tansu] [python|rust|latency|wire…]`
//! tansu: on PATH, or `TANSU=/path/to/tansu`; `cargo install tansu --locked --features
//! dynostore,libsql` (about 10 minutes). Without it, or without Python's confluent-kafka
//! (`pip install confluent-kafka`), those rows say so and the rest runs.

use bytes::{Bytes, BytesMut};
use evlog::serve::ServeOptions;
use evlog::{Durability, NewRecord, Options, Store, StoreOptions};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PAYLOAD: [u8; 100] = [0x5A; 100];
const PYTHON_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/serve/python_client.py");

fn main() {
    let records: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let with_tansu = !std::env::args().any(|a| a == "--no-tansu");
    // Rows to run, by name (python, rust, latency, wire); all when none is named.
    let named: Vec<String> =
        std::env::args().skip(1).filter(|a| ["python", "rust", "latency", "wire"].contains(&a.as_str())).collect();
    let run = |row: &str| named.is_empty() || named.iter().any(|n| n == row);
    let root = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(root.path(), StoreOptions::with_log(Options::with_durability(Durability::Always))).expect("store");
    let server = store.serve(ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)))).expect("serve");
    let evlog = server.local_addr().to_string();

    println!("| what | evlog serve (`Always`) | tansu 0.6 (SQLite) | ratio |");
    println!("|---|---|---|---|");
    if run("python") {
        python_rows(&evlog, records, with_tansu);
    }
    if run("rust") {
        for producers in [1, 2] {
            let rust = rdkafka_produce(&evlog, "rust", records * 2, producers);
            println!(
                "| rdkafka, {producers} producer(s) (a connection each), idempotent, acks=all, linger.ms=5, {} × 100 B | {rust:.0} records/s | | |",
                records * 2
            );
        }
    }
    if run("latency") {
        let (p50, p99, max) = steady_latency(&evlog, "steady", 10_000, Duration::from_secs(5));
        let s = store.topic("steady").expect("topic").stats();
        println!(
            "| produce latency at a steady 10,000 records/s (rdkafka, linger.ms=0), send → ack | p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} fsyncs: mean {:.2} ms, p99 ≤ {:.2} ms, max {:.2} ms, {:.1} records each) | | |",
            s.fsyncs,
            s.fsync_mean.as_secs_f64() * 1e3,
            s.fsync_latency.quantile(0.99).unwrap_or_default().as_secs_f64() * 1e3,
            s.fsync_max.as_secs_f64() * 1e3,
            s.synced_records as f64 / s.fsyncs.max(1) as f64
        );
    }
    if run("wire") {
        let (in_process, wire) = wire_cost(&store, server.local_addr(), records);
        println!("| `append_batch` of 1,000 records in process | {in_process:.0} records/s | | |");
        println!(
            "| the same batches over loopback (this crate's codec, 5 in flight) | {wire:.0} records/s = {:.2}× in process | | |",
            wire / in_process
        );
    }
    server.shutdown();
}

/// The Python client's produce and consume rates against evlog and (when it is there) tansu.
fn python_rows(evlog: &str, records: u64, with_tansu: bool) {
    let python_ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        println!("| Python confluent-kafka | not installed (`pip install confluent-kafka`) | | |");
        return;
    }
    let ours = (python(evlog, "produce", "py", records), python(evlog, "consume", "py", records));
    // tansu is an order of magnitude slower: a tenth of the records gives its rate in seconds.
    let tansu_records = (records / 10).max(10_000);
    let theirs = if with_tansu {
        Tansu::start().map(|t| (t.python("produce", tansu_records), t.python("consume", tansu_records)))
    } else {
        None
    };
    for (i, what) in ["produce (idempotent, acks=all, linger.ms=5)", "consume (Fetch)"].into_iter().enumerate() {
        let ours = if i == 0 { ours.0 } else { ours.1 };
        match theirs {
            Some(t) => {
                let theirs = if i == 0 { t.0 } else { t.1 };
                println!(
                    "| Python confluent-kafka, {what}, 100 B | {ours:.0} records/s ({records}) | {theirs:.0} records/s ({tansu_records}) | **{:.1}×** |",
                    ours / theirs
                );
            }
            None => println!("| Python confluent-kafka, {what}, 100 B | {ours:.0} records/s ({records}) | not run | |"),
        }
    }
}

/// Runs the Python client once; its rate in records/s.
fn python(bootstrap: &str, mode: &str, topic: &str, records: u64) -> f64 {
    let out = Command::new("python3")
        .args([PYTHON_CLIENT, mode, bootstrap, topic, &records.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    assert!(out.status.success(), "python client {mode} against {bootstrap} failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a rate")
}

/// A tansu broker with SQLite storage in a temporary directory, stopped when dropped.
struct Tansu {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Tansu {
    fn start() -> Option<Tansu> {
        let tansu = std::env::var_os("TANSU").unwrap_or_else(|| "tansu".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        lines.by_ref().map_while(Result::ok).find(|l| l.contains("ready"))?;
        std::thread::spawn(move || for _ in lines {});
        Some(Tansu { child, bootstrap: format!("127.0.0.1:{port}"), _dir: dir })
    }

    fn python(&self, mode: &str, records: u64) -> f64 {
        python(&self.bootstrap, mode, "py", records)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records each delivery's latency (send → report), from the send time carried as the opaque.
struct Latencies {
    started: Instant,
    micros: Mutex<Vec<u64>>,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_us: Self::DeliveryOpaque) {
        assert!(result.is_ok(), "a record was not delivered: {:?}", result.as_ref().err().map(|e| &e.0));
        let now = self.started.elapsed().as_micros() as u64;
        self.micros.lock().expect("latencies").push(now.saturating_sub(*sent_at_us));
        if let Ok(m) = result {
            assert!(m.offset() >= 0);
        }
    }
}

fn producer(bootstrap: &str, linger_ms: &str) -> ThreadedProducer<Latencies> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Latencies { started: Instant::now(), micros: Mutex::new(Vec::new()) })
        .expect("producer")
}

/// Sends one record, waiting while the client's queue is full.
fn send(p: &ThreadedProducer<Latencies>, topic: &str) {
    let at = p.context().started.elapsed().as_micros() as u64;
    let mut rec = BaseRecord::with_opaque_to(topic, Box::new(at)).payload(&PAYLOAD[..]).key(&[][..]).partition(0);
    loop {
        match p.send::<[u8], [u8]>(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                rec = back;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// rdkafka's produce rate: `records` sent by `producers` producers (one connection each, in
/// threads of their own) as fast as the client takes them, to the last acknowledgement.
fn rdkafka_produce(bootstrap: &str, topic: &str, records: u64, producers: u64) -> f64 {
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..producers {
            scope.spawn(|| {
                let p = producer(bootstrap, "5");
                let mine = records / producers;
                for _ in 0..mine {
                    send(&p, topic);
                }
                p.flush(Duration::from_secs(300)).expect("flush");
                assert_eq!(
                    p.context().micros.lock().expect("latencies").len() as u64,
                    mine,
                    "every record acknowledged"
                );
            });
        }
    });
    (records / producers * producers) as f64 / t.elapsed().as_secs_f64()
}

/// Send → acknowledgement latencies at a steady rate: p50, p99 and max in milliseconds.
fn steady_latency(bootstrap: &str, topic: &str, per_second: u64, for_how_long: Duration) -> (f64, f64, f64) {
    let p = producer(bootstrap, "0");
    // A warm-up record: the connection, the producer id and the topic's metadata.
    send(&p, topic);
    p.flush(Duration::from_secs(30)).expect("flush");
    p.context().micros.lock().expect("latencies").clear();
    let start = Instant::now();
    let total = per_second * for_how_long.as_secs();
    for i in 0..total {
        // Sleeping, not spinning: a spinning sender would take one of the two cores from the
        // client's and the server's threads. Records that came due during a sleep go at once.
        let due = start + Duration::from_nanos(i * 1_000_000_000 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send(&p, topic);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let mut v = std::mem::take(&mut *p.context().micros.lock().expect("latencies"));
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

/// In-process `append_batch` of 1,000 records vs the same batches over loopback; records/s.
fn wire_cost(store: &Store, addr: SocketAddr, records: u64) -> (f64, f64) {
    const BATCH: u64 = 1_000;
    let batches = records / BATCH;
    let local = store.topic("in-process").expect("topic");
    let batch: Vec<NewRecord<'_>> = (0..BATCH).map(|_| NewRecord::new(&PAYLOAD).timestamp(1_800_000_000_000)).collect();
    let t = Instant::now();
    for _ in 0..batches {
        local.append_batch(&batch).expect("append");
    }
    let in_process = (batches * BATCH) as f64 / t.elapsed().as_secs_f64();

    store.topic("wire").expect("topic");
    let request = produce_request("wire", BATCH);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = stream.try_clone().expect("clone");
    let t = Instant::now();
    let (window, answered) = std::sync::mpsc::sync_channel::<()>(5);
    let reading = std::thread::spawn(move || {
        for _ in 0..batches {
            read_frame(&mut reader);
            answered.recv().expect("window");
        }
    });
    for _ in 0..batches {
        // A token per request in flight: the sixth waits for the reader to take one.
        window.send(()).expect("window");
        stream.write_all(&request).expect("send");
    }
    reading.join().expect("reader");
    let wire = (batches * BATCH) as f64 / t.elapsed().as_secs_f64();
    assert_eq!(store.topic("wire").expect("topic").next_offset(), batches * BATCH, "every batch appended");
    (in_process, wire)
}

/// One Produce request (v9, acks=all) of `n` records of 100 B, framed with its length.
fn produce_request(topic: &str, n: u64) -> Bytes {
    let records: Vec<Record> = (0..n as i64)
        .map(|i| evlog::serve::wire_record(i, 1_800_000_000_000, None, Some(Bytes::from_static(&PAYLOAD)), Vec::new()))
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut batch, &records, &options).expect("batch");
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partition_data(
            vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.freeze()))],
        ),
    ]);
    let header = RequestHeader::default()
        .with_request_api_key(ProduceRequest::KEY)
        .with_request_api_version(9)
        .with_correlation_id(1);
    let mut body = BytesMut::new();
    header.encode(&mut body, ProduceRequest::header_version(9)).expect("header");
    request.encode(&mut body, 9).expect("request");
    let mut framed = BytesMut::new();
    framed.extend_from_slice(&i32::try_from(body.len()).expect("len").to_be_bytes());
    framed.extend_from_slice(&body);
    framed.freeze()
}

fn read_frame(stream: &mut TcpStream) {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("a response");
    let mut buf = vec![0u8; usize::try_from(i32::from_be_bytes(len)).expect("len")];
    stream.read_exact(&mut buf).expect("a response");
}
