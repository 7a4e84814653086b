"""Small helpers shared by the client tests (confluent-kafka / librdkafka side).

Nothing here swallows errors: every helper either returns real values for the
test to assert on, or raises with a message saying what was missing.
"""

import os
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# The broker's node id (shoal: 0). Overridable only to sanity-check the harness
# itself against another Kafka-compatible broker.
NODE_ID = int(os.environ.get("SHOAL_NODE_ID", "0"))


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
        "enable.idempotence": False,  # the idempotent producer is tested in test_idempotence.py
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


# ------------------------------------------------------------------ raw protocol
# A few hand-encoded, non-flexible requests: the broker readiness check must not
# depend on any one client library's protocol choices (those are under test).

import socket as _socket
import struct as _struct


def _kstr(s):
    b = s.encode()
    return _struct.pack(">h", len(b)) + b


def raw_request(host, port, api_key, api_version, body, timeout=2.0, correlation_id=7):
    """Send one request with header v1; return the response body (after the correlation id)."""
    header = _struct.pack(">hhi", api_key, api_version, correlation_id) + _kstr("shoal-tests-raw")
    msg = header + body
    with _socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(_struct.pack(">i", len(msg)) + msg)
        size = _struct.unpack(">i", _recv_exact(s, 4))[0]
        resp = _recv_exact(s, size)
    (corr,) = _struct.unpack_from(">i", resp)
    if corr != correlation_id:
        raise AssertionError(f"correlation id {corr} != {correlation_id}")
    return resp[4:]


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def raw_api_versions(host, port):
    """ApiVersions v0 -> {api_key: (min, max)}; raises on a non-zero error code."""
    body = raw_request(host, port, 18, 0, b"")
    err, n = _struct.unpack_from(">hi", body)
    if err != 0:
        raise AssertionError(f"ApiVersions error code {err}")
    out = {}
    for i in range(n):
        k, lo, hi = _struct.unpack_from(">hhh", body, 6 + 6 * i)
        out[k] = (lo, hi)
    return out


def raw_metadata_brokers(host, port):
    """Metadata v1 for no topics -> ([(node_id, host, port)], controller_id)."""
    body = raw_request(host, port, 3, 1, _struct.pack(">i", 0))
    (n,) = _struct.unpack_from(">i", body)
    pos, brokers = 4, []
    for _ in range(n):
        (node,) = _struct.unpack_from(">i", body, pos)
        pos += 4
        (hl,) = _struct.unpack_from(">h", body, pos)
        h = body[pos + 2:pos + 2 + hl].decode()
        pos += 2 + hl
        (p,) = _struct.unpack_from(">i", body, pos)
        pos += 4
        (rl,) = _struct.unpack_from(">h", body, pos)
        pos += 2 + max(rl, 0)
        brokers.append((node, h, p))
    (controller,) = _struct.unpack_from(">i", body, pos)
    return brokers, controller


def raw_init_producer_id(host, port):
    """InitProducerId v1 without a transactional id -> (error_code, producer_id, epoch)."""
    body = raw_request(host, port, 22, 1, _struct.pack(">hi", -1, 60000), timeout=15)
    _throttle, err, pid, epoch = _struct.unpack_from(">ihqh", body)
    return err, pid, epoch


def raw_metadata_topics(host, port):
    """Metadata v1 for all topics -> {topic: (error_code, {partition: leader})}.

    Client-neutral: used where a test checks broker state (e.g. after a
    restart) rather than a client's Metadata encoding."""
    body = raw_request(host, port, 3, 1, _struct.pack(">i", -1), timeout=10.0)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = _struct.unpack_from(fmt, body, pos)
        pos += _struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string():
        nonlocal pos
        n = take(">h")
        s = body[pos:pos + max(n, 0)].decode()
        pos += max(n, 0)
        return s

    for _ in range(take(">i")):  # brokers
        take(">i"), string(), take(">i"), string()
    take(">i")  # controller id
    topics = {}
    for _ in range(take(">i")):
        err = take(">h")
        name = string()
        take(">b")  # is_internal
        parts = {}
        for _ in range(take(">i")):
            _perr, pid, leader = take(">hii")
            for _ in range(take(">i")):  # replicas
                take(">i")
            for _ in range(take(">i")):  # isr
                take(">i")
            parts[pid] = leader
        topics[name] = (err, parts)
    return topics
