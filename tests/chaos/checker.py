#!/usr/bin/env python3
"""Checks a fault-suite history (history.py's JSON lines) for the anomalies of Jepsen's Kafka
workload (jepsen.tests.kafka), re-implemented here; README.md defines each one.

    python3 tests/chaos/checker.py history.jsonl [--json] [--allow duplicate,unseen]

Exit status: 0 when every anomaly found is of an allowed kind, 1 otherwise, 2 when the history
cannot be read. From Python: `check(events)` returns a `Result`.

How it works, in Jepsen's terms. Each key (a topic-partition) gets a *log*: offset -> the set
of values seen there, from the sends whose effect is certain (ok, or info with some of their
values read by an ok op) and from every poll. Positions in the log are *dense indexes*: the
rank of an offset among the offsets observed for that key, so that gaps (transaction markers,
offsets nobody saw) do not count as skipped records. The per-process checks compare those
positions; lost-write compares values' first and last positions, as Jepsen does.
"""

import argparse
import bisect
import json
import os
import sys
from array import array
from collections import Counter, defaultdict

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from history import NEMESIS, HistoryReader, validate_event  # noqa: E402

KINDS = {
    "inconsistent-offsets": "two different values observed at one offset of a key",
    "duplicate": "one value observed at more than one offset of a key",
    "lost-write": "a certain write below a position some ok poll read, never read by an ok op",
    "unseen": "acknowledged values never read by any ok op (count of values)",
    "G1a": "an ok op read a value whose send definitely failed",
    "precommitted-read": "a txn read a value it wrote itself, before committing",
    "poll-skip": "a process's next poll of a key skipped known records",
    "nonmonotonic-poll": "a process's next poll of a key started at or before its last read",
    "int-poll-skip": "one op's consecutive reads of a key skipped known records",
    "int-nonmonotonic-poll": "one op's consecutive reads of a key went back or repeated",
    "nonmonotonic-send": "a process's next send to a key landed at or before its last send",
    "int-send-skip": "one op's consecutive sends to a key were not adjacent (Kafka allows it)",
    "int-nonmonotonic-send": "one op's consecutive sends to a key went back",
    "committed-offset-regression": "a group's acked commit of a key was below an earlier one",
    "committed-offset-regression-info":
        "a commit regression that an earlier commit of unknown outcome may explain",
    "unknown-value": "a poll read a value that no operation ever sent to that key",
    "malformed-history": "events the checker cannot pair or parse",
}

# Allowed by design: int-send-skip is how Kafka interleaves producers (Jepsen allows it too);
# the -info regression may be a timed-out commit that landed late.
DEFAULT_ALLOWED = frozenset({"int-send-skip", "committed-offset-regression-info"})

# At most this many witnesses (op indexes) are kept per (key, offset, value) of a log.
_WITNESSES = 4
# At most this many skipped values are listed in a skip record.
_SKIPPED = 32


class Op:
    """One completed client operation (its completion event, paired with its invocation)."""

    __slots__ = ("index", "invoke_index", "process", "f", "type", "reads", "writes",
                 "value", "group", "incomplete")

    def __init__(self, index, invoke_index, process, f, type):
        self.index = index  # the completion's event index (the invocation's if incomplete)
        self.invoke_index = invoke_index
        self.process = process
        self.f = f
        self.type = type
        # ((key, packed pairs), ...): each key's (offset or None, value) pairs in op order,
        # packed by _pack; a tuple, not a dict, to keep millions of ops small
        self.reads = None  # poll/txn ops only
        self.writes = None  # send/txn ops only
        self.value = None  # assign/subscribe: keys; commit: {key: offset}
        self.group = None  # commit only: its "group" field, None if it had none
        self.incomplete = False  # no completion in the history: treated as info

    def __repr__(self):
        return f"Op({self.index} p{self.process} {self.type} {self.f})"


# ---------------------------------------------------------------------------------- parsing

def _offset(o):
    """An offset, or None when unknown (null, negative sentinels such as librdkafka's -1001)."""
    if isinstance(o, int) and not isinstance(o, bool) and o >= 0:
        return o
    return None


