"""Baseline JPEG compression and decompression in torch, batched (what Pillow's ``save(quality=q)`` does).

Encoder and decoder follow libjpeg's defaults as Pillow uses them: JFIF YCbCr, 4:2:0 chroma subsampling
(2×2 averages, edges replicated to whole MCUs), the IJG quality scaling of the Annex K tables, baseline
quantisation (round half away from zero), and the decoder's "fancy" triangular chroma upsampling. Colour
conversions round as libjpeg's fixed-point tables do. The one approximation is the DCT: libjpeg uses a
13-bit fixed-point ("islow") DCT and IDCT, this module an exact float DCT, so a coefficient that lies within
rounding error of a quantisation boundary can round the other way; decoded pixels then differ by a level
or two. ``benchmarks/validate_corruptions.py`` measures the agreement with Pillow.

References:
    ITU-T T.81 (JPEG), Annex K tables; Independent JPEG Group, ``jcparam.c`` (quality scaling),
    ``jccolor.c``/``jdcolor.c`` (colour conversion), ``jcsample.c``/``jdsample.c`` (chroma resampling).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)


def quant_table(quality: int, chroma: bool) -> Tensor:
    """The IJG quantisation table for ``quality`` (1..100), baseline-clamped to 1..255.

    Shape:
        Output: ``(8, 8)`` float64.
    """
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    base = torch.tensor(_CHROMA if chroma else _LUMA, dtype=torch.int64)
    return ((base * scale + 50) // 100).clamp(1, 255).double()


@lru_cache(maxsize=1)
def _dct_matrix() -> Tensor:
    d = torch.empty(8, 8, dtype=torch.float64)
    for u in range(8):
        cu = math.sqrt(1 / 8) if u == 0 else math.sqrt(2 / 8)
        for x in range(8):
            d[u, x] = cu * math.cos((2 * x + 1) * u * math.pi / 16)
    return d


def _round_half_up(v: Tensor) -> Tensor:
    return torch.floor(v + 0.5)


def _blocks_roundtrip(plane: Tensor, table: Tensor) -> Tensor:
    """Level shift, DCT, quantise, dequantise and inverse DCT each 8×8 block; plane sides are multiples of 8."""
    n, h, w = plane.shape
    d = _dct_matrix().to(plane.device, plane.dtype)
    q = table.to(plane.device, plane.dtype)
    blocks = (plane - 128).view(n, h // 8, 8, w // 8, 8)
    coef = torch.einsum("ux,nbxcy,vy->nbucv", d, blocks, d)
    k = torch.sign(coef) * torch.floor(coef.abs() / q[None, None, :, None, :] + 0.5)
    deq = k * q[None, None, :, None, :]
    rec = torch.einsum("ux,nbucv,vy->nbxcy", d, deq, d)
    return (_round_half_up(rec) + 128).clamp(0, 255).reshape(n, h, w)


def _pad_to(plane: Tensor, mh: int, mw: int) -> Tensor:
    h, w = plane.shape[-2:]
    ph, pw = (-h) % mh, (-w) % mw
    if ph or pw:
        plane = F.pad(plane[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
    return plane


def _downsample_h2v2(plane: Tensor) -> Tensor:
    # (a + b + c + d + bias) >> 2 with bias 1, 2, 1, 2, ... along each output row (jcsample.c)
    n, h, w = plane.shape
    s = plane.view(n, h // 2, 2, w // 2, 2).sum(dim=(2, 4))
    bias = torch.tensor([1.0, 2.0], dtype=plane.dtype, device=plane.device).repeat(w // 4 + 1)[: w // 2]
    return torch.floor((s + bias) / 4)


def _upsample_h2v2_fancy(plane: Tensor) -> Tensor:
    # triangle filter: 3/4 of the nearer sample and 1/4 of the further one, vertically then horizontally, with
    # libjpeg's rounding biases (8 and 7) and replicated edges (jdsample.c, h2v2_fancy_upsample)
    n, h, w = plane.shape
    up = torch.cat([plane[:, :1], plane[:, :-1]], dim=1)
    down = torch.cat([plane[:, 1:], plane[:, -1:]], dim=1)
    colsum = torch.stack([3 * plane + up, 3 * plane + down], dim=2).reshape(n, 2 * h, w)
    left = torch.cat([colsum[:, :, :1], colsum[:, :, :-1]], dim=2)
    right = torch.cat([colsum[:, :, 1:], colsum[:, :, -1:]], dim=2)
    even = torch.floor((3 * colsum + left + 8) / 16)
    odd = torch.floor((3 * colsum + right + 7) / 16)
    return torch.stack([even, odd], dim=3).reshape(n, 2 * h, 2 * w)


def jpeg_roundtrip(x: Tensor, quality: int) -> Tensor:
    """Compress and decompress ``x`` as an 8-bit baseline JPEG of the given quality.

    Args:
        x: Images in [0, 1]; they are first rounded to 8 bits, as a JPEG encoder sees them.
        quality: IJG quality, 1..100.

    Returns:
        The decoded images (multiples of 1/255), same dtype as ``x``.

    Shape:
        x: ``(N, C, H, W)`` with C 1 or 3 → ``(N, C, H, W)``
    """
    _n, c, h, w = x.shape
    v = torch.round(x.double() * 255).clamp(0, 255)
    luma_q, chroma_q = quant_table(quality, chroma=False), quant_table(quality, chroma=True)
    if c == 1:
        y = _blocks_roundtrip(_pad_to(v[:, 0], 8, 8), luma_q)[:, :h, :w]
        return (y / 255).unsqueeze(1).to(x.dtype)
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    yy = _round_half_up(0.299 * r + 0.587 * g + 0.114 * b)
    cb = _round_half_up(-0.168735892 * r - 0.331264108 * g + 0.5 * b + 128 - 1e-9)
    cr = _round_half_up(0.5 * r - 0.418687589 * g - 0.081312411 * b + 128 - 1e-9)
    yy = _blocks_roundtrip(_pad_to(yy, 16, 16), luma_q)
    cb = _blocks_roundtrip(_downsample_h2v2(_pad_to(cb, 16, 16)), chroma_q)
    cr = _blocks_roundtrip(_downsample_h2v2(_pad_to(cr, 16, 16)), chroma_q)
    ch, cw = (h + 1) // 2, (w + 1) // 2  # the decoder upsamples the chroma it knows, edges replicated
    cb = _upsample_h2v2_fancy(cb[:, :ch, :cw])[:, :h, :w] - 128
    cr = _upsample_h2v2_fancy(cr[:, :ch, :cw])[:, :h, :w] - 128
    yy = yy[:, :h, :w]
    rr = yy + _round_half_up(1.402 * cr)
    gg = yy + torch.floor(-0.344136286 * cb - 0.714136286 * cr + 0.5)
    bb = yy + _round_half_up(1.772 * cb)
    out = torch.stack([rr, gg, bb], dim=1).clamp(0, 255) / 255
    return out.to(x.dtype)
