"""Provenance of results: package versions, the git commit and the machine a number was measured on.

Run records (lib.core.runs) and benchmark tables (bench/run.py) both state where a figure
came from; the machine record names what changes a timing: the CPU model, the instruction-set
features that pick a kernel (AVX2, AVX-512, bf16, AMX), cores and threads, and the load.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .paths import REPO_ROOT

_PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "statsmodels",
    "nmrglue",
    "nmrsim",
    "PyWavelets",
    "papermill",
    "ipywidgets",
)


def versions() -> dict[str, str]:
    """Python and key package versions."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo (Linux), else the platform's machine name; for benchmark tables."""
    return f"{_cpuinfo().get('model name', platform.machine())} ({os.cpu_count()} cores)"


def _git(*args: str) -> str:
    """Output of a git command in the repository ('' when git fails or is missing)."""
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    """Commit of the repository (with '+dirty' when the tree has changes), or 'unknown'."""
    sha = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return (sha + ("+dirty" if dirty else "")) or "unknown"


# The flags of /proc/cpuinfo that decide which kernels PyTorch and BLAS pick (bf16 autocast is
# fast only with avx512_bf16 or amx_bf16; channels-last convolutions use AVX-512 when present).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on: CPU model, its ISA features, cores, threads and load."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    threads = {
        k: os.environ[k]
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        if k in os.environ
    }
    if "torch" in sys.modules:
        threads["torch"] = str(sys.modules["torch"].get_num_threads())
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": info.get("model name", platform.machine()),
        "isa": [f for f in ISA_FLAGS if f in flags] if flags else "unknown (no /proc/cpuinfo)",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "load_1_5_15": load,
        "platform": platform.platform(),
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    """One line for a table's header: CPU, features, cores, threads, load."""
    m = machine() if m is None else m
    isa = ", ".join(m["isa"]) if isinstance(m["isa"], list) else m["isa"]
    threads = ", ".join(f"{k}={v}" for k, v in m["threads"].items()) or "library defaults"
    load = " / ".join(map(str, m["load_1_5_15"])) or "unknown"
    return (
        f"{m['cpu']} ({isa or 'no AVX2'}); {m['usable_cores']} of {m['cores']} cores usable; "
        f"threads: {threads}; load (1/5/15 min): {load}"
    )
