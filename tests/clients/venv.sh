# Sourced by tests/clients/run.sh and tests/chaos/run.sh: makes sure $VENV is a virtualenv
# holding the pinned clients of tests/clients/requirements.txt (reinstalled when that file
# changes). Expects ROOT, VENV and a die() function from the caller.
REQ=$ROOT/tests/clients/requirements.txt
if [ ! -x "$VENV/bin/python" ]; then
    echo "venv.sh: creating virtualenv $VENV" >&2
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
fi
STAMP=$VENV/.shoal-clients-requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "venv.sh: installing $REQ into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" \
        || die "pip install -r $REQ failed"
    echo "$want" > "$STAMP"
fi
