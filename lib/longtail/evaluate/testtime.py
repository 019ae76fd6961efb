"""Test-time adaptation to an unknown label distribution, from unlabeled test images.

Three test-agnostic ways, plus an oracle reference:

* `maximize_stability`: SADE's self-supervised aggregation. Expert weights w on the simplex
  are learned by maximizing the cosine similarity between the softmax predictions of two
  augmented views of each test image. The same routine adapts PRL's preference vector
  (the weights then also generate the heads). Known failure: the objective rewards
  confident predictions, so the weights drift toward the forward (head) expert even on a
  balanced test set. `prior_reg` counters it: a KL penalty between a label-shift estimate
  of the test prior and the adapted model's mean prediction keeps the weights where the
  predicted label distribution matches the estimated one.
* `estimate_prior_em`: label-shift prior estimation by EM on the unlabeled posteriors
  (Saerens, Latinne & Decaestecker, Neural Computation 2002), followed by
  `adjust_logits` toward the estimate.
* the oracle: `adjust_logits` toward the true test prior (uses labels: not test-agnostic).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def estimate_prior_em(
    probs: torch.Tensor,
    source_prior: torch.Tensor,
    max_iter: int = 200,
    tol: float = 1e-7,
    min_prior: float = 1e-6,
) -> tuple[torch.Tensor, int]:
    """Test label prior by EM on posteriors `probs` (N x C) calibrated to `source_prior`."""
    probs = probs.double()
    src = source_prior.double().to(probs.device)
    if probs.ndim != 2 or probs.shape[1] != src.numel():
        raise ValueError(
            f"posteriors {tuple(probs.shape)} do not match a prior over {src.numel()} classes"
        )
    if len(probs) == 0:
        raise ValueError("no test items: prior estimation needs at least one unlabeled prediction")
    prior = src.clone()
    for it in range(1, max_iter + 1):
        post = probs * (prior / src)  # E-step: posteriors re-weighted to the current prior
        post = post / post.sum(1, keepdim=True)
        new = post.mean(0).clamp_min(min_prior)  # M-step: the prior is the mean posterior
        new = new / new.sum()
        done = (new - prior).abs().max() < tol
        prior = new
        if done:
            break
    return prior.float(), it


def label_shift_test(
    probs: torch.Tensor, source_prior: torch.Tensor, target_prior: torch.Tensor
) -> tuple[float, float]:
    """Likelihood-ratio statistic and p-value (chi-square, C-1 df) of a shifted prior vs the source prior.

    The unlabeled log-likelihood of prior pi is sum_i log sum_y p(y|x_i) pi_y / pi_src_y; a
    small statistic means the data do not support moving away from the source prior.
    """
    from scipy.stats import chi2

    probs = probs.double()
    src = source_prior.double().to(probs.device)
    ll = lambda pi: float(torch.log((probs * (pi.double().to(probs.device) / src)).sum(1)).sum())
    stat = max(2.0 * (ll(target_prior) - ll(src)), 0.0)
    return stat, float(chi2.sf(stat, df=src.numel() - 1))


def adjust_logits(
    logits: torch.Tensor, target_prior: torch.Tensor, source_prior: torch.Tensor
) -> torch.Tensor:
    """Logit adjustment from the prior the model is calibrated to toward a target prior."""
    t = target_prior.to(logits).clamp_min(1e-12)
    s = source_prior.to(logits).clamp_min(1e-12)
    return logits + torch.log(t) - torch.log(s)


@dataclass
class StabilityConfig:
    """SADE's test-time schedule: 5 epochs, batch 128, stop when a weight falls below 0.05."""

    epochs: int = 5  # passes over the unlabeled test set
    lr: float = 0.025  # SGD step on the weights' softmax parameters
    momentum: float = 0.9  # SGD momentum
    min_weight: float = 0.05  # stop when any expert weight falls below this
    prior_reg: float = 0.0  # weight of KL(estimated prior || mean prediction); 0 = plain SADE


@dataclass
class AdaptResult:
    """Learned weights (on the simplex), the objective per epoch and how the run ended."""

    weights: torch.Tensor
    history: list[dict] = field(default_factory=list)
    stopped: str = "completed"


def maximize_stability(
    num_experts: int,
    epoch_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: StabilityConfig = StabilityConfig(),
    prior: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
) -> AdaptResult:
    """Learn expert weights w maximizing cos(softmax(f(w, view1)), softmax(f(w, view2))).

    `epoch_batches(epoch)` yields pairs of view batches (whatever `logits_fn(w, view)` turns into
    N x C aggregated logits: stacked expert logits, or features for a hypernetwork). `prior`,
    with cfg.prior_reg > 0, is the estimated test prior the mean prediction is pulled toward.
    """
    start = torch.full((num_experts,), 1.0 / num_experts) if init is None else init.float()
    theta = torch.log(start.clamp_min(1e-6)).clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=cfg.lr, momentum=cfg.momentum)
    result = AdaptResult(weights=start.clone())
    for epoch in range(cfg.epochs):
        total, n = 0.0, 0
        for v1, v2 in epoch_batches(epoch):
            w = torch.softmax(theta, 0)
            p1 = torch.softmax(logits_fn(w.to(v1.device), v1).float(), 1)
            p2 = torch.softmax(logits_fn(w.to(v2.device), v2).float(), 1)
            stab = F.cosine_similarity(p1, p2, dim=1).mean()
            loss = -stab
            if cfg.prior_reg > 0 and prior is not None:
                mean_pred = 0.5 * (p1.mean(0) + p2.mean(0))
                pr = prior.to(mean_pred)
                loss = (
                    loss
                    + cfg.prior_reg
                    * (pr * (pr.clamp_min(1e-12).log() - mean_pred.clamp_min(1e-12).log())).sum()
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(stab.detach()) * len(p1), n + len(p1)
            w_now = torch.softmax(theta.detach(), 0)
            if float(w_now.min()) < cfg.min_weight:
                result.weights = w_now
                result.history.append(
                    {"epoch": epoch, "stability": total / max(n, 1), "weights": w_now.tolist()}
                )
                result.stopped = f"a weight fell below {cfg.min_weight} in epoch {epoch}"
                warnings.warn(
                    f"test-time adaptation stopped early: {result.stopped}; weights {w_now.tolist()}",
                    stacklevel=2,
                )
                return result
        result.weights = torch.softmax(theta.detach(), 0)
        result.history.append(
            {"epoch": epoch, "stability": total / max(n, 1), "weights": result.weights.tolist()}
        )
    return result


def entropy_bits(p: torch.Tensor) -> float:
    """Entropy of a distribution in bits (how far a prior is from one-hot)."""
    p = p.double().clamp_min(1e-300)
    return float(-(p * p.log()).sum() / math.log(2))
