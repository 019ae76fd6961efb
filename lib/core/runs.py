"""Run records: every notebook run writes its resolved parameters, versions and device.

A notebook calls `run = start_run("01_data", globals())` after its parameters cell;
`run.figure(fig, "counts")` and `run.table(df, "totals")` then save results (atomically)
next to `run.json`, so every number can be traced, and `run.finish()` ends it.

Every run gets a fresh folder `<run_dir>/<notebook>-<run id>/` (the id is the UTC start time),
so a re-run never overwrites an earlier one's files. `<run_dir>/<notebook>` is a relative
symlink to the newest run that finished, moved only when a run succeeds: the paths that read
results (`runs/smoke/03_training/checkpoints/last.pt`) keep working and never show a failed
run's files. run.json's `status` says `starting` (lib.run made the folder; the notebook has
not opened it yet), `running`, `complete`, `failed` or `interrupted` (with the error); a run
folder gets its run.json as soon as it is made. Earlier runs' results are found by lib.core.lookup.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .paths import NOTEBOOKS, repo_path
from .provenance import git_commit, versions
from .settings import notebook_parameters


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


# Set by lib.run for the notebook it executes: the id of the run folder it made for it.
RUN_ID_ENV = "WORKBOOK_RUN_ID"
STARTING = "starting"  # run.json's status in a folder lib.run made, until the notebook opens it
_RUN_ID = re.compile(r"(\d{8}T\d{6}Z)(?:-(\d+))?")


def _id_key(run_id: str) -> tuple[str, int]:
    """Sort key of a run id: start time, then the counter of runs started in the same second."""
    m = _RUN_ID.fullmatch(run_id)
    return (m.group(1), int(m.group(2) or 1)) if m else ("", 0)


def run_dirs(base: Path, name: str) -> list[Path]:
    """The run folders `<name>-<id>` of one notebook under `base`, oldest first."""
    prefix = f"{name}-"
    found = [
        p
        for p in Path(base).glob(f"{name}-*")
        if p.is_dir() and not p.is_symlink() and _id_key(p.name[len(prefix) :])[1]
    ]
    return sorted(found, key=lambda p: _id_key(p.name[len(prefix) :]))


def new_run_dir(base: Path, name: str, when: datetime | None = None) -> Path:
    """Create a fresh, empty `<base>/<name>-<UTC time>[-n]` folder (never one that exists)."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        d = base / f"{name}-{stamp}" if n == 1 else base / f"{name}-{stamp}-{n}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run folder for {name} in {base}")


def run_id_of(run_dir: Path, name: str) -> str:
    """The id part of a run folder's name."""
    return run_dir.name[len(name) + 1 :]


def migrate_legacy(base: Path, name: str) -> Path | None:
    """Rename a real `<base>/<name>/` folder (the layout before run ids) to a run folder; kept, not deleted."""
    old = base / name
    if old.is_symlink() or not old.is_dir():
        return None
    when = datetime.fromtimestamp(old.stat().st_mtime, UTC)
    target = new_run_dir(base, name, when)
    target.rmdir()
    os.rename(old, target)
    print(
        f"[runs] moved the earlier run {old} to {target.name} (each run now has its own folder; "
        f"{old.name} links to the newest finished one)"
    )
    return target


def point_latest(base: Path, name: str, run_dir: Path) -> Path:
    """Point the relative symlink `<base>/<name>` at `run_dir` atomically (the tree stays movable)."""
    migrate_legacy(base, name)
    link = base / name
    tmp = base / f".{name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run_dir.name, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link


