"""A compact preference hypernetwork: preference vector r -> every expert's head.

Each expert's head is a cosine classifier with weights W_e(r) = W0_e + U diag(g_e(r)) V_e and a
per-class logit bias b_e(r) = U beta_e(r): W0_e (C x d) is the expert's base classifier, U
(C x k) a class basis shared by the experts, V_e (k x d) a feature basis per expert, and
g_e, beta_e (k numbers each) come from a small MLP of r. The published design emits a full
C x d matrix per expert from the MLP (hidden x C x d weights, about 594M on ImageNet-LT);
here the generated part costs C k + E k d + 2 E k (h + E) + MLP, so it stays small at 8142 classes.
"""

from __future__ import annotations

import torch
from torch import nn


class PreferenceHyperNet(nn.Module):
    """r (E,) on the simplex -> low-rank head corrections (E x C x d) and logit biases (E x C)."""

    def __init__(
        self, num_experts: int, num_classes: int, feat_dim: int, rank: int = 32, hidden: int = 64
    ):
        super().__init__()
        if rank < 1 or hidden < 1:
            raise ValueError(
                f"hypernetwork rank and hidden width must be >= 1, got rank={rank}, hidden={hidden}"
            )
        self.num_experts, self.rank = num_experts, rank
        # GELU, not ReLU: with ReLU every unit died within a few hundred SGD steps at lr 0.1 and
        # the trained hypernetwork emitted the same head for every r
        self.embed = nn.Sequential(
            nn.Linear(num_experts, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.class_basis = nn.Parameter(torch.randn(num_classes, rank) / rank**0.5)
        self.feat_basis = nn.Parameter(torch.randn(num_experts, rank, feat_dim) / feat_dim**0.5)
        # the codes also read r directly, so they stay a function of r whatever the MLP does
        self.scales = nn.Linear(hidden + num_experts, num_experts * rank)
        self.biases = nn.Linear(hidden + num_experts, num_experts * rank)
        # start as the plain experts: zero correction and zero bias, learned from there
        for lin in (self.scales, self.biases):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def codes(self, pref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-expert scale and bias codes g (E x k) and beta (E x k) for one preference."""
        h = torch.cat([self.embed(pref), pref])
        return self.scales(h).view(self.num_experts, self.rank), self.biases(h).view(
            self.num_experts, self.rank
        )

    def forward(self, pref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight corrections E x C x d and per-class logit biases E x C."""
        g, beta = self.codes(pref)
        delta = torch.einsum("ck,ek,ekd->ecd", self.class_basis, g, self.feat_basis)
        bias = beta @ self.class_basis.T
        return delta, bias


def direct_hypernet_params(
    num_experts: int, num_classes: int, feat_dim: int, hidden: int = 64
) -> int:
    """Parameters of the published-style design: one C x d (+ C bias) output layer per expert from the MLP."""
    mlp = num_experts * hidden + hidden + hidden * hidden + hidden  # the published MLP, ReLU or not
    return mlp + num_experts * (hidden + 1) * num_classes * (feat_dim + 1)
