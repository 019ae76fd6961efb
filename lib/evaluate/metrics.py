"""Accuracy metrics for long-tailed evaluation, re-exported from `lib.metrics`.

The definitions live in the bottom layer (`lib/metrics.py`) so that training (`lib.train`)
and evaluation (`lib.evaluate`) share one definition without an upward import; see the layer
map in docs/index.md.
"""

from __future__ import annotations

from ..metrics import (
    GROUPS,
    accuracy_report,
    per_class_accuracy,
    prior_weighted_accuracy,
    prior_weighted_gain,
    results_table,
)

__all__ = [
    "GROUPS",
    "accuracy_report",
    "per_class_accuracy",
    "prior_weighted_accuracy",
    "prior_weighted_gain",
    "results_table",
]
