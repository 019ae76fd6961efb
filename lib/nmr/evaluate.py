"""The honest evaluation table, the goal check and the ablations (what the notebook calls), and
their sizes (`SimEvalConfig`).

Every method gets the same low-SNR input (acquisition 0 of each test set) and is scored
against the clean truth, which never enters the pseudo ground truth. The co-addition of
all acquisitions is the physical reference: it uses K more acquisitions than the others.
Because the pooled factors move by tens of percent between test sets of tens of spectra, the
goal check comes with its bootstrap support (`goal_support`): how often each goal holds when
the test spectra are resampled.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from .baselines import GRIDS, apply_baseline, coaddition
from .losses import SEED_CONS, SEED_T, LossWeights
from .metrics import MetricConfig, input_sigma, pooled_factor, spectrum_metrics, summarize
from .oracle import oracle_outputs
from .preprocess import PrepConfig, prepare
from .simulate import SpectrumSet, SpectrumSimConfig, simulate_set
from .train import DenoiserTrainConfig, build_train_data, train
from .unet import UNetConfig, denoise

CLASSICAL = tuple(GRIDS)  # every classical method: the best of them is the yardstick
ORACLE = "oracle line fit"  # knows every line's position and width (simulated sets only)


@dataclass(frozen=True)
class SimEvalConfig:
    """Notebook 05's evaluation on simulated sets: input SNRs, validation and test sets per SNR,
    and the schedule of each ablation run (frozen: derive a changed copy with `dataclasses.replace`)."""

    test_snrs: tuple[float, ...] = (5, 10, 20)  # input peak SNRs of the test sets
    n_val: int = 10  # validation sets per test SNR (tune the classical knobs)
    n_test: int = 50  # test sets per test SNR
    ablation_epochs_a: int = 20  # stage A epochs of each ablation run
    ablation_epochs_b: int = 30  # stage B epochs of each ablation run


def make_test_sets(
    cfg: SpectrumSimConfig, snrs: list[float], n: int, seed: int
) -> dict[float, SpectrumSet]:
    """One simulated set per input peak SNR, each from its own seed."""
    return {float(s): simulate_set(cfg, n, seed + i, snr0=float(s)) for i, s in enumerate(snrs)}


def peak_mse(y: np.ndarray, x: np.ndarray, truth: np.ndarray, frac: float) -> float:
    """Squared error over the peak regions of a batch, each spectrum in units of its input's
    noise variance (spectra come in arbitrary scales; none may outweigh the rest)."""
    return float(
        sum(
            ((a - t)[t > frac * t.max()] ** 2).sum() / max(input_sigma(b, t) ** 2, 1e-300)
            for a, b, t in zip(y, x, truth)
        )
    )


def tune_baselines(val: SpectrumSet, sw_hz: float, frac: float = 0.02) -> dict[str, float]:
    """Knob of each classical method minimizing the peak-region error on a validation set."""
    x0 = val.x[:, 0].astype(np.float64)
    return {
        name: float(
            min(
                grid,
                key=lambda g: peak_mse(apply_baseline(name, x0, g, sw_hz), x0, val.truth, frac),
            )
        )
        for name, grid in GRIDS.items()
    }


def method_outputs(
    model,
    ds: SpectrumSet,
    knobs: dict[str, float],
    sw_hz: float,
    prep: PrepConfig = PrepConfig(),
    device="cpu",
) -> dict[str, np.ndarray]:
    """Outputs [N, L] of the input, the U-Net, the classical methods, the co-addition and, on a
    simulated set, the oracle line fit."""
    x0 = ds.x[:, 0].astype(np.float64)
    out = {"input": x0}
    if model is not None:
        out["unet"] = denoise(model, x0, device=device).astype(np.float64)
    for name in CLASSICAL:
        out[name] = apply_baseline(name, x0, knobs[name], sw_hz)
    out["coaddition (all K+1)"] = np.stack([coaddition(prepare(s, prep)) for s in ds.x])
    if ds.lines:
        out[ORACLE] = oracle_outputs(x0, ds.lines, sw_hz)
    return out


def spectrum_rows(
    outputs: dict[str, np.ndarray], ds: SpectrumSet, cfg: MetricConfig = MetricConfig()
) -> dict[str, list[dict[str, float]]]:
    """Per-spectrum metrics of every method's output on acquisition 0 (what pooling and
    resampling start from)."""
    step = float(abs(ds.ppm[1] - ds.ppm[0]))
    x0 = ds.x[:, 0].astype(np.float64)
    return {
        m: [
            spectrum_metrics(y[i], x0[i], ds.truth[i].astype(np.float64), step, cfg)
            for i in range(len(ds))
        ]
        for m, y in outputs.items()
    }


def evaluation_rows(
    model,
    sets: dict[float, SpectrumSet],
    knobs: dict[float, dict[str, float]],
    sw_hz: float,
    prep: PrepConfig = PrepConfig(),
    cfg: MetricConfig = MetricConfig(),
    device="cpu",
) -> dict[float, dict[str, list[dict[str, float]]]]:
    """Per-spectrum metrics of every method for every input SNR."""
    return {
        s: spectrum_rows(method_outputs(model, ds, knobs[s], sw_hz, prep, device), ds, cfg)
        for s, ds in sets.items()
    }


def pooled_table(rows: dict[float, dict[str, list[dict[str, float]]]]) -> pd.DataFrame:
    """Metric table indexed by (snr, method) from per-spectrum rows."""
    parts = {
        s: pd.DataFrame({m: summarize(r) for m, r in by_method.items()}).T
        for s, by_method in rows.items()
    }
    return pd.concat(parts, names=["input_snr", "method"])


def evaluation_table(
    model,
    sets: dict[float, SpectrumSet],
    knobs: dict[float, dict[str, float]],
    sw_hz: float,
    prep: PrepConfig = PrepConfig(),
    cfg: MetricConfig = MetricConfig(),
    device="cpu",
) -> pd.DataFrame:
    """Metric table for every input SNR, indexed by (snr, method)."""
    return pooled_table(evaluation_rows(model, sets, knobs, sw_hz, prep, cfg, device))


GOALS = (
    "peak_factor>=4",
    "peak_factor>=1.5x_best",
    "whole>=best",
    "integral_err<all",
)  # docs/nmr.md


def goal_flags(u: Mapping[str, Any], classical: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The simulated-set goals (docs/nmr.md) for the U-Net's pooled metrics u against the classical
    methods' (scalars, or arrays over bootstrap resamples)."""

    def best(key: str, reduce) -> np.ndarray:
        return reduce(np.stack([np.asarray(c[key], dtype=float) for c in classical]), axis=0)

    peak = np.asarray(u["time_factor_peak"], dtype=float)
    return {
        "peak_factor>=4": peak >= 4,
        "peak_factor>=1.5x_best": peak >= 1.5 * best("time_factor_peak", np.max),
        "whole>=best": np.asarray(u["time_factor_whole"]) >= best("time_factor_whole", np.max),
        "integral_err<all": np.asarray(u["integral_err"]) < best("integral_err", np.min),
    }


