"""Gaussian blur with one standard deviation per image, differentiable with respect to it.

The kernel is ``exp(-k^2 / (2 sigma^2))`` over ``k = -r..r`` (radius ``r = 2``: a 5-tap kernel as
``kornia.filters.gaussian_blur2d(x, (5, 5), sigma)``), normalised to sum 1, applied along rows then columns with the
border mirrored about the edge pixels (``reflect``, kornia's default). For sigma at or below 0.01 every weight but
the centre's underflows to exactly 0, so the blur returns the input bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Smallest sigma used in the kernel (a sigma of 0 means no blur; below this every off-centre weight is 0 anyway).
_MIN_SIGMA = 1e-3


def gaussian_weights(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1-D Gaussian weights, one kernel per image. Shape: sigma ``(N,)`` → ``(N, 2 radius + 1)``."""
    k = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    s = sigma.clamp(min=_MIN_SIGMA).unsqueeze(1)
    w = torch.exp(-(k**2) / (2 * s**2))
    return w / w.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int = 2) -> Tensor:
    """Blur each image with its own Gaussian of standard deviation ``sigma`` pixels.

    Shape:
        - x: ``(N, C, H, W)``; sigma: ``(N,)``
        - output: ``(N, C, H, W)``
    """
    n, _, h, w = x.shape
    out = x
    for dim, side in ((3, w), (2, h)):
        r = min(radius, side - 1)  # reflect padding needs the pad smaller than the side
        if r == 0:
            continue
        weights = gaussian_weights(sigma.to(x.dtype), r)
        padded = F.pad(out, (r, r, 0, 0) if dim == 3 else (0, 0, r, r), mode="reflect")
        acc = out.new_zeros(out.shape)
        for k in range(2 * r + 1):
            acc = acc + weights[:, k].view(n, 1, 1, 1) * padded.narrow(dim, k, out.shape[dim])
        out = acc
    return out
