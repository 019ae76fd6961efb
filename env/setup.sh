#!/usr/bin/env bash
# Create or refresh the workbook's virtual environment (.venv) from the pinned
# env/requirements.txt, make `lib` importable, and register the Jupyter kernel
# `workbook`. Cheap when nothing changed: a stamp holds the hash of the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
REQ=env/requirements.txt
STAMP="$VENV/.workbook-stamp"

find_python() {
    for cand in "${PYTHON:-}" python3.11 python3; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$cand"; return 0
        fi
    done
    return 1
}

want="$(sha256sum "$REQ" env/setup.sh | sha256sum | cut -c1-64)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0  # up to date
fi

PY="$(find_python)" || {
    echo "error: Python 3.11 is required (found none as python3.11 or python3)." >&2
    echo "       Install it (e.g. pyenv install 3.11) or set PYTHON=/path/to/python3.11." >&2
    exit 1
}
echo "[setup] building $VENV with $PY from $REQ (first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# (this machine's pip config lists local indexes that may be absent: hide those warnings only)
quiet_pip() { "$VENV/bin/python" -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
quiet_pip --upgrade pip
quiet_pip -r "$REQ"
# `lib` importable from any working directory (notebooks/, runs/, tests/).
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$(pwd)" > "$site/workbook.pth"
# Kernel spec inside the venv, so no other project's `workbook` kernel is touched.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name workbook --display-name "Python (workbook)" >/dev/null
echo "$want" > "$STAMP"
echo "[setup] done: kernel 'workbook' -> $VENV/bin/python"
