#!/usr/bin/env bash
# Runs workloads against (a) Shoal with default durability (fsync before ack), (b) Shoal with
# write.caching=true (ack after the DMA write), (c) Tansu with in-memory storage when the
# `tansu` binary is installed (opt-in: `cargo install tansu --features dynostore,libsql`, ~20
# min build; skipped when absent), (d) opt-in Apache Kafka 4.1.1 through benches/peers/kafka.sh
# (KRaft from Maven Central jars, Java 17): kafka-default / kafka-fsync (one node; page cache,
# or log.flush.interval.messages=1 = an fsync per batch) and kafka3-default / kafka3-fsync (3
# nodes on 127.0.0.1, RF 3, min.insync.replicas=2), each fresh per workload and JIT-warmed by
# $KAFKA_WARMUP seconds of the same workload on a throwaway topic first. Every Shoal run gets
# a fresh broker in a new directory under $DATA_ROOT (a real file system: O_DIRECT), started
# and awaited on /v1/status/ready, stopped with SIGTERM. fio's write+fdatasync latency for the
# workload's batch size runs on the same file system in the same invocation, and the machine is
# recorded next to the results.
#
#   benches/loadgen/compare.sh benches/loadgen/workloads/1kib-rate2000-1p-1part.toml [...]
#
# Environment: OUT (results dir, default /var/tmp/loadgen-results-<time>), DATA_ROOT
# (/var/tmp), CORES (2), LOADGEN_ARGS (extra `loadgen run` flags, e.g. "--duration 10"),
# VARIANTS ("fsync caching tansu"; also kafka-default kafka-fsync kafka3-default kafka3-fsync),
# FIO_SECONDS (10), TANSU_ARGS (extra tansu flags), KAFKA_WARMUP (JIT warm-up seconds before
# each Kafka run, 20; 0 = none), KAFKA_PROPS / KAFKA_HEAP_OPTS (see benches/peers/kafka.sh),
# BROKER_CPUS / CLIENT_CPUS (taskset CPU lists, e.g. 1 and 0: broker and load generator on
# separate CPUs, as OMB runs clients on other machines; unset: both share every CPU).
# Kafka nodes listen on KAFKA_PORT.. KAFKA_PORT+2 and KAFKA_PORT+100.. +102 (controllers).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,24p' "$0"; exit 2; }

OUT=${OUT:-/var/tmp/loadgen-results-$(date +%Y%m%d-%H%M%S)}
DATA_ROOT=${DATA_ROOT:-/var/tmp}
CORES=${CORES:-2}
VARIANTS=${VARIANTS:-fsync caching tansu}
FIO_SECONDS=${FIO_SECONDS:-10}
BROKER_CPUS=${BROKER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
KAFKA_PORT=${KAFKA_PORT:-19092}
ADMIN_PORT=${ADMIN_PORT:-19644}
KAFKA_WARMUP=${KAFKA_WARMUP:-20}
KAFKA_SH=$PWD/benches/peers/kafka.sh
for v in $VARIANTS; do
  case $v in
    fsync|caching|tansu|kafka-default|kafka-fsync|kafka3-default|kafka3-fsync) ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$OUT/fio"

if ! command -v fio >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio
  else
    echo "fio missing (apt-get install fio)" >&2; exit 1
  fi
fi
cargo build --release --locked -p shoal-server -p shoal-loadgen
SHOAL=$CARGO_TARGET_DIR/release/shoal
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
# Processes placed on CPU lists when asked (taskset execs the program, so $! stays the broker's
# pid); Shoal pins its cores inside its mask.
on_broker_cpus=(); [ -z "$BROKER_CPUS" ] || on_broker_cpus=(taskset -c "$BROKER_CPUS")
on_client_cpus=(); [ -z "$CLIENT_CPUS" ] || on_client_cpus=(taskset -c "$CLIENT_CPUS")

