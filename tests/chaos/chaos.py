#!/usr/bin/env python3
"""The fault suite's runner: clients against a real Shoal broker while faults are injected,
every operation recorded, then the history checked.

    tests/chaos/run.sh chaos.py --time 60 --seed 7                # one node, every fault kind
    tests/chaos/run.sh chaos.py --time 1800 --faults kill,pause --consume subscribe

Phases: warm-up (clients only), faults (one at a time, at random intervals), heal (every
fault undone, the broker answering), recovery (clients only), final read (every key from the
beginning to its high watermark). Then the checker (checker.py) reads the history; the exit
status is 0 only if it found no anomaly beyond those Kafka allows by design.

Everything is bounded: the phases' times, the operations per worker (--max-ops), and the
final read's timeout. Traffic goes to loopback only. The broker is started and stopped here.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "clients"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import checker  # noqa: E402
import nemesis as nemesis_mod  # noqa: E402
from conftest import Broker  # noqa: E402  (the client tests' broker process wrapper)
from history import HistoryReader, HistoryWriter  # noqa: E402
from workload import Config, Processes, Values, Worker, final_read, key_of  # noqa: E402

FILL_FS_MIB = 512


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--time", type=float, default=60.0, help="seconds of the fault phase")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the first fault")
    p.add_argument("--recovery", type=float, default=10.0, help="seconds after the heal")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed when chosen)")
    p.add_argument("--faults", default="kill,term,pause,fill",
                   help="comma-separated kinds: " + ",".join(nemesis_mod.KINDS))
    p.add_argument("--every-kind", action="store_true",
                   help="inject each requested kind at least once (kinds first, then random)")
    p.add_argument("--interval", type=float, nargs=2, default=[2.0, 6.0],
                   metavar=("MIN", "MAX"), help="seconds between faults")
    p.add_argument("--keys", type=int, default=6, help="keys = partitions of the topic")
    p.add_argument("--workers", type=int, default=4, help="client threads")
    p.add_argument("--mode", choices=("acks-all", "idempotent"), default="idempotent")
    p.add_argument("--consume", choices=("assign", "subscribe"), default="assign")
    p.add_argument("--max-ops", type=int, default=200_000, help="operations per worker at most")
    p.add_argument("--out", default=None, help="directory for the history and results")
    p.add_argument("--bin", default=os.environ.get("SHOAL_BIN"), help="the shoal binary")
    p.add_argument("--cores", type=int, default=int(os.environ.get("SHOAL_CORES", "2")))
    p.add_argument("--fill-fs-mib", type=int, default=FILL_FS_MIB,
                   help="size of the loop-mounted data file system of the fill fault; a long "
                        "run needs room for all it writes (nothing is deleted: the final read "
                        "checks every value)")
    p.add_argument("--allow", default="", help="anomalies to accept (e.g. duplicate for acks-all)")
    return p.parse_args(argv)


class LoopFs:
    """A small ext4 on a loop device: the broker's data dir for the disk-full fault."""

    def __init__(self, workdir, mib):
        self.image = os.path.join(workdir, "disk.img")
        self.mount = os.path.join(workdir, "mnt")
        os.makedirs(self.mount, exist_ok=True)
        subprocess.run(["truncate", "-s", f"{mib}M", self.image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        subprocess.run(["mount", "-o", "loop", self.image, self.mount], check=True)

    def close(self):
        subprocess.run(["umount", "-l", self.mount], check=False)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # 1 MiB segments (the smallest Kafka allows): they roll every few seconds under the
    # workload, so a full disk is met by a new segment file and not only by appends into
    # space a segment reserved ahead.
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1,
                   config={"segment.bytes": str(1 << 20)})
    futs = admin.create_topics([new],
                               operation_timeout=15, request_timeout=15)
    for f in futs.values():
        f.result(timeout=20)


def run(args):
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(nemesis_mod.KINDS)
    if unknown:
        raise SystemExit(f"unknown fault kinds {sorted(unknown)}")
    out = args.out or tempfile.mkdtemp(prefix="shoal-chaos-")
    os.makedirs(out, exist_ok=True)
    print(f"chaos: seed {seed} (rerun with --seed {seed}), output in {out}", flush=True)

    kwargs = {"cores": args.cores}
    if args.bin:
        kwargs["binary"] = os.path.abspath(args.bin)
    broker = Broker(os.path.join(out, "broker"), **kwargs)
    loopfs = None
    if "fill" in kinds:
        if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
            print("!!!!!! chaos: SKIPPED the fill fault: it needs root and mkfs.ext4 !!!!!!",
                  flush=True)
            kinds.remove("fill")
        else:
            # Only the data dir is on the small file system: the broker's log stays readable
            # after the run (and writing it never fails for want of space).
            loopfs = LoopFs(out, args.fill_fs_mib)
            broker.data_dir = os.path.join(loopfs.mount, "data")
            os.makedirs(broker.data_dir, exist_ok=True)
    history_path = os.path.join(out, "history.jsonl")
    history = HistoryWriter(history_path)
    stop = threading.Event()
    workers = []
    nem = nemesis_mod.Nemesis(broker, history, random.Random(rng.random()),
                              fill_dir=broker.data_dir if loopfs else None)
    phases = {}
    try:
        broker.start()
        topic = f"chaos-{seed}"
        create_topic(broker.bootstrap, topic, args.keys)
        cfg = Config(broker.bootstrap, topic, [key_of(p) for p in range(args.keys)],
                     mode=args.mode, consume=args.consume, max_ops=args.max_ops,
                     client_log=os.path.join(out, "clients.log"))
        values, processes = Values(cfg.keys), Processes()
        for i in range(args.workers):
            w = Worker(i, cfg, history, values, processes, random.Random(rng.random()), stop)
            workers.append(w)
            w.start()
        phases["warmup"] = time.time()
        time.sleep(args.warmup)

        phases["faults"] = time.time()
        end = time.monotonic() + args.time
        todo = list(kinds) if args.every_kind else []
        while time.monotonic() < end and kinds:
            kind = todo.pop(0) if todo else rng.choice(kinds)
            print(f"chaos: {time.time() - phases['faults']:6.1f}s fault {kind}", flush=True)
            nem.inject(kind)
            if dead_workers(workers):
                break
            time.sleep(rng.uniform(*args.interval))
        phases["heal"] = time.time()
        nem.heal()
        phases["recovery"] = time.time()
        time.sleep(args.recovery)
        stop.set()
        for w in workers:
            w.join(timeout=60)
        stuck = [w.name for w in workers if w.is_alive()]
        if stuck:
            raise RuntimeError(f"workers did not stop within 60s: {stuck}")
        broken = dead_workers(workers)
        if broken:
            raise RuntimeError(f"workers died of harness errors: {broken}")
        phases["final-read"] = time.time()
        ends = final_read(cfg, history, processes)
        phases["done"] = time.time()
    finally:
        stop.set()
        history.close()
        broker.stop()
        broker.force_kill()
        if loopfs is not None:
            loopfs.close()

    result = checker.check(HistoryReader(history_path))
    allowed = {a for a in args.allow.split(",") if a}
    summary = {
        "seed": seed,
        "history": history_path,
        "mode": args.mode,
        "consume": args.consume,
        "faults": nem.counts,
        "restart_s_max": round(max(nem.restart_s), 2) if nem.restart_s else None,
        "high_watermarks": ends,
        "phases": {k: round(v - phases["warmup"], 1) for k, v in phases.items()},
        "checker": result.to_json(),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(result.summary())
    try:
        import plot
        plot.plot(history_path, os.path.join(out, "latency.png"))
        print(f"chaos: latency and availability over time: {os.path.join(out, 'latency.png')}")
    except ImportError as e:
        print(f"!!!!!! chaos: no plot ({e}): install matplotlib (tests/clients/requirements.txt)")
    print(f"chaos: faults injected {nem.counts}; restart took at most "
          f"{summary['restart_s_max']}s; high watermarks {ends}")
    bad = {a: n for a, n in result.anomaly_counts().items()
           if n and a not in allowed and a not in result.allowed_kinds()}
    return bad, summary


def dead_workers(workers):
    return [f"{w.name}: {w.error!r}" for w in workers if w.error is not None]


def main(argv=None):
    args = parse_args(argv)
    bad, summary = run(args)
    if bad:
        print(f"chaos: ANOMALIES {bad} (seed {summary['seed']}, history {summary['history']})")
        return 1
    print(f"chaos: no anomaly (seed {summary['seed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
