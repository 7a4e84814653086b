"""Idempotent producer with a real client (librdkafka via confluent-kafka,
enable.idempotence=true): every message is read back exactly once and in
per-partition order, although

  * the broker drops the connection after storing a batch but before answering
    (test-only fault switch SHOAL_FAULT_DROP_PRODUCE_RESPONSE_EVERY), so the
    client retries batches that are already in the log; and
  * the broker is killed with SIGKILL and restarted while producing, so the
    producer state must be rebuilt from the log.

Without the broker's duplicate detection, the retried batches would appear twice.
"""

import random
import time

import pytest

from helpers import consume_partitions, create_topic, producer, unique_topic, watermarks

PARTITIONS = 3


def _produce(p, topic, start, count, failures):
    def report(err, msg):
        if err is not None:
            failures.append(err)

    for i in range(start, start + count):
        partition = i % PARTITIONS
        while True:
            try:
                p.produce(topic, value=f"{partition}:{i}".encode(), partition=partition, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)


def _check_exactly_once(bootstrap, topic, total):
    expected = {part: len(range(part, total, PARTITIONS)) for part in range(PARTITIONS)}
    ends = {part: watermarks(bootstrap, topic, part)[1] for part in range(PARTITIONS)}
    assert ends == expected, f"high watermarks {ends} != sent counts {expected}: duplicates or losses"
    got, errors = consume_partitions(bootstrap, topic, expected, timeout=60)
    assert not errors, errors
    for part in range(PARTITIONS):
        values = [m.value().decode() for m in got[part]]
        want = [f"{part}:{i}" for i in range(part, total, PARTITIONS)]
        assert values == want, f"partition {part}: not exactly once in order (first difference at " \
            f"{next(k for k, (a, b) in enumerate(zip(values, want)) if a != b) if values != want[:len(values)] else len(values)})"
        offsets = [m.offset() for m in got[part]]
        assert offsets == list(range(len(values))), f"partition {part}: offsets not dense"


@pytest.mark.timeout(300)
def test_retried_batches_after_dropped_responses_are_stored_once(broker_factory, monkeypatch):
    monkeypatch.setenv("SHOAL_FAULT_DROP_PRODUCE_RESPONSE_EVERY", "7")
    b = broker_factory().start()
    topic = unique_topic("idem")
    create_topic(b.bootstrap, topic, PARTITIONS)
    p = producer(b.bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 2,
                                 "max.in.flight.requests.per.connection": 5, "batch.num.messages": 50})
    failures = []
    total = 6000
    _produce(p, topic, 0, total, failures)
    assert p.flush(120) == 0, "messages left undelivered"
    assert not failures, failures[:5]
    log = open(b.log_path).read()
    assert log.count("fault injection: closing the connection") >= 3, "the fault switch never fired"
    _check_exactly_once(b.bootstrap, topic, total)


@pytest.mark.timeout(300)
def test_idempotent_producer_survives_broker_kill9(broker_factory):
    b = broker_factory().start()
    topic = unique_topic("idem-kill")
    create_topic(b.bootstrap, topic, PARTITIONS)
    p = producer(b.bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 2,
                                 "message.timeout.ms": 120000, "retry.backoff.ms": 50})
    failures = []
    total, rounds = 0, 3
    rng = random.Random(7)
    for _ in range(rounds):
        count = 2000
        _produce(p, topic, total, count, failures)
        total += count
        p.poll(rng.uniform(0.0, 0.05))
        b.kill9()
        b.restart()
    assert p.flush(150) == 0, "messages left undelivered"
    assert not failures, failures[:5]
    _check_exactly_once(b.bootstrap, topic, total)
