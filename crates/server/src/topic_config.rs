//! Topic configs: every config Kafka 4.x defines for a topic (and Redpanda's `write.caching`),
//! validated as Kafka validates them, and what each does here: turned into the storage
//! `LogConfig`, into the Produce rules (`ProducePolicy`), or accepted and inert, with the
//! reason (the table in this crate's README says the same).
//!
//! Defaults are Kafka's, except where Shoal's differ on purpose, and DescribeConfigs reports
//! the ones in force: `flush.messages`/`flush.ms` (1 / 0: every batch synced), `segment.bytes`
//! (128 MiB) and `max.message.bytes` (16 MiB).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use shoal_kafka::cluster::{
    config_source, config_type, ApiError, ConfigChange, ConfigEntry, ConfigOp, ConfigSynonym,
    ProducePolicy, TimestampType, TopicCompression,
};
use shoal_storage::{CompactionConfig, Durability, LogConfig};

/// Kafka's value check of one config.
#[derive(Clone, Copy)]
enum Check {
    None,
    AtLeast(i64),
    Between(i64, i64),
    BetweenFloat(f64, f64),
    OneOf(&'static [&'static str]),
    /// A list whose every item is one of these.
    ListOf(&'static [&'static str]),
    /// gzip: 1..=9, or -1.
    GzipLevel,
    /// `[partition]:[broker]` items, or `*`.
    ThrottledReplicas,
}

/// What a config does on this broker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Honoured,
    /// Accepted and reported, changes nothing here: why.
    Inert(&'static str),
}

#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    kind: i8,
    default: &'static str,
    check: Check,
    effect: Effect,
}

const fn spec(
    name: &'static str,
    kind: i8,
    default: &'static str,
    check: Check,
    effect: Effect,
) -> Spec {
    Spec {
        name,
        kind,
        default,
        check,
        effect,
    }
}

use config_type::{BOOLEAN, DOUBLE, INT, LIST, LONG, STRING};
use Check::{AtLeast, Between};
use Effect::{Honoured, Inert};

const LONG_MAX: &str = "9223372036854775807";
const REPLICATION: &str = "a single node has no followers";
const TIERED: &str = "no tiered storage";

/// Every topic config, Kafka 4.x's 33 and `write.caching`, with its default as reported.
const SPECS: &[Spec] = &[
    spec(
        "cleanup.policy",
        LIST,
        "delete",
        Check::ListOf(&["compact", "delete"]),
        Honoured,
    ),
    spec(
        "compression.gzip.level",
        INT,
        "-1",
        Check::GzipLevel,
        Honoured,
    ),
    spec("compression.lz4.level", INT, "9", Between(1, 17), Honoured),
    spec(
        "compression.type",
        STRING,
        "producer",
        Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        Honoured,
    ),
    spec(
        "compression.zstd.level",
        INT,
        "3",
        Between(-131_072, 22),
        Honoured,
    ),
    spec(
        "delete.retention.ms",
        LONG,
        "86400000",
        AtLeast(0),
        Honoured,
    ),
    spec(
        "file.delete.delay.ms",
        LONG,
        "60000",
        AtLeast(0),
        Inert("segment files are removed at once; readers hold their own handles"),
    ),
    // Shoal syncs every batch by default: Kafka's spelling of that is 1 message / 0 ms (its
    // own defaults, Long.MAX_VALUE, would mean relaxed durability under `log_config`).
    spec("flush.messages", LONG, "1", AtLeast(1), Honoured),
    spec("flush.ms", LONG, "0", AtLeast(0), Honoured),
    spec(
        "follower.replication.throttled.replicas",
        LIST,
        "",
        Check::ThrottledReplicas,
        Inert(REPLICATION),
    ),
    spec("index.interval.bytes", INT, "4096", AtLeast(0), Honoured),
    spec(
        "leader.replication.throttled.replicas",
        LIST,
        "",
        Check::ThrottledReplicas,
        Inert(REPLICATION),
    ),
    spec(
        "local.retention.bytes",
        LONG,
        "-2",
        AtLeast(-2),
        Inert(TIERED),
    ),
    spec("local.retention.ms", LONG, "-2", AtLeast(-2), Inert(TIERED)),
    spec(
        "max.compaction.lag.ms",
        LONG,
        LONG_MAX,
        AtLeast(1),
        Honoured,
    ),
    spec("max.message.bytes", INT, "16777216", AtLeast(0), Honoured),
    spec(
        "message.timestamp.after.max.ms",
        LONG,
        "3600000",
        AtLeast(0),
        Honoured,
    ),
    spec(
        "message.timestamp.before.max.ms",
        LONG,
        LONG_MAX,
        AtLeast(0),
        Honoured,
    ),
    spec(
        "message.timestamp.type",
        STRING,
        "CreateTime",
        Check::OneOf(&["CreateTime", "LogAppendTime"]),
        Honoured,
    ),
    spec(
        "min.cleanable.dirty.ratio",
        DOUBLE,
        "0.5",
        Check::BetweenFloat(0.0, 1.0),
        Honoured,
    ),
    spec("min.compaction.lag.ms", LONG, "0", AtLeast(0), Honoured),
    spec("min.insync.replicas", INT, "1", AtLeast(1), Honoured),
    spec(
        "preallocate",
        BOOLEAN,
        "false",
        Check::None,
        Inert("segment blocks are always reserved ahead of the writes (fallocation)"),
    ),
    spec(
        "remote.log.copy.disable",
        BOOLEAN,
        "false",
        Check::None,
        Inert(TIERED),
    ),
    spec(
        "remote.log.delete.on.disable",
        BOOLEAN,
        "false",
        Check::None,
        Inert(TIERED),
    ),
    spec(
        "remote.storage.enable",
        BOOLEAN,
        "false",
        Check::None,
        Inert(TIERED),
    ),
    spec("retention.bytes", LONG, "-1", Check::None, Honoured),
    spec("retention.ms", LONG, "604800000", AtLeast(-1), Honoured),
    spec(
        "segment.bytes",
        INT,
        "134217728",
        AtLeast(1 << 20),
        Honoured,
    ),
    spec(
        "segment.index.bytes",
        INT,
        "10485760",
        AtLeast(4),
        Inert("indexes are sparse tables sized by index.interval.bytes, not preallocated files"),
    ),
    spec("segment.jitter.ms", LONG, "0", AtLeast(0), Honoured),
    spec("segment.ms", LONG, "604800000", AtLeast(1), Honoured),
    spec(
        "unclean.leader.election.enable",
        BOOLEAN,
        "false",
        Check::None,
        Inert(REPLICATION),
    ),
    spec("write.caching", BOOLEAN, "false", Check::None, Honoured),
];

