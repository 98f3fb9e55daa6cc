//! `Store::serve`: the Kafka wire protocol spoken by a client written here with the
//! `kafka-protocol` crate (the real clients, librdkafka and others, are in
//! `tests/serve_clients.rs`).

mod common;

use bytes::{Bytes, BytesMut};
use evlog::consume::StartAt;
use evlog::serve::ServeOptions;
use evlog::{ConsumerOptions, Store, StoreOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn serve(store: &Store) -> evlog::serve::Server {
    store.serve(ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)))).expect("serve")
}

/// A connection that sends requests and reads their responses.
struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        Client { stream, correlation: 0 }
    }

    fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let sent = self.send(request, version);
        let (correlation, response) = self.receive::<R>(version);
        assert_eq!(correlation, sent);
        response
    }

    /// Sends a request without waiting for its response; its correlation id.
    fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("evlog-test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).expect("header");
        request.encode(&mut buf, version).expect("request");
        self.send_raw(&buf);
        self.correlation
    }

    /// The next response, with its correlation id.
    fn receive<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let mut body = self.read_frame().expect("a response");
        let response_header =
            ResponseHeader::decode(&mut body, R::Response::header_version(version)).expect("response header");
        (response_header.correlation_id, R::Response::decode(&mut body, version).expect("response"))
    }

    fn send_raw(&mut self, payload: &[u8]) {
        let len = i32::try_from(payload.len()).expect("len");
        self.stream.write_all(&len.to_be_bytes()).expect("write");
        self.stream.write_all(payload).expect("write");
    }

    fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; usize::try_from(i32::from_be_bytes(len)).ok()?];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }
}

fn record(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])], ts: i64) -> Record {
    let headers =
        headers.iter().map(|(n, v)| (StrBytes::from_string(n.to_string()), Some(Bytes::copy_from_slice(v)))).collect();
    evlog::serve::wire_record(offset, ts, key.map(Bytes::copy_from_slice), value.map(Bytes::copy_from_slice), headers)
}

fn produce_request(topic: &str, records: &[Record], compression: Compression, acks: i16) -> ProduceRequest {
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, records, &RecordEncodeOptions { version: 2, compression }).expect("batch");
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partition_data(
            vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.freeze()))],
        ),
    ])
}

/// The first partition's (error code, base offset) of a produce response.
fn produced(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn produce(
    c: &mut Client,
    topic: &str,
    records: &[Record],
    compression: Compression,
    acks: i16,
) -> Option<ProduceResponse> {
    let request = produce_request(topic, records, compression, acks);
    if acks == 0 {
        c.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(ProduceRequest::KEY)
            .with_request_api_version(9)
            .with_correlation_id(c.correlation);
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ProduceRequest::header_version(9)).expect("header");
        request.encode(&mut buf, 9).expect("request");
        c.send_raw(&buf);
        return None;
    }
    Some(c.call(&request, 9))
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(max_wait_ms).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ]),
    ])
}

fn fetch(c: &mut Client, topic: &str, offset: i64, max_wait_ms: i32) -> Vec<Record> {
    let response = c.call(&fetch_request(topic, offset, max_wait_ms), 12);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "fetch error");
    let mut bytes = partition.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes).expect("batches").into_iter().flat_map(|s| s.records).collect()
}

