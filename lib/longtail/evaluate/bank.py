"""Cached test-set representations, so every distribution, adaptation and slider move is cheap.

The eleven test distributions are subsets of one balanced test set, and only the heads
depend on the preference vector. So the backbone runs once over the test set (plus two
augmented views per adaptation epoch), the per-expert features are kept, and any
distribution, aggregation weight or preference is evaluated from them with one small
matrix product: a slider move costs milliseconds, not a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import AugmentConfig, augment_batch, normalize
from ..models.experts import MultiExpertModel, aggregate, check_pref
from .calibrate import Calibration, fit_bcts


@torch.no_grad()  # not inference_mode: stability_pref backpropagates through heads that read these
def expert_features(
    model: MultiExpertModel,
    X,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    aug: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """L2-normalized per-expert features E x N x d (CPU) of uint8 images, optionally augmented.

    `X` is anything sliced into uint8 N x C x H x W batches: a tensor, an array, or `DecodedImages`.
    """
    model.eval()
    device = torch.device(device)
    out = []
    for i in tqdm(range(0, len(X), batch_size), desc=desc, leave=False):
        x = torch.as_tensor(X[i : i + batch_size]).to(device).float().div_(255)
        if aug is not None:
            x = augment_batch(x, aug, generator=generator)
        x = normalize(x, mean, std).contiguous(
            memory_format=torch.channels_last
        )  # faster convs, CPU and GPU
        feats = torch.stack(model.features(x)).float()
        out.append(F.normalize(feats, dim=-1).cpu())
    return torch.cat(out, dim=1)


def head_logits(model: MultiExpertModel, feats: torch.Tensor, pref) -> torch.Tensor:
    """Per-expert logits E x N x C from normalized features and a preference vector."""
    return model.logits_from_features(feats, check_pref(pref, model.num_experts, feats.device))


@dataclass
class FeatureBank:
    """Features of the test set (clean, and augmented view pairs for adaptation) of one model."""

    model: MultiExpertModel
    clean: torch.Tensor  # E x N x d
    y: np.ndarray  # labels of the N test items
    views: list[tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=list
    )  # one pair per epoch
    calibration: Calibration | None = (
        None  # BCTS of the uniform-preference scores, from held-out images
    )
    val: torch.Tensor | None = (
        None  # E x M x d features of the held-out labelled images (never test images)
    )
    y_val: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def logits(
        self, pref=None, idx: np.ndarray | None = None, view: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-expert logits E x n x C for `pref` on items `idx` (all by default)."""
        f = self.clean if view is None else view
        f = f if idx is None else f[:, torch.as_tensor(idx)]
        with torch.no_grad():
            return head_logits(self.model, f, pref)

    def val_scores(self, pref=None, weights=None) -> torch.Tensor:
        """Aggregated logits of the held-out images, for checks under an estimated test prior."""
        if self.val is None:
            raise ValueError("the bank holds no held-out images; build it with X_val and y_val")
        p, w = self._pref_weights(pref, weights)
        with torch.no_grad():
            return aggregate(head_logits(self.model, self.val, p), w)

    def _pref_weights(self, pref, weights) -> tuple[torch.Tensor, torch.Tensor]:
        p = check_pref(pref, self.model.num_experts)
        # the expert weights pass the same check as pref: a NaN weight would make every score NaN
        return p, (
            p
            if weights is None
            else check_pref(weights, self.model.num_experts, what="expert weights")
        )

    def scores(self, pref=None, weights=None, idx: np.ndarray | None = None) -> torch.Tensor:
        """Aggregated logits n x C: heads from `pref`, experts weighted by `weights` (default: pref)."""
        p, w = self._pref_weights(pref, weights)
        key = (tuple(np.round(p.tolist(), 6)), tuple(np.round(w.tolist(), 6)))
        if idx is None and key in self._cache:
            return self._cache[key]
        out = aggregate(self.logits(p, idx), w)
        if idx is None:
            self._cache = {key: out}  # keep the last one: a slider redraw reuses it
        return out


def build_bank(
    model: MultiExpertModel,
    X_test,
    y_test: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    view_epochs: int = 0,
    aug: AugmentConfig | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    X_val=None,
    y_val: np.ndarray | None = None,
) -> FeatureBank:
    """Run the backbone once over the test set (and `view_epochs` pairs of augmented views).

    With held-out labelled images (`X_val`, `y_val`, never test images) the uniform-preference
    scores are also calibrated (bias-corrected temperature scaling) for label-shift estimation.
    """
    clean = expert_features(model, X_test, mean, std, batch_size, device, desc="test features")
    g = torch.Generator().manual_seed(seed)  # augmentation draws its parameters on the CPU
    aug = aug or AugmentConfig()
    views = [
        tuple(
            expert_features(
                model, X_test, mean, std, batch_size, device, aug, g, desc=f"view {e}.{v}"
            )
            for v in (1, 2)
        )
        for e in range(view_epochs)
    ]
    bank = FeatureBank(model, clean, np.asarray(y_test), views)
    if X_val is not None and len(X_val):
        bank.val = expert_features(
            model, X_val, mean, std, batch_size, device, desc="held-out features"
        )
        bank.y_val = np.asarray(y_val)
        bank.calibration = fit_bcts(bank.val_scores(), bank.y_val)
    return bank
