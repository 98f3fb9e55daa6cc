//! DescribeConfigs: a topic's configuration under Kafka's names (what `kafka-configs
//! --describe` and admin clients ask), from its `TopicConfig` and the store's options, and
//! evlog's own settings under `evlog.*` names. IncrementalAlterConfigs: the settable ones
//! (`SETTABLE`) changed, saved in the topic's `TopicConfig` as `Store::configure_topic` does.

use crate::serve::Shared;
use crate::serve::api::{code, open_topic};
use crate::store::{Compression, TopicConfig};
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

/// Kafka's resource types.
const TOPIC: i8 = 2;
/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or_else(|| "-1".to_string(), |d| d.as_millis().to_string())
}

/// (name, value, whether the topic's own configuration set it).
fn topic_configs(s: &Shared, name: &str) -> Result<Vec<(&'static str, String, bool)>, i16> {
    open_topic(s, name, false)?;
    let c = s.store.topic_config(name).map_err(|_| code::KAFKA_STORAGE_ERROR)?;
    let opts = &s.store.inner().opts;
    let age = c.retention_age.or(opts.retention.retention_age_max);
    Ok(vec![
        ("cleanup.policy", if c.compact_by_key { "compact".into() } else { "delete".into() }, c.compact_by_key),
        ("retention.ms", ms(age), c.retention_age.is_some()),
        (
            "retention.bytes",
            c.retention_bytes.or(opts.retention.retention_bytes_max).map_or(-1i128, i128::from).to_string(),
            c.retention_bytes.is_some(),
        ),
        ("max.message.bytes", opts.log.record_bytes_max.to_string(), false),
        ("segment.bytes", opts.log.segment_bytes_max.to_string(), false),
        ("message.timestamp.type", "CreateTime".into(), false),
        ("compression.type", "producer".into(), false),
        ("evlog.budget.bytes", c.bytes_max.map_or(-1i128, i128::from).to_string(), c.bytes_max.is_some()),
        ("evlog.when_full", c.when_full.name().into(), c.bytes_max.is_some()),
        ("evlog.compression", c.compression.name().into(), c.compression != crate::store::Compression::None),
        ("evlog.tombstone.retention.ms", ms(Some(c.tombstone_retention)), false),
        ("evlog.block.timeout.ms", ms(Some(c.block_timeout)), false),
    ])
}

/// The names IncrementalAlterConfigs sets (or, deleted, returns to their defaults).
pub const SETTABLE: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "evlog.budget.bytes",
    "evlog.when_full",
    "evlog.block.timeout.ms",
    "evlog.compression",
    "evlog.tombstone.retention.ms",
];

/// `c` with `name` set to `value` (`None`: back to the default); why not, for a name or a value
/// evlog does not take.
pub fn set_config(c: TopicConfig, name: &str, value: Option<&str>) -> Result<TopicConfig, String> {
    let default = TopicConfig::default();
    let bad = || format!("{name}: {:?} is not a value evlog takes", value.unwrap_or_default());
    // -1 (Kafka's "none") or a count.
    let count = |v: &str| -> Result<Option<u64>, String> {
        if v == "-1" { Ok(None) } else { v.parse().map(Some).map_err(|_| bad()) }
    };
    let millis = |v: &str| count(v).map(|o| o.map(Duration::from_millis));
    let c = match (name, value) {
        ("cleanup.policy", None) => c.with_compaction(default.compact_by_key, c.tombstone_retention),
        ("cleanup.policy", Some("compact")) => c.with_compaction(true, c.tombstone_retention),
        ("cleanup.policy", Some("delete")) => c.with_compaction(false, c.tombstone_retention),
        ("retention.ms", v) => c.with_retention_age(v.map_or(Ok(default.retention_age), millis)?),
        ("retention.bytes", v) => c.with_retention_bytes(v.map_or(Ok(default.retention_bytes), count)?),
        ("evlog.budget.bytes", v) => match v.map_or(Ok(default.bytes_max), count)? {
            Some(bytes) => c.with_budget(bytes, c.when_full),
            None => c.without_budget(),
        },
        ("evlog.when_full", None) => c.with_when_full(default.when_full),
        ("evlog.when_full", Some(v)) => c.with_when_full(crate::log::WhenFull::from_name(v).ok_or_else(bad)?),
        ("evlog.block.timeout.ms", v) => {
            c.with_block_timeout(v.map_or(Ok(Some(default.block_timeout)), millis)?.ok_or_else(bad)?)
        }
        ("evlog.compression", None) => c.with_compression(default.compression),
        ("evlog.compression", Some(v)) => c.with_compression(Compression::from_name(v).ok_or_else(bad)?),
        ("evlog.tombstone.retention.ms", v) => {
            let d = v.map_or(Ok(Some(default.tombstone_retention)), millis)?.ok_or_else(bad)?;
            c.with_compaction(c.compact_by_key, d)
        }
        (n, _) if SETTABLE.contains(&n) => return Err(bad()),
        (n, _) => return Err(format!("{n} cannot be changed in evlog (settable: {})", SETTABLE.join(", "))),
    };
    Ok(c)
}

