"""The clients of the fault suite: Kafka producers and consumers whose every operation is
recorded in a history (see README.md for the format).

Each `Worker` is a thread playing Jepsen's "process": one operation at a time, invoked, then
completed with ok (it happened, with what it returned), fail (it definitely did not happen) or
info (unknown: a timeout, a disconnect). After an info the process is retired and the worker
carries on under a new process number with new clients, because the unknown operation may
still be in flight in the old ones.

Keys are partitions of one topic: key "k3" is partition 3. Values are integers unique per key
(a shared counter per key), so the checker can tell every write apart.
"""

import itertools
import logging
import threading
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

# librdkafka errors after which a send definitely did not reach the log: the request was never
# sent or the broker refused it before writing. Every other error (timeouts, a lost connection,
# a storage error after the write may have landed) leaves the outcome unknown.
DEFINITE_SEND_FAILURES = {
    KafkaError._QUEUE_FULL,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
}


class CommitTimeout(Exception):
    pass


def key_of(partition):
    return f"k{partition}"


def partition_of(key):
    return int(key[1:])


def encode_value(value, size_bytes):
    head = b"%d " % value
    return head + b"." * max(0, size_bytes - len(head))


def decode_value(raw):
    return int(raw.split(b" ", 1)[0])


class Values:
    """The next value of each key: unique per key, increasing in the order sends are issued."""

    def __init__(self, keys):
        self._lock = threading.Lock()
        self._next = {k: 0 for k in keys}

    def take(self, key):
        with self._lock:
            v = self._next[key]
            self._next[key] = v + 1
            return v


class Processes:
    """Jepsen process numbers: a retired process's number is never used again."""

    def __init__(self):
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def new(self):
        with self._lock:
            return next(self._counter)


class Config:
    def __init__(self, bootstrap, topic, keys, mode="idempotent", consume="assign",
                 op_timeout_s=10.0, max_ops=None, client_log=None, value_bytes=1024):
        assert mode in ("acks-all", "idempotent")
        assert consume in ("assign", "subscribe")
        self.bootstrap = bootstrap
        self.topic = topic
        self.keys = list(keys)
        self.mode = mode
        self.consume = consume
        self.op_timeout_s = op_timeout_s
        self.max_ops = max_ops
        # Records are padded to about this size, so the segments roll every few seconds
        # (the disk-full fault needs new segment files to be refused, not only appends into
        # space the log reserved ahead).
        self.value_bytes = value_bytes
        # librdkafka's own log (connection refused while the broker is down, request
        # timeouts...) goes to a file of the run, not to the terminal.
        self.logger = logging.getLogger("chaos.clients")
        if client_log and not self.logger.handlers:
            handler = logging.FileHandler(client_log)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False

    def producer_conf(self):
        conf = {
            "bootstrap.servers": self.bootstrap,
            "logger": self.logger,
            "acks": "all",
            "linger.ms": 1,
            # An op waits op_timeout_s for its delivery reports: the client gives up a little
            # earlier, so a timed-out message is reported (as unknown) rather than left queued.
            "message.timeout.ms": int(self.op_timeout_s * 1000) - 500,
            "socket.timeout.ms": 3000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "retry.backoff.ms": 50,
        }
        if self.mode == "idempotent":
            conf["enable.idempotence"] = True
        else:
            conf["enable.idempotence"] = False
            # One request in flight: without idempotence more would reorder on a retry.
            conf["max.in.flight.requests.per.connection"] = 1
        return conf

    def consumer_conf(self, group):
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": self.logger,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 100,
            "socket.timeout.ms": 3000,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }


