//! The `evlog` command on a store another process holds and serves (`evlog serve`,
//! `Store::serve`): it reaches the holder through the Unix socket in the store's directory and
//! speaks the Kafka protocol, as any client would. `append` produces with acks=all (answered
//! once the records are durable under the holder's durability); `consume` fetches from the
//! group's committed offset and commits after each batch (the same group offsets the embedded
//! API uses); `groups` lists (ListGroups, OffsetFetch, ListOffsets), resets (OffsetCommit) and
//! deletes (OffsetDelete) group offsets; `config` changes a topic's settings
//! (IncrementalAlterConfigs).

use bytes::{Bytes, BytesMut};
use evlog::serve::{AdminCommand, SOCKET_FILE, admin_request, admin_response};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A connection to the process serving a store.
pub struct Remote {
    stream: UnixStream,
    correlation: i32,
}

/// A record to produce, owned.
pub struct Outgoing {
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

/// Kafka error codes `append` and `consume` tell apart.
const NONE: i16 = 0;
const MESSAGE_TOO_LARGE: i16 = 10;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Remote {
    /// The serving process of the store in `dir`, if one answers on its socket.
    pub fn connect(dir: &Path) -> Option<Remote> {
        let stream = UnixStream::connect(dir.join(SOCKET_FILE)).ok()?;
        Some(Remote { stream, correlation: 0 })
    }

    fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("evlog-cli")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).map_err(|e| e.to_string())?;
        request.encode(&mut buf, version).map_err(|e| e.to_string())?;
        let len = i32::try_from(buf.len()).map_err(|_| "request too large".to_string())?;
        let io = |e: std::io::Error| format!("the serving process: {e}");
        self.stream.write_all(&len.to_be_bytes()).map_err(io)?;
        self.stream.write_all(&buf).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).map_err(|_| "bad response length")?];
        self.stream.read_exact(&mut body).map_err(io)?;
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(|e| e.to_string())?;
        R::Response::decode(&mut body, version).map_err(|e| e.to_string())
    }

    /// Appends `r` to `topic` (acks=all); its offset, or (whether the topic is full, why not).
    pub fn append(&mut self, topic: &str, r: &Outgoing) -> Result<Result<u64, (bool, String)>, String> {
        let headers = r.headers.iter().map(|(n, v)| (name(n), Some(Bytes::copy_from_slice(v)))).collect();
        let key = r.key.as_deref().map(Bytes::copy_from_slice);
        let value = Some(Bytes::copy_from_slice(&r.value));
        let record = evlog::serve::wire_record(0, r.timestamp.unwrap_or_else(now_ms), key, value, headers);
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(&mut batch, [&record], &options).map_err(|e| e.to_string())?;
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(name(topic)))
                .with_partition_data(vec![PartitionProduceData::default().with_records(Some(batch.freeze()))]),
        ]);
        let response = self.call(&request, 9)?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or("the serving process answered without a partition")?;
        Ok(match p.error_code {
            NONE => Ok(u64::try_from(p.base_offset).unwrap_or(0)),
            KAFKA_STORAGE_ERROR => {
                Err((false, "the serving process could not append (storage error, or the topic is full)".into()))
            }
            MESSAGE_TOO_LARGE => Err((false, "record too large".into())),
            code => Err((false, format!("refused by the serving process (Kafka error {code})"))),
        })
    }

    /// The offset `group` committed on `topic` (0 when none).
    pub fn committed(&mut self, group: &str, topic: &str) -> Result<u64, String> {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(name(group))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(TopicName(name(topic))).with_partition_indexes(vec![0]),
        ]));
        let r = self.call(&request, 7)?;
        let offset = r.topics.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.committed_offset);
        Ok(u64::try_from(offset).unwrap_or(0))
    }

    /// Commits `offset` for `group` on `topic` (durable when it returns).
    pub fn commit(&mut self, group: &str, topic: &str, offset: u64) -> Result<(), String> {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(name(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(name(topic))).with_partitions(
                vec![OffsetCommitRequestPartition::default().with_committed_offset(i64::try_from(offset).unwrap_or(0))],
            )]);
        let r = self.call(&request, 8)?;
        match r.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code) {
            Some(NONE) => Ok(()),
            code => Err(format!("commit refused by the serving process (Kafka error {code:?})")),
        }
    }

    /// Records of `topic` from `offset`, waiting up to `wait_ms` for one.
    pub fn fetch(&mut self, topic: &str, offset: u64, wait_ms: i32) -> Result<Vec<Record>, String> {
        let request =
            FetchRequest::default().with_max_wait_ms(wait_ms).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(
                vec![FetchTopic::default().with_topic(TopicName(name(topic))).with_partitions(
                    vec![FetchPartition::default()
                .with_fetch_offset(i64::try_from(offset).unwrap_or(0))
                .with_partition_max_bytes(1 << 20)],
                )],
            );
        let r = self.call(&request, 12)?;
        let p = r.responses.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
        if p.error_code != NONE {
            return Err(format!("fetch refused by the serving process (Kafka error {})", p.error_code));
        }
        let mut bytes = p.records.clone().unwrap_or_default();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| e.to_string())?;
        Ok(sets.into_iter().flat_map(|s| s.records).collect())
    }
}