/// Kafka 4.1's bound on a config value.
const VALUE_BYTES_MAX: usize = 32_767;

fn find(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.name == name)
}

/// Every topic config with its default, as DescribeConfigs reports them when unset.
#[cfg(test)]
pub(crate) fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    SPECS.iter().map(|spec| (spec.name, spec.default))
}

/// Every topic config: the value set on the topic, or the default.
pub(crate) fn describe(configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    SPECS
        .iter()
        .map(|spec| {
            let default_synonym = ConfigSynonym {
                name: spec.name.to_string(),
                value: Some(spec.default.to_string()),
                source: config_source::DEFAULT_CONFIG,
            };
            let (value, source, synonyms) = match configs.get(spec.name) {
                Some(value) => (
                    value.clone(),
                    config_source::DYNAMIC_TOPIC_CONFIG,
                    vec![
                        ConfigSynonym {
                            name: spec.name.to_string(),
                            value: Some(value.clone()),
                            source: config_source::DYNAMIC_TOPIC_CONFIG,
                        },
                        default_synonym,
                    ],
                ),
                None => (
                    spec.default.to_string(),
                    config_source::DEFAULT_CONFIG,
                    vec![default_synonym],
                ),
            };
            ConfigEntry {
                name: spec.name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                sensitive: false,
                config_type: spec.kind,
                synonyms,
                documentation: match spec.effect {
                    Inert(why) => Some(format!(
                        "Accepted; it changes nothing on this broker: {why}."
                    )),
                    Honoured => None,
                },
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
                apply_op(&mut next, key, op)?;
            }
            next
        }
    };
    validate(&next)?;
    Ok(next)
}

fn apply_op(
    next: &mut BTreeMap<String, String>,
    key: String,
    op: ConfigOp,
) -> Result<(), ApiError> {
    match op {
        ConfigOp::Set(value) => {
            let _ = next.insert(key, value);
        }
        // Deleting a config that is not set (or not known) changes nothing.
        ConfigOp::Delete => {
            let _ = next.remove(&key);
        }
        ConfigOp::Append(values) | ConfigOp::Subtract(values)
            if find(&key).is_none_or(|spec| spec.kind != LIST) =>
        {
            let _ = values;
            return Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                format!("{key} is not a list config: APPEND and SUBTRACT do not apply"),
            ));
        }
        ConfigOp::Append(ref values) | ConfigOp::Subtract(ref values) => {
            let default = find(&key).map_or("", |spec| spec.default);
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
    Ok(())
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
        format!("Invalid value {value} for configuration {key}: {why}"),
    )
}

