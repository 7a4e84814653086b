"""librdkafka (confluent-kafka-python) against a real shoal process.

Consumers use manual assign() only: consumer groups are not served yet.
Producers keep enable.idempotence=false: InitProducerId is not served yet.
"""

import os
import threading
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_CREATE_TIME, KafkaError,
                             KafkaException, TopicPartition)
from confluent_kafka.admin import NewTopic, OffsetSpec

from helpers import (CODECS, NODE_ID, DeliveryLog, admin_client, consume_partitions, consumer, create_topic,
                     producer, topic_names, unique_topic, wait_for, watermarks)


def _payload(i):
    """Mix of compressible, random and empty/large values."""
    if i % 13 == 6:
        return os.urandom(3000 + i)
    if i % 17 == 9:
        return (b"compressible-%d-" % i) * 2000  # ~30 KB
    return b"value-%06d" % i


def make_records(partitions, per_partition, base_ts):
    """Deterministic records covering null keys/values, empty values and headers."""
    recs = []
    for i in range(partitions * per_partition):
        key = None if i % 7 == 3 else b"key-%d" % i
        if i % 5 == 2:
            value = None
        elif i % 11 == 4:
            value = b""
        else:
            value = _payload(i)
        if i % 3 == 0:
            headers = None
        else:
            headers = [("idx", str(i).encode()), ("dup", b"a"), ("dup", b"b"), ("empty", b"")]
        recs.append(dict(partition=i % partitions, key=key, value=value, headers=headers,
                         timestamp=base_ts + i * 10))
    return recs


def by_partition(recs, partitions):
    out = {p: [] for p in range(partitions)}
    for r in recs:
        out[r["partition"]].append(r)
    return out


def check_messages(topic, expected_by_p, got_by_p, offsets_from=0):
    for p, exp in expected_by_p.items():
        got = got_by_p[p]
        assert len(got) == len(exp), f"partition {p}: {len(got)} records, expected {len(exp)}"
        for j, (r, m) in enumerate(zip(exp, got)):
            where = f"{topic}[{p}] record #{j}"
            assert m.partition() == p, where
            assert m.offset() == offsets_from + j, f"{where}: offset {m.offset()}"
            assert m.key() == r["key"], f"{where}: key {m.key()!r} != {r['key']!r}"
            assert m.value() == r["value"], f"{where}: value differs (len {len(m.value() or b'')} vs {len(r['value'] or b'')})"
            assert m.headers() == r["headers"], f"{where}: headers {m.headers()!r} != {r['headers']!r}"
            assert m.timestamp() == (TIMESTAMP_CREATE_TIME, r["timestamp"]), f"{where}: timestamp {m.timestamp()}"


# --------------------------------------------------------------------- admin

def test_create_list_topic(broker):
    name = unique_topic("create")
    create_topic(broker.bootstrap, name, 3)
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    assert name in md.topics
    t = md.topics[name]
    assert t.error is None, t.error
    assert sorted(t.partitions) == [0, 1, 2]
    for pid, pm in t.partitions.items():
        assert pm.error is None, pm.error
        assert pm.leader == NODE_ID
        assert list(pm.replicas) == [NODE_ID]
        assert list(pm.isrs) == [NODE_ID]
    assert list(md.brokers) == [NODE_ID]
    b0 = md.brokers[NODE_ID]
    assert (b0.host, b0.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == NODE_ID
    # Single-topic metadata request answers the same.
    md1 = admin_client(broker.bootstrap).list_topics(topic=name, timeout=10)
    assert sorted(md1.topics[name].partitions) == [0, 1, 2]


def test_topic_visible_from_fresh_connections(broker):
    """Connections land on different cores (SO_REUSEPORT): all must see the topic."""
    name = unique_topic("xcore")
    create_topic(broker.bootstrap, name, 5)
    for _ in range(8):
        md = admin_client(broker.bootstrap).list_topics(timeout=10)
        assert name in md.topics
        assert sorted(md.topics[name].partitions) == list(range(5))


def _create_error(bootstrap, topic, **kw):
    admin = admin_client(bootstrap)
    fut = admin.create_topics([topic], operation_timeout=10, request_timeout=10, **kw)[topic.topic]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=15)
    return ei.value.args[0].code()


