#!/usr/bin/env bash
# Smoke test of the benchmark harness, run by scripts/test-all: compare.sh with a tiny
# workload (200 records/s for 3 s, 2 producers, 4 partitions) against a fresh Shoal in both
# durability modes, with fio and the broker-side scrape. Checks that every record published
# was acknowledged and consumed, that no errors were counted, that fio and the broker's own
# latencies were recorded and that the plots exist. It measures nothing: benchmark figures
# come from the commands in benches/RESULTS.md on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(mktemp -d /tmp/loadgen-smoke.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
workload="$OUT/smoke.toml"
cat >"$workload" <<'TOML'
name = "smoke"
partitions_per_topic = 4
message_size = 512
producers_per_topic = 2
consumers_per_topic = 2
producer_rate = 200
acks = "all"
linger_ms = 0
warmup_seconds = 1
test_duration_seconds = 3
TOML
OUT="$OUT/results" VARIANTS="fsync caching" FIO_SECONDS=1 KAFKA_PORT=19392 ADMIN_PORT=19394 \
  benches/loadgen/compare.sh "$workload" >"$OUT/compare.log" 2>&1 ||
  { tail -40 "$OUT/compare.log"; echo "smoke: compare.sh failed" >&2; exit 1; }
python3 - "$OUT/results" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
failures = []
for variant in ("fsync", "caching"):
    path = out / f"smoke-shoal-{variant}.json"
    if not path.exists():
        failures.append(f"{path.name} missing")
        continue
    r = json.loads(path.read_text())
    pub, cons = r["published_records"], r["consumed_records"]
    # 200 records/s over 3 measured seconds.
    if not 500 <= pub <= 700:
        failures.append(f"{variant}: published {pub} records, expected about 600")
    if cons != pub:
        failures.append(f"{variant}: consumed {cons} of {pub} records")
    if r["publish_errors"] or r["consume_errors"]:
        failures.append(f"{variant}: errors {r['publish_errors']} / {r['consume_errors']}")
    if not 0 < r["publish_latency"]["p50_ms"] <= r["publish_latency"]["max_ms"]:
        failures.append(f"{variant}: publish latency {r['publish_latency']}")
    for png in (f"smoke-shoal-{variant}-percentiles.png", f"smoke-shoal-{variant}-timeline.png"):
        if not (out / png).exists():
            failures.append(f"{png} missing")
summary = (out / "summary.md").read_text()
broker_rows = [l for l in summary.splitlines() if l.startswith("| smoke-shoal-") and "≤" in l]
if len(broker_rows) != 2:
    failures.append(f"broker-side rows: {broker_rows}")
fio_rows = [l for l in summary.splitlines() if l.startswith("| smoke | 4096 |")]
if len(fio_rows) != 2:  # one writer, and 2 writers at the workload's rate
    failures.append(f"fio rows: {fio_rows}")
if failures:
    print("\n".join(failures))
    print(summary)
    sys.exit(1)
print(f"loadgen smoke: ok ({', '.join(broker_rows)})")
PY
