"""Tests of the fault suite's history checker (checker.py) and history format (history.py).

Each anomaly kind has a hand-made history showing it (asserting exactly that kind, with the
op indexes) and a near miss that must not show it. Histories are built with `H` below.
"""

import json
import os
import random
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import checker  # noqa: E402
from history import HistoryReader, HistoryWriter, read_history, validate_event  # noqa: E402


class H:
    """A history builder. Each op method appends an invocation and its completion and returns
    the completion's index (the index the checker reports)."""

    def __init__(self):
        self.events = []

    def event(self, process, type, f, value, **extra):
        i = len(self.events)
        self.events.append(dict(index=i, time_ns=i * 1000, process=process, type=type, f=f,
                                value=value, **extra))
        return i

    def invoke(self, p, f, value, **extra):
        return self.event(p, "invoke", f, value, **extra)

    def complete(self, p, type, f, value, **extra):
        return self.event(p, type, f, value, **extra)

    def send(self, p, *sends, type="ok"):
        """sends: (key, value, offset) triples; offsets are reported only on ok."""
        self.invoke(p, "send", [["send", k, v] for k, v, _ in sends])
        if type == "ok":
            value = [["send", k, [o, v]] for k, v, o in sends]
        else:
            value = [["send", k, v] for k, v, _ in sends]
        return self.complete(p, type, "send", value)

    def poll(self, p, reads, type="ok"):
        """reads: {key: [(offset, value), ...]}."""
        self.invoke(p, "poll", [["poll"]])
        if type == "ok":
            value = [["poll", {k: [list(pr) for pr in prs] for k, prs in reads.items()}]]
        else:
            value = [["poll"]]
        return self.complete(p, type, "poll", value)

    def assign(self, p, keys, type="ok"):
        self.invoke(p, "assign", keys)
        return self.complete(p, type, "assign", keys)

    def subscribe(self, p, keys, type="ok"):
        self.invoke(p, "subscribe", keys)
        return self.complete(p, type, "subscribe", keys)

    def commit(self, p, offsets, group="g", type="ok"):
        self.invoke(p, "commit", {})
        return self.complete(p, type, "commit", offsets if type == "ok" else {}, group=group)

    def txn(self, p, invoke_mops, ok_mops, type="ok"):
        self.invoke(p, "txn", invoke_mops)
        return self.complete(p, type, "txn", ok_mops if type == "ok" else invoke_mops)

    def nemesis(self, f, **value):
        return self.event("nemesis", "info", f, value)

    def check(self, **kw):
        return checker.check(self.events, **kw)


def kinds(result):
    return result.kinds()


def only(result, kind):
    """Asserts that `kind` is the only kind found, and returns its records."""
    assert kinds(result) == {kind}, result.summary()
    return result.anomalies[kind]


def clean(result):
    assert kinds(result) == set(), result.summary()
    assert result.valid


# ------------------------------------------------------------------------- valid histories

def test_empty_history_is_valid():
    r = checker.check([])
    clean(r)
    assert "cycles" in r.not_checked


def test_legitimate_history_is_valid():
    h = H()
    h.nemesis("kill", pid=1)
    h.send(0, ("k1", 0, 0), ("k1", 1, 1))
    h.send(1, ("k2", 0, 0))
    h.send(1, ("k1", 2, 2))
    h.poll(2, {"k1": [(0, 0), (1, 1)]})
    h.poll(2, {"k1": [(2, 2)], "k2": [(0, 0)]})
    h.commit(2, {"k1": 3, "k2": 1})
    h.nemesis("start", pid=2)
    # An info send (process 1 retires; process 3 takes over) whose value shows up later.
    h.send(1, ("k1", 3, None), type="info")
    h.send(3, ("k1", 4, 4))
    # A fail send that is never read.
    h.send(3, ("k2", 1, None), type="fail")
    # The consumer moves back after an assign (to its committed offset and earlier).
    h.assign(2, ["k1"])
    h.poll(2, {"k1": [(1, 1), (2, 2), (3, 3), (4, 4)]})
    h.commit(2, {"k1": 5})
    # Commits of another group are independent.
    h.commit(4, {"k1": 1}, group="other")
    # Offset gaps (transaction markers) are not skips.
    h.send(3, ("k2", 2, 5))
    h.poll(2, {"k2": [(0, 0), (5, 2)]})
    r = h.check()
    clean(r)
    assert r.stats["acknowledged_sends"] == 6
    assert r.stats["unknown_sends"] == 1 and r.stats["failed_sends"] == 1
    assert r.stats["nemesis"] == {"kill": 1, "start": 1}
    assert r.stats["ops_by_f"]["send"] == {"ok": 5, "info": 1, "fail": 1}


