#!/usr/bin/env bash
# Real-client integration tests for the shoal broker.
#
#   tests/clients/run.sh [pytest args...]
#
# Env: SHOAL_BIN    broker binary (default <repo>/target/release/shoal); this
#                   script builds nothing.
#      SHOAL_VENV   virtualenv (default <repo>/.venv), created if missing.
#      SHOAL_CORES  --cores passed to the broker (default: all cores).
#      SHOAL_TEST_TIMEOUT  per-test timeout in seconds (default 180).
# Exit code: pytest's; "no tests collected" (pytest 5) is turned into 1.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${SHOAL_VENV:-$ROOT/.venv}
export SHOAL_BIN=${SHOAL_BIN:-$ROOT/target/release/shoal}

die() { echo "run.sh: error: $*" >&2; exit 2; }

# 1. virtualenv with the pinned clients
. "$HERE/venv.sh"

# 2. kcat (Debian package)
if ! command -v kcat >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "run.sh: installing kcat" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; } \
            || die "apt-get install kcat failed"
    else
        die "kcat is not installed (apt-get install kcat, as root)"
    fi
fi

# 2b. ip (iproute2) and nft (nftables) for the network-namespace tests (netns.py); without
#     them, or without root, those tests skip with a banner.
netns_pkgs=()
command -v ip >/dev/null 2>&1 || netns_pkgs+=(iproute2)
command -v nft >/dev/null 2>&1 || netns_pkgs+=(nftables)
if [ ${#netns_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "run.sh: installing ${netns_pkgs[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${netns_pkgs[@]}"; } \
            || echo "run.sh: warning: apt-get install ${netns_pkgs[*]} failed; netns tests will skip" >&2
    else
        echo "run.sh: warning: ${netns_pkgs[*]} missing (and not root): netns tests will skip" >&2
    fi
fi

# 3. the broker binary: required, never built here
if [ ! -f "$SHOAL_BIN" ] || [ ! -x "$SHOAL_BIN" ]; then
    die "broker binary not found or not executable: $SHOAL_BIN
  build it first (cargo build --release) or point SHOAL_BIN at it"
fi

# 4. the tests
cd "$HERE" || die "cd $HERE"
"$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" \
    --timeout "${SHOAL_TEST_TIMEOUT:-180}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run.sh: error: pytest collected no tests; treating as failure" >&2
    exit 1
fi
exit "$rc"
