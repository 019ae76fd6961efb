"""Residual 1D U-Net for real-valued spectra (docs/nmr.md, recipe step 4).

Four encoder levels (Conv1d k=9 with dilation 1/2/4/8, GroupNorm, GELU, residual),
stride-2 downsampling, a bottleneck, transposed-convolution upsampling with concatenated
skips, optional squeeze-excitation at the bottleneck and the shallowest level, and a
1x1 head whose output is added to the input (the network predicts a correction).

With `noise_norm` (the default) the network works in units of the input's own noise: each
spectrum is divided by its robust noise std sigma (estimated from the spectrum alone), so
every input SNR looks alike (noise std 1, peaks SNR tall), and the head predicts the noise
in those units. `max_correction` then bounds the correction to that many sigma per point:
noise never exceeds a few sigma, so peaks can lose at most that much height.

Lines far taller than any the network was trained on (in those units) are shapes it has never
seen: its corrections there stop being noise and become distortion of the lines, whose cost
grows with the line height while the input's own error stays at the noise. So `denoise` blends
the output toward the input beyond the top of the training range (`snr_top`, read from the
model's card): for two independent errors, one of the network (a fraction of the line height)
and one of the input (the noise), the mean-squared-error weight of the network's output is
1 / (1 + (SNR / SNR_half)^2), here written to leave the training range untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .preprocess import spectrum_snr

# The input SNR, in multiples of the training range's top, at which the network's output and
# the input weigh equally (input_weight). Chosen for the FID on which the shipped model fails
# first (measured 1H FIDs plus noise, bench/nmr_snr_range.py): there the error-best weight on the
# lines is about 0.3 at 4x the top and under 0.05 at 12x. It keeps every measured FID at least as
# good as its input, and gives up part of the gain between 2.5x and 12x the top on FIDs where the
# network still helps (docs/nmr.md, open points).
BLEND_AT = 2.5


@dataclass(frozen=True)
class UNetConfig:
    """Widths and options; base 32 gives about 2M parameters (the recipe's 1-3M)."""

    base: int = 32  # channels of level 1; levels use base * (1, 2, 4, 4)
    kernel: int = 9
    groups: int = 8
    se: bool = True
    noise_norm: bool = True  # work in units of the input's estimated noise std
    max_correction: float = (
        0.0  # bound on |correction| in noise std (needs noise_norm); 0 = unbounded
    )

    def __post_init__(self) -> None:
        if self.max_correction < 0:
            raise ValueError(
                f"max_correction={self.max_correction} must be >= 0 (0 switches the bound off)"
            )
        if self.max_correction > 0 and not self.noise_norm:
            raise ValueError(
                "max_correction is in units of the input noise: it needs noise_norm=True"
            )

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Channels of the four levels."""
        return (self.base, 2 * self.base, 4 * self.base, 4 * self.base)


def noise_std(x: torch.Tensor) -> torch.Tensor:
    """Robust noise std of each spectrum [B, L] -> [B, 1]: MAD of first differences / sqrt(2).

    Differences cancel smooth baselines, and the median ignores the few points on sparse
    peaks, so the estimate needs no peak mask and no second acquisition.
    """
    d = x[..., 1:] - x[..., :-1]
    mad = (d - d.median(-1, keepdim=True).values).abs().median(-1, keepdim=True).values
    return 1.4826 * mad / math.sqrt(2.0)


class SqueezeExcite(nn.Module):
    """Channel re-weighting from the globally pooled features."""

    def __init__(self, ch: int, reduction: int = 8):
        super().__init__()
        hid = max(ch // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(ch, hid), nn.GELU(), nn.Linear(hid, ch), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(-1))[..., None]


class ResBlock(nn.Module):
    """Two dilated convolutions with GroupNorm and GELU, plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, dilation: int, cfg: UNetConfig, se: bool = False):
        super().__init__()
        pad = dilation * (cfg.kernel - 1) // 2
        g = min(cfg.groups, cout)
        self.body = nn.Sequential(
            nn.Conv1d(cin, cout, cfg.kernel, padding=pad, dilation=dilation),
            nn.GroupNorm(g, cout),
            nn.GELU(),
            nn.Conv1d(cout, cout, cfg.kernel, padding=pad, dilation=dilation),
            nn.GroupNorm(g, cout),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv1d(cin, cout, 1)
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.body(x)) + self.skip(x))


