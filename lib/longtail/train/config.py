"""Training settings: `TrainConfig`, the named schedules and presets, and their checks.

Every setting has one home here. The workbook's Fashion-MNIST-LT `cpu` schedule and the
published CIFAR-100-LT schedule (docs/long_tail.md, section 7) are written once below; the
defaults of TrainConfig are the cpu schedule, `config_for(dataset)` starts from the dataset's
schedule, and `PRESETS` names the settings of the smoke, cpu and paper runs, which notebook 03
(its `preset` parameter, set by env/profiles/*.yaml) and bench/train_accuracy.py pick by name.

    cfg = TrainConfig.from_params(preset="cpu", method="sade")   # typed, checked, frozen
    cfg = TrainConfig.from_params("cpu", method="sade", **PUBLISHED_RECIPE)  # SADE code's choices
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ...core.schedule import DECAYS, warmup_decay
from ...core.settings import check_value
from ..data import ROTATION_MODES
from ..models import INITS, ModelConfig
from .losses import check_method, default_num_experts
from .scalarize import check_scalarization

# Settings that may differ between an interrupted run and its resumption.
RUNTIME_FIELDS = ("device", "amp", "channels_last", "compile", "progress")

# Schedules (docs/long_tail.md, section 7). The cpu schedule is the workbook's own for
# Fashion-MNIST-LT on a 2-core CPU: the published CIFAR-100-LT one shortened to 100 epochs.
CPU_SCHEDULE: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 128,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "warmup_epochs": 5,
    "schedule": "step",
    "milestones": [80, 90],
}
CIFAR100_SCHEDULE: dict[str, Any] = {
    **CPU_SCHEDULE,
    "epochs": 200,
    "milestones": [160, 180],
}  # SADE's and PRL's
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion_mnist": CPU_SCHEDULE,
    "cifar100": CIFAR100_SCHEDULE,
}

# Where the published SADE code (github.com/Vanint/SADE-AgnosticLT; its CIFAR ResNet-32, trainer and
# CIFAR loader) does otherwise than the workbook's defaults (issue 16; docs/long_tail.md, section 7).
# The losses, widths, heads, shortcuts, schedule values and evaluation are the same already.
PUBLISHED_RECIPE: dict[str, Any] = {
    "init": "published",  # fan-in convolutions, unit-norm head rows
    "stem_channels": 3,  # a 3-channel stem fed copies of the gray image
    "lr_per_step": False,  # LambdaLR stepped once per epoch: warm-up 0.2, 0.4, ..., 1.0 x lr
    "rotation_mode": "nearest",  # torchvision's RandomRotation default
}

# Named settings of the three kinds of run (profile smoke, cpu, paper; docs/workbook.md).
PRESETS: dict[str, dict[str, Any]] = {
    # two short epochs of the cpu schedule's shape: the notebook's smoke run (about a minute)
    "smoke": {
        **CPU_SCHEDULE,
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.05,
        "warmup_epochs": 1,
        "eval_per_class": 30,
    },
    "cpu": {"dataset": "fashion_mnist", **CPU_SCHEDULE, "eval_per_class": 100},
    "paper": {"dataset": "cifar100", **CIFAR100_SCHEDULE, "eval_per_class": 0},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved with every run and checkpoint).

    Frozen: derive a changed copy with `dataclasses.replace`. The schedule's defaults are the
    cpu schedule (CPU_SCHEDULE); `from_params` builds one from a preset and typed overrides.
    """

    method: str = "prl"  # softmax | balanced_softmax | sade | balpoe | prl
    dataset: str = "fashion_mnist"  # fashion_mnist | cifar100 | ImageNet_LT | Places_LT | iNaturalist18 | imagelist
    imb_ratio: float = 100.0
    n_max: int = 0  # head-class training images (0: the dataset's default)
    arch: str = "resnet32"
    num_experts: int = 0  # 0: the method's default (1 for the softmax baselines, else 3)
    reduced: bool = True  # RIDE's reduced expert widths
    init: str = (
        "workbook"  # weight starts: workbook | published (lib/longtail/models/experts.py, INITS)
    )
    stem_channels: int = 0  # stem input channels (0: the images'; 3 on gray data: copies)
    epochs: int = CPU_SCHEDULE["epochs"]
    batch_size: int = CPU_SCHEDULE["batch_size"]
    lr: float = CPU_SCHEDULE["lr"]
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = CPU_SCHEDULE["weight_decay"]
    warmup_epochs: int = CPU_SCHEDULE["warmup_epochs"]
    schedule: str = CPU_SCHEDULE["schedule"]  # step | cosine
    milestones: list[int] = field(default_factory=lambda: list(CPU_SCHEDULE["milestones"]))
    lr_gamma: float = 0.1
    lr_per_step: bool = True  # False: one rate per epoch, warm-up (e + 1) / warmup_epochs x lr
    grad_clip: float = (
        -1.0
    )  # max global gradient norm; -1: the method's default (5 for prl, else off), 0: off
    pad: int = 4  # augmentation: random crop padding
    flip: bool = True
    rotation: float = 15.0
    rotation_mode: str = "bilinear"  # bilinear | nearest (torchvision's RandomRotation)
    sade_lambda: float = (
        2.0  # backward expert's lambda (2 for CIFAR / ImageNet-LT, 1 for Places / iNat)
    )
    balpoe_taus: list[float] | None = None  # None: linspace(0, 2, E)
    scalarization: str = "sum_lse"  # prl: linear | stch | sum_lse
    mu: float = 0.1  # prl: smoothing of stch / weight of the logsumexp term of sum_lse
    dirichlet_alpha: float = 1.2  # prl: preference sampler
    mixture_weight: float = (
        0.0  # prl: weight of the ensemble mixture-prior loss (0: the published objective)
    )
    train_list: str = ""  # image lists: the training list ('relative/path label' lines)
    test_list: str = ""  # image lists: the balanced test list
    image_root: str = ""  # image lists: the folder their paths are relative to
    image_size: int = 224  # image lists: shorter side resized to this, centre square kept
    list_classes: int = 0  # dataset 'imagelist': number of classes (0: largest label + 1)
    hyper_rank: int = 32
    hyper_hidden: int = 64
    seed: int = 0
    max_batches: int = 0  # cap on training steps per epoch (0: the whole set; for smoke runs)
    eval_per_class: int = 0  # balanced test images per class evaluated each epoch (0: all)
    device: str = "auto"
    amp: bool = (
        True  # mixed precision where it pays: float16 on CUDA, bfloat16 on CPUs with native bf16
    )
    channels_last: bool = (
        True  # channels-last memory format (faster on CUDA, and measured faster on CPU too)
    )
    compile: bool = False  # torch.compile the model
    progress: bool = True  # tqdm bar over epochs

    @classmethod
    def from_params(
        cls, preset: str | None = None, *, ignore: Iterable[str] = (), **params: Any
    ) -> TrainConfig:
        """A checked configuration: the dataset's schedule, then PRESETS[preset], then `params`.

        Built for a notebook's parameters (`TrainConfig.from_params(**run.params, ignore=(...))`):
        a value of None means "not set" (the preset's or the default value stays); every other
        value is checked against its field's type by `lib.core.settings.check_value`, the checker of
        profile values (ints pass as floats, `true` is no int, list items are checked one by
        one). Names in `ignore` (the notebook's own parameters) are skipped; any other name that
        is no field is a ValueError listing the known ones, and so is an unknown preset.
        """
        if preset and preset not in PRESETS:
            raise ValueError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} "
                "(lib/longtail/train/config.py, PRESETS), or '' for the dataset's schedule"
            )
        skip = set(ignore)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(k for k in params if k not in known and k not in skip)
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {unknown}; known: {', '.join(sorted(known))} "
                "(pass a notebook's own parameters in ignore=)"
            )
        given = {
            k: _checked(k, v, str(known[k].type))
            for k, v in params.items()
            if k in known and v is not None
        }
        settings = {**PRESETS.get(preset or "", {}), **given}
        return config_for(settings.pop("dataset", cls.dataset), **settings)


