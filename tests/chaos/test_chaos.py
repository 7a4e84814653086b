"""The fault suite's short runs against real brokers, as CI runs them.

- Every fault kind at least once, idempotent acks=all producers, assign and subscribe
  consumers: no anomaly beyond those Kafka allows.
- Three nodes in network namespaces, the topic replicated on all three, every cluster fault
  kind at least once (leader kills, pauses, isolation, a rolling restart): no anomaly. Skipped,
  loudly, where network namespaces are unavailable (not root, no `ip`/`nft`).
- Simulated power cuts (a broker built with the `fault-switches` feature, no switch on):
  nothing acknowledged is lost.
- Mutation evidence: a broker built with the `fault-switches` feature, one switch at a time,
  each breaking one safety rule: the suite must report the anomaly that rule prevents, by
  name. Without such a binary (SHOAL_FAULT_BIN) these are skipped, loudly.
"""

import os
import random
import subprocess

import pytest

import chaos
import netns
import nemesis

SEED = int(os.environ.get("SHOAL_CHAOS_SEED", str(random.randrange(1 << 31))))
FAULT_BIN = os.environ.get("SHOAL_FAULT_BIN")
# Runs a mutation gets to show its anomaly (see test_mutation_is_reported).
MUTATION_ATTEMPTS = 3


def run(tmp_path, *extra, env=None, monkeypatch=None, seed=SEED):
    if env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    args = chaos.parse_args(["--seed", str(seed), "--out", str(tmp_path), *extra])
    return chaos.run(args)


def acknowledged(summary):
    return summary["checker"]["summary"]["acknowledged_sends"]


@pytest.mark.parametrize("consume", ["assign", "subscribe"])
def test_every_fault_kind_no_anomaly(tmp_path, consume):
    bad, summary = run(tmp_path, "--time", "45", "--every-kind", "--consume", consume)
    print(summary)
    assert not bad, f"anomalies {bad} (seed {SEED}, history {summary['history']})"
    expected = {"kill", "term", "pause"} | ({"fill"} if os.geteuid() == 0 else set())
    assert expected <= set(summary["faults"]), f"faults injected: {summary['faults']}"
    # The run did work around the faults: a run that acknowledged nothing checks nothing.
    assert acknowledged(summary) >= 200, summary["checker"]["summary"]


def test_cluster_faults_no_anomaly(tmp_path):
    """Three replicated nodes: leaders killed, paused and cut off, any node killed, a rolling
    restart; idempotent acks=all producers must lose and duplicate nothing, and a group's
    committed offsets must never go back (they are replicated: a coordinator that moves
    starts from every acknowledged commit)."""
    ok, reason = netns.available()
    if not ok:
        pytest.skip(f"SKIPPED LOUDLY: no network namespaces here ({reason}): the cluster "
                    f"faults not run")
    bad, summary = run(tmp_path, "--nodes", "3", "--time", "60", "--every-kind")
    print(summary)
    assert not bad, (f"anomalies {bad} (seed {SEED}, history {summary['history']}, broker "
                     f"logs {summary['broker_logs']})")
    assert set(nemesis.CLUSTER_KINDS) <= set(summary["faults"]), \
        f"faults injected: {summary['faults']}"
    assert acknowledged(summary) >= 200, summary["checker"]["summary"]


def test_power_cuts_lose_nothing_acknowledged(tmp_path):
    """Simulated power cuts (every write not covered by a completed sync lost): the broker's
    durability claim itself. Needs the fault-switches build for the cut (no switch on)."""
    if not FAULT_BIN:
        pytest.skip("SKIPPED LOUDLY: no SHOAL_FAULT_BIN (a broker built with "
                    "--features fault-switches): power cuts not run")
    bad, summary = run(tmp_path, "--bin", FAULT_BIN, "--time", "30", "--faults", "powercut,kill",
                       "--every-kind", "--interval", "1", "3")
    print(summary)
    assert not bad, f"anomalies {bad} (seed {SEED}, history {summary['history']})"
    assert summary["faults"].get("powercut", 0) >= 3, summary["faults"]
    assert acknowledged(summary) >= 200, summary["checker"]["summary"]


MUTATIONS = [
    # switch, faults that expose it, the anomalies any one of which shows it, runner arguments
    ("ack-before-sync", "powercut", {"lost-write", "inconsistent-offsets", "unseen"}, ()),
    ("no-idempotent-dedup", "kill,pause", {"duplicate"}, ()),
    # A consumer that read a batch the cut then took back either sees another value at its
    # offset later, or (when the producer's retry rewrote the same value there) is reset by
    # OFFSET_OUT_OF_RANGE to an earlier offset than it had read: a nonmonotonic poll.
    # One key, so every producer writes the one partition: with a partition per producer, its
    # idempotent retries often rewrite exactly the lost batches at the same offsets before
    # the consumer comes back, and the history is then indistinguishable from a correct one
    # (CI saw 23 cuts and no anomaly with 6 keys, seed 18754894; 2 keys missed it too, seed
    # 222). With every producer on it, the lost batches come back in another order.
    ("serve-above-hwm", "powercut", {"lost-write", "inconsistent-offsets", "nonmonotonic-poll",
                                     "poll-skip"}, ("--keys", "1")),
]


@pytest.mark.parametrize("switch,faults,expected,extra", MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_mutation_is_reported(tmp_path, monkeypatch, switch, faults, expected, extra):
    if not FAULT_BIN:
        pytest.skip("SKIPPED LOUDLY: no SHOAL_FAULT_BIN (a broker built with "
                    "--features fault-switches): mutation evidence not run")
    monkeypatch.setenv("SHOAL_FAULT_SWITCHES", switch)
    # Exposure is a matter of timing (a cut must land while a consumer holds what it takes
    # back): a loaded machine makes fewer cuts in the same time (CI once saw 15 instead of
    # about 23, and neither power-cut mutation showed). Up to MUTATION_ATTEMPTS runs, each
    # with its own seed; one run that reports the anomaly is the evidence.
    tried = []
    for attempt in range(MUTATION_ATTEMPTS):
        seed = SEED + attempt
        bad, summary = run(tmp_path / f"attempt{attempt}", "--bin", FAULT_BIN, "--time", "40",
                           "--faults", faults, "--interval", "0.5", "1.5", *extra, seed=seed)
        print(summary)
        if set(bad) & expected:
            return
        tried.append((seed, bad, summary["faults"]))
    pytest.fail(f"switch {switch}: expected one of {sorted(expected)}; the checker found "
                f"none in {len(tried)} runs (seed, anomalies, faults): {tried}")


def test_release_build_refuses_fault_switches(tmp_path):
    """The switches exist only in the fault-switches build: the normal binary must refuse to
    start when asked for one, so a mutation run can never pass on the correct broker."""
    env = dict(os.environ, SHOAL_FAULT_SWITCHES="ack-before-sync")
    proc = subprocess.run([os.environ["SHOAL_BIN"], "start", "--data-dir", str(tmp_path / "data")],
                          env=env, capture_output=True, timeout=30)
    assert proc.returncode != 0
    assert b"built without the `fault-switches` feature" in proc.stderr, proc.stderr[-2000:]
