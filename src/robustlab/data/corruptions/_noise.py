"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper) and speckle noise."""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.data.corruptions import _ops
from robustlab.data.corruptions._base import register


@register(
    "gaussian_noise",
    family="noise",
    stochastic=True,
    cifar=(0.04, 0.06, 0.08, 0.09, 0.10),
    imagenet=(0.08, 0.12, 0.18, 0.26, 0.38),
)
def gaussian_noise(x: Tensor, std: float, g: torch.Generator, cset: str) -> Tensor:
    """Add N(0, std²) to every pixel and channel."""
    return x + std * _ops.randn(g, tuple(x.shape), x)


@register(
    "shot_noise",
    family="noise",
    stochastic=True,
    cifar=(500, 250, 100, 75, 50),
    imagenet=(60, 25, 12, 5, 3),
)
def shot_noise(x: Tensor, photons: float, g: torch.Generator, cset: str) -> Tensor:
    """Poisson photon noise: ``Poisson(x * photons) / photons``."""
    return _ops.poisson(g, x * photons) / photons


@register(
    "impulse_noise",
    family="noise",
    stochastic=True,
    cifar=(0.01, 0.02, 0.03, 0.05, 0.07),
    imagenet=(0.03, 0.06, 0.09, 0.17, 0.27),
)
def impulse_noise(x: Tensor, amount: float, g: torch.Generator, cset: str) -> Tensor:
    """Salt and pepper: each value is replaced with probability ``amount``, by 0 or 1 with equal odds.

    As ``skimage.util.random_noise(mode="s&p")``: values (not pixels) are flipped, independently per channel.
    """
    flipped = _ops.rand(g, tuple(x.shape), x) <= amount
    salted = _ops.rand(g, tuple(x.shape), x) <= 0.5
    out = x.clone()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


@register(
    "speckle_noise",
    family="noise",
    stochastic=True,
    cifar=(0.06, 0.1, 0.12, 0.16, 0.2),
    imagenet=(0.15, 0.2, 0.35, 0.45, 0.6),
)
def speckle_noise(x: Tensor, std: float, g: torch.Generator, cset: str) -> Tensor:
    """Multiplicative noise: ``x + x * N(0, std²)``."""
    return x + x * (std * _ops.randn(g, tuple(x.shape), x))
