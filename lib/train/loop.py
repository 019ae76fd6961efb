"""One training loop for every method: softmax, balanced_softmax, sade, balpoe, prl.

    cfg = TrainConfig(method="prl", dataset="fashion_mnist", imb_ratio=100, epochs=100)
    result = fit(cfg, "runs/cpu/03_training")   # writes config.json, metrics.csv, checkpoints/last.pt

SGD with Nesterov momentum, linear warm-up then step or cosine decay (set per step), batched
augmentation on the device, mixed precision on CUDA, channels-last (CUDA and CPU), DDP under torchrun.
All randomness of epoch t (order, augmentation, preferences) is drawn from generators seeded
by (seed, t), so resuming from the checkpoint of epoch t reproduces an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import numbers
import shutil
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import (IMAGELIST_DATASETS, AugmentConfig, DecodedImages, augment_batch, build_longtail_data,
                    class_counts, normalize, read_image_list, shot_groups)
from ..device import pick_device
from ..io import atomic_write, atomic_write_text
from ..metrics import accuracy_report
from ..models import ModelConfig, MultiExpertModel, aggregate, build_model, check_pref
from .checkpoint import load_checkpoint, restore_model, save_checkpoint
from .ddp import DistInfo, barrier, cleanup, init_distributed, local_device, shard
from .losses import check_method, default_num_experts, expert_adjustments, training_loss
from .scalarize import check_scalarization, sample_preferences

# Settings that may differ between an interrupted run and its resumption.
RUNTIME_FIELDS = ("device", "amp", "channels_last", "compile", "progress")
# Schedules (docs/long_tail.md, section 7): CIFAR-100-LT as published by SADE and PRL, and the
# workbook's Fashion-MNIST-LT cpu schedule.
DATASET_DEFAULTS = {
    "cifar100": {"epochs": 200, "batch_size": 128, "lr": 0.1, "milestones": [160, 180]},
    "fashion_mnist": {"epochs": 100, "batch_size": 128, "lr": 0.1, "milestones": [80, 90]},
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with every run and checkpoint)."""

    method: str = "prl"  # softmax | balanced_softmax | sade | balpoe | prl
    dataset: str = "fashion_mnist"  # fashion_mnist | cifar100 | ImageNet_LT | Places_LT | iNaturalist18 | imagelist
    imb_ratio: float = 100.0
    n_max: int = 0  # head-class training images (0: the dataset's default)
    arch: str = "resnet32"
    num_experts: int = 0  # 0: the method's default (1 for the softmax baselines, else 3)
    reduced: bool = True  # RIDE's reduced expert widths
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    schedule: str = "step"  # step | cosine
    milestones: list[int] = field(default_factory=lambda: [80, 90])
    lr_gamma: float = 0.1
    grad_clip: float = -1.0  # max global gradient norm; -1: the method's default (5 for prl, else off), 0: off
    pad: int = 4  # augmentation: random crop padding
    flip: bool = True
    rotation: float = 15.0
    sade_lambda: float = 2.0  # backward expert's lambda (2 for CIFAR / ImageNet-LT, 1 for Places / iNat)
    balpoe_taus: list[float] | None = None  # None: linspace(0, 2, E)
    scalarization: str = "sum_lse"  # prl: linear | stch | sum_lse
    mu: float = 0.1  # prl: smoothing of stch / weight of the logsumexp term of sum_lse
    dirichlet_alpha: float = 1.2  # prl: preference sampler
    mixture_weight: float = 0.0  # prl: weight of the ensemble mixture-prior loss (0: the published objective)
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
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = True  # channels-last memory format (faster on CUDA, and measured faster on CPU too)
    compile: bool = False  # torch.compile the model
    progress: bool = True  # tqdm bar over epochs


def check_types(cfg: TrainConfig) -> None:
    """Raise naming a bool, int, float or str setting whose value has another type (flip='false' is truthy)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(cfg):
        kind, v = hints[f.name], getattr(cfg, f.name)
        if kind not in (bool, int, float, str):
            continue
        accept = {bool: (bool, np.bool_), int: numbers.Integral, float: numbers.Real, str: str}[kind]
        ok = isinstance(v, accept) and (kind is bool or not isinstance(v, (bool, np.bool_)))
        if not ok:
            raise TypeError(f"training setting {f.name}={v!r} is {type(v).__name__}, but {f.name} is a "
                            f"{kind.__name__}; pass a {kind.__name__} (on the command line: {f.name}=value "
                            "is parsed by this type)")


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Validate a configuration and fill the method's default number of experts."""
    check_types(cfg)
    check_method(cfg.method)
    check_scalarization(cfg.scalarization)
    if cfg.schedule not in ("step", "cosine"):
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose 'step' or 'cosine'")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 2 and lr > 0; got {cfg.epochs}, {cfg.batch_size}, {cfg.lr}")
    if cfg.grad_clip < 0:  # prl's generated logit bias is unbounded: one seed diverged at lr 0.1 without
        cfg.grad_clip = 5.0 if cfg.method == "prl" else 0.0
    if cfg.num_experts == 0:
        cfg.num_experts = default_num_experts(cfg.method)
    if cfg.method == "sade" and cfg.num_experts != 3:
        raise ValueError(f"sade uses exactly three experts, got num_experts={cfg.num_experts}")
    cfg.milestones = [int(m) for m in cfg.milestones]
    return cfg