def test_create_topic_errors(broker):
    name = unique_topic("dup")
    create_topic(broker.bootstrap, name, 2)
    assert _create_error(broker.bootstrap, NewTopic(name, 2, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    assert _create_error(broker.bootstrap, NewTopic(unique_topic("rf3"), 1, 3)) == KafkaError.INVALID_REPLICATION_FACTOR
    assert _create_error(broker.bootstrap, NewTopic("bad/name", 1, 1)) == KafkaError.TOPIC_EXCEPTION
    # The duplicate attempt did not change the existing topic.
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[name].partitions) == [0, 1]
    assert "bad/name" not in md.topics


def test_create_topic_validate_only(broker):
    name = unique_topic("validate")
    admin = admin_client(broker.bootstrap)
    fut = admin.create_topics([NewTopic(name, 2, 1)], validate_only=True,
                              operation_timeout=10, request_timeout=10)[name]
    assert fut.result(timeout=15) is None
    assert name not in topic_names(broker.bootstrap)


def test_delete_topic(broker):
    name = unique_topic("delete")
    create_topic(broker.bootstrap, name, 3)
    p = producer(broker.bootstrap, acks="all")
    for i in range(30):
        p.produce(name, value=b"v%d" % i, partition=i % 3)
    assert p.flush(15) == 0
    assert name in topic_names(broker.bootstrap)

    admin = admin_client(broker.bootstrap)
    futs = admin.delete_topics([name], operation_timeout=10, request_timeout=10)
    assert futs[name].result(timeout=15) is None
    wait_for(lambda: name not in topic_names(broker.bootstrap), 10, what=f"{name} gone from metadata")
    # Gone for fresh connections on any core too.
    for _ in range(4):
        assert name not in topic_names(broker.bootstrap)

    # Deleting it again: UNKNOWN_TOPIC_OR_PART.
    fut = admin.delete_topics([name], operation_timeout=10, request_timeout=10)[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Re-created under the same name it starts empty.
    create_topic(broker.bootstrap, name, 1)
    assert watermarks(broker.bootstrap, name, 0) == (0, 0)


def test_auto_create_on_produce(broker):
    name = unique_topic("auto")
    p = producer(broker.bootstrap, acks="all")
    dl = DeliveryLog()
    p.produce(name, value=b"hello", on_delivery=dl)
    assert p.flush(20) == 0
    assert dl.failed == []
    assert [(o[0], o[1]) for o in dl.ok] == [(0, 0)]
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[name].partitions) == [0], "auto-created topics have 1 partition by default"


# --------------------------------------------------------- produce / consume

@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", ["all", "1", "0"])
def test_produce_consume_roundtrip(broker, acks, codec):
    partitions, per_partition = 3, 40
    name = unique_topic(f"rt-{codec}-acks{acks}")
    create_topic(broker.bootstrap, name, partitions)
    base_ts = int(time.time() * 1000) - 3_600_000
    recs = make_records(partitions, per_partition, base_ts)

    p = producer(broker.bootstrap, acks=acks, **{"compression.type": codec, "linger.ms": 20})
    dl = DeliveryLog()
    for r in recs:
        kw = dict(partition=r["partition"], key=r["key"], value=r["value"],
                  timestamp=r["timestamp"], on_delivery=dl)
        if r["headers"] is not None:
            kw["headers"] = r["headers"]
        p.produce(name, **kw)
    assert p.flush(30) == 0
    assert dl.failed == [], dl.failed[:3]
    assert len(dl.ok) == len(recs)

    exp = by_partition(recs, partitions)
    if acks != "0":
        # Delivery reports carry the broker-assigned offsets: 0.. in produce order.
        for part in range(partitions):
            offs = [o[1] for o in dl.ok if o[0] == part]
            assert offs == list(range(per_partition)), f"partition {part} acked offsets {offs}"
    else:
        for part in range(partitions):
            wait_for(lambda: watermarks(broker.bootstrap, name, part)[1] == per_partition, 15,
                     what=f"acks=0 high watermark of partition {part} to reach {per_partition}")

    for part in range(partitions):
        assert watermarks(broker.bootstrap, name, part) == (0, per_partition)

    got, errors = consume_partitions(broker.bootstrap, name, {q: per_partition for q in range(partitions)})
    check_messages(name, exp, got)


def test_consume_from_middle_and_out_of_range(broker):
    name = unique_topic("mid")
    create_topic(broker.bootstrap, name, 1)
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 50})
    for i in range(100):
        p.produce(name, value=b"m%03d" % i, partition=0)
    assert p.flush(15) == 0

    got, _ = consume_partitions(broker.bootstrap, name, {0: 63}, start_offsets={0: 37})
    assert [m.offset() for m in got[0]] == list(range(37, 100))
    assert [m.value() for m in got[0]] == [b"m%03d" % i for i in range(37, 100)]

    # Out of range start offset: the broker must answer OFFSET_OUT_OF_RANGE so
    # that the client resets (to earliest here) instead of hanging.
    got, _ = consume_partitions(broker.bootstrap, name, {0: 100}, start_offsets={0: 5000},
                                **{"auto.offset.reset": "earliest"})
    assert [m.offset() for m in got[0]] == list(range(100))


