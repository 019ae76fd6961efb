"""Batched training augmentation on the model's device: crop with padding, flip, rotation.

All three are one affine map per image, so a whole batch is warped by a single
`grid_sample`: a random crop of a zero-padded image equals an integer translation with
zero fill, a flip is a sign change of x, a rotation a 2x2 rotation. No per-image Python
loop and no PIL, so augmentation never starves a CPU or GPU run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROTATION_MODES = ("bilinear", "nearest")


@dataclass
class AugmentConfig:
    """Random crop (pixels of padding), horizontal flip, rotation (degrees, uniform +-)."""

    pad: int = 4  # crop after zero padding of this many pixels (0: off)
    flip: bool = True  # horizontal flip with probability 0.5
    rotation: float = 15.0  # max absolute rotation in degrees (0: off)
    rotation_mode: str = "bilinear"  # rotation sampling: bilinear | nearest (torchvision's)


def random_affine_params(
    n: int,
    cfg: AugmentConfig,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-image 2x3 affine matrices (normalized coordinates) for `grid_sample`."""
    h, w = size
    g = generator
    ang = (
        (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotation)
        if cfg.rotation
        else torch.zeros(n)
    )
    sx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(n)
    # integer pixel shifts in [-pad, pad], like cropping a padded image at a random offset
    tx = (
        torch.randint(-cfg.pad, cfg.pad + 1, (n,), generator=g).float() * 2 / w
        if cfg.pad
        else torch.zeros(n)
    )
    ty = (
        torch.randint(-cfg.pad, cfg.pad + 1, (n,), generator=g).float() * 2 / h
        if cfg.pad
        else torch.zeros(n)
    )
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack(
        [torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1
    )
    return theta.to(device)


def augment_batch(
    X: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Augment a float batch N x C x H x W on its own device; zeros fill the uncovered border."""
    if X.ndim != 4:
        raise ValueError(f"expected a batch N x C x H x W, got shape {tuple(X.shape)}")
    if not (cfg.pad or cfg.flip or cfg.rotation):
        return X
    if cfg.rotation_mode not in ROTATION_MODES:
        raise ValueError(
            f"unknown rotation_mode {cfg.rotation_mode!r}; choose one of {', '.join(ROTATION_MODES)}"
        )
    theta = random_affine_params(X.shape[0], cfg, X.shape[-2:], generator, X.device).to(X.dtype)
    grid = F.affine_grid(theta, list(X.shape), align_corners=False)
    # nearest keeps pure crops/flips exact; a rotation samples by rotation_mode: bilinear
    # smooths (the workbook's default), nearest keeps the pixels (torchvision's RandomRotation)
    mode = cfg.rotation_mode if cfg.rotation else "nearest"
    return F.grid_sample(X, grid, mode=mode, padding_mode="zeros", align_corners=False)


def normalize(X: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel standardization of a [0, 1] float batch (augment first, so padding is black)."""
    m = torch.tensor(mean, dtype=X.dtype, device=X.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=X.dtype, device=X.device).view(1, -1, 1, 1)
    return (X - m) / s