#[test]
fn records_produced_over_the_wire_come_back_byte_for_byte_over_the_wire_and_through_the_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    let versions = c.call(&ApiVersionsRequest::default(), 3);
    assert!(versions.api_keys.iter().any(|k| k.api_key == ProduceRequest::KEY));
    assert!(
        !versions.api_keys.iter().any(|k| k.api_key == DescribeAclsRequest::KEY),
        "only what is answered is offered"
    );
    let sent = [
        // A name may repeat: every value comes back, in order.
        record(0, Some(b"k1"), Some(b"v1"), &[("h", b"x"), ("trace", b"\x00\xff"), ("h", b"y")], 1_700_000_000_000),
        record(1, None, Some(b""), &[], 1_700_000_000_001),
        record(2, Some(b"gone"), None, &[], 1_700_000_000_002),
    ];
    for (compression, acks) in [(Compression::None, -1), (Compression::Gzip, 1), (Compression::Zstd, -1)] {
        let r = produce(&mut c, "orders", &sent, compression, acks).expect("response");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{compression:?}");
    }
    let got = fetch(&mut c, "orders", 0, 0);
    assert_eq!(got.len(), 9);
    for (i, r) in got.iter().enumerate() {
        let s = &sent[i % 3];
        assert_eq!(
            (r.offset, &r.key, &r.value, &r.headers, r.timestamp),
            (i as i64, &s.key, &s.value, &s.headers, s.timestamp)
        );
    }
    // The embedded API sees the same topic: a null value is a tombstone.
    let t = store.topic("orders").expect("topic");
    let first = t.read(0).expect("read").expect("record");
    assert_eq!(first.header("trace"), Some(&b"\x00\xff"[..]));
    let headers: Vec<(&str, &[u8])> = first.headers().collect();
    assert_eq!(headers, [("h", &b"x"[..]), ("trace", &b"\x00\xff"[..]), ("h", &b"y"[..])]);
    assert!(t.read(2).expect("read").expect("record").is_tombstone());
    drop(c);
    server.shutdown();
}

#[test]
fn a_fetch_waits_for_an_append_made_through_the_embedded_api_and_returns_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let server = serve(&store);
    let t = store.topic("live").expect("topic");
    let mut c = Client::connect(server.local_addr());
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        t.append(b"from the application").expect("append")
    });
    let started = Instant::now();
    let got = fetch(&mut c, "live", 0, 20_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"from the application"[..]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the append, not by max_wait: {:?}",
        started.elapsed()
    );
    assert_eq!(appender.join().expect("thread"), 0);
}

#[test]
fn group_offsets_committed_over_the_wire_are_the_embedded_consumers_and_the_reverse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let server = serve(&store);
    let t = store.topic("jobs").expect("topic");
    for i in 0..10u8 {
        t.append(&[i]).expect("append");
    }
    let mut c = Client::connect(server.local_addr());
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("workers")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("jobs")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(4),
                ]),
        ]);
    let r = c.call(&commit, 8);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let mut consumer =
        store.consumer("workers", "jobs", ConsumerOptions::starting_at(StartAt::Earliest)).expect("consumer");
    assert_eq!(consumer.poll(1, Duration::ZERO).expect("poll")[0].offset(), 4, "the wire's commit is the group's");
    consumer.poll(2, Duration::ZERO).expect("poll");
    consumer.commit().expect("commit");
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("workers")))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("jobs")))
                .with_partition_indexes(vec![0]),
        ]));
    let r = c.call(&request, 7);
    assert_eq!(r.topics[0].partitions[0].committed_offset, 7, "the embedded commit is seen over the wire");
}

#[test]
fn a_malformed_or_oversized_request_closes_its_connection_and_touches_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.request_bytes_max = 1 << 16;
    let server = store.serve(opts).expect("serve");
    let started = Instant::now();
    // A produce header followed by garbage.
    let mut c = Client::connect(server.local_addr());
    let mut bad = vec![0u8, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff];
    bad.extend_from_slice(&[0xab; 64]);
    c.send_raw(&bad);
    assert!(c.read_frame().is_none(), "closed without a response");
    // A length past the limit.
    let mut c = Client::connect(server.local_addr());
    c.stream.write_all(&(1i32 << 20).to_be_bytes()).expect("write");
    assert!(c.read_frame().is_none(), "closed");
    // A produce whose batch does not decode.
    let mut c = Client::connect(server.local_addr());
    let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("t"))).with_partition_data(vec![
            PartitionProduceData::default().with_records(Some(Bytes::from_static(&[7; 80]))),
        ]),
    ]);
    let mut buf = BytesMut::new();
    RequestHeader::default().with_request_api_key(0).with_request_api_version(9).encode(&mut buf, 1).expect("header");
    request.encode(&mut buf, 9).expect("request");
    c.send_raw(&buf);
    assert!(c.read_frame().is_none(), "closed");
    assert!(started.elapsed() < Duration::from_secs(10), "each connection closed at once: {:?}", started.elapsed());
    assert!(store.topics().expect("topics").is_empty(), "nothing was created or written");
    // The server still serves others.
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

