"""Brokers that are not seeds: a cluster of three controller voters (the seeds) and a fourth
node started with the same seeds but a node id of its own, each node in its own network
namespace.

  * the fourth node registers through a voter, is added as a learner of the controller
    group (it applies the metadata log without a vote), is unfenced by its heartbeats and is
    in every node's Metadata; topics created through it are placed on it too, and a client
    bootstrapped with it alone produces to and consumes from every partition;
  * kill -9 it: it is fenced and its partitions are leaderless; restarted, it registers
    again with a new broker epoch, catches up and serves them with every acknowledged record;
  * producer ids come in blocks from the controller: InitProducerId on every node hands out
    distinct ids, and a node that lost its data dir does not hand out an id again;
  * a second process started with the live fourth node's id is refused by the controller
    leader (DUPLICATE_BROKER_REGISTRATION, logged and counted): the first one stays
    registered, at its own address, and keeps its partitions.
"""

import json
import os
import shutil
import time

import pytest
from confluent_kafka.admin import AdminClient

from conftest import _require_binary
from helpers import raw_init_producer_id
from test_cluster_controller import (RPC_PORT, cluster_view, consume_group, create,
                                     node_starter, produce_all, stop_nodes, views)

pytestmark = pytest.mark.timeout(150)

VOTERS = (0, 1, 2)
BROKER = 3  # not a seed: joins as a learner


def ns(node_id):
    return node_id + 1


def bootstrap(c, node_id):
    return f"{c.addr(ns(node_id))}:9092"