def _read_record(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def mark_run(run_dir: Path, name: str, status: str, **info: Any) -> Path:
    """Set `status` (and entries such as the error) in a run folder's run.json, creating a minimal one if absent."""
    from .io import atomic_write_text

    rec = _read_record(run_dir) or {"notebook": name, "run_id": run_id_of(run_dir, name)}
    rec.update(status=status, **_jsonable(info))
    rec[f"{status}_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return atomic_write_text(run_dir / "run.json", json.dumps(rec, indent=2) + "\n")


def stop_status(error: BaseException) -> str:
    """run.json's status for a run ended by `error`: `interrupted` (Ctrl-C, SIGTERM) or `failed`."""
    return "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"


def finish_run(base: Path, name: str, run_dir: Path) -> Path:
    """Mark a run complete and point `<base>/<name>` at it."""
    if _read_record(run_dir).get("status") != "complete":
        mark_run(run_dir, name, "complete")
    return point_latest(base, name, run_dir)


@dataclass
class Run:
    """Where one notebook run writes its figures, tables and record."""

    name: str
    dir: Path
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None  # the run_dir parameter: holds every run folder of every notebook

    @property
    def run_id(self) -> str:
        """This run's id (the folder name after `<notebook>-`)."""
        return run_id_of(self.dir, self.name)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (parent folders created)."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def figure(self, fig, name: str, dpi: int = 120) -> Path:
        """Save a matplotlib figure as figures/<name>.png, atomically."""
        from .io import atomic_write

        return atomic_write(
            self.path("figures", f"{name}.png"),
            lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"),
        )

    def table(self, df, name: str, index: bool = True) -> Path:
        """Save a pandas DataFrame as tables/<name>.csv, atomically."""
        from .io import atomic_write

        return atomic_write(
            self.path("tables", f"{name}.csv"), lambda tmp: df.to_csv(tmp, index=index)
        )

    def record(self, **info: Any) -> Path:
        """Add entries (device, seeds, results) to run.json and rewrite it."""
        self.extra.update(info)
        return self._write()

    def previous(self, rel: str) -> Path | None:
        """`rel` in the newest earlier run of this notebook that holds it (finished or not), else None."""
        if self.base is None:
            return None
        mine = _id_key(self.run_id)
        earlier = [
            d for d in run_dirs(self.base, self.name) if _id_key(run_id_of(d, self.name)) < mine
        ]
        return next((d / rel for d in reversed(earlier) if (d / rel).exists()), None)

    def finish(self) -> None:
        """Mark the run complete and point `<run_dir>/<notebook>` at it (call it in the notebook's last cell)."""
        self.extra["status"] = "complete"
        self._write()
        if self.base is not None:
            finish_run(self.base, self.name, self.dir)

    def _write(self) -> Path:
        from .io import atomic_write_text

        rec = {
            "notebook": self.name,
            "run_id": self.run_id,
            "params": _jsonable(self.params),
            "versions": versions(),
            "git_commit": git_commit(),
            "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            **_jsonable(self.extra),
        }
        return atomic_write_text(self.dir / "run.json", json.dumps(rec, indent=2) + "\n")


def _claim_run_dir(base: Path, name: str) -> Path:
    """The folder lib.run made for this run (its id in the environment), else a fresh one."""
    run_id = os.environ.get(RUN_ID_ENV, "")
    given = base / f"{name}-{run_id}"
    # lib.run's folder holds only its `starting` record; one a run has opened is never reused
    if run_id and _id_key(run_id)[1] and given.is_dir() and _claimable(given):
        return given
    return new_run_dir(base, name)


def _claimable(run_dir: Path) -> bool:
    """True for a folder without run.json or with lib.run's `starting` record only."""
    return not (run_dir / "run.json").exists() or _read_record(run_dir).get("status") == STARTING


def start_run(
    name: str, namespace: dict[str, Any], run_dir_key: str = "run_dir", nb_dir: Path = NOTEBOOKS
) -> Run:
    """Collect the notebook's declared parameters from `namespace` and open a fresh run directory.

    The parameter names come from `<nb_dir>/<name>.ipynb`, so a value injected by papermill
    and a default typed in JupyterLab are recorded the same way.
    """
    declared = notebook_parameters(Path(nb_dir) / f"{name}.ipynb")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise NameError(f"{name}: parameters {missing} not defined; run the parameters cell first")
    params = {k: namespace[k] for k in declared}
    base = repo_path(params.get(run_dir_key, "runs/interactive"))
    base.mkdir(parents=True, exist_ok=True)
    migrate_legacy(base, name)
    run = Run(name=name, dir=_claim_run_dir(base, name), params=params, base=base)
    run.extra["status"] = "running"  # until finish(): a run that stops part-way says so
    from .device import describe_device

    try:
        try:
            run.extra["device"] = describe_device()
        except Exception as e:  # noqa: BLE001 - a broken CUDA install must not hide the record
            run.extra["device"] = {"error": repr(e)}
        run._write()
    except BaseException as e:  # stopped before its record was written: the folder still gets one
        mark_run(run.dir, name, stop_status(e), error=f"{type(e).__name__}: {e}")
        raise
    return run
