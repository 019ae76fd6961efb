"""Never worse than the input, from SNR 3 to 1e5: the user's call on measured FIDs plus noise.

    make nmr-replicates                 # NMRPy's 13C / 31P / 1H runs (pip, sha256-checked)
    make bench NAME=nmr_snr_range       # the claim -> bench/nmr_snr_range.{md,json}
    .venv/bin/python bench/nmr_snr_range.py --snrs 3 1e4 --n-test 1   # a variant under runs/

FIDs: the measured 1H FIDs shipped in tests/data, NMRPy's 13C / 31P / 1H runs, and simulated
noiseless FIDs (the only references clean enough for input SNRs near 1e5). A measured FID is
scored only at input SNRs up to a tenth of its own (so its noise is at most 1% of the input's
noise variance); the table marks the rest.

Per FID and input SNR s: replicate series of four acquisitions (SNR s, 2s, 4s, 8s; noise added
to the measured FID), each handed to `denoise_series` as `python -m lib.nmr denoise` does
(fine-tuning when the series allows it, the held-out scores deciding what is kept). Beside the
kept output: the shipped model alone (blended toward the input beyond its training SNR, as
`denoise` does) and without that blend, the fine-tuned model, and every classical method with
its knob tuned on another draw. Everything is scored against the measured FID without added
noise, whose own noise caps every factor near (native SNR / s)^2: at input SNRs near the
native one a factor only says "about as good as the input".
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
from lib.nmr.denoiser import as_model, denoise_series
from lib.nmr.evaluate import (
    CLASSICAL,
    method_outputs,
    pooled_table,
    resampled_summaries,
    spectrum_rows,
    tune_baselines,
)
from lib.nmr.fileio import RawFID
from lib.nmr.realdata import REAL_METRICS, grouped_resamples, read_raw_fids, shipped_fids
from lib.nmr.series import replicate_fids, series_from_fids, spectrum_snr, tallest_line
from lib.nmr.simulate import SpectrumSet, SpectrumSimConfig, fid_from_lines, random_lines
from lib.nmr.unet import denoise

NMRPY = REPO_ROOT / "data" / "nmr_replicates" / "bruker2"
FIDS = (
    REPO_ROOT / "tests" / "data" / "nmr" / "jcamp",
    REPO_ROOT / "tests" / "data" / "nmr" / "bruker",
    *(NMRPY / str(n) for n in (22, 23, 24)),  # 13C, 31P, 1H
)
CLEAN_ENOUGH = 10.0  # a measured FID is scored at input SNRs up to its own / this
NEVER_WORSE = 0.95  # the goal: time factor of the kept output at least this, support >= 0.95
KEPT = "unet (kept output)"
SHOWN = ("unet (no blend)", "unet", "unet fine-tuned", KEPT)


def simulated_raws(n: int, seed: int) -> list[RawFID]:
    """n noiseless FIDs from the training simulator's settings (its lines, no noise, no baseline)."""
    cfg, rng = SpectrumSimConfig(), np.random.default_rng(seed)
    return [
        RawFID(
            fid_from_lines(random_lines(rng, cfg), cfg),
            cfg.sw_hz,
            cfg.spectrometer_mhz,
            cfg.center_ppm,
            source=f"simulated/{i}",
        )
        for i in range(n)
    ]


def draws(raw, snr: float, n: int, seed: int, phase) -> tuple[SpectrumSet, list]:
    """n replicate series of one FID at input SNR snr on one phase, and the noiseless reference."""
    height = tallest_line(raw)
    series = [
        series_from_fids(
            replicate_fids(raw, snr, 2.0, 4, seed * 1000 + d, height=height), phase=phase
        )
        for d in range(n)
    ]
    truth = series_from_fids([raw], phase=phase).spectra[0]
    return (
        SpectrumSet(
            x=np.stack([s.spectra for s in series]),
            truth=np.stack([truth] * n),
            ppm=series[0].ppm,
            snr0=np.full(n, snr),
            T=2.0,
            shifts_ppm=np.zeros((n, 4)),
        ),
        series,
    )


