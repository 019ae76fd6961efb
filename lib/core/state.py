"""Checkpoint files shared by the trainers (docs/index.md, "Layers"): written atomically, read with
`torch.load(weights_only=True)`, checked for non-finite weights and for the settings of the run
that wrote them.

`lib.longtail.train.checkpoint` (the long-tail trainer's checkpoints, with their format tag and model
checks) and `lib.nmr.train` (the denoiser's) both write and read through these functions.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: a failed save leaves the previous file untouched."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    missing: str = "pass the path of an existing checkpoint",
) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); a missing or corrupt file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; {missing}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {str(e)[:200]}); "
            "delete it and resume from an intact one or retrain"
        ) from None


def non_finite(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    return [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def check_finite(state: Mapping[str, Any], source: str | Path) -> None:
    """Raise naming the file and the tensors if a state dict holds NaN or inf weights."""
    bad = non_finite(state)
    if bad:
        raise ValueError(
            f"checkpoint {source} holds non-finite (NaN or inf) weights in {len(bad)} tensor(s) "
            f"(first: {bad[0]}): the run diverged before this file was written, so it would predict "
            "one class everywhere and cannot be resumed. Delete it and retrain (or restore an "
            "earlier copy); lowering the lr will not repair this file"
        )


def settings_diff(
    then: Mapping[str, Any], now: Mapping[str, Any], default: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, Any]]:
    """Setting -> (value then, value now) where a checkpoint's settings and the run's differ.

    A setting missing from `then` (added after the checkpoint was written) counts as
    `default[name]` when `default` has it, else as absent.
    """
    default = default or {}
    return {
        k: (then.get(k, default.get(k)), v)
        for k, v in now.items()
        if then.get(k, default.get(k)) != v
    }
