#!/usr/bin/env bash
# Apache Kafka 4.1.1 (KRaft, combined broker+controller nodes) as the benchmark peer, run from
# the jars on Maven Central: no distribution tarball, no ZooKeeper, only 127.0.0.1.
#
#   benches/peers/kafka.sh fetch
#   benches/peers/kafka.sh start single|cluster3 default|fsync DATA_DIR PORT_BASE
#   benches/peers/kafka.sh wait DATA_DIR [SECONDS]
#   benches/peers/kafka.sh bootstrap DATA_DIR
#   benches/peers/kafka.sh stop DATA_DIR
#   benches/peers/kafka.sh run single|cluster3 default|fsync DATA_DIR PORT_BASE
#
# fetch: kafka_2.13 and its runtime dependencies into $KAFKA_LIBS (mvn copy-dependencies of
#   benches/peers/pom.xml, local repository /work/main/.cache/m2; start fetches when needed).
# start: formats fresh storage in DATA_DIR (which must not hold a formatted node yet), starts
#   the node(s) in the background, waits until they serve Metadata, prints the bootstrap list.
#   single: one node, client port PORT_BASE, controller port PORT_BASE+100; RF 1.
#   cluster3: nodes 1..3 on PORT_BASE..PORT_BASE+2 (controllers PORT_BASE+100..102), one
#   dynamic KRaft quorum of all three, default.replication.factor=3, min.insync.replicas=2.
#   default: Kafka's defaults (acks=all acknowledges once in the page cache of the ISR).
#   fsync: log.flush.interval.messages=1 (flush.messages=1): every appended batch is fsynced
#   before the append returns, on the leader and on every follower.
# wait: until every node's pid lives, its port answers and Metadata lists all nodes (kcat -L
#   when installed, else the "Kafka Server started" line of every node's log); default 180 s.
# stop: SIGTERM every node started in DATA_DIR, SIGKILL after $KAFKA_STOP_SECONDS (30).
# run: start, then stay in the foreground until interrupted, then stop (by hand).
#
# Per node in DATA_DIR/nodeN/: server.properties, data/ (log.dirs, also the metadata log),
# server.log (log4j2), gc.log, stdout.log, pid. Environment: KAFKA_HEAP_OPTS (-Xmx1g -Xms1g),
# KAFKA_JVM_OPTS (Kafka's own G1 defaults from kafka-run-class.sh), KAFKA_PROPS (extra
# server.properties lines, space-separated key=value), BROKER_CPUS (taskset CPU list),
# KAFKA_LIBS (/work/main/.cache/kafka-4.1.1/libs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
KAFKA_VERSION=4.1.1
KAFKA_LIBS=${KAFKA_LIBS:-$root/.cache/kafka-$KAFKA_VERSION/libs}
M2=${M2:-$root/.cache/m2}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
KAFKA_STOP_SECONDS=${KAFKA_STOP_SECONDS:-30}
BROKER_CPUS=${BROKER_CPUS:-}

usage() { sed -n '2,31p' "$0"; exit 2; }
die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$KAFKA_LIBS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not installed (needed once to fetch the Kafka jars)"
  echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS" >&2
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$M2" -f "$here/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2
  [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || die "fetch failed"
  touch "$KAFKA_LIBS/.complete"
}

java_cmd() { # -> the java command line prefix (taskset when BROKER_CPUS is set)
  local prefix=()
  [ -z "$BROKER_CPUS" ] || prefix=(taskset -c "$BROKER_CPUS")
  # shellcheck disable=SC2206
  cmd=("${prefix[@]}" java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS -cp "$KAFKA_LIBS/*")
}

kafka_uuid() { # a Kafka Uuid (base64url of 16 random bytes), as StorageTool random-uuid prints
  python3 - <<'PY'
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break
PY
}

nodes_of() { cat "$1/nodes" 2>/dev/null || echo 0; }

