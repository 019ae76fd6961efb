"""Logit-adjusted expert losses: which class prior each expert's loss targets.

Expert e minimises CE(z_e + a_e, y) with an additive per-class adjustment a_e (E x C):
- softmax: a_e = 0 (plain cross-entropy, learns the training prior);
- balanced_softmax: a_e = log pi (balanced softmax, targets the uniform prior);
- sade / prl: SADE's trio generalized to E experts. Expert e has a position u_e in
  linspace(-1, 1, E); u <= 0 targets the training prior with strength |u|
  (a = log pi - |u| log pi, so u = -1 is plain CE), u = 0 the uniform prior (log pi) and
  u > 0 the reversed prior (a = log pi - lambda u log pi_reversed). Three experts give
  forward / uniform / backward exactly as SADE; pi_reversed gives the k-th most frequent
  class the k-th smallest prior, as SADE's inverse_prior (a plain flip only when class 0 is
  the head and counts fall with the class index, as in the CIFAR / Fashion-MNIST rule);
- balpoe: a_e = tau_e log pi with a tau list averaging 1 (default linspace(0, 2, E)).

Expert e's logits are then Bayes-optimal for the prior pi_e = pi exp(-a_e) (normalized).
`training_loss` is what the loop minimises. The baselines sum the expert losses; PRL scalarizes
them with the step's preference r (the published objective). Note what that objective asks of
the hypernetwork: expert e's own loss is minimised by a head that does not depend on r (r only
rescales it), so r steers the prediction mainly through the aggregation weights. The optional
mixture term (`mixture_weight` > 0) asks more: the r-weighted ensemble sum_e r_e z_e(r) must be
Bayes-optimal for the mixed prior sum_e r_e pi_e, which averaging the experts' logits cannot give.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.experts import aggregate
from .scalarize import scalarize

METHODS = ("softmax", "balanced_softmax", "sade", "balpoe", "prl")


def check_method(method: str) -> str:
    """Return `method` if known, else raise naming the known methods."""
    if method not in METHODS:
        case = (
            f" (names are lower case: method={method.lower()})" if method.lower() in METHODS else ""
        )
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}{case}")
    return method


def default_num_experts(method: str) -> int:
    """Experts a method uses by default: one for the softmax baselines, three otherwise."""
    return 1 if check_method(method) in ("softmax", "balanced_softmax") else 3


def _log_prior(prior) -> torch.Tensor:
    """log pi as float32, with a clear error for a prior that is not a distribution."""
    p = torch.as_tensor(np.asarray(prior, dtype=np.float64))
    if p.ndim != 1 or (p <= 0).any() or abs(float(p.sum()) - 1) > 1e-6:
        raise ValueError(
            "prior must be a 1-D vector of positive class frequencies summing to one "
            "(every class needs at least one training image)"
        )
    return p.log().float()


def reversed_by_rank(lp: torch.Tensor) -> torch.Tensor:
    """The k-th largest entry's place gets the k-th smallest value (ties kept in class order)."""
    order = torch.argsort(lp, descending=True, stable=True)
    out = torch.empty_like(lp)
    out[order] = lp[order].flip(0)
    return out


def sade_adjustments(prior, num_experts: int = 3, lam: float = 2.0) -> torch.Tensor:
    """SADE's forward / uniform / backward adjustments, interpolated for any number of experts (E x C)."""
    lp = _log_prior(prior)
    lp_rev = reversed_by_rank(lp)
    pos = torch.linspace(-1, 1, num_experts) if num_experts > 1 else torch.zeros(1)
    rows = [lp - (-u) * lp if u <= 0 else lp - lam * u * lp_rev for u in pos.tolist()]
    return torch.stack(rows)


def balpoe_taus(num_experts: int) -> list[float]:
    """BalPoE's default tau list: evenly spaced from 0 to 2 (mean 1); one expert gets tau 1."""
    return [1.0] if num_experts == 1 else np.linspace(0.0, 2.0, num_experts).tolist()


def expert_adjustments(
    method: str, prior, num_experts: int, lam: float = 2.0, taus: list[float] | None = None
) -> torch.Tensor:
    """Additive logit adjustment per expert and class (E x C) for a method."""
    check_method(method)
    if method == "sade" and num_experts != 3:
        raise ValueError(
            f"sade uses exactly three experts (forward, uniform, backward), got {num_experts}; "
            "use prl or balpoe for other expert counts"
        )
    lp = _log_prior(prior)
    if method == "softmax":
        return torch.zeros(num_experts, lp.numel())
    if method == "balanced_softmax":
        return lp.expand(num_experts, -1).clone()
    if method == "balpoe":
        taus = balpoe_taus(num_experts) if taus is None else list(taus)
        if len(taus) != num_experts:
            raise ValueError(
                f"balpoe needs one tau per expert: got {len(taus)} taus for {num_experts} experts"
            )
        return torch.tensor(taus, dtype=torch.float32)[:, None] * lp[None, :]
    return sade_adjustments(prior, num_experts, lam)


def expert_losses(logits: torch.Tensor, y: torch.Tensor, adjust: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each expert's adjusted logits: E x N x C logits -> E losses."""
    z = logits.float() + adjust.to(logits.device)[:, None, :]
    e, n, c = z.shape
    return F.cross_entropy(z.reshape(e * n, c), y.repeat(e), reduction="none").view(e, n).mean(1)


def target_priors(adjust: torch.Tensor, prior) -> torch.Tensor:
    """The label prior each expert's adjusted loss makes its logits Bayes-optimal for: pi * exp(-a_e) (E x C)."""
    lp = _log_prior(prior).to(adjust.device)
    return torch.softmax(lp[None, :] - adjust, dim=1)


def mixture_loss(
    logits: torch.Tensor, pref: torch.Tensor, y: torch.Tensor, adjust: torch.Tensor, prior
) -> torch.Tensor:
    """CE of the pref-weighted ensemble, logit-adjusted toward the mixture prior sum_e r_e pi_e.

    Averaging calibrated experts' logits gives the geometric mixture of their priors, so the
    hypernetwork has to supply the rest: log sum_e r_e pi_e - sum_e r_e log pi_e, zero at the
    corners and largest between them. This makes the heads depend on r.
    """
    p = pref.to(logits.device).float()
    z = aggregate(logits.float(), p)
    mix = (p[:, None] * target_priors(adjust.to(z.device), prior)).sum(0)
    lp = _log_prior(prior).to(z.device)
    return F.cross_entropy(z + lp - mix.clamp_min(1e-12).log(), y)


def training_loss(
    method: str,
    logits: torch.Tensor,
    y: torch.Tensor,
    pref: torch.Tensor,
    adjust: torch.Tensor,
    prior=None,
    scalarization: str = "sum_lse",
    mu: float = 0.1,
    mixture_weight: float = 0.0,
) -> torch.Tensor:
    """The loss one step minimises: the summed expert losses, or PRL's scalarized ones plus the mixture term."""
    losses = expert_losses(logits, y, adjust)
    if method != "prl":
        return losses.sum()
    loss = scalarize(losses, pref, scalarization, mu)
    if mixture_weight:
        if prior is None:
            raise ValueError("prl's mixture term needs the training prior")
        loss = loss + mixture_weight * mixture_loss(logits, pref, y, adjust, prior)
    return loss
