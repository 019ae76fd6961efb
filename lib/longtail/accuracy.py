"""Accuracy metrics for long-tailed evaluation: top-1, per class, many/medium/few, tables.

The training loop reports them during training and `lib.longtail.evaluate` on every test
distribution, so both share this one definition at the top of the topic package.

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


def prior_weighted_gain(
    pred: np.ndarray, pred_ref: np.ndarray, y: np.ndarray, prior
) -> tuple[float, float]:
    """Top-1 gain (points) of `pred` over `pred_ref` that labelled items predict for a test prior, and its std error.

    Under label shift p(x|y) is fixed, so per-class accuracies carry over: the gain is
    sum_c prior_c (acc_c - acc_ref_c) over the classes with items (prior renormalized over
    them); the error comes from the paired per-item differences within each class.
    """
    prior, y = np.asarray(prior, dtype=np.float64), np.asarray(y)
    d = (np.asarray(pred) == y).astype(np.float64) - (np.asarray(pred_ref) == y)
    n = np.bincount(y, minlength=len(prior)).astype(np.float64)
    held = n > 0
    if not held.any():
        raise ValueError("no labelled items: the prior-weighted gain needs at least one")
    w = np.where(held, prior, 0.0) / prior[held].sum()
    m = np.bincount(y, weights=d, minlength=len(prior)) / np.maximum(n, 1)
    var = np.bincount(y, weights=d**2, minlength=len(prior)) / np.maximum(n, 1) - m**2
    return 100.0 * float((w * m).sum()), 100.0 * float(
        np.sqrt((w**2 * var / np.maximum(n, 1)).sum())
    )


def prior_weighted_accuracy(pred: np.ndarray, y: np.ndarray, prior) -> float:
    """Top-1 (%) that labelled items predict for a test set with class prior `prior`: sum_c prior_c acc_c."""
    y = np.asarray(y)
    return prior_weighted_gain(pred, np.full_like(y, -1), y, prior)[0]


def _nanmean(x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty group is NaN by design
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def accuracy_report(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Micro top-1 and many/medium/few per-class means, all in percent."""
    pred, y = np.asarray(pred), np.asarray(y)
    if len(y) == 0:
        raise ValueError(
            "empty test set: no items to evaluate; check the distribution or the test list"
        )
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