def test_info_send_that_later_appears_is_valid():
    h = H()
    h.send(0, ("k", 0, None), type="info")
    h.send(1, ("k", 1, 1))
    h.poll(2, {"k": [(0, 0), (1, 1)]})
    clean(h.check())


def test_int_send_skip_is_reported_but_allowed():
    h = H()
    h.invoke(0, "send", [["send", "k", 0], ["send", "k", 2]])
    h.send(1, ("k", 1, 1))
    c = h.complete(0, "ok", "send", [["send", "k", [0, 0]], ["send", "k", [2, 2]]])
    h.poll(2, {"k": [(0, 0), (1, 1), (2, 2)]})
    r = h.check()
    recs = only(r, "int-send-skip")
    assert recs[0]["ops"] == [c] and recs[0]["skipped"] == [1]
    assert r.valid and r.bad_kinds() == []
    assert "int-send-skip" in r.allowed_kinds()


def test_int_send_skip_near_miss_adjacent_sends():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    h.poll(1, {"k": [(0, 0), (1, 1)]})
    clean(h.check())


# ------------------------------------------------------------------------- log shape

def test_inconsistent_offsets():
    h = H()
    a = h.send(0, ("k", 10, 0))
    b = h.poll(1, {"k": [(0, 11)]})
    h.send(2, ("k", 11, None), type="info")
    c = h.poll(3, {"k": [(0, 10)]})  # both values read: neither is lost, only the clash
    recs = only(h.check(), "inconsistent-offsets")
    assert len(recs) == 1
    assert recs[0]["key"] == "k" and recs[0]["offset"] == 0
    assert recs[0]["values"] == [10, 11] and recs[0]["ops"] == [a, b, c]


def test_inconsistent_offsets_near_miss_send_and_poll_agree():
    h = H()
    h.send(0, ("k", 10, 0))
    h.poll(1, {"k": [(0, 10)]})
    h.poll(2, {"k": [(0, 10)]})
    clean(h.check())


def test_duplicate():
    h = H()
    h.send(0, ("k", 0, 0))
    h.send(0, ("k", 1, 1))
    p = h.poll(1, {"k": [(0, 0), (1, 1), (2, 0)]})
    recs = only(h.check(), "duplicate")
    assert recs == [{"key": "k", "value": 0, "offsets": [0, 2], "count": 2, "ops": [1, p]}]


def test_duplicate_near_miss_same_value_other_key():
    h = H()
    h.send(0, ("k", 0, 0), ("j", 0, 0))
    h.poll(1, {"k": [(0, 0)], "j": [(0, 0)]})
    clean(h.check())


# ------------------------------------------------------------------------- lost writes

def test_lost_write_of_an_acknowledged_send():
    h = H()
    h.send(0, ("k", 0, 0))
    w = h.send(0, ("k", 1, 1))
    h.send(0, ("k", 2, 2))
    h.poll(1, {"k": [(0, 0)]})
    reader = h.poll(2, {"k": [(2, 2)]})  # process 2 read past offset 1
    r = h.check()
    # An acknowledged lost write is also unseen (as in Jepsen).
    assert kinds(r) == {"lost-write", "unseen"}
    (rec,) = r.anomalies["lost-write"]
    assert rec["value"] == 1 and rec["offset"] == 1 and rec["ops"] == [w, reader]
    assert rec["max_read_offset"] == 2
    (u,) = r.anomalies["unseen"]
    assert u["values"] == [1] and u["also_lost_write"] == 1


