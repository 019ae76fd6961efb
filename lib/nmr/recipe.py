"""The settings of a run of notebook 05 and of `python -m lib.nmr train`: defaults, presets, one builder.

Every default has one home, a frozen dataclass: SpectrumSimConfig (simulate.py), PrepConfig
(preprocess.py), UNetConfig (unet.py), DenoiserTrainConfig and its LossWeights (train.py,
losses.py), SimEvalConfig (evaluate.py) and `Recipe` below (training sets, seed). `PRESETS` names
what the smoke, cpu and paper runs change on top of those defaults, and `PARAMETERS` maps the
flat names that notebook 05 declares, and that profiles (env/profiles/*.yaml, section
05_nmr_denoising) and the command line set, onto their fields. `recipe(params)` builds a Recipe
from the preset (`preset`, smoke when not named), then the parameters given; a parameter given
as None keeps the preset's value. The notebook and the command line both call it, so the same
profile gives both the same Recipe. Lib never reads the notebook.

    R = recipe({"preset": "cpu", "seed": 3})
    R = recipe(recipe_params(run.params))  # notebook 05: its parameters that name a setting
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from ..core.settings import check_value
from .evaluate import SimEvalConfig
from .losses import LossWeights
from .preprocess import PrepConfig
from .simulate import SpectrumSimConfig
from .train import DenoiserTrainConfig
from .unet import UNetConfig

PROFILE_SECTION = "05_nmr_denoising"  # the section of env/profiles/*.yaml that sets these


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a trained denoiser (simulator, preprocessing, network, schedule,
    training sets, seed) and how notebook 05 evaluates it on simulated sets."""

    sim: SpectrumSimConfig = field(default_factory=SpectrumSimConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    net: UNetConfig = field(default_factory=UNetConfig)
    train: DenoiserTrainConfig = field(default_factory=DenoiserTrainConfig)
    n_train: int = 2000  # simulated training sets
    seed: int = 0  # seed of the simulation and of training (train.seed is set with it)
    evaluation: SimEvalConfig = field(default_factory=SimEvalConfig)


class Parameter(NamedTuple):
    """A flat parameter: its annotation (as profiles are checked) and the fields it sets."""

    annotation: str
    targets: tuple[
        str, ...
    ]  # "part.field", "part.field[i]" (one item of a tuple) or a Recipe field


def _param(annotation: str, *targets: str) -> Parameter:
    return Parameter(annotation, targets)


# part -> the dataclass instance whose defaults a Recipe starts from
_PARTS: dict[str, Any] = {
    "sim": SpectrumSimConfig(),
    "net": UNetConfig(),
    "train": DenoiserTrainConfig(),
    "weights": LossWeights(),
    "evaluation": SimEvalConfig(),
}
PARAMETERS: dict[str, Parameter] = {
    "n_points": _param("int", "sim.n_points"),
    "n_acq": _param("int", "sim.n_acq"),
    "T": _param("float", "sim.T"),
    "train_snr_min": _param("float", "sim.snr_range[0]"),
    "train_snr_max": _param("float", "sim.snr_range[1]"),
    "linewidth_min_hz": _param("float", "sim.linewidth_hz[0]"),
    "linewidth_max_hz": _param("float", "sim.linewidth_hz[1]"),
    "gauss_max": _param("float", "sim.gauss_share[1]"),
    "singlet_max_amp": _param("float", "sim.singlet_amp[1]"),
    "test_snrs": _param("list", "evaluation.test_snrs"),
    "n_train": _param("int", "n_train"),
    "n_val": _param("int", "evaluation.n_val"),
    "n_test": _param("int", "evaluation.n_test"),
    "base": _param("int", "net.base"),
    "crop": _param("int", "train.crop"),
    "batch": _param("int", "train.batch"),
    "epochs_a": _param("int", "train.epochs_a"),
    "epochs_b": _param("int", "train.epochs_b"),
    "input_acqs": _param("list", "train.input_acqs"),
    "renoise": _param("float", "train.renoise"),
    "height_weight": _param("float", "weights.height"),
    "top_weight": _param("float", "weights.top"),
    "steps_per_epoch": _param("int", "train.steps_per_epoch"),
    "lr": _param("float", "train.lr"),
    "warmup_epochs": _param("int", "train.warmup_epochs"),
    "ablation_epochs_a": _param("int", "evaluation.ablation_epochs_a"),
    "ablation_epochs_b": _param("int", "evaluation.ablation_epochs_b"),
    "seed": _param("int", "seed", "train.seed"),
    "device": _param("str", "train.device"),
}
PARAMETER_NAMES = ("preset", *PARAMETERS)

# What each kind of run changes on top of the defaults (profiles smoke, cpu, paper). Every run so
# far trains with the line-top height term; below the paper scale, in 1024-point windows at a
# higher rate with one warm-up epoch.
_TOPS = {"height_weight": 2.0}
_SHORT = {**_TOPS, "crop": 1024, "lr": 1e-3, "warmup_epochs": 1}
PRESETS: dict[str, dict[str, Any]] = {
    # a tiny network and a few epochs: shows that notebook 05 runs, its numbers mean nothing
    "smoke": {
        **_SHORT,
        "n_train": 24,
        "base": 8,
        "epochs_a": 2,
        "epochs_b": 2,
        "n_val": 3,
        "n_test": 6,
        "ablation_epochs_a": 1,
        "ablation_epochs_b": 0,
    },
    # the shipped model (`make nmr-model`, models/nmr_unet_cpu.pt) and notebook 05's cpu tables
    "cpu": {
        **_SHORT,
        "n_train": 1024,
        "linewidth_max_hz": 5.0,  # real 1H lines span 3-10 points at their FID length (docs/nmr.md)
        "epochs_a": 8,
        "epochs_b": 16,
        "steps_per_epoch": 100,
        "n_val": 4,
        "n_test": 64,
        "ablation_epochs_a": 1,
        "ablation_epochs_b": 2,
    },
    # the full schedule on whole spectra (a GPU)
    "paper": {**_TOPS, "batch": 16, "crop": 0},
}
DEFAULT_PRESET = "smoke"  # notebook 05's quick run, when no preset is named


def _target(path: str) -> tuple[str | None, str, int | None]:
    """'sim.snr_range[0]' -> ('sim', 'snr_range', 0); a bare Recipe field -> (None, field, None)."""
    m = re.fullmatch(r"(?:(\w+)\.)?(\w+)(?:\[(\d+)\])?", path)
    assert m, path
    return m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None


def recipe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a notebook's parameters or a profile section that `recipe` takes."""
    return {k: v for k, v in params.items() if k in PARAMETER_NAMES}


def recipe(params: Mapping[str, Any] | None = None) -> Recipe:
    """The Recipe of a preset (`params["preset"]`, smoke when absent or None) and the other
    parameters given (None: the preset's value), each checked against its annotation."""
    p = dict(params or {})
    unknown = sorted(set(p) - set(PARAMETER_NAMES))
    if unknown:
        raise ValueError(
            f"unknown recipe parameter(s) {unknown}; known: {', '.join(PARAMETER_NAMES)} "
            "(lib/nmr/recipe.py, PARAMETERS)"
        )
    preset = p.pop("preset", None) or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ValueError(
            f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} (lib/nmr/recipe.py, PRESETS)"
        )
    given = {k: v for k, v in p.items() if v is not None}  # None: the preset's value
    values = {
        k: check_value(k, v, PARAMETERS[k].annotation, owner="lib/nmr/recipe.py")
        for k, v in {**PRESETS[preset], **given}.items()
    }
    changes: dict[str | None, dict[str, Any]] = {}
    for name, value in values.items():
        for path in PARAMETERS[name].targets:
            part, key, index = _target(path)
            into = changes.setdefault(part, {})
            if index is not None:
                items = list(into.get(key, getattr(_PARTS[part], key)))
                items[index] = value
                value = tuple(items)
            elif isinstance(value, list):
                value = tuple(value)  # list parameters fill tuple fields
            into[key] = value
    part = {k: replace(v, **changes.get(k, {})) for k, v in _PARTS.items()}
    train = replace(part["train"], weights=part["weights"])
    return Recipe(
        sim=part["sim"],
        prep=PrepConfig(),
        net=part["net"],
        train=train,
        evaluation=part["evaluation"],
        **changes.get(None, {}),
    )


def parameter_values(R: Recipe) -> dict[str, Any]:
    """Every parameter's value in a Recipe (read from its first field), e.g. what a preset resolves to."""
    out = {}
    for name, prm in PARAMETERS.items():
        part, key, index = _target(prm.targets[0])
        owner = R if part is None else (R.train.weights if part == "weights" else getattr(R, part))
        v = getattr(owner, key)
        out[name] = v[index] if index is not None else v
    return out


def trained_sim(card: dict[str, Any]) -> SpectrumSimConfig | None:
    """The simulator a model was trained on, from its card (None when the card records none)."""
    sim = card["made_by"].get("sim")
    if sim is None:
        return None
    known = {
        f.name for f in fields(SpectrumSimConfig)
    }  # a card older than a setting takes its default
    return SpectrumSimConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in sim.items() if k in known}
    )
