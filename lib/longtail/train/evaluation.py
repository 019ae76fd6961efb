"""Accuracy of a model during and after training: per-expert logits, the balanced test set, preference sweeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..accuracy import accuracy_report
from ..models import MultiExpertModel, aggregate, check_pref
from .data import TrainData, balanced_subset, prepare_batch


@torch.no_grad()
def predict_logits(
    model: MultiExpertModel,
    X: torch.Tensor,
    data: TrainData,
    pref=None,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-expert logits E x N x C (on CPU) for uint8 images, in eval mode."""
    model.eval()
    device = torch.device(device)
    p = check_pref(pref, model.num_experts, device)
    out = [
        model(prepare_batch(X[i : i + batch_size], data, device, None, None, False), p)
        .float()
        .cpu()
        for i in range(0, len(X), batch_size)
    ]
    return torch.cat(out, dim=1)


def accuracy_table(scores: torch.Tensor, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Top-1 (%) and the mean per-class accuracy (%) of the many / medium / few groups (NaN if empty)."""
    return accuracy_report(scores.argmax(1).numpy(), np.asarray(y), np.asarray(groups))


def evaluate(
    model: MultiExpertModel,
    data: TrainData,
    pref=None,
    per_class: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy of the pref-weighted expert prediction on the balanced test set."""
    idx = balanced_subset(data.y_test.numpy(), per_class)
    logits = predict_logits(model, data.X_test[idx], data, pref, device=device)
    p = check_pref(pref, model.num_experts)
    return accuracy_table(aggregate(logits, p), data.y_test.numpy()[idx], data.groups)


def preference_sweep(
    model: MultiExpertModel, data: TrainData, per_class: int = 0, device: torch.device | str = "cpu"
) -> pd.DataFrame:
    """Balanced-test accuracy for the uniform preference and each one-hot preference (one row each)."""
    e = model.num_experts
    prefs = {"uniform": [1.0 / e] * e}
    if e > 1:
        prefs.update({f"expert {i}": [float(i == j) for j in range(e)] for i in range(e)})
    rows = [
        {
            "preference": name,
            "r": " ".join(f"{v:.2f}" for v in p),
            **evaluate(model, data, p, per_class, device),
        }
        for name, p in prefs.items()
    ]
    return pd.DataFrame(rows).set_index("preference")