def test_lost_write_of_an_info_send_proven_by_its_other_value():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    # Unknown outcome, but its value for j was read, so the op happened: its k value is owed.
    w = h.send(1, ("k", 5, None), ("j", 0, None), type="info")
    h.poll(2, {"j": [(0, 0)]})
    h.send(3, ("k", 6, 3))
    # Only an info poll saw 5 (at offset 2); an info poll's records place values in the log
    # but are not reads that count.
    h.invoke(4, "poll", [["poll"]])
    h.complete(4, "info", "poll", [["poll", {"k": [[2, 5]]}]])
    h.poll(5, {"k": [(0, 0), (1, 1)]})
    reader = h.poll(6, {"k": [(3, 6)]})  # read past offset 2
    r = h.check()
    recs = only(r, "lost-write")  # the info send is not "acknowledged": not unseen
    assert [(x["value"], x["offset"]) for x in recs] == [(5, 2)]
    assert recs[0]["ops"] == [w, reader]


def test_lost_write_near_miss_only_an_info_poll_read_past_it():
    h = H()
    h.send(0, ("k", 0, 0))
    h.send(0, ("k", 1, 1))
    h.poll(1, {"k": [(0, 0)]})
    h.invoke(2, "poll", [["poll"]])
    h.complete(2, "info", "poll", [["poll", {"k": [[1, 1]]}]])
    r = h.check()
    assert "lost-write" not in kinds(r)
    assert kinds(r) == {"unseen"}  # acknowledged, never read by an ok op


def test_lost_write_near_miss_nothing_read_past_it():
    h = H()
    h.send(0, ("k", 0, 0))
    h.send(0, ("k", 1, 1))
    h.poll(1, {"k": [(0, 0)]})
    assert kinds(h.check()) == {"unseen"}


def test_lost_write_near_miss_value_also_appears_later():
    # Value 1 sits at offset 1 (its send) and again at offset 3, above the furthest read:
    # Jepsen's rule owes only values whose *last* position is at or below that point.
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1), ("k", 2, 2))
    h.invoke(1, "poll", [["poll"]])
    h.complete(1, "info", "poll", [["poll", {"k": [[3, 1]]}]])
    h.poll(2, {"k": [(0, 0)]})
    h.poll(3, {"k": [(2, 2)]})
    r = h.check()
    assert "lost-write" not in kinds(r)
    assert kinds(r) == {"duplicate", "unseen"}


def test_lost_write_near_miss_uncertain_info_send():
    h = H()
    h.send(0, ("k", 0, 0))
    # Info, none of its values read by an ok op: maybe it never happened, so it is owed to
    # nobody, even though an info poll placed it at offset 1, below an ok read.
    h.send(1, ("k", 1, None), type="info")
    h.invoke(2, "poll", [["poll"]])
    h.complete(2, "info", "poll", [["poll", {"k": [[1, 1]]}]])
    h.send(3, ("k", 2, 2))
    h.poll(4, {"k": [(0, 0)]})
    h.poll(5, {"k": [(2, 2)]})
    clean(h.check())


# ------------------------------------------------------------------------- unseen

def test_unseen():
    h = H()
    h.send(0, ("k", 0, 0))
    w = h.send(0, ("k", 1, 1))
    h.poll(1, {"k": [(0, 0)]})
    (rec,) = only(h.check(), "unseen")
    assert rec == {"key": "k", "count": 1, "values": [1], "also_lost_write": 0, "ops": [w]}
    assert h.check().anomaly_counts()["unseen"] == 1


