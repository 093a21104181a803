"""Wide residual networks for CIFAR (pre-activation blocks, projection shortcuts).

References:
    Zagoruyko, Komodakis. "Wide Residual Networks." BMVC 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(F.relu(self.bn2(out)))
        result: torch.Tensor = out + skip
        return result


class WideResNet(nn.Module):
    """WRN-depth-k: three stages of (depth-4)/6 blocks with widths 16k, 32k, 64k.

    Shape:
        input: (B, C, H, W) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, depth: int = 10, widen: int = 2, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        in_planes = widths[0]
        for i, p in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(_WideBlock(in_planes, p, 2 if (i > 0 and j == 0) else 1))
                in_planes = p
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))  # (B, 64k, H/4, W/4)
        result: torch.Tensor = self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return result


ARCHITECTURES.register("wideresnet", WideResNet)
