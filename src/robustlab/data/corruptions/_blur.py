"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustlab.data.corruptions import _ops
from robustlab.data.corruptions._base import register


@register(
    "defocus_blur",
    family="blur",
    stochastic=False,
    cifar=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    imagenet=((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
)
def defocus_blur(x: Tensor, p: tuple[float, float], g: torch.Generator, cset: str) -> Tensor:
    """Correlate with an anti-aliased disk of radius ``p[0]`` (alias blur ``p[1]``), reflecting borders."""
    radius, alias_blur = p
    return _ops.filter2d(x, _ops.disk_kernel(radius, alias_blur), mode="reflect")


@register(
    "glass_blur",
    family="blur",
    stochastic=True,
    cifar=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    imagenet=((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
)
def glass_blur(x: Tensor, p: tuple[float, int, int], g: torch.Generator, cset: str) -> Tensor:
    """Blur, quantise to 8 bits, locally shuffle pixels, blur again.

    ``p = (sigma, max_delta, iterations)``. The shuffle visits pixels from the bottom-right corner to the
    top-left and, as the reference does with NumPy views, *copies* the pixel at a random offset in
    ``[-max_delta, max_delta)`` into the visited one (the reference's "swap" of two row views is a copy).
    The visits run in sequence (each may read a pixel an earlier one wrote), so they are applied to an index
    map, batched over the images, and the pixels are gathered once at the end.
    """
    sigma, delta, iterations = p
    n, c, h, w = x.shape
    blurred = _ops.gaussian_blur(x, sigma)
    quantised = torch.floor(blurred * 255) / 255  # np.uint8(... * 255) truncates
    src = torch.arange(h * w).repeat(n, 1)  # (N, H*W): which pixel each position now holds
    cols = list(range(w - delta, delta, -1))
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            shifts = _ops.randint(g, -delta, delta, (len(cols), n, 2), torch.device("cpu"))  # (dx, dy)
            for k, col in enumerate(cols):
                other = (row + shifts[k, :, 1]) * w + (col + shifts[k, :, 0])  # (N,)
                src[:, row * w + col] = src.gather(1, other[:, None]).squeeze(1)
    flat = quantised.reshape(n, c, h * w)
    idx = src.to(x.device)[:, None, :].expand(n, c, h * w)
    shuffled = flat.gather(2, idx).view(n, c, h, w)
    return _ops.gaussian_blur(shuffled, sigma)


@register(
    "motion_blur",
    family="blur",
    stochastic=True,
    cifar=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    imagenet=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
)
def motion_blur(x: Tensor, p: tuple[int, float], g: torch.Generator, cset: str) -> Tensor:
    """ImageMagick's motion blur (``radius, sigma = p``) at a uniform random angle in [-45°, 45°) per image.

    The reference calls ImageMagick through Wand; this is the same one-sided Gaussian line kernel in torch
    (as ``imagecorruptions`` re-implemented it in NumPy), with edge replication.
    """
    radius, sigma = p
    angles = _ops.uniform(g, -45.0, 45.0, (x.shape[0],), torch.empty(0, dtype=torch.float64))
    return _ops.motion_blur(x, radius, sigma, angles)


_ZOOMS_CIFAR = (
    np.arange(1, 1.06, 0.01),
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.01),
    np.arange(1, 1.26, 0.01),
)
_ZOOMS_IMAGENET = (
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
)


@register(
    "zoom_blur",
    family="blur",
    stochastic=False,
    cifar=tuple(tuple(float(z) for z in zs) for zs in _ZOOMS_CIFAR),
    imagenet=tuple(tuple(float(z) for z in zs) for zs in _ZOOMS_IMAGENET),
)
def zoom_blur(x: Tensor, zooms: tuple[float, ...], g: torch.Generator, cset: str) -> Tensor:
    """Average of the image and its central zooms by each factor in ``zooms``."""
    out = x.clone()
    for z in zooms:
        out += _ops.clipped_zoom(x, z)
    return out / (len(zooms) + 1)


@register(
    "gaussian_blur",
    family="blur",
    stochastic=False,
    cifar=(0.4, 0.6, 0.7, 0.8, 1.0),
    imagenet=(1, 2, 3, 4, 6),
)
def gaussian_blur(x: Tensor, sigma: float, g: torch.Generator, cset: str) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (scikit-image's defaults)."""
    return _ops.gaussian_blur(x, sigma)
