#!/usr/bin/env bash
# franz-go against a real shoal broker.
#
#   tests/clients/go/run.sh            # our tests, then franz-go's own kgo integration suite
#   tests/clients/go/run.sh -run Group # extra arguments go to our `go test` only
#
# 1. `go test .` in this module: each test package run starts its own brokers (see
#    broker_test.go) on free ports with fresh temp data dirs.
# 2. `go test github.com/twmb/franz-go/pkg/kgo` (the version pinned in go.mod) against one
#    broker started here, with KGO_SEEDS/KGO_TEST_RF=1 and the skip list below (README.md
#    says why each test is skipped).
#
# Env: SHOAL_BIN            broker binary (default <repo>/target/release/shoal); nothing is built.
#      SHOAL_CORES          --cores (default: all CPUs)
#      SHOAL_READY_TIMEOUT  seconds a broker has to become ready (default 30)
#      KGO_TEST_RECORDS     records the kgo ETL tests produce (kgo's default: 500000)
#      KGO_LOG_LEVEL        kgo test client logging: none (default here), info, debug
#      SHOAL_GO_SKIP_KGO=1  run step 1 only; SHOAL_GO_ONLY_KGO=1 run step 2 only
# Exit code: non-zero if either step fails (or ran no test).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export SHOAL_BIN=${SHOAL_BIN:-$ROOT/target/release/shoal}
export SHOAL_CORES=${SHOAL_CORES:-$(nproc)}
READY_TIMEOUT=${SHOAL_READY_TIMEOUT:-30}
# Module and build caches live in the project (/.cache is gitignored); a clean clone
# downloads what go.sum pins by itself.
export GOMODCACHE=${GOMODCACHE:-$ROOT/.cache/go/mod}
export GOCACHE=${GOCACHE:-$ROOT/.cache/go/build}
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

# kgo tests skipped against shoal, anchored; reasons in README.md ("Skipped by us").
KGO_SKIP='^(TestTxnEtl|TestConsumeRegex)$'

die() { echo "run.sh: error: $*" >&2; exit 2; }

command -v go >/dev/null 2>&1 || die "go is not installed"
[ -f "$SHOAL_BIN" ] && [ -x "$SHOAL_BIN" ] || die "broker binary not found or not executable: $SHOAL_BIN
  build it first (cargo build --release) or point SHOAL_BIN at it"
cd "$HERE" || die "cd $HERE"

# Fetch the pinned modules up front (bounded), so a slow proxy shows up as such.
timeout 300 go mod download || die "go mod download failed"

rc_ours=0
rc_kgo=0

# ------------------------------------------------------------------ 1. our tests
if [ "${SHOAL_GO_ONLY_KGO:-0}" != 1 ]; then
    echo "run.sh: [1/2] shoal tests (franz-go kgo/kadm)" >&2
    timeout --kill-after=30 420 go test -count=1 -timeout 6m -v "$@" . 2>&1 | tee "${TMPDIR:-/tmp}/shoal-go-tests.log" \
        | grep -E '^(=== RUN|--- |    --- |PASS|FAIL|ok|panic:)|shoal bug|_test.go:[0-9]+:' | grep -v '^=== RUN'
    rc_ours=${PIPESTATUS[0]}
    if [ "$rc_ours" -eq 0 ] && ! grep -q -- '^--- PASS' "${TMPDIR:-/tmp}/shoal-go-tests.log"; then
        echo "run.sh: error: our go test ran no test" >&2
        rc_ours=1
    fi
    [ "$rc_ours" -ne 0 ] && echo "run.sh: full log (with broker stderr tails): ${TMPDIR:-/tmp}/shoal-go-tests.log" >&2
    echo "run.sh: [1/2] exit $rc_ours" >&2
fi

# ------------------------------------------------------------------ 2. kgo's own suite
if [ "${SHOAL_GO_SKIP_KGO:-0}" != 1 ]; then
    echo "run.sh: [2/2] franz-go pkg/kgo integration suite against shoal (skip: $KGO_SKIP)" >&2
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-kgo-XXXXXX")
    BROKER_PID=
    cleanup() {
        if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
            kill -TERM "$BROKER_PID" 2>/dev/null
            for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
            kill -KILL -- "-$BROKER_PID" 2>/dev/null
            wait "$BROKER_PID" 2>/dev/null
        fi
        BROKER_PID=
        rm -rf "$WORK/data"
    }
    trap cleanup EXIT
    trap 'cleanup; exit 130' INT TERM HUP

    free_port() {
        if command -v python3 >/dev/null 2>&1; then
            python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
        else
            local p
            while :; do
                p=$((20000 + RANDOM % 40000))
                (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
            done
        fi
    }
    KPORT=$(free_port)
    APORT=$(free_port)
    while [ "$APORT" = "$KPORT" ]; do APORT=$(free_port); done
    mkdir -p "$WORK/data"
    # Own session (process group) so the whole group can be killed.
    setsid "$SHOAL_BIN" start --data-dir "$WORK/data" \
        --kafka-addr "127.0.0.1:$KPORT" --advertised-addr "127.0.0.1:$KPORT" \
        --cores "$SHOAL_CORES" --admin-addr "127.0.0.1:$APORT" \
        </dev/null >"$WORK/broker.stderr.log" 2>&1 &
    BROKER_PID=$!

    ready=0
    for _ in $(seq 1 $((READY_TIMEOUT * 10))); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$APORT/v1/status/ready" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        echo "run.sh: error: shoal not ready within ${READY_TIMEOUT}s; stderr tail:" >&2
        tail -40 "$WORK/broker.stderr.log" >&2
        rc_kgo=1
    else
        # go test runs the package in its module-cache directory (some kgo tests read their
        # own sources from the working directory).
        KGO_SEEDS="127.0.0.1:$KPORT" KGO_TEST_RF=1 \
            KGO_LOG_LEVEL="${KGO_LOG_LEVEL:-none}" \
            timeout --kill-after=30 420 go test -count=1 -timeout 6m -v -skip "$KGO_SKIP" \
            github.com/twmb/franz-go/pkg/kgo 2>&1 | tee "$WORK/kgo.log" \
            | grep -E '^(--- |PASS|FAIL|ok|panic:)'
        rc_kgo=${PIPESTATUS[0]}
        passed=$(grep -c -- '--- PASS' "$WORK/kgo.log")
        failed=$(grep -c -- '--- FAIL' "$WORK/kgo.log")
        skipped=$(grep -c -- '--- SKIP' "$WORK/kgo.log")
        echo "run.sh: kgo suite: $passed passed, $failed failed, $skipped skipped (tests, subtests and fuzz seeds)" >&2
        if [ "$rc_kgo" -eq 0 ] && [ "$passed" -eq 0 ]; then
            echo "run.sh: error: kgo suite ran no test" >&2
            rc_kgo=1
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "run.sh: error: shoal died during the kgo suite; stderr tail:" >&2
            tail -40 "$WORK/broker.stderr.log" >&2
            rc_kgo=1
        fi
    fi
    cleanup
    if [ "$rc_kgo" -ne 0 ]; then
        echo "run.sh: logs kept: $WORK/kgo.log, $WORK/broker.stderr.log" >&2
    else
        rm -rf "$WORK"
    fi
    trap - EXIT INT TERM HUP
    echo "run.sh: [2/2] exit $rc_kgo" >&2
fi

if [ "$rc_ours" -ne 0 ] || [ "$rc_kgo" -ne 0 ]; then
    exit 1
fi
exit 0