/// Checks one value against its spec, as Kafka's `ConfigDef` parses and validates it.
fn check(spec: &Spec, value: &str) -> Result<(), ApiError> {
    let key = spec.name;
    if value.len() > VALUE_BYTES_MAX {
        return Err(invalid(key, "(too long)", "the value exceeds 32767 bytes"));
    }
    let integer = |min: i64, max: i64| -> Result<i64, ApiError> {
        let parsed: i64 = value
            .trim()
            .parse()
            .map_err(|_| invalid(key, value, "not a number"))?;
        if parsed < min || parsed > max {
            let kind = if spec.kind == INT { "INT" } else { "LONG" };
            return Err(invalid(key, value, &format!("not a {kind} in range")));
        }
        Ok(parsed)
    };
    let (min, max) = if spec.kind == INT {
        (i64::from(i32::MIN), i64::from(i32::MAX))
    } else {
        (i64::MIN, i64::MAX)
    };
    match spec.kind {
        BOOLEAN => {
            let lower = value.trim().to_ascii_lowercase();
            if lower != "true" && lower != "false" {
                return Err(invalid(
                    key,
                    value,
                    "Expected value to be either true or false",
                ));
            }
        }
        INT | LONG => {
            let parsed = integer(min, max)?;
            match spec.check {
                AtLeast(at_least) if parsed < at_least => {
                    return Err(invalid(
                        key,
                        value,
                        &format!("Value must be at least {at_least}"),
                    ));
                }
                Between(low, high) if parsed < low || parsed > high => {
                    return Err(invalid(
                        key,
                        value,
                        &format!("Value must be between {low} and {high}"),
                    ));
                }
                Check::GzipLevel if parsed > 9 || (parsed < 1 && parsed != -1) => {
                    return Err(invalid(
                        key,
                        value,
                        "Value must be between 1 and 9 or equal to -1",
                    ));
                }
                _ => {}
            }
        }
        DOUBLE => {
            let parsed: f64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(key, value, "not a number"))?;
            if let Check::BetweenFloat(low, high) = spec.check {
                if !(low..=high).contains(&parsed) {
                    return Err(invalid(
                        key,
                        value,
                        &format!("Value must be between {low} and {high}"),
                    ));
                }
            }
        }
        _ => match spec.check {
            Check::OneOf(allowed) if !allowed.contains(&value) => {
                return Err(invalid(
                    key,
                    value,
                    &format!("String must be one of: {}", allowed.join(", ")),
                ));
            }
            Check::ListOf(allowed) => {
                if let Some(item) = split_list(value)
                    .iter()
                    .find(|i| !allowed.contains(&i.as_str()))
                {
                    return Err(invalid(
                        key,
                        item,
                        &format!("String must be one of: {}", allowed.join(", ")),
                    ));
                }
            }
            Check::ThrottledReplicas => check_throttled(key, value)?,
            _ => {}
        },
    }
    Ok(())
}

/// Kafka's `ThrottledReplicaListValidator`: `*`, or `partition:broker` items.
fn check_throttled(key: &str, value: &str) -> Result<(), ApiError> {
    let items = split_list(value);
    if items == ["*"] {
        return Ok(());
    }
    let pair = |item: &String| {
        item.split_once(':').is_some_and(|(p, b)| {
            !p.is_empty() && !b.is_empty() && p.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        })
    };
    if items.iter().all(pair) {
        return Ok(());
    }
    Err(invalid(
        key,
        value,
        "must be the literal '*' or a list of replicas in the following format: \
         [partitionId]:[brokerId],[partitionId]:[brokerId],...",
    ))
}

/// Validates a topic's configs: names, values, and the cross-checks Kafka makes; refuses the
/// values this broker cannot honour (tiered storage) with the reason.
pub(crate) fn validate(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in configs {
        let spec = find(key).ok_or_else(|| {
            ApiError::with_message(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {key}"),
            )
        })?;
        check(spec, value)?;
    }
    let long = |key: &str| -> i64 {
        let value = configs
            .get(key)
            .map_or(find(key).map_or("0", |s| s.default), String::as_str);
        value.trim().parse().unwrap_or(0)
    };
    let (min_lag, max_lag) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms"));
    if min_lag > max_lag {
        return Err(ApiError::with_message(
            ResponseError::InvalidConfig,
            format!("conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"),
        ));
    }
    if configs
        .get("remote.storage.enable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Err(ApiError::with_message(
            ResponseError::InvalidConfig,
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.",
        ));
    }
    Ok(())
}

