"""Long-tailed class profiles, seeded subset selection and shot groups.

The exponential profile n_i = int(n_max * (1/imb_ratio)^(i/(C-1))) with class 0 as the
head is the one of LDAM/RIDE/SADE's CIFAR-100-LT; the selection reproduces their subsets:
one RandomState(seed), classes in index order, each class's indices shuffled, first n kept.
"""

from __future__ import annotations

import numpy as np

MANY_THRESHOLD = 100  # many-shot: more than 100 training images
FEW_THRESHOLD = 20  # few-shot: fewer than 20 training images


def build_longtail_counts(
    n_max: int, num_classes: int, imb_ratio: float, reverse: bool = False
) -> np.ndarray:
    """Per-class counts int(n_max * (1/imb_ratio)^(i/(C-1))); `reverse` puts the head last."""
    if imb_ratio < 1:
        raise ValueError(
            f"imb_ratio must be >= 1 (n_max / n_min), got {imb_ratio}; "
            "use 1 for a balanced set, 100 for the usual CIFAR-100-LT"
        )
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


def heldout_per_class(y: np.ndarray, used: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Up to `per_class` indices per class that are not in `used` (seeded): a held-out validation split.

    Long-tailed training sets leave most images of the tail classes unused; head classes may have
    none left (CIFAR-100-LT uses all 500 of class 0), so the split is balanced only where it can be.
    """
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    y = np.asarray(y)
    free = np.ones(len(y), dtype=bool)
    free[np.asarray(used, dtype=np.int64)] = False
    rng = np.random.RandomState(seed + 1)  # not the training selection's stream
    picked = []
    for c in range(int(y.max()) + 1 if len(y) else 0):
        idx = np.where((y == c) & free)[0]
        rng.shuffle(idx)
        picked.append(idx[:per_class])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of items per class."""
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)


def shot_groups(
    train_counts: np.ndarray, many: int = MANY_THRESHOLD, few: int = FEW_THRESHOLD
) -> np.ndarray:
    """Group label per class from its training count: 'many' (> many), 'few' (< few), else 'medium'."""
    c = np.asarray(train_counts)
    return np.where(c > many, "many", np.where(c < few, "few", "medium"))


class TrainCountsView:
    """`groups` and `prior` of a dataset that defines `train_counts` (per-class training images)."""

    train_counts: np.ndarray

    @property
    def groups(self) -> np.ndarray:
        """'many' / 'medium' / 'few' per class, from the training counts."""
        return shot_groups(self.train_counts)

    @property
    def prior(self) -> np.ndarray:
        """Training label distribution (sums to one)."""
        c = self.train_counts.astype(np.float64)
        return c / c.sum()