class UNet1D(nn.Module):
    """Maps spectra [B, L] (L divisible by 16) to denoised spectra [B, L]."""

    def __init__(self, cfg: UNetConfig = UNetConfig()):
        super().__init__()
        self.cfg = cfg
        # top of the input SNR range it was trained on (its card's); denoise() blends beyond it
        self.snr_top: float | None = None
        w = cfg.widths
        dil = (1, 2, 4, 8)
        self.stem = nn.Conv1d(1, w[0], cfg.kernel, padding=cfg.kernel // 2)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = w[0]
        for i in range(4):
            self.enc.append(ResBlock(cin, w[i], dil[i], cfg, se=cfg.se and i == 0))
            self.down.append(nn.Conv1d(w[i], w[min(i + 1, 3)], 4, stride=2, padding=1))
            cin = w[min(i + 1, 3)]
        self.mid = ResBlock(w[3], w[3], 8, cfg, se=cfg.se)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(4)):
            self.up.append(nn.ConvTranspose1d(w[min(i + 1, 3)], w[i], 2, stride=2))
            self.dec.append(ResBlock(2 * w[i], w[i], dil[i], cfg))
        self.head = nn.Conv1d(w[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity: output = input
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 16:
            raise ValueError(
                f"spectrum length {x.shape[-1]} must be divisible by 16 (4 levels of stride 2)"
            )
        if self.cfg.noise_norm:
            # a spectrum without noise (sigma 0) falls back to its max |x| as the unit
            sigma = noise_std(x).detach()
            sigma = torch.where(sigma > 0, sigma, x.abs().amax(-1, keepdim=True).clamp_min(1e-30))
            return x + sigma * self.correction(x / sigma)
        return x + self.correction(x)

    def correction(self, z: torch.Tensor) -> torch.Tensor:
        """What the network adds to its (normalized) input z [B, L]; bounded if configured."""
        h = self.stem(z[:, None, :])
        skips = []
        for enc, down in zip(self.enc, self.down):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.mid(h)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            h = dec(torch.cat([up(h), s], 1))
        g = self.head(h)[:, 0]
        c = self.cfg.max_correction
        return c * torch.tanh(g / c) if c > 0 else g


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def input_weight(snr: np.ndarray, top: float | None, at: float = BLEND_AT) -> np.ndarray:
    """Weight of the network's output against the input per spectrum: 1 up to the training top,
    1/2 near `at` times it, falling as (at * top / snr)^2 beyond (all ones when top is None)."""
    snr = np.asarray(snr, dtype=np.float64)
    if top is None:
        return np.ones_like(snr)
    beyond = np.maximum(snr**2 - top**2, 0.0)
    return 1.0 / (1.0 + beyond / (at * top) ** 2)


@torch.no_grad()
def denoise(
    model: nn.Module,
    spectra: np.ndarray,
    batch: int = 8,
    device: str | torch.device = "cpu",
    blend: bool = True,  # beyond the model's training SNR, blend toward the input (input_weight)
) -> np.ndarray:
    """Denoise spectra [N, L] (or [L]) of any scale: each is divided by its max |x| and restored,
    then blended toward the input beyond the model's training SNR (`input_weight`)."""
    x = np.asarray(spectra, dtype=np.float32)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    if not np.isfinite(x).all():
        raise ValueError("spectra contain NaN or infinite values; clean them before denoising")
    scale = np.abs(x).max(1, keepdims=True)
    scale[scale == 0] = 1.0
    L = x.shape[-1]
    pad = (
        -L % 16
    )  # the four stride-2 levels need a multiple of 16: mirror the end, crop it off again
    if pad:
        if L <= pad:
            raise ValueError(
                f"a spectrum of {L} points is too short to denoise; give at least 32 points"
            )
        x = np.pad(x, ((0, 0), (0, pad)), mode="reflect")
    model.eval()
    out = []
    for lo in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch] / scale[lo : lo + batch])).to(
            device
        )
        out.append(model(xb).float().cpu().numpy())
    y = np.concatenate(out)[:, :L] * scale
    top = getattr(model, "snr_top", None)
    if blend and top is not None:
        x = x[:, :L]
        w = input_weight([spectrum_snr(v) for v in x], top).astype(np.float32)[:, None]
        y = np.where(w < 1, x + w * (y - x), y)
    return y[0] if single else y
