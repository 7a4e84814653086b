#!/usr/bin/env bash
# The fault suite (see README.md).
#
#   tests/chaos/run.sh [pytest args...]        # the checker's tests and the short CI runs
#   tests/chaos/run.sh chaos.py --time 1800    # a long run (any runner arguments)
#
# Env: SHOAL_BIN        broker binary (default <repo>/target/release/shoal); never built here.
#      SHOAL_FAULT_BIN  a broker built with `--features fault-switches` for the mutation runs;
#                       without it those runs are skipped, loudly.
#      SHOAL_VENV       virtualenv (default <repo>/.venv), created if missing.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${SHOAL_VENV:-$ROOT/.venv}
export SHOAL_BIN=${SHOAL_BIN:-$ROOT/target/release/shoal}

die() { echo "chaos/run.sh: error: $*" >&2; exit 2; }

. "$ROOT/tests/clients/venv.sh"
[ -x "$SHOAL_BIN" ] || die "broker binary not found or not executable: $SHOAL_BIN (cargo build --release)"

if [ "${1:-}" = chaos.py ]; then
    shift
    exec "$VENV/bin/python" "$HERE/chaos.py" "$@"  # from the caller's directory (its paths)
fi
cd "$HERE" || die "cd $HERE"
"$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "chaos/run.sh: error: pytest collected no tests; treating as failure" >&2
    exit 1
fi
exit "$rc"
