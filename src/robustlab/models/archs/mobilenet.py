"""MobileNetV2 for CIFAR (inverted residuals, linear bottlenecks; stride 1 in the stem for 32×32 inputs).

References:
    Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals and Linear Bottlenecks." CVPR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES

# (expansion, channels, repeats, stride) for 32×32 inputs: the ImageNet table with the early strides removed.
_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.use_skip = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        result: torch.Tensor = x + out if self.use_skip else out
        return result


class MobileNetV2Cifar(nn.Module):
    """MobileNetV2 with width multiplier ``width``, the first ``stages`` stages of the table, and a stem of stride
    ``stem_stride`` (2 trades some accuracy for 4× fewer operations on 32×32 inputs).

    Shape:
        input: (B, C, H, W) normalised; output: (B, num_classes) logits.
    """

    def __init__(
        self,
        width: float = 1.0,
        stages: int = 7,
        stem_stride: int = 1,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 1 <= stages <= len(_STAGES):
            raise ValueError(f"MobileNetV2 stages must be in 1..{len(_STAGES)}, got {stages}")

        def w(c: int) -> int:
            return max(8, round(c * width / 8) * 8)

        c = w(32)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU6(True),
        ]
        for t, ch, n, s in _STAGES[:stages]:
            for i in range(n):
                layers.append(_InvertedResidual(c, w(ch), t, s if i == 0 else 1))
                c = w(ch)
        last = max(c, w(1280) // 2)
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)  # (B, last, H', W')
        result: torch.Tensor = self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return result


ARCHITECTURES.register("mobilenetv2_cifar", MobileNetV2Cifar)


class _DepthwiseSeparable(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


# (output channels, stride) of the depthwise-separable layers, for 32×32 inputs (the ImageNet table from 64
# channels on, with the last stride-2 stage shortened to two 512-channel layers).
_V1_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1)]


class MobileNetV1Cifar(nn.Module):
    """MobileNet (v1): a stem convolution, then depthwise-separable layers; ``width`` scales channels.

    References:
        Howard et al. "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications." 2017.

    Shape:
        input: (B, C, H, W) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(8, round(c * width / 8) * 8)

        c = w(32)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for ch, s in _V1_LAYERS:
            layers.append(_DepthwiseSeparable(c, w(ch), s))
            c = w(ch)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)  # (B, c, H/8, W/8)
        result: torch.Tensor = self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return result


ARCHITECTURES.register("mobilenetv1_cifar", MobileNetV1Cifar)