write_config() { # node dir id port cport bootstrap-controllers rf misr durability
  local node=$1 id=$2 port=$3 cport=$4 quorum=$5 rf=$6 misr=$7 durability=$8
  mkdir -p "$node/data"
  cat >"$node/server.properties" <<EOF
# Written by benches/peers/kafka.sh ($durability, node $id)
process.roles=broker,controller
node.id=$id
controller.quorum.bootstrap.servers=$quorum
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$node/data
num.network.threads=3
num.io.threads=8
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$misr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$misr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$misr
group.initial.rebalance.delay.ms=0
EOF
  if [ "$durability" = fsync ]; then
    echo "# flush.messages=1: fsync every appended batch before the append returns" >>"$node/server.properties"
    echo "log.flush.interval.messages=1" >>"$node/server.properties"
  fi
  local kv
  for kv in ${KAFKA_PROPS:-}; do echo "$kv" >>"$node/server.properties"; done
  cat >"$node/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $node/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

start() { # topology durability dir port_base
  [ $# -eq 4 ] || usage
  local topology=$1 durability=$2 dir=$3 base=$4 n rf misr i
  case $topology in single) n=1 rf=1 misr=1 ;; cluster3) n=3 rf=3 misr=2 ;; *) usage ;; esac
  case $durability in default|fsync) ;; *) usage ;; esac
  command -v java >/dev/null || die "java not installed (Kafka $KAFKA_VERSION needs Java 17+)"
  fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(nodes_of "$dir")" -eq 0 ] || die "$dir already holds nodes (stop them and use a fresh dir)"
  local quorum="" initial="" cluster_id
  for i in $(seq 1 "$n"); do
    quorum+="${quorum:+,}127.0.0.1:$((base + 100 + i - 1))"
    initial+="${initial:+,}$i@127.0.0.1:$((base + 100 + i - 1)):$(kafka_uuid)"
  done
  cluster_id=$(kafka_uuid)
  # Another broker on a port would answer the readiness check in this node's place.
  local p
  for i in $(seq 1 "$n"); do
    for p in $((base + i - 1)) $((base + 100 + i - 1)); do
      ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "port $p is in use (pick another PORT_BASE)"
    done
  done
  java_cmd
  for i in $(seq 1 "$n"); do
    write_config "$dir/node$i" "$i" "$((base + i - 1))" "$((base + 100 + i - 1))" "$quorum" \
        "$rf" "$misr" "$durability"
    local quorum_flag=(--standalone)
    [ "$n" -eq 1 ] || quorum_flag=(--initial-controllers "$initial")
    "${cmd[@]}" -Dlog4j2.configurationFile="$dir/node$i/log4j2.properties" \
        kafka.tools.StorageTool format --cluster-id "$cluster_id" \
        --config "$dir/node$i/server.properties" "${quorum_flag[@]}" \
        >"$dir/node$i/format.log" 2>&1 || { cat "$dir/node$i/format.log" >&2; die "format failed"; }
  done
  echo "$n" >"$dir/nodes"
  local bootstrap=""
  for i in $(seq 1 "$n"); do bootstrap+="${bootstrap:+,}127.0.0.1:$((base + i - 1))"; done
  echo "$bootstrap" >"$dir/bootstrap"
  # Whatever starts here is stopped again if this script fails or is interrupted before the
  # node(s) are ready; once ready, the caller owns them (kafka.sh stop DATA_DIR).
  trap 'stop "$dir" >&2' EXIT
  trap 'exit 130' INT TERM
  for i in $(seq 1 "$n"); do
    local node=$dir/node$i
    "${cmd[@]}" -Xlog:gc*:file="$node/gc.log":time,tags:filecount=2,filesize=20M \
        -Dlog4j2.configurationFile="$node/log4j2.properties" -Dkafka.logs.dir="$node" \
        kafka.Kafka "$node/server.properties" </dev/null >"$node/stdout.log" 2>&1 &
    echo $! >"$node/pid"
  done
  wait_ready "$dir" 180 || { tail -20 "$dir"/node*/server.log "$dir"/node*/stdout.log >&2 || true; exit 1; }
  trap - EXIT INT TERM
  echo "$bootstrap"
}

alive() { # pid node-dir: the pid is still this node's JVM
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$2/server.properties"
}

wait_ready() { # dir [seconds]
  local dir=$1 secs=${2:-180} n deadline i node pid port
  n=$(nodes_of "$dir")
  [ "$n" -gt 0 ] || die "no nodes in $dir"
  deadline=$((SECONDS + secs))
  while :; do
    local ok=1
    for i in $(seq 1 "$n"); do
      node=$dir/node$i
      pid=$(cat "$node/pid" 2>/dev/null || true)
      alive "$pid" "$node" || { echo "kafka.sh: node $i (pid ${pid:-?}) is not running" >&2; return 1; }
      port=$(sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$node/server.properties")
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=0; break; fi
      if command -v kcat >/dev/null; then
        # Metadata lists only registered, unfenced brokers: all n of them, from every node,
        # and this node under its own id (not some other broker on the port).
        local md
        md=$(kcat -L -b "127.0.0.1:$port" -m 5 2>/dev/null || true)
        grep -q "^ $n brokers:" <<<"$md" && grep -q "broker $i at 127.0.0.1:$port" <<<"$md" ||
          { ok=0; break; }
      else
        grep -q "Kafka Server started" "$node/server.log" 2>/dev/null || { ok=0; break; }
      fi
    done
    [ "$ok" -eq 0 ] || return 0
    [ "$SECONDS" -lt "$deadline" ] || { echo "kafka.sh: not ready after $secs s" >&2; return 1; }
    sleep 0.5
  done
}

stop() { # dir
  local dir=$1 n i node pid pids=() deadline
  n=$(nodes_of "$dir")
  for i in $(seq 1 "$n"); do
    node=$dir/node$i
    pid=$(cat "$node/pid" 2>/dev/null || true)
    if alive "$pid" "$node"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid:$node"); fi
  done
  deadline=$((SECONDS + KAFKA_STOP_SECONDS))
  local entry left
  while :; do
    left=0
    for entry in "${pids[@]}"; do alive "${entry%%:*}" "${entry#*:}" && left=1; done
    [ "$left" -eq 1 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for entry in "${pids[@]}"; do
        if alive "${entry%%:*}" "${entry#*:}"; then
          echo "kafka.sh: ${entry#*:} did not stop in $KAFKA_STOP_SECONDS s: SIGKILL" >&2
          kill -KILL "${entry%%:*}" 2>/dev/null || true
        fi
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  for i in $(seq 1 "$n"); do rm -f "$dir/node$i/pid"; done
  echo 0 >"$dir/nodes" 2>/dev/null || true
}

[ $# -ge 1 ] || usage
case $1 in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  wait) [ $# -ge 2 ] || usage; wait_ready "$2" "${3:-180}" ;;
  bootstrap) [ $# -eq 2 ] || usage; cat "$2/bootstrap" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  run)
    shift; [ $# -eq 4 ] || usage
    dir=$3
    start "$@"
    trap 'stop "$dir"' EXIT
    trap 'exit 0' INT TERM
    echo "kafka.sh: running; Ctrl-C stops" >&2
    while :; do sleep 1; done ;;
  *) usage ;;
esac
