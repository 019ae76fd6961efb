"""Checkpoints: written atomically, read with `torch.load(weights_only=True)`, checked against the model.

A checkpoint is a dict of tensors and plain values:
  format, model_config, train_config (the resolved run configuration), meta (method, dataset,
  imb_ratio, num_classes, arch, normalization mean/std, training prior, shot groups),
  model (state_dict), optimizer, scaler, epoch (completed epochs), history (per-epoch metrics).

Notebook 04 (or any user) loads a trained model with

    model, info = load_model("runs/smoke/03_training/checkpoints/last.pt")
    logits = model(x_normalized, pref)   # E x N x C; model.predict(x, pref) -> N x C
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from ...core.state import check_epoch, check_finite, check_state_keys, load_state, save_state
from ..models import ModelConfig, MultiExpertModel, build_model

FORMAT = "lt-workbook-checkpoint/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: a failed save leaves the previous file untouched."""
    return save_state(path, {"format": FORMAT, **state})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); missing, corrupt or foreign files are clear errors."""
    path = Path(path)
    ckpt = load_state(
        path,
        map_location,
        missing="train with notebook 03 (or lib.longtail.train.fit) first, "
        "or pass the path of a checkpoints/last.pt file",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a workbook checkpoint (expected format {FORMAT!r}); "
            "load it with the code that wrote it"
        )
    if not isinstance(ckpt.get("model", {}), dict):
        raise TypeError(
            f"checkpoint {path}: 'model' is {type(ckpt['model']).__name__}, not a state dict; "
            "the file was edited or written by other code: delete it and retrain"
        )
    check_finite(ckpt.get("model", {}), path)
    if "epoch" in ckpt:
        check_epoch(ckpt["epoch"], path)
    return ckpt


def model_config_from(ckpt: dict[str, Any]) -> ModelConfig:
    """The ModelConfig stored in a checkpoint."""
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in ckpt["model_config"].items() if k in known})


def check_compatible(ckpt: dict[str, Any], cfg: ModelConfig, source: str = "checkpoint") -> None:
    """Raise naming every architecture field where the checkpoint and `cfg` differ."""
    saved = asdict(model_config_from(ckpt))
    diff = {k: (saved[k], v) for k, v in asdict(cfg).items() if saved.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{source} holds another architecture ({desc}); build the model from the "
            "checkpoint's own model_config (load_model does) or pick the matching checkpoint"
        )


def restore_model(
    model: MultiExpertModel, ckpt: dict[str, Any], source: str = "checkpoint"
) -> MultiExpertModel:
    """Load a checkpoint's weights into `model` after checking that the architectures match."""
    check_compatible(ckpt, model.cfg, source)
    check_state_keys(model.state_dict(), ckpt.get("model", {}), source)
    model.load_state_dict(ckpt["model"])
    return model


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MultiExpertModel, dict[str, Any]]:
    """A trained model in eval mode plus the checkpoint's info (configs, meta, epoch, history)."""
    ckpt = load_checkpoint(path, map_location=device)
    model = restore_model(build_model(model_config_from(ckpt)), ckpt, str(path)).to(device).eval()
    info = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scaler")}
    return model, info