class Worker(threading.Thread):
    """One client thread: sends, polls, commits and (in assign mode) reassigns, at random."""

    def __init__(self, number, cfg, history, values, processes, rng, stop_event):
        super().__init__(name=f"worker-{number}", daemon=True)
        self.number = number
        self.cfg = cfg
        self.history = history
        self.values = values
        self.processes = processes
        self.rng = rng
        self.stop_event = stop_event
        self.process = None
        self.producer = None
        self.consumer = None
        self.assigned = []
        self.rebalances = []  # (kind, keys) noted by the rebalance callbacks
        self.ops = 0
        self.error = None  # an exception that ended the thread (a harness bug, not an anomaly)

    # ------------------------------------------------------------------ process lifecycle
    def _new_process(self):
        self._close_clients()
        self.process = self.processes.new()
        self.rebalances = []
        self.producer = Producer(self.cfg.producer_conf())
        if self.cfg.consume == "subscribe":
            group = f"{self.cfg.topic}-group"
            self.consumer = Consumer(dict(self.cfg.consumer_conf(group),
                                          **{"partition.assignment.strategy": "range"}))
            self.consumer.subscribe([self.cfg.topic], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke)
        else:
            # One group per worker: its committed offsets are its own, so a regression of them
            # is an anomaly and not another worker's commit.
            self.consumer = Consumer(self.cfg.consumer_conf(f"{self.cfg.topic}-w{self.number}"))
            self._assign()

    def _close_clients(self):
        if self.producer is not None:
            # Whatever is still queued belongs to a retired process: drop it, do not wait.
            try:
                self.producer.purge()
                self.producer.flush(0)
            except Exception:
                pass
            self.producer = None
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:
                pass
            self.consumer = None

    # Rebalance callbacks run inside consumer.poll(): they only note the change, which the
    # poll op records as an "assign" op of its own between the reads before and after it.
    def _on_assign(self, consumer, partitions):
        self.rebalances.append(("assign", sorted(key_of(tp.partition) for tp in partitions)))

    def _on_revoke(self, consumer, partitions):
        self.rebalances.append(("revoke", sorted(key_of(tp.partition) for tp in partitions)))

    def _record_rebalances(self):
        for kind, keys in self.rebalances:
            if kind == "assign":
                self.history.invoke(self.process, "assign", keys)
                self.history.complete(self.process, "ok", "assign", keys)
            else:
                self.history.invoke(self.process, "assign", [])
                self.history.complete(self.process, "ok", "assign", [], revoked=keys)
        self.rebalances = []

    def _assign(self):
        n = self.rng.randint(1, len(self.cfg.keys))
        keys = sorted(self.rng.sample(self.cfg.keys, n))
        self.history.invoke(self.process, "assign", keys)
        try:
            # No offset: each starts at the worker group's committed offset, or the earliest.
            self.consumer.assign([TopicPartition(self.cfg.topic, partition_of(k)) for k in keys])
        except KafkaException as e:
            self.history.complete(self.process, "info", "assign", keys, error=str(e))
            self._new_process()
            return
        self.assigned = keys
        self.history.complete(self.process, "ok", "assign", keys)

    # ------------------------------------------------------------------ operations
    def send(self):
        n = self.rng.randint(1, 3)
        mops = []
        for _ in range(n):
            key = self.rng.choice(self.cfg.keys)
            mops.append(["send", key, self.values.take(key)])
        self.history.invoke(self.process, "send", mops)
        reports = [None] * n

        def reporter(i):
            def on_delivery(err, msg):
                reports[i] = (err, msg.offset() if err is None else None)
            return on_delivery

        try:
            for i, (_, key, value) in enumerate(mops):
                self.producer.produce(self.cfg.topic, value=encode_value(value, self.cfg.value_bytes),
                                      partition=partition_of(key), on_delivery=reporter(i))
        except (BufferError, KafkaException) as e:
            # Nothing of this op was queued before the failing produce() returned? The earlier
            # micro-ops were: the op as a whole is unknown.
            self.history.complete(self.process, "info", "send", mops, error=str(e))
            self._new_process()
            return
        deadline = time.monotonic() + self.cfg.op_timeout_s
        try:
            while any(r is None for r in reports) and time.monotonic() < deadline:
                self.producer.poll(0.05)
        except KafkaException as e:
            # A fatal producer error (e.g. the idempotent producer's sequence desynchronized
            # from the broker's): the client is unusable, the op's outcome unknown.
            self.history.complete(self.process, "info", "send", mops, error=str(e))
            self._new_process()
            return
        if any(r is None for r in reports):
            self.history.complete(self.process, "info", "send", mops, error="op timeout")
            self._new_process()
            return
        errors = [r[0] for r in reports if r[0] is not None]
        if not errors:
            done = [["send", key, [reports[i][1], value]] for i, (_, key, value) in enumerate(mops)]
            self.history.complete(self.process, "ok", "send", done)
            return
        definite = all(e.code() in DEFINITE_SEND_FAILURES for e in errors)
        self.history.complete(self.process, "fail" if definite and n == 1 else "info", "send",
                              mops, error="; ".join(str(e) for e in errors))
        if not (definite and n == 1):
            self._new_process()

    def poll(self):
        """Up to 200 records, one consumer.poll() at a time, so that a rebalance callback
        (which fires inside poll(), before the record it returns) splits the op: the reads
        before it, the assignment change, then the reads after it."""
        self.history.invoke(self.process, "poll", [["poll"]])
        seen, errors = {}, []
        for i in range(200):
            try:
                m = self.consumer.poll(0.3 if i == 0 else 0)
            except KafkaException as e:
                self._complete_poll(seen, errors, failed=str(e))
                return
            if self.rebalances:
                self._complete_poll(seen, errors)
                self._record_rebalances()
                self.history.invoke(self.process, "poll", [["poll"]])
                seen, errors = {}, []
            if m is None:
                break
            if m.error():
                errors.append(str(m.error()))
                continue
            seen.setdefault(key_of(m.partition()), []).append([m.offset(), decode_value(m.value())])
        self._complete_poll(seen, errors)

    def _complete_poll(self, seen, errors, failed=None):
        if failed is not None and not seen:
            self.history.complete(self.process, "fail", "poll", [["poll"]], error=failed)
            return
        extra = {"errors": errors + ([failed] if failed else [])} if errors or failed else {}
        self.history.complete(self.process, "ok", "poll", [["poll", seen]], **extra)

    def _commit_bounded(self):
        """consumer.commit(asynchronous=False), but at most op_timeout_s: librdkafka waits for
        a synchronous commit's result without a deadline, so a group coordinator that does not
        come back (seen with three nodes) would hang the worker for good. The call runs in a
        thread of its own; when it is late the consumer is abandoned, not closed (closing it
        under a running commit is not safe): CommitTimeout."""
        consumer, box = self.consumer, {}

        def call():
            try:
                box["done"] = consumer.commit(asynchronous=False)
            except BaseException as e:  # handed to the worker below
                box["error"] = e

        t = threading.Thread(target=call, name=f"{self.name}-commit", daemon=True)
        t.start()
        t.join(self.cfg.op_timeout_s)
        if t.is_alive():
            self.consumer = None
            raise CommitTimeout()
        if "error" in box:
            raise box["error"]
        return box["done"]

    def commit(self):
        group = self._group()
        self.history.invoke(self.process, "commit", {}, group=group)
        try:
            done = self._commit_bounded()
        except CommitTimeout:
            # It may still land: unknown, and the process is retired, as after any info.
            self.history.complete(self.process, "info", "commit", {}, group=group,
                                  error="op timeout")
            self._new_process()
            return
        except KafkaException as e:
            err = e.args[0] if e.args else None
            # Nothing to commit: the request was never sent.
            if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                self.history.complete(self.process, "fail", "commit", {}, group=group,
                                      error=str(e))
                return
            # The commit may still land later: the process is retired, as after any info.
            self.history.complete(self.process, "info", "commit", {}, group=group, error=str(e))
            self._new_process()
            return
        committed = {key_of(tp.partition): tp.offset for tp in done or [] if tp.offset >= 0}
        self.history.complete(self.process, "ok", "commit", committed, group=group)

    def _group(self):
        if self.cfg.consume == "subscribe":
            return f"{self.cfg.topic}-group"
        return f"{self.cfg.topic}-w{self.number}"

    def run(self):
        try:
            self._new_process()
            while not self.stop_event.is_set():
                if self.cfg.max_ops is not None and self.ops >= self.cfg.max_ops:
                    break
                r = self.rng.random()
                if r < 0.5:
                    self.send()
                elif r < 0.9:
                    self.poll()
                elif r < 0.96 or self.cfg.consume == "subscribe":
                    self.commit()
                else:
                    self._assign()
                if self.rebalances:  # a callback fired inside commit()
                    self._record_rebalances()
                self.ops += 1
        except Exception as e:  # a harness bug: reported by the runner, never hidden
            self.error = e
            raise
        finally:
            self._close_clients()


