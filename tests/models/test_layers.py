"""Shared architecture layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.models.archs._layers import ToGrid


@pytest.mark.parametrize("side", [5, 7])
def test_to_grid_equals_adaptive_pooling_to_the_bit_forward_and_backward(side: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in ((3, 4, side, side), (3, 4, side + 1, side + 3), (3, 4, 2 * side, 2 * side)):
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ref, out = nn.AdaptiveAvgPool2d(side)(a), ToGrid(side)(b)
        assert out.shape == (3, 4, side, side)
        assert torch.equal(out, ref)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        (ref * w).sum().backward()
        (out * w).sum().backward()
        assert a.grad is not None and b.grad is not None and torch.equal(a.grad, b.grad)


def test_to_grid_passes_an_input_already_on_its_grid_through_without_pooling() -> None:
    x = torch.randn(2, 3, 7, 7)
    assert ToGrid(7)(x) is x
    assert ToGrid(5)(x) is not x


def test_a_traced_network_with_to_grid_keeps_pooling_other_sizes_without_a_tracer_warning() -> None:
    import warnings

    from robustlab.models.archs import ARCHITECTURES

    net = ARCHITECTURES.get("fast_mnist")().eval()
    x28, x32 = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates tracing itself
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, x28)
    with torch.no_grad():
        assert torch.equal(traced(x28), net(x28))
        assert torch.allclose(traced(x32), net(x32))  # 8×8 maps pooled onto the 7×7 grid, as eagerly