def test_unseen_is_allowed_when_asked():
    h = H()
    h.send(0, ("k", 0, 0))
    r = h.check(allowed=checker.DEFAULT_ALLOWED | {"unseen"})
    assert kinds(r) == {"unseen"} and r.valid


def test_unseen_near_miss_info_send_never_read():
    h = H()
    h.send(0, ("k", 0, None), type="info")
    h.send(1, ("k", 1, None), type="fail")
    clean(h.check())


# ------------------------------------------------------------------------- G1a

def test_g1a_read_of_a_failed_send():
    h = H()
    w = h.send(0, ("k", 0, None), type="fail")
    reader = h.poll(1, {"k": [(0, 0)]})
    (rec,) = only(h.check(), "G1a")
    assert rec["value"] == 0 and rec["ops"] == [w, reader]


def test_g1a_near_miss_read_of_an_info_send():
    h = H()
    h.send(0, ("k", 0, None), type="info")
    h.poll(1, {"k": [(0, 0)]})
    clean(h.check())


# ------------------------------------------------------------------------- precommitted read

def test_precommitted_read_txn_sees_its_own_write():
    h = H()
    t = h.txn(0, [["send", "k", 0], ["poll"]],
              [["send", "k", [0, 0]], ["poll", {"k": [[0, 0]]}]])
    r = h.check()
    (rec,) = only(r, "precommitted-read")
    assert rec == {"key": "k", "values": [0], "ops": [t]}
    assert "1 txn operation" in r.not_checked["cycles"]


def test_precommitted_read_near_miss_read_of_another_txns_write():
    # The reader completes before the writer txn is acknowledged: legal, the commit point lies
    # between the writer's invocation and completion.
    h = H()
    h.invoke(0, "txn", [["send", "k", 0]])
    h.txn(1, [["poll"]], [["poll", {"k": [[0, 0]]}]])
    h.complete(0, "ok", "txn", [["send", "k", [0, 0]]])
    clean(h.check())


# ------------------------------------------------------------------------- polls in order

def test_poll_skip():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1), ("k", 2, 2))
    a = h.poll(1, {"k": [(0, 0)]})
    b = h.poll(1, {"k": [(2, 2)]})
    h.poll(2, {"k": [(1, 1)]})
    (rec,) = only(h.check(), "poll-skip")
    assert rec["ops"] == [a, b] and rec["skipped"] == [1] and rec["delta"] == 2
    assert rec["process"] == 1


def test_poll_skip_near_miss_assign_between():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1), ("k", 2, 2))
    h.poll(1, {"k": [(0, 0)]})
    h.assign(1, ["k"])
    h.poll(1, {"k": [(2, 2)]})
    h.poll(2, {"k": [(1, 1)]})
    clean(h.check())


def test_poll_skip_near_miss_offset_gap_with_nothing_known_in_it():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 7))
    h.poll(1, {"k": [(0, 0)]})
    h.poll(1, {"k": [(7, 1)]})
    clean(h.check())


def test_nonmonotonic_poll():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    a = h.poll(1, {"k": [(0, 0), (1, 1)]})
    b = h.poll(1, {"k": [(1, 1)]})
    (rec,) = only(h.check(), "nonmonotonic-poll")
    assert rec["ops"] == [a, b] and rec["delta"] == 0


def test_nonmonotonic_poll_failed_assign_does_not_reset():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    a = h.poll(1, {"k": [(0, 0), (1, 1)]})
    h.assign(1, ["k"], type="fail")
    b = h.poll(1, {"k": [(0, 0)]})
    (rec,) = only(h.check(), "nonmonotonic-poll")
    assert rec["ops"] == [a, b] and rec["delta"] == -1


def test_nonmonotonic_poll_near_miss_subscribe_between_and_other_process():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    h.poll(1, {"k": [(0, 0), (1, 1)]})
    h.subscribe(1, ["k"])
    h.poll(1, {"k": [(0, 0)]})
    h.poll(2, {"k": [(0, 0), (1, 1)]})  # another process starting over is fine
    clean(h.check())


