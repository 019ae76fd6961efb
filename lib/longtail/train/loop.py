"""One training loop for every method: softmax, balanced_softmax, sade, balpoe, prl.

    cfg = TrainConfig(method="prl", dataset="fashion_mnist", imb_ratio=100, epochs=100)
    result = fit(cfg, "runs/cpu/03_training")   # writes config.json, metrics.csv, checkpoints/last.pt

SGD with Nesterov momentum, linear warm-up then step or cosine decay (set per step), batched
augmentation on the device, mixed precision (float16 on CUDA, bfloat16 on CPUs with native
bf16), channels-last (CUDA and CPU), DDP under torchrun.
All randomness of epoch t (order, augmentation, preferences) is drawn from generators seeded
by (seed, t), so resuming from the checkpoint of epoch t reproduces an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ...core.device import autocast_dtype, pick_device
from ...core.io import atomic_write, atomic_write_text
from ...core.seeding import epoch_generator, epoch_rng, seed_weights
from ...core.state import settings_diff
from ..data import AugmentConfig
from ..models import MultiExpertModel, build_model
from .checkpoint import load_checkpoint, restore_model, save_checkpoint

# the configuration, data and evaluation live in their own modules; their names stay importable from here
from .config import (  # noqa: F401
    DATASET_DEFAULTS,
    PRESETS,
    RUNTIME_FIELDS,
    TrainConfig,
    check_config,
    check_types,
    config_for,
    lr_at,
    model_config,
)
from .data import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainData,
    balanced_subset,
    load_data,
    load_image_lists,
    prepare_batch,
)
from .ddp import DistInfo, barrier, cleanup, init_distributed, local_device, shard
from .evaluation import accuracy_table, evaluate, predict_logits, preference_sweep  # noqa: F401
from .losses import expert_adjustments, training_loss
from .scalarize import sample_preferences


@dataclass
class FitResult:
    """A trained model, its per-epoch metrics and where its checkpoint lies."""

    model: MultiExpertModel
    history: pd.DataFrame
    checkpoint: Path
    config: TrainConfig
    resumed_from: int  # completed epochs found in the checkpoint (0: fresh start)


def _state(
    model: MultiExpertModel,
    opt,
    scaler,
    cfg: TrainConfig,
    data: TrainData,
    epoch: int,
    history: list[dict],
) -> dict[str, Any]:
    """Everything a checkpoint holds (plain values and tensors only, for weights_only loading)."""
    meta = {
        "method": cfg.method,
        "dataset": cfg.dataset,
        "imb_ratio": float(cfg.imb_ratio),
        "num_classes": data.num_classes,
        "arch": cfg.arch,
        "num_experts": cfg.num_experts,
        "mean": list(data.mean),
        "std": list(data.std),
        "prior": [float(p) for p in data.prior],
        "groups": [str(g) for g in data.groups],
    }
    return {
        "model_config": asdict(model.cfg),
        "train_config": asdict(cfg),
        "meta": meta,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "history": history,
    }


def _check_resumable(
    ckpt: dict[str, Any],
    cfg: TrainConfig,
    path: Path,
    fix: str = "use another run_dir for the new settings, or set them back to resume",
) -> None:
    """Raise naming the settings where a checkpoint's run and `cfg` differ (runtime settings excepted)."""
    # a setting added after the checkpoint was written counts as its default for that method
    default = asdict(check_config(TrainConfig(method=cfg.method, num_experts=cfg.num_experts)))
    now = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_FIELDS}
    diff = [
        f"{k}: {a!r} -> {b!r}"
        for k, (a, b) in settings_diff(ckpt["train_config"], now, default).items()
    ]
    if diff:
        raise ValueError(f"{path} was trained with other settings ({'; '.join(diff)}); {fix}")