def test_long_poll_wakes_on_new_data(broker):
    """A fetch waiting on an empty partition returns as soon as data arrives."""
    name = unique_topic("longpoll")
    create_topic(broker.bootstrap, name, 1)
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1,
                                      "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(name, 0, OFFSET_END)])
        # Let the consumer resolve OFFSET_END and park a fetch on the broker.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            early = c.poll(0.1)
            assert early is None or early.error() is not None, "record before any was produced"
        p = producer(broker.bootstrap, acks="all", **{"linger.ms": 0})
        p.produce(name, value=b"wake-up", partition=0)
        assert p.flush(10) == 0
        t0 = time.monotonic()
        m = None
        while (m is None or m.error() is not None) and time.monotonic() - t0 < 10:
            m = c.poll(0.1)
        latency = time.monotonic() - t0
        assert m is not None and m.error() is None, m and m.error()
        assert m.value() == b"wake-up" and m.offset() == 0
        # With fetch.wait.max.ms=5000 a broker that does not wake parked
        # fetches would answer only after ~5 s.
        assert latency < 2.5, f"new data took {latency:.2f}s to reach a long-polling consumer"
    finally:
        c.close()


def test_many_partitions_across_cores(broker):
    partitions, per_partition = 16, 40
    name = unique_topic("many")
    create_topic(broker.bootstrap, name, partitions)
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[name].partitions) == list(range(partitions))

    p = producer(broker.bootstrap, acks="all", **{"compression.type": "lz4"})
    dl = DeliveryLog()
    for i in range(partitions * per_partition):
        p.produce(name, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions, on_delivery=dl)
    assert p.flush(30) == 0
    assert dl.failed == []
    for part in range(partitions):
        assert sorted(o[1] for o in dl.ok if o[0] == part) == list(range(per_partition))
        assert watermarks(broker.bootstrap, name, part) == (0, per_partition)

    got, _ = consume_partitions(broker.bootstrap, name, {q: per_partition for q in range(partitions)})
    for part in range(partitions):
        assert [(m.offset(), m.key(), m.value()) for m in got[part]] == \
            [(j, b"k%d" % (j * partitions + part), b"v%d" % (j * partitions + part))
             for j in range(per_partition)]


