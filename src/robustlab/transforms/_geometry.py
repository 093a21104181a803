"""Geometric transforms with per-image parameters: rotation, translation and isotropic scale, composed into one
affine map about the image centre and applied with one bilinear resampling.

The sampler works in pixel coordinates (not ``F.grid_sample``'s normalised ones), so the identity map samples every
pixel exactly at its own centre and returns the input bit for bit; the gradient with respect to each parameter flows
through the interpolation weights. Borders: ``"zeros"`` (kornia's default, used by ART's composite attack) or
``"reflection"`` (mirror about the centres of the edge pixels; no black corners, for class-preserving changes).

Conventions (kornia's): a positive angle rotates the content counter-clockwise as displayed, in degrees; a
translation ``(dx, dy)`` moves the content right and down by that many pixels; a scale above 1 enlarges it. The
centre is ``((W - 1) / 2, (H - 1) / 2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PADDINGS = ("zeros", "reflection")


def _reflect(u: Tensor, last: int) -> Tensor:
    """Mirror coordinates into ``[0, last]`` about 0 and ``last`` (period ``2 last``)."""
    if last == 0:
        return torch.zeros_like(u)
    period = 2.0 * last
    u = torch.remainder(u.abs(), period)
    return torch.where(u > last, period - u, u)


def sample_bilinear(x: Tensor, qx: Tensor, qy: Tensor, padding: str = "zeros") -> Tensor:
    """Sample ``x`` at real pixel coordinates (column ``qx``, row ``qy``) with bilinear interpolation.

    Shape:
        - x: ``(N, C, H, W)``; qx, qy: ``(N, Ho, Wo)``
        - output: ``(N, C, Ho, Wo)``
    """
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")
    n, c, h, w = x.shape
    if padding == "reflection":
        qx, qy = _reflect(qx, w - 1), _reflect(qy, h - 1)
    x0, y0 = torch.floor(qx), torch.floor(qy)
    fx, fy = (qx - x0).unsqueeze(1), (qy - y0).unsqueeze(1)
    flat = x.reshape(n, c, h * w)
    out = x.new_zeros(n, c, *qx.shape[1:])
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            cx, cy = (x0 + dx).long(), (y0 + dy).long()
            inside = ((cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)).unsqueeze(1)
            idx = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).reshape(n, 1, -1).expand(n, c, -1)
            values = flat.gather(2, idx).reshape(out.shape)
            out = out + torch.where(inside, values, torch.zeros_like(values)) * (wy * wx)
    return out


def affine(
    x: Tensor,
    angle: Tensor | None = None,
    translate: Tensor | None = None,
    scale: Tensor | None = None,
    padding: str = "zeros",
) -> Tensor:
    """Rotate by ``angle`` degrees, scale by ``scale`` about the centre, then translate by ``(dx, dy)`` pixels.

    Each output pixel ``p`` samples the input at ``c + R(-angle) (p - c - t) / scale``; ``None`` leaves that part
    out.

    Shape:
        - x: ``(N, C, H, W)``; angle, scale: ``(N,)``; translate: ``(N, 2)``
        - output: ``(N, C, H, W)``
    """
    n, _, h, w = x.shape
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w).expand(n, h, w)
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1).expand(n, h, w)
    dx, dy = cols - cx, rows - cy
    if translate is not None:
        t = translate.to(x.dtype)
        dx, dy = dx - t[:, 0].view(n, 1, 1), dy - t[:, 1].view(n, 1, 1)
    if scale is not None:
        s = scale.to(x.dtype).view(n, 1, 1)
        dx, dy = dx / s, dy / s
    if angle is not None:
        rad = angle.to(x.dtype).view(n, 1, 1) * (math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        dx, dy = dx * cos - dy * sin, dx * sin + dy * cos
    return sample_bilinear(x, dx + cx, dy + cy, padding)


def rotate(x: Tensor, angle: Tensor, padding: str = "zeros") -> Tensor:
    """Rotate counter-clockwise by ``angle`` degrees about the centre (``kornia.geometry.transform.rotate``)."""
    return affine(x, angle=angle, padding=padding)


def translate(x: Tensor, shift: Tensor, padding: str = "zeros") -> Tensor:
    """Move the content by ``(dx, dy)`` pixels (``kornia.geometry.transform.translate``). Shape: shift ``(N, 2)``."""
    return affine(x, translate=shift, padding=padding)


def scale(x: Tensor, factor: Tensor, padding: str = "zeros") -> Tensor:
    """Scale the content by ``factor`` about the centre (``kornia.geometry.transform.scale``)."""
    return affine(x, scale=factor, padding=padding)
