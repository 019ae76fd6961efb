#!/usr/bin/env bash
# `make clean-runs`: delete run folders under runs/ (yours: executed notebooks, checkpoints, tables).
#   make clean-runs                      lists what would be deleted and deletes nothing
#   make clean-runs CONFIRM=1            deletes everything under runs/
#   make clean-runs ONLY=smoke CONFIRM=1 deletes runs/smoke/ only (one profile's, or browser, interactive)
# Nothing outside runs/ is ever touched: runs/ itself must be a real folder (not a link), ONLY must be
# one plain folder name, and links inside runs/ (runs/<profile>/<notebook> -> newest run) are removed
# as links, never followed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
RUNS="$ROOT/runs"
CONFIRM="${CONFIRM:-}"
ONLY="${ONLY:-}"

if [ -L "$RUNS" ]; then
    echo "[clean-runs] $RUNS is a link; refusing to delete through it (remove the link by hand)" >&2
    exit 2
fi
if [ ! -d "$RUNS" ]; then
    echo "[clean-runs] no runs/ folder: nothing to delete"
    exit 0
fi
if [ -n "$ONLY" ]; then
    if ! [[ "$ONLY" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || [[ "$ONLY" == *..* ]]; then
        echo "[clean-runs] ONLY=$ONLY is not a folder name under runs/ (letters, digits, '_', '-', '.'; no path)" >&2
        exit 2
    fi
    if [ ! -e "$RUNS/$ONLY" ] && [ ! -L "$RUNS/$ONLY" ]; then
        echo "[clean-runs] runs/$ONLY does not exist; there are: $(ls -A "$RUNS" | tr '\n' ' ')" >&2
        exit 2
    fi
    targets=("$RUNS/$ONLY")
else
    shopt -s nullglob dotglob
    targets=("$RUNS"/*)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "[clean-runs] runs/ is empty: nothing to delete"
    exit 0
fi
for t in "${targets[@]}"; do
    case "$t" in "$RUNS"/?*) ;; *) echo "[clean-runs] internal error: $t is outside $RUNS" >&2; exit 3 ;; esac
done
if [ "$CONFIRM" != 1 ]; then
    echo "[clean-runs] would delete (your runs: executed notebooks, checkpoints, tables):"
    for t in "${targets[@]}"; do
        if [ -L "$t" ]; then echo "  ${t#"$ROOT"/} (link)"; else echo "  $(du -sh -- "$t" | cut -f1)	${t#"$ROOT"/}"; fi
    done
    echo "[clean-runs] nothing deleted; to delete, run: make clean-runs${ONLY:+ ONLY=$ONLY} CONFIRM=1" >&2
    exit 1
fi
for t in "${targets[@]}"; do
    rm -rf -- "$t"   # a link given by name is removed itself; rm -r never follows links inside folders
    echo "[clean-runs] deleted ${t#"$ROOT"/}"
done
