"""Topic configs as a Kafka user sets them with librdkafka's admin API: every Kafka 4.x topic
config is accepted (the ones Shoal cannot act on are inert and say so), the honoured ones
change what clients see: LogAppendTime timestamps, broker-side recompression, timestamp
limits, min.insync.replicas."""

import time

import pytest
from confluent_kafka import KafkaException, TIMESTAMP_LOG_APPEND_TIME, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from helpers import admin_client, consume_partitions, producer, unique_topic, DeliveryLog

# Set at creation exactly as a user would (the reproduction: lz4 + delete.retention.ms).
KAFKA_CONFIGS = {
    "compression.type": "lz4",
    "compression.lz4.level": "12",
    "delete.retention.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.3",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "86400000",
    "file.delete.delay.ms": "1000",
    "preallocate": "true",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "1000",
    "index.interval.bytes": "8192",
    "unclean.leader.election.enable": "false",
    "leader.replication.throttled.replicas": "*",
    "local.retention.ms": "-2",
    "message.timestamp.before.max.ms": "86400000000",
    "message.timestamp.after.max.ms": "3600000",
}


def create(bootstrap, name, configs, partitions=1):
    admin = admin_client(bootstrap)
    futs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                         config=configs)], operation_timeout=15, request_timeout=15)
    futs[name].result(timeout=15)
    return admin


def test_kafka_topic_configs_are_accepted_and_described(broker):
    name = unique_topic("cfg")
    admin = create(broker.bootstrap, name, KAFKA_CONFIGS)
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    described = admin.describe_configs([res])[res].result(timeout=10)
    for key, value in KAFKA_CONFIGS.items():
        assert described[key].value == value, key
    assert described["segment.bytes"].value == "134217728"
    # A value Kafka refuses is refused the same way.
    bad = unique_topic("bad")
    futs = admin.create_topics([NewTopic(bad, 1, 1, config={"compression.zstd.level": "23"})],
                               request_timeout=15)
    with pytest.raises(KafkaException) as refused:
        futs[bad].result(timeout=15)
    assert refused.value.args[0].name() == "INVALID_CONFIG"


def produce_and_read(bootstrap, name, records, **producer_config):
    p = producer(bootstrap, **producer_config)
    dl = DeliveryLog()
    for value, ts in records:
        p.produce(name, value=value, partition=0, timestamp=ts, on_delivery=dl)
    assert p.flush(30) == 0
    return dl


def test_log_append_time_topics_carry_the_broker_time(broker):
    name = unique_topic("lat")
    create(broker.bootstrap, name, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    dl = produce_and_read(broker.bootstrap, name, [(b"old-%d" % i, 1000 + i) for i in range(5)])
    after = int(time.time() * 1000)
    assert dl.failed == [], dl.failed
    got, errors = consume_partitions(broker.bootstrap, name, {0: 5})
    assert errors == []
    for m in got[0]:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before - 1000 <= ts <= after + 1000, (before, ts, after)


def test_compression_type_makes_the_broker_recompress(broker):
    name = unique_topic("zstd")
    create(broker.bootstrap, name, {"compression.type": "zstd", "compression.zstd.level": "9"})
    values = [(b"value %d " % i) * 50 for i in range(200)]
    dl = produce_and_read(broker.bootstrap, name, [(v, 0) for v in values],
                          **{"compression.type": "none", "linger.ms": 50})
    assert dl.failed == [], dl.failed
    got, errors = consume_partitions(broker.bootstrap, name, {0: len(values)})
    assert errors == []
    assert [m.value() for m in got[0]] == values
    # (The stored codec itself is checked in crates/kafka/tests/produce_rules.rs; here the
    # point is that librdkafka reads the broker's zstd batches.)


def test_records_beyond_the_timestamp_limit_are_refused(broker):
    name = unique_topic("ts")
    create(broker.bootstrap, name, {"message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    dl = produce_and_read(broker.bootstrap, name, [(b"ok", now)])
    assert [o[3] for o in dl.ok] == [b"ok"] and dl.failed == []
    # A batch holding a record an hour ahead is refused whole (as Kafka does), not retried.
    dl = produce_and_read(broker.bootstrap, name, [(b"future", now + 3_600_000)])
    assert dl.ok == []
    assert len(dl.failed) == 1 and dl.failed[0][0].name() == "INVALID_TIMESTAMP", dl.failed


def test_min_insync_replicas_above_one_refuses_acks_all(broker):
    name = unique_topic("isr")
    create(broker.bootstrap, name, {"min.insync.replicas": "2"})
    dl = produce_and_read(broker.bootstrap, name, [(b"x", 0)],
                          **{"acks": "all", "message.timeout.ms": 3000})
    assert dl.ok == []
    assert dl.failed and dl.failed[0][0].name() in ("NOT_ENOUGH_REPLICAS", "_MSG_TIMED_OUT"), dl.failed
    dl = produce_and_read(broker.bootstrap, name, [(b"y", 0)], acks="1")
    assert dl.failed == [] and len(dl.ok) == 1