#[test]
fn a_non_loopback_address_is_refused_without_users_and_served_with_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let err = store.serve(ServeOptions::listening_on(SocketAddr::from(([0, 0, 0, 0], 0)))).expect_err("refused");
    assert!(err.to_string().contains("loopback") && err.to_string().contains("scram_users"), "{err}");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([0, 0, 0, 0], 0)));
    opts.scram_users = vec![evlog::serve::ScramUser::new("alice", "pw")];
    store.serve(opts).expect("served: clients must authenticate").shutdown();
}

#[test]
fn with_users_a_tcp_client_gets_nothing_but_api_versions_before_authenticating_and_a_failed_exchange_closes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    store.topic("t").expect("topic");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.scram_users = vec![evlog::serve::ScramUser::new("alice", "pw")];
    let server = store.serve(opts).expect("serve");

    // ApiVersions is answered (a client needs it to find SaslHandshake); Metadata closes.
    let mut c = Client::connect(server.local_addr());
    let versions = c.call(&ApiVersionsRequest::default(), 3);
    assert!(versions.api_keys.iter().any(|k| k.api_key == SaslHandshakeRequest::KEY));
    c.send(&MetadataRequest::default().with_topics(None), 12);
    assert!(c.read_frame().is_none(), "the connection closes before any other request is answered");

    // A handshake for another mechanism is refused, naming the one offered.
    let mut c = Client::connect(server.local_addr());
    let h = c.call(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")), 1);
    assert_eq!((h.error_code, h.mechanisms.len()), (33, 1));
    assert_eq!(&*h.mechanisms[0], "SCRAM-SHA-256");

    // A wrong proof: SASL_AUTHENTICATION_FAILED, then the connection closes.
    let h = c.call(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")), 1);
    assert_eq!(h.error_code, 0);
    let first = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=alice,r=abc"));
    let challenge = c.call(&first, 2);
    assert_eq!(challenge.error_code, 0);
    let challenge = String::from_utf8(challenge.auth_bytes.to_vec()).expect("utf-8");
    let nonce = challenge.split(',').next().expect("r=").trim_start_matches("r=");
    let proof = format!("c=biws,r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let failed = c.call(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(proof)), 2);
    assert_eq!(failed.error_code, 58);
    assert!(c.read_frame().is_none(), "closed after a failed authentication");
    server.shutdown();
}

#[test]
fn every_acks_all_record_is_there_after_the_server_is_killed_and_the_store_reopened() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = common::evlog_serve(tmp.path(), None);
    let mut c = Client::connect(addr);
    for i in 0..50i64 {
        let value = format!("r{i}");
        let r = produce(&mut c, "durable", &[record(0, None, Some(value.as_bytes()), &[], i)], Compression::Lz4, -1);
        assert_eq!(r.expect("response").responses[0].partition_responses[0].base_offset, i);
    }
    // acks=0: no response, and the next request is still answered, in order.
    assert!(produce(&mut c, "durable", &[record(0, None, Some(b"fire"), &[], 99)], Compression::None, 0).is_none());
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("reopen");
    let t = store.topic("durable").expect("topic");
    for i in 0..50u64 {
        let r = t.read(i).expect("read").expect("every acknowledged record");
        assert_eq!(r.payload(), format!("r{i}").as_bytes());
        assert_eq!(r.timestamp(), i as i64, "CreateTime kept");
    }
}

#[test]
fn an_idempotent_producers_retried_batch_is_appended_once_also_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let batch = |seq: i32, values: &[&[u8]], pid: i64| -> Vec<Record> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = record(i as i64, None, Some(v), &[], 5);
                r.producer_id = pid;
                r.producer_epoch = 0;
                r.sequence = seq + i as i32;
                r
            })
            .collect()
    };
    let pid = {
        let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
        let server = serve(&store);
        let mut c = Client::connect(server.local_addr());
        let init =
            c.call(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1), 4);
        assert_eq!(init.error_code, 0);
        let pid = init.producer_id.0;
        let first = produce(&mut c, "once", &batch(0, &[b"a", b"b"], pid), Compression::None, -1).expect("response");
        let retry = produce(&mut c, "once", &batch(0, &[b"a", b"b"], pid), Compression::None, -1).expect("response");
        let base = |r: &ProduceResponse| r.responses[0].partition_responses[0].base_offset;
        assert_eq!((base(&first), base(&retry)), (0, 0), "the retry answers with the original offset");
        let next = produce(&mut c, "once", &batch(2, &[b"c"], pid), Compression::None, -1).expect("response");
        assert_eq!(base(&next), 2);
        let got = fetch(&mut c, "once", 0, 0);
        let values: Vec<_> = got.iter().map(|r| r.value.clone().expect("value")).collect();
        assert_eq!(values, [&b"a"[..], b"b", b"c"]);
        assert!(got[0].headers.is_empty(), "evlog's producer bookkeeping is not shown: {:?}", got[0].headers);
        let other = c
            .call(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1), 4)
            .producer_id
            .0;
        assert_ne!(other, pid, "every producer gets an id of its own");
        pid
    };
    // After a restart (the store reopened and served again) the same retry is still recognised,
    // and a new producer never gets an id handed out before.
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("reopen");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    let retry = produce(&mut c, "once", &batch(2, &[b"c"], pid), Compression::None, -1).expect("response");
    assert_eq!(retry.responses[0].partition_responses[0].base_offset, 2);
    assert_eq!(store.topic("once").expect("topic").next_offset(), 3);
    let fresh = c
        .call(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1), 4)
        .producer_id
        .0;
    assert!(fresh > pid + 1, "ids are not reused across restarts: {fresh} after {pid}");
}

