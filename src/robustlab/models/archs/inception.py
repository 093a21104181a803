"""Small Inception network for CIFAR (Zhang et al. 2017), widths scaled by ``width``.

Built from conv modules (conv → BN → ReLU), Inception modules (a 1×1 and a 3×3 branch,
concatenated) and downsample modules (a stride-2 3×3 conv and a max-pool, concatenated).

References:
    Szegedy et al. "Going Deeper with Convolutions." CVPR 2015.
    Zhang et al. "Understanding deep learning requires rethinking generalization." ICLR 2017 (Fig. 3).
"""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES


class _ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, padding=k // 2 if stride == 1 else 0, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class _Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3: int) -> None:
        super().__init__()
        self.b1 = _ConvBN(c_in, c1, 1)
        self.b3 = _ConvBN(c_in, c3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x)], 1)  # (B, c1 + c3, H, W)


class _Downsample(nn.Module):
    def __init__(self, c_in: int, c3: int) -> None:
        super().__init__()
        self.conv = _ConvBN(c_in, c3, 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], 1)  # (B, c3 + c_in, H', W')


class InceptionCifar(nn.Module):
    """Small Inception; ``blocks`` sets how many Inception modules the middle stage has (4 in the paper).

    Shape:
        input: (B, C, 32, 32) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, width: float = 1.0, blocks: int = 4, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(4, round(c * width))

        layers: list[nn.Module] = [_ConvBN(in_channels, w(96), 3)]
        c = w(96)
        for c1, c3 in [(32, 32), (32, 48)]:
            layers.append(_Inception(c, w(c1), w(c3)))
            c = w(c1) + w(c3)
        layers.append(_Downsample(c, w(80)))
        c += w(80)
        middle = [(112, 48), (96, 64), (80, 80), (48, 96)]
        for c1, c3 in (middle * 2)[:blocks]:
            layers.append(_Inception(c, w(c1), w(c3)))
            c = w(c1) + w(c3)
        layers.append(_Downsample(c, w(96)))
        c += w(96)
        for c1, c3 in [(176, 160), (176, 160)]:
            layers.append(_Inception(c, w(c1), w(c3)))
            c = w(c1) + w(c3)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)  # (B, c, 7, 7) for 32×32 input
        result: torch.Tensor = self.fc(nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))
        return result


ARCHITECTURES.register("inception_cifar", InceptionCifar)
