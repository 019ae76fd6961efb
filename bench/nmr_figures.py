"""Figures of the real-signal results for README and docs/nmr.md.

    .venv/bin/python bench/nmr_figures.py     # reads bench/nmr_real.json, uses the shipped model

Writes docs/figures/05_real_factors.png (peak-region factor per method and input SNR, pooled
and per FID, from bench/nmr_real.json) and docs/figures/05_real_overlay.png (one replicate
series of a measured FID at input SNR 5: input, Savitzky-Golay, the shipped U-Net, the U-Net
fine-tuned on another series of that FID as `denoise` does by default, the measured FID without
added noise),
and their record in docs/figures/figures.json (commit, model and table they came from); after
`make nmr-replicates`, also docs/figures/05_nmrpy_13c_overlay.png (a measured 13C run, SNR 10).

    .venv/bin/python bench/nmr_figures.py --only snr_range    # from bench/nmr_snr_range.json

docs/figures/05_snr_range.png: time factor against input SNR (3 to 1e5), the kept output beside
the shipped model without its blend toward the input and the classical methods.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.figures import record_figures
from bench.nmr_common import fid_name
from lib.core.paths import REPO_ROOT
from lib.core.provenance import git_commit
from lib.nmr import evaluate as EV
from lib.nmr.denoiser import as_model
from lib.nmr.fileio import read_fid
from lib.nmr.finetune import FineTune
from lib.nmr.realdata import fine_tuned_on, replicate_sets
from lib.nmr.unet import denoise

FIG = REPO_ROOT / "docs" / "figures"
METHODS = ["savgol", "wavelet", "exp_lb", "cadzow", "unet", "unet fine-tuned"]


def factors_figure(res: dict) -> plt.Figure:
    """Pooled peak-region factor per method and SNR, with each FID's value as a dot."""
    pooled = pd.DataFrame(res["metrics"]).set_index(["input_snr", "method"])["time_factor_peak"]
    per = pd.DataFrame(res["per_fid"])
    snrs = sorted(pooled.index.get_level_values(0).unique())
    methods = [m for m in METHODS if m in pooled.index.get_level_values(1)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs = np.arange(len(snrs)) + (j - (len(methods) - 1) / 2) * w
        ax.bar(xs, [pooled[(s, m)] for s in snrs], w, label=m)
        for x, s in zip(xs, snrs):
            v = per[(per.input_snr == s) & (per.method == m)].time_factor_peak
            ax.plot(np.full(len(v), x), v, "k.", ms=3)
    ax.set_xticks(range(len(snrs)), [f"input SNR {s:g}" for s in snrs])
    ax.set_ylabel("peak-region time factor")
    ax.legend(fontsize=7, ncol=3)
    ax.set_title("real signal plus added noise (bars: pooled; dots: each FID)", fontsize=9)
    fig.tight_layout()
    return fig


def overlay_figure(model, fid: Path, snr: float, ft: FineTune = FineTune()) -> plt.Figure:
    """Zoom on the densest region of one series: input, Savitzky-Golay, shipped and fine-tuned
    U-Net, the measured FID (fine-tuned, as bench/nmr_real.py does, on another series of it,
    whose phase every series shares)."""
    raw = read_fid(fid)
    first = replicate_sets(raw, snr, 2.0, 4, 1, seed=10)
    ph = first.meta["phase"]
    val = replicate_sets(raw, snr, 2.0, 4, 4, seed=11, phase=ph)
    one = replicate_sets(raw, snr, 2.0, 4, 1, seed=12, phase=ph)
    out = EV.method_outputs(model, one, EV.tune_baselines(val, raw.sw_hz), raw.sw_hz)
    tuned_out = denoise(fine_tuned_on(model, first, ft), one.x[:, 0])
    t = one.truth[0]
    # the 600-point window holding the most signal above 2 input-noise std
    sig = np.std(one.x[0, 0] - t)
    dense = np.convolve((t > 2 * sig).astype(float), np.ones(600), "same")
    c = int(np.argmax(dense))
    w = slice(max(c - 300, 0), c + 300)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.plot(one.ppm[w], out["input"][0, w], color="0.75", lw=0.7, label="input (acquisition 0)")
    ax.plot(
        one.ppm[w], out["savgol"][0, w], color="tab:purple", lw=0.8, label="Savitzky-Golay (tuned)"
    )
    ax.plot(one.ppm[w], out["unet"][0, w], color="tab:orange", lw=0.9, label="shipped U-Net")
    ax.plot(one.ppm[w], tuned_out[0, w], color="tab:red", lw=1.1, label="fine-tuned (the default)")
    ax.plot(one.ppm[w], t[w], color="k", ls="--", lw=0.8, label="the measured FID (no added noise)")
    ax.invert_xaxis()
    ax.set_xlabel("chemical shift (ppm)")
    ax.set_ylabel("intensity")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{fid_name(fid)} ({raw.meta.get('nucleus', '')}), input SNR {snr:g}", fontsize=9)
    fig.tight_layout()
    return fig


def snr_range_figure(res: dict) -> plt.Figure:
    """Pooled peak-region and whole-spectrum factors against input SNR, log-log, per method."""
    m = pd.DataFrame(res["metrics"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    shown = {
        "unet (kept output)": ("the call's kept output", "k", "o-"),
        "unet (no blend)": ("shipped model, no blend", "tab:red", "s--"),
        "cadzow": ("Cadzow", "tab:blue", "^-"),
        "savgol": ("Savitzky-Golay", "tab:green", "v-"),
        "wavelet": ("wavelet", "tab:purple", "d-"),
    }
    for ax, where in zip(axes, ("peak", "whole")):
        for meth, (label, color, style) in shown.items():
            d = m[m["method"] == meth].sort_values("input_snr")
            ax.plot(d["input_snr"], d[f"time_factor_{where}"], style, color=color, label=label)
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.axhline(0.95, color="0.5", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="input SNR (tallest line / noise std)")
        ax.set_ylim(1e-3, None)
        ax.set_title(f"{'lines (peak region)' if where == 'peak' else 'whole spectrum'}")
    axes[0].set_ylabel("time factor (input = 1)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw_snr_range() -> None:
    """docs/figures/05_snr_range.png from bench/nmr_snr_range.json, recorded in figures.json."""
    res = json.loads((REPO_ROOT / "bench" / "nmr_snr_range.json").read_text())
    FIG.mkdir(parents=True, exist_ok=True)
    snr_range_figure(res).savefig(FIG / "05_snr_range.png", dpi=120)
    record_figures(
        ["05_snr_range.png"],
        {
            "command": "python bench/nmr_figures.py --only snr_range",
            "commit": git_commit(),
            "table": "bench/nmr_snr_range.json",
            "table_commit": res.get("commit"),
        },
    )
    print(f"wrote {FIG}/05_snr_range.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("all", "snr_range"), default="all")
    if ap.parse_args().only == "snr_range":
        draw_snr_range()
        return
    draw_snr_range()
    res = json.loads((REPO_ROOT / "bench" / "nmr_real.json").read_text())
    model, info = as_model(None)
    fid = REPO_ROOT / "tests" / "data" / "nmr" / "jcamp" / "140-67-0_1h.fid.dx"
    FIG.mkdir(parents=True, exist_ok=True)
    factors_figure(res).savefig(FIG / "05_real_factors.png", dpi=120)
    overlay_figure(model, fid, 5.0).savefig(FIG / "05_real_overlay.png", dpi=120)
    model_info = {**info, "model": str(Path(info["model"]).resolve().relative_to(REPO_ROOT))}
    record = {
        "command": "python bench/nmr_figures.py",
        "commit": git_commit(),
        "model": model_info,
        "table": "bench/nmr_real.json",
        "table_commit": res.get("commit"),
    }
    record_figures(["05_real_factors.png", "05_real_overlay.png"], record)
    print(f"wrote {FIG}/05_real_factors.png and 05_real_overlay.png, recorded in figures.json")
    c13 = REPO_ROOT / "data" / "nmr_replicates" / "bruker2" / "22"
    if c13.exists():  # after `make nmr-replicates`: a measured 13C run of another laboratory
        overlay_figure(model, c13, 10.0).savefig(FIG / "05_nmrpy_13c_overlay.png", dpi=120)
        record_figures(
            ["05_nmrpy_13c_overlay.png"],
            {**record, "table": "none (data/nmr_replicates/bruker2/22, NMRPy test data)"},
        )
        print(f"wrote {FIG}/05_nmrpy_13c_overlay.png")


if __name__ == "__main__":
    main()