#[test]
fn a_topics_configuration_is_described_under_kafkas_names() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    store.topic("metrics").expect("topic");
    let config = evlog::TopicConfig::default()
        .with_budget(64 << 20, evlog::log::WhenFull::DropOldest)
        .with_compaction(true, Duration::from_secs(86_400));
    store.configure_topic("metrics", config).expect("configure");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("metrics")),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("absent")),
    ]);
    let r = c.call(&request, 4);
    let value = |name: &str| {
        r.results[0].configs.iter().find(|c| &*c.name == name).and_then(|c| c.value.as_ref()).map(|v| v.to_string())
    };
    assert_eq!(value("cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(value("evlog.budget.bytes").as_deref(), Some("67108864"));
    assert_eq!(value("evlog.when_full").as_deref(), Some("drop-oldest"));
    assert_eq!(r.results[1].error_code, 3, "an unknown topic is UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn appends_from_the_application_and_from_the_wire_form_one_ordered_topic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let server = serve(&store);
    let t = store.topic("mixed").expect("topic");
    let app = std::thread::spawn(move || {
        for i in 0..200 {
            t.append(format!("app {i}").as_bytes()).expect("append");
        }
    });
    let mut c = Client::connect(server.local_addr());
    for i in 0..200 {
        let value = format!("wire {i}");
        produce(&mut c, "mixed", &[record(0, None, Some(value.as_bytes()), &[], i)], Compression::None, -1)
            .expect("ack");
    }
    app.join().expect("app");
    let mut got = Vec::new();
    while got.len() < 400 {
        let batch = fetch(&mut c, "mixed", got.len() as i64, 1000);
        assert!(!batch.is_empty(), "{} records fetched, 400 appended", got.len());
        got.extend(batch);
    }
    assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as i64), "offsets 0.. in order, no gap");
    for source in ["app", "wire"] {
        let seen: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf-8"))
            .filter(|v| v.starts_with(source))
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("{source} {i}")).collect();
        assert_eq!(seen, want, "each source's records in its own order");
    }
}

