"""Digital corruptions: brightness, contrast, saturate, elastic transform, pixelate and JPEG compression."""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.data.corruptions import _ops
from robustlab.data.corruptions._base import register
from robustlab.data.corruptions._jpeg import jpeg_roundtrip


@register(
    "brightness",
    family="digital",
    stochastic=False,
    cifar=(0.05, 0.1, 0.15, 0.2, 0.3),
    imagenet=(0.1, 0.2, 0.3, 0.4, 0.5),
)
def brightness(x: Tensor, delta: float, g: torch.Generator, cset: str) -> Tensor:
    """Add ``delta`` to the HSV value channel (clipped to 1), keeping hue and saturation.

    With hue and saturation fixed every RGB channel is proportional to the value ``V = max(R, G, B)``, so the
    HSV round trip of the reference (``skimage.color.rgb2hsv``/``hsv2rgb``) is ``x * V' / V`` in closed form
    (``V'`` for black pixels). Grey images: ``clip(x + delta)``.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + delta).clamp(max=1.0)
    return torch.where(v > 0, x * (v_new / v.clamp(min=1e-12)), v_new.expand_as(x))


@register(
    "saturate",
    family="digital",
    stochastic=False,
    cifar=((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    imagenet=((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
)
def saturate(x: Tensor, p: tuple[float, float], g: torch.Generator, cset: str) -> Tensor:
    """Set HSV saturation to ``clip(S * p[0] + p[1], 0, 1)``, keeping hue and value.

    Closed form of the HSV round trip: ``x' = V - V * S' * (V - x) / (V - min)``. Grey pixels have hue 0 in
    scikit-image, so a positive ``S'`` turns them red as in the reference. Grey images are returned unchanged
    (the reference saturates a replicated RGB image and keeps its red channel, which is the value).
    """
    if x.shape[1] == 1:
        return x.clone()
    factor, offset = p
    v = x.amax(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    s = torch.where(v > 0, delta / v.clamp(min=1e-12), torch.zeros_like(v))
    s_new = (s * factor + offset).clamp(0.0, 1.0)
    coloured = v - v * s_new * (v - x) / delta.clamp(min=1e-12)
    red_hue = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = v * (1 - s_new * red_hue)
    return torch.where(delta > 0, coloured, grey)


@register(
    "contrast",
    family="digital",
    stochastic=False,
    cifar=(0.75, 0.5, 0.4, 0.3, 0.15),
    imagenet=(0.4, 0.3, 0.2, 0.1, 0.05),
)
def contrast(x: Tensor, factor: float, g: torch.Generator, cset: str) -> Tensor:
    """Scale each channel's deviations from its own mean by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


# (alpha, sigma, affine jitter) as fractions of the reference side: 32 for CIFAR-10-C; ImageNet-C wrote 244
# where it meant 224 ("ultimately nothing is incorrect"), so its fractions multiply 244 / 224 of the side.
_ELASTIC_CIFAR = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
_ELASTIC_IMAGENET = ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))


@register(
    "elastic_transform",
    family="digital",
    stochastic=True,
    cifar=_ELASTIC_CIFAR,
    imagenet=_ELASTIC_IMAGENET,
)
def elastic_transform(x: Tensor, p: tuple[float, float, float], g: torch.Generator, cset: str) -> Tensor:
    """A random affine warp, then a smooth random displacement field (the reference's two steps).

    1. The three points ``centre ± side // 3`` move by uniform jitter in ``[-a, a)``; the image is warped by
       the affine map between them (bilinear, ``BORDER_REFLECT_101``, sample positions on OpenCV's 1/32-pixel
       grid, as ``cv2.warpAffine``).
    2. Displacements ``dx, dy`` are uniform noise in [-1, 1) blurred with a Gaussian of ``sigma`` (mirror
       borders, truncated at 3 sigma) times ``alpha``; the image is resampled bilinearly at ``(y + dy, x + dx)``
       with mirror borders (``scipy.ndimage.map_coordinates(order=1, mode="reflect")``).

    The constants are fractions of the side and scale with it; at 32×32 (CIFAR-10-C) and 224×224
    (ImageNet-C) they equal the reference's pixel values.
    """
    n, _c, h, w = x.shape
    side = min(h, w)
    scale = side if cset == "cifar" else side * 244 / 224
    alpha, sigma, jitter = (v * scale for v in p)
    # 1. random affine
    cy, cx = float(h // 2), float(w // 2)
    sq = float(side // 3)
    src = torch.tensor(
        [[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=torch.float64, device=x.device
    )  # (3, 2) as (x, y)
    dst = src + _ops.uniform(g, -jitter, jitter, (n, 3, 2), src).float().double()  # (N, 3, 2)
    ones = torch.ones(3, 1, dtype=torch.float64, device=x.device)
    design = torch.cat([src, ones], dim=1)  # (3, 3)
    m = torch.linalg.solve(design, dst).transpose(1, 2)  # (N, 2, 3): dst = m @ [x, y, 1]
    a_inv = torch.linalg.inv(m[:, :, :2])  # (N, 2, 2)
    t = m[:, :, 2]  # (N, 2)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=x.device),
        torch.arange(w, dtype=torch.float64, device=x.device),
        indexing="ij",
    )
    px = xs[None] - t[:, 0, None, None]
    py = ys[None] - t[:, 1, None, None]
    sx = a_inv[:, 0, 0, None, None] * px + a_inv[:, 0, 1, None, None] * py
    sy = a_inv[:, 1, 0, None, None] * px + a_inv[:, 1, 1, None, None] * py
    sx, sy = torch.round(sx * 32) / 32, torch.round(sy * 32) / 32
    warped = _ops.bilinear_sample(x, sy.to(x.dtype), sx.to(x.dtype), mode="reflect")
    # 2. smooth displacement field
    noise = _ops.uniform(g, -1.0, 1.0, (n, 2, h, w), x)
    if sigma > 1e-15:
        noise = _ops.gaussian_blur(noise, sigma, mode="symmetric", truncate=3.0)
    dx, dy = noise[:, 0] * alpha, noise[:, 1] * alpha
    return _ops.bilinear_sample(warped, ys.to(x.dtype)[None] + dy, xs.to(x.dtype)[None] + dx, mode="symmetric")


@register(
    "pixelate",
    family="digital",
    stochastic=False,
    cifar=(0.95, 0.9, 0.85, 0.75, 0.65),
    imagenet=(0.6, 0.5, 0.4, 0.3, 0.25),
)
def pixelate(x: Tensor, factor: float, g: torch.Generator, cset: str) -> Tensor:
    """Shrink to ``int(side * factor)`` and enlarge back, both with Pillow's BOX filter (in float)."""
    h, w = x.shape[-2:]
    small = _ops.pillow_box_resize(x, int(h * factor), int(w * factor))
    return _ops.pillow_box_resize(small, h, w)


@register(
    "jpeg_compression",
    family="digital",
    stochastic=False,
    cifar=(80, 65, 58, 50, 40),
    imagenet=(25, 18, 15, 10, 7),
)
def jpeg_compression(x: Tensor, quality: int, g: torch.Generator, cset: str) -> Tensor:
    """Baseline JPEG round trip at ``quality`` (see :mod:`robustlab.data.corruptions._jpeg`)."""
    return jpeg_roundtrip(x, quality)
