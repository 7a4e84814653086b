"""The network-namespace harness (netns.py) proven with the single-node broker.

  * the fault rules really drop packets: isolate / partition / cut (both ways, one way, with
    the host) / heal, seen as a reachability matrix of TCP probes and, for one-way cuts, UDP;
  * shoal runs inside namespace 1 on its namespace address; confluent-kafka on the host
    produces and consumes over the bridge;
  * isolate(n1): a produce with a short timeout fails; heal(): it works again and nothing
    acknowledged is lost;
  * SIGSTOP: requests time out; SIGCONT: a pending one completes;
  * kill -9 + restart on the same data dir: every acknowledged message is still there;
  * a client inside namespace 2: cut(n1, n2) blocks it, the host still reaches n1, heal()
    restores it.
Each test takes a few seconds; timeouts are seconds.
"""

import json
import os
import shutil
import socket
import sys
import time

import pytest

import netns
from conftest import SHOAL_BIN, _require_binary
from helpers import consume_partitions, create_topic, producer, unique_topic, watermarks

pytestmark = pytest.mark.timeout(60)

SHORT = {  # a request to an unreachable / stopped broker fails within ~2 s
    "acks": "all",
    "linger.ms": 0,
    "message.timeout.ms": 2000,
    "request.timeout.ms": 1500,
    "socket.timeout.ms": 1500,
    "socket.connection.setup.timeout.ms": 2000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 300,
    "retry.backoff.ms": 50,
    "retry.backoff.max.ms": 300,
}


def not_blocked(m):
    return sorted(k for k, v in m.items() if not v) == []


def blocked(m):
    return sorted((k for k, v in m.items() if not v), key=str)


def send(p, topic, values, timeout):
    """Produce values to partition 0; wait up to `timeout` s. -> {value: (err, offset)}."""
    res = {}

    def cb(err, msg):
        res[msg.value()] = (err, msg.offset())

    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=cb)
    p.flush(timeout)
    return res


def acked(res):
    return {v: off for v, (err, off) in res.items() if err is None}


def send_until_acked(p, topic, prefix, n, deadline_s):
    """Produce n values, resending the failed ones until all are acked or the deadline."""
    want = [b"%s-%d" % (prefix, i) for i in range(n)]
    got, errs = {}, []
    deadline = time.monotonic() + deadline_s
    while len(got) < n and time.monotonic() < deadline:
        res = send(p, topic, [v for v in want if v not in got], timeout=5)
        got.update(acked(res))
        errs += [str(e) for (e, _) in res.values() if e is not None]
    assert len(got) == n, f"only {len(got)}/{n} acked within {deadline_s}s; errors: {errs[-3:]}"
    return got


def check_log(bootstrap, topic, acked_offsets):
    """Every acknowledged value is at its acknowledged offset of partition 0."""
    low, high = watermarks(bootstrap, topic, 0)
    assert low == 0
    got, errors = consume_partitions(bootstrap, topic, {0: high}, timeout=15)
    log = [m.value() for m in got[0]]
    assert [m.offset() for m in got[0]] == list(range(high))
    lost = [(v, off) for v, off in acked_offsets.items() if off >= high or log[off] != v]
    assert not lost, f"{len(lost)} acknowledged records lost: {lost[:5]}"
    return log


@pytest.fixture
def shoal_n1(netns_cluster, tmp_path):
    """A 2-node cluster with shoal running in namespace 1; yields (cluster, shoal process)."""
    _require_binary()
    c = netns_cluster(2)
    data = str(tmp_path / "data-n1")
    p = netns.start_shoal(c, 1, SHOAL_BIN, data)
    try:
        yield c, p
    finally:
        p.kill()
        if os.environ.get("SHOAL_KEEP_DATA") != "1":
            shutil.rmtree(data, ignore_errors=True)  # segments are preallocated: large


