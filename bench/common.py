"""What every benchmark script shares: the folder its tables go to.

A script never writes into bench/ itself. Run by `make bench NAME=<claim>` (bench/run.py) it
writes into the folder that command hands it (`BENCH_OUT`), and only that command, from a
committed tree, stamps the tables with their provenance and copies them into bench/. Run by
hand, a script writes under runs/bench/<name>/<UTC time>/, where variants and experiments live.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_ENV = "BENCH_OUT"  # set by bench/run.py


@functools.cache
def out_dir(name: str) -> Path:
    """The folder a benchmark writes its tables into (created): `make bench`'s, else a fresh one under runs/."""
    given = os.environ.get(OUT_ENV, "")
    if given:
        out = Path(given)
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = REPO_ROOT / "runs" / "bench" / name / stamp
        print(
            f"[bench] writing to {out.relative_to(REPO_ROOT)} (a variant: `make bench NAME=...` makes bench/'s tables)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def r_missing(*packages: str) -> str | None:
    """Why R cannot be used for a comparison, or None when Rscript loads every package named."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    libs = "; ".join(f"library({p})" for p in packages)
    probe = subprocess.run(
        ["Rscript", "-e", f"suppressMessages({{{libs}}})"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else f"R packages missing: {probe.stderr.strip()[:200]}"


def run_r(code: str, frame=None, timeout: int = 600) -> str:
    """Run R `code` in its own Rscript process (given `frame` as a CSV path in commandArgs(TRUE)[1]); its stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        script, args = Path(tmp) / "fit.R", []
        script.write_text(code)
        if frame is not None:
            csv = Path(tmp) / "data.csv"
            frame.to_csv(csv, index=False)
            args = [str(csv)]
        r = subprocess.run(
            ["Rscript", str(script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if r.returncode:
        raise SystemExit(f"R failed: {r.stderr[-2000:]}")
    return r.stdout
