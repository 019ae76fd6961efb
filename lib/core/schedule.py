"""Learning-rate schedules shared by the trainers (docs/index.md, "Layers"): linear warm-up, then
cosine decay or steps at milestones.

`lib.longtail.train` evaluates it per fractional epoch (`lr_at`); the NMR trainer per optimizer step
through `torch.optim.lr_scheduler.LambdaLR` (`lib.nmr.train.lr_factor`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DECAYS = ("step", "cosine")


def warmup_decay(
    t: float,
    warmup: float,
    total: float,
    *,
    base: float = 1.0,
    decay: str = "cosine",
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    offset: float = 1.0,
) -> float:
    """The rate at time t (epochs or steps): base * (t + offset) / warmup while t < warmup, then
    cosine from base to 0 at `total`, or base x gamma at every milestone passed (decay 'step')."""
    if t < warmup:
        return base * (t + offset) / warmup
    if decay == "cosine":
        return (
            0.5 * base * (1 + math.cos(math.pi * min(1.0, (t - warmup) / max(total - warmup, 1))))
        )
    if decay == "step":
        return base * gamma ** sum(t >= m for m in milestones)
    raise ValueError(f"unknown schedule {decay!r}; choose 'step' or 'cosine'")
