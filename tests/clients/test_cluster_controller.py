"""Three Shoal nodes, each in its own network namespace, form one cluster: the controller Raft
group (voters = the seeds) elects a leader, every node registers as a broker through the
replicated metadata log and is unfenced by its heartbeats.

  * all three agree on the leader, the term and the registered brokers (/v1/cluster);
  * kill -9 the controller leader: the other two elect a new one in a higher term and fence
    the dead broker once its session expires; restarted, it catches up, re-registers with a
    new broker epoch and is unfenced; nothing committed before is lost;
  * isolate one voter (nft): the other two keep (or elect) a leader and keep committing; the
    isolated one cannot commit anything; after heal it follows the leader again;
  * a stranger on the internal port (a Kafka request, a frame of another cluster) is refused
    and logged, and the cluster carries on.

  * topics go through the controller: created through one node, they are on every node's
    Metadata with their partitions spread over the three nodes; a producer bootstrapped with
    one node and consumer groups bootstrapped with each node produce, consume and commit on
    every partition; with the controller leader killed, a topic created through a survivor
    is placed on the live nodes only and the dead node's partitions are leaderless; back, it
    serves its partitions with every acknowledged record.

Each partition has one replica until replication lands: a dead node's partitions are
unavailable (not lost) until it is back.
"""

import json
import os
import re
import shutil
import socket
import struct
import sys
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import netns
from conftest import SHOAL_BIN, _require_binary

pytestmark = pytest.mark.timeout(120)

RPC_PORT = 33145
ADMIN_PORT = 9644


def cluster_view(c, i, timeout=1.0):
    url = f"http://{c.addr(i)}:{ADMIN_PORT}/v1/cluster"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def views(c, nodes):
    out = {}
    for i in nodes:
        try:
            out[i] = cluster_view(c, i)
        except Exception:
            out[i] = None
    return out


_CLUSTER = []  # the cluster under test, so a timeout can show every node's view


