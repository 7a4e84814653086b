"""Consumer groups (classic protocol) with real clients: rebalances, commits, static
membership, cooperative-sticky, kill -9 of the broker, admin views."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import create_topic, unique_topic, wait_for

PARTITIONS = 6


def produce(bootstrap, topic, count, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                  "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(topic, value=f"m{i}".encode(), key=str(i).encode(),
                  partition=i % PARTITIONS)
    assert p.flush(30) == 0


def make_consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.partition.eof": False,
    }
    conf.update(extra)
    return Consumer(conf)


class Fleet:
    """Several consumers of one group, polled round-robin from this thread; every message
    is recorded and committed synchronously after processing."""

    def __init__(self, topic):
        self.topic = topic
        self.consumers = {}
        self.seen = []  # (value, consumer name)

    def add(self, name, consumer):
        consumer.subscribe([self.topic])
        self.consumers[name] = consumer

    def poll_round(self):
        for name, c in list(self.consumers.items()):
            msg = c.poll(0.05)
            if msg is None or msg.error():
                continue
            self.seen.append((msg.value().decode(), name))
            c.commit(message=msg, asynchronous=False)

    def assignments(self):
        return {name: {tp.partition for tp in c.assignment()}
                for name, c in self.consumers.items()}

    def settle(self, timeout=40, need=None):
        """Poll until every partition is owned by exactly one consumer (and, if given, the
        set of consumers owning something equals `need`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll_round()
            a = self.assignments()
            owned = [p for parts in a.values() for p in parts]
            if sorted(owned) == list(range(PARTITIONS)):
                if need is None or {n for n, parts in a.items() if parts} == set(need):
                    return a
        raise AssertionError(f"no stable exclusive assignment: {self.assignments()}")

    def drain(self, expected, timeout=40):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len({v for v, _ in self.seen}) < expected:
            self.poll_round()
        for _ in range(20):  # anything extra (a duplicate) would show up now
            self.poll_round()

    def close(self, name):
        self.consumers.pop(name).close()


def check_exactly_once(seen, total):
    values = [v for v, _ in seen]
    dups = {v for v in values if values.count(v) > 1}
    assert not dups, f"delivered twice: {sorted(dups)[:10]}"
    assert set(values) == {f"m{i}" for i in range(total)}, \
        f"missing: {sorted({f'm{i}' for i in range(total)} - set(values))[:10]}"


def test_groups_rebalance_leave_join_exactly_once(broker):
    topic = unique_topic("grp")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_topic("g")
    fleet = Fleet(topic)
    produce(broker.bootstrap, topic, 120)
    fleet.add("a", make_consumer(broker.bootstrap, group))
    a = fleet.settle(need={"a"})
    assert a["a"] == set(range(PARTITIONS))
    fleet.drain(60, timeout=20)
    fleet.add("b", make_consumer(broker.bootstrap, group))
    fleet.settle(need={"a", "b"})
    produce(broker.bootstrap, topic, 60, start=120)
    fleet.add("c", make_consumer(broker.bootstrap, group))
    fleet.settle(need={"a", "b", "c"})
    fleet.drain(180)
    fleet.close("c")  # clean leave
    fleet.settle(need={"a", "b"})
    produce(broker.bootstrap, topic, 60, start=180)
    fleet.add("d", make_consumer(broker.bootstrap, group))  # one joins
    fleet.settle(need={"a", "b", "d"})
    fleet.drain(240)
    check_exactly_once(fleet.seen, 240)
    for name in list(fleet.consumers):
        fleet.close(name)


KILLABLE = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([sys.argv[3]])
    while True:
        c.poll(0.2)
        if c.assignment():
            print("assigned", flush=True)
""")


def test_groups_killed_member_expires_by_session_timeout(broker):
    topic = unique_topic("grpk")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_topic("g")
    fleet = Fleet(topic)
    fleet.add("a", make_consumer(broker.bootstrap, group))
    fleet.settle(need={"a"})
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, broker.bootstrap, group, topic],
                            stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            fleet.poll_round()
            if len(fleet.assignments()["a"]) < PARTITIONS:
                break
        assert len(fleet.assignments()["a"]) < PARTITIONS, "the second member never got partitions"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        a = fleet.settle(timeout=40, need={"a"})
        assert a["a"] == set(range(PARTITIONS))
        # Session timeout 6 s (plus a rebalance): not instant, not forever.
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    fleet.close("a")


def test_groups_cooperative_sticky(broker):
    topic = unique_topic("grpc")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 120)
    fleet = Fleet(topic)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    fleet.add("a", make_consumer(broker.bootstrap, group, **coop))
    fleet.settle(need={"a"})
    fleet.drain(40, timeout=20)
    fleet.add("b", make_consumer(broker.bootstrap, group, **coop))
    a = fleet.settle(need={"a", "b"})
    assert len(a["a"]) == len(a["b"]) == PARTITIONS // 2
    fleet.drain(120)
    check_exactly_once(fleet.seen, 120)
    for name in list(fleet.consumers):
        fleet.close(name)


def test_groups_commits_survive_broker_kill9(fresh_broker):
    b = fresh_broker
    topic = unique_topic("grpr")
    create_topic(b.bootstrap, topic, PARTITIONS)
    group = unique_topic("g")
    produce(b.bootstrap, topic, 60)
    fleet = Fleet(topic)
    fleet.add("a", make_consumer(b.bootstrap, group))
    fleet.drain(60)
    fleet.close("a")
    before = list(fleet.seen)
    check_exactly_once(before, 60)
    b.kill9()
    b.restart()
    produce(b.bootstrap, topic, 30, start=60)
    fleet = Fleet(topic)
    fleet.add("a", make_consumer(b.bootstrap, group))
    fleet.drain(30)
    check_exactly_once(before + fleet.seen, 90)
    c = fleet.consumers["a"]
    committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    assert sum(tp.offset for tp in committed) == 90
    fleet.close("a")


def test_groups_kafka_python_admin_views(broker):
    from kafka import KafkaAdminClient, KafkaConsumer
    topic = unique_topic("grpa")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 30)
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             client_id="kp-consumer")
    got = 0
    deadline = time.monotonic() + 40
    while got < 30 and time.monotonic() < deadline:
        for _, msgs in consumer.poll(timeout_ms=500).items():
            got += len(msgs)
    assert got == 30
    consumer.commit()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    groups = {g[0]: g[1] for g in admin.list_consumer_groups()}
    assert groups.get(group) == "consumer", groups
    [desc] = admin.describe_consumer_groups([group])
    assert desc.state == "Stable"
    assert desc.protocol_type == "consumer"
    assert len(desc.members) == 1
    assert desc.members[0].client_id == "kp-consumer"
    offsets = admin.list_consumer_group_offsets(group)
    assert {tp.partition: om.offset for tp, om in offsets.items()} == \
        {p: 5 for p in range(PARTITIONS)}
    consumer.close()
    [desc] = admin.describe_consumer_groups([group])
    assert desc.state == "Empty"
    admin.close()


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def test_groups_internal_log_stays_bounded_and_keeps_the_latest_commit(broker_factory, monkeypatch):
    # Tiny segments of the internal log and a cleaner that looks every 200 ms: thousands of
    # commits must not grow the internal log without bound (the log cleaner compacts it on
    # the records' keys), and the last commit must survive compaction and a restart.
    monkeypatch.setenv("SHOAL_GROUP_LOG_SEGMENT_BYTES", "16384")
    monkeypatch.setenv("SHOAL_LOG_CLEANER_BACKOFF_MS", "200")
    b = broker_factory().start()
    topic = unique_topic("compact")
    create_topic(b.bootstrap, topic, 1)
    group = unique_topic("g-compact")
    c = make_consumer(b.bootstrap, group)
    commits = 3000
    for offset in range(1, commits + 1):
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()
    internal = os.path.join(b.data_dir, "__consumer_offsets")
    # Each commit record is ~100+ bytes: without compaction the log would hold > 300 KB.
    deadline = time.monotonic() + 30
    while _dir_bytes(internal) > 400_000 and time.monotonic() < deadline:
        time.sleep(0.5)
    size = _dir_bytes(internal)
    log = open(b.log_path).read()
    assert any("log cleaned" in line and "__consumer_offsets" in line
               for line in log.splitlines()), "the cleaner never compacted the group log"
    b.kill9()
    b.restart()
    c = make_consumer(b.bootstrap, group)
    committed = c.committed([TopicPartition(topic, 0)], timeout=20)
    c.close()
    assert committed[0].offset == commits, f"committed offset after compaction + restart: {committed[0].offset}"
    assert size <= 400_000, f"internal log holds {size} bytes after {commits} commits"


def test_groups_keyless_logs_of_an_older_broker_are_rewritten_with_keys_and_lose_nothing(
        broker_factory, monkeypatch):
    # A data directory as a broker before keyed group records left it (the test switch writes
    # that format): on the upgrade, each group partition is rewritten with keyed records before
    # the cleaner may touch it (it drops keyless records), so every commit survives the upgrade,
    # cleanings and a kill -9.
    monkeypatch.setenv("SHOAL_TEST_WRITE_KEYLESS_GROUP_RECORDS", "1")
    monkeypatch.setenv("SHOAL_GROUP_LOG_SEGMENT_BYTES", "16384")
    monkeypatch.setenv("SHOAL_LOG_CLEANER_BACKOFF_MS", "200")
    b = broker_factory().start()
    topic = unique_topic("upgrade")
    create_topic(b.bootstrap, topic, 2)
    groups = {unique_topic(f"g-upgrade-{i}"): 100 + i for i in range(6)}
    for group, last in groups.items():
        c = make_consumer(b.bootstrap, group)
        for offset in range(1, last + 1, 10):
            c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        c.commit(offsets=[TopicPartition(topic, 0, last), TopicPartition(topic, 1, 7)],
                 asynchronous=False)
        c.close()
    b.kill9()

    def committed(group):
        c = make_consumer(b.bootstrap, group)
        try:
            got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
            return [tp.offset for tp in got]
        finally:
            c.close()

    monkeypatch.delenv("SHOAL_TEST_WRITE_KEYLESS_GROUP_RECORDS")
    b.restart()
    log = open(b.log_path).read()
    assert "group partition rewritten with keyed records" in log, "no rewrite at the upgrade"
    for group, last in groups.items():
        assert committed(group) == [last, 7], f"{group} after the upgrade"
    # Thousands of commits more make the cleaner compact the (now keyed) group logs.
    busy = next(iter(groups))
    c = make_consumer(b.bootstrap, busy)
    for offset in range(1, 2001):
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()
    groups[busy] = 2000
    wait_for(lambda: any("log cleaned" in line and "__consumer_offsets" in line
                         for line in open(b.log_path).read().splitlines()),
             timeout=30, what="a cleaning of a group log")
    b.kill9()
    b.restart()
    for group, last in groups.items():
        assert committed(group) == [last, 7], f"{group} after cleanings and a kill -9"


def test_groups_kafka_python_consumers_share_partitions(broker):
    # kafka-python speaks older group protocol versions than librdkafka: two of its consumers
    # in one group split the partitions, and together read every message once.
    from kafka import KafkaConsumer

    topic = unique_topic("kp-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(broker.bootstrap, topic, 60)
    group = unique_topic("kp-g")
    consumers = [
        KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=6000, heartbeat_interval_ms=500)
        for _ in range(2)
    ]
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for c in consumers:
                for records in c.poll(timeout_ms=200).values():
                    seen.extend(r.value.decode() for r in records)
                    c.commit()
            owned = [c.assignment() for c in consumers]
            if len(seen) >= 60 and all(owned) and len(set().union(*owned)) == PARTITIONS:
                break
        owned = [c.assignment() for c in consumers]
        assert all(owned), f"a consumer owns nothing: {owned}"
        assert not (owned[0] & owned[1]), f"a partition is owned twice: {owned}"
        assert len(owned[0] | owned[1]) == PARTITIONS
        assert sorted(seen) == sorted(f"m{i}" for i in range(60)), f"{len(seen)} messages, duplicates or gaps"
    finally:
        for c in consumers:
            c.close()
