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


def _keys(keys: list[str], most: int = 5) -> str:
    """The first `most` keys, and how many more."""
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def check_state_keys(
    expected: Mapping[str, Any], got: Mapping[str, Any], source: str | Path
) -> None:
    """Raise naming the file and the keys where a checkpoint's state dict does not fit the model's.

    Checked before `load_state_dict`, whose RuntimeError names neither the file nor the fix.
    """
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    shapes = [
        f"{k} (checkpoint {tuple(got[k].shape) if torch.is_tensor(got[k]) else type(got[k]).__name__}"
        f", model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in got
        and torch.is_tensor(v)
        and (not torch.is_tensor(got[k]) or got[k].shape != v.shape)
    ]
    problems = [
        f"{len(missing)} missing key(s): {_keys(missing)}" if missing else "",
        f"{len(extra)} unexpected key(s): {_keys(extra)}" if extra else "",
        f"{len(shapes)} wrong shape(s): {_keys(shapes, 3)}" if shapes else "",
    ]
    if any(problems):
        raise ValueError(
            f"checkpoint {source} does not fit the model ({'; '.join(p for p in problems if p)}): "
            "it was edited or written by other code. Load it with the code that wrote it, or "
            "delete it and retrain"
        )


def check_epoch(epoch: Any, source: str | Path) -> int:
    """A stored count of completed epochs: an int >= 0, else an error naming the file."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(
            f"checkpoint {source} stores epoch {epoch!r}, not a count of completed epochs (an "
            "int >= 0): the file was edited or written by other code. Delete it and resume from "
            "an intact one, or retrain"
        )
    return epoch


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
