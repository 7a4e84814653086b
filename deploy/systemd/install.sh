#!/usr/bin/env bash
# Installs the Shoal broker as a systemd service on this host (or into a staged tree).
#
#   deploy/systemd/install.sh [options]
#
#   --shoal-bin PATH        broker binary   (default: target/release/shoal of this repository)
#   --rpk-tune-bin PATH     tuner binary    (default: target/release/rpk-tune)
#   --advertised-addr H:P   written into shoal.conf as advertised_addr (default: `hostname -f`:9092)
#   --root DIR              install under DIR instead of / (a staged tree or an image); no
#                           systemctl calls reach the running system
#   --enable                systemctl enable the unit (and start it with --now when not --root)
#   --force-config          overwrite an existing /etc/shoal/shoal.conf (default: keep it and
#                           write the new example next to it as shoal.conf.new)
#   --dry-run               print what would be done, change nothing
#
# What it lays out (under DIR when --root is given):
#   /usr/local/bin/shoal, /usr/local/bin/rpk-tune          0755 root
#   /usr/lib/sysusers.d/shoal.conf  + system user/group `shoal` (systemd-sysusers, or useradd)
#   /etc/shoal/shoal.conf                                  0640 root:shoal
#   /etc/systemd/system/shoal.service                      0644 root
#   /var/lib/shoal, /var/lib/shoal/data                    0750 shoal:shoal
#   /usr/local/share/doc/shoal/README.md                   (deploy/README.md)
# Exit codes: 0 done, 1 a step failed, 2 usage error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY=$(cd "$HERE/.." && pwd)
REPO=$(cd "$DEPLOY/.." && pwd)

SHOAL_BIN=$REPO/target/release/shoal
RPK_TUNE_BIN=$REPO/target/release/rpk-tune
ADVERTISED=
ROOT=
ENABLE=0
FORCE_CONFIG=0
DRY_RUN=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --shoal-bin) SHOAL_BIN=${2:?}; shift 2 ;;
        --rpk-tune-bin) RPK_TUNE_BIN=${2:?}; shift 2 ;;
        --advertised-addr) ADVERTISED=${2:?}; shift 2 ;;
        --root) ROOT=${2:?}; shift 2 ;;
        --enable) ENABLE=1; shift ;;
        --force-config) FORCE_CONFIG=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
done

if [ -n "$ROOT" ]; then
    [ "$DRY_RUN" = 1 ] || mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" 2>/dev/null && pwd || echo "$ROOT")
    [ "$ROOT" != / ] || ROOT=
fi
if [ -z "$ADVERTISED" ]; then
    ADVERTISED="$(hostname -f 2>/dev/null || hostname):9092"
fi
case $ADVERTISED in
    *:[0-9]*) ;;
    *) echo "install.sh: --advertised-addr must be host:port, got $ADVERTISED" >&2; exit 2 ;;
esac
for bin in "$SHOAL_BIN" "$RPK_TUNE_BIN"; do
    if [ ! -x "$bin" ]; then
        [ "$DRY_RUN" = 1 ] || die "$bin is not an executable (build with: cargo build --release -p shoal-server -p rpk-tune)"
        echo "# note: $bin does not exist yet" >&2
    fi
done
if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "installing into / needs root (or use --root DIR / --dry-run)"
fi

# run CMD...: print it, and run it unless --dry-run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    [ "$DRY_RUN" = 1 ] || "$@"
}

echo "# installing Shoal into ${ROOT:-/}$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is changed)')"

# 1. binaries
run install -d -m 0755 "$ROOT/usr/local/bin"
run install -m 0755 "$SHOAL_BIN" "$ROOT/usr/local/bin/shoal"
run install -m 0755 "$RPK_TUNE_BIN" "$ROOT/usr/local/bin/rpk-tune"

# 2. the system user: systemd-sysusers from a sysusers.d entry (also works offline with --root),
#    useradd as the fallback on hosts without it.
run install -d -m 0755 "$ROOT/usr/lib/sysusers.d" "$ROOT/etc"
run install -m 0644 "$HERE/shoal.sysusers" "$ROOT/usr/lib/sysusers.d/shoal.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    if [ -n "$ROOT" ]; then
        run systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/shoal.conf"
    else
        run systemd-sysusers /usr/lib/sysusers.d/shoal.conf
    fi
elif [ -z "$ROOT" ]; then
    if ! getent passwd shoal >/dev/null; then
        run useradd --system --user-group --home-dir /var/lib/shoal --no-create-home \
            --shell /usr/sbin/nologin --comment "Shoal broker" shoal
    fi
else
    die "systemd-sysusers is needed to create the user under --root (apt-get install systemd)"
fi

# Owner for chown: by number from the (staged) passwd file, so --root never uses the host's ids.
owner() {
    if [ "$DRY_RUN" = 1 ]; then echo shoal:shoal; return; fi
    local uid gid
    uid=$(awk -F: '$1 == "shoal" { print $3 }' "$ROOT/etc/passwd")
    gid=$(awk -F: '$1 == "shoal" { print $3 }' "$ROOT/etc/group")
    [ -n "$uid" ] && [ -n "$gid" ] || die "user shoal missing from $ROOT/etc/passwd"
    echo "$uid:$gid"
}
can_chown() { [ "$(id -u)" = 0 ] || [ "$DRY_RUN" = 1 ]; }

# 3. directories
run install -d -m 0750 "$ROOT/var/lib/shoal" "$ROOT/var/lib/shoal/data"
if can_chown; then
    run chown "$(owner)" "$ROOT/var/lib/shoal" "$ROOT/var/lib/shoal/data"
else
    echo "# not root: leaving $ROOT/var/lib/shoal owned by $(id -un)" >&2
fi

# 4. configuration (kept if present, unless --force-config)
run install -d -m 0755 "$ROOT/etc/shoal"
conf=$ROOT/etc/shoal/shoal.conf
if [ -e "$conf" ] && [ "$FORCE_CONFIG" = 0 ]; then
    echo "# $conf exists: kept; the new example goes to $conf.new" >&2
    conf=$conf.new
fi
run install -m 0640 "$DEPLOY/config/shoal.conf" "$conf"
run sed -i "s|^advertised_addr = .*|advertised_addr = $ADVERTISED|" "$conf"
if can_chown; then
    run chown "root:$(owner | cut -d: -f2)" "$conf"
fi

# 5. the unit and the docs
run install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/usr/local/share/doc/shoal"
run install -m 0644 "$HERE/shoal.service" "$ROOT/etc/systemd/system/shoal.service"
run install -m 0644 "$DEPLOY/README.md" "$ROOT/usr/local/share/doc/shoal/README.md"

# 6. systemd
if [ -n "$ROOT" ]; then
    if [ "$ENABLE" = 1 ]; then
        run systemctl --root="$ROOT" enable shoal.service
    fi
elif [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    if [ "$ENABLE" = 1 ]; then
        run systemctl enable --now shoal.service
    fi
else
    echo "# systemd is not running on this host: skipped daemon-reload/enable" >&2
fi

echo "# done. Next: edit ${ROOT}/etc/shoal/shoal.conf, then"
echo "#   systemctl enable --now shoal && journalctl -u shoal -f"
echo "#   curl -s localhost:9644/v1/status/ready"