/// Whether the topic's `cleanup.policy` includes `compact`.
fn compacts(configs: &BTreeMap<String, String>) -> bool {
    split_list(value(configs, "cleanup.policy"))
        .iter()
        .any(|p| p == "compact")
}

/// A config's value on the topic, or its default.
fn value<'a>(configs: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    configs
        .get(key)
        .map(|v| v.trim())
        .unwrap_or_else(|| find(key).map_or("", |spec| spec.default))
}

fn number(configs: &BTreeMap<String, String>, key: &str) -> i64 {
    value(configs, key).parse().unwrap_or(0)
}

fn flag(configs: &BTreeMap<String, String>, key: &str) -> bool {
    value(configs, key).eq_ignore_ascii_case("true")
}

/// Builds the log configuration from validated topic configs.
pub(crate) fn log_config(configs: &BTreeMap<String, String>) -> Result<LogConfig, ApiError> {
    validate(configs)?;
    let mut config = LogConfig::default();
    // An empty cleanup policy (Kafka allows it) deletes nothing.
    let deletes = split_list(value(configs, "cleanup.policy"))
        .iter()
        .any(|p| p == "delete");
    let positive = |key: &str| u64::try_from(number(configs, key)).ok().filter(|_| deletes);
    if compacts(configs) {
        config.compaction = Some(CompactionConfig {
            delete_retention_ms: number(configs, "delete.retention.ms"),
            min_cleanable_dirty_ratio: value(configs, "min.cleanable.dirty.ratio")
                .parse()
                .unwrap_or(0.5),
            min_compaction_lag_ms: number(configs, "min.compaction.lag.ms"),
            max_compaction_lag_ms: number(configs, "max.compaction.lag.ms"),
        });
    }
    config.retention_ms = positive("retention.ms");
    config.retention_bytes = positive("retention.bytes");
    config.segment_bytes_max = number(configs, "segment.bytes") as u64;
    config.segment_ms_max = u64::try_from(number(configs, "segment.ms")).ok();
    config.segment_jitter_ms = u64::try_from(number(configs, "segment.jitter.ms")).unwrap_or(0);
    config.index_interval_bytes =
        u64::try_from(number(configs, "index.interval.bytes")).unwrap_or(0);
    config.batch_bytes_max = usize::try_from(number(configs, "max.message.bytes"))
        .unwrap_or(0)
        .min(shoal_model::constants::BATCH_BYTES_MAX);
    // Durability (see the storage README): fsync per batch unless the topic opts out.
    let flush_messages = number(configs, "flush.messages");
    let flush_ms = number(configs, "flush.ms");
    if flag(configs, "write.caching") || flush_messages > 1 || flush_ms > 0 {
        config.durability = Durability::Relaxed {
            flush_messages: if configs.contains_key("flush.messages") {
                flush_messages as u64
            } else {
                u64::MAX
            },
            flush_ms: if configs.contains_key("flush.ms") {
                flush_ms as u64
            } else {
                1000
            },
        };
    }
    Ok(config)
}

/// The Produce rules of a topic (its configs validated when they were set).
pub(crate) fn produce_policy(configs: &BTreeMap<String, String>) -> ProducePolicy {
    let compression = match value(configs, "compression.type") {
        "uncompressed" => TopicCompression::Uncompressed,
        "gzip" => TopicCompression::Gzip(number(configs, "compression.gzip.level") as i32),
        "snappy" => TopicCompression::Snappy,
        "lz4" => TopicCompression::Lz4(number(configs, "compression.lz4.level") as u32),
        "zstd" => TopicCompression::Zstd(number(configs, "compression.zstd.level") as i32),
        _ => TopicCompression::Producer,
    };
    let timestamp_type = if value(configs, "message.timestamp.type") == "LogAppendTime" {
        TimestampType::LogAppendTime
    } else {
        TimestampType::CreateTime
    };
    ProducePolicy {
        timestamp_type,
        timestamp_before_max_ms: number(configs, "message.timestamp.before.max.ms"),
        timestamp_after_max_ms: number(configs, "message.timestamp.after.max.ms"),
        compression,
        min_insync_replicas: number(configs, "min.insync.replicas") as i32,
        compacted: compacts(configs),
    }
}

#[cfg(test)]
mod tests;