def test_int_poll_skip():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1), ("k", 2, 2))
    p = h.poll(1, {"k": [(0, 0), (2, 2)]})
    h.poll(2, {"k": [(1, 1)]})
    (rec,) = only(h.check(), "int-poll-skip")
    assert rec["ops"] == [p] and rec["skipped"] == [1]


def test_int_poll_skip_near_miss_offset_gap():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 2))
    h.poll(1, {"k": [(0, 0), (2, 1)]})
    clean(h.check())


def test_int_nonmonotonic_poll():
    h = H()
    h.send(0, ("k", 0, 0), ("k", 1, 1))
    p = h.poll(1, {"k": [(1, 1), (0, 0)]})
    (rec,) = only(h.check(), "int-nonmonotonic-poll")
    assert rec["ops"] == [p] and rec["values"] == [1, 0] and rec["delta"] == -1


def test_int_nonmonotonic_poll_near_miss_two_keys():
    h = H()
    h.send(0, ("k", 0, 0), ("j", 1, 1), ("j", 2, 2), ("k", 3, 1))
    h.poll(1, {"j": [(1, 1), (2, 2)], "k": [(0, 0), (1, 3)]})
    clean(h.check())


# ------------------------------------------------------------------------- sends in order

def test_nonmonotonic_send():
    h = H()
    a = h.send(0, ("k", 0, 5))
    b = h.send(0, ("k", 1, 3))
    h.poll(1, {"k": [(3, 1), (5, 0)]})
    (rec,) = only(h.check(), "nonmonotonic-send")
    assert rec["ops"] == [a, b] and rec["offsets"] == [5, 3] and rec["delta"] == -1


def test_nonmonotonic_send_near_miss_other_process():
    h = H()
    h.send(0, ("k", 0, 5))
    h.send(1, ("k", 1, 3))
    h.send(0, ("j", 2, 0))
    h.poll(2, {"k": [(3, 1), (5, 0)], "j": [(0, 2)]})
    clean(h.check())


def test_int_nonmonotonic_send():
    h = H()
    s = h.send(0, ("k", 0, 1), ("k", 1, 0))
    h.poll(1, {"k": [(0, 1), (1, 0)]})
    (rec,) = only(h.check(), "int-nonmonotonic-send")
    assert rec["ops"] == [s] and rec["offsets"] == [1, 0]


def test_int_nonmonotonic_send_near_miss_other_key():
    h = H()
    h.send(0, ("k", 0, 1), ("j", 1, 0))
    h.send(1, ("k", 2, 0))
    h.poll(2, {"k": [(0, 2), (1, 0)], "j": [(0, 1)]})
    clean(h.check())


# ------------------------------------------------------------------------- commits

def test_committed_offset_regression():
    h = H()
    a = h.commit(0, {"k": 5})
    b = h.commit(1, {"k": 3})
    (rec,) = only(h.check(), "committed-offset-regression")
    assert rec == {"group": "g", "key": "k", "offsets": [5, 3], "ops": [a, b]}


def test_committed_offset_regression_near_miss_concurrent_commits():
    h = H()
    h.invoke(1, "commit", {})
    h.commit(0, {"k": 5})
    h.complete(1, "ok", "commit", {"k": 3}, group="g")  # invoked before 5 was acknowledged
    clean(h.check())


def test_committed_offset_regression_near_miss_other_group_and_forward():
    h = H()
    h.commit(0, {"k": 5})
    h.commit(1, {"k": 3}, group="h")
    h.commit(0, {"k": 5, "j": 1})
    h.commit(0, {"k": 6})
    clean(h.check())


def test_committed_offset_regression_after_an_unknown_commit_is_allowed():
    h = H()
    a = h.commit(0, {"k": 5})
    u = h.commit(1, {}, type="info")  # timed out: may land any time later
    b = h.commit(2, {"k": 3})
    r = h.check()
    (rec,) = only(r, "committed-offset-regression-info")
    assert rec["ops"] == [a, b] and rec["unknown_commits"] == [u - 1]
    assert r.valid