/// The administration `groups` and `config` do on a served store, through Kafka's own APIs,
/// and `compact`, `compress` and `backup` through evlog's own request (`evlog::serve::ADMIN_KEY`).
impl Remote {
    /// Runs an administration command in the serving process; the report's figures by name.
    pub fn admin(&mut self, command: AdminCommand, argument: &str) -> Result<Vec<(String, i64)>, String> {
        self.correlation += 1;
        let io = |e: std::io::Error| format!("the serving process: {e}");
        self.stream.write_all(&admin_request(self.correlation, command, argument)).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).map_err(|_| "bad response length")?];
        self.stream.read_exact(&mut body).map_err(io)?;
        admin_response(&body).ok_or("the serving process sent a malformed answer")?
    }

    /// Every group the serving process knows (with members, or with committed offsets).
    pub fn groups(&mut self) -> Result<Vec<String>, String> {
        let r = self.call(&ListGroupsRequest::default(), 4)?;
        let mut v: Vec<String> = r.groups.into_iter().map(|g| g.group_id.0.to_string()).collect();
        v.sort();
        Ok(v)
    }

    /// Every (topic, committed offset) of `group`.
    pub fn committed_all(&mut self, group: &str) -> Result<Vec<(String, u64)>, String> {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(name(group))).with_topics(None);
        let r = self.call(&request, 7)?;
        let committed = r.topics.into_iter().filter_map(|t| {
            let offset = t.partitions.first().map(|p| p.committed_offset)?;
            Some((t.name.0.to_string(), u64::try_from(offset).ok()?))
        });
        Ok(committed.collect())
    }

    /// ListOffsets of `topic` at `timestamp` (-1: the end, -2: the start, else the first
    /// record at or after it; the end when there is none).
    pub fn offset_at(&mut self, topic: &str, timestamp: i64) -> Result<u64, String> {
        let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp);
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(name(topic))).with_partitions(vec![partition]),
        ]);
        let r = self.call(&request, 7)?;
        let p = r.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
        match (p.error_code, p.offset) {
            (NONE, -1) => self.offset_at(topic, -1),
            (NONE, o) => Ok(u64::try_from(o).unwrap_or(0)),
            (code, _) => Err(format!("offsets of {topic:?} refused by the serving process (Kafka error {code})")),
        }
    }

    /// Removes `group`'s committed offset on `topic` (OffsetDelete).
    pub fn delete_group(&mut self, group: &str, topic: &str) -> Result<(), String> {
        let request = OffsetDeleteRequest::default().with_group_id(GroupId(name(group))).with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        ]);
        let r = self.call(&request, 0)?;
        let code = r.topics.first().and_then(|t| t.partitions.first()).map_or(r.error_code, |p| p.error_code);
        match code {
            NONE => Ok(()),
            86 => Err(format!("group {group:?} of {topic:?} is in use (it has members); stop them first")),
            69 => Err(format!("no group {group:?} on {topic:?}")),
            code => Err(format!("refused by the serving process (Kafka error {code})")),
        }
    }

    /// Sets (`Some`) or returns to its default (`None`) each named setting of `topic`, in order,
    /// as one change (IncrementalAlterConfigs).
    pub fn alter_config(&mut self, topic: &str, settings: &[(&str, Option<String>)]) -> Result<(), String> {
        let configs = settings
            .iter()
            .map(|(n, v)| {
                let op = if v.is_some() { 0 } else { 1 }; // SET, DELETE
                AlterableConfig::default()
                    .with_name(name(n))
                    .with_config_operation(op)
                    .with_value(v.as_deref().map(name))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default().with_resource_type(2).with_resource_name(name(topic)).with_configs(configs),
        ]);
        let r = self.call(&request, 1)?;
        match r.responses.first() {
            Some(res) if res.error_code == NONE => Ok(()),
            Some(res) => Err(res.error_message.as_deref().map_or_else(
                || format!("refused by the serving process (Kafka error {})", res.error_code),
                str::to_string,
            )),
            None => Err("the serving process answered without a result".into()),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}
