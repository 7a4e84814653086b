"""Small helpers shared by the client tests (confluent-kafka / librdkafka side).

Nothing here swallows errors: every helper either returns real values for the
test to assert on, or raises with a message saying what was missing.
"""

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def unique_topic(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin_client(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        # The admin handle is a producer-type handle: do not auto-create topics
        # just because we asked for their metadata.
        "allow.auto.create.topics": False,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return AdminClient(conf)


def create_topics(bootstrap, specs, timeout=15, validate_only=False):
    """specs: {name: num_partitions}. Raises on any per-topic error."""
    admin = admin_client(bootstrap)
    futs = admin.create_topics(
        [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in specs.items()],
        operation_timeout=timeout, request_timeout=timeout, validate_only=validate_only)
    for name, f in futs.items():
        f.result(timeout=timeout)  # raises KafkaException with the broker's error
    return admin


def create_topic(bootstrap, name, partitions, timeout=15):
    return create_topics(bootstrap, {name: partitions}, timeout=timeout)


def topic_names(bootstrap):
    md = admin_client(bootstrap).list_topics(timeout=10)
    return set(md.topics.keys())


def wait_for(pred, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value {last!r})")


def producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,  # InitProducerId is not served yet
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(extra)
    return Producer(conf)


def consumer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        # confluent-kafka refuses to build a Consumer without group.id; the
        # group is never joined (assign() only) and nothing is committed.
        "group.id": "shoal-client-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 200,
    }
    conf.update(extra)
    return Consumer(conf)


def watermarks(bootstrap, topic, partition, timeout=10):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        c.close()


def consume_partitions(bootstrap, topic, expected_counts, start_offsets=None, timeout=30, **extra):
    """Read with manual assign() until each partition reached its expected count.

    expected_counts: {partition: number of records expected from the start offset}
    Returns ({partition: [Message, ...]}, [non-EOF KafkaError, ...]).
    Raises AssertionError naming what was missing on timeout.
    """
    from confluent_kafka import OFFSET_BEGINNING

    start_offsets = start_offsets or {}
    c = consumer(bootstrap, **extra)
    got = {p: [] for p in expected_counts}
    errors = []
    try:
        c.assign([TopicPartition(topic, p, start_offsets.get(p, OFFSET_BEGINNING))
                  for p in expected_counts])
        deadline = time.monotonic() + timeout
        while any(len(got[p]) < n for p, n in expected_counts.items()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"consumed {({p: len(v) for p, v in got.items()})} of {expected_counts} "
                    f"from {topic} within {timeout}s; consumer errors: {errors}")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(m.error())
                continue
            assert m.topic() == topic
            assert m.partition() in got, f"record from unassigned partition {m.partition()}"
            got[m.partition()].append(m)
        # Linger briefly: nothing beyond the expected records may show up.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got[m.partition()].append(m)
    finally:
        c.close()
    return got, errors


class DeliveryLog:
    """Collects confluent-kafka delivery reports."""

    def __init__(self):
        self.ok = []      # (partition, offset, key, value, timestamp)
        self.failed = []  # (KafkaError, key, value)

    def __call__(self, err, msg):
        if err is not None:
            self.failed.append((err, msg.key(), msg.value()))
        else:
            self.ok.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()))