def test_committed_offset_regression_group_of_an_unlabelled_info_commit():
    h = H()
    h.commit(3, {"k": 9}, group="w3")
    h.invoke(3, "commit", {})
    h.complete(3, "ok", "commit", {"k": 7})  # no group field: process 3's group, w3
    h.commit(0, {"k": 5}, group="w0")
    h.invoke(1, "commit", {})
    # No group field and no other commit of process 1: it may have landed in any group, so
    # it excuses every later regression.
    u = h.complete(1, "info", "commit", {})
    h.commit(2, {"k": 3}, group="w0")
    r = h.check()
    assert kinds(r) == {"committed-offset-regression-info", "committed-offset-regression"}
    (excused,) = r.anomalies["committed-offset-regression-info"]
    assert excused["group"] == "w0" and excused["unknown_commits"] == [u - 1]
    (bad,) = r.anomalies["committed-offset-regression"]
    assert bad["group"] == "w3" and bad["offsets"] == [9, 7]


# ------------------------------------------------------------------------- odd histories

def test_unknown_value():
    h = H()
    h.send(0, ("k", 0, 0))
    p = h.poll(1, {"k": [(0, 0), (1, 99)]})
    (rec,) = only(h.check(), "unknown-value")
    assert rec == {"key": "k", "value": 99, "offsets": [1], "ops": [p]}


def test_unknown_value_near_miss_value_of_an_info_send():
    h = H()
    h.send(0, ("k", 0, 0))
    h.send(1, ("k", 99, None), type="info")
    h.poll(2, {"k": [(0, 0), (1, 99)]})
    clean(h.check())


def test_malformed_history():
    h = H()
    h.complete(0, "ok", "send", [["send", "k", [0, 0]]])  # no invocation
    h.invoke(1, "poll", [["poll"]])
    h.invoke(1, "poll", [["poll"]])  # a second invocation while one is pending
    r = h.check()
    recs = only(r, "malformed-history")
    assert [x["index"] for x in recs] == [0, 2]
    assert not r.valid


def test_incomplete_ops_are_info_and_reuse_is_warned():
    h = H()
    h.send(0, ("k", 0, None), type="info")
    h.send(0, ("k", 1, 1))  # the retired process used again
    h.invoke(1, "send", [["send", "k", 2]])  # never completed
    h.poll(2, {"k": [(1, 1), (2, 2)]})
    r = h.check()
    clean(r)
    assert any("used again" in w for w in r.warnings)
    assert any("never completed" in w for w in r.warnings)
    assert r.stats["ops_by_f"]["send"]["incomplete"] == 1


def test_negative_offsets_are_unknown():
    h = H()
    h.send(0, ("k", 0, -1001))
    h.poll(1, {"k": [(0, 0)]})
    clean(h.check())


def test_unknown_allowed_kind_is_rejected():
    with pytest.raises(ValueError):
        checker.check([], allowed={"no-such-kind"})


# ------------------------------------------------------------------------- simulated runs

