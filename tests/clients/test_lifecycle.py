"""Process lifecycle seen from clients: clean SIGTERM stop, restart on the same
data dir and port, and what must survive it.

Topic existence after a restart is read with a hand-encoded Metadata v1 request
(raw_metadata_topics) so that these tests check the broker's state, not one
client's Metadata encoding (test_confluent.py / test_kafka_python.py do that)."""

import time

from helpers import (NODE_ID, DeliveryLog, admin_client, consume_partitions, create_topic, producer,
                     raw_metadata_topics, unique_topic, watermarks)


def test_sigterm_stops_cleanly(broker_factory):
    b = broker_factory().start()
    create_topic(b.bootstrap, unique_topic("term"), 2)
    t0 = time.monotonic()
    rc, clean = b.stop()
    took = time.monotonic() - t0
    assert clean, f"shoal ignored SIGTERM for 10s\n{b.stderr_tail()}"
    assert rc == 0, f"shoal exited with {rc} on SIGTERM\n{b.stderr_tail()}"
    assert "panicked" not in b.stderr_text(), b.stderr_tail()
    print(f"SIGTERM -> exit in {took:.2f}s")


def test_data_survives_clean_restart(broker_factory):
    b = broker_factory().start()
    name = unique_topic("restart")
    create_topic(b.bootstrap, name, 3)
    p = producer(b.bootstrap, acks="all", **{"compression.type": "gzip"})
    dl = DeliveryLog()
    for i in range(60):
        p.produce(name, key=b"k%d" % i, value=b"v%d" % i, partition=i % 3,
                  headers=[("i", b"%d" % i)], on_delivery=dl)
    assert p.flush(15) == 0 and dl.failed == []

    rc, clean = b.stop()
    assert clean and rc == 0, f"unclean stop rc={rc}\n{b.stderr_tail()}"
    b.start()

    topics = raw_metadata_topics(b.host, b.port)
    assert topics[name] == (0, {0: NODE_ID, 1: NODE_ID, 2: NODE_ID})
    for part in range(3):
        assert watermarks(b.bootstrap, name, part) == (0, 20)
    got, _ = consume_partitions(b.bootstrap, name, {q: 20 for q in range(3)})
    for part in range(3):
        assert [(m.offset(), m.key(), m.value(), m.headers()) for m in got[part]] == \
            [(j, b"k%d" % (3 * j + part), b"v%d" % (3 * j + part), [("i", b"%d" % (3 * j + part))])
             for j in range(20)]

    # Appends continue at the next offset.
    dl2 = DeliveryLog()
    p2 = producer(b.bootstrap, acks="all")
    p2.produce(name, value=b"after", partition=1, on_delivery=dl2)
    assert p2.flush(15) == 0
    assert [(o[0], o[1]) for o in dl2.ok] == [(1, 20)]


def test_created_topics_survive_kill9(broker_factory):
    """A CreateTopics that was answered OK must survive a crash."""
    b = broker_factory().start()
    empty, written = unique_topic("k9-empty"), unique_topic("k9-written")
    create_topic(b.bootstrap, empty, 5)
    create_topic(b.bootstrap, written, 2)
    p = producer(b.bootstrap, acks="all")
    for i in range(10):
        p.produce(written, value=b"w%d" % i, partition=i % 2)
    assert p.flush(15) == 0

    b.kill9()
    b.restart()
    topics = raw_metadata_topics(b.host, b.port)
    assert topics.get(empty) == (0, {p: NODE_ID for p in range(5)}), topics.get(empty)
    assert topics.get(written) == (0, {0: NODE_ID, 1: NODE_ID}), topics.get(written)
    got, _ = consume_partitions(b.bootstrap, written, {0: 5, 1: 5})
    assert [m.value() for m in got[0]] == [b"w%d" % i for i in range(0, 10, 2)]
    assert [m.value() for m in got[1]] == [b"w%d" % i for i in range(1, 10, 2)]


def test_deleted_topic_stays_deleted_after_restart(broker_factory):
    b = broker_factory().start()
    name = unique_topic("del-restart")
    create_topic(b.bootstrap, name, 2)
    admin = admin_client(b.bootstrap)
    assert admin.delete_topics([name], operation_timeout=10)[name].result(15) is None
    b.kill9()
    b.restart()
    assert name not in raw_metadata_topics(b.host, b.port)
