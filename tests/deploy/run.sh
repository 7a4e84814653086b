#!/usr/bin/env bash
# Keeps deploy/ honest: the example config, the systemd unit and install.sh, the Kubernetes
# manifests, the Prometheus/Grafana files and the Containerfile, checked against the real
# broker and tools (tests/deploy/check_deploy.py has one function per check).
#
#   tests/deploy/run.sh [-k NAME]
#
# Env: SHOAL_BIN, RPK_TUNE_BIN  binaries to test; when unset they are built here with
#                               `cargo build --release --locked -p shoal-server -p rpk-tune`
#                               (into $CARGO_TARGET_DIR, default <repo>/target).
#      SHOAL_DEPLOY_TMP         where broker data goes (must support O_DIRECT; default /var/tmp)
# Installs what it needs when run as root: Debian's systemd (systemd-analyze, systemd-sysusers,
# systemctl), kcat, curl, and PyYAML (Debian python3-yaml, or a venv under <repo>/.venv-deploy).
# Prints `N passed, M failed` last; exits non-zero when anything failed.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

fail_early() { echo "run.sh: error: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

# 1. tools
need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v systemd-sysusers >/dev/null 2>&1 || need+=(systemd)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v curl >/dev/null 2>&1 || need+=(curl)
PY=
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
        PY=$(command -v "$candidate"); break
    fi
done
[ -n "$PY" ] || [ ! -x /usr/bin/python3 ] || [ "$(id -u)" != 0 ] || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "run.sh: installing ${need[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${need[@]}" >/dev/null; } \
            || fail_early "apt-get install ${need[*]} failed"
    else
        fail_early "missing ${need[*]} (run as root, or apt-get install them)"
    fi
fi
if [ -z "$PY" ] && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    PY=/usr/bin/python3
fi
if [ -z "$PY" ]; then
    VENV=$ROOT/.venv-deploy
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || fail_early "python3 -m venv $VENV failed"
    fi
    "$VENV/bin/python" -c 'import yaml' 2>/dev/null \
        || "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'PyYAML>=6,<7' \
        || fail_early "pip install PyYAML failed"
    PY=$VENV/bin/python
fi

# 2. binaries
if [ -z "${SHOAL_BIN:-}" ] || [ -z "${RPK_TUNE_BIN:-}" ]; then
    target=${CARGO_TARGET_DIR:-$ROOT/target}
    echo "run.sh: building shoal and rpk-tune (release) into $target" >&2
    (cd "$ROOT" && cargo build --release --locked -q -p shoal-server -p rpk-tune) \
        || fail_early "cargo build failed"
    export SHOAL_BIN=${SHOAL_BIN:-$target/release/shoal}
    export RPK_TUNE_BIN=${RPK_TUNE_BIN:-$target/release/rpk-tune}
fi
export SHOAL_BIN RPK_TUNE_BIN

# 3. the checks (each starts and stops its own broker processes)
echo "== deploy checks: $SHOAL_BIN, $RPK_TUNE_BIN, python $PY"
exec "$PY" "$HERE/check_deploy.py" "$@"
