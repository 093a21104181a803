"""Procedural frost textures: the stand-in for the photographs of frost that the reference blends in.

ImageNet-C ships six photographs of frost on glass (``frost1.png`` … ``frost6.jpg``) and blends a random crop
of one of the first five into each image. robustlab ships no image files and downloads nothing, so it draws
five textures instead, deterministically (fixed seeds, CPU, float64), the first time a size is needed:

- ice crystals: dendrites (a main arm with side branches at ±60°, the hexagonal habit of ice) of random
  position, direction, length and brightness, splatted and slightly blurred, summed to saturation;
- a hazy background: a diamond-square height map, as fog uses;
- a cold tint (blue above green above red).

The textures have the photographs' role (bright, high-frequency, partly transparent structure) and
roughly their statistics (mean about 0.6, standard deviation about 0.18 over the five textures); they are
not the same images, so frost errors are not directly comparable with published CIFAR-10-C / ImageNet-C frost numbers.

Scale: the CIFAR-10-C generator shrinks the photographs to a fifth before cropping 32×32, the ImageNet-C one
crops them at full size; ``scale`` (1 for CIFAR constants, 5 for ImageNet) sets the crystal size in pixels
accordingly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from robustlab.data.corruptions import _ops

#: Number of textures the reference draws from (``np.random.randint(5)`` over six files).
NUM_TEXTURES = 5

_SEED = 20190401  # fixed: the textures are assets, not randomness of a run


def _dendrites(g: torch.Generator, size: int, scale: float) -> torch.Tensor:
    """Brightness of ice crystals on a ``size × size`` canvas (float64, unbounded, >= 0)."""
    count = int(1.3 * (size / (10.0 * scale)) ** 2) + 4
    cx = torch.rand(count, generator=g, dtype=torch.float64) * size
    cy = torch.rand(count, generator=g, dtype=torch.float64) * size
    theta = torch.rand(count, generator=g, dtype=torch.float64) * 2 * math.pi
    length = (0.4 + 0.6 * torch.rand(count, generator=g, dtype=torch.float64)) * 14.0 * scale
    bright = 0.35 + 0.65 * torch.rand(count, generator=g, dtype=torch.float64)
    # segments: the main arm, then 5 pairs of side branches at +-60 degrees, shorter further out
    starts_x, starts_y, angles, lengths, weights = [cx], [cy], [theta], [length], [bright]
    for j in range(1, 6):
        pos = length * j / 6
        bx = cx + pos * torch.cos(theta)
        by = cy + pos * torch.sin(theta)
        side_len = length * 0.42 * (1 - j / 7)
        for sign in (1.0, -1.0):
            starts_x.append(bx)
            starts_y.append(by)
            angles.append(theta + sign * math.pi / 3)
            lengths.append(side_len)
            weights.append(bright * 0.8)
    sx, sy = torch.cat(starts_x), torch.cat(starts_y)
    ang, seg_len, wt = torch.cat(angles), torch.cat(lengths), torch.cat(weights)
    steps = torch.arange(0, float(seg_len.max()) + 0.5, 0.5, dtype=torch.float64)  # 2 samples per pixel
    px = sx[:, None] + steps[None, :] * torch.cos(ang)[:, None]
    py = sy[:, None] + steps[None, :] * torch.sin(ang)[:, None]
    keep = steps[None, :] <= seg_len[:, None]
    ix = torch.floor(px).long().remainder(size)  # wrap around: the texture tiles seamlessly
    iy = torch.floor(py).long().remainder(size)
    val = (wt[:, None] * 0.5).expand_as(px)
    canvas = torch.zeros(size * size, dtype=torch.float64)
    canvas.index_add_(0, (iy * size + ix)[keep], val[keep])
    return canvas.view(size, size)


@lru_cache(maxsize=8)
def frost_textures(size: int, scale: float) -> torch.Tensor:
    """The five RGB frost textures for crops of up to ``size - 1`` pixels (cached; float32 on the CPU).

    Shape:
        Output: ``(5, 3, size, size)`` in [0, 1].
    """
    out = []
    tint = torch.tensor([0.86, 0.93, 1.0], dtype=torch.float64).view(3, 1, 1)
    for k in range(NUM_TEXTURES):
        g = torch.Generator().manual_seed(_SEED + k)
        crystals = _dendrites(g, size, scale)
        crystals = _ops.gaussian_blur(crystals[None, None], 0.5 * scale, mode="symmetric")[0, 0]
        crystals = crystals / torch.quantile(crystals.flatten()[::7], 0.99).clamp(min=1e-12)
        crystals = 1 - torch.exp(-2.0 * crystals)  # saturating sum of overlapping crystals
        mapsize = _ops.next_power_of_2(size)
        haze = _ops.plasma_fractal(g, 1, mapsize, 2.0, crystals)[0, :size, :size]
        grey = (0.33 + 0.35 * haze + 0.75 * crystals).clamp(0, 1)
        out.append((grey[None] * tint).clamp(0, 1))
    return torch.stack(out).float()
