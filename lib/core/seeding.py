"""Seeding shared by the trainers (docs/index.md, "Layers").

All randomness of epoch t is drawn from generators seeded by (seed, t), so a run resumed from
the checkpoint of epoch t draws what an uninterrupted run would have drawn.
"""

from __future__ import annotations

import numpy as np
import torch


def seed_weights(seed: int) -> None:
    """Seed torch's global generator before a model is built (its initial weights)."""
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """One integer per (seed, epoch), for torch generators."""
    return seed * 100_003 + epoch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh CPU torch generator for epoch `epoch` of run `seed`."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """A fresh numpy generator for epoch `epoch` of run `seed`."""
    return np.random.default_rng([seed, epoch])
