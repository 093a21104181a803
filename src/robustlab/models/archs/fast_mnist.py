"""The small MNIST CNN of Wong et al.'s fast adversarial training (``mnist_net`` in locuslab/fast_adversarial).

References:
    Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.archs._layers import ToGrid
from robustlab.models.archs._registry import ARCHITECTURES


class FastMNIST(nn.Module):
    """Two 4×4 stride-2 convolutions (16, 32 channels) and a hidden layer of 100 units: 166,406 parameters.

    Args:
        num_classes: Width of the logits.
        in_channels: Image channels.
        image_size: Side of the square input the classifier is sized for (28 for MNIST: 32·7² features); other
            sizes are average-pooled to that grid.
        width: Multiplier of the channel counts and of the hidden layer.

    Shape:
        input: (B, C, 28, 28) normalised; output: (B, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, hidden = max(1, round(16 * width)), max(1, round(32 * width)), max(1, round(100 * width))
        side = (image_size + 2 - 4) // 2 + 1  # after the first stride-2 conv (padding 1)
        side = (side + 2 - 4) // 2 + 1
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            ToGrid(side),  # passes image_size through; pools other sizes onto the classifier's grid
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.classifier(self.features(x))  # (B, num_classes)
        return result


ARCHITECTURES.register("fast_mnist", FastMNIST)
