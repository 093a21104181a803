"""Colour transforms with one parameter per image: hue, saturation, contrast (two kinds each where the field uses
two), brightness and gamma.

None of them clamps to [0, 1]: a chain of transforms is clamped once at its end
(:meth:`robustlab.threat.SemanticThreat.render` does), because a clamp inside every operation zeroes the gradient of
every pixel it clips. Each is written as ``x + change(parameter)`` where the change is exactly zero at the identity
value, so the identity returns the input bit for bit (a colour-space round trip alone is off by about 1e-7).

Two families, named distinctly because they answer different questions:

- **Invariant kinds** (for diagnosis and the known-answer oracles): :func:`hue` rotates the YIQ chroma (luma is
  unchanged), :func:`saturation` blends with the luma image, :func:`contrast` scales deviations from the mean luma
  (the mean is unchanged). Brightness, blend saturation and mean-preserving contrast cannot move the angle of the
  mean chroma, and hue, saturation and contrast cannot move the mean luma.
- **kornia's kinds** (those of ART's composite adversarial attack, for agreement with it): :func:`hue_hsv`
  (``kornia.enhance.adjust_hue``: add radians to the HSV hue), :func:`saturation_hsv` (``adjust_saturation``:
  scale HSV saturation, clamped to [0, 1]) and :func:`contrast_mult` (``adjust_contrast``: ``x * c``, which is a
  gain, not a contrast).

Shape (every function):
    - x: ``(N, 3, H, W)`` (``(N, C, H, W)`` for brightness, contrast_mult and gamma); parameter: ``(N,)``
    - output: like ``x``
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

#: RGB → YIQ (NTSC 1953). The I and Q rows sum to zero, so a grey pixel has no chroma and adding a constant to every
#: channel moves only Y.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)


@functools.lru_cache(maxsize=16)
def _matrices(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """RGB → YIQ and its inverse (computed in float64), on ``device`` in ``dtype``; built once per pair."""
    forward = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    inverse: Tensor = torch.linalg.inv(forward)
    return forward.to(device, dtype), inverse.to(device, dtype)


def _yiq_to_rgb(like: Tensor) -> Tensor:
    return _matrices(like.device, like.dtype)[1]


def _per_image(p: Tensor, x: Tensor) -> Tensor:
    """A per-image parameter ``(N,)`` shaped to broadcast over ``(N, C, H, W)``."""
    return p.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _mix(m: Tensor, x: Tensor) -> Tensor:
    """Apply a 3×3 colour matrix to every pixel: ``(3, 3) × (N, 3, H, W)``."""
    return torch.einsum("ij,njhw->nihw", m, x)


def luma(x: Tensor) -> Tensor:
    """ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` (the Y of YIQ; OpenCV ``COLOR_RGB2GRAY``); a one-channel
    image is its own luma. The one implementation: the corruptions use it too.

    Shape:
        - x: ``(N, C, H, W)``; output: ``(N, 1, H, W)``
    """
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def chroma(x: Tensor) -> Tensor:
    """The I and Q planes of YIQ. Shape: ``(N, 3, H, W)`` → ``(N, 2, H, W)``."""
    return _mix(_matrices(x.device, x.dtype)[0][1:], x)


def hue(x: Tensor, angle: Tensor) -> Tensor:
    """Rotate each pixel's YIQ chroma by ``angle`` radians; luma is unchanged (to float rounding)."""
    iq = chroma(x)
    c, s = _per_image(torch.cos(angle), iq), _per_image(torch.sin(angle), iq)
    i, q = iq[:, :1], iq[:, 1:]
    change = torch.cat([torch.zeros_like(i), (c - 1) * i - s * q, s * i + (c - 1) * q], dim=1)
    return x + _mix(_yiq_to_rgb(x), change)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the luma image: ``luma + s (x - luma)`` (PIL's and torchvision's saturation; 0 gives grey)."""
    return x + (_per_image(factor, x) - 1) * (x - luma(x))


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Scale deviations from the image's mean luma by ``c``: ``mean + c (x - mean)`` (PIL's contrast,
    ``kornia.enhance.adjust_contrast_with_mean_subtraction``); the mean luma is unchanged."""
    mean = luma(x).mean(dim=(1, 2, 3), keepdim=True)
    return x + (_per_image(factor, x) - 1) * (x - mean)


def contrast_mult(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply every value by ``c`` (``kornia.enhance.adjust_contrast``, the "contrast" of ART's composite attack:
    a gain that also changes the mean)."""
    return x * _per_image(factor, x)


def brightness(x: Tensor, delta: Tensor) -> Tensor:
    """Add ``b`` to every value (``kornia.enhance.adjust_brightness`` before its clamp)."""
    return x + _per_image(delta, x)


def gamma(x: Tensor, g: Tensor) -> Tensor:
    """``x ** g`` on [0, 1]; 0 stays 0 with a zero gradient. The power acts on ``x`` clamped to [0, 1] (values
    below 0 or above 1 from earlier transforms would make it undefined or unbounded) and is added as a change, so
    what lies outside passes through unchanged and ``g = 1`` returns any input exactly."""
    base = x.clamp(0.0, 1.0)
    positive = base > 0
    powered = torch.pow(torch.where(positive, base, torch.ones_like(base)), _per_image(g, x))
    return x + (torch.where(positive, powered, base) - base)


# ---- HSV, kornia's conventions: hue in radians in [0, 2π), value = max channel, saturation = (max - min) / max ----


def rgb_to_hsv(x: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor, Tensor]:
    """Hue (radians in [0, 2π)), saturation and value of each pixel; hue 0 where the pixel is grey.

    Shape:
        - x: ``(N, 3, H, W)``; outputs: three ``(N, H, W)``
    """
    r, g, b = x.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    span = v - torch.minimum(torch.minimum(r, g), b)
    s = span / (v + eps)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    sector = torch.where(
        v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )  # in units of 60°
    h = torch.remainder(sector, 6.0) * (math.pi / 3.0)
    return torch.where(span > 0, h, torch.zeros_like(h)), s, v


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """The inverse of :func:`rgb_to_hsv` for any real hue (taken modulo 2π): each channel is
    ``v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + h / 60°) mod 6`` and ``n = 5, 3, 1`` for R, G, B.

    Shape:
        - h, s, v: ``(N, H, W)``; output: ``(N, 3, H, W)``
    """
    sixths = h * (3.0 / math.pi)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(sixths + n, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def hue_hsv(x: Tensor, angle: Tensor) -> Tensor:
    """Add ``angle`` radians to the HSV hue (``kornia.enhance.adjust_hue``); grey pixels do not change and the
    gradient with respect to the angle is zero on them."""
    h, s, v = rgb_to_hsv(x)
    a = angle.to(x.dtype).reshape(-1, 1, 1)
    return x + (hsv_to_rgb(h + a, s, v) - hsv_to_rgb(h, s, v))


def saturation_hsv(x: Tensor, factor: Tensor) -> Tensor:
    """Scale the HSV saturation by ``s`` and clamp it to [0, 1] (``kornia.enhance.adjust_saturation``)."""
    h, s, v = rgb_to_hsv(x)
    f = factor.to(x.dtype).reshape(-1, 1, 1)
    return x + (hsv_to_rgb(h, (s * f).clamp(0.0, 1.0), v) - hsv_to_rgb(h, s, v))
