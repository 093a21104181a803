"""AlexNet-style network for CIFAR: large-kernel convolutions, max-pooling and a fully connected head.

The 32×32 variant follows the small AlexNet of Zhang et al. (two 5×5 conv stages, then three 3×3
convs, FC 384 → 192), with batch norm after each convolution so that it trains in few epochs
(the only deviation from the original, which used local response normalisation).

References:
    Krizhevsky, Sutskever, Hinton. "ImageNet Classification with Deep Convolutional Neural Networks." NeurIPS 2012.
    Zhang et al. "Understanding deep learning requires rethinking generalization." ICLR 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.archs._registry import ARCHITECTURES


def _conv(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class AlexNetCifar(nn.Module):
    """AlexNet-style CNN; ``width`` scales every layer.

    Shape:
        input: (B, C, 32, 32) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        c1, c2, c3 = (max(8, round(c * width)) for c in (64, 128, 192))
        self.features = nn.Sequential(
            *_conv(in_channels, c1, 5),
            nn.MaxPool2d(3, 2, 1),  # 16×16
            *_conv(c1, c2, 5),
            nn.MaxPool2d(3, 2, 1),  # 8×8
            *_conv(c2, c3, 3),
            *_conv(c3, c3, 3),
            *_conv(c3, c2, 3),
            nn.MaxPool2d(3, 2, 1),  # 4×4
        )
        f1, f2 = max(16, round(384 * width)), max(16, round(192 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(c2 * 16, f1),
            nn.ReLU(inplace=True),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.classifier(self.features(x))  # (B, num_classes)
        return result


ARCHITECTURES.register("alexnet_cifar", AlexNetCifar)
