"""A trained denoiser on disk: weights (torch, loaded with weights_only=True) beside a JSON card
holding the network configuration, the SHA-256 of the weights and how the model was made.

The card is checked before the weights are opened: a file whose checksum differs is refused,
and weights that do not fit the card's configuration are an error naming both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from ..core.io import atomic_write, atomic_write_text, file_digest
from ..core.paths import REPO_ROOT
from .unet import UNet1D, UNetConfig

SHIPPED = REPO_ROOT / "models" / "nmr_unet_cpu.pt"  # trained by `make nmr-model` (cpu profile)
FORMAT = "workbook-nmr-unet/1"


def card_path(path: str | Path) -> Path:
    """The JSON card that goes with a weights file."""
    return Path(path).with_suffix(".json")


def save_model(
    model: UNet1D,
    path: str | Path,
    made_by: dict[str, Any],
    half: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write weights (float16 when `half`: half the size, outputs change by < 1e-3 noise std) and card."""
    path = Path(path)
    if not overwrite and (path.exists() or card_path(path).exists()):
        raise FileExistsError(
            f"{path} exists; choose another path or pass overwrite=True (--overwrite)"
        )
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    atomic_write(path, lambda p: torch.save(state, p))
    card = {
        "format": FORMAT,
        "file": path.name,
        "sha256": file_digest(path, "sha256"),
        "net": asdict(model.cfg),
        "dtype": "float16" if half else "float32",
        "made_by": made_by,
    }
    atomic_write_text(card_path(path), json.dumps(card, indent=2, default=str) + "\n")
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a model file, checked for format and the weights' checksum."""
    path, card = Path(path), card_path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no model file {path}; train one (python -m lib.nmr train) or use the shipped "
            f"{SHIPPED.relative_to(REPO_ROOT)}"
        )
    if not card.exists():
        raise FileNotFoundError(
            f"{path} has no card {card.name} (configuration and checksum); "
            "save models with lib.nmr.modelfile.save_model"
        )
    try:
        meta = json.loads(card.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{card}: not valid JSON ({e}); restore the card written with the model"
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{card}: not a workbook NMR model card (format {FORMAT!r} expected)")
    got = file_digest(path, "sha256")
    if got != meta.get("sha256"):
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {got}, the card says {meta.get('sha256')}. "
            "The weights are corrupt or not the ones the card describes; restore or retrain them"
        )
    return meta


def net_config(meta: dict[str, Any]) -> UNetConfig:
    """UNetConfig from a card, refusing unknown or missing fields."""
    net = meta.get("net")
    names = {f.name for f in fields(UNetConfig)}
    if not isinstance(net, dict) or set(net) != names:
        raise ValueError(
            f"model card has network fields {sorted(net) if isinstance(net, dict) else net}, "
            f"this workbook's UNetConfig has {sorted(names)}; retrain the model with this version"
        )
    return UNetConfig(**net)


def load_verified(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[UNet1D, dict[str, Any]]:
    """A verified model in float32, in eval mode, and its card (the weights are hashed once)."""
    meta = read_card(path)
    cfg = net_config(meta)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = UNet1D(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise ValueError(
            f"{path}: the weights do not fit the card's configuration {cfg} (first differences: {diff}); "
            "the card and weights come from different models: restore the pair or retrain"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite weights in {bad[:3]}; the model diverged, retrain it")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), meta


def load_denoiser(path: str | Path = SHIPPED, device: str | torch.device = "cpu") -> UNet1D:
    """A verified model in float32, in eval mode."""
    return load_verified(path, device)[0]
