"""A denoiser (the shipped one by default) on simulated test sets: the simulated-set goals with their bootstrap support.

    .venv/bin/python bench/nmr_sim.py [--model FILE] [--n-test 64] [--name nmr_sim]

Test simulators: the `cpu` profile's (what the shipped model is trained on), those of earlier
tables (lines up to 5 and 2.5 Hz), and the model's own training simulator (from its card) where
that is none of these. Validation and test sets
use notebook 05's seeds (seed + 1000, seed + 2000); classical knobs are tuned per SNR on the
validation sets against the truth. Writes bench/NAME.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import git_commit
from lib.nmr import evaluate as EV
from lib.nmr.denoiser import as_model
from lib.nmr.modelfile import SHIPPED, read_card
from lib.nmr.recipe import PROFILE_SECTION, recipe, recipe_params, trained_sim
from lib.nmr.simulate import SpectrumSimConfig
from lib.run import load_profile

COLS = ["time_factor_peak", "time_factor_whole", "height_err", "height_bias", "integral_err", "f1"]
EARLIER_MAX_HZ = (5.0, 2.5)  # broadest simulated line of the cpu profile's earlier simulators


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="model file (default: the shipped one)")
    ap.add_argument("--n-test", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=4)
    ap.add_argument("--snrs", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--name", default="nmr_sim", help="output stem (the claim's table name)")
    a = ap.parse_args()
    model, info = as_model(a.model or None)
    R = recipe(recipe_params(load_profile("cpu").get(PROFILE_SECTION, {})))
    lo, hi = R.sim.linewidth_hz
    sims = {f"lines {lo:g}-{hi:g} Hz (cpu profile, training)": R.sim}
    for hi_earlier in EARLIER_MAX_HZ:  # the simulators of earlier tables, for comparison
        if hi_earlier != hi:
            sims[f"lines {lo:g}-{hi_earlier:g} Hz (earlier tables)"] = replace(
                R.sim, linewidth_hz=(lo, hi_earlier)
            )
    own = trained_sim(read_card(a.model or SHIPPED))
    if own is not None and own not in sims.values():
        diff = ", ".join(
            f"{f.name} {getattr(own, f.name)}"
            for f in fields(SpectrumSimConfig)
            if getattr(own, f.name) != getattr(R.sim, f.name)
        )
        sims[f"{diff} (the model's training simulator)"] = own
    md = [
        (
            f"# A denoiser on simulated test sets (bench/nmr_sim.py)\n\nModel: {info}. {a.n_test} test spectra per "
            f"SNR, knobs tuned on {a.n_val} validation spectra per SNR. Commit {git_commit()}.\n"
        )
    ]
    out = {"model": info, "commit": git_commit(), "sims": {}}
    for name, sim in sims.items():
        t0 = time.perf_counter()
        val = EV.make_test_sets(sim, a.snrs, a.n_val, seed=R.seed + 1000)
        test = EV.make_test_sets(sim, a.snrs, a.n_test, seed=R.seed + 2000)
        knobs = {s: EV.tune_baselines(v, sim.sw_hz) for s, v in val.items()}
        rows = EV.evaluation_rows(model, test, knobs, sim.sw_hz, R.prep)
        table = EV.pooled_table(rows)
        goals, support = EV.goal_check(table), EV.goal_support(rows, n_boot=2000)
        md += [
            f"## {name}\n",
            markdown_table(table[COLS], digits=3, index=True),
            "\n### Goals (point estimate)\n",
            markdown_table(goals, digits=3, index=True),
            "\n### Support (share of 2000 bootstrap resamples of the test spectra; met at >= 0.95)\n",
            markdown_table(support, digits=3, index=True),
            f"\n({time.perf_counter() - t0:.0f} s)\n",
        ]
        out["sims"][name] = {
            "metrics": json.loads(table.reset_index().to_json(orient="records")),
            "goals": json.loads(goals.reset_index().to_json(orient="records")),
            "support": json.loads(support.reset_index().to_json(orient="records")),
            "knobs": knobs,
        }
        print(md[-4], md[-2], flush=True)
    atomic_write_text(out_dir("nmr_sim") / f"{a.name}.md", "\n".join(md) + "\n")
    atomic_write_text(
        out_dir("nmr_sim") / f"{a.name}.json", json.dumps(out, indent=2, default=str) + "\n"
    )


if __name__ == "__main__":
    main()
