"""Crash consistency seen by a real client: every acks=all acknowledgement
must survive the broker being SIGKILLed and restarted on the same data dir.

Producer threads (confluent-kafka, acks=all, no idempotence, one request in
flight per connection) record every acknowledged (partition, offset, value)
from their delivery callbacks while the broker is killed with SIGKILL and
restarted 3 times at random moments. After the last restart the whole topic is
read back with manual assign().

Checked:
  * every partition's log reads back with dense offsets 0..high_watermark-1;
  * every acknowledged (partition, offset) holds exactly the acknowledged value;
  * no offset was acknowledged twice (no offset reuse across restarts);
  * per producer and partition, acked offsets increase in send order;
  * the producers made progress in every broker generation (the test really
    exercised writes around each kill).
Unacknowledged messages may be lost, and, without idempotence, a retried
message may appear twice (once unacked): both are legal and only reported.
"""

import os
import random
import threading
import time
from collections import Counter

import pytest

from helpers import consume_partitions, create_topic, producer, unique_topic, watermarks

KILLS = 3
PARTITIONS = 4
PRODUCERS = 2
MAX_PER_PRODUCER = 500_000  # bound on the request loop
RATE_PER_PRODUCER = 8_000   # messages/s: keeps every producer busy until stop


@pytest.mark.timeout(600)
def test_acked_writes_survive_kill9(fresh_broker):
    b = fresh_broker
    seed = int(os.environ.get("SHOAL_KILL9_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    print(f"kill9 seed={seed} (rerun with SHOAL_KILL9_SEED={seed})")
    name = unique_topic("kill9")
    create_topic(b.bootstrap, name, PARTITIONS)

    stop = threading.Event()
    lock = threading.Lock()
    acked = []        # (producer, seq, partition, offset, value, t_ack)
    failed = []       # (producer, seq, error string)
    leftovers = {}    # producer -> messages still queued after final flush
    sent = {}

    def run(k):
        p = producer(b.bootstrap, acks="all", **{
            "max.in.flight.requests.per.connection": 1,
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "linger.ms": 2,
            "queue.buffering.max.messages": 20000,
        })

        def on_delivery(err, msg, k=k):
            seq = int(msg.value().split(b":")[1])
            with lock:
                if err is not None:
                    failed.append((k, seq, str(err)))
                else:
                    acked.append((k, seq, msg.partition(), msg.offset(), msg.value(), time.monotonic()))

        seq = 0
        t_start = time.monotonic()
        while not stop.is_set() and seq < MAX_PER_PRODUCER:
            v = b"%d:%d:" % (k, seq) + b"x" * (seq % 200)
            try:
                p.produce(name, value=v, partition=seq % PARTITIONS, on_delivery=on_delivery)
            except BufferError:
                p.poll(0.05)
                continue
            seq += 1
            p.poll(0)
            if seq % 100 == 0:
                ahead = seq / RATE_PER_PRODUCER - (time.monotonic() - t_start)
                if ahead > 0:
                    time.sleep(ahead)
        sent[k] = seq
        leftovers[k] = p.flush(150)

    threads = [threading.Thread(target=run, args=(k,), name=f"producer-{k}") for k in range(PRODUCERS)]
    for t in threads:
        t.start()

    restarts = []  # (t_kill, t_ready)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.8, 3.0))
            t_kill = time.monotonic()
            b.kill9()
            time.sleep(rng.uniform(0.0, 0.5))
            b.restart()  # waits for readiness (20 s), raising with the stderr tail if not
            restarts.append((t_kill, time.monotonic()))
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(200)
    fail_kinds = Counter(e for (_, _, e) in failed)
    print(f"kill9: sent={sent} acked={len(acked)} failed={len(failed)} failure kinds={dict(fail_kinds)}")
    assert not any(t.is_alive() for t in threads), "producer threads did not finish"
    assert leftovers == {k: 0 for k in range(PRODUCERS)}, f"messages never delivered after the last restart: {leftovers}"

    # Progress in every generation: before the first kill, between kills, after the last restart.
    bounds = [0.0] + [r[1] for r in restarts] + [float("inf")]
    kills = [r[0] for r in restarts] + [float("inf")]
    for g in range(KILLS + 1):
        n = sum(1 for a in acked if bounds[g] <= a[5] < kills[g])
        assert n > 0, (f"no acknowledgement in broker generation {g + 1} (of {len(acked)} acks; "
                       f"{len(failed)} deliveries failed: {dict(fail_kinds)})")

    hw = {}
    for p in range(PARTITIONS):
        low, high = watermarks(b.bootstrap, name, p)
        assert low == 0, f"partition {p} low watermark {low}"
        hw[p] = high

    got, errors = consume_partitions(b.bootstrap, name, hw, timeout=120)
    log = {}
    for p in range(PARTITIONS):
        offs = [m.offset() for m in got[p]]
        assert offs == list(range(hw[p])), f"partition {p}: offsets not dense 0..{hw[p] - 1}"
        log[p] = [m.value() for m in got[p]]

    seen = {}
    lost = []
    for (k, seq, p, off, val, _) in acked:
        assert (p, off) not in seen, f"offset {p}/{off} acknowledged twice: {seen[(p, off)]!r} and {val!r}"
        seen[(p, off)] = val
        if off >= hw[p] or log[p][off] != val:
            lost.append((p, off, val[:20], log[p][off][:20] if off < hw[p] else "beyond high watermark"))
    assert not lost, f"{len(lost)} acknowledged records lost or changed, first: {lost[:5]}"

    for k in range(PRODUCERS):
        for p in range(PARTITIONS):
            offs = [a[3] for a in sorted((a for a in acked if a[0] == k and a[2] == p), key=lambda a: a[1])]
            assert offs == sorted(offs), f"producer {k} partition {p}: acked offsets out of send order"

    acked_vals = {a[4] for a in acked}
    dup_unacked = sum(1 for p in log for off, v in enumerate(log[p]) if v in acked_vals and (p, off) not in seen)
    print(f"kill9: sent={sent} acked={len(acked)} failed={len(failed)} high_watermarks={hw} "
          f"unacked copies of acked values={dup_unacked} restarts={len(restarts)}")
