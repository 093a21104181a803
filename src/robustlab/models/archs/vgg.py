"""VGG for CIFAR (3×3 convolutions with batch norm, max-pooling between stages).

References:
    Simonyan, Zisserman. "Very Deep Convolutional Networks for Large-Scale Image Recognition." ICLR 2015.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES

# Channels per conv layer, "M" = 2×2 max-pool. The classic configurations, for 32×32 inputs.
_CONFIGS: dict[int, list[int | str]] = {
    8: [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"],
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG-{8,11,13,16} with channel widths multiplied by ``width``.

    Shape:
        input: (B, C, 32, 32) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, depth: int = 11, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in _CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(_CONFIGS)}, got {depth}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in _CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = max(8, round(int(v) * width))
                layers += [
                    nn.Conv2d(c, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)  # (B, c, 1, 1) for 32×32 inputs
        result: torch.Tensor = self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))
        return result


ARCHITECTURES.register("vgg", VGG)
