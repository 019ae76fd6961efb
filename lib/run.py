"""Run the notebooks headless through papermill with a parameter profile.

    python -m lib.run --profile smoke            # every notebook, in order
    python -m lib.run --profile cpu --only 05_nmr_denoising

Profiles are `env/profiles/<name>.yaml`: one mapping per notebook of parameter
overrides. Executed notebooks land in `runs/<profile>/`, each notebook's figures,
tables and run.json in `runs/<profile>/<notebook>/`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .params import notebook_parameters
from .paths import NOTEBOOKS, PROFILES, RUNS

KERNEL = "workbook"


def list_notebooks(nb_dir: Path = NOTEBOOKS) -> list[str]:
    """Notebook names (without .ipynb) in run order."""
    return sorted(p.stem for p in nb_dir.glob("[0-9][0-9]_*.ipynb"))


def list_profiles(profile_dir: Path = PROFILES) -> list[str]:
    """Names of the available profiles."""
    return sorted(p.stem for p in profile_dir.glob("*.yaml"))


def load_profile(name: str, profile_dir: Path = PROFILES, nb_dir: Path = NOTEBOOKS) -> dict[str, dict[str, Any]]:
    """Parameter overrides per notebook; unknown profiles, notebooks or parameters are errors."""
    path = profile_dir / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"unknown profile {name!r}; known profiles: {', '.join(list_profiles(profile_dir))} "
                         f"(files in {profile_dir})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise SystemExit(f"{path}: expected a mapping notebook -> {{parameter: value}}")
    notebooks = list_notebooks(nb_dir)
    profile: dict[str, dict[str, Any]] = {}
    for nb, overrides in raw.items():
        if nb not in notebooks:
            raise SystemExit(f"{path}: unknown notebook {nb!r}; known notebooks: {', '.join(notebooks)}")
        overrides = overrides or {}
        known = notebook_parameters(nb_dir / f"{nb}.ipynb")
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise SystemExit(f"{path}: notebook {nb} has no parameter(s) {unknown}; "
                             f"its parameters are: {', '.join(known)}")
        profile[nb] = dict(overrides)
    return profile


def run_notebook(nb: str, params: dict[str, Any], out_dir: Path, nb_dir: Path = NOTEBOOKS,
                 kernel: str = KERNEL) -> Path:
    """Execute one notebook with papermill; raises RuntimeError naming the notebook and cell on failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{nb}.ipynb"
    try:
        pm.execute_notebook(str(nb_dir / f"{nb}.ipynb"), str(out), parameters=params, kernel_name=kernel,
                            cwd=str(nb_dir), progress_bar=False, log_output=False)
    except PapermillExecutionError as e:
        raise RuntimeError(f"notebook {nb} failed in cell {e.exec_count} of the executed copy: {e.ename}: {e.evalue}\n"
                           f"(executed copy with the traceback: {out})") from None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="profile name in env/profiles (default: smoke)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this notebook (repeatable), e.g. 01_data")
    ap.add_argument("--out", default=None, help="output directory (default: runs/<profile>)")
    args = ap.parse_args(argv)

    profile = load_profile(args.profile)
    notebooks = list_notebooks()
    for name in args.only:
        if name not in notebooks:
            raise SystemExit(f"--only {name!r}: no such notebook; known notebooks: {', '.join(notebooks)}")
    todo = [nb for nb in notebooks if not args.only or nb in args.only]
    out_dir = Path(args.out).resolve() if args.out else RUNS / args.profile
    for nb in todo:
        params = {"run_dir": str(out_dir), **profile.get(nb, {})}
        t0 = time.time()
        print(f"[run] {nb} (profile {args.profile}) ...", flush=True)
        try:
            run_notebook(nb, params, out_dir)
        except RuntimeError as e:
            print(f"[run] FAILED: {e}", file=sys.stderr)
            return 1
        print(f"[run] {nb} done in {time.time() - t0:.0f} s -> {out_dir / nb}", flush=True)
    print(f"[run] all done: executed notebooks, figures and tables under {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
