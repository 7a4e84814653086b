use std::cell::Cell;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use shoal_model::Offset;
use shoal_storage::{BatchCache, BufferPool, Error, Guarantee, Log, LogContext, Wait};

use super::*;

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn reported(key: &str) -> i64 {
    defaults()
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
        .expect("a numeric default")
}

struct TestClock(Cell<i64>);

impl shoal_io::Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

/// A log on the simulated disk with the configs a topic with no settings gets.
struct DefaultLog {
    exec: LocalPool,
    clock: Rc<TestClock>,
    log: Log<shoal_sim_disk::SimDisk>,
}

const NOW_MS: i64 = 1_700_000_000_000;

fn default_log() -> DefaultLog {
    let config = log_config(&BTreeMap::new()).expect("the defaults are valid");
    let clock = Rc::new(TestClock(Cell::new(NOW_MS)));
    let ctx = LogContext {
        disk: Rc::new(shoal_sim_disk::SimDisk::new()),
        clock: clock.clone(),
        pool: BufferPool::new(64 << 20),
        cache: BatchCache::new(1 << 20),
    };
    let mut exec = LocalPool::new();
    let log = exec
        .run_until(Log::open(ctx, "/data/t-0".into(), config))
        .expect("open");
    let flusher = log.clone();
    exec.spawner()
        .spawn_local(async move { flusher.run_flusher().await })
        .expect("spawn");
    DefaultLog { exec, clock, log }
}

impl DefaultLog {
    fn append(&mut self, value_bytes: usize, ts_ms: i64) -> Result<shoal_storage::Appended, Error> {
        let value = vec![b'v'; value_bytes];
        let batch = shoal_storage::build_batch(&[&value], ts_ms);
        self.exec.run_until(self.log.append(batch, Wait::Durable))
    }
}

#[test]
fn unset_configs_behave_as_the_reported_defaults() {
    // DescribeConfigs reports these defaults for a topic with no settings: a log built from
    // no settings must act on exactly them.
    // retention.ms: data is kept until it is older than the reported default, then deleted.
    let mut t = default_log();
    let _ = t.append(100, NOW_MS).expect("append");
    t.clock.0.set(NOW_MS + reported("retention.ms") - 1);
    t.exec
        .run_until(t.log.enforce_retention())
        .expect("retention");
    assert_eq!(
        t.log.offsets().log_start,
        Offset(0),
        "kept just before retention.ms"
    );
    t.clock.0.set(NOW_MS + reported("retention.ms") + 1);
    t.exec
        .run_until(t.log.enforce_retention())
        .expect("retention");
    assert_eq!(
        t.log.offsets().log_start,
        Offset(1),
        "deleted just after retention.ms"
    );
    // segment.ms: the segment rolls once a batch is that much newer than its first one.
    let mut t = default_log();
    let _ = t.append(100, NOW_MS).expect("append");
    let _ = t
        .append(100, NOW_MS + reported("segment.ms") - 1)
        .expect("append");
    assert_eq!(t.log.segment_count(), 1);
    let _ = t
        .append(100, NOW_MS + reported("segment.ms"))
        .expect("append");
    assert_eq!(t.log.segment_count(), 2, "rolled at segment.ms");
    // segment.bytes: the first segment holds no more than the reported size.
    let mut t = default_log();
    let mut last_batch_bytes = 0;
    while t.log.segment_count() == 1 {
        let before = t.log.size_bytes();
        let _ = t.append(1 << 20, NOW_MS).expect("append");
        last_batch_bytes = t.log.size_bytes() - before;
    }
    // The batch that did not fit went to the second segment.
    let first_segment = t.log.size_bytes() - last_batch_bytes;
    let segment_bytes = reported("segment.bytes") as u64;
    assert!(
        first_segment <= segment_bytes && first_segment + last_batch_bytes > segment_bytes,
        "first segment held {first_segment} bytes of segment.bytes {segment_bytes}"
    );
    // max.message.bytes: a batch over the reported size is refused, one at it is not.
    let mut t = default_log();
    let overhead = shoal_storage::build_batch(&[b""], 0).len();
    let limit = reported("max.message.bytes") as usize;
    assert!(matches!(
        t.append(limit - overhead + 1, NOW_MS),
        Err(Error::BatchTooLarge { .. })
    ));
    let appended = t
        .append(limit - overhead - 8, NOW_MS)
        .expect("at the limit");
    // flush.messages / flush.ms (1 / 0): every batch is synced before it is acknowledged.
    assert_eq!(appended.guarantee, Guarantee::Synced);
    // message.timestamp.after.max.ms: a record further in the future is refused.
    let policy = produce_policy(&BTreeMap::new());
    let after = reported("message.timestamp.after.max.ms");
    let at = |ts: i64| {
        shoal_kafka::records::prepare(shoal_storage::build_batch(&[b"x"], ts), &policy, NOW_MS)
    };
    assert!(at(NOW_MS + after).is_ok());
    let refused = at(NOW_MS + after + 1).expect_err("too far in the future");
    assert_eq!(refused.code, ResponseError::InvalidTimestamp);
    assert_eq!(refused.record_errors.len(), 1);
    // compression.type=producer keeps the producer's bytes.
    let batch = shoal_storage::build_batch(&[b"x"], NOW_MS);
    assert_eq!(at(NOW_MS).expect("ok").batch, batch);
}

