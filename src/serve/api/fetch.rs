//! Fetch and ListOffsets: records read from the topic and sent as one record batch (v2,
//! uncompressed) per partition; a fetch with nothing to send waits for an append (long poll),
//! up to the client's `max_wait_ms` and the server's limit, until `min_bytes` are there.

use crate::consume::producer::{PRODUCER_ID_HEADER, SEQUENCE_HEADER};
use crate::serve::Shared;
use crate::serve::api::{code, open_topic};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use std::time::{Duration, Instant};

/// The tombstone header (see `produce.rs`): fetched back as a null value.
const TOMBSTONE: &str = crate::format::reserved_headers::TOMBSTONE;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

fn offset_i64(o: u64) -> i64 {
    i64::try_from(o).unwrap_or(i64::MAX)
}

/// A record as Kafka sends it.
fn to_kafka(r: &crate::log::Record) -> Record {
    let tombstone = r.payload().is_empty() && r.header(TOMBSTONE).is_some();
    let headers = r
        .headers()
        .filter(|(n, _)| !(tombstone && *n == TOMBSTONE))
        // An idempotent producer's (id, sequence): evlog's bookkeeping, not the record's.
        .filter(|(n, _)| *n != PRODUCER_ID_HEADER && *n != SEQUENCE_HEADER)
        .map(|(n, v)| (StrBytes::from_string(n.to_string()), Some(Bytes::copy_from_slice(v))))
        .collect();
    let value = (!tombstone).then(|| Bytes::copy_from_slice(r.payload()));
    crate::serve::wire_record(
        offset_i64(r.offset()),
        r.timestamp(),
        r.key().map(Bytes::copy_from_slice),
        value,
        headers,
    )
}

/// One partition's answer to a fetch, and the bytes of records it carries.
fn read_partition(s: &Shared, topic: &str, partition: i32, offset: i64, max_bytes: usize) -> (PartitionData, usize) {
    let data = PartitionData::default().with_partition_index(partition);
    if partition != 0 {
        return (data.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION), 0);
    }
    let t = match open_topic(s, topic, false) {
        Ok(t) => t,
        Err(c) => return (data.with_error_code(c), 0),
    };
    let (first, next) = (t.first_offset(), t.next_offset());
    let data = data
        .with_high_watermark(offset_i64(next))
        .with_last_stable_offset(offset_i64(next))
        .with_log_start_offset(offset_i64(first));
    let Ok(from) = u64::try_from(offset) else { return (data.with_error_code(code::OFFSET_OUT_OF_RANGE), 0) };
    if from < first || from > next {
        return (data.with_error_code(code::OFFSET_OUT_OF_RANGE), 0);
    }
    let mut records = Vec::new();
    let mut bytes = 0usize;
    for r in t.iter(from) {
        let Ok(r) = r else { return (data.with_error_code(code::KAFKA_STORAGE_ERROR), 0) };
        let size = r.payload().len() + r.key().map_or(0, <[u8]>::len) + 64;
        // At least one record, whatever the limit: a client must be able to make progress.
        if !records.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        records.push(to_kafka(&r));
    }
    if records.is_empty() {
        return (data.with_records(Some(Bytes::new())), 0);
    }
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    if RecordBatchEncoder::encode(&mut out, &records, &options).is_err() {
        return (data.with_error_code(code::UNKNOWN_SERVER_ERROR), 0);
    }
    let len = out.len();
    (data.with_records(Some(out.freeze())), len)
}

/// One pass over every partition the fetch names.
fn read_all(r: &FetchRequest, s: &Shared) -> (Vec<FetchableTopicResponse>, usize) {
    let max_total = usize::try_from(r.max_bytes).unwrap_or(usize::MAX).max(1);
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(r.topics.len());
    for t in &r.topics {
        let name = t.topic.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let max = usize::try_from(p.partition_max_bytes).unwrap_or(0).min(max_total.saturating_sub(total)).max(1);
            let (data, bytes) = read_partition(s, &name, p.partition, p.fetch_offset, max);
            total += bytes;
            partitions.push(data);
        }
        responses.push(FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions));
    }
    (responses, total)
}

pub(in crate::serve) fn fetch(r: FetchRequest, s: &Shared) -> FetchResponse {
    let wait = Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0)).min(s.opts.fetch_wait_max);
    let min_bytes = usize::try_from(r.min_bytes).unwrap_or(0).max(1);
    let deadline = Instant::now() + wait;
    let signal = &s.store.inner().signal;
    loop {
        // The generation before the read: an append after it wakes the wait below.
        let generation = signal.generation();
        let (responses, bytes) = read_all(&r, s);
        let now = Instant::now();
        if bytes >= min_bytes || now >= deadline || s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return FetchResponse::default().with_responses(responses);
        }
        signal.wait_past(generation, deadline - now);
    }
}

pub(in crate::serve) fn list_offsets(r: ListOffsetsRequest, s: &Shared) -> ListOffsetsResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    match list_offset(s, &name, p.partition_index, p.timestamp) {
                        Ok((offset, timestamp)) => answer.with_offset(offset).with_timestamp(timestamp),
                        Err(c) => answer.with_error_code(c).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for ListOffsets: earliest, latest, or the first record at or after a
/// timestamp (through the time index; the latest offset when none is).
fn list_offset(s: &Shared, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64), i16> {
    if partition != 0 {
        return Err(code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let t = open_topic(s, topic, false)?;
    match timestamp {
        EARLIEST => Ok((offset_i64(t.first_offset()), -1)),
        LATEST => Ok((offset_i64(t.next_offset()), -1)),
        ts if ts < 0 => Err(code::INVALID_REQUEST),
        ts => match t.offset_for_timestamp(ts).map_err(|_| code::KAFKA_STORAGE_ERROR)? {
            Some(o) => {
                let found = t.read(o).ok().flatten().map_or(ts, |r| r.timestamp());
                Ok((offset_i64(o), found))
            }
            None => Ok((-1, -1)),
        },
    }
}
