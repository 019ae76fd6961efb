"""The array datasets the workbook builds long-tailed versions of, and how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .distributions import agnostic_indices
from .imbalance import (
    TrainCountsView,
    build_longtail_counts,
    class_counts,
    heldout_per_class,
    select_per_class,
)
from .sources import ArrayData, load_cifar100, load_fashion_mnist


@dataclass(frozen=True)
class ArraySpec:
    """How to load one array dataset and the sizes of its long-tailed protocol."""

    name: str
    loader: Callable[..., tuple[ArrayData, ArrayData]]
    num_classes: int
    n_max: int  # training images of the head class in the long-tailed set
    test_n_max: int  # test images per class of the balanced test set
    mean: tuple[float, ...]  # per-channel mean of the training images, [0, 1] units
    std: tuple[float, ...]


ARRAY_DATASETS = {
    "fashion_mnist": ArraySpec(
        "fashion_mnist", load_fashion_mnist, 10, 600, 1000, (0.2860,), (0.3530,)
    ),
    "cifar100": ArraySpec(
        "cifar100", load_cifar100, 100, 500, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
}


def array_spec(name: str) -> ArraySpec:
    """The spec of an array dataset by name, with a clear error for unknown names."""
    if name not in ARRAY_DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; known array datasets: {', '.join(ARRAY_DATASETS)} "
            "(image-list datasets are read with read_image_list)"
        )
    return ARRAY_DATASETS[name]


@dataclass
class LongTailData(TrainCountsView):
    """A long-tailed training set, the balanced test set and the test-agnostic subsets."""

    name: str
    imb_ratio: float
    train: ArrayData
    test: ArrayData
    train_idx: np.ndarray  # indices of the long-tailed subset in the full training split
    test_sets: dict[str, np.ndarray]  # distribution name -> indices into `test`
    spec: ArraySpec
    val: ArrayData | None = (
        None  # held-out training images not in the long-tailed set (calibration)
    )

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def train_counts(self) -> np.ndarray:
        return class_counts(self.train.y, self.num_classes)

    def test_subset(self, dist: str) -> ArrayData:
        """The test images of one distribution ('forward50', 'uniform', 'backward10', ...)."""
        if dist not in self.test_sets:
            raise ValueError(
                f"unknown test distribution {dist!r}; available: {', '.join(self.test_sets)}"
            )
        return self.test.subset(self.test_sets[dist])


def build_longtail_data(
    name: str,
    imb_ratio: float = 100,
    n_max: int | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
    download: bool = False,
    test_per_class: int | None = None,
    val_per_class: int = 0,
) -> LongTailData:
    """Load an array dataset, cut its long-tailed training set and build the agnostic test sets.

    `test_per_class` (smaller than the dataset's) first keeps a seeded balanced subset of the test
    set, and the distributions are cut from it with that n_max: a scaled-down protocol for quick runs.
    `val_per_class` > 0 also keeps up to that many unused training images per class as `val`.
    """
    spec = array_spec(name)
    n_max = spec.n_max if n_max is None else n_max
    counts = build_longtail_counts(n_max, spec.num_classes, imb_ratio)
    train, test = (
        spec.loader(data_root, download=download) if data_root else spec.loader(download=download)
    )
    idx = select_per_class(train.y, counts, seed=seed)
    test_n_max = spec.test_n_max
    if test_per_class and test_per_class < spec.test_n_max:
        test = test.subset(
            np.sort(select_per_class(test.y, np.full(spec.num_classes, test_per_class), seed=seed))
        )
        test_n_max = test_per_class
    tests = agnostic_indices(test.y, spec.num_classes, n_max=test_n_max, seed=seed)
    val = (
        train.subset(heldout_per_class(train.y, idx, val_per_class, seed))
        if val_per_class
        else None
    )
    return LongTailData(name, imb_ratio, train.subset(idx), test, idx, tests, spec, val)
