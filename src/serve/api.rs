//! The Kafka APIs the server answers, each mapped onto the store, and the versions of each it
//! speaks (ApiVersions lists exactly these: a client degrades as with an older broker).

use crate::serve::Shared;
use crate::store::validate_name;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;

mod configs;
mod fetch;
mod membership;
mod offsets;
mod produce;
mod sasl;

pub(super) use sasl::sasl;

/// Kafka error codes this server returns.
pub(super) mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_RECORD: i16 = 87;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
}

/// The APIs answered and the versions of each (min, max). Produce and Fetch stop before the
/// versions that name topics by id only.
pub(super) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    // Version 0 of the handshake would be followed by unframed SASL bytes: only 1 is offered.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// What a request is answered with.
pub(super) enum Reply {
    /// No response at all (a produce with `acks=0`).
    None,
    /// The encoded response body.
    Body(BytesMut),
    /// A reply that waits (for the fsync that makes a produce durable): run after the
    /// connection has read on, in the request's turn among the responses.
    Later(Box<dyn FnOnce() -> Result<Reply, Malformed> + Send>),
}

/// A request's body could not be decoded, or its response not encoded: the connection closes.
#[derive(Debug)]
pub(super) struct Malformed;

fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|&(k, min, max)| k == key && (min..=max).contains(&version))
}

pub(super) fn encode<M: Encodable>(m: &M, version: i16) -> Result<Reply, Malformed> {
    let mut out = BytesMut::new();
    m.encode(&mut out, version).map_err(|_| Malformed)?;
    Ok(Reply::Body(out))
}

pub(super) fn decode<M: Decodable>(mut body: Bytes, version: i16) -> Result<M, Malformed> {
    M::decode(&mut body, version).map_err(|_| Malformed)
}

/// Answers one request of `key` at `version` whose body is `body`.
/// Answers one request. `advertised`: the address this server is reached at, as Metadata and
/// FindCoordinator tell clients (the address the client connected to).
pub(super) fn dispatch(
    key: ApiKey,
    version: i16,
    client_id: &str,
    body: Bytes,
    s: &Shared,
    advertised: SocketAddr,
) -> Result<Reply, Malformed> {
    if key == ApiKey::ApiVersions {
        return api_versions(version);
    }
    if !supported(key, version) {
        return Err(Malformed); // a client only sends what ApiVersions offered
    }
    match key {
        ApiKey::Produce => produce::produce(decode(body, version)?, version, s),
        ApiKey::Fetch => encode(&fetch::fetch(decode(body, version)?, s), version),
        ApiKey::ListOffsets => encode(&fetch::list_offsets(decode(body, version)?, s), version),
        ApiKey::Metadata => encode(&metadata(decode(body, version)?, version, s, advertised), version),
        ApiKey::OffsetCommit => encode(&offsets::commit(decode(body, version)?, s), version),
        ApiKey::OffsetFetch => encode(&offsets::fetch(decode(body, version)?, version, s), version),
        ApiKey::FindCoordinator => encode(&find_coordinator(decode(body, version)?, version, advertised), version),
        ApiKey::CreateTopics => encode(&create_topics(decode(body, version)?, s), version),
        ApiKey::DeleteTopics => encode(&delete_topics(decode(body, version)?, s), version),
        ApiKey::JoinGroup => encode(&membership::join(decode(body, version)?, client_id, s), version),
        ApiKey::SyncGroup => encode(&membership::sync(decode(body, version)?, s), version),
        ApiKey::Heartbeat => encode(&membership::heartbeat(decode(body, version)?, s), version),
        ApiKey::LeaveGroup => encode(&membership::leave(decode(body, version)?, s), version),
        ApiKey::ListGroups => encode(&membership::list(s), version),
        ApiKey::DescribeGroups => encode(&membership::describe(decode(body, version)?, s), version),
        ApiKey::InitProducerId => encode(&init_producer_id(decode(body, version)?, s), version),
        ApiKey::DescribeConfigs => encode(&configs::describe(decode(body, version)?, s), version),
        ApiKey::IncrementalAlterConfigs => encode(&configs::alter(decode(body, version)?, s), version),
        ApiKey::OffsetDelete => encode(&offsets::delete(decode(body, version)?, s), version),
        _ => Err(Malformed),
    }
}