def goal_check(table: pd.DataFrame) -> pd.DataFrame:
    """The simulated-set goals per input SNR, against the classical baselines."""
    rows = {}
    for snr, t in table.groupby(level=0):
        t = t.droplevel(0)
        flags = goal_flags(t.loc["unet"], [t.loc[c] for c in CLASSICAL])
        rows[snr] = {
            "peak_factor": t.loc["unet", "time_factor_peak"],
            "best_classical_peak": t.loc[list(CLASSICAL), "time_factor_peak"].max(),
            **{k: bool(v) for k, v in flags.items()},
        }
    return pd.DataFrame(rows).T.rename_axis("input_snr")


def resampled_summaries(rows: list[dict[str, float]], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Pooled time factors and mean errors over each bootstrap resample idx [B, n] of spectra."""
    a = {
        k: np.array([r[k] for r in rows], dtype=float)
        for k in (
            "se_peak_in",
            "se_peak_out",
            "se_whole_in",
            "se_whole_out",
            "height_err",
            "integral_err",
        )
    }
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # a resample whose spectra all lack tall tops: NaN
        return {
            "time_factor_peak": pooled_factor(a["se_peak_in"][idx], a["se_peak_out"][idx]),
            "time_factor_whole": pooled_factor(a["se_whole_in"][idx], a["se_whole_out"][idx]),
            "height_err": np.nanmean(a["height_err"][idx], 1),
            "integral_err": np.nanmean(a["integral_err"][idx], 1),
        }


def goal_support(
    rows: dict[float, dict[str, list[dict[str, float]]]],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.9,
) -> pd.DataFrame:
    """How firmly each goal holds: the share of bootstrap resamples of the test spectra (the same
    spectra for every method) in which it holds, and a level interval of the U-Net's peak factor
    and of its ratio to the best classical one. A share near 0.5 means the test set cannot tell."""
    if n_boot < 1:
        raise ValueError(
            f"n_boot={n_boot}: ask for at least one resample (2000 is a sensible default)"
        )
    out = {}
    for snr, by_method in rows.items():
        n = len(by_method["unet"])
        idx = np.random.default_rng([seed, round(snr * 1000)]).integers(0, n, size=(n_boot, n))
        u = resampled_summaries(by_method["unet"], idx)
        c = [resampled_summaries(by_method[m], idx) for m in CLASSICAL]
        flags = goal_flags(u, c)
        ratio = u["time_factor_peak"] / np.max([m["time_factor_peak"] for m in c], axis=0)
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        out[snr] = {
            **{k: float(np.mean(v)) for k, v in flags.items()},
            f"peak_factor_p{lo:g}": np.percentile(u["time_factor_peak"], lo),
            f"peak_factor_p{hi:g}": np.percentile(u["time_factor_peak"], hi),
            f"peak_over_best_p{lo:g}": np.percentile(ratio, lo),
            f"peak_over_best_p{hi:g}": np.percentile(ratio, hi),
        }
    return pd.DataFrame(out).T.rename_axis("input_snr")


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
    Ablation(
        "with consistency / T losses (recipe weights)", "weights", "cons_and_T", (SEED_CONS, SEED_T)
    ),
    Ablation("pseudo truth = best acquisition", "prep", "fusion", "best"),
    Ablation("no rescaling", "prep", "rescale", False),
)


def ablated(
    ab: Ablation, prep: PrepConfig, tcfg: DenoiserTrainConfig
) -> tuple[PrepConfig, DenoiserTrainConfig]:
    """Configs with one ablation applied."""
    if ab.where == "prep":
        return replace(prep, **{ab.field: ab.value}), tcfg
    w: LossWeights = tcfg.weights
    w = (
        replace(w, cons=ab.value[0], T=ab.value[1])
        if ab.field == "cons_and_T"
        else replace(w, **{ab.field: ab.value})
    )
    return prep, replace(tcfg, weights=w)


def run_ablations(
    train_x: np.ndarray,
    sets: dict[float, SpectrumSet],
    tcfg: DenoiserTrainConfig,
    net: UNetConfig,
    prep: PrepConfig = PrepConfig(),
    cfg: MetricConfig = MetricConfig(),
    progress: bool = True,
    ablations=ABLATIONS,
) -> pd.DataFrame:
    """Train the full model and each ablation with the same budget; U-Net metrics per input SNR."""
    dev = (
        "cuda"
        if (tcfg.device == "auto" and torch.cuda.is_available())
        else ("cpu" if tcfg.device == "auto" else tcfg.device)
    )
    rows = {}
    for ab in (None,) + tuple(ablations):
        p, t = (prep, tcfg) if ab is None else ablated(ab, prep, tcfg)
        model, _ = train(build_train_data(train_x, p), t, net, progress=progress)
        for s, ds in sets.items():
            y = denoise(model, ds.x[:, 0], device=dev).astype(np.float64)
            rows[("full model" if ab is None else ab.name, s)] = summarize(
                spectrum_rows({"unet": y}, ds, cfg)["unet"]
            )
    return pd.DataFrame(rows).T.rename_axis(["setting", "input_snr"])
