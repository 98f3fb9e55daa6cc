//! Typed topics, codecs and idempotent producers.

use evlog::codec::Codec;
use evlog::storage::{CrashMode, MemStorage};
use evlog::{ConsumerOptions, Durability, Error, NewRecord, Options, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    SignedUp { user: u64, email: String },
    Paid { user: u64, cents: i64, tags: Vec<String> },
}

fn mem_store(root: &Path, mem: &MemStorage, durability: Durability) -> Store {
    let mut log = Options::with_durability(durability);
    log.segment_bytes_max = 4096;
    log.record_bytes_max = 1024;
    log.storage = Arc::new(mem.clone());
    Store::open(root, StoreOptions::with_log(log)).expect("store")
}

#[test]
fn typed_values_round_trip_with_key_timestamp_and_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let events = store.typed_topic::<Event>("events").expect("topic");
    let a = Event::SignedUp { user: 1, email: "a@example.com".into() };
    let b = Event::Paid { user: 1, cents: -250, tags: vec!["refund".into()] };
    events.append(&a).expect("append");
    events
        .append_record(&b, NewRecord::default().key(b"user-1").timestamp(1_700_000_000_000).header("source", b"api"))
        .expect("append");
    events.append_batch(&[a.clone(), b.clone()]).expect("batch");
    let got: Vec<_> = events.iter(0).collect::<Result<_, _>>().expect("decode");
    assert_eq!(got.iter().map(|t| t.value.clone()).collect::<Vec<_>>(), vec![a.clone(), b.clone(), a, b.clone()]);
    assert_eq!(got[1].record.key(), Some(&b"user-1"[..]));
    assert_eq!(got[1].timestamp(), 1_700_000_000_000);
    assert_eq!(got[1].record.header("source"), Some(&b"api"[..]));
    assert_eq!(events.read(3).expect("read").expect("present").value, b);
    assert!(events.read(4).expect("read").is_none());
}

#[test]
fn a_payload_that_does_not_decode_is_an_error_naming_topic_and_offset_and_the_rest_still_arrive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let events = store.typed_topic::<Event>("events").expect("topic");
    events.append(&Event::SignedUp { user: 1, email: "x".into() }).expect("append");
    store.topic("events").expect("topic").append(&[0xFF; 9]).expect("foreign bytes");
    events.append(&Event::SignedUp { user: 2, email: "y".into() }).expect("append");

    let got: Vec<_> = events.iter(0).collect();
    assert!(got[0].is_ok() && got[2].is_ok());
    match &got[1] {
        Err(e @ Error::Decode { topic, offset: 1, .. }) => {
            assert_eq!(topic, "events");
            assert!(e.to_string().contains("offset 1"), "{e}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }

    let mut consumer = events.consumer("g", ConsumerOptions::default()).expect("consumer");
    let polled = consumer.poll(10, Duration::ZERO).expect("poll");
    assert_eq!(polled.len(), 3);
    assert!(matches!(polled[1], Err(Error::Decode { offset: 1, .. })));
    consumer.commit().expect("commit moves past the bad record");
    assert_eq!(consumer.inner().committed(), Some(3));
}

/// A codec of our own: strings as raw UTF-8.
struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn decode(&self, bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
}

#[test]
fn another_codec_plugs_in_and_shapes_only_the_payload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let lines = store.typed_topic_with::<String, _>("lines", Utf8).expect("topic");
    lines.append(&"hello".to_string()).expect("append");
    assert_eq!(store.topic("lines").expect("topic").read(0).expect("read").expect("there").payload(), b"hello");
    assert_eq!(lines.read(0).expect("read").expect("there").value, "hello");
}

#[test]
fn a_retried_sequence_returns_the_original_offset_and_appends_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    let p = store.producer("t", "svc").expect("producer");
    let a = p.send(&NewRecord::new(b"a")).expect("send");
    let b = p.send(&NewRecord::new(b"b").key(b"k")).expect("send");
    assert_eq!((a.sequence, b.sequence), (0, 1));
    let again = p.send_with_sequence(0, &NewRecord::new(b"a")).expect("retry");
    assert_eq!(again, evlog::consume::Sent { offset: a.offset, sequence: 0, duplicate: true });
    // Another producer id with the same sequence is a different record.
    let other = store.producer("t", "other").expect("producer").send_with_sequence(0, &NewRecord::new(b"o"));
    assert!(!other.expect("send").duplicate);
    let t = store.topic("t").expect("topic");
    assert_eq!(t.next_offset(), 3);
    let r = t.read(1).expect("read").expect("there");
    assert_eq!(r.header(evlog::headers::PRODUCER_ID_HEADER), Some(&b"svc"[..]));
    assert_eq!(r.header(evlog::headers::SEQUENCE_HEADER), Some(&1u64.to_le_bytes()[..]));
    assert_eq!(r.key(), Some(&b"k"[..]));
    // The reserved headers cannot be forged through the producer.
    let forged = p.send(&NewRecord::new(b"x").header(evlog::headers::SEQUENCE_HEADER, b"12345678"));
    assert!(matches!(forged, Err(Error::InvalidHeaders { .. })));
}