def optimizer_for(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the configuration's rate, momentum, Nesterov and weight decay on every parameter."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def grad_scaler_for(amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 (CUDA); bfloat16 has float32's range and needs none."""
    return torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None


def train_step(
    net,
    opt,
    scaler,
    x: torch.Tensor,
    y: torch.Tensor,
    pref: torch.Tensor,
    cfg: TrainConfig,
    adjust: torch.Tensor,
    prior,
    amp_dtype: torch.dtype | None,
    where: str = "this step",  # named in the error when the loss is not finite
) -> torch.Tensor:
    """One optimizer step on a prepared batch (forward, the method's loss, backward, clip, step)."""
    with torch.autocast(
        device_type=x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
    ):
        logits = net(x, pref)
    loss = training_loss(
        cfg.method, logits, y, pref, adjust, prior, cfg.scalarization, cfg.mu, cfg.mixture_weight
    )
    if not torch.isfinite(loss.detach()):  # stop before the step: the last checkpoint stays good
        raise FloatingPointError(
            f"{cfg.method}: the training loss became {float(loss)} in {where}; "
            f"lower lr or set grad_clip (now {cfg.grad_clip})"
        )
    opt.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    if cfg.grad_clip:
        if scaler is not None:
            scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    return loss.detach()


def train_epoch(
    model,
    opt,
    scaler,
    data: TrainData,
    cfg: TrainConfig,
    epoch: int,
    adjust: torch.Tensor,
    device: torch.device,
    dist: DistInfo,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> dict[str, float]:
    """One epoch; randomness drawn from generators seeded by (seed, epoch). Returns mean loss."""
    model.train()
    g = epoch_generator(cfg.seed, epoch)
    perm = torch.randperm(len(data.y), generator=g)
    steps = max(
        1, len(perm) // cfg.batch_size + (len(perm) % cfg.batch_size >= 2 * dist.world_size)
    )
    if cfg.max_batches:
        steps = min(steps, cfg.max_batches)
    prefs = sample_preferences(
        epoch_rng(cfg.seed, epoch), cfg.num_experts, steps, cfg.dirichlet_alpha
    )
    aug = AugmentConfig(cfg.pad, cfg.flip, cfg.rotation, cfg.rotation_mode)
    uniform = torch.full((cfg.num_experts,), 1.0 / cfg.num_experts, device=device)
    total, seen = 0.0, 0
    for s in range(steps):
        idx = shard(perm[s * cfg.batch_size : (s + 1) * cfg.batch_size], dist)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch + s / steps)
        # augmentation draws come from the CPU generator g, the same on every device
        x = prepare_batch(data.X[idx], data, device, aug, g, channels_last)
        y = data.y[idx].to(device, non_blocking=True)
        pref = torch.from_numpy(prefs[s]).to(device) if cfg.method == "prl" else uniform
        where = f"epoch {epoch + 1}, step {s + 1}"
        loss = train_step(model, opt, scaler, x, y, pref, cfg, adjust, data.prior, amp_dtype, where)
        total += float(loss) * len(idx)
        seen += len(idx)
    return {"loss": total / max(seen, 1), "lr": lr_at(cfg, epoch + (steps - 1) / steps)}


def fit(
    cfg: TrainConfig,
    run_dir: str | Path,
    data: TrainData | None = None,
    resume: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    resume_from: str | Path | None = None,
) -> FitResult:
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
        _check_resumable(
            load_checkpoint(src),
            cfg,
            src,
            "pass resume=False to start a fresh run with the new settings, or set them back to resume",
        )
        atomic_write(ckpt_path, lambda tmp: shutil.copyfile(src, tmp))
    device = pick_device(cfg.device)
    dist = init_distributed(device.type)
    device = local_device(device, dist)
    data = data if data is not None else load_data(cfg)
    amp_dtype = autocast_dtype(device) if cfg.amp else None
    channels_last = cfg.channels_last

    seed_weights(cfg.seed)
    model = build_model(model_config(cfg, data.num_classes, int(data.X.shape[1])))
    opt, scaler = optimizer_for(model, cfg), grad_scaler_for(amp_dtype)
    start, history = 0, []
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(
                f"{ckpt_path} exists; pass resume=True to continue that run, "
                "or choose another run_dir (nothing is overwritten)"
            )
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
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)
    adjust = expert_adjustments(
        cfg.method, data.prior, cfg.num_experts, cfg.sade_lambda, cfg.balpoe_taus
    ).to(device)
    if dist.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    bar = tqdm(
        range(start, cfg.epochs),
        desc=f"{cfg.method}",
        disable=not (cfg.progress and dist.is_main),
        initial=start,
        total=cfg.epochs,
    )
    for epoch in bar:
        t0 = time.time()
        row = {
            "epoch": epoch + 1,
            **train_epoch(
                net, opt, scaler, data, cfg, epoch, adjust, device, dist, amp_dtype, channels_last
            ),
        }
        row.update(
            {
                f"test_{k}": v
                for k, v in evaluate(model, data, None, cfg.eval_per_class, device).items()
            }
        )
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