# --- the machine -----------------------------------------------------------------------------
dev=$(df --output=source "$DATA_ROOT" | tail -1)
{
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores online, broker --cores $CORES"
  echo "- placement: broker CPUs ${BROKER_CPUS:-all}, load generator CPUs ${CLIENT_CPUS:-all}"
  echo "- kernel: $(uname -r); fio: $(fio --version)"
  echo "- data dir: $DATA_ROOT on $dev ($(df --output=fstype "$DATA_ROOT" | tail -1); $(lsblk -dno NAME,ROTA,SIZE,MODEL "/dev/$(lsblk -no PKNAME "$dev" 2>/dev/null | head -1)" 2>/dev/null || lsblk -dno NAME,ROTA,SIZE "$dev" 2>/dev/null || echo unknown device))"
  echo "- load before the run: $(cut -d' ' -f1-3 /proc/loadavg); compiles running: $(pgrep -c 'rustc|cargo' || true)"
  case " $VARIANTS " in
    *" kafka"*) echo "- Kafka peer: Apache Kafka 4.1.1 (KRaft, combined nodes), $(java -version 2>&1 | head -1), heap ${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g} per node, JIT warm-up ${KAFKA_WARMUP} s per run" ;;
  esac
} | tee "$OUT/machine.md"

# A broker left running by an aborted run would keep the ports (a new Shoal refuses to start on
# them), so whatever this script started is stopped when it exits, however it exits.
# Kafka nodes are stopped through kafka.sh (SIGTERM, then SIGKILL after 30 s).
current_pid=""
current_kafka_dir=""
cleanup() {
  [ -z "$current_pid" ] || kill -TERM "$current_pid" 2>/dev/null || true
  if [ -n "$current_kafka_dir" ]; then
    "$KAFKA_SH" stop "$current_kafka_dir" || true
    rm -rf "$current_kafka_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # pid
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/v1/status/ready" >/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

run_fio() { # block size, name, [jobs, total writes/s] -> "p50 p99 p99.9 writes/s" of fdatasync (µs)
  # One writer at iodepth 1 is the physical baseline the targets use. With jobs > 1, that many
  # writers each fdatasync their own file at an equal share of the rate: the disk under the
  # same concurrency as many partitions syncing at once (explains, does not set, the target).
  local bs=$1 name=$2 jobs=${3:-1} rate=${4:-0} dir json
  dir=$(mktemp -d "$DATA_ROOT/loadgen-fio.XXXXXX")
  json="$OUT/fio/$name-$bs-jobs$jobs.json"
  local extra=()
  [ "$jobs" -le 1 ] || extra=(--numjobs="$jobs" --group_reporting --rate_iops=$(( (rate + jobs - 1) / jobs )))
  fio --name=fdatasync --directory="$dir" --ioengine=io_uring --direct=1 --rw=write \
      --fdatasync=1 --bs="$bs" --size=256m --time_based --runtime="$FIO_SECONDS" \
      --iodepth=1 "${extra[@]}" --output-format=json >"$json"
  rm -rf "$dir"
  python3 - "$json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
s = j["sync"]["lat_ns"]
p = s["percentile"]
us = lambda k: p[k] / 1000
iops = j["write"]["iops"]
print(f"{us('50.000000'):.0f} {us('99.000000'):.0f} {us('99.900000'):.0f} {iops:.0f}")
PY
}

run_loadgen() { # workload label [loadgen args...]: one run against $LOADGEN_BROKERS or KAFKA_PORT
  local workload=$1 label=$2; shift 2
  # shellcheck disable=SC2086
  "${on_client_cpus[@]}" "$LOADGEN" run --workload "$workload" --brokers "${LOADGEN_BROKERS:-127.0.0.1:$KAFKA_PORT}" --label "$label" \
      --out-dir "$OUT" --markdown "$OUT/rows.md" "$@" ${LOADGEN_ARGS:-} | tee "$OUT/$label.log" || true
}

run_shoal() { # workload label [loadgen args...]
  local workload=$1 label=$2; shift 2
  local dir pid
  local attempt
  for attempt in 1 2 3; do
    sleep 1 # let the previous broker's sockets and locked memory go
    dir=$(mktemp -d "$DATA_ROOT/loadgen-shoal.XXXXXX")
    "${on_broker_cpus[@]}" "$SHOAL" start --data-dir "$dir" --kafka-addr "127.0.0.1:$KAFKA_PORT" \
        --admin-addr "127.0.0.1:$ADMIN_PORT" --cores "$CORES" >"$OUT/$label.broker.log" 2>&1 &
    pid=$!
    current_pid=$pid
    wait_ready "$pid" && break
    # Seen here: a broker that logs "shoal started" but never binds its listeners.
    echo "$label: broker not ready after 20 s (attempt $attempt), restarting" | tee -a "$OUT/not-ready.log" >&2
    cp "$OUT/$label.broker.log" "$OUT/$label.broker-not-ready-$attempt.log"
    kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    [ "$attempt" -lt 3 ] || return 0
  done
  # The broker's own view of the measured window: /metrics when loadgen's window begins (it
  # creates the marker file then) and after the run; the script subtracts the two.
  local marker="$OUT/$label.window-start" poller
  rm -f "$marker" "$OUT/$label.metrics-start.txt"
  ( for _ in $(seq 6000); do
      if [ -e "$marker" ]; then
        curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/$label.metrics-start.txt" || true
        break
      fi
      sleep 0.05
    done ) &
  poller=$!
  run_loadgen "$workload" "$label" --window-marker "$marker" "$@"
  kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true
  curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/$label.metrics.txt" &&
    benches/loadgen/scripts/broker-latency.py "$label" "$OUT/$label.metrics.txt" \
      "$OUT/$label.metrics-start.txt" >>"$OUT/broker.md" || true
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

run_tansu() { # workload label
  local workload=$1 label=$2 pid
  "${on_broker_cpus[@]}" tansu --kafka-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --kafka-advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine memory://tansu/ ${TANSU_ARGS:-} >"$OUT/$label.broker.log" 2>&1 &
  pid=$!
  current_pid=$pid
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.1; done
  run_loadgen "$workload" "$label"
  kill -TERM "$pid"; wait "$pid" || true
}

run_kafka() { # workload label single|cluster3 default|fsync
  local workload=$1 label=$2 topology=$3 durability=$4 dir i
  local LOADGEN_BROKERS rf=()
  [ "$topology" = single ] || rf=(--replication-factor 3)
  sleep 1 # let the previous broker's sockets go
  dir=$(mktemp -d "$DATA_ROOT/loadgen-kafka.XXXXXX")
  current_kafka_dir=$dir
  if ! LOADGEN_BROKERS=$(BROKER_CPUS="$BROKER_CPUS" "$KAFKA_SH" start "$topology" "$durability" \
      "$dir" "$KAFKA_PORT" 2>"$OUT/$label.broker.log"); then
    echo "$label: Kafka did not start (see $OUT/$label.broker.log and $label.node*.server.log)" |
      tee -a "$OUT/not-ready.log" >&2
  else
    echo "$label: Kafka $topology $durability on $LOADGEN_BROKERS"
    if [ "$KAFKA_WARMUP" -gt 0 ]; then
      # A fresh JVM interprets, then JIT-compiles, its hot paths: the first ~10 s of a new
      # broker run slower (seconds of publish latency on a loaded 2-core machine). Warm it
      # with the same workload on its own topic (deleted afterwards), outside $OUT's tables.
      # LOADGEN_ARGS apply too (e.g. --rate, --producer-config), except its durations.
      local a skip=0 extra=()
      for a in ${LOADGEN_ARGS:-}; do
        if [ "$skip" -eq 1 ]; then skip=0; continue; fi
        case $a in
          --duration|--warmup) skip=1 ;;
          --duration=*|--warmup=*) ;;
          *) extra+=("$a") ;;
        esac
      done
      echo "$label: JIT warm-up, $KAFKA_WARMUP s"
      "${on_client_cpus[@]}" "$LOADGEN" run --workload "$workload" --brokers "$LOADGEN_BROKERS" \
          --label "$label" --out-dir "$OUT/kafka-warmup" --warmup 0 --duration "$KAFKA_WARMUP" \
          --quiet "${rf[@]}" "${extra[@]}" >"$OUT/kafka-warmup-$label.log" 2>&1 ||
        echo "$label: warm-up run failed (see $OUT/kafka-warmup-$label.log)" >&2
    fi
    run_loadgen "$workload" "$label" "${rf[@]}"
  fi
  "$KAFKA_SH" stop "$dir" 2>>"$OUT/$label.broker.log" || true
  current_kafka_dir=""
  for i in 1 2 3; do
    [ -d "$dir/node$i" ] || continue
    cp "$dir/node$i/server.log" "$OUT/$label.node$i.server.log" 2>/dev/null || true
    cp "$dir/node$i/gc.log" "$OUT/$label.node$i.gc.log" 2>/dev/null || true
  done
  rm -rf "$dir"
}

