#!/usr/bin/env python3
"""The fault suite's runner: clients against a real Shoal broker while faults are injected,
every operation recorded, then the history checked.

    tests/chaos/run.sh chaos.py --time 60 --seed 7                # one node, every fault kind
    tests/chaos/run.sh chaos.py --time 1800 --faults kill,pause --consume subscribe
    tests/chaos/run.sh chaos.py --nodes 3 --time 60 --every-kind   # three nodes, cluster faults

Phases: warm-up (clients only), faults (one at a time, at random intervals), heal (every
fault undone, the broker answering), recovery (clients only), final read (every key from the
beginning to its high watermark). Then the checker (checker.py) reads the history; the exit
status is 0 only if it found no anomaly beyond those Kafka allows by design.

Everything is bounded: the phases' times, the operations per worker (--max-ops), and the
final read's timeout. Traffic goes to loopback only. The broker is started and stopped here.

With --nodes 3 (root, `ip` and `nft`): three nodes, each in its own network namespace on a
bridge (tests/clients/netns.py), the topic of replication factor 3 (one Raft group per
partition), the clients bootstrapped with all three, and the cluster faults (nemesis.py). The
namespaces, the bridge and every node are removed at the end, also on an error or Ctrl-C.
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
import cluster as cluster_mod  # noqa: E402
import conftest  # noqa: E402
from conftest import Broker  # noqa: E402  (the client tests' broker process wrapper)
import netns  # noqa: E402  (tests/clients/netns.py)
from history import HistoryReader, HistoryWriter  # noqa: E402
from workload import Config, Processes, Values, Worker, final_read, key_of  # noqa: E402

FILL_FS_MIB = 512
DEFAULT_FAULTS = "kill,term,pause,fill"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--time", type=float, default=60.0, help="seconds of the fault phase")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the first fault")
    p.add_argument("--recovery", type=float, default=10.0, help="seconds after the heal")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed when chosen)")
    p.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                   help="1: one broker on loopback; 3: three nodes in network namespaces, "
                        "the topic replicated on all three (needs root, ip, nft)")
    p.add_argument("--faults", default=None,
                   help="comma-separated kinds; one node: " + ",".join(nemesis_mod.KINDS) +
                        f" (default {DEFAULT_FAULTS}); three nodes: " +
                        ",".join(nemesis_mod.CLUSTER_KINDS) + " (default all)")
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


def create_topic(bootstrap, topic, partitions, replication_factor=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # 1 MiB segments (the smallest Kafka allows): they roll every few seconds under the
    # workload, so a full disk is met by a new segment file and not only by appends into
    # space a segment reserved ahead.
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                   config={"segment.bytes": str(1 << 20)})
    futs = admin.create_topics([new],
                               operation_timeout=15, request_timeout=15)
    for f in futs.values():
        f.result(timeout=20)


def run(args):
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    allowed_kinds = nemesis_mod.KINDS if args.nodes == 1 else nemesis_mod.CLUSTER_KINDS
    if args.faults is None:
        args.faults = DEFAULT_FAULTS if args.nodes == 1 else ",".join(nemesis_mod.CLUSTER_KINDS)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(allowed_kinds)
    if unknown:
        raise SystemExit(f"fault kinds {sorted(unknown)} unknown with --nodes {args.nodes} "
                         f"(known: {','.join(allowed_kinds)})")
    if args.nodes == 3:
        ok, reason = netns.available()
        if not ok:
            raise SystemExit(f"--nodes 3 needs network namespaces: {reason}")
    out = args.out or tempfile.mkdtemp(prefix="shoal-chaos-")
    os.makedirs(out, exist_ok=True)
    print(f"chaos: seed {seed} (rerun with --seed {seed}), output in {out}", flush=True)

    binary = os.path.abspath(args.bin) if args.bin else None
    broker = cluster = loopfs = None
    if args.nodes == 1:
        broker = Broker(os.path.join(out, "broker"), cores=args.cores,
                        **({"binary": binary} if binary else {}))
        if "fill" in kinds:
            if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
                print("!!!!!! chaos: SKIPPED the fill fault: it needs root and mkfs.ext4 !!!!!!",
                      flush=True)
                kinds.remove("fill")
            else:
                # Only the data dir is on the small file system: the broker's log stays
                # readable after the run (and writing it never fails for want of space).
                loopfs = LoopFs(out, args.fill_fs_mib)
                broker.data_dir = os.path.join(loopfs.mount, "data")
                os.makedirs(broker.data_dir, exist_ok=True)
    else:
        cluster = cluster_mod.ShoalCluster(out, binary or conftest.SHOAL_BIN, cores=args.cores,
                                           n=args.nodes)
    history_path = os.path.join(out, "history.jsonl")
    history = HistoryWriter(history_path)
    stop = threading.Event()
    workers = []
    nem_rng = random.Random(rng.random())
    keys = [key_of(p) for p in range(args.keys)]
    if cluster is None:
        nem = nemesis_mod.Nemesis(broker, history, nem_rng,
                                  fill_dir=broker.data_dir if loopfs else None)
    else:
        nem = nemesis_mod.ClusterNemesis(cluster, history, nem_rng, keys)
    phases = {}
    try:
        topic = f"chaos-{seed}"
        if cluster is None:
            broker.start()
            bootstrap = broker.bootstrap
            create_topic(bootstrap, topic, args.keys)
        else:
            print(f"chaos: starting {args.nodes} nodes in network namespaces", flush=True)
            cluster.up()
            bootstrap = cluster.bootstrap
            create_topic(bootstrap, topic, args.keys, replication_factor=args.nodes)
        cfg = Config(bootstrap, topic, keys, mode=args.mode, consume=args.consume,
                     max_ops=args.max_ops, client_log=os.path.join(out, "clients.log"))
        if cluster is not None:
            cluster.logger, cluster.topic, cluster.partitions = cfg.logger, topic, args.keys
            views = cluster.wait_leaders(full_isr=True)
            print(f"chaos: topic {topic} on {bootstrap}, leaders "
                  f"{ {key_of(p): v[0] for p, v in sorted(views.items())} }", flush=True)
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
        # On an error, let the workers finish their operation (at most the op timeout) before
        # the history closes under them.
        deadline = time.monotonic() + 15
        for w in workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        history.close()
        if broker is not None:
            broker.stop()
            broker.force_kill()
        if loopfs is not None:
            loopfs.close()
        if cluster is not None:
            # Every node and namespace goes, whatever happened; a teardown that fails is
            # reported, and raised unless an error is already on its way out.
            pending = sys.exc_info()[1]
            try:
                if cluster.net is not None and cluster.net._is_up:
                    with open(os.path.join(out, "cluster-views.json"), "w") as f:
                        json.dump(cluster.views(), f, indent=1)  # for the post-mortem
            except Exception as e:
                print(f"chaos: no cluster views: {e}", flush=True)
            try:
                cluster.down()
            except Exception as e:
                print(f"!!!!!! chaos: cluster teardown failed: {e}", flush=True)
                if pending is None:
                    raise

    result = checker.check(HistoryReader(history_path))
    allowed = {a for a in args.allow.split(",") if a}
    summary = {
        "seed": seed,
        "history": history_path,
        "nodes": args.nodes,
        "mode": args.mode,
        "consume": args.consume,
        "faults": nem.counts,
        "restart_s_max": round(max(nem.restart_s), 2) if nem.restart_s else None,
        "high_watermarks": ends,
        "phases": {k: round(v - phases["warmup"], 1) for k, v in phases.items()},
        "broker_logs": [broker.log_path] if cluster is None else cluster.log_paths(),
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
    if cluster is not None and not bad and os.environ.get("SHOAL_KEEP_DATA") != "1":
        # Over 1 GiB a node is preallocated; the history and the logs stay. With an anomaly
        # (or SHOAL_KEEP_DATA=1) the data dirs stay too.
        cluster.drop_data()
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
