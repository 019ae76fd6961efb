"""A user's replicate series in, a denoised spectrum out (what `python -m lib.nmr denoise` calls).

Scope: the orchestration of one call (`denoise_series`): load the model, preprocess the series,
decide with the rules of finetune.py whether to fine-tune on it, denoise the noisiest acquisition
(0, as in training and in every benchmark table) and score every output with scoring.py against
the acquisitions the model never saw; the result is a `Denoised`, which report.py plots and
writes. By default (and always with `fine_tune_on=True`) the model is first trained further on
the series itself, holding out the highest-SNR acquisition, which then alone scores both models
and decides which output is kept. Fine-tuning is the default because it is what meets the goals
on measured spectra, where the shipped model, trained on simulation only, falls short
(docs/nmr.md).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import REPO_ROOT
from .finetune import (
    KEEP_MARGIN,
    MIN_LIFT,
    FineTune,
    fine_tune,
    keeps_fine_tuned,
    not_replicates,
    too_few_reason,
    unliftable,
)
from .modelfile import SHIPPED, load_verified
from .preprocess import PrepConfig, prepare, replicate_excess, spectrum_snr
from .scoring import classical_outputs, held_out_reference, reference_scores
from .series import Series
from .unet import UNet1D, denoise, input_weight

# The kept output is never one the held-out scores call worse than the input: when even the
# upper end of a factor's 90% interval is below this, the input is returned unchanged.
NEVER_WORSE = 1.0


def clearly_worse(row: pd.Series) -> str:
    """Why an output's scores say it is worse than its input (90% interval below 1), else ''."""
    bad = [
        f"{where} factor {row[f'time_factor_{where}']:.3g} (90% interval up to {row[f'{where}_p95']:.3g})"
        for where in ("peak", "whole")
        if np.isfinite(row[f"{where}_p95"]) and row[f"{where}_p95"] < NEVER_WORSE
    ]
    return "; ".join(bad)


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


def denoise_series(
    series: Series,
    model: UNet1D | str | Path | None = None,
    fine_tune_on: bool | None = None,  # None: when the series allows it; True: required; False: off
    ft: FineTune = FineTune(),
    reference: np.ndarray | None = None,
    prep: PrepConfig = PrepConfig(),
    progress: bool = True,
    never_worse: bool = True,  # keep the input when the scores put the output clearly below it
) -> Denoised:
    """Denoise acquisition 0 of a series and score it against an independent reference.

    reference: a noiseless spectrum on the series' axis and scale (e.g. from make-series); else the
    co-add of the acquisitions the model never saw (1..K, or K alone after fine-tuning).
    """
    net, info = as_model(model)
    n = len(series)
    asked, want = fine_tune_on is True, fine_tune_on is not False  # asked: a skip is warned of
    why = too_few_reason(n, reference is not None)
    if why and want:
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
        odd = not_replicates(excess, se)
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
                # its targets and the held-out acquisition are another spectrum than the input's:
                # the held-out score could not tell a fine-tune that learned the wrong spectrum
                info["fine_tune"] = {"skipped": f"not replicates (excess {excess[k - 1]:.3g})"}
                want = False
    if want and p is not None:
        noise = unliftable(p.sigma, len(train_on))
        if noise is not None:
            if asked:
                warnings.warn(
                    f"fine-tuning skipped: its inputs (acquisitions 1-{len(noise)}) are about as "
                    f"noisy as acquisition 0 (noise ratio {noise.min():.2f}), so no fresh noise "
                    "would lift them and every step would fit one noisy acquisition to another, "
                    "which makes the model worse. The given model's output is kept; fine-tuning "
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
    snr0 = spectrum_snr(x0)
    w = float(input_weight([snr0], net.snr_top)[0])  # what denoise() applied, for the record
    if w < 1:
        info["blend"] = {
            "input_snr": round(snr0, 1),
            "trained_snr_top": net.snr_top,
            "unet_weight": round(w, 5),
        }
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
        if not keeps_fine_tuned(before, after):
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
    kept = outputs[chosen]
    worse = clearly_worse(scores.loc[chosen]) if never_worse else ""
    if worse:
        # beyond the range the model was trained on (a spectrum far cleaner than SNR 25, say) the
        # network's corrections cost more than the noise they remove: the input is the better output
        warnings.warn(
            f"the {chosen} output scores clearly below the input against "
            f"{'the given reference' if reference is not None else f'held-out acquisitions {held}'}"
            f" ({worse}): the input is kept unchanged; every output is scored in scores.csv",
            stacklevel=2,
        )
        info["kept_input"] = f"{chosen}: {worse}"
        chosen, kept = "input", x0
    info.update(
        reference="given" if reference is not None else f"co-add of acquisitions {held}",
        knobs=knobs,
        output=chosen,
    )
    return Denoised(series.ppm, x0, kept, ref, scores, info, outputs)