def _checked(name: str, value: Any, annotation: str) -> Any:
    """A field's value checked against its annotation (`list[int]`: the list, then each item)."""
    outer = re.sub(r"\[.*?\]", "", annotation)
    value = check_value(name, value, outer, owner="TrainConfig")
    item = re.search(r"\[(.*?)\]", annotation)
    if item and isinstance(value, (list, tuple)):
        value = [
            check_value(f"{name}[{i}]", v, item.group(1), owner="TrainConfig")
            for i, v in enumerate(value)
        ]
    return value


def check_types(cfg: TrainConfig) -> None:
    """Raise naming a bool, int, float or str setting whose value has another type (flip='false' is truthy)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(cfg):
        kind, v = hints[f.name], getattr(cfg, f.name)
        if kind not in (bool, int, float, str):
            continue
        accept = {bool: (bool, np.bool_), int: numbers.Integral, float: numbers.Real, str: str}[
            kind
        ]
        ok = isinstance(v, accept) and (kind is bool or not isinstance(v, (bool, np.bool_)))
        if not ok:
            raise TypeError(
                f"training setting {f.name}={v!r} is {type(v).__name__}, but {f.name} is a "
                f"{kind.__name__}; pass a {kind.__name__} (on the command line: {f.name}=value "
                "is parsed by this type)"
            )


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Validate a configuration; returns a copy with the method's defaults filled in (experts, clipping)."""
    check_types(cfg)
    check_method(cfg.method)
    check_scalarization(cfg.scalarization)
    if cfg.schedule not in DECAYS:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose 'step' or 'cosine'")
    if cfg.init not in INITS:
        raise ValueError(f"unknown init {cfg.init!r}; choose one of {', '.join(INITS)}")
    if cfg.rotation_mode not in ROTATION_MODES:
        raise ValueError(
            f"unknown rotation_mode {cfg.rotation_mode!r}; choose one of {', '.join(ROTATION_MODES)}"
        )
    if cfg.stem_channels < 0:
        raise ValueError(
            f"stem_channels must be >= 0 (0: the images' channels), got {cfg.stem_channels}"
        )
    for name, ok, need, example in (
        ("epochs", cfg.epochs >= 1, ">= 1", "epochs=10"),
        ("batch_size", cfg.batch_size >= 2, ">= 2", "batch_size=128"),
        ("lr", cfg.lr > 0, "> 0", "lr=0.1"),
    ):
        if not ok:
            raise ValueError(
                f"{name}={getattr(cfg, name)!r} is out of range: {name} must be {need}; "
                f"give e.g. {example}"
            )
    fill: dict[str, Any] = {}
    if (
        cfg.grad_clip < 0
    ):  # prl's generated logit bias is unbounded: one seed diverged at lr 0.1 without
        fill["grad_clip"] = 5.0 if cfg.method == "prl" else 0.0
    if cfg.num_experts == 0:
        fill["num_experts"] = default_num_experts(cfg.method)
    experts = fill.get("num_experts", cfg.num_experts)
    if cfg.method == "sade" and experts != 3:
        raise ValueError(f"sade uses exactly three experts, got num_experts={experts}")
    fill["milestones"] = [int(m) for m in cfg.milestones]
    return dataclasses.replace(cfg, **fill)


