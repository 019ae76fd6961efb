"""Notebook 05's parameters turned into the four configs (one place, used by the notebook and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..core.paths import NOTEBOOKS
from ..core.settings import notebook_parameters
from .losses import LossWeights
from .preprocess import PrepConfig
from .simulate import SimConfig
from .train import TrainConfig
from .unet import UNetConfig

NOTEBOOK = NOTEBOOKS / "05_nmr_denoising.ipynb"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a trained denoiser: simulator, preprocessing, network, schedule."""

    sim: SimConfig
    prep: PrepConfig
    net: UNetConfig
    train: TrainConfig
    n_train: int
    seed: int


def notebook_defaults() -> dict[str, Any]:
    """Notebook 05's declared parameters and their defaults."""
    return notebook_parameters(NOTEBOOK)


def recipe(params: dict[str, Any]) -> Recipe:
    """Configs from notebook-05 parameters (missing names take the notebook's defaults)."""
    unknown = set(params) - set(notebook_defaults())
    if unknown:
        raise ValueError(
            f"unknown notebook-05 parameters {sorted(unknown)}; known: {sorted(notebook_defaults())}"
        )
    p = {**notebook_defaults(), **params}
    sim = SimConfig(
        n_points=p["n_points"],
        n_acq=p["n_acq"],
        T=p["T"],
        snr_range=(p["train_snr_min"], p["train_snr_max"]),
        linewidth_hz=(p["linewidth_min_hz"], p["linewidth_max_hz"]),
        gauss_share=(0.0, p["gauss_max"]),
        singlet_amp=(SimConfig.singlet_amp[0], p["singlet_max_amp"]),
    )
    tcfg = TrainConfig(
        epochs_a=p["epochs_a"],
        epochs_b=p["epochs_b"],
        batch=p["batch"],
        crop=p["crop"],
        lr=p["lr"],
        steps_per_epoch=p["steps_per_epoch"],
        warmup_epochs=p["warmup_epochs"],
        seed=p["seed"],
        device=p["device"],
        input_acqs=tuple(p["input_acqs"]),
        renoise=p["renoise"],
        weights=LossWeights(height=p["height_weight"], top=p["top_weight"]),
    )
    return Recipe(
        sim=sim,
        prep=PrepConfig(),
        net=UNetConfig(base=p["base"]),
        train=tcfg,
        n_train=p["n_train"],
        seed=p["seed"],
    )


def trained_sim(card: dict[str, Any]) -> SimConfig | None:
    """The simulator a model was trained on, from its card (None when the card records none)."""
    sim = card["made_by"].get("sim")
    if sim is None:
        return None
    known = {f.name for f in fields(SimConfig)}  # a card older than a setting takes its default
    return SimConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in sim.items() if k in known}
    )