def _pack(pairs):
    """(offset, value) pairs as one array of int64 (offset, value, offset, value...; -1 for an
    unknown offset): 16 bytes a record instead of ~120 as tuples, as histories hold millions
    of polled records. Pairs with a value that is not an int stay a tuple."""
    a = array("q")
    try:
        for o, v in pairs:
            if v.__class__ is not int:
                return tuple(pairs)
            a.append(-1 if o is None else o)
            a.append(v)
    except (OverflowError, AttributeError):
        return tuple(pairs)
    return a


def _pairs(packed):
    """The (offset or None, value) pairs of a _pack result, as a list."""
    if isinstance(packed, array):
        it = iter(packed)
        return [(None if o < 0 else o, v) for o, v in zip(it, it)]
    return list(packed)


def _value(v):
    if isinstance(v, list):
        return tuple(_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def _mops(value):
    """(reads, writes, problems) of a micro-op list; reads and writes map key -> [(o, v)]."""
    reads, writes, problems = {}, {}, []
    if not isinstance(value, list):
        return reads, writes, problems
    for mop in value:
        if not isinstance(mop, list) or not mop:
            problems.append(f"micro-op {mop!r:.60} is not a list")
            continue
        if mop[0] == "send":
            if len(mop) < 3:
                problems.append(f"send micro-op {mop!r:.60} has no key and value")
                continue
            k, v = sys.intern(str(mop[1])), mop[2]
            if isinstance(v, list) and len(v) == 2:
                pair = (_offset(v[0]), _value(v[1]))
            else:
                pair = (None, _value(v))
            writes.setdefault(k, []).append(pair)
        elif mop[0] == "poll":
            if len(mop) < 2 or mop[1] is None:
                continue  # an invocation's [["poll"]]
            if not isinstance(mop[1], dict):
                problems.append(f"poll micro-op result {mop[1]!r:.60} is not an object")
                continue
            for k, pairs in mop[1].items():
                if not pairs:
                    continue
                k = sys.intern(str(k))
                out = reads.setdefault(k, [])
                for pr in pairs:
                    if isinstance(pr, list) and len(pr) == 2:
                        out.append((_offset(pr[0]), _value(pr[1])))
                    else:
                        problems.append(f"poll of {k!r} returned {pr!r:.60}, not [offset, value]")
                if not out:
                    del reads[k]
        else:
            problems.append(f"unknown micro-op {mop[0]!r:.30}")
    return reads, writes, problems


class _Builder:
    """Pairs invocations with completions, one pass over the events, keeping compact Ops."""

    def __init__(self):
        self.ops = []
        self.malformed = []
        self.warnings = []
        self.open = {}  # process -> its pending invocation event
        self.retired = set()  # processes that got an info
        self.reused = set()
        self.last_index = None
        self.events = 0
        self.by_f = defaultdict(Counter)  # f -> type -> completions
        self.nemesis = Counter()
        self.processes = set()

    def _bad(self, index, problem):
        self.malformed.append({"index": index, "problem": problem,
                               "ops": [] if index is None else [index]})

    def add(self, ev):
        self.events += 1
        problems = validate_event(ev)
        if problems:
            idx = ev.get("index") if isinstance(ev, dict) else None
            self._bad(idx if isinstance(idx, int) else None, "; ".join(problems))
            return
        idx, p, t, f = ev["index"], ev["process"], sys.intern(ev["type"]), ev["f"]
        if isinstance(f, str):
            f = sys.intern(f)
        if self.last_index is not None and idx <= self.last_index:
            self._bad(idx, f"index {idx} does not increase (previous {self.last_index})")
        self.last_index = idx if self.last_index is None else max(idx, self.last_index)
        if p == NEMESIS:
            if t != "invoke":
                self.nemesis[str(f)] += 1
            return
        try:
            hash(p)
        except TypeError:
            self._bad(idx, f"process {p!r:.40} is not a number or string")
            return
        self.processes.add(p)
        if t == "invoke":
            if p in self.open:
                prev = self.open.pop(p)
                self._bad(idx, f"process {p} invoked {f!r} while its {prev['f']!r} "
                               f"(index {prev['index']}) had no completion")
                self._incomplete(prev)
            if p in self.retired and p not in self.reused:
                self.reused.add(p)
                self.warnings.append(f"process {p} was used again after an info completion "
                                     f"(index {idx}); Jepsen retires such processes")
            self.open[p] = ev
            return
        inv = self.open.pop(p, None)
        if inv is None:
            self._bad(idx, f"{t} of {f!r} by process {p} has no invocation")
            return
        if inv["f"] != f:
            self._bad(idx, f"completion f {f!r} differs from its invocation's {inv['f']!r} "
                           f"(index {inv['index']})")
        self.by_f[str(f)][t] += 1
        if t == "info":
            self.retired.add(p)
        self._op(inv, ev, idx, t)

    def _incomplete(self, inv):
        op = self._op(inv, inv, inv["index"], "info")
        op.incomplete = True
        self.by_f[str(inv["f"])]["incomplete"] += 1

    def _op(self, inv, comp, index, type):
        f = comp["f"]
        if isinstance(f, str):
            f = sys.intern(f)
        op = Op(index, inv["index"], comp["process"], f, type)
        if f in ("send", "poll", "txn"):
            reads, writes, problems = _mops(comp.get("value"))
            if f != "poll" and not writes:
                # An info or fail completion need not repeat what was sent.
                _, writes, more = _mops(inv.get("value"))
                problems += more
            for pr in problems:
                self._bad(index, pr)
            if f != "send" and reads:
                op.reads = tuple((k, _pack(prs)) for k, prs in reads.items())
            if f != "poll" and writes:
                op.writes = tuple((k, _pack(prs)) for k, prs in writes.items())
        elif f in ("assign", "subscribe", "commit"):
            v = comp.get("value")
            if v is None or (type != "ok" and not v):
                v = inv.get("value")
            if f == "commit":
                g = comp.get("group", inv.get("group"))
                op.group = None if g is None else str(g)
                if isinstance(v, dict):
                    op.value = {str(k): _offset(o) for k, o in v.items()}
                else:
                    op.value = {}
                    if type == "ok":
                        self._bad(index, f"commit value {v!r:.60} is not an object")
            else:
                op.value = [str(k) for k in v] if isinstance(v, list) else []
        self.ops.append(op)
        return op

    def finish(self):
        if self.open:
            pending = sorted(self.open.values(), key=lambda e: e["index"])
            self.warnings.append(f"{len(pending)} operation(s) never completed; treated as info "
                                 f"(first: index {pending[0]['index']})")
            for inv in pending:
                self._incomplete(inv)
                self.retired.add(inv["process"])
            self.open.clear()


# ---------------------------------------------------------------------------------- analysis

def _items(packed_by_key):
    """(key, [(offset, value)...]) of an op's reads or writes."""
    for k, packed in packed_by_key:
        yield k, _pairs(packed)


def _count(packed):
    return len(packed) // 2 if isinstance(packed, array) else len(packed)


class _Log:
    """What was seen at each offset of one key. Most offsets hold one value, kept as a plain
    offset -> value map with its first witness (an op index); an offset where a second value
    shows up moves to `conflicts` (offset -> {value: [witness op indexes]})."""

    __slots__ = ("value", "witness", "conflicts")

    def __init__(self):
        self.value = {}
        self.witness = {}
        self.conflicts = {}

    def note(self, off, v, index):
        old = self.value.get(off, _MISSING)
        if old is _MISSING:
            self.value[off] = v
            self.witness[off] = index
        elif old != v or off in self.conflicts:
            c = self.conflicts.get(off)
            if c is None:
                c = self.conflicts[off] = {old: [self.witness[off]]}
            w = c.setdefault(v, [])
            if len(w) < _WITNESSES and (not w or w[-1] != index):
                w.append(index)

    def values_at(self, off):
        c = self.conflicts.get(off)
        return list(c) if c is not None else [self.value[off]]

    def holds(self, off, v):
        c = self.conflicts.get(off)
        if c is not None:
            return v in c
        return off in self.value and self.value[off] == v


_MISSING = object()


class _Order:
    """The version order of one key: its offsets in order, and each value's dense index (the
    rank of its offset among the key's observed offsets)."""

    __slots__ = ("log", "offsets", "by_index", "index_of_offset", "last_index", "first_dup")

    def __init__(self, log):
        self.log = log
        self.offsets = sorted(log.value)
        self.by_index = []  # dense index -> one value at that offset (the first observed)
        self.index_of_offset = {}
        self.last_index = {}  # value -> dense index of its last appearance
        self.first_dup = {}  # value -> dense index of its first appearance, if not its last
        conflicts = log.conflicts
        for i, off in enumerate(self.offsets):
            v = log.value[off]
            self.by_index.append(v)
            self.index_of_offset[off] = i
            for v in (conflicts[off] if off in conflicts else (v,)):
                j = self.last_index.get(v)
                if j is not None and v not in self.first_dup:
                    self.first_dup[v] = j
                self.last_index[v] = i

    def first_index(self, v):
        i = self.first_dup.get(v)
        return self.last_index.get(v) if i is None else i

    def position(self, offset, value):
        """Dense index of a read or send: by its offset when that offset is known to hold that
        value, else by the value's last appearance (Jepsen's by-value), else None."""
        if offset is not None and self.log.holds(offset, value):
            return self.index_of_offset[offset]
        return self.last_index.get(value)


def _sorted(xs):
    try:
        return sorted(xs)
    except TypeError:
        return sorted(xs, key=repr)


class _Analysis:
    def __init__(self, ops):
        self.ops = ops
        self.reads_ok = {}  # key -> set of values read by ok ops
        self.first_reader = {}  # key -> value -> index of the first ok op that read it
        self.writer_of = {}  # key -> value -> the (last) completed op that sent it
        self.failed = {}  # key -> values sent by ops that failed
        for op in ops:
            if op.writes:
                for k, pairs in _items(op.writes):
                    wk = self.writer_of.setdefault(k, {})
                    for _, v in pairs:
                        wk[v] = op
                    if op.type == "fail":
                        self.failed.setdefault(k, set()).update(v for _, v in pairs)
            if op.reads and op.type == "ok":
                for k, pairs in _items(op.reads):
                    rk = self.reads_ok.setdefault(k, set())
                    fr = self.first_reader.setdefault(k, {})
                    for _, v in pairs:
                        if v not in rk:
                            rk.add(v)
                            fr[v] = op.index
        self._certain = {}
        self.orders = self._version_orders()
        self.anomalies = {k: [] for k in KINDS}

    def certain(self, op):
        """Jepsen's must-have-committed?: ok, or info with some sent value read by an ok op."""
        if op.type == "ok":
            return True
        if op.type != "info" or not op.writes:
            return False
        got = self._certain.get(op.index)
        if got is None:
            got = any(v in self.reads_ok.get(k, ()) for k, pairs in _items(op.writes)
                      for _, v in pairs)
            self._certain[op.index] = got
        return got

    def _version_orders(self):
        logs = {}

        def note(k, pairs, index):
            log = logs.get(k)
            if log is None:
                log = logs[k] = _Log()
            for off, v in pairs:
                if off is not None:
                    log.note(off, v, index)

        for op in self.ops:
            # Sends only when their effect is certain; polls always (as Jepsen: a poll returns
            # only committed data whatever becomes of the op around it).
            if op.writes and self.certain(op):
                for k, pairs in _items(op.writes):
                    note(k, pairs, op.index)
            if op.reads:
                for k, pairs in _items(op.reads):
                    note(k, pairs, op.index)
        return {k: _Order(log) for k, log in logs.items()}

    def _pos(self, k, off, v):
        order = self.orders.get(k)
        return None if order is None else order.position(off, v)

    def _skipped(self, k, i1, i2):
        order = self.orders[k]
        return order.by_index[i1 + 1:min(i2, i1 + 1 + _SKIPPED)]

    def add(self, kind, rec):
        self.anomalies[kind].append(rec)

    # -- log shape
    def log_anomalies(self):
        for k, order in self.orders.items():
            log = order.log
            for off in sorted(log.conflicts):
                vals = log.conflicts[off]
                self.add("inconsistent-offsets", {
                    "key": k, "offset": off, "index": order.index_of_offset[off],
                    "values": _sorted(vals), "witnesses": [[v, w] for v, w in vals.items()],
                    "ops": sorted({o for w in vals.values() for o in w})})
            if not order.first_dup:
                continue
            where = {v: ([], set()) for v in order.first_dup}  # value -> (offsets, witnesses)
            for off in order.offsets:
                c = log.conflicts.get(off)
                for v in (c if c is not None else (log.value[off],)):
                    got = where.get(v)
                    if got is not None:
                        got[0].append(off)
                        got[1].update(c[v] if c is not None else (log.witness[off],))
            for v, (offs, ops) in where.items():
                self.add("duplicate", {"key": k, "value": v, "offsets": offs,
                                       "count": len(offs), "ops": sorted(ops)})

    # -- reads of what should not be readable
    def read_anomalies(self):
        unknown = {}
        for op in self.ops:
            if not op.reads:
                continue
            for k, pairs in _items(op.reads):
                failed = self.failed.get(k, ())
                writers = self.writer_of.get(k, {})
                seen = set()
                for off, v in pairs:
                    if v in seen:
                        continue
                    seen.add(v)
                    if v not in writers:
                        u = unknown.setdefault((k, v), {"key": k, "value": v, "offsets": [],
                                                        "ops": []})
                        if off not in u["offsets"] and len(u["offsets"]) < _WITNESSES:
                            u["offsets"].append(off)
                        if len(u["ops"]) < _WITNESSES:
                            u["ops"].append(op.index)
                    elif op.type == "ok" and v in failed:
                        w = writers[v]
                        self.add("G1a", {"key": k, "value": v, "offset": off,
                                         "writer": w.index, "reader": op.index,
                                         "ops": [w.index, op.index]})
            if op.writes:
                reads = dict(op.reads)
                for k, wpairs in _items(op.writes):
                    rpacked = reads.get(k)
                    if rpacked:
                        own = {v for _, v in wpairs} & {v for _, v in _pairs(rpacked)}
                        if own:
                            self.add("precommitted-read", {"key": k, "values": _sorted(own),
                                                           "ops": [op.index]})
        for u in unknown.values():
            self.add("unknown-value", u)

    # -- writes that were not read
    def lost_and_unseen(self):
        lost_keys = set()
        for k, vs in self.reads_ok.items():
            order = self.orders.get(k)
            if order is None:
                continue
            # The furthest point some ok op certainly read past: the highest *first* position
            # of any value an ok op read (first, so a later duplicate of it does not count).
            bound, vmax = -1, None
            for v in vs:
                i = order.first_index(v)
                if i is not None and i > bound:
                    bound, vmax = i, v
            if bound < 0:
                continue
            # Values that must have been read: every copy of them (their *last* position) at
            # or below that point; minus those read; minus writes not certainly committed.
            must = sorted((i, v) for v, i in order.last_index.items()
                          if i <= bound and v not in vs)
            writers = self.writer_of.get(k, {})
            for i, v in must:
                w = writers.get(v)
                if w is None or not self.certain(w):
                    continue  # no writer: unknown-value reports it; uncertain: not owed
                reader = self.first_reader[k][vmax]
                self.add("lost-write", {
                    "key": k, "value": v, "offset": order.offsets[i], "index": i,
                    "max_read_value": vmax, "max_read_offset": order.offsets[bound],
                    "max_read_index": bound, "writer": w.index, "reader": reader,
                    "ops": [w.index, reader]})
                lost_keys.add((k, v))
        sent = {}
        for op in self.ops:
            if op.type == "ok" and op.writes:
                for k, pairs in _items(op.writes):
                    sk = sent.setdefault(k, {})
                    for _, v in pairs:
                        sk[v] = op.index
        for k in sorted(sent):
            read = self.reads_ok.get(k, ())
            missing = _sorted(v for v in sent[k] if v not in read)
            if missing:
                self.add("unseen", {
                    "key": k, "count": len(missing), "values": missing,
                    "also_lost_write": sum(1 for v in missing if (k, v) in lost_keys),
                    "ops": sorted({sent[k][v] for v in missing})})

    # -- order of one process's polls and sends, and inside one op
    def _compare(self, k, a, b):
        """(delta, i1, i2) between two (offset, value) of key k; delta None if unknown."""
        i1 = self._pos(k, *a)
        i2 = self._pos(k, *b)
        if i1 is None or i2 is None:
            return None, i1, i2
        return i2 - i1, i1, i2

    def _pair_rec(self, k, a, b, d, i1, i2, ops, **more):
        rec = {"key": k, "values": [a[1], b[1]], "offsets": [a[0], b[0]], "delta": d}
        if d > 1:
            rec["skipped"] = self._skipped(k, i1, i2)
        rec.update(more)
        rec["ops"] = ops
        return rec

    def _internal(self, k, pairs, op, skip_kind, back_kind):
        for a, b in zip(pairs, pairs[1:]):
            d, i1, i2 = self._compare(k, a, b)
            if d is not None and d > 1:
                self.add(skip_kind, self._pair_rec(k, a, b, d, i1, i2, [op.index]))
            elif d is not None and d < 1:
                self.add(back_kind, self._pair_rec(k, a, b, d, i1, i2, [op.index]))

    def poll_order(self):
        last = {}  # process -> key -> (op index, last (offset, value) read)
        for op in self.ops:
            if op.f in ("assign", "subscribe"):
                # A new assignment may legitimately move the consumer (to the committed offset,
                # or anywhere a seek puts it): forget what this process read before.
                if op.type in ("ok", "info"):
                    last.pop(op.process, None)
                continue
            if not op.reads:
                continue
            reads = list(_items(op.reads))
            for k, pairs in reads:
                self._internal(k, pairs, op, "int-poll-skip", "int-nonmonotonic-poll")
            if op.type != "ok":
                continue
            lp = last.setdefault(op.process, {})
            for k, pairs in reads:
                prev = lp.get(k)
                if prev is not None:
                    d, i1, i2 = self._compare(k, prev[1], pairs[0])
                    if d is not None and d > 1:
                        self.add("poll-skip", self._pair_rec(
                            k, prev[1], pairs[0], d, i1, i2, [prev[0], op.index],
                            process=op.process))
                    elif d is not None and d < 1:
                        self.add("nonmonotonic-poll", self._pair_rec(
                            k, prev[1], pairs[0], d, i1, i2, [prev[0], op.index],
                            process=op.process))
                lp[k] = (op.index, pairs[-1])

    def send_order(self):
        last = {}  # process -> key -> (op index, last (offset, value) sent)
        for op in self.ops:
            if not op.writes:
                continue
            writes = list(_items(op.writes))
            for k, pairs in writes:
                self._internal(k, pairs, op, "int-send-skip", "int-nonmonotonic-send")
            if op.type not in ("ok", "info"):
                continue
            lp = last.setdefault(op.process, {})
            for k, pairs in writes:
                prev = lp.get(k)
                if prev is not None:
                    d, i1, i2 = self._compare(k, prev[1], pairs[0])
                    if d is not None and d < 1:
                        self.add("nonmonotonic-send", self._pair_rec(
                            k, prev[1], pairs[0], d, i1, i2, [prev[0], op.index],
                            process=op.process))
                lp[k] = (op.index, pairs[-1])

    def commits(self):
        # A commit without a "group" field belongs to the group its process commits to
        # elsewhere (a consumer has one group); failing that, to "default" if it is ok, and to
        # any group if it is info (an unknown commit may have landed anywhere).
        group_of = {}
        for op in self.ops:
            if op.f == "commit" and op.group is not None:
                group_of.setdefault(op.process, op.group)
        unknown = defaultdict(list)  # group (None: any) -> [(invoke index, offsets)]
        for op in self.ops:
            if op.f == "commit" and op.type == "info":
                g = op.group or group_of.get(op.process)
                unknown[g].append((op.invoke_index, op.value or {}))
        # (group, key) -> ([completion index], [running max offset], [op index of that max])
        acked = {}
        for op in self.ops:
            if op.f != "commit" or op.type != "ok":
                continue
            group = op.group or group_of.get(op.process, "default")
            for k, o in sorted(op.value.items()):
                if o is None:
                    continue
                h = acked.setdefault((group, k), ([], [], []))
                # Only commits acknowledged before this one was invoked are known to precede it.
                j = bisect.bisect_left(h[0], op.invoke_index)
                if j > 0 and o < h[1][j - 1]:
                    best, earlier = h[1][j - 1], h[2][j - 1]
                    excuses = sorted(i for i, offs in unknown[group] + unknown[None]
                                     if i < op.invoke_index and (offs.get(k) is None
                                                                 or offs[k] < best))
                    rec = {"group": group, "key": k, "offsets": [best, o],
                           "ops": [earlier, op.index]}
                    if excuses:
                        rec["unknown_commits"] = excuses[:_WITNESSES]
                        self.add("committed-offset-regression-info", rec)
                    else:
                        self.add("committed-offset-regression", rec)
                if h[1] and h[1][-1] >= o:
                    m, mi = h[1][-1], h[2][-1]
                else:
                    m, mi = o, op.index
                h[0].append(op.index)
                h[1].append(m)
                h[2].append(mi)

    def run(self):
        self.log_anomalies()
        self.read_anomalies()
        self.lost_and_unseen()
        self.poll_order()
        self.send_order()
        self.commits()
        return self.anomalies


# ---------------------------------------------------------------------------------- results

class Result:
    """What check() found. `anomalies` maps every kind of KINDS to its records (each with the
    event indexes that show it, under "ops"); `stats` counts the history's operations (it is
    "summary" in to_json())."""

    def __init__(self, anomalies, allowed, stats, not_checked, warnings):
        self.anomalies = anomalies
        self.allowed = frozenset(allowed)
        self.stats = stats
        self.not_checked = not_checked
        self.warnings = warnings

    def anomaly_counts(self):
        """kind -> count (records; for unseen, values) for every kind, zeros included."""
        return {k: (sum(r["count"] for r in recs) if k == "unseen" else len(recs))
                for k, recs in self.anomalies.items()}

    def allowed_kinds(self):
        return set(self.allowed)

    def bad_kinds(self):
        return [k for k, n in self.anomaly_counts().items() if n and k not in self.allowed]

    def kinds(self):
        """Kinds with at least one record, allowed or not."""
        return {k for k, recs in self.anomalies.items() if recs}

    @property
    def valid(self):
        return not self.bad_kinds()

    def to_json(self, limit=1000, list_limit=100):
        """A JSON-ready dict. At most `limit` records per kind and `list_limit` items per list
        inside a record are kept; "<field>_total" gives a cut list's full length."""
        def trim(rec):
            out = {}
            for f, v in rec.items():
                if isinstance(v, list) and len(v) > list_limit:
                    out[f] = v[:list_limit]
                    out[f + "_total"] = len(v)
                else:
                    out[f] = v
            return out

        counts = self.anomaly_counts()
        return {
            "valid": self.valid,
            "bad_kinds": self.bad_kinds(),
            "allowed_kinds": sorted(self.allowed),
            "anomaly_counts": counts,
            "anomalies": {k: [trim(r) for r in recs[:limit]]
                          for k, recs in self.anomalies.items() if recs},
            "records_total": {k: len(recs) for k, recs in self.anomalies.items()
                              if len(recs) > limit},
            "summary": self.stats,
            "not_checked": self.not_checked,
            "warnings": self.warnings,
        }

    def summary(self, examples=3):
        s = self.stats
        lines = [f"checker: {s['events']} events, {s['ops']} operations by {s['processes']} "
                 f"processes; {s['acknowledged_sends']} sends acknowledged "
                 f"({s['unknown_sends']} unknown, {s['failed_sends']} failed), "
                 f"{s['records_polled']} records polled, {s['keys']} keys"]
        for f, types in sorted(s["ops_by_f"].items()):
            lines.append(f"  {f:<10} " + ", ".join(f"{t} {n}" for t, n in sorted(types.items())))
        nem = s["nemesis"]
        lines.append("  nemesis    " + (", ".join(f"{f} {n}" for f, n in sorted(nem.items()))
                                        or "none"))
        lines.append("anomalies:")
        counts = self.anomaly_counts()
        for k in KINDS:
            n = counts[k]
            tag = ""
            if n:
                tag = "  (allowed)" if k in self.allowed else "  <-- ANOMALY"
            lines.append(f"  {k:<34}{n:>8}{tag}")
        for k in KINDS:
            for rec in self.anomalies[k][:examples]:
                lines.append(f"  e.g. {k}: " + json.dumps(rec, default=repr)[:300])
        for what, why in self.not_checked.items():
            lines.append(f"NOT CHECKED: {what}: {why}")
        for w in self.warnings[:20]:
            lines.append(f"warning: {w}")
        if len(self.warnings) > 20:
            lines.append(f"warning: ... and {len(self.warnings) - 20} more")
        bad = self.bad_kinds()
        lines.append("INVALID: " + ", ".join(f"{k} {counts[k]}" for k in bad) if bad
                     else "valid: no anomaly beyond the allowed kinds")
        return "\n".join(lines)


def check(events, allowed=DEFAULT_ALLOWED):
    """Checks an iterable of events (dicts, in index order; read once) and returns a Result."""
    unknown = set(allowed) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown anomaly kinds {sorted(unknown)}")
    b = _Builder()
    for ev in events:
        b.add(ev)
    b.finish()
    a = _Analysis(b.ops)
    anomalies = a.run()
    anomalies["malformed-history"] = b.malformed
    ops = b.ops
    txns = sum(1 for op in ops if op.f == "txn")
    stats = {
        "events": b.events,
        "ops": len(ops),
        "processes": len(b.processes),
        "ops_by_f": {f: dict(c) for f, c in b.by_f.items()},
        "acknowledged_sends": sum(_count(p) for op in ops if op.type == "ok" and op.writes
                                  for _, p in op.writes),
        "unknown_sends": sum(_count(p) for op in ops if op.type == "info" and op.writes
                             for _, p in op.writes),
        "failed_sends": sum(_count(p) for op in ops if op.type == "fail" and op.writes
                            for _, p in op.writes),
        "records_polled": sum(_count(p) for op in ops if op.type == "ok" and op.reads
                              for _, p in op.reads),
        "keys": len(set(a.orders) | set(a.writer_of)),
        "nemesis": dict(b.nemesis),
    }
    not_checked = {"cycles": "write-read dependency cycles between transactions (Jepsen's "
                             "Elle analysis: G0, G1c, G-single...) are not implemented yet; "
                             f"{txns} txn operation(s) in this history were not checked for them"}
    return Result(anomalies, allowed, stats, not_checked, b.warnings)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Checks a fault-suite history for Kafka anomalies.")
    ap.add_argument("history", help="a history file (JSON lines)")
    ap.add_argument("--json", action="store_true",
                    help="print the results as JSON on stdout (the summary goes to stderr)")
    ap.add_argument("--allow", action="append", default=[], metavar="KINDS",
                    help="comma-separated kinds to accept besides "
                         f"{', '.join(sorted(DEFAULT_ALLOWED))} (repeatable)")
    ap.add_argument("--limit", type=int, default=1000, help="records per kind in the JSON")
    args = ap.parse_args(argv)
    allowed = set(DEFAULT_ALLOWED) | {a for s in args.allow for a in s.split(",") if a}
    if set(allowed) - set(KINDS):
        ap.error(f"unknown kinds {sorted(set(allowed) - set(KINDS))}; known: {', '.join(KINDS)}")
    reader = HistoryReader(args.history)
    try:
        result = check(reader, allowed=allowed)
    except (OSError, ValueError) as e:
        print(f"checker: cannot read {args.history}: {e}", file=sys.stderr)
        return 2
    if reader.truncated_tail:
        result.warnings.append("the history's last line was cut short (the writer died "
                               "mid-line) and was ignored")
    if args.json:
        json.dump(result.to_json(limit=args.limit), sys.stdout, indent=1, default=repr)
        print()
        print(result.summary(), file=sys.stderr)
    else:
        print(result.summary())
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
