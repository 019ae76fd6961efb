"""Which simulated line shape transfers to measured spectra: Lorentzian against Voigt training.

Models trained on Lorentzian lines and models trained with Voigt lines (`gauss_max`), several
training seeds each, all scored on the same noise draws of measured FIDs (no fine-tuning).

    for s in 0 1 2; do for g in 0 1; do   # about 8 min each on 2 cores
      .venv/bin/python -m lib.nmr train --profile cpu --out runs/voigt/g${g}_s$s.pt gauss_max=$g seed=$s
    done; done
    .venv/bin/python bench/nmr_shapes.py --models lorentz='runs/voigt/g0_s*.pt' voigt='runs/voigt/g1_s*.pt'

Per FID and SNR the draws, phases and classical knobs are those of bench/nmr_real.py (same
seed, same functions); every model denoises the same test draws. Writes bench/<name>.{md,json}.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import git_commit
from lib.nmr.evaluate import CLASSICAL
from lib.nmr.lineshape import gauss_shares
from lib.nmr.modelfile import load_model, read_card
from lib.nmr.realdata import (
    add_draw_args,
    fid_name,
    per_fid_table,
    read_fids,
    real_goal_support,
    real_rows_seeds,
    shipped_fids,
)
from lib.nmr.recipe import trained_sim
from lib.nmr.series import series_from_fids

HERE = Path(__file__).resolve().parent


def model_cards(specs: list[str]) -> dict[str, tuple[Path, dict]]:
    """'label=glob' pairs to {label/seed<n>: (path, card)}, the seed read from each model's card."""
    out = {}
    for spec in specs:
        label, sep, pattern = spec.partition("=")
        files = sorted(glob.glob(pattern))
        if not sep or not files:
            raise SystemExit(f"--models {spec!r}: give label=glob matching model files (.pt)")
        for f in files:
            card = read_card(f)
            out[f"{label}/seed{card['made_by']['train']['seed']}"] = (Path(f), card)
    return out


def line_shapes(raws) -> pd.DataFrame:
    """Per FID: how many lines one Voigt fits and the median and spread of their Gaussian share."""
    rows = {}
    for raw in raws:
        g = gauss_shares(series_from_fids([raw]).spectra[0])
        rows[fid_name(Path(raw.source))] = {
            "lines_fitted": len(g),
            **{
                f"gauss_share_{k}": float(np.percentile(g, q)) if len(g) else float("nan")
                for k, q in (("p10", 10), ("median", 50), ("p90", 90))
            },
        }
    return pd.DataFrame(rows).T.rename_axis("fid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="label=glob of model files")
    add_draw_args(ap)
    ap.add_argument("--name", default="nmr_shapes", help="output stem under bench/")
    a = ap.parse_args()
    cards = model_cards(a.models)
    models = {k: load_model(f) for k, (f, _) in cards.items()}
    paths = shipped_fids(*a.fids)
    raws = read_fids(paths)
    t0 = time.perf_counter()
    rows, groups, _ = real_rows_seeds(
        None, raws, a.snrs, a.seeds, n_val=a.n_val, n_test=a.n_test, ft=None, others=models
    )
    secs = time.perf_counter() - t0
    shapes = line_shapes(raws)
    sup = real_goal_support(rows, groups, denoisers=tuple(models), seed=a.seeds[0]).reset_index()
    sup["ratio"] = sup["peak_factor"] / sup["best_classical_peak"]
    sup["simulator"] = sup["denoiser"].str.split("/").str[0]
    cols = ["peak_factor", "ratio", "whole_factor", "height_err"]
    per_model = sup.set_index(["input_snr", "denoiser"])[
        [*cols, "support peak>=1.5x_best", "support height<input_and_all", "min_spectrum_factor"]
    ]
    g = sup.groupby(["input_snr", "simulator"])[cols]
    summary = g.mean().join(g.std(ddof=1).add_suffix(" sd")).join(g.size().rename("models"))
    per_fid = per_fid_table(rows, groups, [fid_name(p) for p in paths])["time_factor_peak"].unstack(
        "method"
    )
    per_fid["best classical"] = per_fid[list(CLASSICAL)].max(axis=1)
    per_fid = per_fid[["best classical", *models]]
    best = sup.groupby("input_snr")[["best_classical_peak", "input_height_err"]].first()
    sims = {k.split("/")[0]: trained_sim(c).gauss_share for k, (_, c) in cards.items()}
    md = [
        f"# Simulated line shape against measured spectra (bench/nmr_shapes.py)\n\n"
        f"FIDs: {len(paths)} ({', '.join(map(fid_name, paths))}); per FID and input SNR "
        f"{a.n_test} test draws (seeds {', '.join(map(str, a.seeds))}), classical knobs ({', '.join(CLASSICAL)}) tuned "
        f"on {a.n_val} other draws, no fine-tuning. Models: "
        + "; ".join(f"{k}: {f} ({c['sha256'][:12]})" for k, (f, c) in cards.items())
        + f". Gaussian share of the simulated widths: {sims}. Commit {git_commit()}; {secs:.0f} s.\n",
        "## Line shapes of the noiseless FIDs (one Voigt fitted per line above 10% of the tallest)\n",
        markdown_table(shapes, digits=3, index=True),
        "\n## Mean over training seeds (sd: between seeds)\n",
        markdown_table(summary, digits=3, index=True),
        "\n## Best classical peak factor and the input's height error\n",
        markdown_table(best, digits=3, index=True),
        "\n## Peak-region factor per FID\n",
        markdown_table(per_fid, digits=3, index=True),
        "\n## Every model (support: 2000 two-level bootstrap resamples, FIDs then draws)\n",
        markdown_table(per_model, digits=3, index=True),
    ]
    atomic_write_text(HERE / f"{a.name}.md", "\n".join(md) + "\n")
    out = {
        "fids": [str(p) for p in paths],
        "models": {k: str(f) for k, (f, _) in cards.items()},
        "seconds": secs,
        "commit": git_commit(),
        "per_model": json.loads(per_model.reset_index().to_json(orient="records")),
        "per_fid": json.loads(per_fid.reset_index().to_json(orient="records")),
        "line_shapes": json.loads(shapes.reset_index().to_json(orient="records")),
        "summary": json.loads(summary.reset_index().to_json(orient="records")),
    }
    atomic_write_text(HERE / f"{a.name}.json", json.dumps(out, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