def config_for(dataset: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig with the dataset's default schedule, then `overrides`."""
    base = dict(DATASET_DEFAULTS.get(dataset, {}))
    base.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ValueError(
            f"unknown training setting(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    if "milestones" in base:  # a copy: the schedules above are shared
        base["milestones"] = list(base["milestones"])
    return check_config(TrainConfig(dataset=dataset, **base))


def model_config(cfg: TrainConfig, num_classes: int, in_channels: int) -> ModelConfig:
    """The architecture a training configuration asks for."""
    return ModelConfig(
        arch=cfg.arch,
        num_classes=num_classes,
        num_experts=cfg.num_experts,
        in_channels=in_channels,
        reduced=cfg.reduced,
        hypernet=cfg.method == "prl",
        hyper_rank=cfg.hyper_rank,
        hyper_hidden=cfg.hyper_hidden,
        init=cfg.init,
        stem_channels=cfg.stem_channels,
    )


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at a fractional epoch: linear warm-up, then x gamma at milestones or cosine (lib/core/schedule.py).

    Per step (`lr_per_step`) the warm-up rises from about 0; per epoch the rate is the one of
    the epoch's start, with warm-up (e + 1) / warmup_epochs, as the published trainers' LambdaLR.
    """
    per_epoch = not cfg.lr_per_step
    return warmup_decay(
        math.floor(epoch) if per_epoch else epoch,
        cfg.warmup_epochs,
        cfg.epochs,
        base=cfg.lr,
        decay=cfg.schedule,
        milestones=cfg.milestones,
        gamma=cfg.lr_gamma,
        offset=1.0 if per_epoch else 1e-3,
    )
