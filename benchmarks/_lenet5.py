"""advertorch's MNIST LeNet5 (PGD-trained, ``../shared/data/pretrained-advertorch-lenet5-mnist``) as a robustlab
model factory: ``robustlab attack -m benchmarks/_lenet5.py:lenet5 -d mnist``.

The architecture is written from the checkpoint's SOURCE.md (no advertorch code): conv3×3 1→32 (padding 1), ReLU,
max-pool 2, conv3×3 32→64 (padding 1), ReLU, max-pool 2, flatten, linear 3136→200, ReLU, linear 200→10; inputs
are MNIST in [0, 1] without normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from robustlab.models import ModelAdapter

CHECKPOINT = Path("pretrained-advertorch-lenet5-mnist") / "mnist_lenet5_advtrained.pt"


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(7 * 7 * 64, 200)
        self.linear2 = nn.Linear(200, 10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))  # (N, 32, 14, 14)
        x = self.pool(torch.relu(self.conv2(x)))  # (N, 64, 7, 7)
        return self.linear2(torch.relu(self.linear1(x.flatten(1))))  # (N, 10)


def lenet5() -> ModelAdapter:
    """The PGD-trained LeNet5, its weights read from ``$ROBUSTLAB_DATA`` (else ``../shared/data``)."""
    data = Path(os.environ.get("ROBUSTLAB_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    net = LeNet5()
    net.load_state_dict(torch.load(data / CHECKPOINT, map_location="cpu", weights_only=True))
    return ModelAdapter(net, num_classes=10, input_shape=(1, 28, 28), name="advertorch-lenet5-advtrained")