/// Decodes a request body of `key` without answering it (the fuzz target's path).
pub(super) fn decode_only(key: ApiKey, version: i16, body: Bytes) -> bool {
    if !supported(key, version) {
        return false;
    }
    match key {
        ApiKey::Produce => {
            decode::<ProduceRequest>(body, version).is_ok_and(|r| produce::decode_batches(&r, 1 << 20).is_ok())
        }
        ApiKey::Fetch => decode::<FetchRequest>(body, version).is_ok(),
        ApiKey::ListOffsets => decode::<ListOffsetsRequest>(body, version).is_ok(),
        ApiKey::Metadata => decode::<MetadataRequest>(body, version).is_ok(),
        ApiKey::OffsetCommit => decode::<OffsetCommitRequest>(body, version).is_ok(),
        ApiKey::OffsetFetch => decode::<OffsetFetchRequest>(body, version).is_ok(),
        ApiKey::FindCoordinator => decode::<FindCoordinatorRequest>(body, version).is_ok(),
        ApiKey::ApiVersions => decode::<ApiVersionsRequest>(body, version).is_ok(),
        ApiKey::CreateTopics => decode::<CreateTopicsRequest>(body, version).is_ok(),
        ApiKey::DeleteTopics => decode::<DeleteTopicsRequest>(body, version).is_ok(),
        ApiKey::JoinGroup => decode::<JoinGroupRequest>(body, version).is_ok(),
        ApiKey::SyncGroup => decode::<SyncGroupRequest>(body, version).is_ok(),
        ApiKey::Heartbeat => decode::<HeartbeatRequest>(body, version).is_ok(),
        ApiKey::LeaveGroup => decode::<LeaveGroupRequest>(body, version).is_ok(),
        ApiKey::ListGroups => decode::<ListGroupsRequest>(body, version).is_ok(),
        ApiKey::DescribeGroups => decode::<DescribeGroupsRequest>(body, version).is_ok(),
        ApiKey::InitProducerId => decode::<InitProducerIdRequest>(body, version).is_ok(),
        ApiKey::DescribeConfigs => decode::<DescribeConfigsRequest>(body, version).is_ok(),
        ApiKey::IncrementalAlterConfigs => decode::<IncrementalAlterConfigsRequest>(body, version).is_ok(),
        ApiKey::OffsetDelete => decode::<OffsetDeleteRequest>(body, version).is_ok(),
        ApiKey::SaslHandshake => decode::<SaslHandshakeRequest>(body, version).is_ok(),
        ApiKey::SaslAuthenticate => decode::<SaslAuthenticateRequest>(body, version).is_ok(),
        _ => false,
    }
}

/// ApiVersions: the table above. A version this server does not speak is answered at v0 with
/// `UNSUPPORTED_VERSION` and the table, as Kafka does, so the client can pick again.
fn api_versions(version: i16) -> Result<Reply, Malformed> {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(k, min, max)| ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max))
        .collect();
    let ok = (0..=3).contains(&version);
    let error_code = if ok { code::NONE } else { code::UNSUPPORTED_VERSION };
    let response = ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys);
    encode(&response, if ok { version } else { 0 })
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The one broker: this server.
fn broker(advertised: SocketAddr) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(str_bytes(&advertised.ip().to_string()))
        .with_port(i32::from(advertised.port()))
}

/// A topic as Metadata describes it: one partition, led by node 0.
fn topic_metadata(name: &str, error_code: i16) -> MetadataResponseTopic {
    let partitions = if error_code == code::NONE {
        vec![
            MetadataResponsePartition::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(0))
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)]),
        ]
    } else {
        Vec::new()
    };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_error_code(error_code)
        .with_partitions(partitions)
}

