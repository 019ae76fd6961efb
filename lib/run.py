"""Run the notebooks headless through papermill with a parameter profile.

    python -m lib.run --profile smoke            # every notebook, in order
    python -m lib.run --profile cpu --only 05_nmr_denoising
    python -m lib.run --profile-file my.yaml     # a profile file outside env/profiles

Profiles are `env/profiles/<name>.yaml` (a name, not a path): one mapping per notebook of
parameter overrides, each checked against the type the notebook declares before anything
runs. Each run of a notebook gets a fresh folder `runs/<profile>/<notebook>-<run id>/` (the
executed notebook, figures, tables, run.json); `runs/<profile>/<notebook>` links to the newest
run that finished and moves only when a run succeeds. Earlier runs are kept unless
--overwrite, which deletes them after the new run has succeeded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .core.paths import NOTEBOOKS, PROFILES, RUNS, repo_path

# The profile functions live in the bottom layer (lib/core/profiles.py); they are re-exported here.
from .core.profiles import (  # noqa: F401
    PROFILE_NAME,
    check_profile_name,
    list_notebooks,
    list_profiles,
    load_profile,
    read_profile_file,
)
from .core.runs import (
    RUN_ID_ENV,
    STARTING,
    finish_run,
    mark_run,
    new_run_dir,
    run_dirs,
    run_id_of,
    stop_status,
)
from .core.settings import notebook_parameters

KERNEL = "workbook"


def profile_source(profile: str | None, profile_file: str | None) -> tuple[str, Path]:
    """(name, file) from --profile NAME or --profile-file PATH (not both; smoke when neither)."""
    if profile and profile_file:
        raise SystemExit("pass --profile NAME or --profile-file PATH, not both")
    if profile_file:
        path = repo_path(profile_file)
        if not path.is_file():
            raise SystemExit(f"--profile-file {profile_file}: no such file")
        return path.stem, path
    name = check_profile_name(profile or "smoke")
    return name, PROFILES / f"{name}.yaml"


def output_dir(name: str, out: str | None) -> Path:
    """--out when given, else runs/<profile name> (refused if the name would not be one folder)."""
    if out:
        return Path(out).resolve()
    if not PROFILE_NAME.fullmatch(name) or ".." in name:
        raise SystemExit(
            f"profile file name {name!r} is not a plain folder name for runs/; rename the file "
            "or pass --out DIR"
        )
    return RUNS / name


@contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    """Set an environment variable (inherited by the kernel papermill starts) for the block."""
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def run_notebook(
    nb: str,
    params: dict[str, Any],
    out_dir: Path,
    nb_dir: Path = NOTEBOOKS,
    kernel: str = KERNEL,
    overwrite: bool = False,
) -> Path:
    """Execute one notebook with papermill into a fresh run folder under `out_dir`; returns the executed copy.

    On success `out_dir/<nb>` is pointed at the new folder (and with `overwrite` the notebook's
    earlier runs are deleted); on failure run.json says `failed` with the error, the link and
    the earlier runs stay as they were, and a RuntimeError names the notebook and the cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_dir = Path(out_dir)
    if "run_dir" in params and repo_path(params["run_dir"]).resolve() != out_dir.resolve():
        raise ValueError(
            f"run_dir {params['run_dir']} differs from the output folder {out_dir}; "
            "pass the folder as out_dir only"
        )
    params = {**params, "run_dir": str(out_dir)}
    run_dir = new_run_dir(out_dir, nb)
    out = run_dir / f"{nb}.ipynb"
    try:
        mark_run(run_dir, nb, STARTING)  # the folder is never without a record, even if killed
        with _env(RUN_ID_ENV, run_id_of(run_dir, nb)):
            pm.execute_notebook(
                str(nb_dir / f"{nb}.ipynb"),
                str(out),
                parameters=params,
                kernel_name=kernel,
                cwd=str(nb_dir),
                progress_bar=False,
                log_output=False,
            )
    except PapermillExecutionError as e:
        mark_run(run_dir, nb, "failed", error=f"cell {e.exec_count}: {e.ename}: {e.evalue}")
        raise RuntimeError(
            f"notebook {nb} failed in cell {e.exec_count} of the executed copy: {e.ename}: {e.evalue}\n"
            f"(executed copy with the traceback: {out}; {out_dir / nb} still points at the "
            "last run that finished)"
        ) from None
    except BaseException as e:  # interrupted or papermill itself failed: say so in the record
        mark_run(run_dir, nb, stop_status(e), error=f"{type(e).__name__}: {e}")
        raise
    finish_run(out_dir, nb, run_dir)
    if overwrite:
        for old in run_dirs(out_dir, nb):
            if old != run_dir:
                shutil.rmtree(old)
    return out