: >"$OUT/fio.md"
: >"$OUT/broker.md"
for workload in "$@"; do
  name=$(basename "$workload" .toml)
  read -r bs producers rate < <("$LOADGEN" fio-plan "$workload")
  # fio right before this workload's runs, so both see the same disk weather.
  read -r p50 p99 p999 iops < <(run_fio "$bs" "$name")
  echo "| $name | $bs | 1 | max | $iops | $p50 | $p99 | $p999 |" >>"$OUT/fio.md"
  echo "fio write+fdatasync bs=$bs: $iops/s, fdatasync p50 $p50 µs p99 $p99 µs p99.9 $p999 µs"
  if [ "$producers" -gt 1 ] && [ "$rate" -gt 0 ]; then
    read -r p50 p99 p999 iops < <(run_fio "$bs" "$name" "$producers" "$rate")
    echo "| $name | $bs | $producers | $rate | $iops | $p50 | $p99 | $p999 |" >>"$OUT/fio.md"
    echo "fio $producers writers, $rate writes/s in all: fdatasync p50 $p50 µs p99 $p99 µs p99.9 $p999 µs"
  fi
  for v in $VARIANTS; do
    case $v in
      fsync) run_shoal "$workload" "$name-shoal-fsync" ;;
      caching) run_shoal "$workload" "$name-shoal-caching" --topic-config write.caching=true ;;
      tansu)
        if command -v tansu >/dev/null; then run_tansu "$workload" "$name-tansu"
        else echo "tansu not installed: peer not measured"; fi ;;
      kafka-default) run_kafka "$workload" "$name-kafka-default" single default ;;
      kafka-fsync) run_kafka "$workload" "$name-kafka-fsync" single fsync ;;
      kafka3-default) run_kafka "$workload" "$name-kafka3-default" cluster3 default ;;
      kafka3-fsync) run_kafka "$workload" "$name-kafka3-fsync" cluster3 fsync ;;
    esac
  done
  if compgen -G "$OUT/$name-*.json" >/dev/null; then
    jsons=("$OUT/$name"-*.json)
    "$LOADGEN" plot --out "$OUT/$name-percentiles-compare.png" "${jsons[@]}"
  fi
done

{
  echo "## Machine"; cat "$OUT/machine.md"; echo
  echo "## fio write + fdatasync, io_uring, O_DIRECT, iodepth 1, same file system"
  echo "| before workload | block size | writers | target writes/s | fio writes/s | fdatasync p50 µs | p99 µs | p99.9 µs |"
  echo "|---|---|---|---|---|---|---|---|"; cat "$OUT/fio.md"; echo
  echo "## loadgen"
  "$LOADGEN" table "$OUT"/*.json
  echo
  echo "## Broker side (Shoal /metrics over the measured window, or the whole run where marked; bucket bounds in ms)"
  echo "| run | Produce requests | Produce latency p50 / p99 / p99.9 | durable writes | durable write p50 / p99 / p99.9 |"
  echo "|---|---|---|---|---|"; cat "$OUT/broker.md"
} >"$OUT/summary.md"
echo "results in $OUT (summary.md, *.json, *.png)"
