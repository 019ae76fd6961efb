"""Every figure of the README and docs/: made by a named command, with the run it came from.

    make figures                                  # = .venv/bin/python bench/figures.py
    .venv/bin/python bench/figures.py --only 01   # one group: 01, 04 or 05

docs/figures/figures.json maps each figure to the command that drew it, the run or table it
was drawn from and that source's commit. The groups:

- 01: notebook 01_data under the smoke profile (a minute); its class-count and
  test-distribution figures are copied from the run's figures/.
- 04: bench/agnostic_eval.py on runs/cpu/04_agnostic_evaluation, the cpu run of notebook 04,
  and the runs of runs/cpu_baselines and runs/cpu_balpoe where they exist (the committed table
  stacks these three; bench/agnostic_eval.py). It needs the cpu training of
  bench/train_accuracy.py first; skipped with a message when the cpu run does not exist, and
  the figure keeps its earlier record.
- 05: bench/nmr_figures.py (bench/nmr_real.json and the shipped NMR model).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.core.io import atomic_write, atomic_write_text
from lib.core.paths import REPO_ROOT, RUNS

FIG = REPO_ROOT / "docs" / "figures"
MANIFEST = FIG / "figures.json"
NB01_FIGURES = {  # docs figure <- the figure notebook 01 saves
    "01_class_counts.png": "class_counts_and_shot_groups.png",
    "01_test_distributions.png": "test_distributions.png",
}
RUN04 = RUNS / "cpu" / "04_agnostic_evaluation"
MORE04 = [RUNS / p / "04_agnostic_evaluation" for p in ("cpu_baselines", "cpu_balpoe")]


def record_figures(names: list[str], entry: dict[str, Any]) -> None:
    """Write `entry` (command, source, commit, ...) as the record of each figure in `names`."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for name in names:
        if not (FIG / name).is_file():
            raise FileNotFoundError(f"{FIG / name} does not exist; draw it before recording it")
        manifest[name] = entry
    text = json.dumps(dict(sorted(manifest.items())), indent=2) + "\n"
    atomic_write_text(MANIFEST, text)


def run_source(run: Path) -> dict[str, Any]:
    """What a notebook run says about itself: folder, run id, commit, time, profile parameters."""
    rec = json.loads((run / "run.json").read_text())
    if rec.get("status") != "complete":
        raise RuntimeError(f"{run} did not finish (status {rec.get('status')!r}); run it again")
    return {
        "run": str(run.resolve().relative_to(REPO_ROOT)),
        "run_id": rec["run_id"],
        "commit": rec["git_commit"],
        "time_utc": rec.get("complete_utc") or rec.get("time_utc"),
    }


def python(*args: str) -> None:
    """Run a Python command of this repository, stopping on failure."""
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO_ROOT, check=True)


def figures_01() -> None:
    """Notebook 01 under the smoke profile; copy its two figures."""
    python("-m", "lib.run", "--profile", "smoke", "--only", "01_data")
    run = (RUNS / "smoke" / "01_data").resolve()
    for ours, theirs in NB01_FIGURES.items():
        src = run / "figures" / theirs
        atomic_write(FIG / ours, lambda tmp, src=src: shutil.copyfile(src, tmp))
    command = (
        "python -m lib.run --profile smoke --only 01_data (figures copied by bench/figures.py)"
    )
    record_figures(list(NB01_FIGURES), {"command": command, **run_source(run)})


def figures_04() -> None:
    """bench/agnostic_eval.py on the cpu run of notebook 04 (it records its figure itself)."""
    if not (RUN04 / "run.json").exists():
        print(
            f"04: skipped, {RUN04.relative_to(REPO_ROOT)} does not exist; make it with "
            "`python bench/train_accuracy.py` then `python -m lib.run --profile cpu --only "
            "04_agnostic_evaluation` (hours on a 2-core CPU)"
        )
        return
    runs = [RUN04, *[r for r in MORE04 if (r / "run.json").exists()]]
    python("bench/agnostic_eval.py", *[a for r in runs for a in ("--run", str(r))])


def figures_05() -> None:
    """bench/nmr_figures.py (it records its figures itself)."""
    python("bench/nmr_figures.py")


GROUPS = {"01": figures_01, "04": figures_04, "05": figures_05}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", action="append", choices=list(GROUPS), help="one group (repeatable)")
    args = ap.parse_args()
    for name in args.only or list(GROUPS):
        GROUPS[name]()
    print(f"records: {MANIFEST.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