/// Opens topic `name`, creating it when `create` says so; the Kafka error code otherwise.
pub(super) fn open_topic(s: &Shared, name: &str, create: bool) -> Result<std::sync::Arc<crate::store::Topic>, i16> {
    if validate_name(name).is_err() {
        return Err(code::INVALID_TOPIC_EXCEPTION);
    }
    let opened = if create { s.store.topic(name) } else { s.store.existing_topic(name) };
    opened.map_err(|e| match e {
        crate::error::Error::NotFound { .. } => code::UNKNOWN_TOPIC_OR_PARTITION,
        _ => code::KAFKA_STORAGE_ERROR,
    })
}

/// Metadata: every topic (or those asked for, created when allowed), each one partition.
fn metadata(r: MetadataRequest, version: i16, s: &Shared, advertised: SocketAddr) -> MetadataResponse {
    let names: Vec<String> = match &r.topics {
        None => s.store.topics().unwrap_or_default(),
        Some(topics) => topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect(),
    };
    // v4+ says whether to create; earlier versions always may.
    let create = s.opts.auto_create_topics && (version < 4 || r.allow_auto_topic_creation) && r.topics.is_some();
    let topics = names
        .iter()
        .map(|name| topic_metadata(name, open_topic(s, name, create).err().unwrap_or(code::NONE)))
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![broker(advertised)])
        .with_cluster_id(Some(str_bytes("evlog")))
        .with_controller_id(BrokerId(0))
        .with_topics(topics)
}

/// FindCoordinator: every group's coordinator is this server.
fn find_coordinator(r: FindCoordinatorRequest, version: i16, advertised: SocketAddr) -> FindCoordinatorResponse {
    let (host, port) = (str_bytes(&advertised.ip().to_string()), i32::from(advertised.port()));
    if version >= 4 {
        let coordinators = r
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default().with_key(key).with_node_id(BrokerId(0)).with_host(host.clone()).with_port(port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default().with_node_id(BrokerId(0)).with_host(host).with_port(port)
}

/// CreateTopics: one partition each, replication factor 1 (or -1: the default).
fn create_topics(r: CreateTopicsRequest, s: &Shared) -> CreateTopicsResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let error_code = if validate_name(&name).is_err() {
                code::INVALID_TOPIC_EXCEPTION
            } else if !(t.num_partitions == 1 || t.num_partitions == -1) {
                code::INVALID_PARTITIONS
            } else if !(t.replication_factor == 1 || t.replication_factor == -1) {
                code::INVALID_REPLICATION_FACTOR
            } else if s.store.existing_topic(&name).is_ok() {
                code::TOPIC_ALREADY_EXISTS
            } else if r.validate_only {
                code::NONE
            } else {
                s.store.topic(&name).map_or(code::KAFKA_STORAGE_ERROR, |_| code::NONE)
            };
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(error_code)
                .with_num_partitions(1)
                .with_replication_factor(1)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// InitProducerId: a new producer id (epoch 0) for an idempotent producer. Transactions are
/// not offered: a transactional id is refused.
fn init_producer_id(r: InitProducerIdRequest, s: &Shared) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if r.transactional_id.is_some() {
        return response.with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    match s.producer_ids.allocate(&s.store) {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(_) => response.with_error_code(code::KAFKA_STORAGE_ERROR),
    }
}

/// DeleteTopics: by name.
fn delete_topics(r: DeleteTopicsRequest, s: &Shared) -> DeleteTopicsResponse {
    let names: Vec<TopicName> =
        if r.topic_names.is_empty() { r.topics.into_iter().filter_map(|t| t.name).collect() } else { r.topic_names };
    let responses = names
        .into_iter()
        .map(|name| {
            let error_code = match s.store.delete_topic(&name.0) {
                Ok(()) => code::NONE,
                Err(crate::error::Error::NotFound { .. }) => code::UNKNOWN_TOPIC_OR_PARTITION,
                Err(_) => code::UNKNOWN_SERVER_ERROR,
            };
            DeletableTopicResult::default().with_name(Some(name)).with_error_code(error_code)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