def _training_settings(params: dict[str, Any]) -> None:
    """Notebook 03's training settings resolved as its code does (TrainConfig.from_params)."""
    from dataclasses import fields

    from .longtail.train.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    TrainConfig.from_params(**params, ignore=[k for k in params if k not in known])


# Notebooks whose settings can be checked without running them: lr=-1 or method=PRL in a
# profile is refused before any notebook runs, not in a cell after the earlier notebooks ran.
SETTINGS_CHECKS = {"03_training": _training_settings}


def check_settings(
    todo: list[str], profile: dict[str, dict[str, Any]], source: Path, nb_dir: Path = NOTEBOOKS
) -> None:
    """Check each notebook's resolved parameters (defaults, then the profile) before anything runs."""
    for nb in todo:
        check = SETTINGS_CHECKS.get(nb)
        if check is None:
            continue
        params = {**notebook_parameters(nb_dir / f"{nb}.ipynb"), **profile.get(nb, {})}
        try:
            check(params)
        except (ValueError, TypeError) as e:
            raise SystemExit(f"{source}: notebook {nb}: invalid settings: {e}") from None


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's time limit, `kill`) ends the run as Ctrl-C does: run.json says so."""
    raise KeyboardInterrupt(f"stopped by signal {signum} (SIGTERM)")


def main(argv: list[str] | None = None) -> int:
    """The command line: one line on stderr and a non-zero status for every refusal or failure."""
    main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    old = signal.signal(signal.SIGTERM, _stop_on_sigterm) if main_thread else None
    try:
        return _main(argv)
    except KeyboardInterrupt as e:
        print(f"[run] interrupted ({str(e) or 'Ctrl-C'}); its run.json says so", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lib.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default=None, help="profile name in env/profiles (default: smoke)")
    ap.add_argument(
        "--profile-file",
        default=None,
        metavar="PATH",
        help="a profile YAML file anywhere; its runs go to runs/<file stem> (or --out)",
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this notebook (repeatable), e.g. 01_data",
    )
    ap.add_argument("--out", default=None, help="output directory (default: runs/<profile>)")
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="delete a notebook's earlier runs once its new run has succeeded (default: keep them)",
    )
    args = ap.parse_args(argv)

    name, path = profile_source(args.profile, args.profile_file)
    profile = read_profile_file(path) if args.profile_file else load_profile(name)
    notebooks = list_notebooks()
    for nb in args.only:
        if nb not in notebooks:
            raise SystemExit(
                f"--only {nb!r}: no such notebook; known notebooks: {', '.join(notebooks)}"
            )
    todo = [nb for nb in notebooks if not args.only or nb in args.only]
    check_settings(todo, profile, path)
    out_dir = output_dir(name, args.out)
    for nb in todo:
        t0 = time.time()
        print(f"[run] {nb} (profile {name}) ...", flush=True)
        try:
            run_notebook(nb, profile.get(nb, {}), out_dir, overwrite=args.overwrite)
        except RuntimeError as e:
            print(f"[run] FAILED: {e}", file=sys.stderr)
            return 1
        print(
            f"[run] {nb} done in {time.time() - t0:.0f} s -> {out_dir / nb} "
            f"({(out_dir / nb).resolve().name})",
            flush=True,
        )
    print(f"[run] all done: executed notebooks, figures and tables under {out_dir}/<notebook>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