#[test]
fn evlog_serve_stops_gracefully_on_sigterm_and_leaves_the_store_closed_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = common::evlog_serve(tmp.path(), None);
    let mut c = Client::connect(addr);
    let r = produce(&mut c, "t", &[record(0, None, Some(b"kept"), &[], 1)], Compression::None, -1).expect("ack");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "evlog serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(c.read_frame().is_none(), "the connection was closed");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("reopen: the lock was let go");
    let t = store.topic("t").expect("topic");
    let report = t.recovery_report();
    assert!(report.checkpoint_used && report.truncated_bytes == 0, "closed cleanly: {report:?}");
    assert_eq!(t.read(0).expect("read").expect("record").payload(), b"kept");
}

#[test]
fn the_evlog_command_appends_and_consumes_through_the_process_that_serves_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, _addr) = common::evlog_serve(tmp.path(), None);
    let evlog = |args: &[&str], stdin: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_evlog"));
        cmd.arg("--dir").arg(tmp.path()).args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut p = cmd.spawn().expect("evlog");
        p.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
        let out = p.wait_with_output().expect("evlog");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    // The store is held by `evlog serve`: a second shell's commands go through it.
    assert_eq!(evlog(&["append", "jobs"], "first\nsecond\n"), "0\n1\n");
    let first = evlog(&["consume", "jobs", "--group", "g"], "");
    assert_eq!(first.lines().count(), 2, "{first}");
    assert!(first.contains("\"value\":\"first\"") && first.contains("\"value\":\"second\""), "{first}");
    assert_eq!(evlog(&["append", "jobs", "--json"], "{\"key\":\"k\",\"value\":\"third\"}\n"), "2\n");
    let rest = evlog(&["consume", "jobs", "--group", "g"], "");
    assert_eq!(rest.lines().count(), 1, "the group resumed after its commit: {rest}");
    assert!(rest.contains("\"offset\":2") && rest.contains("\"key\":\"k\""), "{rest}");

    // Groups: listed with their lag, reset, deleted, all through the serving process.
    let listed = evlog(&["groups", "list", "jobs"], "");
    assert!(
        listed.contains("\"group\":\"g\"") && listed.contains("\"committed\":3") && listed.contains("\"lag\":0"),
        "{listed}"
    );
    assert_eq!(evlog(&["groups", "reset", "jobs", "g", "--earliest"], ""), "group \"g\" on \"jobs\" now at offset 0\n");
    let listed = evlog(&["groups", "list"], "");
    assert!(listed.contains("\"committed\":0") && listed.contains("\"lag\":3"), "{listed}");
    assert_eq!(evlog(&["groups", "delete", "jobs", "g"], ""), "deleted group \"g\" of \"jobs\"\n");
    assert_eq!(evlog(&["groups", "list", "jobs"], ""), "", "no group left");

    // Config: changed and saved by the serving process; the output is what it saved.
    let changed =
        evlog(&["config", "jobs", "--retention-age", "7d", "--bytes-max", "10MiB", "--when-full", "drop-oldest"], "");
    assert!(
        changed.contains("\"retention_age_ms\":604800000")
            && changed.contains("\"bytes_max\":10485760")
            && changed.contains("\"when_full\":\"drop-oldest\""),
        "{changed}"
    );
    assert_eq!(evlog(&["config", "jobs"], ""), changed, "shown as saved");
    let lifted = evlog(&["config", "jobs", "--no-bytes-max", "--compact-by-key"], "");
    assert!(lifted.contains("\"bytes_max\":null") && lifted.contains("\"compact_by_key\":true"), "{lifted}");
    // A budget below the floor is refused by the serving process, naming why; nothing changes.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_evlog"))
        .arg("--dir")
        .arg(tmp.path())
        .args(["config", "jobs", "--bytes-max", "64KiB"])
        .output()
        .expect("evlog");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("below the smallest budget"), "{refused:?}");
    assert_eq!(evlog(&["config", "jobs"], ""), lifted);

    // Compact, compress and back up: evlog's own requests, run by the serving process.
    let compacted = evlog(&["compact", "jobs"], "");
    assert!(compacted.contains("\"topic\":\"jobs\"") && compacted.contains("\"records_before\":3"), "{compacted}");
    let compressed = evlog(&["compress", "jobs"], "");
    assert!(compressed.contains("\"segments_compressed\""), "{compressed}");
    let copy = tempfile::tempdir().expect("tempdir");
    let backed = evlog(&["backup", copy.path().join("b").to_str().expect("utf-8")], "");
    assert!(backed.contains("\"topics\":1") && backed.contains("\"records\":3"), "{backed}");
    let restored = Store::open(copy.path().join("b"), StoreOptions::default()).expect("the backup opens");
    assert_eq!(restored.topic("jobs").expect("topic").iter(0).count(), 3);
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn a_compressed_batch_that_decompresses_past_the_limit_is_refused_before_it_fills_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.batch_bytes_max = 1 << 20;
    let server = store.serve(opts).expect("serve");
    let zeros = vec![0u8; 4 << 20];
    for compression in [Compression::Zstd, Compression::Gzip, Compression::Lz4, Compression::Snappy] {
        let mut c = Client::connect(server.local_addr());
        let r = produce(&mut c, "t", &[record(0, None, Some(&zeros[..(1 << 19)]), &[], 1)], compression, -1);
        assert_eq!(r.expect("under the limit").responses[0].partition_responses[0].error_code, 0, "{compression:?}");
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut batch, &[record(0, None, Some(&zeros), &[], 1)], &options).expect("batch");
        assert!(batch.len() < 1 << 20, "{compression:?}: {} bytes compressed", batch.len());
        let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default().with_records(Some(batch.freeze()))]),
        ]);
        c.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(9)
            .encode(&mut buf, 1)
            .expect("header");
        request.encode(&mut buf, 9).expect("request");
        c.send_raw(&buf);
        assert!(c.read_frame().is_none(), "{compression:?}: refused, connection closed");
    }
    assert_eq!(store.topic("t").expect("topic").next_offset(), 4, "only the batches under the limit went in");
}

