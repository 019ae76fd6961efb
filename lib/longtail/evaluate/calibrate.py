"""Bias-corrected temperature scaling: calibrate a model's logits before label-shift estimation.

EM prior estimation (Saerens et al. 2002) assumes posteriors calibrated to a known source prior.
A long-tailed model is not: plain CE is over-confident toward the head, logit-adjusted experts
and PRL's preference-generated heads land near, but not on, the uniform prior. Fitting a
temperature T and a per-class bias b on held-out labelled images, with each class weighted
equally, calibrates softmax(z / T + b) to the uniform prior; Alexandari, Kundaje & Shrikumar
(ICML 2020) show this "BCTS" is what makes EM label-shift adaptation reliable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Calibration:
    """softmax(logits / temperature + bias) is calibrated to the uniform prior."""

    temperature: float
    bias: torch.Tensor  # C, zero-mean
    nll_before: float  # class-balanced NLL on the calibration set, before and after
    nll_after: float
    n_items: int

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits."""
        return logits / self.temperature + self.bias.to(logits)


def fit_bcts(
    logits: torch.Tensor, y: np.ndarray, bias_reg: float = 1e-3, max_iter: int = 200
) -> Calibration:
    """Fit T and b by class-balanced NLL on labelled held-out logits (N x C); b has a small L2 penalty.

    Classes absent from the held-out set keep b near 0 through the penalty (their bias is not identified).
    """
    z = logits.detach().double()
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(yt) or len(z) == 0:
        raise ValueError(
            f"calibration needs N x C logits and N labels with N > 0; got {tuple(z.shape)} and {len(yt)}"
        )
    C = z.shape[1]
    counts = torch.bincount(yt, minlength=C).double()
    if int((counts > 0).sum()) < 2:
        raise ValueError(
            "calibration needs held-out images of at least two classes; raise val_per_class"
        )
    w = (1.0 / counts.clamp_min(1))[yt]
    w = w / w.sum()  # every present class weighs the same: calibration toward the uniform prior
    nll = lambda out: float((F.cross_entropy(out, yt, reduction="none") * w).sum())
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(z / log_t.exp() + b, yt, reduction="none") * w).sum() + bias_reg * (
            b**2
        ).sum()
        loss.backward()
        return loss

    opt.step(closure)
    t, bias = float(log_t.detach().exp()), (b.detach() - b.detach().mean()).float()
    return Calibration(t, bias, nll(z), nll(z / t + bias.double()), len(yt))
