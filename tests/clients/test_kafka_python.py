"""kafka-python (pure-Python protocol implementation) against a real shoal process."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from kafka.protocol.fetch import FetchRequest

from helpers import NODE_ID, unique_topic, wait_for

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]

ERR_NONE = 0


def admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="shoal-tests",
                            request_timeout_ms=15000)


def new_consumer(broker, **extra):
    conf = dict(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=200, request_timeout_ms=15000)
    conf.update(extra)
    return KafkaConsumer(**conf)


def create(broker, name, partitions):
    a = admin(broker)
    try:
        resp = a.create_topics([NewTopic(name, partitions, 1)], timeout_ms=10000)
        errs = [(t[0], t[1]) for t in resp.topic_errors]
        assert errs == [(name, ERR_NONE)], resp
    finally:
        a.close()


def read_all(consumer, expected_total, timeout=30):
    recs = []
    deadline = time.monotonic() + timeout
    while len(recs) < expected_total:
        assert time.monotonic() < deadline, f"read {len(recs)} of {expected_total} records in {timeout}s"
        for tp, batch in consumer.poll(timeout_ms=500).items():
            recs.extend(batch)
    # nothing more may arrive
    extra = consumer.poll(timeout_ms=500)
    recs.extend(r for batch in extra.values() for r in batch)
    return recs


def test_admin_create_list_describe_delete(broker):
    name = unique_topic("kp-admin")
    a = admin(broker)
    try:
        resp = a.create_topics([NewTopic(name, 3, 1)], timeout_ms=10000)
        assert [(t[0], t[1]) for t in resp.topic_errors] == [(name, ERR_NONE)], resp

        # kafka-python raises the per-topic error code as an exception.
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(name, 3, 1)], timeout_ms=10000)

        assert name in a.list_topics()
        [desc] = a.describe_topics([name])
        assert desc["topic"] == name
        assert desc["error_code"] == 0
        parts = sorted(desc["partitions"], key=lambda p: p["partition"])
        assert [p["partition"] for p in parts] == [0, 1, 2]
        for p in parts:
            assert p["error_code"] == 0
            assert p["leader"] == NODE_ID
            assert p["replicas"] == [NODE_ID]
            assert p["isr"] == [NODE_ID]

        cluster = a.describe_cluster()
        assert cluster["controller_id"] == NODE_ID
        assert [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]] == \
            [(NODE_ID, "127.0.0.1", broker.port)]

        resp = a.delete_topics([name], timeout_ms=10000)
        assert [(t[0], t[1]) for t in resp.topic_error_codes] == [(name, ERR_NONE)], resp
        wait_for(lambda: name not in a.list_topics(), 10, what=f"{name} deleted")

        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([name], timeout_ms=10000)
    finally:
        a.close()


@pytest.mark.parametrize("acks", ["all", 1])
@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume(broker, codec, acks):
    partitions, n = 3, 90
    name = unique_topic(f"kp-{codec}-{acks}")
    create(broker, name, partitions)
    base_ts = int(time.time() * 1000) - 7_200_000
    expected = []
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks, compression_type=codec,
                         linger_ms=20, request_timeout_ms=15000)
    try:
        futs = []
        for i in range(n):
            part = i % partitions
            # kafka-python refuses a record whose key and value are both None.
            key = None if i % 6 == 1 else b"k%d" % i
            value = None if (i % 9 == 4 and key is not None) else (b"payload-%d-" % i) * (1 + i % 40)
            headers = [] if i % 4 == 0 else [("idx", b"%d" % i), ("h", b"")]
            ts = base_ts + i
            futs.append(prod.send(name, value=value, key=key, headers=headers, partition=part,
                                  timestamp_ms=ts))
            expected.append((part, key, value, headers, ts))
        prod.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futs]
    finally:
        prod.close(timeout=10)

    # Broker-assigned offsets are dense per partition, in send order.
    for part in range(partitions):
        assert [m.offset for m in metas if m.partition == part] == list(range(n // partitions))
    assert [m.timestamp for m in metas] == [e[4] for e in expected]

    cons = new_consumer(broker)
    try:
        tps = [TopicPartition(name, p) for p in range(partitions)]
        cons.assign(tps)
        cons.seek_to_beginning()
        recs = read_all(cons, n)
    finally:
        cons.close()
    assert len(recs) == n
    per_part = {p: [r for r in recs if r.partition == p] for p in range(partitions)}
    for part in range(partitions):
        exp = [e for e in expected if e[0] == part]
        got = per_part[part]
        assert [r.offset for r in got] == list(range(len(exp)))
        for r, (p, key, value, headers, ts) in zip(got, exp):
            assert (r.key, r.value, list(r.headers), r.timestamp, r.timestamp_type) == \
                (key, value, headers, ts, 0), f"{name}[{part}]@{r.offset}"


def test_offsets_queries(broker):
    name = unique_topic("kp-offsets")
    create(broker, name, 2)
    t0 = int(time.time() * 1000) - 100_000
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=50)
    try:
        for i in range(10):
            prod.send(name, value=b"o%d" % i, partition=0, timestamp_ms=t0 + i * 100)
        prod.flush(timeout=30)
    finally:
        prod.close(timeout=10)

    tp0, tp1 = TopicPartition(name, 0), TopicPartition(name, 1)
    cons = new_consumer(broker)
    try:
        assert cons.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert cons.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        r = cons.offsets_for_times({tp0: t0 + 450, tp1: t0})
        assert r[tp0].offset == 5 and r[tp0].timestamp == t0 + 500
        assert r[tp1] is None  # empty partition: no offset
        r = cons.offsets_for_times({tp0: t0 - 1})
        assert (r[tp0].offset, r[tp0].timestamp) == (0, t0)
        r = cons.offsets_for_times({tp0: t0 + 10_000})
        assert r[tp0] is None

        cons.assign([tp0])
        cons.seek(tp0, 7)
        recs = read_all(cons, 3)
        assert [(x.offset, x.value) for x in recs] == [(7, b"o7"), (8, b"o8"), (9, b"o9")]
    finally:
        cons.close()


def _raw_fetch(broker, topic, offset, max_wait_ms, min_bytes):
    """One FetchRequest v4 over kafka-python's client; returns (seconds, partition tuple)."""
    client = KafkaClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        def connected():
            client.poll(timeout_ms=100)
            n = client.least_loaded_node()
            return (n,) if n is not None and client.ready(n) else None  # node id 0 is falsy

        (node,) = wait_for(connected, 10, what="kafka-python client connection")
        req = FetchRequest[4](replica_id=-1, max_wait_time=max_wait_ms, min_bytes=min_bytes,
                              max_bytes=1 << 20, isolation_level=0,
                              topics=[(topic, [(0, offset, 1 << 20)])])
        t0 = time.monotonic()
        fut = client.send(node, req)
        client.poll(future=fut, timeout_ms=max_wait_ms + 10000)
        elapsed = time.monotonic() - t0
        assert fut.succeeded(), fut.exception
        [(t, [part])] = fut.value.topics
        assert t == topic
        return elapsed, part
    finally:
        client.close()