def final_read(cfg, history, processes, timeout_s=60.0):
    """Reads every key from the beginning to its high watermark, as polls of one process."""
    process = processes.new()
    consumer = Consumer(dict(cfg.consumer_conf(f"{cfg.topic}-final"), **{"enable.partition.eof": True}))
    try:
        ends = {}
        for k in cfg.keys:
            _, high = consumer.get_watermark_offsets(TopicPartition(cfg.topic, partition_of(k)),
                                                     timeout=10, cached=False)
            ends[k] = high
        history.invoke(process, "assign", cfg.keys)
        consumer.assign([TopicPartition(cfg.topic, partition_of(k), OFFSET_BEGINNING)
                         for k in cfg.keys])
        history.complete(process, "ok", "assign", cfg.keys)
        positions = {k: 0 for k in cfg.keys}
        deadline = time.monotonic() + timeout_s
        while any(positions[k] < ends[k] for k in cfg.keys):
            if time.monotonic() > deadline:
                raise RuntimeError(f"final read incomplete after {timeout_s}s: at {positions}, "
                                   f"high watermarks {ends}")
            history.invoke(process, "poll", [["poll"]])
            msgs = consumer.consume(num_messages=1000, timeout=0.5)
            seen = {}
            for m in msgs:
                if m.error():
                    continue
                k = key_of(m.partition())
                seen.setdefault(k, []).append([m.offset(), decode_value(m.value())])
                positions[k] = max(positions[k], m.offset() + 1)
            history.complete(process, "ok", "poll", [["poll", seen]])
        return ends
    finally:
        consumer.close()
