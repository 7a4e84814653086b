"""Log compaction with real clients (confluent-kafka / librdkafka): a topic created with
cleanup.policy=compact keeps at least the latest value of every key. After the broker's cleaner
ran (its metrics say so), a consumer reading from the beginning gets every key's latest value,
only values that were produced for that key, far fewer records than were produced, and no value
of a key deleted by a tombstone once delete.retention.ms passed; the same after a kill -9. A
record without a key is refused with INVALID_RECORD, as Kafka refuses it."""

import os
import random
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import Broker, _require_binary, _stop
from helpers import admin_client, producer, unique_topic, wait_for

KEYS = 40
ROUNDS = 60
VALUE_BYTES = 2000


def metric_sum(broker, name):
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{broker.admin_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith(name + "{"))


def read_all(bootstrap, topic, timeout=60):
    """Every record of partition 0 from the log start to the high watermark, as (offset, key,
    value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                position = consumer.position([TopicPartition(topic, 0)])[0].offset
                if position >= high:
                    return out
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
            if msg.offset() + 1 >= high:
                return out
        raise AssertionError(f"did not reach the high watermark {high} in {timeout}s")
    finally:
        consumer.close()


@pytest.fixture
def cleaning_broker(tmp_path_factory, monkeypatch):
    """A broker whose cleaners look for due logs every 200 ms (the default is 15 s)."""
    _require_binary()
    monkeypatch.setenv("SHOAL_LOG_CLEANER_BACKOFF_MS", "200")
    b = Broker(tmp_path_factory.mktemp("shoal"))
    try:
        b.start()
        yield b
    finally:
        _stop(b)


def test_a_compacted_topic_keeps_the_latest_value_of_every_key(cleaning_broker):
    broker = cleaning_broker
    topic = unique_topic("compacted")
    admin = admin_client(broker.bootstrap)
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
        "cleanup.policy": "compact",
        # Small segments (the smallest Kafka allows) so that most of the data is in sealed
        # segments, which are what a cleaning rewrites; the active one rolls within a second.
        "segment.bytes": str(1024 * 1024),
        "segment.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "1000",
    })])
    futures[topic].result(timeout=15)

    rng = random.Random(17)
    produced = {}  # key -> every value produced for it, in order
    p = producer(broker.bootstrap, **{"linger.ms": 5, "enable.idempotence": True})
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)

    for round_ in range(ROUNDS):
        for k in rng.sample(range(KEYS), KEYS // 2):
            key = f"key-{k}".encode()
            value = f"{key.decode()}:{round_}:".encode() + bytes(rng.randrange(256) for _ in range(8))
            value = value.ljust(VALUE_BYTES, b".")
            produced.setdefault(key, []).append(value)
            p.produce(topic, key=key, value=value, partition=0, on_delivery=report)
        p.poll(0)
    # Keys 0..4 are deleted: a tombstone is their last record.
    deleted = [f"key-{k}".encode() for k in range(5)]
    for key in deleted:
        produced.setdefault(key, []).append(None)
        p.produce(topic, key=key, value=None, partition=0, on_delivery=report)
    assert p.flush(30) == 0 and not errors, errors

    # A record without a key is refused: Kafka's INVALID_RECORD.
    refused = []
    p.produce(topic, value=b"no key", partition=0,
              on_delivery=lambda err, msg: refused.append(err))
    p.flush(30)
    assert len(refused) == 1 and refused[0] is not None, refused
    assert refused[0].code() == KafkaError.INVALID_RECORD, refused[0]

    before = read_all(broker.bootstrap, topic)
    records_produced = sum(len(v) for v in produced.values())
    assert len(before) <= records_produced

    # Past segment.ms a further record rolls the active segment, so everything above is in
    # sealed segments the cleaner can rewrite; delete.retention.ms passes for the tombstones
    # during the second cleaning.
    def roll_and_wait(cleanings_before):
        time.sleep(1.2)
        p.produce(topic, key=b"roll", value=b"x", partition=0)
        p.flush(10)
        wait_for(lambda: metric_sum(broker, "shoal_log_cleanings_total") > cleanings_before,
                 timeout=60, what="a cleaning")

    roll_and_wait(0)
    produced.setdefault(b"roll", []).append(b"x")
    first = metric_sum(broker, "shoal_log_cleanings_total")
    # A second round of values makes the log dirty again (about half of it).
    for k in range(5, KEYS):
        key = f"key-{k}".encode()
        value = f"{key.decode()}:second:".encode().ljust(VALUE_BYTES, b"-")
        produced[key].append(value)
        p.produce(topic, key=key, value=value, partition=0, on_delivery=report)
    assert p.flush(30) == 0 and not errors, errors
    roll_and_wait(first)
    produced[b"roll"].append(b"x")
    read_bytes = metric_sum(broker, "shoal_log_cleaner_read_bytes_total")
    written_bytes = metric_sum(broker, "shoal_log_cleaner_written_bytes_total")
    assert written_bytes < read_bytes / 3, (read_bytes, written_bytes)

    def check(records, why):
        latest = {}
        for offset, key, value in records:
            assert key is not None, f"{why}: a keyless record at {offset}"
            assert value in produced[key], f"{why}: a value never produced for {key}"
            latest[key] = value
        for key, values in produced.items():
            if key in deleted:
                continue
            assert latest.get(key) == values[-1], f"{why}: {key} lost its latest value"
        offsets = [o for o, _, _ in records]
        assert offsets == sorted(set(offsets)), f"{why}: offsets out of order"
        return latest

    after = read_all(broker.bootstrap, topic)
    latest = check(after, "after cleaning")
    # The cleaned log holds a small share of what was produced.
    assert len(after) < records_produced / 5, (len(after), records_produced)
    # Tombstones are gone once delete.retention.ms passed after the cleaning that kept them,
    # and with them every value of a deleted key (the tombstone may still be there if that
    # cleaning came first; then no value is).
    for key in deleted:
        assert latest.get(key) is None, f"{key} still has a value"

    # Through a kill -9 and a restart the cleaned log is read back: the same records, or
    # fewer if the cleaner ran again between the read above and the kill (a tombstone's
    # horizon may have passed meanwhile), never one it had removed.
    broker.kill9()
    broker.restart()
    again = read_all(broker.bootstrap, topic)
    assert set(again) <= set(after), "a record the cleaning removed came back after a kill -9"
    live = lambda values: {k: v for k, v in values.items() if v is not None}  # noqa: E731
    assert live(check(again, "after kill -9")) == live(latest)


def test_compaction_is_refused_on_an_unknown_policy_and_reported_by_describe_configs(cleaning_broker):
    """cleanup.policy lists only compact and delete; DescribeConfigs reports the compaction
    settings as the topic has them."""
    broker = cleaning_broker
    topic = unique_topic("compacted")
    admin = admin_client(broker.bootstrap)
    bad = admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "shrink"})])
    with pytest.raises(KafkaException) as refused:
        bad[topic].result(timeout=15)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    good = admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact,delete", "min.compaction.lag.ms": "5000"})])
    good[topic].result(timeout=15)
    from confluent_kafka.admin import ConfigResource
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["min.compaction.lag.ms"].value == "5000"
    # Honoured now: no "changes nothing" note on the compaction settings.
    assert configs["min.cleanable.dirty.ratio"].value == "0.5"
