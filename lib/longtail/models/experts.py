"""The whole multi-expert model: backbone branches, cosine heads, optional preference hypernetwork.

    model = build_model(ModelConfig(arch="resnet32", num_classes=10, num_experts=3, in_channels=1,
                                    hypernet=True))
    logits = model(x, pref)        # E x N x C: one logit matrix per expert
    scores = model.predict(x, pref)  # N x C: the experts' logits weighted by pref

Every model takes the preference vector `pref` (E numbers >= 0 summing to one; None means
uniform) for every method. With a hypernetwork (method `prl`) pref generates each expert's
head (cosine weights and a per-class logit bias); without one the heads are fixed. In both
cases `predict` weights the experts by pref, so a user's choice always changes the prediction.
Expert e's logits are s * cos(f_e, W_e) + b_e with s = 30 (cosine classifier).

`init` picks the start of the weights (INITS): 'workbook' (kaiming-normal fan-out convolutions,
kaiming-uniform head rows of norm about 0.58) or 'published' (as the published SADE / RIDE
code starts them: LDAM-DRW's fan-in convolutions in the CIFAR ResNet-32, fan-out in the
bottleneck ResNets, and head rows of norm one, their NormedLinear). Cosine heads and
convolutions before BatchNorm are scale-invariant, so the start's norm sets how far a step
turns them. `stem_channels` > 1 on 1-channel images repeats the gray channel to fill the
stem, as the published CIFAR network's 3-channel stem needs for Fashion-MNIST.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import CIFAR_ARCHS, build_backbone, check_arch
from .hypernet import PreferenceHyperNet

PREF_TOL = 1e-2  # a preference whose sum is this close to one is renormalized with a warning
INITS = ("workbook", "published")  # weight starts (module docstring)


@dataclass
class ModelConfig:
    """Architecture of a multi-expert model (saved in every checkpoint)."""

    arch: str = "resnet32"  # resnet32 | resnet50 | resnext50_32x4d | resnet152
    num_classes: int = 10
    num_experts: int = 3
    in_channels: int = 1
    reduced: bool = True  # RIDE's reduced widths of the per-expert stages
    hypernet: bool = False  # generate the heads from the preference vector (PRL)
    hyper_rank: int = 32  # rank k of the generated head corrections
    hyper_hidden: int = 64  # width of the hypernetwork's MLP
    scale: float = 30.0  # cosine classifier scale
    init: str = "workbook"  # workbook | published (weight starts; module docstring)
    stem_channels: int = 0  # input channels of the stem (0: in_channels; >1 repeats gray images)


def check_pref(
    pref, num_experts: int, device: torch.device | str = "cpu", what: str = "preference vector"
) -> torch.Tensor:
    """Validate a preference vector (length E, >= 0, sum 1); None -> uniform; near-sums renormalized."""
    if pref is None:
        return torch.full((num_experts,), 1.0 / num_experts, device=device)
    p = torch.as_tensor(pref, dtype=torch.float32, device=device).flatten()
    if p.numel() != num_experts:
        raise ValueError(
            f"{what} has {p.numel()} entries but the model has {num_experts} experts; "
            f"pass one weight per expert"
        )
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(
            f"{what} {p.tolist()} has negative or non-finite entries; "
            "use weights >= 0 that sum to one"
        )
    s = float(p.sum())
    if abs(s - 1.0) > 1e-5:
        if abs(s - 1.0) > PREF_TOL:
            raise ValueError(f"{what} {p.tolist()} sums to {s:.4f}, not 1; divide it by its sum")
        warnings.warn(f"{what} sums to {s:.6f}; renormalized to sum to one", stacklevel=2)
        p = p / s
    return p


def stem_channels(cfg: ModelConfig) -> int:
    """Input channels of the stem: in_channels, or more for 1-channel images (repeated copies)."""
    if cfg.stem_channels < 0 or (
        cfg.stem_channels not in (0, cfg.in_channels) and cfg.in_channels != 1
    ):
        raise ValueError(
            f"stem_channels={cfg.stem_channels} with in_channels={cfg.in_channels}: use 0 (the "
            "images' channels), or more only for 1-channel images (their copies fill the stem)"
        )
    return cfg.stem_channels or cfg.in_channels


def head_start(num_experts: int, num_classes: int, d: int, init: str = "workbook") -> torch.Tensor:
    """Starting head weights E x C x d: kaiming-uniform rows (workbook) or unit-norm rows (published)."""
    w = torch.empty(num_experts, num_classes, d)
    if init == "published":  # uniform in [-1, 1], each class row scaled to norm one
        return F.normalize(w.uniform_(-1, 1), dim=-1)
    nn.init.kaiming_uniform_(w.view(-1, d), a=math.sqrt(5))
    return w


class MultiExpertModel(nn.Module):
    """Shared trunk, E expert branches, E cosine heads and (for PRL) the preference hypernetwork."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_arch(cfg.arch)
        if cfg.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {cfg.num_classes}")
        if cfg.init not in INITS:
            raise ValueError(f"unknown init {cfg.init!r}; choose one of {', '.join(INITS)}")
        self.stem_channels = stem_channels(cfg)
        self.cfg = cfg
        published = cfg.init == "published"
        bb = build_backbone(
            cfg.arch,
            cfg.num_experts,
            self.stem_channels,
            cfg.reduced,
            "fan_in" if published and cfg.arch in CIFAR_ARCHS else "fan_out",
        )
        self.trunk, self.branches, self.feat_dim = bb.trunk, bb.branches, bb.feat_dim
        self.head_weight = nn.Parameter(
            head_start(cfg.num_experts, cfg.num_classes, bb.feat_dim, cfg.init)
        )
        self.hypernet = (
            PreferenceHyperNet(
                cfg.num_experts, cfg.num_classes, bb.feat_dim, cfg.hyper_rank, cfg.hyper_hidden
            )
            if cfg.hypernet
            else None
        )

    @property
    def num_experts(self) -> int:
        return self.cfg.num_experts

    def heads(self, pref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Head weights E x C x d and logit biases E x C (None without a hypernetwork) for `pref`."""
        if self.hypernet is None:
            return self.head_weight, None
        delta, bias = self.hypernet(pref)
        return self.head_weight + delta, bias

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-expert features, each N x d (a 1-channel batch repeated to the stem's channels)."""
        if x.shape[1] == 1 and self.stem_channels > 1:
            x = x.expand(-1, self.stem_channels, -1, -1)
        z = self.trunk(x)
        return [branch(z) for branch in self.branches]

    def forward(self, x: torch.Tensor, pref=None) -> torch.Tensor:
        """Per-expert logits E x N x C for preference `pref` (None: uniform)."""
        # the checks read values on the host; a compiled training step passes validated tensors
        p = pref if torch.compiler.is_compiling() else check_pref(pref, self.num_experts, x.device)
        feats = self.features(x)
        # cosine heads in fp32: normalizing half-precision features loses the small angles
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.logits_from_features(F.normalize(torch.stack(feats).float(), dim=-1), p)

    def logits_from_features(self, f: torch.Tensor, pref: torch.Tensor) -> torch.Tensor:
        """Per-expert logits E x N x C from L2-normalized features E x N x d (the heads' part of forward).

        Test-time adaptation and the preference sliders cache the features once and call this.
        """
        w, b = self.heads(pref)
        logits = self.cfg.scale * torch.einsum("end,ecd->enc", f, F.normalize(w.float(), dim=-1))
        return logits if b is None else logits + b.float()[:, None, :]

    def predict(self, x: torch.Tensor, pref=None) -> torch.Tensor:
        """Aggregated logits N x C: the experts' logits weighted by `pref`."""
        p = check_pref(pref, self.num_experts, x.device)
        return aggregate(self(x, p), p)


def aggregate(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over experts of E x N x C logits."""
    return torch.einsum("e,enc->nc", weights.to(logits.dtype), logits)


def build_model(cfg: ModelConfig) -> MultiExpertModel:
    """A fresh model for a configuration."""
    return MultiExpertModel(cfg)


def parameter_counts(model: MultiExpertModel) -> dict[str, int]:
    """Parameters of the backbone (trunk + branches), the base heads and the hypernetwork."""
    count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0
    return {
        "backbone": count(model.trunk) + count(model.branches),
        "heads": model.head_weight.numel(),
        "hypernet": count(model.hypernet),
    }


def logit_bias(model: MultiExpertModel, pref) -> torch.Tensor:
    """Each expert's generated per-class logit bias E x C for `pref` (zeros without a hypernetwork)."""
    p = check_pref(pref, model.num_experts, model.head_weight.device)
    with torch.no_grad():
        _, b = model.heads(p)
    return torch.zeros(model.num_experts, model.cfg.num_classes) if b is None else b.detach().cpu()


def parameter_table(archs: list[str], class_counts: list[int], base: ModelConfig = ModelConfig()):
    """Backbone, head and hypernetwork parameters per architecture and class count (built on 'meta').

    Every model is `base` with the architecture, class count, 3 input channels and the
    hypernetwork set. `direct_hypernet` is the published design's cost (one C x d matrix per
    expert from the MLP, same hidden width); `hypernet_over_backbone` the compact hypernetwork's share.
    """
    import pandas as pd

    from .hypernet import direct_hypernet_params

    rows = []
    for arch in archs:
        for c in class_counts:
            cfg = replace(base, arch=arch, num_classes=c, in_channels=3, hypernet=True)
            with torch.device("meta"):  # counts only: no memory, no initialization cost
                m = build_model(cfg)
            n = parameter_counts(m)
            rows.append(
                {
                    "arch": arch,
                    "classes": c,
                    **n,
                    "direct_hypernet": direct_hypernet_params(
                        cfg.num_experts, c, m.feat_dim, cfg.hyper_hidden
                    ),
                    "hypernet_over_backbone": n["hypernet"] / n["backbone"],
                }
            )
    return pd.DataFrame(rows)
