"""Scalarizations of the expert losses with a preference vector, and the preference sampler.

The weights are w = E * r, so the uniform preference gives every expert weight one and the
linear scalarization reduces to SADE's plain sum of expert losses.
- linear: sum_e w_e L_e
- stch (smooth Tchebycheff, ideal point 0): mu * log sum_e exp(w_e L_e / mu)  (-> max as mu -> 0)
- sum_lse (the PRL release's form; docs/long_tail.md, section 6): sum_e w_e L_e + mu * log sum_e exp(w_e L_e)
"""

from __future__ import annotations

import numpy as np
import torch

SCALARIZATIONS = ("linear", "stch", "sum_lse")


def check_scalarization(kind: str) -> str:
    """Return `kind` if known, else raise naming the known scalarizations."""
    if kind not in SCALARIZATIONS:
        raise ValueError(
            f"unknown scalarization {kind!r}; choose one of {', '.join(SCALARIZATIONS)}"
        )
    return kind


def scalarize(
    losses: torch.Tensor, pref: torch.Tensor, kind: str = "sum_lse", mu: float = 0.1
) -> torch.Tensor:
    """One training objective from E expert losses and a preference r on the simplex."""
    check_scalarization(kind)
    if losses.shape != pref.shape:
        raise ValueError(
            f"{losses.numel()} expert losses but a preference of length {pref.numel()}"
        )
    if kind != "linear" and mu <= 0:
        raise ValueError(f"mu must be > 0 for the {kind} scalarization, got {mu}")
    wl = losses * pref.to(losses) * losses.numel()
    if kind == "linear":
        return wl.sum()
    if kind == "stch":
        return mu * torch.logsumexp(wl / mu, dim=0)
    return wl.sum() + mu * torch.logsumexp(wl, dim=0)


def sample_preferences(
    rng: np.random.Generator, num_experts: int, steps: int, alpha: float = 1.2
) -> np.ndarray:
    """One Dirichlet(alpha) preference per training step (steps x E), shared by all experts."""
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    return rng.dirichlet(np.full(num_experts, alpha), size=steps).astype(np.float32)
