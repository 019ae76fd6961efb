"""The denoiser on real signal plus added noise: measured FIDs, replicate series at input SNR 5/10/20.

    make bench NAME=nmr_real          # the claim: seeds 0 1 2 pooled -> bench/nmr_real.{md,json}
    make bench NAME=nmr_real_nmrpy    # the same on NMRPy's runs (make nmr-replicates first)
    .venv/bin/python bench/nmr_real.py                      # one seed, a variant under runs/bench/
    .venv/bin/python bench/nmr_real.py --model runs/x.pt --fids /path/to/fids --no-fine-tune

Per FID and SNR: 16 test draws (independent complex white noise added to the FID of each
acquisition), classical knobs tuned on 4 other draws, and the shipped model fine-tuned on one
further series; everything scored against the noiseless FID.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import find_peaks, peak_widths

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from bench.nmr_common import add_draw_args, fid_name, per_fid_table
from lib.core.io import atomic_write_text, markdown_table
from lib.core.provenance import git_commit
from lib.nmr.denoiser import as_model
from lib.nmr.evaluate import pooled_table
from lib.nmr.finetune import FineTune
from lib.nmr.modelfile import SHIPPED, read_card
from lib.nmr.realdata import read_raw_fids, real_goal_support, real_rows_seeds, shipped_fids
from lib.nmr.recipe import trained_sim
from lib.nmr.series import series_from_fids, spectrum_snr

COLS = ["time_factor_peak", "time_factor_whole", "height_err", "height_bias", "integral_err", "f1"]


def line_widths(raws) -> pd.DataFrame:
    """Points, SNR, Hz per point and the FWHM (points) of the lines above 5% of the tallest, per FID."""
    rows = {}
    for raw in raws:
        y = series_from_fids([raw]).spectra[0]
        pk = find_peaks(y, height=0.05 * y.max())[0]
        w = peak_widths(y, pk, rel_height=0.5)[0]
        rows[fid_name(Path(raw.source))] = {
            "points": len(y),
            # the reference's own noise caps every factor near (snr / input SNR)^2
            "snr": spectrum_snr(y),
            "hz_per_point": raw.sw_hz / len(y),
            "lines": len(pk),
            "fwhm_points_median": float(np.median(w)),
            "fwhm_points_p10": float(np.percentile(w, 10)),
            "fwhm_points_p90": float(np.percentile(w, 90)),
        }
    return pd.DataFrame(rows).T.rename_axis("fid")


def sim_lines(model: str) -> str:
    """The simulated line widths a model was trained on (Hz, and points at the simulator's spacing), from its card."""
    sim = trained_sim(read_card(model or SHIPPED))
    if sim is None:
        return "not recorded on the model's card"
    lo, hi = sim.linewidth_hz
    hz_pt = sim.sw_hz / sim.n_points
    return f"{lo:g}-{hi:g} Hz, {lo / hz_pt:.1f}-{hi / hz_pt:.1f} points at {hz_pt:.2f} Hz per point"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="model file (default: the shipped one)")
    add_draw_args(ap)
    ap.add_argument("--steps", type=int, default=FineTune.steps, help="fine-tuning steps")
    ap.add_argument("--no-fine-tune", action="store_true")
    ap.add_argument("--name", default="nmr_real", help="output stem (the claim's table name)")
    a = ap.parse_args()
    model, info = as_model(a.model or None)
    paths = shipped_fids(*a.fids)
    t0 = time.perf_counter()
    ft = None if a.no_fine_tune else FineTune(steps=a.steps)
    raws = read_raw_fids(paths)
    widths = line_widths(raws)
    rows, groups, knobs = real_rows_seeds(
        model, raws, a.snrs, a.seeds, n_val=a.n_val, n_test=a.n_test, ft=ft
    )
    secs = time.perf_counter() - t0
    table = pooled_table(rows)
    support = real_goal_support(rows, groups, seed=a.seeds[0])
    per_fid = per_fid_table(rows, groups, [fid_name(p) for p in paths])[
        ["time_factor_peak", "time_factor_whole", "height_err"]
    ]
    peak, height = (per_fid[c].unstack("method") for c in ("time_factor_peak", "height_err"))
    head = (
        f"# Real signal plus added noise (bench/nmr_real.py)\n\nModel: {info}. FIDs: {len(paths)} "
        f"({', '.join(map(fid_name, paths))}); per FID and input SNR "
        f"{a.n_test} test draws per noise seed (seeds {', '.join(map(str, a.seeds))}, pooled), "
        f"knobs tuned on {a.n_val} other draws"
        + (
            ""
            if ft is None
            else f", fine-tuned {ft.steps} steps on one further series per FID, SNR and seed"
        )
        + f". Phase: one per FID and input SNR, found on the fine-tuning series, shared by every draw; reference: the noiseless FID processed with it. Commit {git_commit()}; "
        f"{secs:.0f} s.\n"
    )
    md = [
        head,
        "## Pooled over FIDs and draws\n",
        markdown_table(table[COLS], digits=3, index=True),
        "\n## Goals (support: share of 2000 two-level bootstrap resamples, FIDs then draws; met at >= 0.95)\n",
        markdown_table(support, digits=3, index=True),
        "\n## Peak-region factor per FID\n",
        markdown_table(peak, digits=2, index=True),
        "\n## Height error of the lines above 5 noise std per FID (the height goal, FID by FID)\n",
        markdown_table(height, digits=3, index=True),
        f"\n## Line widths of the noiseless FIDs (the model's simulated lines: {sim_lines(a.model)})\n",
        markdown_table(widths, digits=3, index=True),
    ]
    atomic_write_text(out_dir("nmr_real") / f"{a.name}.md", "\n".join(md) + "\n")
    out = {
        "model": info,
        "fids": [str(p) for p in paths],
        "seconds": secs,
        "commit": git_commit(),
        "metrics": json.loads(table.reset_index().to_json(orient="records")),
        "support": json.loads(support.reset_index().to_json(orient="records")),
        "per_fid": json.loads(per_fid.reset_index().to_json(orient="records")),
        "knobs": {f"{k[0]} snr {k[1]} seed {k[2]}": v for k, v in knobs.items()},
        "line_widths": json.loads(widths.reset_index().to_json(orient="records")),
    }
    atomic_write_text(out_dir("nmr_real") / f"{a.name}.json", json.dumps(out, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
