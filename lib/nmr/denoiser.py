"""A user's replicate series in, a denoised spectrum out (what `python -m lib.nmr denoise` calls).

The noisiest acquisition (0) is denoised, as in training and in every benchmark table; the
others are aligned and rescaled onto it and serve as the independent reference of the scores.
By default (and always with `fine_tune_on=True`) the given model is first trained further on the
series itself (pseudo truth fused from the other acquisitions, as in training; acquisition 0 in
no target), holding out the highest-SNR acquisition: the scores then use that held-out
acquisition alone, which the fine-tuning never saw, and it decides which model's output is kept
(the fine-tuned one unless it scores more than 10% lower there). Fine-tuning is skipped when the
series is too short for it, when the other acquisitions are no cleaner than acquisition 0, and
when the series' members differ beyond their noise (not replicates: warned of in any case).
Fine-tuning is the default because it is what meets the goals on measured spectra: the shipped
model alone, trained on simulation only, falls short at input SNR 10 and 20 (docs/nmr.md).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.signal import find_peaks

from ..core.io import atomic_write, atomic_write_text
from ..core.paths import REPO_ROOT
from .baselines import GRIDS, apply_baseline
from .losses import LossWeights
from .modelfile import SHIPPED, load_verified
from .preprocess import Prepared, PrepConfig, diff_sigma, prepare, replicate_excess
from .series import Series
from .train import TrainConfig, build_train_data, train
from .unet import UNet1D, denoise

OUTPUTS = ("denoised.csv", "denoised.png", "scores.csv", "denoise.json")
# replicates of one sample differ by noise alone (replicate_excess within +-0.07 on every series made
# from one FID); runs of a reaction measured at 600 MHz (NMRPy) gave 0.26-15: beyond 0.1 the targets of
# fine-tuning and the held-out reference differ from the input's spectrum by more than a good
# denoiser's own error (factor 10 = 0.1 of the input's noise variance)
EXCESS_LIMIT = 0.1
# fine-tuning lifts its inputs (acquisitions 1, 2) to acquisition 0's noise with fresh noise at every
# step; inputs already that noisy get none, and the model fitted one fixed noisy pair to another
# (measured runs of equal SNR: peak factor 42 -> 6): an input noise above 1/sqrt(2) of acquisition
# 0's (less than half of the variance added) skips fine-tuning
MIN_LIFT = float(1 / np.sqrt(2))
# the fine-tuned output is dropped only when it scores clearly lower on the held-out acquisition:
# the failures seen scored 0.15-0.5 of the given model, while a near tie (10.5 vs 10.8 on a
# 4-allylanisole series at SNR 5) came with a 5x smaller line-height error
KEEP_MARGIN = 0.9


@dataclass(frozen=True)
class FineTune:
    """Fine-tuning schedule on one series (stage A losses of training, from the given model's weights)."""

    steps: int = 300  # optimizer steps (about a minute on 2 CPU cores at crop 1024)
    lr: float = 5e-4  # AdamW peak learning rate (warm-up over the first tenth, cosine decay)
    batch: int = 8  # windows per step
    crop: int = 1024  # window length in points
    height_weight: float = 2.0  # as the cpu recipe
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 10:
            raise ValueError(
                f"steps={self.steps}: fine-tuning needs at least 10 steps (300 is the default)"
            )


@dataclass
class Denoised:
    """The result: ppm axis, the input (acquisition 0), its denoised version, scores and provenance."""

    ppm: np.ndarray
    input: np.ndarray
    denoised: np.ndarray  # the kept output (info["output"] names it)
    reference: np.ndarray | None
    scores: pd.DataFrame | None
    info: dict
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # every model's output, by name


def as_model(model: UNet1D | str | Path | None) -> tuple[UNet1D, dict]:
    """A model object and what identifies it (the shipped one when None)."""
    if isinstance(model, UNet1D):
        return model.eval(), {"model": "in memory"}
    path = Path(model) if model is not None else SHIPPED
    net, card = load_verified(path)
    full = path.resolve()
    # a file of the repository (the shipped model) is named the same on every machine
    shown = full.relative_to(REPO_ROOT) if full.is_relative_to(REPO_ROOT) else full
    return net, {"model": str(shown), "sha256": card["sha256"]}


def fine_tune(
    model: UNet1D,
    spectra: np.ndarray,
    ft: FineTune = FineTune(),
    prep: PrepConfig = PrepConfig(),
    progress: bool = True,
) -> tuple[UNet1D, list[dict]]:
    """Train a copy of `model` further on one series [K+1, L] (>= 3 acquisitions, increasing SNR).

    Acquisitions 1.. are the inputs (lifted by added noise to acquisition 0's level), each with
    the others fused as its target; acquisition 0 itself is in no target.
    """
    if len(spectra) < 3:
        raise ValueError(
            f"fine-tuning needs at least 3 acquisitions of the sample (got {len(spectra)}): the one "
            "to denoise, and two more so that each input has another one as its target"
        )
    L = spectra.shape[-1]
    crop = min(ft.crop, L - L % 16)
    # the T loss is off here (weight 0), so T is never used: a fixed value also serves replicates of
    # equal SNR (repeated identical runs), whose estimated T is near 1
    # acquisition 0, the one to be denoised, is in no target (its noise is only ever an input's level)
    one = build_train_data(np.asarray(spectra)[None], prep, T=2.0, keep_out=(0,))
    # one set, tiled so that each step draws `batch` windows (own crops and added noise) from it
    data = replace(
        one,
        **{
            k: np.repeat(getattr(one, k), ft.batch, axis=0)
            for k in ("x", "target", "sigma", "peak", "base")
        },
    )
    epochs = 10
    cfg = TrainConfig(
        epochs_a=epochs,
        epochs_b=0,
        batch=ft.batch,
        crop=crop,
        steps_per_epoch=max(1, ft.steps // epochs),
        lr=ft.lr,
        warmup_epochs=1,
        seed=ft.seed,
        device="cpu",
        input_acqs=tuple(range(1, min(len(spectra), 3))),
        weights=LossWeights(height=ft.height_weight),
    )
    return train(data, cfg, model.cfg, progress=progress, init=model.state_dict())


def tune_knob(name: str, x: np.ndarray, ref: np.ndarray, region: np.ndarray, sw_hz: float) -> float:
    """Knob of a classical method closest to the reference on the peak region (flatters the method)."""
    return float(
        min(
            GRIDS[name],
            key=lambda g: float(((apply_baseline(name, x, g, sw_hz) - ref)[region] ** 2).sum()),
        )
    )


def block_resamples(n: int, block: int, draws: int, seed: int = 0) -> np.ndarray:
    """Indices [draws, n] of a circular block bootstrap over n ordered points (blocks keep lines whole)."""
    rng = np.random.default_rng(seed)
    nb = -(-n // block)
    starts = rng.integers(0, n, size=(draws, nb))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(draws, -1)[:, :n]


def reference_scores(
    outputs: dict[str, np.ndarray],
    x0: np.ndarray,
    ref: np.ndarray,
    ref_var: float,
    region: np.ndarray,
    line_sigma: float = 5.0,
    block: int = 16,
    draws: int = 400,
) -> pd.DataFrame:
    """Time factors (whole, peak region) with 90% intervals, and line-top height error of each output
    against a reference.

    A noisy reference (the co-add of held-out acquisitions, noise variance ref_var per point)
    adds ref_var to every mean squared error; it is subtracted, so the factors estimate those
    against the truth. What is left below 5% of ref_var (the uncertainty of a noise estimate) is
    not resolved: such factors are lower bounds, equal to limit_whole / limit_peak. That
    subtraction leaves much sampling noise (series of equal SNR made from measured FIDs, 3 held
    out: the point estimate was 0.61-1.50x the factor against the truth, 10th-90th percentile;
    bench/nmr_scores.md), so peak_p5 / peak_p95 (and whole_) bound each factor by a block
    bootstrap over the points (blocks of `block` points); those intervals held the true factor in
    86-95% of the series there. Height errors are read at the reference's lines above line_sigma
    input std.
    """
    sig0 = diff_sigma(x0)
    floor = max(1e-3 * sig0**2, 0.05 * ref_var)  # a perfect output would divide by ~0
    tops = find_peaks(ref, height=line_sigma * sig0)[0]
    every = np.ones_like(region, dtype=bool)
    picks = {
        w: block_resamples(int(where.sum()), block, draws)
        for w, where in (("whole", every), ("peak", region))
        if where.any()
    }

    def factors(y: np.ndarray, where: np.ndarray, w: str) -> tuple[float, ...]:
        """Point factor, its 5th and 95th percentiles, and the largest factor resolvable."""
        if not where.any():
            return np.nan, np.nan, np.nan, np.nan
        e_in, e_out = (x0 - ref)[where] ** 2, (y - ref)[where] ** 2
        mse_in = max(e_in.mean() - ref_var, floor)
        boot = np.maximum(e_in[picks[w]].mean(1) - ref_var, floor) / np.maximum(
            e_out[picks[w]].mean(1) - ref_var, floor
        )
        point = mse_in / max(e_out.mean() - ref_var, floor)
        return float(point), *np.percentile(boot, [5, 95]).tolist(), float(mse_in / floor)

    rows = {}
    for name, y in outputs.items():
        whole, peak = factors(y, every, "whole"), factors(y, region, "peak")
        rows[name] = {
            "time_factor_whole": whole[0],
            "time_factor_peak": peak[0],
            "peak_p5": peak[1],
            "peak_p95": peak[2],
            "whole_p5": whole[1],
            "whole_p95": whole[2],
            "height_err": float(np.mean(np.abs(y[tops] - ref[tops]) / np.abs(ref[tops])))
            if len(tops)
            else np.nan,
            "n_lines": len(tops),
            "limit_whole": whole[3],
            "limit_peak": peak[3],
        }
    return pd.DataFrame(rows).T.rename_axis("method")


def classical_outputs(
    x0: np.ndarray, ref: np.ndarray, region: np.ndarray, sw_hz: float
) -> tuple[dict, dict]:
    """Savitzky-Golay, wavelet and exponential broadening with knobs tuned against the reference."""
    knobs = {n: tune_knob(n, x0, ref, region, sw_hz) for n in GRIDS}
    return {n: apply_baseline(n, x0, k, sw_hz) for n, k in knobs.items()}, knobs


def held_out_reference(p: Prepared, held: list[int]) -> tuple[np.ndarray, float]:
    """Inverse-variance co-add of the held-out acquisitions and its noise variance."""
    w = 1.0 / np.maximum(p.sigma[held], 1e-30) ** 2
    return (w[:, None] * p.x[held]).sum(0) / w.sum(), float(1.0 / w.sum())


def denoise_series(
    series: Series,
    model: UNet1D | str | Path | None = None,
    fine_tune_on: bool | None = None,  # None: when the series allows it; True: required; False: off
    ft: FineTune = FineTune(),
    reference: np.ndarray | None = None,
    prep: PrepConfig = PrepConfig(),
    progress: bool = True,
) -> Denoised:
    """Denoise acquisition 0 of a series and score it against an independent reference.

    reference: a noiseless spectrum on the series' axis and scale (e.g. from make-series); else the
    co-add of the acquisitions the model never saw (1..K, or K alone after fine-tuning).
    """
    net, info = as_model(model)
    n = len(series)
    asked, want = fine_tune_on is True, fine_tune_on is not False  # asked: a skip is warned of
    need = 3 if reference is not None else 4
    if n < need and want:
        why = f"fine-tuning needs at least {need} acquisitions (got {n})" + (
            ""
            if reference is not None
            else ": three to fine-tune on and one held out for an honest score"
        )
        if asked:
            raise ValueError(
                f"{why}; add acquisitions, pass a reference, or do without fine-tuning "
                "(fine_tune_on=False, --no-fine-tune)"
            )
        info["fine_tune"] = {"skipped": why}
        want = False
    # one acquisition has no alignment or held-out reference: it is denoised as it is
    p = prepare(series.spectra, prep) if n > 1 else None
    x0 = p.x[0] if p is not None else series.spectra[0]
    train_on = list(range(n)) if reference is not None else list(range(n - 1))
    info["n_acquisitions"] = n
    if p is not None:
        excess, se = replicate_excess(p)
        info.update(
            shifts_points=p.shifts.tolist(),
            scales=p.scales.tolist(),
            snr=series.snr.tolist(),
            replicate_excess=excess.round(4).tolist(),
        )
        odd = (excess > EXCESS_LIMIT) & (excess > 3 * se)
        if odd.any():
            k = int(np.argmax(np.where(odd, excess, -np.inf))) + 1
            warnings.warn(
                f"acquisition {k} ({series.sources[k]}) differs from the others on the lines by more "
                f"than their noise explains ({excess[k - 1]:.2g} +- {se[k - 1]:.1g} times the input's "
                f"noise variance; replicates give about 0), after a shift of {p.shifts[k]:.2g} points "
                f"and a scale of {p.scales[k]:.3g}: the sample changed between acquisitions (a "
                "reaction, drift, another experiment?) and these are not repeated measurements, or "
                "the acquisitions are too noisy to align. "
                + (
                    f"The scores cannot resolve factors above about {1 / excess[k - 1]:.2g}"
                    if excess[k - 1] < 1
                    else "No score against them means anything"
                )
                + ("; fine-tuning, which would learn that difference, is skipped" if want else "")
                + ". Pass true replicates for fine-tuning and trustworthy scores",
                stacklevel=2,
            )
            if want:
                # its targets and the held-out acquisition are another spectrum: on runs of a
                # reaction the held-out acquisition kept fine-tunes that scored 1.9 against the
                # given model's 7.3 on the run itself (bench/nmr_replicates_before_skip.md, SNR 20)
                info["fine_tune"] = {"skipped": f"not replicates (excess {excess[k - 1]:.3g})"}
                want = False
    if want and p is not None:
        noise = p.sigma[1 : min(len(train_on), 3)] / p.sigma[0]
        if noise.min() > MIN_LIFT:
            if asked:
                warnings.warn(
                    f"fine-tuning skipped: its inputs (acquisitions 1-{len(noise)}) are about as "
                    f"noisy as acquisition 0 (noise ratio {noise.min():.2f}), so no fresh noise "
                    "would lift them and every step would fit one noisy acquisition to another; on "
                    "measured runs of equal SNR that lowered the peak factor from 42 to 6 "
                    "(bench/nmr_replicates.md). The given model's output is kept; fine-tuning "
                    "needs acquisitions cleaner than the one denoised",
                    stacklevel=2,
                )
            info["fine_tune"] = {
                "skipped": f"acquisitions 1-{len(noise)} about as noisy as acquisition 0 "
                f"(noise ratio {noise.min():.3f} > {MIN_LIFT:.3f})"
            }
            want = False
    held = [n - 1] if want else list(range(1, n))
    outputs = {"unet": denoise(net, x0).astype(np.float64)}
    if want:
        tuned, hist = fine_tune(
            net, (p.x if p is not None else series.spectra)[train_on], ft, prep, progress
        )
        outputs["unet fine-tuned"] = denoise(tuned, x0).astype(np.float64)
        info["fine_tune"] = {**asdict(ft), "final_loss": hist[-1]["total"], "trained_on": train_on}
    if reference is not None:
        ref, ref_var, region = reference, 0.0, reference > 0.02 * reference.max()
    elif p is not None:
        (ref, ref_var), region = held_out_reference(p, held), p.peak_mask
    else:
        info["output"] = "unet"
        return Denoised(series.ppm, x0, outputs["unet"], None, None, info, outputs)
    cl, knobs = classical_outputs(x0, ref, region, series.sw_hz)
    scores = reference_scores({"input": x0, **outputs, **cl}, x0, ref, ref_var, region)
    chosen = "unet fine-tuned" if want else "unet"
    if want and reference is None:
        before, after = (float(scores.loc[m, "time_factor_peak"]) for m in outputs)
        info["fine_tune"]["held_out_peak_factor"] = {"unet": before, "unet fine-tuned": after}
        if after < KEEP_MARGIN * before:
            # seen on a one-line sample and on a time course: one series can teach too little, or
            # the wrong spectrum; the held-out acquisition decides (it scores both, so the kept
            # one's score is the larger of two estimates: both stay in scores.csv)
            chosen = "unet"
            warnings.warn(
                f"fine-tuning lowered the peak-region factor on held-out acquisition {held} from "
                f"{before:.3g} to {after:.3g} (by more than {1 - KEEP_MARGIN:.0%}): the output is the "
                "given model's, not the fine-tuned one's (both are scored in scores.csv)",
                stacklevel=2,
            )
        info["fine_tune"]["output"] = chosen
    info.update(
        reference="given" if reference is not None else f"co-add of acquisitions {held}",
        knobs=knobs,
        output=chosen,
    )
    return Denoised(series.ppm, x0, outputs[chosen], ref, scores, info, outputs)


def plot_result(r: Denoised, title: str = "") -> plt.Figure:
    """Input, denoised output and residual (input - output) on the ppm axis."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    axes[0].plot(r.ppm, r.input, lw=0.5, color="0.4")
    axes[0].set_ylabel("input")
    axes[1].plot(r.ppm, r.denoised, lw=0.6, color="tab:red")
    axes[1].set_ylabel("denoised")
    axes[2].plot(r.ppm, r.input - r.denoised, lw=0.4, color="tab:blue")
    axes[2].set_ylabel("residual")
    axes[2].set_xlabel("chemical shift (ppm)")
    axes[2].invert_xaxis()
    fig.suptitle(title or "denoised acquisition 0")
    fig.tight_layout()
    return fig


def write_result(
    r: Denoised, out_dir: str | Path, overwrite: bool = False, title: str = ""
) -> list[Path]:
    """Write the spectrum (CSV), the plot, the scores and the provenance; never over a user's files."""
    out = Path(out_dir)
    clash = [f for f in OUTPUTS if (out / f).exists()]
    if clash and not overwrite:
        raise FileExistsError(
            f"{out} already holds {clash}; choose another --out or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    cols = {"ppm": r.ppm, "input": r.input, "denoised": r.denoised}
    if r.reference is not None:
        cols["reference"] = r.reference
    paths = [
        atomic_write_text(
            out / "denoised.csv", pd.DataFrame(cols).to_csv(index=False, float_format="%.8g")
        )
    ]
    fig = plot_result(r, title)
    paths.append(
        atomic_write(out / "denoised.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    )
    plt.close(fig)
    if r.scores is not None:
        paths.append(atomic_write_text(out / "scores.csv", r.scores.to_csv(float_format="%.4g")))
    paths.append(
        atomic_write_text(out / "denoise.json", json.dumps(r.info, indent=2, default=str) + "\n")
    )
    return paths
