"""Finding an earlier notebook's results: notebook 04 reads notebook 03's checkpoint.

`find_finished` looks in this run_dir's newest finished run first, then, for an interactive
session that has none, in the newest finished run of any profile under runs/; it says which
one it took.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO_ROOT, RUNS, repo_path
from .runs import _id_key, _read_record, run_id_of

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
