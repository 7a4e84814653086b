#!/usr/bin/env python3
"""Latency and availability over time of a fault-suite run, with the faults marked, as a PNG.

    tests/chaos/plot.py history.jsonl out.png

Top: the latency of every completed send (ok in blue, info in red: the op gave up), log
scale. Bottom: acknowledged sends per second. Shaded spans are the faults, from the nemesis
event that began one to the event that healed it (a restart, SIGCONT, the space freed).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from history import HistoryReader  # noqa: E402

# The nemesis event that ends each fault kind's span.
ENDS = {"kill": "start", "term": "start", "powercut": "start", "stop": "cont", "fill": "free"}
COLOURS = {"kill": "tab:red", "term": "tab:orange", "powercut": "tab:purple",
           "stop": "tab:olive", "fill": "tab:brown"}


def load(path):
    invoked = {}
    sends = []      # (t_s, latency_s, type)
    faults = []     # (kind, t_begin_s, t_end_s)
    open_fault = None
    for ev in HistoryReader(path):
        t = ev["time_ns"] / 1e9
        if ev["process"] == "nemesis":
            f = ev["f"]
            if open_fault is None and f in ENDS:
                open_fault = (f, t)
            elif open_fault is not None and f == ENDS[open_fault[0]]:
                faults.append((open_fault[0], open_fault[1], t))
                open_fault = None
            continue
        if ev["type"] == "invoke":
            invoked[ev["process"]] = (ev["f"], t)
            continue
        f, t0 = invoked.pop(ev["process"], (None, None))
        if f == "send" and t0 is not None:
            sends.append((t, t - t0, ev["type"]))
    return sends, faults


def plot(path, out):
    sends, faults = load(path)
    fig, (lat, rate) = plt.subplots(2, 1, sharex=True, figsize=(12, 6.5),
                                    gridspec_kw={"height_ratios": [2, 1]})
    for kind, colour in (("ok", "tab:blue"), ("info", "tab:red"), ("fail", "black")):
        pts = [(t, l) for t, l, ty in sends if ty == kind]
        if pts:
            lat.scatter([p[0] for p in pts], [p[1] * 1000 for p in pts], s=2, c=colour,
                        label=f"send {kind} ({len(pts)})", rasterized=True)
    lat.set_yscale("log")
    lat.set_ylabel("send latency (ms)")
    lat.legend(loc="upper right", markerscale=4)
    end = max([t for t, _, _ in sends] + [0])
    buckets = [0] * (int(end) + 1)
    for t, _, ty in sends:
        if ty == "ok":
            buckets[int(t)] += 1
    rate.plot(range(len(buckets)), buckets, lw=0.8, c="tab:blue")
    rate.set_ylabel("acked sends / s")
    rate.set_xlabel("seconds since the run began")
    seen = set()
    for kind, t0, t1 in faults:
        for ax in (lat, rate):
            ax.axvspan(t0, max(t1, t0 + 0.2), color=COLOURS.get(kind, "grey"), alpha=0.25,
                       label=None if kind in seen or ax is lat else kind)
        seen.add(kind)
    if faults:
        rate.legend(loc="upper right", fontsize=8, ncol=len(seen))
    fig.suptitle(f"{path}: {len(sends)} sends, {len(faults)} faults")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    plot(sys.argv[1], sys.argv[2])
