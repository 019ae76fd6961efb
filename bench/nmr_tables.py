"""NMR denoising quality tables from a `cpu`-profile run of notebook 05.

    .venv/bin/python bench/nmr_tables.py            # run notebook 05 with the cpu profile, then tabulate
    .venv/bin/python bench/nmr_tables.py --existing # tabulate runs/cpu/05_nmr_denoising as it is

Writes bench/nmr_cpu_tables.md (metrics, goal check and its bootstrap support, ablations,
real-signal example) and bench/nmr_cpu_tables.json (the same numbers plus the run record:
parameters, versions, device, commit), so every figure traces back to its run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.core.io import atomic_write_text, markdown_table
from lib.core.paths import RUNS
from lib.run import load_profile, run_notebook

NB = "05_nmr_denoising"
COLS = [
    "time_factor_peak",
    "time_factor_whole",
    "height_err",
    "fwhm_err",
    "integral_err",
    "f1",
    "snr_gain",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--existing", action="store_true", help="do not run the notebook; read runs/cpu"
    )
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    out_dir = RUNS / args.profile
    t0 = time.perf_counter()
    if not args.existing:
        params = {"run_dir": str(out_dir), **load_profile(args.profile).get(NB, {})}
        run_notebook(NB, params, out_dir)
    wall = time.perf_counter() - t0
    tdir = out_dir / NB / "tables"
    if not tdir.exists():
        raise SystemExit(f"{tdir} not found: run without --existing first")
    rec = json.loads((out_dir / NB / "run.json").read_text())
    metrics = pd.read_csv(tdir / "metrics.csv", index_col=[0, 1])
    goals = pd.read_csv(tdir / "goals.csv", index_col=0)
    parts = [
        f"# Notebook 05 tables, profile `{args.profile}`\n",
        f"Device: {rec.get('device')}; commit {rec.get('git_commit')}; "
        f"U-Net {rec.get('n_parameters')} parameters; training {rec.get('train_seconds', 0):.0f} s "
        f"({rec.get('seconds_per_epoch', 0):.2f} s per epoch, median)"
        + (f"; whole notebook {wall:.0f} s" if not args.existing else "")
        + ".\n",
        "## Metrics against the clean truth (input = acquisition 0)\n",
        markdown_table(metrics[COLS], digits=3, index=True),
        "\n## Goal check (against the classical baselines)\n",
        markdown_table(goals, digits=3, index=True),
    ]
    out = {
        "profile": args.profile,
        "run": rec,
        "metrics": json.loads(metrics.reset_index().to_json(orient="records")),
        "goals": json.loads(goals.reset_index().to_json(orient="records")),
    }
    if (tdir / "goal_support.csv").exists():
        support = pd.read_csv(tdir / "goal_support.csv", index_col=0)
        parts += [
            "\n## Goal support (share of 2000 bootstrap resamples of the test spectra in which each goal "
            "holds; 90% intervals)\n",
            markdown_table(support, digits=3, index=True),
        ]
        out["goal_support"] = json.loads(support.reset_index().to_json(orient="records"))
    for name, title in (
        ("ablations", "Ablations (U-Net rows)"),
        ("real_plus_noise", "Real signal plus added noise"),
        ("real_goals", "Real-signal goals and their bootstrap support"),
    ):
        if (tdir / f"{name}.csv").exists():
            df = pd.read_csv(tdir / f"{name}.csv", index_col=[0, 1])
            cols = [
                c
                for c in ("time_factor_peak", "time_factor_whole", "height_err", "integral_err")
                if c in df
            ]
            cols = cols if name != "real_goals" else list(df.columns)
            parts += [f"\n## {title}\n", markdown_table(df[cols], digits=3, index=True)]
            out[name] = json.loads(df.reset_index().to_json(orient="records"))
    text = "\n".join(parts) + "\n"
    atomic_write_text(out_dir("nmr_tables") / f"nmr_{args.profile}_tables.md", text)
    atomic_write_text(
        out_dir("nmr_tables") / f"nmr_{args.profile}_tables.json",
        json.dumps(out, indent=2, default=str) + "\n",
    )
    print(text)


if __name__ == "__main__":
    main()