# ---------------------------------------------------------------------- harness only
def test_fault_rules_drop_packets(netns_cluster):
    c = netns_cluster(3)
    H = netns.HOST
    assert not_blocked(c.reach_matrix()), "a fresh cluster must be fully connected"

    c.isolate(2)
    assert blocked(c.reach_matrix()) == sorted(
        [(H, 2), (2, H), (1, 2), (2, 1), (3, 2), (2, 3)], key=str)
    c.heal()
    assert not_blocked(c.reach_matrix())

    c.partition([[1], [2, 3]])
    assert blocked(c.reach_matrix()) == sorted([(1, 2), (2, 1), (1, 3), (3, 1)], key=str)
    c.heal()

    c.partition([[1, H], [2]])  # node 3 is in no group: a group of its own
    assert blocked(c.reach_matrix()) == sorted(
        [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2), (H, 2), (2, H), (H, 3), (3, H)], key=str)
    c.heal()

    c.cut(1, 3)
    assert blocked(c.reach_matrix()) == sorted([(1, 3), (3, 1)], key=str)
    c.cut(H, 2)  # faults accumulate until heal()
    assert blocked(c.reach_matrix()) == sorted([(1, 3), (3, 1), (H, 2), (2, H)], key=str)
    c.heal()
    assert not_blocked(c.reach_matrix())

    # One way 1->2: TCP breaks both ways (a handshake needs both), UDP shows the direction.
    recv = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
            "s.bind((sys.argv[1],7777)); s.settimeout(1.5)\n"
            "try: print(s.recv(100).decode())\n"
            "except OSError: print('nothing')")
    # A drop on the sender's own output hook makes sendto fail with EPERM: ignored.
    send_ = ("import socket,sys,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "for _ in range(10):\n"
             "    try: s.sendto(b'hello', (sys.argv[1],7777))\n"
             "    except PermissionError: pass\n"
             "    time.sleep(0.05)")

    def udp(src, dst):
        r = c.start(dst, [sys.executable, "-c", recv, c.addr(dst)],
                    log_path=os.path.join(c.workdir, f"udp-{src}-{dst}.log"))
        time.sleep(0.3)
        out = c.run(src, [sys.executable, "-c", send_, c.addr(dst)], timeout=10)
        assert out.returncode == 0, out.stderr
        r.proc.wait(timeout=10)
        return r.log_text().splitlines()[-1]

    assert udp(1, 2) == "hello" and udp(2, 1) == "hello"
    c.cut(1, 2, one_way=True)
    assert udp(1, 2) == "nothing"
    assert udp(2, 1) == "hello"
    assert "drop" in c.ruleset(1) and "drop" in c.ruleset(2)
    c.heal()
    assert udp(1, 2) == "hello"


