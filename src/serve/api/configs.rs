//! DescribeConfigs: a topic's configuration under Kafka's names (what `kafka-configs
//! --describe` and admin clients ask), from its `TopicConfig` and the store's options, and
//! evlog's own settings under `evlog.*` names.

use crate::serve::Shared;
use crate::serve::api::{code, open_topic};
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

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
    ])
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
