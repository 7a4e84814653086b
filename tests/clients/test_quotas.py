"""Client quotas with librdkafka (confluent-kafka): a producer held to its producer_byte_rate
and a consumer to its consumer_byte_rate, within 10% over the run, each told to wait (their
throttle statistics, from the responses' throttle_time_ms, are above zero). confluent-kafka has
no client-quota admin call, so the quotas are set with a hand-encoded AlterClientQuotas v0
(the Java AdminClient and kafka-configs are tested in tests/clients/java QuotasTest).

Batches are capped at 64 KiB (librdkafka's default is 1 MB): at a 256 KiB/s quota one 1 MB
batch is four seconds of quota, too coarse to measure a 10 s run to 10%.

Rates are measured after the first second (the consumer's between fetch responses): a client
may burst one second's worth at once, and a fetch response carries one second's worth, so over
10 s the burst and where the run starts and ends in the response cycle would each move a
whole-run figure by 10%; the whole run is checked too, against a looser bound."""

import json
import os
import struct
import time

from confluent_kafka import TopicPartition

from helpers import _kstr, consumer, create_topic, producer, raw_request, unique_topic

RATE = 256 * 1024
RUN_SECONDS = float(os.environ.get("SHOAL_QUOTA_TEST_SECONDS", "10"))


def _nullable(s):
    return struct.pack(">h", -1) if s is None else _kstr(s)


def alter_client_quota(broker, client_id, key, value):
    """AlterClientQuotas v0 of one client-id entity: sets `key` to `value`, or removes it
    (value None). Raises unless the broker answers NONE."""
    entity = struct.pack(">i", 1) + _kstr("client-id") + _nullable(client_id)
    op = _kstr(key) + struct.pack(">d?", value or 0.0, value is None)
    body = struct.pack(">i", 1) + entity + struct.pack(">i", 1) + op + struct.pack(">?", False)
    resp = raw_request(broker.host, broker.port, 49, 0, body, timeout=10)
    _throttle, entries = struct.unpack_from(">ii", resp)
    assert entries == 1, resp
    (error_code,) = struct.unpack_from(">h", resp, 8)
    assert error_code == 0, f"AlterClientQuotas answered error {error_code}: {resp!r}"


class ThrottleStats:
    """The largest broker throttle time librdkafka reported in its statistics."""

    def __init__(self):
        self.max_ms = 0

    def __call__(self, stats_json):
        stats = json.loads(stats_json)
        for b in stats.get("brokers", {}).values():
            self.max_ms = max(self.max_ms, b.get("throttle", {}).get("max", 0))


def steady_rate(arrivals, skip_seconds=1.0, gap_seconds=0.2):
    """Bytes per second between the chunks of `arrivals` (time, bytes) after the first
    `skip_seconds`: a chunk is the records that arrived less than `gap_seconds` apart (one
    fetch response), and the rate is the bytes of every chunk but the first over the time from
    the first chunk's start to the last one's."""
    chunks = []  # [start, last, bytes]
    for at, size in arrivals:
        if chunks and at - chunks[-1][1] < gap_seconds:
            chunks[-1][1] = at
            chunks[-1][2] += size
        else:
            chunks.append([at, at, size])
    t0 = arrivals[0][0] + skip_seconds
    chunks = [c for c in chunks if c[0] >= t0]
    assert len(chunks) >= 3, f"too few fetch responses to measure: {chunks}"
    return sum(c[2] for c in chunks[1:]) / (chunks[-1][0] - chunks[0][0])


