"""Layers shared by several architectures."""

from __future__ import annotations

import torch
from torch import nn


class ToGrid(nn.AdaptiveAvgPool2d):
    """Average-pool to a fixed ``size × size`` grid, and pass an input already on that grid through untouched.

    ``nn.AdaptiveAvgPool2d`` onto the input's own size returns the input's values (each output averages one
    element) but still runs the pooling kernel forward and backward: in the small MNIST networks, whose classifier
    is sized for 28×28 images, that identity cost as much as a convolution. This layer skips it; the outputs are
    the same to the bit either way, and it has no parameters (checkpoints are unchanged). Under ``torch.jit.trace``
    it always pools, so that a traced model still takes every input size (and tracing raises no warning).

    Shape:
        input: (B, C, H, W); output: (B, C, size, size)
    """

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        tracing = torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
        if not tracing and input.shape[-2] == self.size and input.shape[-1] == self.size:
            return input
        return super().forward(input)