def simulate(seed, steps=300, drop=None):
    """A history of a correct Kafka-like log: sends (ok, fail, info that did or did not land),
    polls from each process's position, commits, assigns that move a consumer back to its
    group's committed offset, retired processes, offset gaps, then a final read of every key.
    `drop` = (key, value): that record vanishes from every poll (a lost write)."""
    rng = random.Random(seed)
    keys = ["k0", "k1", "k2"]
    log = {k: [] for k in keys}  # [(offset, value)]
    acked = set()  # (key, value) of ok sends
    next_value = {k: 0 for k in keys}
    next_offset = {k: 0 for k in keys}
    committed = {}  # worker -> key -> index into log[k]
    h = H()
    procs = {}  # worker -> [process, assigned keys, key -> index into log[k]]
    counter = iter(range(10 ** 6))

    def new_process(w):
        p = next(counter)
        assigned = sorted(rng.sample(keys, rng.randint(1, 3)))
        h.assign(p, assigned)
        procs[w] = [p, assigned, {k: committed.get(w, {}).get(k, 0) for k in assigned}]

    def reads(k, start, n):
        return [r for r in log[k][start:start + n] if (k, r[1]) != drop]

    for w in range(3):
        new_process(w)
    for _ in range(steps):
        w = rng.randrange(3)
        p, assigned, pos = procs[w]
        r = rng.random()
        if r < 0.45:
            sends = []
            for _ in range(rng.randint(1, 2)):
                k = rng.choice(keys)
                sends.append((k, next_value[k]))
                next_value[k] += 1
            outcome = rng.choice(["ok"] * 6 + ["fail", "info-landed", "info-lost"])
            done = []
            if outcome in ("ok", "info-landed"):
                for k, v in sends:
                    next_offset[k] += rng.choice([1, 1, 1, 2])  # 2: a marker's gap
                    log[k].append((next_offset[k], v))
                    done.append((k, v, next_offset[k]))
            if outcome == "ok":
                h.send(p, *done)
                acked.update(sends)
            else:
                h.send(p, *[(k, v, None) for k, v in sends],
                       type="fail" if outcome == "fail" else "info")
                if outcome != "fail":
                    new_process(w)
        elif r < 0.85:
            got = {}
            for k in assigned:
                n = rng.randint(0, 4)
                got[k] = reads(k, pos[k], n)
                pos[k] = min(len(log[k]), pos[k] + n)
            h.poll(p, {k: v for k, v in got.items() if v})
        elif r < 0.95:
            committed.setdefault(w, {}).update(pos)
            h.commit(p, {k: log[k][i][0] if i < len(log[k]) else next_offset[k] + 1
                         for k, i in pos.items()}, group=f"w{w}")
        else:
            assigned = sorted(rng.sample(keys, rng.randint(1, 3)))
            h.assign(p, assigned)
            pos = {k: committed.get(w, {}).get(k, 0) for k in assigned}
            procs[w] = [p, assigned, pos]
    final = next(counter)
    h.assign(final, keys)
    h.poll(final, {k: reads(k, 0, len(log[k])) for k in keys if log[k]})
    return h, log, acked


@pytest.mark.parametrize("seed", range(20))
def test_simulated_correct_history_is_valid(seed):
    h, _, _ = simulate(seed)
    r = h.check()
    assert kinds(r) <= {"int-send-skip"}, r.summary()
    assert r.stats["acknowledged_sends"] > 50