def config_for(dataset: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig with the dataset's default schedule, then `overrides`."""
    base = dict(DATASET_DEFAULTS.get(dataset, {}))
    base.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {', '.join(sorted(known))}")
    return check_config(TrainConfig(dataset=dataset, **base))


def model_config(cfg: TrainConfig, num_classes: int, in_channels: int) -> ModelConfig:
    """The architecture a training configuration asks for."""
    return ModelConfig(arch=cfg.arch, num_classes=num_classes, num_experts=cfg.num_experts, in_channels=in_channels,
                       reduced=cfg.reduced, hypernet=cfg.method == "prl", hyper_rank=cfg.hyper_rank,
                       hyper_hidden=cfg.hyper_hidden)


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at a fractional epoch: linear warm-up, then x gamma at milestones or cosine."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        t = (epoch - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(t, 1.0)))
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)


@dataclass
class TrainData:
    """In-memory uint8 images and labels, plus what the losses and the evaluation need."""

    X: torch.Tensor | DecodedImages  # uint8 N x C x H x W (image lists: decoded per batch)
    y: torch.Tensor  # int64 N
    X_test: torch.Tensor | DecodedImages
    y_test: torch.Tensor
    prior: np.ndarray  # training label distribution
    groups: np.ndarray  # 'many' / 'medium' / 'few' per class
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.prior)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_image_lists(cfg: TrainConfig, workers: int = 8) -> TrainData:
    """Training and test image lists (published benchmarks or any 'relative/path label' lists), decoded lazily."""
    if not (cfg.train_list and cfg.test_list and cfg.image_root):
        raise ValueError(f"dataset {cfg.dataset!r} is read from image lists: set train_list, test_list and image_root "
                         "(for example data_txt/ImageNet_LT/ImageNet_LT_train.txt, ..._test.txt and data/ImageNet_LT)")
    if cfg.dataset in IMAGELIST_DATASETS:
        C = IMAGELIST_DATASETS[cfg.dataset]
    else:
        C = cfg.list_classes or int(read_image_list(cfg.train_list, cfg.image_root, 10**9, False).labels.max()) + 1
    train = read_image_list(cfg.train_list, cfg.image_root, C)
    test = read_image_list(cfg.test_list, cfg.image_root, C)
    counts = class_counts(train.labels, C)
    if (counts == 0).any():
        raise ValueError(f"{cfg.train_list}: classes {np.flatnonzero(counts == 0)[:10].tolist()} have no training "
                         "image; every class needs one (check list_classes or the list)")
    return TrainData(DecodedImages(train, cfg.image_size, workers), torch.from_numpy(train.labels),
                     DecodedImages(test, cfg.image_size, workers), torch.from_numpy(test.labels),
                     counts / counts.sum(), shot_groups(counts), IMAGENET_MEAN, IMAGENET_STD)


def load_data(cfg: TrainConfig) -> TrainData:
    """The long-tailed training set and the balanced test set of `cfg.dataset`."""
    if cfg.dataset in IMAGELIST_DATASETS or cfg.dataset == "imagelist":
        return load_image_lists(cfg)
    d = build_longtail_data(cfg.dataset, imb_ratio=cfg.imb_ratio, n_max=cfg.n_max or None)
    return TrainData(torch.from_numpy(d.train.X), torch.from_numpy(d.train.y).long(), torch.from_numpy(d.test.X),
                     torch.from_numpy(d.test.y).long(), np.asarray(d.prior), np.asarray(d.groups),
                     tuple(d.spec.mean), tuple(d.spec.std))