/// Kafka's config operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const INVALID_CONFIG: i16 = 40;

/// IncrementalAlterConfigs: each topic's changes applied in order, then saved (all or none of a
/// topic's); `validate_only` checks without saving.
pub(in crate::serve) fn alter(r: IncrementalAlterConfigsRequest, s: &Shared) -> IncrementalAlterConfigsResponse {
    let responses = (r.resources.iter())
        .map(|res| {
            let answer = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match alter_one(res, r.validate_only, s) {
                Ok(()) => answer,
                Err((error, message)) => {
                    answer.with_error_code(error).with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One resource's changes; the Kafka error code and message when refused.
fn alter_one(res: &AlterConfigsResource, validate_only: bool, s: &Shared) -> Result<(), (i16, String)> {
    let topic: &str = &res.resource_name;
    if res.resource_type != TOPIC {
        return Err((code::INVALID_REQUEST, "only topics are configured in evlog".to_string()));
    }
    open_topic(s, topic, false).map_err(|c| (c, format!("no topic {topic}")))?;
    let mut c = s.store.topic_config(topic).map_err(|e| (code::KAFKA_STORAGE_ERROR, e.to_string()))?;
    for a in &res.configs {
        let value = match a.config_operation {
            SET => a.value.as_deref(),
            DELETE => None,
            _ => return Err((code::INVALID_REQUEST, format!("{}: only SET and DELETE are offered", &*a.name))),
        };
        c = set_config(c, &a.name, value).map_err(|m| (INVALID_CONFIG, m))?;
    }
    c.validate().map_err(|e| (INVALID_CONFIG, e.to_string()))?;
    if !validate_only {
        s.store.configure_topic(topic, c).map_err(|e| (code::KAFKA_STORAGE_ERROR, e.to_string()))?;
    }
    Ok(())
}
pub(in crate::serve) fn describe(r: DescribeConfigsRequest, s: &Shared) -> DescribeConfigsResponse {
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != TOPIC {
                return result; // the broker's own: none to show
            }
            match topic_configs(s, &res.resource_name) {
                Err(c) => result.with_error_code(c),
                Ok(all) => {
                    let wanted = |n: &str| {
                        res.configuration_keys.as_ref().is_none_or(|k| k.is_empty() || k.iter().any(|w| &**w == n))
                    };
                    let configs = all
                        .into_iter()
                        .filter(|(n, _, _)| wanted(n))
                        .map(|(n, v, set)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str(n))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_read_only(true)
                                .with_config_source(if set { DYNAMIC_TOPIC_CONFIG } else { DEFAULT_CONFIG })
                        })
                        .collect();
                    result.with_configs(configs)
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