@pytest.mark.parametrize("seed", range(5))
def test_simulated_lost_record_is_found(seed):
    _, log, acked = simulate(seed)
    k = max(log, key=lambda k: len(log[k]))
    # An acknowledged record in the middle: later ones were read.
    offset, v = next(r for r in log[k][len(log[k]) // 2:] if (k, r[1]) in acked)
    h, _, _ = simulate(seed, drop=(k, v))
    r = h.check()
    lost = [x for x in r.anomalies["lost-write"] if x["key"] == k]
    assert [(x["value"], x["offset"]) for x in lost] == [(v, offset)], r.summary()
    assert not r.valid


# ------------------------------------------------------------------------- results and CLI

def test_to_json_and_summary():
    h = H()
    h.nemesis("stop")
    h.nemesis("cont")
    h.send(0, ("k", 0, 0))
    r = h.check()
    j = json.loads(json.dumps(r.to_json()))
    assert j["valid"] is False and j["bad_kinds"] == ["unseen"]
    assert j["anomaly_counts"]["unseen"] == 1 and j["anomaly_counts"]["lost-write"] == 0
    assert j["summary"]["nemesis"] == {"stop": 1, "cont": 1}
    assert j["summary"]["acknowledged_sends"] == 1
    assert "cycles" in j["not_checked"]
    s = r.summary()
    assert "NOT CHECKED: cycles" in s and "INVALID: unseen 1" in s and "stop 1" in s


def test_to_json_limits_long_lists():
    h = H()
    h.send(0, *[("k", v, v) for v in range(5)])
    rec = h.check().to_json(list_limit=2)["anomalies"]["unseen"][0]
    assert rec["values"] == [0, 1] and rec["values_total"] == 5


def _run_cli(path, *args):
    return subprocess.run([sys.executable, os.path.join(HERE, "checker.py"), str(path), *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_exit_status_and_json(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    with HistoryWriter(good) as w:
        w.invoke(0, "send", [["send", "k", 0]])
        w.complete(0, "ok", "send", [["send", "k", [0, 0]]])
        w.invoke(1, "poll", [["poll"]])
        w.complete(1, "ok", "poll", [["poll", {"k": [[0, 0]]}]])
    with HistoryWriter(bad) as w:
        w.invoke(0, "send", [["send", "k", 0]])
        w.complete(0, "ok", "send", [["send", "k", [0, 0]]])
    out = _run_cli(good)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout
    out = _run_cli(bad, "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["bad_kinds"] == ["unseen"]
    assert _run_cli(bad, "--allow", "unseen").returncode == 0
    assert _run_cli(tmp_path / "missing.jsonl").returncode == 2


# ------------------------------------------------------------------------- history format

def test_writer_reader_round_trip(tmp_path):
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        w.invoke(0, "send", [["send", "k", 1]])
        w.complete(0, "ok", "send", [["send", "k", [0, 1]]])
        w.invoke(1, "commit", {})
        w.complete(1, "info", "commit", {}, error="timed out")
        w.nemesis("kill", {"pid": 42})
    events = read_history(path)
    assert [e["index"] for e in events] == [0, 1, 2, 3, 4]
    assert events[1] == {"index": 1, "time_ns": events[1]["time_ns"], "process": 0,
                         "type": "ok", "f": "send", "value": [["send", "k", [0, 1]]]}
    assert events[3]["error"] == "timed out"
    assert events[4]["process"] == "nemesis" and events[4]["type"] == "info"
    assert events[4]["value"] == {"pid": 42}
    times = [e["time_ns"] for e in events]
    assert times == sorted(times)
    assert all(validate_event(e) == [] for e in events)
    assert checker.check(events).kinds() == {"unseen"}  # the send was never polled


def test_writer_is_thread_safe(tmp_path):
    path = tmp_path / "h.jsonl"
    w = HistoryWriter(path)

    def worker(p):
        for i in range(200):
            w.invoke(p, "poll", [["poll"]])
            w.complete(p, "ok", "poll", [["poll", {}]])

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = read_history(path)
    assert [e["index"] for e in events] == list(range(8 * 200 * 2))
    times = [e["time_ns"] for e in events]
    assert times == sorted(times)
    r = checker.check(events)
    clean(r)
    assert r.stats["ops_by_f"]["poll"] == {"ok": 1600}


def test_writer_rejects_bad_events(tmp_path):
    with HistoryWriter(tmp_path / "h.jsonl") as w:
        with pytest.raises(ValueError):
            w.append(0, "done", "send", [])
        with pytest.raises(ValueError):
            w.complete(0, "invoke", "send", [])
        with pytest.raises(ValueError):
            w.invoke(0, "send", [], index=3)
    with pytest.raises(ValueError):
        w.invoke(0, "send", [])  # closed


def test_reader_tolerates_a_cut_last_line_only(tmp_path):
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        w.invoke(0, "poll", [["poll"]])
    with open(path, "a") as f:
        f.write('{"index": 1, "time_ns": 5, "proc')
    reader = HistoryReader(path)
    assert len(list(reader)) == 1 and reader.truncated_tail
    with open(path, "a") as f:
        f.write("\n{}\n")
    with pytest.raises(ValueError):
        read_history(path)
