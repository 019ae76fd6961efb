"""Training data of the loop: the long-tailed set and its balanced test set, and batches of it.

Images stay uint8 in memory (image lists: decoded per batch); `prepare_batch` moves a batch to
the device, augments it (training) and normalizes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import (
    IMAGELIST_DATASETS,
    AugmentConfig,
    DecodedImages,
    augment_batch,
    build_longtail_data,
    class_counts,
    normalize,
    read_image_list,
    shot_groups,
)
from .config import TrainConfig


@dataclass
class TrainData:
    """In-memory uint8 images and labels, plus what the losses and the evaluation need."""

    X: torch.Tensor | DecodedImages  # uint8 N x C x H x W (image lists: decoded per batch)
    y: torch.Tensor  # int64 N
    X_test: torch.Tensor | DecodedImages
    y_test: torch.Tensor
    prior: np.ndarray  # training label distribution
    groups: np.ndarray  # 'many' / 'medium' / 'few' per class
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.prior)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_image_lists(cfg: TrainConfig, workers: int = 8) -> TrainData:
    """Training and test image lists (published benchmarks or any 'relative/path label' lists), decoded lazily."""
    if not (cfg.train_list and cfg.test_list and cfg.image_root):
        raise ValueError(
            f"dataset {cfg.dataset!r} is read from image lists: set train_list, test_list and image_root "
            "(for example data_txt/ImageNet_LT/ImageNet_LT_train.txt, ..._test.txt and data/ImageNet_LT)"
        )
    if cfg.dataset in IMAGELIST_DATASETS:
        C = IMAGELIST_DATASETS[cfg.dataset]
    else:
        C = (
            cfg.list_classes
            or int(read_image_list(cfg.train_list, cfg.image_root, 10**9, False).labels.max()) + 1
        )
    train = read_image_list(cfg.train_list, cfg.image_root, C)
    test = read_image_list(cfg.test_list, cfg.image_root, C)
    counts = class_counts(train.labels, C)
    if (counts == 0).any():
        raise ValueError(
            f"{cfg.train_list}: classes {np.flatnonzero(counts == 0)[:10].tolist()} have no training "
            "image; every class needs one (check list_classes or the list)"
        )
    return TrainData(
        DecodedImages(train, cfg.image_size, workers),
        torch.from_numpy(train.labels),
        DecodedImages(test, cfg.image_size, workers),
        torch.from_numpy(test.labels),
        counts / counts.sum(),
        shot_groups(counts),
        IMAGENET_MEAN,
        IMAGENET_STD,
    )


def load_data(cfg: TrainConfig) -> TrainData:
    """The long-tailed training set and the balanced test set of `cfg.dataset`."""
    if cfg.dataset in IMAGELIST_DATASETS or cfg.dataset == "imagelist":
        return load_image_lists(cfg)
    d = build_longtail_data(cfg.dataset, imb_ratio=cfg.imb_ratio, n_max=cfg.n_max or None)
    return TrainData(
        torch.from_numpy(d.train.X),
        torch.from_numpy(d.train.y).long(),
        torch.from_numpy(d.test.X),
        torch.from_numpy(d.test.y).long(),
        np.asarray(d.prior),
        np.asarray(d.groups),
        tuple(d.spec.mean),
        tuple(d.spec.std),
    )


def balanced_subset(y: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` items of every class (all items when per_class is 0)."""
    if per_class <= 0:
        return np.arange(len(y))
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]))


def prepare_batch(
    X: torch.Tensor,
    data: TrainData,
    device: torch.device,
    aug: AugmentConfig | None,
    generator: torch.Generator | None,
    channels_last: bool,
) -> torch.Tensor:
    """uint8 images -> augmented (optional), normalized float batch on `device`."""
    x = X.to(device, non_blocking=True).float().div_(255)
    if aug is not None:
        x = augment_batch(x, aug, generator=generator)
    x = normalize(x, data.mean, data.std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