#[test]
fn every_kafka_topic_config_is_accepted_with_kafka_values() {
    for (name, default) in defaults() {
        assert!(
            validate(&configs(&[(name, default)])).is_ok(),
            "{name}={default}"
        );
    }
    let set = configs(&[
        ("compression.type", "lz4"),
        ("compression.lz4.level", "12"),
        ("delete.retention.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.25"),
        ("leader.replication.throttled.replicas", "0:1,1:1"),
        ("follower.replication.throttled.replicas", "*"),
        ("message.timestamp.type", "LogAppendTime"),
        ("min.insync.replicas", "2"),
        ("preallocate", "TRUE"),
        ("cleanup.policy", "delete"),
        ("segment.jitter.ms", "5000"),
        ("local.retention.ms", "-2"),
    ]);
    assert!(validate(&set).is_ok());
    let policy = produce_policy(&set);
    assert_eq!(policy.compression, TopicCompression::Lz4(12));
    assert_eq!(policy.timestamp_type, TimestampType::LogAppendTime);
    assert_eq!(policy.min_insync_replicas, 2);
    let config = log_config(&set).expect("valid");
    assert_eq!(config.segment_jitter_ms, 5000);
    let described = describe(&BTreeMap::new());
    assert_eq!(described.len(), defaults().count());
    let preallocate = described
        .iter()
        .find(|e| e.name == "preallocate")
        .expect("listed");
    assert!(preallocate
        .documentation
        .as_deref()
        .is_some_and(|d| d.contains("changes nothing")));
}

#[test]
fn values_are_refused_as_kafka_refuses_them() {
    let refused = |pairs: &[(&str, &str)]| {
        validate(&configs(pairs)).map_err(|e| (e.code, e.message.unwrap_or_default()))
    };
    for pairs in [
        &[("segment.bytes", "10")][..],
        &[("compression.gzip.level", "10")],
        &[("compression.gzip.level", "0")],
        &[("compression.lz4.level", "0")],
        &[("compression.zstd.level", "23")],
        &[("compression.type", "none")],
        &[("min.cleanable.dirty.ratio", "1.5")],
        &[("leader.replication.throttled.replicas", "0-1")],
        &[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "5"),
        ],
        &[("preallocate", "yes")],
        &[("min.insync.replicas", "0")],
        &[("max.message.bytes", "3000000000")],
        &[("retention.msec", "1")],
        &[("message.format.version", "3.0-IV1")],
    ] {
        let outcome = refused(pairs);
        assert!(
            matches!(outcome, Err((ResponseError::InvalidConfig, _))),
            "{pairs:?}: {outcome:?}"
        );
    }
    // Values that cannot be honoured here say why.
    let (_, why) = refused(&[("remote.storage.enable", "true")]).expect_err("tiered storage");
    assert!(
        why.contains("Tiered Storage functionality is disabled"),
        "{why}"
    );
}

#[test]
fn compaction_configs_reach_the_log_and_the_produce_rules() {
    let set = configs(&[
        ("cleanup.policy", "compact,delete"),
        ("delete.retention.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.25"),
        ("min.compaction.lag.ms", "5"),
        ("max.compaction.lag.ms", "60000"),
        ("retention.ms", "2000"),
    ]);
    let config = log_config(&set).expect("valid");
    let compaction = config.compaction.expect("compacted");
    assert_eq!(compaction.delete_retention_ms, 1000);
    assert_eq!(compaction.min_cleanable_dirty_ratio, 0.25);
    assert_eq!(compaction.min_compaction_lag_ms, 5);
    assert_eq!(compaction.max_compaction_lag_ms, 60000);
    assert_eq!(
        config.retention_ms,
        Some(2000),
        "compact,delete also deletes"
    );
    assert!(super::produce_policy(&set).compacted);
    let compact_only = log_config(&configs(&[("cleanup.policy", "compact")])).expect("valid");
    assert_eq!(
        compact_only.retention_ms, None,
        "compact alone deletes nothing"
    );
    assert!(log_config(&configs(&[]))
        .expect("valid")
        .compaction
        .is_none());
    assert!(!super::produce_policy(&configs(&[])).compacted);
}

#[test]
fn an_empty_cleanup_policy_deletes_nothing() {
    let config = log_config(&configs(&[
        ("cleanup.policy", ""),
        ("retention.ms", "1000"),
    ]))
    .expect("valid");
    assert_eq!((config.retention_ms, config.retention_bytes), (None, None));
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
        compact.map(|c| c.get("cleanup.policy").cloned()),
        Ok(Some("delete,compact".to_string())),
        "APPEND compact to the default policy"
    );
    let replaced = apply_change(
        &current,
        ConfigChange::Replace(configs(&[("retention.bytes", "5")])),
    );
    assert_eq!(replaced, Ok(configs(&[("retention.bytes", "5")])));
}
