#!/usr/bin/env python3
"""Summarises Shoal /metrics scrapes around a loadgen run: the broker-side
Produce request latency (frame read to response queued) and the durable-write latency (the
O_DSYNC write of a chunk), both summed over cores, as bucket upper bounds at p50/p99/p99.9.
Buckets are coarse (50 µs .. 1 s), so a figure means "at or below this bound". Splitting the
client-side publish latency this way shows whether a tail comes from the broker or from the
client side (linger, client threads, scheduling on a shared machine).

    broker-latency.py LABEL END_SCRAPE [START_SCRAPE]   ->  one Markdown table row

With START_SCRAPE (taken when the measured window began) the counts are the difference, i.e.
the measured window plus the run's tail; without it (or if it is missing/empty) the whole run
including warm-up, and the label says so.
"""
import re
import sys


def scrape(path):
    buckets = {"produce": {}, "durable": {}}
    for line in open(path):
        m = re.match(r'(shoal_request_latency_seconds|shoal_durable_write_latency_seconds)_bucket\{(.*)\} (\d+)', line)
        if not m:
            continue
        name, labels, count = m.group(1), m.group(2), int(m.group(3))
        le = re.search(r'le="([^"]+)"', labels).group(1)
        if name == "shoal_request_latency_seconds":
            if 'api="Produce"' not in labels:
                continue
            kind = "produce"
        else:
            kind = "durable"
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[kind][bound] = buckets[kind].get(bound, 0) + count
    return buckets


def quantiles(cumulative):
    if not cumulative:
        return "n/a", 0
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total == 0:
        return "n/a", 0
    out = []
    for q in (0.5, 0.99, 0.999):
        for b in bounds:
            if cumulative[b] >= q * total:
                out.append("inf" if b == float("inf") else f"{b * 1e3:g}")
                break
    return " / ".join(f"≤{x}" for x in out), total


label = sys.argv[1]
buckets = scrape(sys.argv[2])
start_path = sys.argv[3] if len(sys.argv) > 3 else None
try:
    start = scrape(start_path) if start_path else None
except OSError:
    start = None
if start and any(start[k] for k in start):
    for kind in buckets:
        for bound in buckets[kind]:
            buckets[kind][bound] -= start[kind].get(bound, 0)
else:
    label += " (whole run)"
produce, produce_n = quantiles(buckets["produce"])
durable, durable_n = quantiles(buckets["durable"])
print(f"| {label} | {produce_n} | {produce} | {durable_n} | {durable} |")
