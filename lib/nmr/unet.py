"""Residual 1D U-Net for real-valued spectra (seed section 4).

Four encoder levels (Conv1d k=9 with dilation 1/2/4/8, GroupNorm, GELU, residual),
stride-2 downsampling, a bottleneck, transposed-convolution upsampling with concatenated
skips, optional squeeze-excitation at the bottleneck and the shallowest level, and a
1x1 head whose output is added to the input (the network predicts a correction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class UNetConfig:
    """Widths and options; base 32 gives about 2M parameters (the seed's 1-3M)."""

    base: int = 32  # channels of level 1; levels use base * (1, 2, 4, 4)
    kernel: int = 9
    groups: int = 8
    se: bool = True

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Channels of the four levels."""
        return (self.base, 2 * self.base, 4 * self.base, 4 * self.base)


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
            nn.Conv1d(cin, cout, cfg.kernel, padding=pad, dilation=dilation), nn.GroupNorm(g, cout), nn.GELU(),
            nn.Conv1d(cout, cout, cfg.kernel, padding=pad, dilation=dilation), nn.GroupNorm(g, cout))
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
            raise ValueError(f"spectrum length {x.shape[-1]} must be divisible by 16 (4 levels of stride 2)")
        h = self.stem(x[:, None, :])
        skips = []
        for enc, down in zip(self.enc, self.down):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.mid(h)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            h = dec(torch.cat([up(h), s], 1))
        return x + self.head(h)[:, 0]


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def denoise(model: nn.Module, spectra: np.ndarray, batch: int = 8, device: str | torch.device = "cpu") -> np.ndarray:
    """Denoise spectra [N, L] (or [L]) of any scale: each is divided by its max |x| and restored."""
    x = np.asarray(spectra, dtype=np.float32)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    if not np.isfinite(x).all():
        raise ValueError("spectra contain NaN or infinite values; clean them before denoising")
    scale = np.abs(x).max(1, keepdims=True)
    scale[scale == 0] = 1.0
    model.eval()
    out = []
    for lo in range(0, len(x), batch):
        xb = torch.from_numpy(x[lo:lo + batch] / scale[lo:lo + batch]).to(device)
        out.append(model(xb).float().cpu().numpy())
    y = np.concatenate(out) * scale
    return y[0] if single else y