def balanced_subset(y: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` items of every class (all items when per_class is 0)."""
    if per_class <= 0:
        return np.arange(len(y))
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]))


def prepare_batch(X: torch.Tensor, data: TrainData, device: torch.device, aug: AugmentConfig | None,
                  generator: torch.Generator | None, channels_last: bool) -> torch.Tensor:
    """uint8 images -> augmented (optional), normalized float batch on `device`."""
    x = X.to(device, non_blocking=True).float().div_(255)
    if aug is not None:
        x = augment_batch(x, aug, generator=generator)
    x = normalize(x, data.mean, data.std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_logits(model: MultiExpertModel, X: torch.Tensor, data: TrainData, pref=None, batch_size: int = 500,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-expert logits E x N x C (on CPU) for uint8 images, in eval mode."""
    model.eval()
    device = torch.device(device)
    p = check_pref(pref, model.num_experts, device)
    out = [model(prepare_batch(X[i:i + batch_size], data, device, None, None, False), p).float().cpu()
           for i in range(0, len(X), batch_size)]
    return torch.cat(out, dim=1)


def accuracy_table(scores: torch.Tensor, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Top-1 (%) and the mean per-class accuracy (%) of the many / medium / few groups (NaN if empty)."""
    return accuracy_report(scores.argmax(1).numpy(), np.asarray(y), np.asarray(groups))


def evaluate(model: MultiExpertModel, data: TrainData, pref=None, per_class: int = 0,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy of the pref-weighted expert prediction on the balanced test set."""
    idx = balanced_subset(data.y_test.numpy(), per_class)
    logits = predict_logits(model, data.X_test[idx], data, pref, device=device)
    p = check_pref(pref, model.num_experts)
    return accuracy_table(aggregate(logits, p), data.y_test.numpy()[idx], data.groups)


@dataclass
class FitResult:
    """A trained model, its per-epoch metrics and where its checkpoint lies."""

    model: MultiExpertModel
    history: pd.DataFrame
    checkpoint: Path
    config: TrainConfig
    resumed_from: int  # completed epochs found in the checkpoint (0: fresh start)


def _state(model: MultiExpertModel, opt, scaler, cfg: TrainConfig, data: TrainData, epoch: int,
           history: list[dict]) -> dict[str, Any]:
    """Everything a checkpoint holds (plain values and tensors only, for weights_only loading)."""
    meta = {"method": cfg.method, "dataset": cfg.dataset, "imb_ratio": float(cfg.imb_ratio),
            "num_classes": data.num_classes, "arch": cfg.arch, "num_experts": cfg.num_experts,
            "mean": list(data.mean), "std": list(data.std), "prior": [float(p) for p in data.prior],
            "groups": [str(g) for g in data.groups]}
    return {"model_config": asdict(model.cfg), "train_config": asdict(cfg), "meta": meta,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {}, "epoch": epoch, "history": history}


def _check_resumable(ckpt: dict[str, Any], cfg: TrainConfig, path: Path,
                     fix: str = "use another run_dir for the new settings, or set them back to resume") -> None:
    """Raise naming the settings where a checkpoint's run and `cfg` differ (runtime settings excepted)."""
    saved, now = ckpt["train_config"], asdict(cfg)
    # a setting added after the checkpoint was written counts as its default for that method
    default = asdict(check_config(TrainConfig(method=cfg.method, num_experts=cfg.num_experts)))
    diff = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
            if k not in RUNTIME_FIELDS and saved.get(k, default[k]) != v]
    if diff:
        raise ValueError(f"{path} was trained with other settings ({'; '.join(diff)}); {fix}")


def train_epoch(model, opt, scaler, data: TrainData, cfg: TrainConfig, epoch: int, adjust: torch.Tensor,
                device: torch.device, dist: DistInfo, use_amp: bool, channels_last: bool) -> dict[str, float]:
    """One epoch; randomness drawn from generators seeded by (seed, epoch). Returns mean loss."""
    model.train()
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    perm = torch.randperm(len(data.y), generator=g)
    steps = max(1, len(perm) // cfg.batch_size + (len(perm) % cfg.batch_size >= 2 * dist.world_size))
    if cfg.max_batches:
        steps = min(steps, cfg.max_batches)
    prefs = sample_preferences(np.random.default_rng([cfg.seed, epoch]), cfg.num_experts, steps, cfg.dirichlet_alpha)
    aug = AugmentConfig(cfg.pad, cfg.flip, cfg.rotation)
    uniform = torch.full((cfg.num_experts,), 1.0 / cfg.num_experts, device=device)
    total, seen = 0.0, 0
    for s in range(steps):
        idx = shard(perm[s * cfg.batch_size:(s + 1) * cfg.batch_size], dist)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch + s / steps)
        # augmentation draws come from the CPU generator g, the same on every device
        x = prepare_batch(data.X[idx], data, device, aug, g, channels_last)
        y = data.y[idx].to(device, non_blocking=True)
        pref = torch.from_numpy(prefs[s]).to(device) if cfg.method == "prl" else uniform
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x, pref)
        loss = training_loss(cfg.method, logits, y, pref, adjust, data.prior, cfg.scalarization, cfg.mu,
                             cfg.mixture_weight)
        if not torch.isfinite(loss.detach()):  # stop before the step: the last checkpoint stays good
            raise FloatingPointError(f"{cfg.method}: the training loss became {float(loss)} in epoch {epoch + 1}, "
                                     f"step {s + 1}; lower lr or set grad_clip (now {cfg.grad_clip})")
        opt.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        if cfg.grad_clip:
            if scaler is not None:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return {"loss": total / max(seen, 1), "lr": lr_at(cfg, epoch + (steps - 1) / steps)}


def fit(cfg: TrainConfig, run_dir: str | Path, data: TrainData | None = None, resume: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        resume_from: str | Path | None = None) -> FitResult:
    """Train (or resume) a run in `run_dir`: config.json, metrics.csv and checkpoints/last.pt.

    An existing checkpoint is resumed when `resume` (its settings must match), and never
    overwritten otherwise: pass another run_dir. `resume_from`, when run_dir holds no checkpoint
    yet, is another run's checkpoint to continue (notebook 03 passes its newest earlier run's):
    it is copied in first, the original is left as it was. `on_epoch_end(epoch, row)` runs after
    each checkpoint (the tests use it to simulate an interruption).
    """
    cfg = check_config(cfg)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if resume and resume_from and not ckpt_path.exists():
        src = Path(resume_from)
        # check before copying: a mismatch must name the source run, not the fresh copy
        _check_resumable(load_checkpoint(src), cfg, src,
                         "pass resume=False to start a fresh run with the new settings, or set them back to resume")
        atomic_write(ckpt_path, lambda tmp: shutil.copyfile(src, tmp))
    device = pick_device(cfg.device)
    dist = init_distributed(device.type)
    device = local_device(device, dist)
    data = data if data is not None else load_data(cfg)
    use_amp = cfg.amp and device.type == "cuda"
    channels_last = cfg.channels_last

    torch.manual_seed(cfg.seed)
    model = build_model(model_config(cfg, data.num_classes, int(data.X.shape[1])))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    start, history = 0, []
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists; pass resume=True to continue that run, "
                                  "or choose another run_dir (nothing is overwritten)")
        ckpt = load_checkpoint(ckpt_path)
        _check_resumable(ckpt, cfg, ckpt_path)
        restore_model(model, ckpt, str(ckpt_path))
        opt.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    for state in opt.state.values():  # optimizer buffers follow the model to its device
        for k, v in state.items():
            if torch.is_tensor(v):
                state[k] = v.to(device)
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    adjust = expert_adjustments(cfg.method, data.prior, cfg.num_experts, cfg.sade_lambda, cfg.balpoe_taus).to(device)
    if dist.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    bar = tqdm(range(start, cfg.epochs), desc=f"{cfg.method}", disable=not (cfg.progress and dist.is_main),
               initial=start, total=cfg.epochs)
    for epoch in bar:
        t0 = time.time()
        row = {"epoch": epoch + 1, **train_epoch(net, opt, scaler, data, cfg, epoch, adjust, device, dist,
                                                  use_amp, channels_last)}
        row.update({f"test_{k}": v for k, v in evaluate(model, data, None, cfg.eval_per_class, device).items()})
        row["seconds"] = time.time() - t0
        history.append(row)
        if dist.is_main:
            save_checkpoint(ckpt_path, _state(model, opt, scaler, cfg, data, epoch + 1, history))
            atomic_write_text(run_dir / "metrics.csv", pd.DataFrame(history).to_csv(index=False))
        barrier(dist)
        bar.set_postfix(loss=f"{row['loss']:.3f}", top1=f"{row['test_top1']:.1f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    cleanup(dist)
    return FitResult(model.eval(), pd.DataFrame(history), ckpt_path, cfg, start)


def preference_sweep(model: MultiExpertModel, data: TrainData, per_class: int = 0,
                     device: torch.device | str = "cpu") -> pd.DataFrame:
    """Balanced-test accuracy for the uniform preference and each one-hot preference (one row each)."""
    e = model.num_experts
    prefs = {"uniform": [1.0 / e] * e}
    if e > 1:
        prefs.update({f"expert {i}": [float(i == j) for j in range(e)] for i in range(e)})
    rows = [{"preference": name, "r": " ".join(f"{v:.2f}" for v in p),
             **evaluate(model, data, p, per_class, device)} for name, p in prefs.items()]
    return pd.DataFrame(rows).set_index("preference")
