"""Can a user trust scores.csv? The held-out scores of `denoise` against the factor on the truth.

    make bench NAME=nmr_scores            # the claim: -> bench/ with its provenance

Series are made from measured FIDs (the repository's, and NMRPy's 13C / 31P / 1H runs 22-24 after
`make nmr-replicates`): acquisition k is the FID plus complex white noise at SNR s * T**k ("T2",
T = 2) or at SNR s for every k ("equal", runs of equal scans). Each goes through
`denoise_series` as `python -m lib.nmr denoise` does (no fine-tuning): its scores are estimated
against the co-add of acquisitions 1..3. Here the noiseless FID is also known, so each score is
compared with the same factor computed against it, on the same peak region. No true shift or
scale exists between the acquisitions (one FID), so every shift the alignment reports is an
error. The script does not rely on the interval columns, so it also runs on older commits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import out_dir
from bench.nmr_common import fid_name
from lib.core.io import atomic_write_text, markdown_table
from lib.core.paths import REPO_ROOT
from lib.core.provenance import git_commit
from lib.nmr.baselines import GRIDS
from lib.nmr.denoiser import as_model, denoise_series
from lib.nmr.preprocess import prepare
from lib.nmr.realdata import read_raw_fids, shipped_fids
from lib.nmr.scoring import classical_outputs
from lib.nmr.series import series_from_fids, tallest_line, with_noise

NMRPY = REPO_ROOT / "data" / "nmr_replicates" / "bruker2"
NMRPY_RUNS = ("22", "23", "24")  # 13C, 31P, 1H of one time point
KINDS = {"T2": 2.0, "equal": 1.0}


def true_factor(x0: np.ndarray, y: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    """Equivalent measuring-time factor of y against the noiseless spectrum on `where`."""
    return float(np.mean((x0 - truth)[where] ** 2) / np.mean((y - truth)[where] ** 2))


def one_series(model, raw, snr: float, T: float, seed: list[int]) -> dict:
    """One series through the user's call; its scores beside the factors against the truth."""
    rng = np.random.default_rng(seed)
    h, m = tallest_line(raw), len(raw.fid)
    fids = [with_noise(raw, h / (snr * T**k) / np.sqrt(m), rng, f"acq{k}") for k in range(4)]
    try:
        s = series_from_fids(fids)
    except ValueError as e:  # the user is refused too (e.g. no acquisition above chance noise)
        return {"refused": str(e).split(":")[0]}
    truth = series_from_fids([raw], phase=s.phase).spectra[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = denoise_series(s, model, fine_tune_on=False, progress=False)
    region = prepare(s.spectra).peak_mask  # the region scores.csv uses
    cl, _ = classical_outputs(r.input, r.reference, region, s.sw_hz)
    outs = {"unet": r.denoised, **cl}
    true = {k: true_factor(r.input, y, truth, region) for k, y in outs.items()}
    sc = r.scores
    best_true = max(true[c] for c in GRIDS)
    best_scored = max(float(sc.loc[c, "time_factor_peak"]) for c in GRIDS)
    row = {
        "refused": "",
        "shift_rms": float(np.sqrt(np.mean(np.square(r.info["shifts_points"][1:])))),
        "scale_err_rms": float(np.sqrt(np.mean((np.array(r.info["scales"][1:]) - 1) ** 2))),
        "unet_true": true["unet"],
        "unet_scored": float(sc.loc["unet", "time_factor_peak"]),
        "ranked_right": bool(
            (float(sc.loc["unet", "time_factor_peak"]) > best_scored) == (true["unet"] > best_true)
        ),
    }
    row["log_ratio"] = float(np.log(row["unet_scored"] / row["unet_true"]))
    if "peak_p5" in sc.columns:  # the 90% interval (absent before it was added)
        row["covered"] = bool(
            sc.loc["unet", "peak_p5"] <= true["unet"] <= sc.loc["unet", "peak_p95"]
        )
        row["interval_ratio"] = float(sc.loc["unet", "peak_p95"] / sc.loc["unet", "peak_p5"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snrs", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--draws", type=int, default=4, help="series per FID, SNR and kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="nmr_scores")
    a = ap.parse_args()
    paths = shipped_fids(REPO_ROOT / "tests" / "data" / "nmr" / "jcamp")
    paths += [NMRPY / r for r in NMRPY_RUNS if (NMRPY / r / "fid").exists()]
    raws = read_raw_fids(paths)
    model, info = as_model(None)
    t0 = time.perf_counter()
    rows = []
    jobs = [
        (i, s, k, d)
        for i in range(len(raws))
        for s in a.snrs
        for k in KINDS
        for d in range(a.draws)
    ]
    for job, (i, snr, kind, d) in enumerate(tqdm(jobs, desc="series")):
        row = one_series(model, raws[i], snr, KINDS[kind], seed=[a.seed, job])
        rows.append({"fid": fid_name(paths[i]), "input_snr": snr, "kind": kind, "draw": d, **row})
    secs = time.perf_counter() - t0
    every = pd.DataFrame(rows)
    refused = every.groupby(["kind", "input_snr"])["refused"].apply(lambda v: int((v != "").sum()))
    df = every[every.refused == ""]
    agg = {
        "series": ("draw", "size"),
        "shift_rms": ("shift_rms", lambda v: float(np.sqrt(np.mean(np.square(v))))),
        "scale_err_rms": ("scale_err_rms", lambda v: float(np.sqrt(np.mean(np.square(v))))),
        "unet_true_median": ("unet_true", "median"),
        "scored_over_true_median": ("log_ratio", lambda v: float(np.exp(np.median(v)))),
        "scored_over_true_p10": ("log_ratio", lambda v: float(np.exp(np.percentile(v, 10)))),
        "scored_over_true_p90": ("log_ratio", lambda v: float(np.exp(np.percentile(v, 90)))),
        "ranked_right": ("ranked_right", "mean"),
    }
    if "covered" in df:
        agg |= {
            "covered_90": ("covered", "mean"),
            "interval_p95_over_p5": ("interval_ratio", "median"),
        }
    table = df.groupby(["kind", "input_snr"]).agg(**agg)
    table.insert(0, "refused", refused.reindex(table.index).to_numpy())
    md = [
        "# Held-out scores against the truth (bench/nmr_scores.py)\n",
        f"Model: {info}. FIDs: {', '.join(map(fid_name, paths))}. {a.draws} series per FID, "
        f"SNR and kind. Commit {git_commit()}; {secs:.0f} s.\n",
        "Per kind and input SNR: series the call refused (no acquisition above chance noise), RMS of the shifts and scale errors the alignment reported (truth: "
        "0 and 1), the U-Net's peak factor against the truth (median), the ratio of its scored factor "
        "to that (median, 10th and 90th percentiles over series), the share of series where scores.csv "
        "ranks the U-Net against the best classical method as the truth does, and, where scores.csv "
        "has them, the share of 90% intervals that hold the true factor and their median width "
        "(p95 / p5).\n",
        markdown_table(table, digits=3, index=True),
    ]
    atomic_write_text(out_dir("nmr_scores") / f"{a.name}.md", "\n".join(md) + "\n")
    atomic_write_text(
        out_dir("nmr_scores") / f"{a.name}.json",
        json.dumps({"commit": git_commit(), "seconds": secs, "rows": rows}, indent=2) + "\n",
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