#[test]
fn a_request_claiming_billions_of_elements_is_refused_without_allocating_for_them() {
    // Found by the fuzz target `serve_request`: the codec reserved room for an array's claimed
    // length before reading it (vendor/kafka-protocol/EVLOG-PATCH.md).
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    // Metadata v1: api key 3, version 1, correlation id 1, no client id, then 2^31 - 1 topics.
    let mut request = vec![0u8, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
    request.extend_from_slice(&i32::MAX.to_be_bytes());
    c.send_raw(&request);
    assert!(c.read_frame().is_none(), "closed without a response");
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0, "the server still serves");
}

#[test]
fn pipelined_produce_requests_are_answered_in_order_and_acks_zero_records_become_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store"); // `Always`
    store.topic("t").expect("topic");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    // Six requests of one record each sent before any response is read; the third with acks=0.
    let acks = [-1i16, 1, 0, -1, -1, 1];
    let mut expected = Vec::new();
    for (i, &a) in acks.iter().enumerate() {
        let value = format!("r{i}");
        let request = produce_request(
            "t",
            &[record(0, None, Some(value.as_bytes()), &[], 1_000 + i as i64)],
            Compression::None,
            a,
        );
        let correlation = c.send(&request, 9);
        if a != 0 {
            expected.push((correlation, i as i64));
        }
    }
    for (correlation, offset) in expected {
        let (got, response) = c.receive::<ProduceRequest>(9);
        assert_eq!(got, correlation, "responses in the order of their requests");
        assert_eq!(produced(&response), (0, offset));
    }
    // Every record acknowledged is readable at once, the acks=0 one among them.
    let topic = store.topic("t").expect("topic");
    let values: Vec<Vec<u8>> = topic.iter(0).map(|r| r.expect("record").payload().to_vec()).collect();
    assert_eq!(values, (0..6).map(|i| format!("r{i}").into_bytes()).collect::<Vec<_>>());
    server.shutdown();
}