def test_concurrent_producers_same_partition(broker):
    """Producers on separate connections (likely separate cores) write one
    partition: offsets must be unique and dense, and each acked offset must hold
    the value that was acknowledged there."""
    name = unique_topic("conc")
    create_topic(broker.bootstrap, name, 1)
    n_producers, per = 4, 150
    logs = [DeliveryLog() for _ in range(n_producers)]

    def run(k):
        p = producer(broker.bootstrap, acks="all", **{"linger.ms": 1})
        for i in range(per):
            p.produce(name, value=b"p%d-%d" % (k, i), partition=0, on_delivery=logs[k])
            p.poll(0)
        assert p.flush(30) == 0

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    acked = {}
    for k, dl in enumerate(logs):
        assert dl.failed == [], dl.failed[:3]
        assert len(dl.ok) == per
        offs = [o[1] for o in dl.ok]
        assert offs == sorted(offs), f"producer {k}: offsets not increasing in send order"
        for (_, off, _, val, _) in dl.ok:
            assert off not in acked, f"offset {off} acknowledged twice ({acked.get(off)!r} and {val!r})"
            acked[off] = val
    total = n_producers * per
    assert sorted(acked) == list(range(total))
    got, _ = consume_partitions(broker.bootstrap, name, {0: total})
    assert [(m.offset(), m.value()) for m in got[0]] == [(o, acked[o]) for o in range(total)]


# -------------------------------------------------------------- list offsets

def test_list_offsets_by_timestamp(broker):
    name = unique_topic("ts")
    create_topic(broker.bootstrap, name, 1)
    t0 = int(time.time() * 1000) - 600_000
    n = 20
    # Linger so that several records share a batch: the broker must find the
    # exact record inside a batch, not just the batch.
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 100, "compression.type": "zstd"})
    for i in range(n):
        p.produce(name, value=b"x%d" % i, partition=0, timestamp=t0 + i * 1000)
    assert p.flush(15) == 0

    assert watermarks(broker.bootstrap, name, 0) == (0, n)
    c = consumer(broker.bootstrap)
    try:
        def for_time(ts):
            res = c.offsets_for_times([TopicPartition(name, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert for_time(t0 - 5000) == 0
        assert for_time(t0) == 0
        assert for_time(t0 + 3000) == 3
        assert for_time(t0 + 3500) == 4
        assert for_time(t0 + (n - 1) * 1000) == n - 1
        assert for_time(t0 + n * 1000) == OFFSET_END  # -1: no record at or after ts
    finally:
        c.close()


def test_admin_list_offsets_specs(broker):
    """ListOffsets earliest (-2), latest (-1), max timestamp (-3), by timestamp."""
    name = unique_topic("lo")
    create_topic(broker.bootstrap, name, 2)
    t0 = int(time.time() * 1000) - 600_000
    # Non-monotonic timestamps; max is at offset 3 of partition 0.
    ts = [t0 + 1000, t0 + 5000, t0 + 2000, t0 + 9000, t0 + 3000, t0 + 4000]
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 0})
    for i, t in enumerate(ts):
        p.produce(name, value=b"y%d" % i, partition=0, timestamp=t)
        assert p.flush(10) == 0  # one batch per record
    admin = admin_client(broker.bootstrap)
    tp0, tp1 = TopicPartition(name, 0), TopicPartition(name, 1)

    def query(spec_by_tp):
        futs = admin.list_offsets(spec_by_tp, request_timeout=10)
        return {tp.partition: f.result(timeout=15) for tp, f in futs.items()}

    r = query({tp0: OffsetSpec.earliest(), tp1: OffsetSpec.earliest()})
    assert (r[0].offset, r[1].offset) == (0, 0)
    r = query({tp0: OffsetSpec.latest(), tp1: OffsetSpec.latest()})
    assert (r[0].offset, r[1].offset) == (len(ts), 0)
    r = query({tp0: OffsetSpec.max_timestamp()})
    assert (r[0].offset, r[0].timestamp) == (3, t0 + 9000)
    r = query({tp0: OffsetSpec.for_timestamp(t0 + 4500)})
    assert r[0].offset == 1  # first offset whose timestamp >= target
    r = query({tp0: OffsetSpec.for_timestamp(t0 + 8000)})
    assert (r[0].offset, r[0].timestamp) == (3, t0 + 9000)
    r = query({tp1: OffsetSpec.max_timestamp()})
    assert r[1].offset == -1  # empty partition
