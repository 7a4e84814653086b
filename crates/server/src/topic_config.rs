//! Topic configs (Kafka names) and how they become a storage `LogConfig`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::ApiError;
use shoal_storage::{Durability, LogConfig};

/// The topic configs this broker understands, with their defaults as reported to clients
/// (DescribeConfigs will list them).
#[allow(dead_code)]
pub(crate) const KNOWN: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "604800000"),
    ("retention.bytes", "-1"),
    ("segment.bytes", "134217728"),
    ("segment.ms", "604800000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("write.caching", "false"),
    ("max.message.bytes", "16777216"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
];

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
