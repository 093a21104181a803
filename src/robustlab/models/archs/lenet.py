"""LeNet-5-style CNN and a multilayer perceptron for MNIST-like data.

References:
    LeCun, Bottou, Bengio, Haffner. "Gradient-Based Learning Applied to Document Recognition." Proc. IEEE 1998.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from robustlab.models.archs._layers import ToGrid
from robustlab.models.archs._registry import ARCHITECTURES


class LeNet(nn.Module):
    """LeNet-5 style: two 5×5 conv + max-pool stages, FC 120 → 84.

    Shape:
        input: (B, C, 28, 28) or (B, C, 32, 32) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c1, c2 = max(4, round(6 * width)), max(8, round(16 * width))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            ToGrid(5),  # passes 28×28 inputs' 5×5 maps through; pools 32×32 inputs' 6×6 ones
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 25, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.classifier(self.features(x))
        return result


class MLP(nn.Module):
    """Fully connected network on flattened pixels.

    Shape:
        input: (B, C, H, W) normalised; output: (B, num_classes) logits.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__()
        dims = [in_channels * image_size * image_size, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.net(x)
        return result


ARCHITECTURES.register("lenet", LeNet)
ARCHITECTURES.register("mlp", MLP)