#[test]
fn a_produce_whose_fsync_fails_is_answered_with_a_storage_error_and_the_next_ones_too() {
    use evlog::storage::{Fault, FaultStorage, Op, RealStorage};
    let tmp = tempfile::tempdir().expect("tempdir");
    let faulty = FaultStorage::new(std::sync::Arc::new(RealStorage));
    let mut log = evlog::Options::default(); // `Always`
    log.storage = std::sync::Arc::new(faulty.clone());
    let store = Store::open(tmp.path(), StoreOptions::with_log(log)).expect("store");
    store.topic("t").expect("topic");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    let one = |v: &[u8]| [record(0, None, Some(v), &[], 1_000)];
    let ok = produce(&mut c, "t", &one(b"kept"), Compression::None, -1).expect("a response");
    assert_eq!(produced(&ok), (0, 0));
    faulty.fail_once(Op::SyncData, Some(".log"), 0, Fault::Eio);
    let failed = produce(&mut c, "t", &one(b"lost"), Compression::None, -1).expect("a response");
    assert_eq!(produced(&failed), (56, -1), "KAFKA_STORAGE_ERROR, never an acknowledgement");
    assert_eq!(faulty.injected(), 1, "the produce reached the data fsync");
    // The log is poisoned: later produces fail too (a retried fsync never reports success).
    let after = produce(&mut c, "t", &one(b"later"), Compression::None, -1).expect("a response");
    assert_eq!(produced(&after).0, 56);
    let topic = store.topic("t").expect("topic");
    assert_eq!(
        topic.iter(0).map(|r| r.expect("record").payload().to_vec()).collect::<Vec<_>>(),
        vec![b"kept".to_vec()]
    );
    server.shutdown();
}

#[test]
fn a_followers_sync_group_ends_with_rebalance_in_progress_when_its_leader_never_syncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.group_wait_max = Duration::from_millis(300);
    let server = store.serve(opts).expect("serve");
    let addr = server.local_addr();
    let s = |t: &str| StrBytes::from_string(t.to_string());
    let join = move |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"m")),
            ])
    };
    let mut a = Client::connect(addr);
    let first = a.call(&join(""), 5);
    assert_eq!(first.error_code, 0);
    let a_id = first.member_id.to_string();
    // B joins: a rebalance, which waits for A to join again.
    let b = std::thread::spawn(move || {
        let mut b = Client::connect(addr);
        let joined = b.call(&join(""), 5);
        (b, joined)
    });
    // A learns of the rebalance from its heartbeat, as a client does, and joins again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(first.generation_id)
            .with_member_id(s(&a_id));
        if a.call(&hb, 4).error_code == 27 {
            break;
        }
        assert!(Instant::now() < deadline, "B's join never started a rebalance");
    }
    let again = a.call(&join(&a_id), 5);
    let (mut b, joined) = b.join().expect("B");
    assert_eq!((again.error_code, joined.error_code), (0, 0));
    assert_eq!(again.generation_id, joined.generation_id);
    assert_eq!(joined.leader.to_string(), a_id, "A leads; B follows");
    // B asks for its assignment; A, the leader, never sends them.
    let started = Instant::now();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    assert_eq!(b.call(&sync, 3).error_code, 27, "REBALANCE_IN_PROGRESS: the client joins again");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by group_wait_max, not the 30 s session");
    server.shutdown();
}

#[test]
fn evlogs_own_administration_requests_are_refused_over_tcp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    store.topic("t").expect("topic");
    let server = serve(&store);
    let mut c = Client::connect(server.local_addr());
    let dest = tmp.path().join("copy");
    let request = evlog::serve::admin_request(1, evlog::serve::AdminCommand::Backup, dest.to_str().expect("utf-8"));
    c.stream.write_all(&request).expect("send");
    assert!(c.read_frame().is_none(), "the connection closes");
    assert!(!dest.exists(), "no backup was made");
    server.shutdown();
}

/// The value of the Prometheus sample `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let matches = (series == name || series.starts_with(&format!("{name}{{")))
            && labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
        if matches { value.parse().ok() } else { None }
    })
}

