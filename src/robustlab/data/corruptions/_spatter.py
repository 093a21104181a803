"""Batched versions of the OpenCV steps behind the "water" spatter: Canny edges, a chamfer distance
transform, 8-bit histogram equalisation and OpenCV's 8-bit filtering conventions.

All functions take and return ``(N, 1, H, W)`` float tensors holding 8-bit values (0..255) unless noted.

References:
    Canny, "A Computational Approach to Edge Detection", TPAMI 1986 (OpenCV's variant: Sobel 3×3 with
    replicated borders, L1 gradient magnitude, non-maximum suppression on four directions, hysteresis with
    8-connectivity); Borgefors, "Distance transformations in digital images", CVGIP 1986 (the 5×5 chamfer
    mask with OpenCV's weights 1, 1.4, 2.1969 for ``DIST_L2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.data.corruptions import _ops

_TAN_22_5 = 0.4142135623730950488


def canny(img: Tensor, low: float, high: float) -> Tensor:
    """Canny edges of 8-bit images as OpenCV computes them (``cv2.Canny(img, low, high)``).

    Returns:
        A boolean edge map.

    Shape:
        img: ``(N, 1, H, W)`` → ``(N, 1, H, W)`` bool
    """
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=img.dtype)
    gx = _ops.filter2d(img, sobel_x, mode="nearest")
    gy = _ops.filter2d(img, sobel_x.t().contiguous(), mode="nearest")
    mag = gx.abs() + gy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # magnitude outside the image counts as 0

    def at(dy: int, dx: int) -> Tensor:
        h, w = mag.shape[-2:]
        return mp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * _TAN_22_5
    vertical = ay > ax * (_TAN_22_5 + 2)  # tan(67.5°) = tan(22.5°) + 2
    same_sign = (gx * gy) >= 0  # s = +1 in OpenCV: compare up-left and down-right
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    keep_d = torch.where(
        same_sign,
        (mag > at(-1, -1)) & (mag > at(1, 1)),
        (mag > at(-1, 1)) & (mag > at(1, -1)),
    )
    local_max = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))
    candidate = local_max & (mag > low)
    edges = candidate & (mag > high)
    # hysteresis: grow strong edges through 8-connected candidates until nothing changes
    while True:
        grown = candidate & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def chamfer_distance(sources: Tensor, cap: float) -> Tensor:
    """Distance of every pixel to the nearest source pixel with the 5×5 chamfer mask (``cv2.DIST_L2``, 5).

    OpenCV's two raster passes (forward with the upper-left half of the mask, backward with the other half),
    vectorised over images and columns: within a row, the chain of left (right) neighbours is a running
    minimum, ``d(x) = min_k<=x (d0(k) + a (x - k))``, computed with ``cummin``. Distances above ``cap`` are
    returned as ``cap``.

    Shape:
        sources: ``(N, 1, H, W)`` bool → ``(N, 1, H, W)`` float32
    """
    a, b, c = 1.0, 1.4, 2.1969
    n, _, h, w = sources.shape
    big = 1e6
    d = torch.full((n, h + 4, w + 4), big, dtype=torch.float64, device=sources.device)
    d[:, 2 : h + 2, 2 : w + 2] = torch.where(sources[:, 0], 0.0, big)
    ramp = torch.arange(w, dtype=torch.float64, device=sources.device) * a
    for backward in (False, True):
        rows = range(h + 1, 1, -1) if backward else range(2, h + 2)
        s = 1 if backward else -1  # the already-final rows lie at y + s, y + 2s
        for y in rows:
            r1, r2 = d[:, y + s], d[:, y + 2 * s]
            cand = torch.stack(
                [
                    d[:, y, 2 : w + 2],
                    r1[:, 1 : w + 1] + b,
                    r1[:, 2 : w + 2] + a,
                    r1[:, 3 : w + 3] + b,
                    r1[:, 0:w] + c,
                    r1[:, 4 : w + 4] + c,
                    r2[:, 1 : w + 1] + c,
                    r2[:, 3 : w + 3] + c,
                ]
            ).amin(dim=0)
            if backward:
                run = torch.cummin((cand + ramp).flip(-1), dim=-1).values.flip(-1) - ramp
            else:
                run = torch.cummin(cand - ramp, dim=-1).values + ramp
            d[:, y, 2 : w + 2] = run
    return d[:, None, 2 : h + 2, 2 : w + 2].clamp(max=cap).float()


def box3(img: Tensor) -> Tensor:
    """``cv2.blur(img, (3, 3))``: the 3×3 sum times ``1/9`` (as OpenCV scales it), ``BORDER_REFLECT_101``."""
    total = _ops.filter2d(img, torch.ones((3, 3), dtype=img.dtype), mode="reflect")
    return total * torch.tensor(1.0 / 9.0, dtype=torch.float32).item()


def equalize_hist(img: Tensor) -> Tensor:
    """``cv2.equalizeHist`` per image on 8-bit values (float tensor in, float tensor of 0..255 out).

    Shape:
        img: ``(N, 1, H, W)`` → ``(N, 1, H, W)``
    """
    n = img.shape[0]
    v = img.reshape(n, -1).long().clamp(0, 255)
    total = v.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=img.device).scatter_add_(1, v, torch.ones_like(v))
    first = (hist > 0).long().argmax(dim=1, keepdim=True)  # (N, 1)
    first_count = hist.gather(1, first)
    cum_all = hist.cumsum(dim=1)
    cum = cum_all - cum_all.gather(1, first)  # counts in (first, i]
    scale = 255.0 / (total - first_count).clamp(min=1).float()
    bins = torch.arange(256, device=img.device)[None]
    lut = torch.where(bins > first, torch.round(cum.float() * scale), torch.zeros_like(scale)).clamp(0, 255)
    uniform = first_count == total
    lut = torch.where(uniform, bins.float().expand(n, 256), lut)
    return lut.gather(1, v).view_as(img).to(img.dtype)


def filter2d_u8(img: Tensor, kernel: Tensor) -> Tensor:
    """``cv2.filter2D(img, cv2.CV_8U, kernel)``: correlation, reflected borders, rounded and saturated."""
    return torch.round(_ops.filter2d(img, kernel.to(img.dtype), mode="reflect")).clamp(0, 255)