def test_fetch_long_poll_semantics(broker):
    name = unique_topic("kp-poll")
    create(broker, name, 1)

    # Empty partition: the broker holds the fetch for ~max_wait, then answers empty.
    elapsed, part = _raw_fetch(broker, name, 0, max_wait_ms=1500, min_bytes=1)
    assert part[1] == 0 and part[2] == 0 and part[-1] in (b"", None)
    assert 1.2 <= elapsed <= 5.0, f"empty fetch with max_wait 1500ms answered after {elapsed:.2f}s"

    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        prod.send(name, value=b"abc", partition=0).get(timeout=15)
    finally:
        prod.close(timeout=10)

    # min_bytes satisfied: immediate answer with the data.
    elapsed, part = _raw_fetch(broker, name, 0, max_wait_ms=3000, min_bytes=1)
    assert part[1] == 0 and part[2] == 1 and len(part[-1]) > 0
    assert elapsed < 1.0, f"fetch with data available took {elapsed:.2f}s"

    # min_bytes not reachable: wait max_wait, then answer with what there is.
    elapsed, part = _raw_fetch(broker, name, 0, max_wait_ms=1500, min_bytes=1 << 20)
    assert part[1] == 0 and part[2] == 1 and len(part[-1]) > 0
    assert 1.2 <= elapsed <= 5.0, f"fetch with unsatisfied min_bytes answered after {elapsed:.2f}s"