def wait_for(c, what, check, timeout=25.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(interval)
    seen = views(c, [ns(n) for n in (*VOTERS, BROKER)])
    raise AssertionError(f"timed out waiting for {what}; views: {json.dumps(seen, indent=1)}")


@pytest.fixture
def four_nodes(netns_cluster, tmp_path):
    """Three seeds and one more broker; a fifth namespace stays free for an impostor."""
    _require_binary()
    c = netns_cluster(5)
    seeds = ",".join(f"{n}@{c.addr(ns(n))}:{RPC_PORT}" for n in VOTERS)
    procs = {}
    data_dir = lambda key: tmp_path / f"data-{key}"  # noqa: E731
    start = node_starter(c, seeds, procs, data_dir, rack=lambda n: f"rack-{n % 2}")
    try:
        for node_id in (*VOTERS, BROKER):
            start(node_id)
        yield c, procs, start
    finally:
        stop_nodes(procs, data_dir)

def settled(c, nodes, live, fenced=()):
    """Every node in `nodes` agrees on the leader and metadata version, and lists the brokers
    `live` unfenced and `fenced` fenced; returns the leader's view, else None."""
    v = views(c, [ns(n) for n in nodes])
    if any(x is None for x in v.values()):
        return None
    leaders = {x["controller"]["leader"] for x in v.values()}
    versions = {x["metadata_version"] for x in v.values()}
    if len(leaders) != 1 or None in leaders or len(versions) != 1:
        return None
    brokers = {b["node_id"]: b for b in next(iter(v.values()))["brokers"]}
    if sorted(brokers) != sorted((*live, *fenced)):
        return None
    if any(brokers[n]["fenced"] for n in live) or not all(brokers[n]["fenced"] for n in fenced):
        return None
    leader = leaders.pop()
    return v.get(ns(leader)) or cluster_view(c, ns(leader))


def metadata(c, via, topic):
    md = AdminClient({"bootstrap.servers": bootstrap(c, via)}).list_topics(timeout=10)
    if topic not in md.topics:
        return None
    leaders = {p.id: p.leader for p in md.topics[topic].partitions.values()}
    return leaders, sorted(md.brokers)


def test_a_broker_that_is_not_a_seed_joins_serves_and_rejoins(four_nodes):
    c, procs, start = four_nodes
    everyone = (*VOTERS, BROKER)
    view = wait_for(c, "four unfenced brokers", lambda: settled(c, everyone, everyone))
    assert view["controller"]["voters"] == list(VOTERS), view
    assert view["controller"]["learners"] == [BROKER], view
    mine = cluster_view(c, ns(BROKER))
    assert mine["controller"]["leader"] in VOTERS and mine["controller"]["voters"] == list(VOTERS)

    # Admin requests through the learner are forwarded to the controller leader.
    create(c, via=BROKER, name="wide", partitions=8)
    for node in everyone:
        placed, brokers = wait_for(c, f"wide in node {node}'s Metadata",
                                   lambda: metadata(c, node, "wide"))
        assert brokers == [0, 1, 2, 3], brokers
        # The learner leads some. Not necessarily every node: new partitions go to the nodes
        # leading the fewest, which counts the offsets topic's 16 partitions, placed on the
        # three seeds alone when it was created before the learner registered.
        assert BROKER in placed.values() and set(placed.values()) <= set(everyone), placed
    acked = produce_all(c, via=BROKER, name="wide", partitions=8, count=160)
    assert len(acked) == 160
    got, committed = consume_group(c, via=BROKER, name="wide", group="via-broker", want=160)
    assert got == acked and committed == {p: 20 for p in range(8)}, committed

    # kill -9: fenced, its partitions leaderless; back, it registers again and serves them.
    placed, _ = metadata(c, 0, "wide")
    epoch_before = {b["node_id"]: b for b in view["brokers"]}[BROKER]["broker_epoch"]
    procs[BROKER].kill()
    wait_for(c, "the broker fenced", lambda: settled(c, VOTERS, VOTERS, fenced=(BROKER,)),
             timeout=30)
    now, _ = metadata(c, 0, "wide")
    assert all(now[p] == -1 for p, n in placed.items() if n == BROKER), now
    start(BROKER)
    view = wait_for(c, "the broker back", lambda: settled(c, everyone, everyone), timeout=30)
    epoch_after = {b["node_id"]: b for b in view["brokers"]}[BROKER]["broker_epoch"]
    assert epoch_after > epoch_before
    wait_for(c, "wide led as before", lambda: metadata(c, 0, "wide")[0] == placed or None)
    got, _ = consume_group(c, via=0, name="wide", group="after-restart", want=160)
    assert got == acked


def test_a_second_process_with_a_live_node_id_is_refused(four_nodes):
    c, procs, start = four_nodes
    everyone = (*VOTERS, BROKER)
    view = wait_for(c, "four unfenced brokers", lambda: settled(c, everyone, everyone))
    leader = view["controller"]["leader"]
    first = {b["node_id"]: b for b in view["brokers"]}[BROKER]
    # Same node id, another namespace (another address): a misconfigured second host.
    # It never registers, so its own Metadata never lists it: do not wait for that.
    impostor = start(BROKER, namespace=5, key="impostor", wait=False)
    impostor.wait_tcp(9092, 20)

    def refused():
        v = cluster_view(c, ns(leader))
        return v if v["controller"]["registrations_refused"] > 0 else None

    wait_for(c, "the leader refusing the impostor", refused)
    wait_for(c, "the refusal in the leader's log",
             lambda: "broker registration refused" in procs[leader].log_text()
             and "registered by another running process" in procs[leader].log_text(), timeout=10)
    # The live one stays registered at its own address, unfenced, same epoch, for a while.
    time.sleep(3)
    view = settled(c, everyone, everyone)
    assert view, views(c, [ns(n) for n in everyone])
    now = {b["node_id"]: b for b in view["brokers"]}[BROKER]
    assert (now["rpc"], now["broker_epoch"]) == (first["rpc"], first["broker_epoch"]), now
    # The impostor never joins: no partition of a topic created now lands on its address.
    create(c, via=0, name="after-impostor", partitions=8)
    placed, brokers = wait_for(c, "the topic", lambda: metadata(c, 0, "after-impostor"))
    assert brokers == [0, 1, 2, 3]
    acked = produce_all(c, via=BROKER, name="after-impostor", partitions=8, count=40)
    assert len(acked) == 40, "the real broker lost its partitions to the impostor"
    # And it says why it is not serving.
    wait_for(c, "the impostor's warning",
             lambda: "not registered with the controller yet" in impostor.log_text(), timeout=20)
    impostor.kill()


def test_producer_ids_come_in_blocks_from_the_controller(four_nodes, tmp_path):
    c, procs, start = four_nodes
    everyone = (*VOTERS, BROKER)
    wait_for(c, "four unfenced brokers", lambda: settled(c, everyone, everyone))

    def init(node):
        err, pid, epoch = raw_init_producer_id(c.addr(ns(node)), 9092)
        assert err == 0 and pid >= 0 and epoch == 0, (node, err, pid, epoch)
        return pid

    given = {node: [init(node) for _ in range(3)] for node in everyone}
    ids = [pid for pids in given.values() for pid in pids]
    assert len(set(ids)) == len(ids), given  # no id handed out twice, across nodes
    for pids in given.values():
        assert pids == list(range(pids[0], pids[0] + 3)), given  # one block per node
    # The broker loses its data dir: it comes back empty, registers again, and gets a new
    # block (ids interleaved by node id would start over and repeat its old ones).
    procs[BROKER].kill()
    wait_for(c, "the broker fenced", lambda: settled(c, VOTERS, VOTERS, fenced=(BROKER,)),
             timeout=30)
    shutil.rmtree(tmp_path / f"data-{BROKER}")
    os.makedirs(tmp_path / f"data-{BROKER}")
    start(BROKER)
    wait_for(c, "the broker back", lambda: settled(c, everyone, everyone), timeout=30)
    again = [init(BROKER) for _ in range(3)]
    assert not set(again) & set(ids), (given, again)
    assert min(again) > max(ids), (given, again)  # blocks only move forward


def test_a_voter_that_lost_its_log_is_kept_out_and_says_so(four_nodes, tmp_path):
    c, procs, start = four_nodes
    everyone = (*VOTERS, BROKER)
    view = wait_for(c, "four unfenced brokers", lambda: settled(c, everyone, everyone))
    leader = view["controller"]["leader"]
    victim = next(n for n in VOTERS if n != leader)
    create(c, via=0, name="before-wipe", partitions=4)
    procs[victim].kill()
    shutil.rmtree(tmp_path / f"data-{victim}")
    os.makedirs(tmp_path / f"data-{victim}")
    procs[victim].restart()
    # Raft takes a voter's log to survive: one that forgot it must not vote or ack with it.
    wait_for(c, "the wiped voter's error",
             lambda: "this controller voter lost its log" in procs[victim].log_text())
    others = [n for n in everyone if n != victim]
    survivors = settled(c, others, [n for n in everyone if n != victim], fenced=(victim,)) \
        or settled(c, others, everyone)
    assert survivors, views(c, [ns(n) for n in everyone])
    assert survivors["controller"]["leader"] == leader, survivors  # not disrupted
    create(c, via=BROKER, name="after-wipe", partitions=4)
    # Asked of a survivor: the wiped voter applies nothing, so its own Metadata stays empty.
    placed, _ = wait_for(c, "after-wipe in Metadata",
                         lambda: metadata(c, BROKER, "after-wipe"))
    assert len(placed) == 4


def test_the_learner_follows_a_new_controller_leader(four_nodes):
    c, procs, start = four_nodes
    everyone = (*VOTERS, BROKER)
    view = wait_for(c, "four unfenced brokers", lambda: settled(c, everyone, everyone))
    leader = view["controller"]["leader"]
    procs[leader].kill()
    rest = [n for n in everyone if n != leader]

    def new_leader():
        got = settled(c, rest, [n for n in everyone if n != leader], fenced=(leader,))
        return got if got and got["controller"]["leader"] not in (None, leader) else None

    view = wait_for(c, "a new leader with the old one fenced", new_leader, timeout=30)
    assert view["controller"]["learners"] == [BROKER], view
    # Metadata changes through the learner go to the new leader; it sees them applied.
    create(c, via=BROKER, name="after-leader-change", partitions=6)
    placed, brokers = wait_for(c, "the topic on the learner",
                               lambda: metadata(c, BROKER, "after-leader-change"))
    assert leader not in placed.values() and BROKER in placed.values(), placed
    acked = produce_all(c, via=BROKER, name="after-leader-change", partitions=6, count=60)
    assert len(acked) == 60
    mine = cluster_view(c, ns(BROKER))
    assert mine["controller"]["leader"] == view["controller"]["leader"], mine
