"""Test-agnostic label distributions: forward-k, uniform, backward-k (SADE's protocol).

Array datasets (CIFAR-100, Fashion-MNIST) build them from the balanced test set with the
CIFAR rule of `longtail.py` (class 0 is the head; backward reverses the class order).
Image-list datasets use the floor rule over classes ranked by training frequency:
n_r = floor(n_max * (1/k)^(r/(C-1))), backward with exponent (C-1-r)/(C-1).
"""

from __future__ import annotations

import math

import numpy as np

from .imbalance import build_longtail_counts, select_per_class

IMBALANCES = (50, 25, 10, 5, 2)


def distribution_names(ks: tuple[int, ...] = IMBALANCES) -> list[str]:
    """['forward50', ..., 'forward2', 'uniform', 'backward2', ..., 'backward50']."""
    return [f"forward{k}" for k in ks] + ["uniform"] + [f"backward{k}" for k in sorted(ks)]


def parse_distribution(name: str) -> tuple[str, int]:
    """('forward', 50) from 'forward50'; ('uniform', 1) from 'uniform'."""
    if name == "uniform":
        return "uniform", 1
    for kind in ("forward", "backward"):
        if name.startswith(kind) and name[len(kind) :].isdigit() and int(name[len(kind) :]) >= 1:
            return kind, int(name[len(kind) :])
    raise ValueError(
        f"unknown test distribution {name!r}; use 'uniform', 'forwardK' or 'backwardK' "
        f"(e.g. {', '.join(distribution_names())})"
    )


def agnostic_counts(name: str, n_max: int, num_classes: int) -> np.ndarray:
    """Per-class test counts of one distribution by the CIFAR (int) rule; uniform is n_max each."""
    kind, k = parse_distribution(name)
    if kind == "uniform":
        return np.full(num_classes, n_max, dtype=np.int64)
    return build_longtail_counts(n_max, num_classes, k, reverse=(kind == "backward"))


def agnostic_indices(
    y_test: np.ndarray,
    num_classes: int,
    n_max: int | None = None,
    ks: tuple[int, ...] = IMBALANCES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Indices into a balanced test set for every forward/uniform/backward distribution.

    `uniform` is the whole balanced test set. Each distribution is drawn with its own
    RandomState(seed), as the published CIFAR generator does.
    """
    counts = np.bincount(y_test, minlength=num_classes)
    if len(set(counts.tolist())) != 1:
        raise ValueError(
            f"the test set must be balanced (equal counts per class), got {counts.min()}..{counts.max()}"
        )
    n_max = int(counts[0]) if n_max is None else n_max
    out = {}
    for name in distribution_names(ks):
        if name == "uniform":
            out[name] = np.arange(len(y_test))
        else:
            out[name] = select_per_class(
                y_test, agnostic_counts(name, n_max, num_classes), seed=seed
            )
    return out


def floor_counts(n_max: int, num_classes: int, k: float, backward: bool = False) -> np.ndarray:
    """Image-list rule over frequency ranks r: floor(n_max * (1/k)^(r/(C-1)))."""
    r = np.arange(num_classes)
    expo = ((num_classes - 1 - r) if backward else r) / max(num_classes - 1, 1)
    return np.array([math.floor(n_max * (1.0 / k) ** e) for e in expo], dtype=np.int64)


def rank_by_frequency(train_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids from most to least frequent in training (ties by class id)."""
    counts = np.bincount(train_labels, minlength=num_classes)
    return np.lexsort((np.arange(num_classes), -counts))


def imagelist_agnostic_indices(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    n_max: int,
    ks: tuple[int, ...] = IMBALANCES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Indices into a (balanced) image-list test set for every distribution, by the floor rule."""
    order = rank_by_frequency(np.asarray(train_labels), num_classes)
    test_labels = np.asarray(test_labels)
    out = {}
    for name in distribution_names(ks):
        kind, k = parse_distribution(name)
        if kind == "uniform":
            out[name] = np.arange(len(test_labels))
            continue
        by_rank = floor_counts(n_max, num_classes, k, backward=(kind == "backward"))
        counts = np.zeros(num_classes, dtype=np.int64)
        counts[order] = by_rank
        out[name] = select_per_class(test_labels, counts, seed=seed)
    return out