def test_librdkafka_producer_is_held_to_its_byte_rate(broker):
    topic = unique_topic("quota-produce")
    create_topic(broker.bootstrap, topic, 2)
    client_id = unique_topic("rdkafka-producer")
    alter_client_quota(broker, client_id, "producer_byte_rate", float(RATE))
    stats = ThrottleStats()
    p = producer(broker.bootstrap, **{"client.id": client_id, "acks": "all",
                                      "queue.buffering.max.kbytes": 2048,
                                      "batch.size": 65536,
                                      "statistics.interval.ms": 500, "stats_cb": stats})
    acked = [0]

    def on_delivery(err, msg):
        if err is None:
            acked[0] += len(msg.value())

    value = b"x" * 1024
    try:
        started = time.monotonic()
        after_first_second = None  # (time, acked bytes) once the first second is over
        while time.monotonic() - started < RUN_SECONDS:
            try:
                p.produce(topic, value, partition=acked[0] % 2, on_delivery=on_delivery)
            except BufferError:
                p.poll(0.01)  # the local queue is full: the broker is holding us back
            p.poll(0)
            if after_first_second is None and time.monotonic() - started >= 1.0:
                after_first_second = (time.monotonic(), acked[0])
        now = time.monotonic()
        whole = acked[0] / (now - started)
        rate = (acked[0] - after_first_second[1]) / (now - after_first_second[0])
        p.poll(1.0)
        print(f"librdkafka producer: {rate:.0f} B/s against {RATE} ({rate / RATE:.3f}) after "
              f"the first second, {whole / RATE:.3f} over the run, "
              f"throttle max {stats.max_ms} ms")
        assert stats.max_ms > 0, "librdkafka never saw a throttle time"
        assert abs(rate - RATE) / RATE <= 0.10, f"{rate:.0f} B/s against a quota of {RATE}"
        assert whole <= RATE * (RUN_SECONDS + 2.5) / RUN_SECONDS, f"{whole:.0f} B/s over the run"
    finally:
        p.flush(30)
        alter_client_quota(broker, client_id, "producer_byte_rate", None)


def test_librdkafka_consumer_is_held_to_its_byte_rate(broker):
    topic = unique_topic("quota-fetch")
    create_topic(broker.bootstrap, topic, 1)
    fill = int(RATE * (RUN_SECONDS + 10) * 1.5)
    p = producer(broker.bootstrap, **{"batch.size": 65536})
    value = b"y" * 1024
    for _ in range(fill // len(value)):
        while True:
            try:
                p.produce(topic, value, partition=0)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    client_id = unique_topic("rdkafka-consumer")
    alter_client_quota(broker, client_id, "consumer_byte_rate", float(RATE))
    stats = ThrottleStats()
    c = consumer(broker.bootstrap, **{"client.id": client_id, "statistics.interval.ms": 500,
                                      "stats_cb": stats, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = 0
        arrivals = []
        started = time.monotonic()
        while time.monotonic() - started < RUN_SECONDS:
            batch = 0
            for m in c.consume(num_messages=1000, timeout=0.1):
                if m.error() is None:
                    # Its share of the response: 1024 bytes and 10 of record framing (252
                    # such records made a 260639-byte Fetch response).
                    batch += len(m.value()) + 10
            if batch:
                arrivals.append((time.monotonic(), batch))
                got += batch
        elapsed = time.monotonic() - started
        whole = got / elapsed
        rate = steady_rate(arrivals)
        print(f"librdkafka consumer: {rate:.0f} B/s against {RATE} ({rate / RATE:.3f}) after "
              f"the first second, {whole / RATE:.3f} over the run, "
              f"throttle max {stats.max_ms} ms")
        assert stats.max_ms > 0, "librdkafka never saw a throttle time"
        assert got < fill, "the consumer read everything: the test proves nothing"
        assert abs(rate - RATE) / RATE <= 0.10, f"{rate:.0f} B/s against a quota of {RATE}"
        # The burst is one second's worth, not Kafka's ten: a run of N s allows N + 2.5 seconds' worth.
        assert whole <= RATE * (RUN_SECONDS + 2.5) / RUN_SECONDS, f"{whole:.0f} B/s over the run"
    finally:
        c.close()
        alter_client_quota(broker, client_id, "consumer_byte_rate", None)
