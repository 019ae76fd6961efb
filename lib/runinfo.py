"""Run records: every notebook run writes its resolved parameters, versions and device.

A notebook calls `run = start_run("01_data", globals())` after its parameters cell;
`run.figure(fig, "counts")` and `run.table(df, "totals")` then save results under
`<run_dir>/<notebook>/`, next to `run.json`, so every number can be traced.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .paths import NOTEBOOKS, REPO_ROOT, repo_path
from .params import notebook_parameters

_PACKAGES = ("torch", "numpy", "scipy", "pandas", "matplotlib", "statsmodels", "nmrglue",
             "nmrsim", "PyWavelets", "papermill", "ipywidgets")


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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({os.cpu_count()} cores)"


def markdown_table(df, digits: int | None = None, index: bool = False) -> str:
    """A pandas DataFrame as a Markdown table (tabulate is not a dependency); floats to `digits` significant."""
    if index:
        df = df.reset_index()
    fmt = (lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v)) if digits else str  # noqa: E731
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def git_commit() -> str:
    """Commit of the repository (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


@dataclass
class Run:
    """Where one notebook run writes its figures, tables and record."""

    name: str
    dir: Path
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (parent folders created)."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def figure(self, fig, name: str, dpi: int = 120) -> Path:
        """Save a matplotlib figure as figures/<name>.png."""
        p = self.path("figures", f"{name}.png")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        return p

    def table(self, df, name: str, index: bool = True) -> Path:
        """Save a pandas DataFrame as tables/<name>.csv."""
        p = self.path("tables", f"{name}.csv")
        df.to_csv(p, index=index)
        return p

    def record(self, **info: Any) -> Path:
        """Add entries (device, seeds, results) to run.json and rewrite it."""
        self.extra.update(info)
        return self._write()

    def _write(self) -> Path:
        from .io import atomic_write_text

        rec = {"notebook": self.name, "params": _jsonable(self.params), "versions": versions(),
               "git_commit": git_commit(), "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **_jsonable(self.extra)}
        return atomic_write_text(self.dir / "run.json", json.dumps(rec, indent=2) + "\n")


def start_run(name: str, namespace: dict[str, Any], run_dir_key: str = "run_dir") -> Run:
    """Collect the notebook's declared parameters from `namespace` and open its run directory.

    The parameter names come from `notebooks/<name>.ipynb`, so a value injected by papermill
    and a default typed in JupyterLab are recorded the same way.
    """
    declared = notebook_parameters(NOTEBOOKS / f"{name}.ipynb")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise NameError(f"{name}: parameters {missing} not defined; run the parameters cell first")
    params = {k: namespace[k] for k in declared}
    base = repo_path(params.get(run_dir_key, "runs/interactive"))
    run = Run(name=name, dir=base / name, params=params)
    run.dir.mkdir(parents=True, exist_ok=True)
    from .device import describe_device

    try:
        run.extra["device"] = describe_device()
    except Exception as e:  # a broken CUDA install must not hide the record
        run.extra["device"] = {"error": repr(e)}
    run._write()
    return run
