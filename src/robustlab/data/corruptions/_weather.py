"""Weather corruptions: snow, frost, fog and spatter."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlab.data.corruptions import _ops, _spatter
from robustlab.data.corruptions._base import register
from robustlab.data.corruptions._frost import NUM_TEXTURES, frost_textures


@register(
    "snow",
    family="weather",
    stochastic=True,
    cifar=(
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    imagenet=(
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
)
def snow(x: Tensor, p: tuple[float, ...], g: torch.Generator, cset: str) -> Tensor:
    """Falling snow over a greyed, brightened image.

    ``p = (mean, std, zoom, threshold, blur radius, blur sigma, blend)``: a Gaussian noise layer is zoomed
    into, thresholded, motion-blurred at a random angle in [-135°, -45°), rounded to 8 bits and added to the
    image twice (once turned by 180°); the image is first blended towards ``max(x, 1.5 * grey + 0.5)``.
    """
    mean, std, zoom, threshold, radius, sigma, blend = p
    n, _, h, w = x.shape
    layer = mean + std * _ops.randn(g, (n, 1, h, w), x)
    layer = _ops.clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = _ops.uniform(g, -135.0, -45.0, (n,), torch.empty(0, dtype=torch.float64))
    layer = _ops.motion_blur(layer, int(radius), sigma, angles)
    layer = torch.round(layer * 255) / 255
    grey = _ops.rgb_to_gray(x)
    x = blend * x + (1 - blend) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(2, 3))


@register(
    "frost",
    family="weather",
    stochastic=True,
    cifar=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    imagenet=((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
)
def frost(x: Tensor, p: tuple[float, float], g: torch.Generator, cset: str) -> Tensor:
    """``p[0] * x + p[1] * frost``, with a random crop of one of five procedural frost textures per image.

    Deviation: the reference's frost photographs are replaced by generated textures (see
    :mod:`robustlab.data.corruptions._frost`).
    """
    keep, amount = p
    n, c, h, w = x.shape
    scale = 1.0 if cset == "cifar" else 5.0
    size = max(256, 64 * math.ceil(1.25 * max(h, w) / 64))
    textures = frost_textures(size, scale).to(x.device, x.dtype)  # (5, 3, S, S)
    which = _ops.randint(g, 0, NUM_TEXTURES, (n,), x.device)
    top = _ops.randint(g, 0, size - h, (n,), x.device)
    left = _ops.randint(g, 0, size - w, (n,), x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device)[None])[:, :, None]  # (N, H, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device)[None])[:, None, :]  # (N, 1, W)
    crop = textures[which[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (N, 3, H, W)
    if c == 1:
        crop = _ops.rgb_to_gray(crop)
    return keep * x + amount * crop


@register(
    "fog",
    family="weather",
    stochastic=True,
    cifar=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    imagenet=((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
)
def fog(x: Tensor, p: tuple[float, float], g: torch.Generator, cset: str) -> Tensor:
    """Add ``p[0]`` times a diamond-square height map (roughness decay ``p[1]``), rescaled to keep the maximum."""
    amount, decay = p
    n, _, h, w = x.shape
    mapsize = _ops.next_power_of_2(max(h, w))
    haze = _ops.plasma_fractal(g, n, mapsize, decay, x)[:, None, :h, :w]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + amount * haze) * peak / (peak + amount)


@register(
    "spatter",
    family="weather",
    stochastic=True,
    cifar=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    imagenet=(
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
)
def spatter(x: Tensor, p: tuple[float, ...], g: torch.Generator, cset: str) -> Tensor:
    """Water droplets (``p[5] == 0``) or mud (``p[5] == 1``) from a blurred, thresholded noise layer.

    ``p = (mean, std, sigma, threshold, intensity, mud)``. Water: the liquid layer's Canny edges, a chamfer
    distance to them (capped at 20), box blur, histogram equalisation, an emboss filter and a box blur give a
    shading that, times the liquid and normalised to ``intensity``, adds pale turquoise. Mud: the thresholded
    layer is blurred with ``sigma = intensity``, kept where >= 0.8, and paints the image mud brown.
    """
    mean, std, sigma, threshold, intensity, mud = p
    n, c, h, w = x.shape
    liquid = _ops.gaussian_blur(mean + std * _ops.randn(g, (n, 1, h, w), x), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud == 0:
        liquid8 = torch.floor(liquid * 255).clamp(0, 255)  # .astype(np.uint8)
        edges = _spatter.canny(liquid8, 50.0, 150.0)
        dist = _spatter.chamfer_distance(edges, cap=20.0).to(x.dtype)
        dist = torch.floor(_spatter.box3(dist))  # float blur, then .astype(np.uint8)
        dist = _spatter.equalize_hist(dist)
        emboss = torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = _spatter.filter2d_u8(dist, emboss)
        dist = torch.round(_spatter.box3(dist))  # 8-bit blur
        m = liquid8 * dist
        peak = m.amax(dim=(2, 3), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp(min=1e-12), torch.zeros_like(m)) * intensity
        colour = torch.tensor([175 / 255, 238 / 255, 238 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        if c == 1:
            return x + _ops.rgb_to_gray((m * colour).clamp(0, 1))
        return x + m * colour
    m = (liquid > threshold).to(x.dtype)
    m = _ops.gaussian_blur(m, intensity)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    colour = torch.tensor([63 / 255, 42 / 255, 20 / 255], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    paint = _ops.rgb_to_gray(colour * m) if c == 1 else colour * m
    return x * (1 - m) + paint
