//! Topic configs (Kafka names) and how they become a storage `LogConfig`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{
    config_source, config_type, ApiError, ConfigChange, ConfigEntry, ConfigOp, ConfigSynonym,
};
use shoal_storage::{Durability, LogConfig};

/// The topic configs this broker understands, with their defaults as reported to clients
/// (DescribeConfigs lists them).
pub(crate) const KNOWN: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "604800000"),
    ("retention.bytes", "-1"),
    ("segment.bytes", "134217728"),
    ("segment.ms", "604800000"),
    // Shoal syncs every batch by default: Kafka's spelling of that is 1 message / 0 ms (its
    // own defaults, Long.MAX_VALUE, would mean relaxed durability under `log_config`).
    ("flush.messages", "1"),
    ("flush.ms", "0"),
    ("write.caching", "false"),
    ("max.message.bytes", "16777216"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
];

/// Configs whose value is a comma-separated list (IncrementalAlterConfigs APPEND/SUBTRACT).
const LISTS: &[&str] = &["cleanup.policy"];

fn kind_of(key: &str) -> i8 {
    match key {
        "cleanup.policy" => config_type::LIST,
        "write.caching" => config_type::BOOLEAN,
        "message.timestamp.type" => config_type::STRING,
        "segment.bytes" | "max.message.bytes" | "min.insync.replicas" => config_type::INT,
        _ => config_type::LONG,
    }
}

/// Every known topic config: the value set on the topic, or the default.
pub(crate) fn describe(configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    KNOWN
        .iter()
        .map(|&(name, default)| {
            let default_synonym = ConfigSynonym {
                name: name.to_string(),
                value: Some(default.to_string()),
                source: config_source::DEFAULT_CONFIG,
            };
            let (value, source, synonyms) = match configs.get(name) {
                Some(value) => (
                    value.clone(),
                    config_source::DYNAMIC_TOPIC_CONFIG,
                    vec![
                        ConfigSynonym {
                            name: name.to_string(),
                            value: Some(value.clone()),
                            source: config_source::DYNAMIC_TOPIC_CONFIG,
                        },
                        default_synonym,
                    ],
                ),
                None => (
                    default.to_string(),
                    config_source::DEFAULT_CONFIG,
                    vec![default_synonym],
                ),
            };
            ConfigEntry {
                name: name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                sensitive: false,
                config_type: kind_of(name),
                synonyms,
            }
        })
        .collect()
}

/// Applies a change to a topic's explicitly set configs and validates the result.
pub(crate) fn apply_change(
    current: &BTreeMap<String, String>,
    change: ConfigChange,
) -> Result<BTreeMap<String, String>, ApiError> {
    let next = match change {
        ConfigChange::Replace(configs) => configs,
        ConfigChange::Incremental(ops) => {
            let mut next = current.clone();
            for (key, op) in ops {
                match op {
                    ConfigOp::Set(value) => {
                        let _ = next.insert(key, value);
                    }
                    // Deleting a config that is not set (or not known) changes nothing.
                    ConfigOp::Delete => {
                        let _ = next.remove(&key);
                    }
                    ConfigOp::Append(_) | ConfigOp::Subtract(_)
                        if !LISTS.contains(&key.as_str()) =>
                    {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidRequest,
                            format!("{key} is not a list config: APPEND and SUBTRACT do not apply"),
                        ))
                    }
                    ConfigOp::Append(ref values) | ConfigOp::Subtract(ref values) => {
                        let default = KNOWN
                            .iter()
                            .find(|(name, _)| *name == key)
                            .map_or("", |(_, d)| d);
                        let base = next.get(&key).map_or(default, String::as_str);
                        let mut items: Vec<String> = split_list(base);
                        let changed = split_list(values);
                        if matches!(op, ConfigOp::Append(_)) {
                            for item in changed {
                                if !items.contains(&item) {
                                    items.push(item);
                                }
                            }
                        } else {
                            items.retain(|item| !changed.contains(item));
                        }
                        let _ = next.insert(key, items.join(","));
                    }
                }
            }
            next
        }
    };
    let _ = log_config(&next)?;
    Ok(next)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn invalid(key: &str, value: &str, why: &str) -> ApiError {
    ApiError::with_message(
        ResponseError::InvalidConfig,
        format!("{key}={value}: {why}"),
    )
}

fn number(key: &str, value: &str, min: i64) -> Result<i64, ApiError> {
    let parsed: i64 = value
        .parse()
        .map_err(|_| invalid(key, value, "not a number"))?;
    if parsed < min {
        return Err(invalid(key, value, &format!("must be at least {min}")));
    }
    Ok(parsed)
}

