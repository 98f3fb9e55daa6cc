//! Produce: each partition's record batches decoded (compressed ones included) and appended to
//! the topic as one atomic batch per request partition, keys, headers and CreateTime timestamps
//! as sent. Answered once the append returned (as durable as the topic's `Durability` says).

use crate::error::Error;
use crate::log::NewRecord;
use crate::serve::Shared;
use crate::serve::api::{Malformed, Reply, code, encode, open_topic};
use crate::serve::producers::producer_name;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// A Kafka tombstone (a record whose value is null) is stored as an empty payload with
/// evlog's tombstone header, and fetched back with a null value.
const TOMBSTONE: &str = crate::format::reserved_headers::TOMBSTONE;

/// Every partition's records, decoded: what a request carries, or why it is malformed.
pub(in crate::serve) fn decode_batches(
    r: &ProduceRequest,
    batch_bytes_max: usize,
) -> Result<Vec<Vec<Record>>, Malformed> {
    let decompress = |b: &mut bytes::Bytes, c| crate::serve::decompress::bounded(b, c, batch_bytes_max);
    let mut out = Vec::new();
    for t in &r.topic_data {
        for p in &t.partition_data {
            let mut bytes = p.records.clone().unwrap_or_default();
            let mut records = Vec::new();
            while !bytes.is_empty() {
                let set = RecordBatchDecoder::decode_with_custom_compression(&mut bytes, Some(decompress))
                    .map_err(|_| Malformed)?;
                records.extend(set.records.into_iter().filter(|r| !r.control));
            }
            out.push(records);
        }
    }
    Ok(out)
}

/// The records as evlog appends them; `None` when one cannot be stored (a header name evlog
/// refuses is caught by the append itself).
fn to_new_records(records: &[Record]) -> Vec<NewRecord<'_>> {
    records
        .iter()
        .map(|r| {
            let mut n = NewRecord::new(r.value.as_deref().unwrap_or_default()).timestamp(r.timestamp);
            if let Some(k) = &r.key {
                n = n.key(k);
            }
            for (name, value) in &r.headers {
                n = n.header(name, value.as_deref().unwrap_or_default());
            }
            if r.value.is_none() {
                n = n.header(TOMBSTONE, &[]);
            }
            n
        })
        .collect()
}

pub(in crate::serve) fn produce(r: ProduceRequest, version: i16, s: &Shared) -> Result<Reply, Malformed> {
    let batches = decode_batches(&r, s.opts.batch_bytes_max)?;
    let mut batches = batches.into_iter();
    let mut responses = Vec::with_capacity(r.topic_data.len());
    for t in &r.topic_data {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for p in &t.partition_data {
            let records = batches.next().unwrap_or_default();
            let (error_code, base_offset, log_start) = append(s, &name, p.index, &records);
            partitions.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(error_code)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(log_start),
            );
        }
        responses.push(TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(partitions));
    }
    if r.acks == 0 {
        return Ok(Reply::None);
    }
    encode(&ProduceResponse::default().with_responses(responses), version)
}

/// Appends one partition's records; (error code, base offset, log start offset).
fn append(s: &Shared, topic: &str, partition: i32, records: &[Record]) -> (i16, i64, i64) {
    if partition != 0 {
        return (code::UNKNOWN_TOPIC_OR_PARTITION, -1, -1);
    }
    let t = match open_topic(s, topic, s.opts.auto_create_topics) {
        Ok(t) => t,
        Err(c) => return (c, -1, -1),
    };
    let log_start = i64::try_from(t.first_offset()).unwrap_or(i64::MAX);
    let new_records = to_new_records(records);
    let appended = match records.first() {
        // An idempotent producer's batch: a retry returns the original offset.
        Some(first) if first.producer_id >= 0 && first.sequence >= 0 => s
            .store
            .producer(topic, &producer_name(first.producer_id))
            .and_then(|p| p.send_batch_with_sequence(u64::try_from(first.sequence).unwrap_or(0), &new_records))
            .map(|(first_offset, _duplicate)| first_offset),
        _ => t.append_batch(&new_records).map(|range| range.start).map_err(Error::from),
    };
    match appended {
        Ok(offset) => (code::NONE, i64::try_from(offset).unwrap_or(i64::MAX), log_start),
        Err(e) => (error_code(&e), -1, log_start),
    }
}

/// The Kafka error code for an append that failed.
fn error_code(e: &Error) -> i16 {
    match e {
        Error::RecordTooLarge { .. } | Error::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        Error::InvalidHeaders { .. } | Error::KeyTooLarge { .. } => code::INVALID_RECORD,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}
