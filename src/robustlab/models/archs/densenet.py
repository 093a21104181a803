"""DenseNet-BC for CIFAR (bottleneck layers, compression 0.5).

References:
    Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks." CVPR 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))  # (B, growth, H, W)
        return torch.cat([x, out], 1)


class _Transition(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNetBC(nn.Module):
    """DenseNet-BC-depth with growth rate ``growth``: three dense blocks of (depth-4)/6 layers.

    Shape:
        input: (B, C, H, W) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, depth: int = 40, growth: int = 12, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 (10, 16, 22, 40, ...), got {depth}")
        n = (depth - 4) // 6
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        for stage in range(3):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth))
                c += growth
            if stage < 2:
                layers.append(_Transition(c, c // 2))
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)  # (B, c, H/4, W/4)
        result: torch.Tensor = self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return result


ARCHITECTURES.register("densenet_bc", DenseNetBC)
