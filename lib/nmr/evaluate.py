"""The honest evaluation table, the goal check and the ablations (what the notebook calls).

Every method gets the same low-SNR input (acquisition 0 of each test set) and is scored
against the clean truth, which never enters the pseudo ground truth. The co-addition of
all acquisitions is the physical reference: it uses K more acquisitions than the others.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .baselines import GRIDS, apply_baseline, coaddition
from .losses import SEED_CONS, SEED_T, LossWeights
from .metrics import MetricConfig, spectrum_metrics, summarize
from .preprocess import PrepConfig, prepare
from .simulate import SimConfig, SpectrumSet, simulate_set
from .train import TrainConfig, build_train_data, train
from .unet import UNetConfig, denoise

CLASSICAL = ("savgol", "wavelet", "exp_lb")


def make_test_sets(cfg: SimConfig, snrs: list[float], n: int, seed: int) -> dict[float, SpectrumSet]:
    """One simulated set per input peak SNR, each from its own seed."""
    return {float(s): simulate_set(cfg, n, seed + i, snr0=float(s)) for i, s in enumerate(snrs)}


def peak_mse(y: np.ndarray, truth: np.ndarray, frac: float) -> float:
    """Squared error summed over the peak regions of a batch."""
    return float(sum(((a - t)[t > frac * t.max()] ** 2).sum() for a, t in zip(y, truth)))


def tune_baselines(val: SpectrumSet, sw_hz: float, frac: float = 0.02) -> dict[str, float]:
    """Knob of each classical method minimizing the peak-region error on a validation set."""
    x0 = val.x[:, 0].astype(np.float64)
    return {name: float(min(grid, key=lambda g: peak_mse(apply_baseline(name, x0, g, sw_hz), val.truth, frac)))
            for name, grid in GRIDS.items()}


def method_outputs(model, ds: SpectrumSet, knobs: dict[str, float], sw_hz: float,
                   prep: PrepConfig = PrepConfig(), device="cpu") -> dict[str, np.ndarray]:
    """Outputs [N, L] of the input, the U-Net, the classical methods and the co-addition."""
    x0 = ds.x[:, 0].astype(np.float64)
    out = {"input": x0}
    if model is not None:
        out["unet"] = denoise(model, x0, device=device).astype(np.float64)
    for name in CLASSICAL:
        out[name] = apply_baseline(name, x0, knobs[name], sw_hz)
    out["coaddition (all K+1)"] = np.stack([coaddition(prepare(s, prep)) for s in ds.x])
    return out


def metric_table(outputs: dict[str, np.ndarray], ds: SpectrumSet, cfg: MetricConfig = MetricConfig()) -> pd.DataFrame:
    """One row per method: pooled metrics over the set."""
    step = float(abs(ds.ppm[1] - ds.ppm[0]))
    x0 = outputs["input"]
    rows = {m: summarize([spectrum_metrics(y[i], x0[i], ds.truth[i].astype(np.float64), step, cfg)
                          for i in range(len(ds))]) for m, y in outputs.items()}
    return pd.DataFrame(rows).T


def evaluation_table(model, sets: dict[float, SpectrumSet], knobs: dict[float, dict[str, float]], sw_hz: float,
                     prep: PrepConfig = PrepConfig(), cfg: MetricConfig = MetricConfig(), device="cpu") -> pd.DataFrame:
    """Metric table for every input SNR, indexed by (snr, method)."""
    parts = {s: metric_table(method_outputs(model, ds, knobs[s], sw_hz, prep, device), ds, cfg)
             for s, ds in sets.items()}
    return pd.concat(parts, names=["input_snr", "method"])


def goal_check(table: pd.DataFrame) -> pd.DataFrame:
    """The issue's goals per input SNR, against the classical baselines."""
    rows = {}
    for snr, t in table.groupby(level=0):
        t = t.droplevel(0)
        c, u = t.loc[list(CLASSICAL)], t.loc["unet"]
        rows[snr] = {
            "peak_factor": u.time_factor_peak, "best_classical_peak": c.time_factor_peak.max(),
            "peak_factor>=4": u.time_factor_peak >= 4,
            "peak_factor>=2x_best": u.time_factor_peak >= 2 * c.time_factor_peak.max(),
            "whole>=best": u.time_factor_whole >= c.time_factor_whole.max(),
            "height_err<all": u.height_err < c.height_err.min(),
            "integral_err<all": u.integral_err < c.integral_err.min(),
        }
    return pd.DataFrame(rows).T.rename_axis("input_snr")


@dataclass
class Ablation:
    """One switched setting: where it lives (prep, weights) and its value."""

    name: str
    where: str
    field: str
    value: object


ABLATIONS = (
    Ablation("no peak weighting", "weights", "w_peak", 1.0),
    Ablation("no curvature loss", "weights", "curv", 0.0),
    Ablation("with consistency / T losses (seed weights)", "weights", "cons_and_T", (SEED_CONS, SEED_T)),
    Ablation("pseudo truth = best acquisition", "prep", "fusion", "best"),
    Ablation("no rescaling", "prep", "rescale", False),
)


def ablated(ab: Ablation, prep: PrepConfig, tcfg: TrainConfig) -> tuple[PrepConfig, TrainConfig]:
    """Configs with one ablation applied."""
    if ab.where == "prep":
        return replace(prep, **{ab.field: ab.value}), tcfg
    w: LossWeights = tcfg.weights
    w = replace(w, cons=ab.value[0], T=ab.value[1]) if ab.field == "cons_and_T" else replace(w, **{ab.field: ab.value})
    return prep, replace(tcfg, weights=w)


def run_ablations(train_x: np.ndarray, sets: dict[float, SpectrumSet], tcfg: TrainConfig, net: UNetConfig,
                  prep: PrepConfig = PrepConfig(), cfg: MetricConfig = MetricConfig(), progress: bool = True,
                  ablations=ABLATIONS) -> pd.DataFrame:
    """Train the full model and each ablation with the same budget; U-Net metrics per input SNR."""
    dev = "cuda" if (tcfg.device == "auto" and torch.cuda.is_available()) else ("cpu" if tcfg.device == "auto" else tcfg.device)
    rows = {}
    for ab in (None,) + tuple(ablations):
        p, t = (prep, tcfg) if ab is None else ablated(ab, prep, tcfg)
        model, _ = train(build_train_data(train_x, p), t, net, progress=progress)
        for s, ds in sets.items():
            y = denoise(model, ds.x[:, 0], device=dev).astype(np.float64)
            step = float(abs(ds.ppm[1] - ds.ppm[0]))
            m = summarize([spectrum_metrics(y[i], ds.x[i, 0].astype(np.float64), ds.truth[i].astype(np.float64), step, cfg)
                           for i in range(len(ds))])
            rows[("full model" if ab is None else ab.name, s)] = m
    return pd.DataFrame(rows).T.rename_axis(["setting", "input_snr"])
