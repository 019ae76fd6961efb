"""RIDE-style multi-expert backbones: one shared trunk, one branch per expert.

`cifar` family (ResNet-32, 32x32 or 28x28 inputs, any number of channels): the stem and the
first stage are shared, stages 2-3 are copied per expert; `reduced=True` gives the RIDE
widths 24/48 for stages 2-3 instead of 32/64. `bottleneck` family (ResNet-50, ResNeXt-50
32x4d, ResNet-152, for image-list data): stem and stages 1-2 shared, stages 3-4 per expert;
`reduced=True` uses 192/384 bottleneck planes instead of 256/512 (RIDE's reduction).
Every branch ends in global average pooling, so a branch maps an image batch to N x d.
Convolutions start kaiming-normal with `conv_fan` 'fan_out' (the workbook's default, and the
bottleneck ResNets of the published code) or 'fan_in' (LDAM-DRW's CIFAR ResNet-32, which RIDE
and SADE use); with BatchNorm after every convolution the start's scale sets how fast a layer
turns early on, and a 100-epoch Fashion-MNIST-LT run has only about 1,200 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CIFAR_ARCHS = {"resnet32": 5}  # basic blocks per stage
BOTTLENECK_ARCHS = {  # blocks per stage, groups, width per group
    "resnet50": ((3, 4, 6, 3), 1, 64),
    "resnext50_32x4d": ((3, 4, 6, 3), 32, 4),
    "resnet152": ((3, 8, 36, 3), 1, 64),
}
ARCHS = tuple(CIFAR_ARCHS) + tuple(BOTTLENECK_ARCHS)
CONV_FANS = ("fan_out", "fan_in")  # kaiming-normal convolution starts (module docstring)


def check_arch(arch: str) -> str:
    """Return `arch` if known, else raise naming the known backbones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {', '.join(ARCHS)}")
    return arch


class BasicBlock(nn.Module):
    """CIFAR ResNet block; the shortcut subsamples and zero-pads channels (option A, no weights)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, or stride-2 subsampling with zero channels added on both sides."""
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _basic_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of basic blocks; the first one changes width and resolution."""
    return nn.Sequential(
        *[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)]
    )


class Bottleneck(nn.Module):
    """torchvision-style bottleneck block (expansion 4), grouped for ResNeXt."""

    def __init__(
        self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64
    ):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


def _bottleneck_stage(
    cin: int, planes: int, blocks: int, stride: int, groups: int, width: int
) -> nn.Sequential:
    """A stage of bottleneck blocks; the first one changes width and resolution."""
    layers = [Bottleneck(cin, planes, stride, groups, width)]
    layers += [Bottleneck(planes * 4, planes, 1, groups, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


@dataclass
class Backbone:
    """A shared trunk, the per-expert branches and the feature width d of each branch."""

    trunk: nn.Module
    branches: nn.ModuleList
    feat_dim: int


def init_weights(module: nn.Module, conv_fan: str = "fan_out") -> None:
    """Kaiming-normal convolutions (std sqrt(2 / fan), fan of `conv_fan`), unit BatchNorm."""
    if conv_fan not in CONV_FANS:
        raise ValueError(f"unknown conv_fan {conv_fan!r}; choose one of {', '.join(CONV_FANS)}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_fan, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_backbone(
    arch: str,
    num_experts: int,
    in_channels: int = 3,
    reduced: bool = True,
    conv_fan: str = "fan_out",
) -> Backbone:
    """Shared trunk + `num_experts` branches for a named architecture."""
    check_arch(arch)
    if num_experts < 1:
        raise ValueError(f"num_experts must be >= 1, got {num_experts}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if conv_fan not in CONV_FANS:
        raise ValueError(f"unknown conv_fan {conv_fan!r}; choose one of {', '.join(CONV_FANS)}")
    if arch in CIFAR_ARCHS:
        n = CIFAR_ARCHS[arch]
        w2, w3 = (24, 48) if reduced else (32, 64)
        trunk = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            _basic_stage(16, 16, n, 1),
        )
        branches = nn.ModuleList(
            nn.Sequential(
                _basic_stage(16, w2, n, 2),
                _basic_stage(w2, w3, n, 2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            for _ in range(num_experts)
        )
        feat = w3
    else:
        blocks, groups, width = BOTTLENECK_ARCHS[arch]
        p3, p4 = (192, 384) if reduced else (256, 512)
        trunk = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            _bottleneck_stage(64, 64, blocks[0], 1, groups, width),
            _bottleneck_stage(256, 128, blocks[1], 2, groups, width),
        )
        branches = nn.ModuleList(
            nn.Sequential(
                _bottleneck_stage(512, p3, blocks[2], 2, groups, width),
                _bottleneck_stage(p3 * 4, p4, blocks[3], 2, groups, width),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            for _ in range(num_experts)
        )
        feat = p4 * 4
    init_weights(trunk, conv_fan)
    init_weights(branches, conv_fan)
    return Backbone(trunk, branches, feat)