def never_worse_support(rows: dict, groups: dict, seed: int, n_boot: int = 2000) -> pd.DataFrame:
    """Per SNR and denoiser: pooled factors and the share of resamples (FIDs, then draws) with
    both factors >= NEVER_WORSE."""
    out = {}
    for s, by in rows.items():
        idx = grouped_resamples(groups[s], n_boot, np.random.default_rng([seed, int(s)]))
        for m in (*SHOWN, *CLASSICAL):
            r = resampled_summaries(by[m], idx)
            peak, whole = (np.asarray(r[f"time_factor_{w}"]) for w in ("peak", "whole"))
            per = np.array([x["se_peak_in"] / max(x["se_peak_out"], 1e-300) for x in by[m]])
            out[(s, m)] = {
                "peak_p5": float(np.percentile(peak, 5)),
                "whole_p5": float(np.percentile(whole, 5)),
                "support_never_worse": float(
                    np.mean((peak >= NEVER_WORSE) & (whole >= NEVER_WORSE))
                ),
                "min_spectrum_peak": float(per.min()),
            }
    return pd.DataFrame(out).T.rename_axis(["input_snr", "method"])


def per_fid(rows: dict, groups: dict, names: list[str], method: str) -> pd.DataFrame:
    """Peak-region time factor of one method per FID (rows) and input SNR (columns)."""
    out: dict = {}
    for s, by in rows.items():
        for g in np.unique(groups[s]):
            mine = [r for r, k in zip(by[method], groups[s]) if k == g]
            se_in = sum(r["se_peak_in"] for r in mine)
            out.setdefault(names[g], {})[s] = se_in / max(
                sum(r["se_peak_out"] for r in mine), 1e-300
            )
    return pd.DataFrame(out).T.rename_axis("fid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fids", nargs="+", default=[str(p) for p in FIDS])
    ap.add_argument("--snrs", type=float, nargs="+", default=[3.0, 30.0, 300.0, 3e3, 3e4, 1e5])
    ap.add_argument("--n-test", type=int, default=1, help="scored series per FID and SNR")
    ap.add_argument("--n-val", type=int, default=1, help="draws that tune the classical knobs")
    ap.add_argument("--sim", type=int, default=3, help="simulated noiseless FIDs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="nmr_snr_range")
    a = ap.parse_args()
    if any(str(NMRPY) in f for f in a.fids) and not (NMRPY / "24" / "fid").exists():
        raise SystemExit(f"{NMRPY} is missing: run `make nmr-replicates` first")
    model, info = as_model(None)
    paths = shipped_fids(*a.fids)
    raws = read_raw_fids(paths) + simulated_raws(a.sim, a.seed)
    names = [fid_name(p) for p in paths] + [r.source for r in raws[len(paths) :]]
    natives = {
        n: spectrum_snr(series_from_fids([r]).spectra[0]) if i < len(paths) else np.inf
        for i, (n, r) in enumerate(zip(names, raws))
    }
    t0 = time.perf_counter()
    rows: dict = {}
    groups: dict = {}
    calls = []
    jobs = [
        (g, s) for g in range(len(raws)) for s in a.snrs if s <= natives[names[g]] / CLEAN_ENOUGH
    ]
    for job, (g, snr) in enumerate(tqdm(jobs, desc="FID x SNR")):
        raw, name = raws[g], names[g]
        first = series_from_fids(replicate_fids(raw, snr, 2.0, 4, a.seed * 7919 + job))
        phase = first.phase  # one phasing per sample and SNR, as a user does
        val, _ = draws(raw, snr, a.n_val, a.seed * 7919 + 1000 + job, phase)
        test, series = draws(raw, snr, a.n_test, a.seed * 7919 + 2000 + job, phase)
        out = method_outputs(model, test, tune_baselines(val, raw.sw_hz), raw.sw_hz)
        out["unet (no blend)"] = denoise(model, test.x[:, 0], blend=False).astype(np.float64)
        tuned, kept = [], []
        for i, s in enumerate(series):
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = denoise_series(s, model, progress=False)
            tuned.append(r.outputs.get("unet fine-tuned", r.outputs["unet"]))
            kept.append(r.denoised)
            calls.append(
                {
                    "fid": name,
                    "input_snr": snr,
                    "draw": i,
                    "output": r.info["output"],
                    "fine_tune": r.info.get("fine_tune", {}).get("skipped", "done"),
                    "unet_weight": r.info.get("blend", {}).get("unet_weight", 1.0),
                    "kept_input": r.info.get("kept_input", ""),
                    "seconds": round(time.perf_counter() - t1, 1),
                }
            )
        out["unet fine-tuned"], out[KEPT] = np.stack(tuned), np.stack(kept)
        for m, rr in spectrum_rows(out, test, REAL_METRICS).items():
            rows.setdefault(snr, {}).setdefault(m, []).extend(rr)
        groups.setdefault(snr, []).extend([g] * a.n_test)
    secs = time.perf_counter() - t0
    groups = {s: np.array(v) for s, v in groups.items()}
    table = pooled_table(rows)
    support = never_worse_support(rows, groups, a.seed)
    peak = table["time_factor_peak"].unstack("method")[[*SHOWN, *CLASSICAL]]
    whole = table["time_factor_whole"].unstack("method")[[*SHOWN, *CLASSICAL]]
    kept = support.xs(KEPT, level="method")
    met = bool((kept["support_never_worse"] >= 0.95).all())
    calls_df = pd.DataFrame(calls)
    what = (
        calls_df.groupby("input_snr")
        .agg(
            kept_fine_tuned=("output", lambda o: int((o == "unet fine-tuned").sum())),
            kept_unet=("output", lambda o: int((o == "unet").sum())),
            kept_input=("output", lambda o: int((o == "input").sum())),
            fine_tune_skipped=("fine_tune", lambda f: int((f != "done").sum())),
            median_unet_weight=("unet_weight", "median"),
            median_call_s=("seconds", "median"),
        )
        .rename_axis("input_snr")
    )
    md = [
        "# Never worse than the input, SNR 3 to 1e5 (bench/nmr_snr_range.py)\n",
        f"Model: {info}. FIDs ({len(raws)}, SNR of the reference; scored up to a "
        f"{CLEAN_ENOUGH:g}th of it): "
        + ", ".join(f"{n} {v:.0f}" for n, v in natives.items())
        + f". Per FID and input SNR {a.n_test} replicate series (SNR s, 2s, 4s, 8s), each through "
        f"the user's call; classical knobs tuned on {a.n_val} other draw(s). Commit {git_commit()}; "
        f"{secs:.0f} s.\n",
        f"Goal: the kept output's time factor >= {NEVER_WORSE} on the lines and on the whole spectrum "
        f"with support >= 0.95 (2000 resamples, FIDs then draws) at every input SNR: "
        f"**{'met' if met else 'not met'}**.\n",
        "## The kept output: 5th percentiles of the resampled factors and the support\n",
        markdown_table(kept, digits=3, index=True),
        "\n## Peak-region time factor by method (pooled; the input is 1)\n",
        markdown_table(peak, digits=3, index=True),
        "\n## Whole-spectrum time factor by method\n",
        markdown_table(whole, digits=3, index=True),
        "\n## The kept output's peak-region factor per FID ('unet (no blend)' in the next table)\n",
        markdown_table(per_fid(rows, groups, names, KEPT), digits=3, index=True),
        "\n## The shipped model without its blend toward the input, per FID\n",
        markdown_table(per_fid(rows, groups, names, "unet (no blend)"), digits=3, index=True),
        "\n## What the calls did\n",
        markdown_table(what, digits=3, index=True),
    ]
    atomic_write_text(out_dir("nmr_snr_range") / f"{a.name}.md", "\n".join(md) + "\n")
    out_json = {
        "model": info,
        "commit": git_commit(),
        "seconds": secs,
        "fids": names,
        "scored": [[names[g], s] for g, s in jobs],
        "native_snr": {n: (v if np.isfinite(v) else None) for n, v in natives.items()},
        "met": met,
        "metrics": json.loads(table.reset_index().to_json(orient="records")),
        "support": json.loads(support.reset_index().to_json(orient="records")),
        "calls": calls,
    }
    atomic_write_text(
        out_dir("nmr_snr_range") / f"{a.name}.json", json.dumps(out_json, indent=2) + "\n"
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
