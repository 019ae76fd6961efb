#!/usr/bin/env bash
# What tests/test_browser.py needs: Debian's chromium (apt-get, when we are root or have sudo
# without a password) and the playwright Python package in .venv (env/requirements-browser.txt).
# Never downloads a browser of playwright's own. Exits 1 with a message when either is missing;
# the test is then skipped, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
if ! have_chromium && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    fi
    if [ "$SUDO" != "none" ]; then
        echo "[browser] installing the Debian package chromium"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } || true
    else
        echo "[browser] not root and no password-less sudo: apt-get install chromium skipped"
    fi
fi
if ! "$PY" -c 'import playwright.sync_api' >/dev/null 2>&1; then
    echo "[browser] installing playwright into ${VENV:-.venv} (env/requirements-browser.txt)"
    "$PY" -m pip install --quiet -r env/requirements-browser.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
fi
missing=""
have_chromium || missing="chromium (apt-get install chromium)"
"$PY" -c 'import playwright.sync_api' >/dev/null 2>&1 || missing="${missing:+$missing, }playwright (${PY%/python}/pip install -r env/requirements-browser.txt)"
if [ -n "$missing" ]; then
    echo "[browser] missing: $missing; tests/test_browser.py will be skipped" >&2
    exit 1
fi
echo "[browser] chromium and playwright ready for tests/test_browser.py"