#[test]
fn dedupe_survives_a_power_cut_and_a_lost_unsynced_original_is_appended_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mem = MemStorage::new();
    {
        let store = mem_store(tmp.path(), &mem, Durability::Always);
        let p = store.producer("t", "svc").expect("producer");
        for seq in [10u64, 11, 12] {
            p.send_with_sequence(seq, &NewRecord::new(format!("r{seq}").as_bytes())).expect("send");
        }
        mem.crash(CrashMode::TornWrite { seed: 3 });
    }
    {
        let store = mem_store(tmp.path(), &mem, Durability::Os);
        let p = store.producer("t", "svc").expect("producer");
        assert_eq!(p.next_sequence(), 13, "the sequence resumes from the log");
        let retry = p.send_with_sequence(11, &NewRecord::new(b"r11")).expect("retry after the crash");
        assert_eq!((retry.offset, retry.duplicate), (1, true));
        // Appended in Os mode and never synced: a power cut loses it...
        let lost = p.send_with_sequence(13, &NewRecord::new(b"r13")).expect("send");
        assert!(!lost.duplicate);
        mem.crash(CrashMode::DropUnsynced);
    }
    let store = mem_store(tmp.path(), &mem, Durability::Always);
    let p = store.producer("t", "svc").expect("producer");
    // ...so its retry appends it again rather than pointing at a record that is not there.
    let again = p.send_with_sequence(13, &NewRecord::new(b"r13")).expect("retry");
    assert_eq!((again.offset, again.duplicate), (3, false));
    let payloads: Vec<Vec<u8>> =
        store.topic("t").expect("topic").iter(0).map(|r| r.expect("record").payload().to_vec()).collect();
    assert_eq!(payloads, vec![b"r10".to_vec(), b"r11".to_vec(), b"r12".to_vec(), b"r13".to_vec()]);
}

#[test]
fn a_sequence_older_than_the_dedupe_window_is_appended_as_new() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::default();
    opts.dedupe_window_records = 3;
    let store = Store::open(tmp.path(), opts.clone()).expect("store");
    let p = store.producer("t", "svc").expect("producer");
    p.send_with_sequence(1, &NewRecord::new(b"one")).expect("send");
    assert!(p.send_with_sequence(1, &NewRecord::new(b"one")).expect("retry").duplicate);
    let t = store.topic("t").expect("topic");
    for _ in 0..3 {
        t.append(b"other").expect("append");
    }
    // Offset 0 is now 4 records back: outside a window of 3.
    assert!(!p.send_with_sequence(1, &NewRecord::new(b"one")).expect("late retry").duplicate);
    drop((p, t));
    drop(store);
    // After reopen, the window is rebuilt from the last 3 records, which hold sequence 1 again.
    let store = Store::open(tmp.path(), opts).expect("store");
    let p = store.producer("t", "svc").expect("producer");
    assert!(p.send_with_sequence(1, &NewRecord::new(b"one")).expect("retry").duplicate);
}

#[test]
fn concurrent_producers_with_retries_leave_each_sequence_exactly_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(tmp.path(), StoreOptions::with_log(Options::with_durability(Durability::Always))).expect("store");
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                // Two handles per id, as two retrying threads of one service would have.
                let id = format!("p{}", t % 2);
                let p = store.producer("t", &id).expect("producer");
                for seq in 0..50u64 {
                    p.send_with_sequence(seq, &NewRecord::new(format!("{id}/{seq}").as_bytes())).expect("send");
                }
            });
        }
    });
    let t = store.topic("t").expect("topic");
    assert_eq!(t.next_offset(), 100);
    let mut seen: Vec<String> =
        t.iter(0).map(|r| String::from_utf8(r.expect("record").payload().to_vec()).expect("utf-8")).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 100);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CustomerV1 {
    id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CustomerV2 {
    id: u64,
    full_name: String,
    email: Option<String>,
}

#[test]
fn events_of_older_schema_versions_are_upcast_and_newer_ones_are_a_decode_error_naming_both_versions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("store");
    // Written before the type changed: version 1 (no header, as before versions existed).
    let v1 = store.typed_topic::<CustomerV1>("customers").expect("topic");
    v1.append(&CustomerV1 { id: 1, name: "Ada".into() }).expect("append");
    // The new type: a field renamed, one added.
    let v2 = store
        .typed_topic::<CustomerV2>("customers")
        .expect("topic")
        .schema_version(2)
        .upcast_from::<CustomerV1>(1, |c| CustomerV2 { id: c.id, full_name: c.name, email: None });
    v2.append(&CustomerV2 { id: 2, full_name: "Grace Hopper".into(), email: Some("grace@navy.mil".into()) })
        .expect("append");
    let all: Vec<CustomerV2> = v2.iter(0).map(|t| t.expect("decoded").value).collect();
    assert_eq!(all[0], CustomerV2 { id: 1, full_name: "Ada".into(), email: None });
    assert_eq!(all[1].email.as_deref(), Some("grace@navy.mil"));
    assert_eq!(
        store.topic("customers").expect("t").read(1).expect("read").expect("r").header(evlog::headers::SCHEMA_HEADER),
        Some(&2u32.to_le_bytes()[..])
    );
    // An old reader meets a record of a newer version: named, never misread.
    let err = v1.read(1).expect_err("newer than the reader");
    assert!(
        matches!(&err, Error::Decode { offset: 1, reason, .. } if reason.contains('2') && reason.contains('1')),
        "{err}"
    );
    // A reader at version 3 without an upcaster from 1.
    let v3 = store.typed_topic::<CustomerV2>("customers").expect("topic").schema_version(3);
    let err = v3.read(0).expect_err("no upcaster");
    assert!(err.to_string().contains("no upcaster from schema version 1 to version 3"), "{err}");
    // Per key, decoded and upcast.
    let v2k = v2.clone();
    let o = v2k
        .append_expecting_key(b"customer-9", None, &CustomerV2 { id: 9, full_name: "N".into(), email: None })
        .expect("append");
    assert_eq!(v2k.iter_key(b"customer-9", 0).map(|t| t.expect("decoded").offset()).collect::<Vec<_>>(), vec![o]);
}