def wait_for(what, check, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    seen = views(_CLUSTER[-1], [1, 2, 3]) if _CLUSTER else {}
    raise AssertionError(f"timed out waiting for {what}; views: {json.dumps(seen, indent=1)}")


def agreed_leader(c, nodes, fenced_ok=()):
    """The leader all `nodes` agree on, once all three brokers are registered, every one not in
    `fenced_ok` is unfenced and they agree on the metadata version; else None."""
    v = views(c, nodes)
    if any(x is None for x in v.values()):
        return None
    leaders = {x["controller"]["leader"] for x in v.values()}
    terms = {x["controller"]["term"] for x in v.values()}
    versions = {x["metadata_version"] for x in v.values()}
    if len(leaders) != 1 or None in leaders or len(terms) != 1 or len(versions) != 1:
        return None
    brokers = next(iter(v.values()))["brokers"]
    if len(brokers) != 3:
        return None
    if any(b["fenced"] and b["node_id"] not in fenced_ok for b in brokers):
        return None
    return leaders.pop(), terms.pop(), brokers


def node_starter(c, seeds, procs, data_dir, rack):
    """start(node_id, namespace=None, key=None, wait=True) for a cluster fixture: the node in
    namespace node_id + 1 (or `namespace`), with `seeds`, its rpc address there and
    `rack(node_id)`; data in `data_dir(key)`. Started again (same data) when `key` (default
    the node id) already ran; `procs` maps keys to processes."""
    def start(node_id, namespace=None, key=None, wait=True):
        i = namespace or node_id + 1
        key = node_id if key is None else key
        env = {
            "SHOAL_NODE_ID": str(node_id),
            "SHOAL_SEEDS": seeds,
            "SHOAL_RPC_ADDR": f"{c.addr(i)}:{RPC_PORT}",
            "SHOAL_RACK": rack(node_id),
        }
        if key in procs:
            procs[key].restart()
            procs[key].wait_ready()
        else:
            procs[key] = netns.start_shoal(c, i, SHOAL_BIN, str(data_dir(key)), port=9092,
                                           admin_port=ADMIN_PORT, env=env, wait=wait)
        return procs[key]
    return start


def stop_nodes(procs, data_dir):
    """Kill every process of a cluster fixture and (unless SHOAL_KEEP_DATA=1) drop its data:
    segments and the disk reserve are preallocated (over 1 GiB a node) and pytest keeps the
    last three runs."""
    for p in procs.values():
        p.kill()
    if os.environ.get("SHOAL_KEEP_DATA") != "1":
        for key in procs:
            shutil.rmtree(data_dir(key), ignore_errors=True)


@pytest.fixture
def three_nodes(netns_cluster, tmp_path):
    _require_binary()
    c = netns_cluster(3)
    _CLUSTER.append(c)
    seeds = ",".join(f"{i}@{c.addr(i + 1)}:{RPC_PORT}" for i in range(3))
    procs = {}
    data_dir = lambda key: tmp_path / f"node{key}"  # noqa: E731
    start = node_starter(c, seeds, procs, data_dir, rack=lambda n: f"rack-{n}")
    try:
        for node_id in range(3):
            start(node_id)
        yield c, procs, start
    finally:
        stop_nodes(procs, data_dir)


def ns_index(node_id):
    return node_id + 1


def test_three_nodes_elect_register_and_survive_a_leader_kill(three_nodes):
    c, procs, start = three_nodes
    all_nodes = [1, 2, 3]
    leader, term, brokers = wait_for("a leader and three unfenced brokers",
                                     lambda: agreed_leader(c, all_nodes))
    assert sorted(b["node_id"] for b in brokers) == [0, 1, 2]
    assert {b["rack"] for b in brokers} == {"rack-0", "rack-1", "rack-2"}
    for b in brokers:
        assert b["kafka"] == f"{c.addr(b['node_id'] + 1)}:9092"
    before = cluster_view(c, 1)["metadata_version"]
    old_epoch = {b["node_id"]: b["broker_epoch"] for b in brokers}[leader]

    procs[leader].kill()
    rest = [ns_index(n) for n in range(3) if n != leader]

    def new_leader_fenced_old():
        got = agreed_leader(c, rest, fenced_ok=(leader,))
        if not got or got[0] == leader or got[1] <= term:
            return None
        dead = [b for b in got[2] if b["node_id"] == leader]
        return got if dead and dead[0]["fenced"] else None

    new, new_term, _ = wait_for("a new leader, the dead broker fenced", new_leader_fenced_old,
                                timeout=30)
    assert new != leader and new_term > term
    assert cluster_view(c, rest[0])["metadata_version"] > before  # kept and grew

    start(leader)

    def rejoined():
        got = agreed_leader(c, all_nodes)
        if not got:
            return None
        epoch = {b["node_id"]: b["broker_epoch"] for b in got[2]}[leader]
        return got if epoch > old_epoch else None

    _, _, brokers = wait_for("the restarted node re-registered and unfenced", rejoined, timeout=30)
    assert sorted(b["node_id"] for b in brokers) == [0, 1, 2]


def test_an_isolated_voter_cannot_commit_and_catches_up_after_heal(three_nodes):
    c, procs, start = three_nodes
    leader, term, _ = wait_for("a leader", lambda: agreed_leader(c, [1, 2, 3]))
    # Isolate a follower's namespace; its admin port is unreachable from the host then, so
    # read its state from inside its namespace.
    victim = next(n for n in range(3) if n != leader)
    vi = ns_index(victim)
    frozen = cluster_view(c, vi)["metadata_version"]
    c.isolate(vi)
    rest = [ns_index(n) for n in range(3) if n != victim]

    def others_fenced_victim():
        got = agreed_leader(c, rest, fenced_ok=(victim,))
        if not got:
            return None
        v = [b for b in got[2] if b["node_id"] == victim]
        return got if v and v[0]["fenced"] else None

    wait_for("the majority fences the isolated voter", others_fenced_victim, timeout=30)
    inside = c.run(vi, ["curl", "-s", "-m", "2", f"http://{c.addr(vi)}:{ADMIN_PORT}/v1/cluster"])
    seen = json.loads(inside.stdout)
    assert seen["metadata_version"] == frozen, "an isolated voter committed something"
    c.heal()

    def caught_up():
        got = agreed_leader(c, [1, 2, 3])
        return got if got and cluster_view(c, vi)["metadata_version"] > frozen else None

    wait_for("the healed voter caught up and is unfenced again", caught_up, timeout=30)


def test_strangers_on_the_internal_port_are_refused_and_logged(three_nodes):
    c, procs, start = three_nodes
    wait_for("a leader", lambda: agreed_leader(c, [1, 2, 3]))
    target = c.addr(1)

    def send_and_expect_close(data):
        s = socket.create_connection((target, RPC_PORT), timeout=3)
        s.sendall(data)
        s.settimeout(3)
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        s.close()
        assert got == b"", "the internal port answered a stranger"

    # A Kafka ApiVersions request, as a client pointed at the wrong port would send.
    send_and_expect_close(bytes.fromhex("0000000e00120003000000010004746573740000"))
    # A well-formed frame of another cluster: magic SHRP, version 1, correct CRC.
    body = b"\x01" * 16 + struct.pack(">iqiI", 1, 7, 0, 0)
    covered = body
    crc = crc32c(covered)
    frame = struct.pack(">IHI", 0x53485250, 1, crc) + covered
    send_and_expect_close(struct.pack(">I", len(frame)) + frame)
    # A length prefix of 30 MB and nothing more: refused before anything is read (or
    # allocated), since a connection must start with a small Hello.
    send_and_expect_close(struct.pack(">I", 30_000_000) + b"SHRP")
    # The reason is logged as the connection closes: give the line a moment to land.
    wanted = ("first frame of 30000000 bytes refused", "not a Shoal peer",
              "this node is in cluster")
    wait_for("the refusals in the log",
             lambda: all(w in procs[0].log_text() for w in wanted), timeout=10)
    # And the cluster is fine.
    wait_for("still a leader", lambda: agreed_leader(c, [1, 2, 3]))


def crc32c(data):
    """CRC-32C (Castagnoli), bitwise: enough for a test frame."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def bootstrap(c, node_id):
    return f"{c.addr(ns_index(node_id))}:9092"


def create(c, via, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap(c, via)})
    for _, f in admin.create_topics([NewTopic(name, num_partitions=partitions,
                                              replication_factor=1)]).items():
        f.result(timeout=20)


def leaders(c, via, name):
    md = AdminClient({"bootstrap.servers": bootstrap(c, via)}).list_topics(timeout=10)
    if name not in md.topics:
        return None
    return {p.id: p.leader for p in md.topics[name].partitions.values()}, sorted(md.brokers)


def produce_all(c, via, name, partitions, count):
    p = Producer({"bootstrap.servers": bootstrap(c, via), "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 20000})
    acked = {}

    def done(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())

    for i in range(count):
        p.produce(name, value=b"%s-%d" % (name.encode(), i), partition=i % partitions,
                  on_delivery=done)
    p.flush(30)
    return acked


def consume_group(c, via, name, group, want):
    consumer = Consumer({"bootstrap.servers": bootstrap(c, via), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([name])
    got = {}
    deadline = time.monotonic() + 30
    while len(got) < want and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got[m.value()] = (m.partition(), m.offset())
    consumer.commit(asynchronous=False)
    committed = {tp.partition: tp.offset
                 for tp in consumer.committed(consumer.assignment(), timeout=10)}
    consumer.close()
    return got, committed


def test_topics_go_through_the_controller(three_nodes):
    c, procs, start = three_nodes
    leader, _, _ = wait_for("a leader and three unfenced brokers",
                            lambda: agreed_leader(c, [1, 2, 3]))
    create(c, via=(leader + 1) % 3, name="orders", partitions=6)
    for node in range(3):
        got = wait_for(f"orders in node {node}'s Metadata", lambda: leaders(c, node, "orders"))
        by_partition, brokers = got
        assert brokers == [0, 1, 2]
        assert sorted(set(by_partition.values())) == [0, 1, 2], by_partition  # spread out
    acked = produce_all(c, via=(leader + 2) % 3, name="orders", partitions=6, count=120)
    assert len(acked) == 120
    for node in range(3):
        got, committed = consume_group(c, via=node, name="orders", group=f"g{node}", want=120)
        assert got == acked, f"group via node {node} read {len(got)} of 120"
        assert committed == {p: 20 for p in range(6)}, committed

    # The controller leader dies: metadata changes go on through a survivor.
    by_partition, _ = leaders(c, leader, "orders")
    procs[leader].kill()
    survivor = (leader + 1) % 3
    rest = [ns_index(n) for n in range(3) if n != leader]

    def dead_fenced():
        got = agreed_leader(c, rest, fenced_ok=(leader,))
        dead = got and [b for b in got[2] if b["node_id"] == leader]
        return got if dead and dead[0]["fenced"] else None

    wait_for("the dead node fenced", dead_fenced, timeout=30)
    create(c, via=survivor, name="after", partitions=4)
    placed, brokers = wait_for("after in Metadata", lambda: leaders(c, survivor, "after"))
    assert leader not in placed.values() and leader not in brokers, (placed, brokers)
    orders_now, _ = leaders(c, survivor, "orders")
    for p, node in by_partition.items():
        assert orders_now[p] == (-1 if node == leader else node), (by_partition, orders_now)

    # Back: it serves its partitions again, with every acknowledged record.
    start(leader)
    wait_for("the restarted node unfenced", lambda: agreed_leader(c, [1, 2, 3]), timeout=30)
    wait_for("orders led by all three again",
             lambda: leaders(c, survivor, "orders")[0] == by_partition or None, timeout=30)
    got, _ = consume_group(c, via=leader, name="orders", group="after-restart", want=120)
    assert got == acked
    metrics = urllib.request.urlopen(f"http://{c.addr(ns_index(leader))}:{ADMIN_PORT}/metrics",
                                     timeout=5).read().decode()
    for series in ("shoal_controller_term", "shoal_controller_leader", "shoal_metadata_version",
                   "shoal_rpc_received_bytes_total", "shoal_broker_heartbeats_missed_total"):
        assert f"\n{series} " in metrics, series
    assert "after" in AdminClient({"bootstrap.servers": bootstrap(c, leader)}).list_topics(
        timeout=10).topics


def test_kcat_and_kafka_python_bootstrapped_with_one_node(three_nodes):
    """librdkafka's kcat and kafka-python, each given a single node, reach every partition."""
    import subprocess
    from kafka import KafkaConsumer, KafkaProducer
    c, procs, start = three_nodes
    wait_for("a leader and three unfenced brokers", lambda: agreed_leader(c, [1, 2, 3]))
    create(c, via=0, name="tools", partitions=3)
    wait_for("tools everywhere", lambda: all(leaders(c, n, "tools") for n in range(3)))
    by_partition, _ = leaders(c, 1, "tools")
    assert sorted(by_partition.values()) == [0, 1, 2]
    producer = KafkaProducer(bootstrap_servers=bootstrap(c, 1), acks="all")
    for p in range(3):
        producer.send("tools", value=b"kp-%d" % p, partition=p).get(timeout=20)
    producer.close()
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat:
        for p in range(3):
            subprocess.run([kcat, "-b", bootstrap(c, 2), "-P", "-t", "tools", "-p", str(p)],
                           input=b"kc-%d\n" % p, check=True, timeout=30)
        out = subprocess.run([kcat, "-b", bootstrap(c, 0), "-C", "-t", "tools", "-e", "-q",
                              "-f", "%p:%s\n"], capture_output=True, check=True, timeout=30)
        lines = sorted(out.stdout.decode().split())
        assert lines == sorted([f"{p}:kp-{p}" for p in range(3)] + [f"{p}:kc-{p}" for p in range(3)])
    consumer = KafkaConsumer("tools", bootstrap_servers=bootstrap(c, 2), group_id="kpy",
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    values = sorted(m.value for m in consumer)
    consumer.close()
    want = [b"kp-%d" % p for p in range(3)] + ([b"kc-%d" % p for p in range(3)] if kcat else [])
    assert values == sorted(want)
    # Followers time their heartbeats to the controller leader: node-to-node latency.
    timed = 0
    for i in (1, 2, 3):
        text = urllib.request.urlopen(f"http://{c.addr(i)}:{ADMIN_PORT}/metrics",
                                      timeout=5).read().decode()
        count = re.search(r"\nshoal_rpc_heartbeat_round_trip_seconds_count (\d+)", text)
        timed += bool(count and int(count.group(1)) > 0)
    assert timed >= 2, "the two followers' heartbeat round trips are not timed"


def own_topics(c, i):
    """The topics in node i's own metadata (its admin endpoint, not a client's Metadata)."""
    url = f"http://{c.addr(i)}:{ADMIN_PORT}/v1/partitions"
    with urllib.request.urlopen(url, timeout=2) as r:
        return set(json.loads(r.read())["topics"])


def test_a_voter_cut_off_from_the_others_cannot_change_metadata(three_nodes):
    """Cut (nft) from the other two but still reachable by clients, a voter refuses metadata
    changes (no controller leader within its reach); the majority keeps changing metadata; after
    the heal the voter has every change and takes changes again."""
    from confluent_kafka import KafkaException
    c, procs, start = three_nodes
    leader, _, _ = wait_for("a leader and three unfenced brokers",
                            lambda: agreed_leader(c, [1, 2, 3]))
    victim = next(n for n in range(3) if n != leader)
    vi = ns_index(victim)
    c.partition([[vi]])  # the host still reaches everyone
    others = [n for n in range(3) if n != victim]
    wait_for("the majority fences the cut-off voter",
             lambda: (lambda got: got and [b for b in got[2] if b["node_id"] == victim][0]["fenced"]
                      and got)(agreed_leader(c, [ns_index(n) for n in others],
                                             fenced_ok=(victim,))), timeout=30)
    frozen = cluster_view(c, vi)["metadata_version"]
    with pytest.raises(KafkaException) as refused:
        create(c, via=victim, name="from-the-minority", partitions=1)
    assert refused.value.args[0].code() in (
        # No leader in reach (an election it cannot win), or forwarded and never committed.
        # librdkafka names NOT_CONTROLLER by its Kafka name.
        41, 7), refused.value
    create(c, via=others[0], name="from-the-majority", partitions=2)
    assert cluster_view(c, vi)["metadata_version"] == frozen
    # The victim's own metadata (/v1/partitions): a client's Metadata may be answered by the
    # other nodes, which the host still reaches.
    assert "from-the-majority" not in own_topics(c, vi)
    c.heal()
    wait_for("the voter caught up", lambda: "from-the-majority" in own_topics(c, vi), timeout=30)
    wait_for("three unfenced brokers again", lambda: agreed_leader(c, [1, 2, 3]), timeout=30)
    create(c, via=victim, name="after-heal", partitions=1)
    for node in range(3):
        wait_for(f"after-heal on node {node}", lambda: leaders(c, node, "after-heal"))
