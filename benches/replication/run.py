#!/usr/bin/env python3
"""Replication factor 3 on three nodes against one node, same run, same machine (issue 15).

Every broker runs in its own network namespace (tests/clients/netns.py: veth pairs on one
bridge, so the single node and the cluster take the same network path from the load
generator on the host). For each workload, one after the other in this invocation:

  * `single`: one Shoal node (no cluster settings), topics of replication factor 1;
  * `rf3`:   three Shoal nodes (a cluster, 3 seeds), topics of replication factor 3, acks=all
             answered once a majority has fdatasync'ed the batch.

Workloads (1 KiB records, acks=all, one producer, linger.ms=0): a fixed moderate rate (p50,
p99, p99.9 of the publish latency) and the maximum rate (MB/s), on 1 and 64 partitions. The
load generator is `benches/loadgen` (librdkafka); its table rows are collected into one
Markdown file with the machine.

    benches/replication/run.sh [--seconds 20] [--warmup 5] [--rate 2000] [--out DIR]

Needs root (namespaces), a release build of shoal and loadgen:
    cargo build --release -p shoal-server -p shoal-loadgen
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "clients"))

import netns  # noqa: E402

RPC_PORT = 33145
ADMIN_PORT = 9644
WORKLOAD = os.path.join(ROOT, "benches", "loadgen", "workloads", "1kib-rate2000-1p-1part.toml")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, kernel {platform.release()}"


def start_nodes(c, variant, data_root, binary, cores):
    procs = []
    if variant == "single":
        d = os.path.join(data_root, "single")
        procs.append(netns.start_shoal(c, 1, binary, d, port=9092, admin_port=ADMIN_PORT,
                                       cores=cores))
        return procs, f"{c.addr(1)}:9092", 1
    seeds = ",".join(f"{i}@{c.addr(i + 1)}:{RPC_PORT}" for i in range(3))
    for i in range(3):
        env = {"SHOAL_NODE_ID": str(i), "SHOAL_SEEDS": seeds,
               "SHOAL_RPC_ADDR": f"{c.addr(i + 1)}:{RPC_PORT}"}
        d = os.path.join(data_root, f"rf3-node{i}")
        procs.append(netns.start_shoal(c, i + 1, binary, d, port=9092, admin_port=ADMIN_PORT,
                                       cores=cores, env=env))
    # Every broker registered and unfenced before topics are created.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            out = subprocess.run(["curl", "-s", "-m", "2",
                                  f"http://{c.addr(1)}:{ADMIN_PORT}/v1/cluster"],
                                 capture_output=True, text=True, timeout=5).stdout
            view = json.loads(out)
            brokers = view.get("brokers", [])
            if len(brokers) == 3 and not any(b["fenced"] for b in brokers):
                break
        except (ValueError, subprocess.SubprocessError):
            pass
        time.sleep(0.5)
    else:
        raise SystemExit("the three nodes did not form a cluster in 60 s")
    return procs, ",".join(f"{c.addr(i + 1)}:9092" for i in range(3)), 3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=20, help="measured seconds per workload")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rate", type=float, default=2000, help="the fixed rate, records/s")
    p.add_argument("--partitions", default="1,64")
    p.add_argument("--cores", type=int, default=1, help="cores per broker")
    p.add_argument("--out", default=f"/tmp/shoal-bench-replication-{os.getpid()}")
    p.add_argument("--data-root", default="/var/tmp", help="must allow O_DIRECT")
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "shoal"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target", "release", "loadgen"))
    args = p.parse_args()
    for path in (args.bin, args.loadgen):
        if not os.path.exists(path):
            raise SystemExit(f"{path} missing: cargo build --release -p shoal-server -p shoal-loadgen")
    os.makedirs(args.out, exist_ok=True)
    md = os.path.join(args.out, "rows.md")
    partitions = [int(x) for x in args.partitions.split(",")]
    data_root = os.path.join(args.data_root, f"shoal-bench-replication-{os.getpid()}")
    runs = []
    jsons = []
    with netns.Cluster(3, workdir=os.path.join(args.out, "netns")) as c:
        for variant in ("single", "rf3"):
            shutil.rmtree(data_root, ignore_errors=True)
            procs, brokers, rf = start_nodes(c, variant, data_root, args.bin, args.cores)
            try:
                for parts in partitions:
                    for rate in (args.rate, 0):
                        kind = f"rate{int(rate)}" if rate else "max"
                        label = f"{variant}-{kind}-{parts}part"
                        cmd = [args.loadgen, "run", "--workload", WORKLOAD, "--brokers", brokers,
                               "--label", label, "--out-dir", args.out, "--markdown", md,
                               "--rate", str(rate), "--partitions", str(parts),
                               "--replication-factor", str(rf), "--warmup", str(args.warmup),
                               "--duration", str(args.seconds), "--quiet"]
                        print("+", " ".join(cmd), flush=True)
                        done = subprocess.run(cmd, timeout=args.warmup + args.seconds + 120)
                        runs.append((label, done.returncode))
                        jsons.append(os.path.join(args.out, f"{label}.json"))
            finally:
                for proc in procs:
                    proc.stop()
                shutil.rmtree(data_root, ignore_errors=True)
    with open(os.path.join(args.out, "summary.md"), "w") as out:
        out.write(f"Machine: {machine()}; brokers with --cores {args.cores}, each in its own "
                  f"network namespace (veth + bridge), the load generator on the host.\n\n")
        found = [j for j in jsons if os.path.exists(j)]
        table = subprocess.run([args.loadgen, "table"] + found, capture_output=True, text=True)
        out.write(table.stdout)
    print(open(os.path.join(args.out, "summary.md")).read())
    failed = [label for label, rc in runs if rc != 0]
    if failed:
        raise SystemExit(f"runs failed: {failed}")


if __name__ == "__main__":
    main()
