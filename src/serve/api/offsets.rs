//! OffsetCommit, OffsetFetch and OffsetDelete: the same group offsets in the consumer database
//! that `Store::consumer` and `evlog groups` use, so a commit over the wire is seen by the
//! embedded API and the reverse. A commit is durable (fsynced) when it is answered. A fetch
//! without topics answers every topic the group committed on.

use crate::serve::Shared;
use crate::serve::api::{code, open_topic};
use crate::store::CommitDurability;
use crate::store::validate_name;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// Kafka's error for offsets that a group with live members still uses.
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// The topics `group` committed on (what a fetch without topics answers).
fn committed_topics(s: &Shared, group: &str) -> Vec<TopicName> {
    let all = s.store.inner().state.all_group_names().unwrap_or_default();
    let named = all.into_iter().filter(|(_, g)| g == group);
    named.map(|(t, _)| TopicName(StrBytes::from_string(t))).collect()
}

pub(in crate::serve) fn commit(r: OffsetCommitRequest, s: &Shared) -> OffsetCommitResponse {
    let group = r.group_id.0.to_string();
    // A member's commit must come from the current generation; a commit outside any group
    // (generation -1, as an assign()ing client sends) is taken as it is.
    let member_error = if r.generation_id_or_member_epoch >= 0 && !r.member_id.is_empty() {
        s.groups.is_current(&group, r.generation_id_or_member_epoch, &r.member_id)
    } else {
        code::NONE
    };
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let error_code = if member_error != code::NONE {
                        member_error
                    } else {
                        commit_one(s, &group, &name, p.partition_index, p.committed_offset)
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn commit_one(s: &Shared, group: &str, topic: &str, partition: i32, offset: i64) -> i16 {
    if partition != 0 {
        return code::UNKNOWN_TOPIC_OR_PARTITION;
    }
    if validate_name(group).is_err() {
        return code::INVALID_REQUEST;
    }
    let t = match open_topic(s, topic, false) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let Ok(offset) = u64::try_from(offset) else { return code::OFFSET_OUT_OF_RANGE };
    if offset > t.next_offset() {
        return code::OFFSET_OUT_OF_RANGE;
    }
    match s.store.inner().state.commit(topic, group, offset, CommitDurability::Always) {
        Ok(()) => code::NONE,
        Err(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// The committed offset of `group` on `topic` (-1: none).
fn committed(s: &Shared, group: &str, topic: &str) -> (i64, i16) {
    match s.store.inner().state.committed(topic, group) {
        Ok(Some(c)) => (i64::try_from(c.offset).unwrap_or(i64::MAX), code::NONE),
        Ok(None) => (-1, code::NONE),
        Err(_) => (-1, code::KAFKA_STORAGE_ERROR),
    }
}

pub(in crate::serve) fn fetch(r: OffsetFetchRequest, version: i16, s: &Shared) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = r
            .groups
            .into_iter()
            .map(|g| {
                let group = g.group_id.0.to_string();
                let every = || {
                    let topics = committed_topics(s, &group).into_iter();
                    topics
                        .map(|name| OffsetFetchRequestTopics::default().with_name(name).with_partition_indexes(vec![0]))
                };
                let topics = g
                    .topics
                    .unwrap_or_else(|| every().collect())
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partition_indexes
                            .iter()
                            .map(|&p| {
                                let (offset, error_code) = committed(s, &group, &t.name.0);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_error_code(error_code)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default().with_name(t.name).with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group = r.group_id.0.to_string();
    let every = || {
        let topics = committed_topics(s, &group).into_iter();
        topics.map(|name| OffsetFetchRequestTopic::default().with_name(name).with_partition_indexes(vec![0]))
    };
    let topics = r
        .topics
        .unwrap_or_else(|| every().collect())
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let (offset, error_code) = committed(s, &group, &t.name.0);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// OffsetDelete: a group's committed offsets on the topics named removed, as `Store::delete_group`
/// does; refused while the group has members over the wire or an embedded consumer uses it.
pub(in crate::serve) fn delete(r: OffsetDeleteRequest, s: &Shared) -> OffsetDeleteResponse {
    let group = r.group_id.0.to_string();
    let members = s.groups.describe(&group).is_some_and(|g| !g.members.is_empty());
    let topics = (r.topics.into_iter())
        .map(|t| {
            let partitions = (t.partitions.iter())
                .map(|p| {
                    let error_code = match (p.partition_index, members) {
                        (0, true) => GROUP_SUBSCRIBED_TO_TOPIC,
                        (0, false) => match s.store.delete_group(&group, &t.name) {
                            Ok(()) => code::NONE,
                            Err(crate::error::Error::GroupBusy { .. }) => GROUP_SUBSCRIBED_TO_TOPIC,
                            Err(crate::error::Error::NotFound { kind: "topic", .. }) => {
                                code::UNKNOWN_TOPIC_OR_PARTITION
                            }
                            Err(crate::error::Error::NotFound { .. }) => GROUP_ID_NOT_FOUND,
                            Err(_) => code::KAFKA_STORAGE_ERROR,
                        },
                        _ => code::UNKNOWN_TOPIC_OR_PARTITION,
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
