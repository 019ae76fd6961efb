#!/usr/bin/env bash
# Fashion-MNIST for notebooks 01, 03, 04 and the tests that train on it: nothing to do when it is
# there; else the Debian package when apt-get is usable (root, or sudo without a password); else
# the official files, md5-checked before anything is parsed; else one message naming the fixes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
have() { "$PY" -c 'from lib.longtail.data.sources import find_fashion_mnist; find_fashion_mnist()' >/dev/null 2>&1; }
have && exit 0
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    fi
    if [ "$SUDO" != "none" ]; then
        echo "[data] installing the Debian package dataset-fashion-mnist"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || true
        have && exit 0
    fi
fi
echo "[data] downloading Fashion-MNIST into data/FashionMNIST (md5 checked before parsing)"
if "$PY" -c 'from lib.longtail.data.sources import load_fashion_mnist; load_fashion_mnist(download=True)'; then
    exit 0
fi
echo "error: Fashion-MNIST is missing and could neither be installed (apt-get) nor downloaded." >&2
echo "       Install the Debian package dataset-fashion-mnist, or put the four *-ubyte.gz files of" >&2
echo "       https://github.com/zalandoresearch/fashion-mnist into data/FashionMNIST/." >&2
exit 1
