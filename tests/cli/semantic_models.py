"""A tiny model of one-channel 28x28 images (MNIST's shape) for ``robustlab semantic``'s tests, loaded by path
(``--model tests/cli/semantic_models.py:make_grey``): no relative imports."""

from __future__ import annotations

import torch
from torch import nn

from robustlab import ModelAdapter


def make_grey() -> ModelAdapter:
    """A fixed random linear classifier of 1x28x28 images into 10 classes (instant to build)."""
    linear = nn.Linear(28 * 28, 10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(10, 28 * 28, generator=g) * 0.05)
        linear.bias.zero_()
    return ModelAdapter(
        nn.Sequential(nn.Flatten(), linear), num_classes=10, input_shape=(1, 28, 28), name="grey-linear"
    )
