//! Produce: each partition's record batches decoded (compressed ones included) and appended to
//! the topic as one atomic batch per request partition, keys, headers and CreateTime timestamps
//! as sent. Answered once the records are as durable as the store's `Durability` says (under
//! `Always`: fsynced), the fsync shared with the requests the connection read meanwhile.

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

/// Writes every partition's records now and answers once they are durable: the reply waits
/// for the fsync after the connection has read on (see `Reply::Later`), so a client's pipelined
/// requests share fsyncs instead of taking one each in turn.
pub(in crate::serve) fn produce(r: ProduceRequest, version: i16, s: &Shared) -> Result<Reply, Malformed> {
    let batches = decode_batches(&r, s.opts.batch_bytes_max)?;
    let mut batches = batches.into_iter();
    let mut written = Vec::with_capacity(r.topic_data.len());
    for t in &r.topic_data {
        let name = t.name.0.to_string();
        let partitions: Vec<(i32, Written)> = (t.partition_data.iter())
            .map(|p| (p.index, append(s, &name, p.index, &batches.next().unwrap_or_default())))
            .collect();
        written.push((t.name.clone(), partitions));
    }
    let acks = r.acks;
    Ok(Reply::Later(Box::new(move || {
        let responses: Vec<TopicProduceResponse> = (written.into_iter())
            .map(|(name, partitions)| {
                let partitions = (partitions.into_iter())
                    .map(|(index, w)| {
                        let (error_code, base_offset, log_start) = w.acknowledge();
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_error_code(error_code)
                            .with_base_offset(base_offset)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(log_start)
                    })
                    .collect();
                TopicProduceResponse::default().with_name(name).with_partition_responses(partitions)
            })
            .collect();
        // With acks=0 the records are still made durable before the connection reads on past
        // the reply's turn: under `Always` they are readable only then.
        if acks == 0 {
            return Ok(Reply::None);
        }
        encode(&ProduceResponse::default().with_responses(responses), version)
    })))
}

/// One partition's records as written: to be acknowledged once durable.
struct Written {
    /// The topic and the offsets written (first, end), or the Kafka error code.
    appended: Result<(std::sync::Arc<crate::store::Topic>, u64, u64), i16>,
    log_start: i64,
}

impl Written {
    /// Waits until the records are durable; (error code, base offset, log start offset).
    fn acknowledge(self) -> (i16, i64, i64) {
        match self.appended {
            Ok((topic, first, end)) => match topic.wait_durable(end) {
                Ok(()) => (code::NONE, i64::try_from(first).unwrap_or(i64::MAX), self.log_start),
                Err(e) => (error_code(&Error::from(e)), -1, self.log_start),
            },
            Err(c) => (c, -1, self.log_start),
        }
    }
}

/// Writes one partition's records (not yet durable: see `Written::acknowledge`).
fn append(s: &Shared, topic: &str, partition: i32, records: &[Record]) -> Written {
    if partition != 0 {
        return Written { appended: Err(code::UNKNOWN_TOPIC_OR_PARTITION), log_start: -1 };
    }
    let t = match open_topic(s, topic, s.opts.auto_create_topics) {
        Ok(t) => t,
        Err(c) => return Written { appended: Err(c), log_start: -1 },
    };
    let log_start = i64::try_from(t.first_offset()).unwrap_or(i64::MAX);
    let new_records = to_new_records(records);
    let appended = match records.first() {
        // An idempotent producer's batch: a retry returns the original offsets.
        Some(first) if first.producer_id >= 0 && first.sequence >= 0 => s
            .store
            .producer(topic, &producer_name(first.producer_id))
            .and_then(|p| p.send_batch_with_sequence(u64::try_from(first.sequence).unwrap_or(0), &new_records)),
        _ => t.append_batch_deferred(&new_records).map(|range| (range.start, range.end)).map_err(Error::from),
    };
    let appended = appended.map(|(first, end)| (t, first, end)).map_err(|e| error_code(&e));
    Written { appended, log_start }
}

/// The Kafka error code for an append that failed.
fn error_code(e: &Error) -> i16 {
    match e {
        Error::RecordTooLarge { .. } | Error::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        Error::InvalidHeaders { .. } | Error::KeyTooLarge { .. } => code::INVALID_RECORD,
        _ => code::KAFKA_STORAGE_ERROR,
    }
}
