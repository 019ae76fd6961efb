"""A trained denoiser on disk: weights (torch, loaded with weights_only=True) beside a JSON card
holding the network configuration, the SHA-256 of the weights and how the model was made.

The card is checked before the weights are opened: its fields' types and ranges (a network no
larger than MAX_BASE allows), the weights' checksum and size; weights that do not fit the card's
configuration, or a file the weights-only loader refuses (a pickle of objects), are errors naming
the file.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from ..core.io import atomic_write, atomic_write_text, file_digest
from ..core.paths import REPO_ROOT
from .unet import UNet1D, UNetConfig

SHIPPED = REPO_ROOT / "models" / "nmr_unet_cpu.pt"  # trained by `make nmr-model` (cpu profile)
FORMAT = "workbook-nmr-unet/1"
CARD_BYTES = 2**20  # a card is a few KB
MAX_BASE = 128  # widest network a card may ask for (about 32M parameters; the shipped one is 32)
# each network field of a card: its type and the test its value must pass, as the message says it
NET_FIELDS = {
    "base": (int, lambda v: 1 <= v <= MAX_BASE, f"a whole number from 1 to {MAX_BASE}"),
    "kernel": (int, lambda v: 1 <= v <= 63 and v % 2, "an odd whole number from 1 to 63"),
    "groups": (int, lambda v: v >= 1, "a whole number >= 1"),
    "se": (bool, lambda v: True, "true or false"),
    "noise_norm": (bool, lambda v: True, "true or false"),
    "max_correction": (
        (int, float),
        lambda v: math.isfinite(v) and 0 <= v <= 1000,
        "a number from 0 to 1000",
    ),
}


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
    if card.stat().st_size > CARD_BYTES:
        raise ValueError(
            f"{card}: {card.stat().st_size} bytes, not a model card (a few KB); restore the card "
            "written with the model"
        )
    try:
        meta = json.loads(card.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{card}: not valid JSON ({e}); restore the card written with the model"
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{card}: not a workbook NMR model card (format {FORMAT!r} expected)")
    if not isinstance(meta.get("sha256"), str) or meta.get("dtype") not in ("float16", "float32"):
        raise ValueError(
            f"{card}: field sha256 must be the weights' SHA-256 (text) and dtype 'float16' or "
            f"'float32', got {meta.get('sha256')!r} and {meta.get('dtype')!r}; restore the card "
            "written with the model"
        )
    got = file_digest(path, "sha256")
    if got != meta.get("sha256"):
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {got}, the card says {meta.get('sha256')}. "
            "The weights are corrupt or not the ones the card describes; restore or retrain them"
        )
    return meta


def net_config(meta: dict[str, Any], where: str | Path = "model card") -> UNetConfig:
    """UNetConfig from a card, refusing unknown or missing fields and values of a wrong type or range."""
    net = meta.get("net")
    names = {f.name for f in fields(UNetConfig)}
    if not isinstance(net, dict) or set(net) != names:
        raise ValueError(
            f"{where} has network fields {sorted(net) if isinstance(net, dict) else net}, "
            f"this workbook's UNetConfig has {sorted(names)}; retrain the model with this version"
        )
    for name, (kind, ok, want) in NET_FIELDS.items():
        v = net[name]
        # JSON true is a Python int too: only a bool field takes it
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool) or not ok(v):
            raise ValueError(
                f"{where}: field net.{name} is {v!r}, it must be {want}; the card is damaged or "
                "not this workbook's: restore the card written with the model, or retrain"
            )
    try:
        return UNetConfig(**net)
    except ValueError as e:
        raise ValueError(f"{where}: {e}; restore the card written with the model") from None


def load_verified(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[UNet1D, dict[str, Any]]:
    """A verified model in float32, in eval mode, and its card (the weights are hashed once)."""
    meta = read_card(path)
    cfg = net_config(meta, card_path(path))
    try:
        model = UNet1D(cfg)
    except (ValueError, RuntimeError) as e:  # e.g. widths that groups does not divide
        raise ValueError(
            f"{card_path(path)}: no network can be built from its net fields {asdict(cfg)} ({e}); "
            "restore the card written with the model"
        ) from None
    need = sum(v.numel() * 4 for v in model.state_dict().values())  # float32 at most
    if Path(path).stat().st_size > 2 * need + 2**20:
        raise ValueError(
            f"{path}: {Path(path).stat().st_size} bytes, far more than the weights of the card's "
            f"network take ({need}); not a model this workbook wrote: restore the model and its "
            "card, or retrain"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the loader's notes on foreign pickles
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, OSError):
        # the loader's own message suggests loading unsafely: it is not repeated
        raise ValueError(
            f"{path}: not a model file this workbook wrote: its checksum matches its card, but "
            "the file is no plain set of tensors (a pickle of other objects, unsafe to load, or "
            "another program's file), so the card was written for it too; do not load it any "
            "other way: restore the model and card that save_model wrote, or retrain"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = {}
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
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
    model.snr_top = trained_snr_top(meta)
    return model.to(device).eval(), meta


def trained_snr_top(card: dict[str, Any]) -> float | None:
    """The top of the input SNR range a model was trained on, from its card (None if unrecorded)."""
    made = card.get("made_by")
    sim = made.get("sim") if isinstance(made, dict) else None
    rng = sim.get("snr_range") if isinstance(sim, dict) else None
    if not isinstance(rng, list) or len(rng) != 2:
        return None
    top = rng[1]
    ok = (
        isinstance(top, (int, float))
        and not isinstance(top, bool)
        and math.isfinite(top)
        and top > 0
    )
    return float(top) if ok else None


def load_denoiser(path: str | Path = SHIPPED, device: str | torch.device = "cpu") -> UNet1D:
    """A verified model in float32, in eval mode."""
    return load_verified(path, device)[0]
