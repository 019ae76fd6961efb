"""Accuracy metrics for long-tailed evaluation: top-1, per class, many/medium/few, tables.

Group accuracies are means of per-class accuracies within the group (the convention of
the OLTR/SADE reports), NaN-safe: a class absent from a test set does not count, and a
group with no class present is NaN rather than an error.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

GROUPS = ("many", "medium", "few")


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class over its test items; NaN for classes with no test item."""
    pred, y = np.asarray(pred), np.asarray(y)
    total = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[pred == y], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def _nanmean(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty group is NaN by design
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def accuracy_report(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Micro top-1 and many/medium/few per-class means, all in percent."""
    pred, y = np.asarray(pred), np.asarray(y)
    if len(y) == 0:
        raise ValueError("empty test set: no items to evaluate; check the distribution or the test list")
    acc = per_class_accuracy(pred, y, len(groups))
    out = {"top1": 100.0 * float((pred == y).mean())}
    for g in GROUPS:
        out[g] = 100.0 * _nanmean(acc[np.asarray(groups) == g])
    return out


def results_table(reports: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Rows = distributions, columns = metrics; adds a 'mean' row over the distributions."""
    df = pd.DataFrame.from_dict(reports, orient="index")
    df.loc["mean"] = df.mean(numeric_only=True)
    return df
