"""Fine-tuning a trained denoiser on one replicate series, and the rules that say when to.

Scope: the fine-tuning schedule (`FineTune`) and the training run itself (`fine_tune`: stage A
losses from the given model's weights, acquisition 0 in no target), plus the policy that
`denoise_series` (denoiser.py) applies: how many acquisitions fine-tuning needs, when a series'
members are too different to be replicates, when its inputs are too noisy to be lifted by added
noise, and when the fine-tuned output loses to the given model's on the held-out acquisition.
Scoring lives in scoring.py, writing and plotting in report.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .losses import LossWeights
from .preprocess import PrepConfig
from .train import DenoiserTrainConfig, build_train_data, train
from .unet import UNet1D

# Replicates of one sample differ by noise alone, so their replicate excess stays near 0; series
# whose members differ more (runs of a reaction, say) give fine-tuning targets and a held-out
# reference that are another spectrum than the input's, off by more than a good denoiser's own
# error (a time factor of 10 is 0.1 of the input's noise variance).
EXCESS_LIMIT = 0.1
# Fine-tuning lifts its inputs (acquisitions 1, 2) to acquisition 0's noise with fresh noise at
# every step. Inputs already about that noisy get none, and the model then learns to map one fixed
# noisy acquisition onto another, which hurts it: an input noise above 1/sqrt(2) of acquisition
# 0's (less than half of the variance added) skips fine-tuning.
MIN_LIFT = float(1 / np.sqrt(2))
# The fine-tuned output is dropped only when it scores clearly lower on the held-out acquisition:
# failed fine-tunes scored far below the given model there, while a near tie is within the
# sampling noise of one held-out acquisition (and came with better line heights).
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


def fine_tune(
    model: UNet1D,
    spectra: np.ndarray,
    ft: FineTune = FineTune(),
    prep: PrepConfig = PrepConfig(),
    progress: bool = True,
) -> tuple[UNet1D, list[dict]]:
    """Train a copy of `model` further on one series [K+1, L] (>= 3 acquisitions, increasing SNR).

    Acquisitions 1.. are the inputs (lifted by added noise to acquisition 0's level), each with
    the others fused as its target; acquisition 0 itself is in no target. The copy keeps the
    model's training SNR range (`snr_top`): a few hundred steps on one series do not teach it lines
    far taller than the noise (measured: it distorts them as the shipped model does).
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
    cfg = DenoiserTrainConfig(
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
    tuned, hist = train(data, cfg, model.cfg, progress=progress, init=model.state_dict())
    tuned.snr_top = model.snr_top
    return tuned, hist


def too_few_reason(n: int, reference_given: bool) -> str | None:
    """Why a series of n acquisitions is too short to fine-tune on (None: long enough).

    Three acquisitions to train on, and without a given reference one more held out for the score.
    """
    need = 3 if reference_given else 4
    if n >= need:
        return None
    return f"fine-tuning needs at least {need} acquisitions (got {n})" + (
        "" if reference_given else ": three to fine-tune on and one held out for an honest score"
    )


def not_replicates(excess: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Which acquisitions 1.. differ from the others beyond their noise (replicate_excess and its se)."""
    return (excess > EXCESS_LIMIT) & (excess > 3 * se)


def unliftable(sigma: np.ndarray, n_inputs: int) -> np.ndarray | None:
    """Noise of the inputs (acquisitions 1..n_inputs-1, at most 2) over acquisition 0's, when even
    the cleanest is too noisy for added noise to lift it (MIN_LIFT); None when fine-tuning may go on."""
    noise = sigma[1 : min(n_inputs, 3)] / sigma[0]
    return noise if noise.min() > MIN_LIFT else None


def keeps_fine_tuned(before: float, after: float) -> bool:
    """Whether the fine-tuned output stays the output, given both peak factors on the held-out acquisition."""
    return not after < KEEP_MARGIN * before