/// Builds the log configuration, refusing unknown keys and values this broker cannot honour.
pub(crate) fn log_config(configs: &BTreeMap<String, String>) -> Result<LogConfig, ApiError> {
    let mut config = LogConfig::default();
    let mut write_caching = false;
    let mut flush_messages: Option<i64> = None;
    let mut flush_ms: Option<i64> = None;
    for (key, value) in configs {
        let value = value.as_str();
        match key.as_str() {
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => {
                return Err(invalid(
                    key,
                    value,
                    "only the delete policy is supported (no compaction yet)",
                ))
            }
            "retention.ms" => config.retention_ms = u64::try_from(number(key, value, -1)?).ok(),
            "retention.bytes" => {
                config.retention_bytes = u64::try_from(number(key, value, -1)?).ok()
            }
            "segment.bytes" => config.segment_bytes_max = number(key, value, 1 << 20)? as u64,
            "segment.ms" => config.segment_ms_max = Some(number(key, value, 1)? as u64),
            "flush.messages" => flush_messages = Some(number(key, value, 1)?),
            "flush.ms" => flush_ms = Some(number(key, value, 0)?),
            "write.caching" => {
                write_caching = value
                    .parse()
                    .map_err(|_| invalid(key, value, "not true or false"))?
            }
            "max.message.bytes" => {
                config.batch_bytes_max = number(key, value, 1024)?
                    .min(shoal_model::constants::BATCH_BYTES_MAX as i64)
                    as usize
            }
            "message.timestamp.type" if value == "CreateTime" => {}
            "message.timestamp.type" => {
                return Err(invalid(key, value, "only CreateTime is supported"))
            }
            "min.insync.replicas" if value == "1" => {}
            "min.insync.replicas" => {
                return Err(invalid(key, value, "a single node has one replica"))
            }
            _ => {
                return Err(ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!("unknown topic config {key}"),
                ))
            }
        }
    }
    // Durability (see the storage README): fsync per batch unless the topic opts out.
    let relaxed =
        write_caching || flush_messages.is_some_and(|n| n > 1) || flush_ms.is_some_and(|ms| ms > 0);
    if relaxed {
        config.durability = Durability::Relaxed {
            flush_messages: flush_messages.map_or(u64::MAX, |n| n as u64),
            flush_ms: flush_ms.map_or(1000, |ms| ms as u64),
        };
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unset_configs_behave_as_the_reported_defaults() {
        // DescribeConfigs reports these defaults; the log must act on them when they are unset.
        let config = log_config(&configs(&[])).expect("defaults are valid");
        let reported = |key: &str| -> u64 {
            KNOWN
                .iter()
                .find(|(name, _)| *name == key)
                .and_then(|(_, value)| value.parse().ok())
                .expect("known numeric default")
        };
        assert_eq!(config.segment_ms_max, Some(reported("segment.ms")));
        assert_eq!(config.retention_ms, Some(reported("retention.ms")));
        assert_eq!(config.segment_bytes_max, reported("segment.bytes"));
    }

    #[test]
    fn durability_follows_the_documented_rule() {
        assert_eq!(
            log_config(&configs(&[])).map(|c| c.durability),
            Ok(Durability::Fsync)
        );
        let relaxed = log_config(&configs(&[("write.caching", "true")])).map(|c| c.durability);
        assert_eq!(
            relaxed,
            Ok(Durability::Relaxed {
                flush_messages: u64::MAX,
                flush_ms: 1000
            })
        );
        let by_count = log_config(&configs(&[("flush.messages", "100")])).map(|c| c.durability);
        assert_eq!(
            by_count,
            Ok(Durability::Relaxed {
                flush_messages: 100,
                flush_ms: 1000
            })
        );
        assert_eq!(
            log_config(&configs(&[("flush.messages", "1")])).map(|c| c.durability),
            Ok(Durability::Fsync)
        );
    }

    #[test]
    fn incremental_changes_apply_in_order_and_are_validated() {
        let current = configs(&[("retention.ms", "1000"), ("write.caching", "true")]);
        let next = apply_change(
            &current,
            ConfigChange::Incremental(vec![
                ("retention.ms".into(), ConfigOp::Delete),
                ("segment.bytes".into(), ConfigOp::Set("2097152".into())),
                ("cleanup.policy".into(), ConfigOp::Append("delete".into())),
            ]),
        )
        .expect("valid");
        assert_eq!(
            next,
            configs(&[
                ("cleanup.policy", "delete"),
                ("segment.bytes", "2097152"),
                ("write.caching", "true")
            ])
        );
        let append_to_number = apply_change(
            &current,
            ConfigChange::Incremental(vec![("retention.ms".into(), ConfigOp::Append("1".into()))]),
        );
        assert_eq!(
            append_to_number.map_err(|e| e.code),
            Err(ResponseError::InvalidRequest)
        );
        let compact = apply_change(
            &current,
            ConfigChange::Incremental(vec![(
                "cleanup.policy".into(),
                ConfigOp::Append("compact".into()),
            )]),
        );
        assert_eq!(
            compact.map_err(|e| e.code),
            Err(ResponseError::InvalidConfig)
        );
        let replaced = apply_change(
            &current,
            ConfigChange::Replace(configs(&[("retention.bytes", "5")])),
        );
        assert_eq!(replaced, Ok(configs(&[("retention.bytes", "5")])));
    }

    #[test]
    fn describe_lists_every_known_config_with_its_source() {
        let entries = describe(&configs(&[("retention.ms", "1000")]));
        assert_eq!(entries.len(), KNOWN.len());
        let retention = entries
            .iter()
            .find(|e| e.name == "retention.ms")
            .expect("listed");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.source, config_source::DYNAMIC_TOPIC_CONFIG);
        assert_eq!(retention.synonyms.len(), 2);
        let segment = entries
            .iter()
            .find(|e| e.name == "segment.bytes")
            .expect("listed");
        assert_eq!(segment.source, config_source::DEFAULT_CONFIG);
        // Every default, set explicitly, is valid and changes nothing (fsync durability).
        for (name, default) in KNOWN {
            let config = log_config(&configs(&[(name, default)])).expect(name);
            assert_eq!(config.durability, Durability::Fsync, "{name}");
        }
    }

    #[test]
    fn unknown_and_unsupported_configs_are_refused() {
        assert!(log_config(&configs(&[("retention.msec", "1")])).is_err());
        assert!(log_config(&configs(&[("cleanup.policy", "compact")])).is_err());
        assert!(log_config(&configs(&[("segment.bytes", "10")])).is_err());
        let config = log_config(&configs(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "1000"),
        ]))
        .expect("valid");
        assert_eq!(
            (config.retention_ms, config.retention_bytes),
            (None, Some(1000))
        );
    }
}