#[test]
fn the_prometheus_endpoint_shows_what_store_stats_and_the_queues_say() {
    use std::io::Read;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    common::fill(&store, "t", 5, |i| format!("r{i}"));
    let mut c = store.consumer("g", "t", ConsumerOptions::default()).expect("consumer");
    c.poll(2, Duration::ZERO).expect("poll");
    c.commit().expect("commit");
    common::fill(&store, "jobs", 3, |i| format!("job {i}"));
    let q = store.queue("w", "jobs", evlog::QueueOptions::default()).expect("queue");
    let _leased = q.try_lease().expect("lease").expect("job");
    let mut opts = ServeOptions::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = store.serve(opts).expect("serve");
    let scrape = || {
        let mut s = TcpStream::connect(server.metrics_addr().expect("metrics")).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    };
    let text = scrape();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let stats = store.stats("t").expect("stats");
    let t = [("topic", "t")];
    assert_eq!(sample(&text, "evlog_topic_appended_records_total", &t), Some(stats.next_offset as f64));
    assert_eq!(sample(&text, "evlog_topic_bytes", &t), Some(stats.bytes_on_disk as f64));
    assert_eq!(sample(&text, "evlog_topic_segments", &t), Some(stats.segments as f64));
    let g = [("topic", "t"), ("group", "g")];
    assert_eq!(sample(&text, "evlog_group_committed_offset", &g), Some(2.0));
    assert_eq!(sample(&text, "evlog_group_lag_records", &g), Some(3.0));
    let w = [("topic", "jobs"), ("queue", "w")];
    assert_eq!(sample(&text, "evlog_queue_leased", &w), Some(1.0));
    assert_eq!(sample(&text, "evlog_queue_backlog", &w), Some(2.0));
    for name in evlog::monitor::METRIC_NAMES {
        assert!(text.contains(name), "{name} is exported");
    }
    // A later append shows at the next scrape.
    common::fill(&store, "t", 1, |_| "more".to_string());
    assert_eq!(sample(&scrape(), "evlog_topic_appended_records_total", &t), Some(6.0));
    server.shutdown();
}

#[test]
fn evlog_info_beside_a_serving_holder_shows_rates_littles_law_and_time_to_full() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, _addr) = common::evlog_serve(tmp.path(), None);
    let evlog = |args: &[&str], stdin: &str| {
        let mut p = std::process::Command::new(env!("CARGO_BIN_EXE_evlog"))
            .arg("--dir")
            .arg(tmp.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("evlog");
        p.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
        let out = p.wait_with_output().expect("evlog");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    evlog(&["append", "t"], "a\nb\nc\n");
    evlog(&["consume", "t", "--group", "slow", "--max", "1"], "");
    evlog(&["config", "t", "--bytes-max", "64MiB"], "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (stop, dir) = (stop.clone(), tmp.path().to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = std::process::Command::new(env!("CARGO_BIN_EXE_evlog"))
                    .arg("--dir")
                    .arg(&dir)
                    .args(["append", "t"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("evlog");
                p.stdin.take().expect("stdin").write_all("x\n".repeat(50).as_bytes()).expect("write");
                assert!(p.wait().expect("append").success());
            }
        })
    };
    let info: serde_json::Value =
        serde_json::from_str(&evlog(&["info", "t", "--json", "--rate", "1"], "")).expect("json");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().expect("appender");
    let t = &info[0];
    assert!(t["append_rate"].as_f64().expect("λ") > 0.0, "{t}");
    assert!(t["bytes_rate"].as_f64().expect("bytes/s") > 0.0, "{t}");
    let used = t["used_bytes"].as_u64().expect("used bytes");
    assert!(used > 0 && used < t["bytes"].as_u64().expect("bytes"), "records, not the preallocated tail: {t}");
    assert!(t["time_to_full_secs"].as_f64().expect("a budget and a rate") > 0.0, "{t}");
    let g = &t["groups"][0];
    assert_eq!(g["group"], "slow", "the group, through the holder's socket: {t}");
    assert_eq!(g["consume_rate"].as_f64(), Some(0.0));
    assert!(g["wait_secs"].as_f64().expect("W = L/λ") > 0.0, "{g}");
    assert!(g["drain_secs"].is_null() && g["growing"] == true, "μ = 0 < λ: growing: {g}");
    child.kill().expect("kill");
    child.wait().expect("wait");
}
