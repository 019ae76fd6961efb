"""Long-tailed class profiles, seeded subset selection and shot groups.

The exponential profile n_i = int(n_max * (1/imb_ratio)^(i/(C-1))) with class 0 as the
head is the one of LDAM/RIDE/SADE's CIFAR-100-LT; the selection reproduces their subsets:
one RandomState(seed), classes in index order, each class's indices shuffled, first n kept.
"""
from __future__ import annotations

import numpy as np

MANY_THRESHOLD = 100  # many-shot: more than 100 training images
FEW_THRESHOLD = 20  # few-shot: fewer than 20 training images


def build_longtail_counts(n_max: int, num_classes: int, imb_ratio: float, reverse: bool = False) -> np.ndarray:
    """Per-class counts int(n_max * (1/imb_ratio)^(i/(C-1))); `reverse` puts the head last."""
    if imb_ratio < 1:
        raise ValueError(f"imb_ratio must be >= 1 (n_max / n_min), got {imb_ratio}; "
                         "use 1 for a balanced set, 100 for the usual CIFAR-100-LT")
    if num_classes < 1 or n_max < 1:
        raise ValueError(f"need num_classes >= 1 and n_max >= 1, got {num_classes}, {n_max}")
    i = np.arange(num_classes)
    expo = i / max(num_classes - 1, 1)
    if reverse:
        expo = expo[::-1]
    # float64 pow then int() truncation, exactly as the published generators do
    return np.array([int(n_max * (1.0 / imb_ratio) ** e) for e in expo], dtype=np.int64)


def select_per_class(y: np.ndarray, counts: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices of a subset with counts[c] items of class c: seeded shuffle per class, first n kept."""
    y = np.asarray(y)
    counts = np.asarray(counts)
    rng = np.random.RandomState(seed)
    picked = []
    for c, n in enumerate(counts):
        idx = np.where(y == c)[0]
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} items but {n} were asked for; lower n_max")
        rng.shuffle(idx)
        picked.append(idx[:n])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of items per class."""
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)


def shot_groups(train_counts: np.ndarray, many: int = MANY_THRESHOLD, few: int = FEW_THRESHOLD) -> np.ndarray:
    """Group label per class from its training count: 'many' (> many), 'few' (< few), else 'medium'."""
    c = np.asarray(train_counts)
    return np.where(c > many, "many", np.where(c < few, "few", "medium"))
