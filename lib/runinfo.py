"""Run records: every notebook run writes its resolved parameters, versions and device.

A notebook calls `run = start_run("01_data", globals())` after its parameters cell;
`run.figure(fig, "counts")` and `run.table(df, "totals")` then save results (atomically)
next to `run.json`, so every number can be traced, and `run.finish()` ends it.

Every run gets a fresh folder `<run_dir>/<notebook>-<run id>/` (the id is the UTC start time),
so a re-run never overwrites an earlier one's files. `<run_dir>/<notebook>` is a relative
symlink to the newest run that finished, moved only when a run succeeds: the paths that read
results (`runs/smoke/03_training/checkpoints/last.pt`) keep working and never show a failed
run's files. run.json's `status` says `running`, `complete` or `failed` (with the error).

`find_finished` finds an earlier notebook's results (notebook 04 reads notebook 03's
checkpoint): this run_dir's newest finished run first, then, for an interactive session that has
none, the newest finished run of any profile under runs/; it says which one it took.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .params import notebook_parameters
from .paths import NOTEBOOKS, REPO_ROOT, RUNS, repo_path

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
    fmt = (lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v)) if digits else str
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def git_commit() -> str:
    """Commit of the repository (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
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


# Set by lib.run for the notebook it executes: the id of the run folder it made for it.
RUN_ID_ENV = "WORKBOOK_RUN_ID"
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


# ---- finding an earlier notebook's results (notebook 04 reads notebook 03's checkpoint) -------------

AUTO, RUN_DIR_ONLY = "auto", "run_dir"


@dataclass(frozen=True)
class Found:
    """An earlier notebook's file, the finished run folder that holds it, and one line saying why that one."""

    path: Path
    run: Path
    how: str


def _show(p: Path) -> str:
    """A path relative to the repository when it lies inside it (what a user would type), else absolute."""
    p = Path(p)
    return (
        str(p.relative_to(REPO_ROOT)) if p.is_absolute() and p.is_relative_to(REPO_ROOT) else str(p)
    )


def _finished_time(run: Path) -> str:
    """When a run finished, from its run.json (ISO UTC text, sortable); '' when it does not say."""
    rec = _read_record(run)
    return str(rec.get("complete_utc") or rec.get("time_utc") or "")


def latest_finished(base: Path, name: str, rel: str) -> Path | None:
    """The run folder `<base>/<name>` names (the newest finished run) if it holds `rel`, else None.

    A real folder of the layout before run ids counts as one finished run; a link's target must
    say `complete` in its run.json (a link only ever moves to a finished run, this checks it).
    """
    entry = Path(base) / name
    if not entry.is_dir() or not (entry / rel).exists():
        return None
    if entry.is_symlink() and _read_record(entry.resolve()).get("status") not in (None, "complete"):
        return None
    return entry.resolve() if entry.is_symlink() else entry


def _newest_under(runs_root: Path, name: str, rel: str, skip: Path | None) -> Path | None:
    """The newest finished run of `name` holding `rel` among the folders `<runs_root>/*/` (by run.json time)."""
    if not Path(runs_root).is_dir():
        return None
    found = []
    for base in sorted(Path(runs_root).iterdir()):
        if (
            base.name.startswith(".")
            or not base.is_dir()
            or (skip is not None and base.resolve() == skip)
        ):
            continue
        run = latest_finished(base, name, rel)
        if run is not None:
            found.append(((_finished_time(run), _id_key(run_id_of(run, name))), run))
    return max(found, key=lambda t: t[0])[1] if found else None


def find_finished(
    name: str,
    rel: str,
    run_dir: str | Path,
    source: str = AUTO,
    runs_root: Path = RUNS,
    param: str = "checkpoints_from",
) -> Found:
    """File `rel` (e.g. checkpoints/last.pt) of notebook `name`'s newest finished run, chosen by `source`.

    - ``auto``: `<run_dir>/<name>` first (this session's own runs); if it has none, the newest
      finished run of `name` in any folder `<runs_root>/<profile>/` (smoke, cpu, ...) by the
      finish time in its run.json. So right after `make run` an interactive session
      (run_dir runs/interactive) finds the smoke run's results, and its own once it has made them.
    - ``run_dir``: `<run_dir>/<name>` only (what the profiles use: a profile run never reads another's).
    - a profile or folder name under `runs_root` (``smoke``, ``cpu``): that folder's newest finished run.
    - a path (relative to the repository): a runs folder holding `<name>`, or one run folder itself.

    `param` is the notebook parameter that holds `source`, named in the messages. A
    FileNotFoundError names every place looked at and `make run`.
    """
    base = repo_path(run_dir)
    src = (source or AUTO).strip()
    hint = (
        f"run `make run` first (every notebook, smoke profile, into runs/smoke/), or only this one: "
        f"`.venv/bin/python -m lib.run --profile smoke --only {name}`; or run notebook {name[:2]} in "
        f"this session (same run_dir)"
    )
    if src in (AUTO, RUN_DIR_ONLY):
        run = latest_finished(base, name, rel)
        if run is not None:
            return Found(
                run / rel,
                run,
                f"{name}: {_show(run / rel)} (the newest finished run in run_dir {_show(base)})",
            )
        if src == RUN_DIR_ONLY:
            raise FileNotFoundError(
                f"no finished {name} run with {rel} in {_show(base)} ({param} "
                f"= {RUN_DIR_ONLY!r} looks nowhere else); {hint}"
            )
        run = _newest_under(runs_root, name, rel, skip=base.resolve())
        if run is None:
            raise FileNotFoundError(
                f"no finished {name} run with {rel} in {_show(base)} nor in any "
                f"{_show(Path(runs_root))}/<profile>/{name}; {hint}"
            )
        when = _finished_time(run) or "at an unrecorded time"
        return Found(
            run / rel,
            run,
            f"{name}: {_show(run / rel)} ({_show(base)} has no finished {name} run, "
            f"so the newest finished one under {_show(Path(runs_root))}/ is used: "
            f"profile {run.parent.name}, finished {when}; name another with "
            f"{param})",
        )
    named = Path(runs_root) / src
    folder = (
        named
        if ("/" not in src and os.sep not in src and src not in (".", ".."))
        else repo_path(src)
    )
    run = latest_finished(folder, name, rel)
    if run is None and (folder / rel).exists():  # a run folder named directly, finished or not
        status = _read_record(folder).get("status", "unknown")
        return Found(
            folder / rel,
            folder,
            f"{name}: {_show(folder / rel)} (the run named by {param}; status {status})",
        )
    if run is None:
        raise FileNotFoundError(
            f"{param} = {source!r}: no finished {name} run with {rel} in {_show(folder)} "
            f"(give a profile under {_show(Path(runs_root))}/, a runs folder or a run "
            f"folder, or 'auto'); {hint}"
        )
    return Found(
        run / rel,
        run,
        f"{name}: {_show(run / rel)} (the newest finished run in {_show(folder)}, "
        f"named by {param})",
    )


def _claim_run_dir(base: Path, name: str) -> Path:
    """The folder lib.run made for this run (its id in the environment), else a fresh one."""
    run_id = os.environ.get(RUN_ID_ENV, "")
    given = base / f"{name}-{run_id}"
    if run_id and _id_key(run_id)[1] and given.is_dir() and not (given / "run.json").exists():
        return given
    return new_run_dir(base, name)


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
        run.extra["device"] = describe_device()
    except Exception as e:  # noqa: BLE001 - a broken CUDA install must not hide the record
        run.extra["device"] = {"error": repr(e)}
    run._write()
    return run