def test_process_handle_pause_kill_restart(netns_cluster):
    c = netns_cluster(1)
    p = c.start(1, [sys.executable, "-c", "import time\nwhile True: print('tick', flush=True); time.sleep(0.05)"])
    time.sleep(0.3)

    def state():
        with open(f"/proc/{p.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def ns_of(pid):
        return os.readlink(f"/proc/{pid}/ns/net")

    assert ns_of(p.pid) != ns_of(os.getpid()), "the process is not in its own namespace"
    assert "tick" in p.log_text()
    p.pause()
    time.sleep(0.1)
    assert state() == "T"
    n = p.log_text().count("tick")
    time.sleep(0.3)
    assert p.log_text().count("tick") == n, "a stopped process kept writing"
    p.resume()
    time.sleep(0.3)
    assert p.log_text().count("tick") > n
    old = p.pid
    assert p.kill() == -9
    p.restart()
    assert p.running() and p.pid != old and p.generation == 2
    assert "===== generation 2" in p.log_text()


# ---------------------------------------------------------------------- with shoal
def test_produce_consume_from_host_isolate_and_heal(shoal_n1):
    c, b = shoal_n1
    assert b.bootstrap.startswith(c.addr(1) + ":")
    topic = unique_topic("netns-iso")
    create_topic(b.bootstrap, topic, 1)
    p = producer(b.bootstrap, **SHORT)
    before = send_until_acked(p, topic, b"before", 20, 10)

    c.isolate(1)
    with pytest.raises(OSError):  # the host cannot even connect
        socket.create_connection((c.addr(1), b.port), timeout=1).close()
    t = time.monotonic()
    res = send(p, topic, [b"isolated-0"], timeout=6)
    assert res and res[b"isolated-0"][0] is not None, f"produce to an isolated broker succeeded: {res}"
    assert time.monotonic() - t < 6
    print(f"produce while isolated failed after {time.monotonic() - t:.1f}s: {res[b'isolated-0'][0]}")

    c.heal()
    after = send_until_acked(p, topic, b"after", 20, 15)
    log = check_log(b.bootstrap, topic, {**before, **after})
    print(f"log of {len(log)} records holds all {len(before) + len(after)} acknowledged")


def test_sigstop_times_out_sigcont_completes(shoal_n1):
    c, b = shoal_n1
    topic = unique_topic("netns-stop")
    create_topic(b.bootstrap, topic, 1)
    short = producer(b.bootstrap, **SHORT)
    patient = producer(b.bootstrap, **{**SHORT, "message.timeout.ms": 20000,
                                       "request.timeout.ms": 20000, "socket.timeout.ms": 20000})
    first = {**send_until_acked(short, topic, b"a", 5, 10), **send_until_acked(patient, topic, b"b", 5, 10)}

    b.pause()
    try:
        res = send(short, topic, [b"stopped-short"], timeout=6)
        assert res[b"stopped-short"][0] is not None, f"a stopped broker acknowledged: {res}"
        pending = {}
        patient.produce(topic, value=b"stopped-patient", partition=0,
                        on_delivery=lambda err, msg: pending.update(r=(err, msg.offset())))
        patient.flush(2)
        assert not pending, f"delivery report while the broker is stopped: {pending}"
    finally:
        b.resume()
    assert patient.flush(15) == 0
    err, off = pending["r"]
    assert err is None, f"pending produce failed after SIGCONT: {err}"
    assert b.running()
    check_log(b.bootstrap, topic, {**first, b"stopped-patient": off})


def test_kill9_restart_keeps_acknowledged(shoal_n1):
    c, b = shoal_n1
    topic = unique_topic("netns-kill9")
    create_topic(b.bootstrap, topic, 1)
    p = producer(b.bootstrap, **SHORT)
    acks = send_until_acked(p, topic, b"k", 200, 10)
    assert b.kill() == -9
    res = send(p, topic, [b"dead"], timeout=6)
    assert res[b"dead"][0] is not None, "a killed broker acknowledged"
    b.restart()
    b.wait_ready()
    assert b.generation == 2
    check_log(b.bootstrap, topic, acks)
    more = send_until_acked(p, topic, b"k2", 20, 15)  # same producer, reconnected
    check_log(b.bootstrap, topic, {**acks, **more})


NS_CLIENT = r"""
import json, sys
from confluent_kafka import Producer
bootstrap, topic, value = sys.argv[1:4]
conf = json.loads(sys.argv[4])
conf["bootstrap.servers"] = bootstrap
out = {}
def cb(err, msg):
    out["err"] = None if err is None else str(err)
    out["offset"] = msg.offset()
p = Producer(conf)
p.produce(topic, value=value.encode(), partition=0, on_delivery=cb)
p.flush(8)
print(json.dumps(out))
"""


def test_cut_blocks_namespace_client_host_still_reaches(shoal_n1):
    c, b = shoal_n1
    topic = unique_topic("netns-cut")
    create_topic(b.bootstrap, topic, 1)
    host_p = producer(b.bootstrap, **SHORT)
    conf = json.dumps({k: v for k, v in SHORT.items()})

    def from_n2(value):
        r = c.run(2, [sys.executable, "-c", NS_CLIENT, b.bootstrap, topic, value, conf], timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1] or "{}")

    acks = {}
    r = from_n2("n2-before")
    assert r.get("err") is None and "offset" in r, f"client in n2 could not produce: {r}"
    acks[b"n2-before"] = r["offset"]

    c.cut(1, 2)
    r = from_n2("n2-cut")
    assert r.get("err") is not None or "offset" not in r, f"client in n2 produced through the cut: {r}"
    print(f"client in n2 during the cut: {r}")
    acks.update(send_until_acked(host_p, topic, b"host-during-cut", 5, 10))

    c.heal()
    r = from_n2("n2-after")
    assert r.get("err") is None and "offset" in r, f"client in n2 failed after heal: {r}"
    acks[b"n2-after"] = r["offset"]
    check_log(b.bootstrap, topic, acks)
