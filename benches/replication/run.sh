#!/usr/bin/env bash
# RF=3 on three nodes vs one node, same run (see run.py). Uses the client tests' virtualenv
# (tests/clients/venv.sh: the namespace harness imports the Kafka clients); root for the
# network namespaces.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${SHOAL_VENV:-$ROOT/.venv}
die() { echo "run.sh: error: $*" >&2; exit 2; }
. "$ROOT/tests/clients/venv.sh"
exec "$VENV/bin/python" "$HERE/run.py" "$@"
