"""Baseline JPEG compression and decompression in torch, batched (what Pillow's ``save(quality=q)`` does).

Encoder and decoder follow libjpeg's defaults as Pillow uses them: JFIF YCbCr, 4:2:0 chroma subsampling
(2×2 averages, edges replicated to whole MCUs), the IJG quality scaling of the Annex K tables, baseline
quantisation (round half away from zero), and the decoder's "fancy" triangular chroma upsampling. Colour
conversions round as libjpeg's fixed-point tables do, and the DCT and IDCT are libjpeg's 13-bit fixed-point
"islow" algorithms in int64 arithmetic. The result is bit-exact with Pillow 13 (libjpeg-turbo) on every image
size, quality and grey/RGB case tested (``tests/corruptions``, ``benchmarks/validate_corruptions.py``), one
batched call instead of an encode and a decode per image.

References:
    ITU-T T.81 (JPEG), Annex K tables; Independent JPEG Group, ``jcparam.c`` (quality scaling),
    ``jccolor.c``/``jdcolor.c`` (colour conversion), ``jcsample.c``/``jdsample.c`` (chroma resampling),
    ``jfdctint.c``/``jidctint.c`` (Loeffler, Ligtenberg & Moschytz, ICASSP 1989: the integer DCT).
"""

from __future__ import annotations

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


# libjpeg's "islow" integer DCT (Loeffler, Ligtenberg & Moschytz with 12 multiplies): constants are
# FIX(c) = round(c * 2**13); pass 1 keeps PASS1_BITS = 2 extra bits of precision.
_CONST_BITS, _PASS1_BITS = 13, 2
_F0298, _F0390, _F0541, _F0765, _F0899, _F1175 = 2446, 3196, 4433, 6270, 7373, 9633
_F1501, _F1847, _F1961, _F2053, _F2562, _F3072 = 12299, 15137, 16069, 16819, 20995, 25172


def _descale(v: Tensor, n: int) -> Tensor:
    return (v + (1 << (n - 1))) >> n  # round half up, arithmetic shift


def _odd(t4: Tensor, t5: Tensor, t6: Tensor, t7: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    # the shared odd part: rotations of (t4, t5, t6, t7) = (i0, i1, i2, i3)
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    return t4 * _F0298 + z1 + z3, t5 * _F2053 + z2 + z4, t6 * _F3072 + z2 + z3, t7 * _F1501 + z1 + z4


def _fdct_1d(d: list[Tensor], first: bool) -> list[Tensor]:
    t0, t7 = d[0] + d[7], d[0] - d[7]
    t1, t6 = d[1] + d[6], d[1] - d[6]
    t2, t5 = d[2] + d[5], d[2] - d[5]
    t3, t4 = d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS
    out: list[Tensor] = [t10] * 8
    if first:
        out[0], out[4] = (t10 + t11) << _PASS1_BITS, (t10 - t11) << _PASS1_BITS
    else:
        out[0], out[4] = _descale(t10 + t11, _PASS1_BITS), _descale(t10 - t11, _PASS1_BITS)
    z1 = (t12 + t13) * _F0541
    out[2], out[6] = _descale(z1 + t13 * _F0765, shift), _descale(z1 - t12 * _F1847, shift)
    o4, o5, o6, o7 = _odd(t4, t5, t6, t7)
    out[7], out[5], out[3], out[1] = (_descale(v, shift) for v in (o4, o5, o6, o7))
    return out


def _idct_1d(d: list[Tensor], first: bool) -> list[Tensor]:
    z1 = (d[2] + d[6]) * _F0541
    t2, t3 = z1 - d[6] * _F1847, z1 + d[2] * _F0765
    t0, t1 = (d[0] + d[4]) << _CONST_BITS, (d[0] - d[4]) << _CONST_BITS
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _odd(d[7], d[5], d[3], d[1])
    shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS + 3
    pairs = ((t10, o3), (t11, o2), (t12, o1), (t13, o0))
    out: list[Tensor] = [t10] * 8
    for i, (even, odd) in enumerate(pairs):
        out[i], out[7 - i] = _descale(even + odd, shift), _descale(even - odd, shift)
    return out


def _blocks_roundtrip(plane: Tensor, table: Tensor) -> Tensor:
    """Level shift, DCT, quantise, dequantise and inverse DCT each 8×8 block, bit-exact with libjpeg's
    islow DCT and IDCT; plane sides are multiples of 8 and values integers 0..255."""
    n, h, w = plane.shape
    q = table.to(plane.device).long()[:, :, None]  # (8, 8, 1) over (v, u)
    # (y, x, block): the 8-sample axes lead, so each 1-D pass works on contiguous rows of blocks
    b = (plane.long() - 128).view(n, h // 8, 8, w // 8, 8).permute(2, 4, 0, 1, 3).reshape(8, 8, -1)
    b = torch.stack(_fdct_1d(list(b.unbind(1)), first=True), dim=1)  # along x
    coef = torch.stack(_fdct_1d(list(b.unbind(0)), first=False), dim=0)  # along y: 8 × the DCT
    div = 8 * q
    k = torch.sign(coef) * ((coef.abs() + div // 2) // div)  # jcdctmgr: round half away from zero
    b = k * q
    b = torch.stack(_idct_1d(list(b.unbind(0)), first=True), dim=0)  # columns first
    b = torch.stack(_idct_1d(list(b.unbind(1)), first=False), dim=1)
    rec = (b + 128).clamp(0, 255).view(8, 8, n, h // 8, w // 8)
    return rec.permute(2, 3, 0, 4, 1).reshape(n, h, w).to(plane.dtype)


def _fix(c: float) -> int:
    return int(c * 65536 + 0.5)


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
    r, g, b = v[:, 0].long(), v[:, 1].long(), v[:, 2].long()
    # jccolor.c: 16-bit fixed point, FIX(c) = round(c * 2**16)
    half, offset = 1 << 15, 128 << 16
    yy = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + half) >> 16
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) >> 16
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) >> 16
    yy = _blocks_roundtrip(_pad_to(yy.double(), 16, 16), luma_q).long()
    # jcsample.c replicates the right edge at full resolution; jcprepct.c replicates the bottom edge after
    # downsampling (the last chroma row, not the last image row)
    cb = _blocks_roundtrip(_pad_to(_downsample_h2v2(_pad_to(cb.double(), 2, 16)), 8, 8), chroma_q)
    cr = _blocks_roundtrip(_pad_to(_downsample_h2v2(_pad_to(cr.double(), 2, 16)), 8, 8), chroma_q)
    ch, cw = (h + 1) // 2, (w + 1) // 2  # the decoder upsamples the chroma it knows, edges replicated
    cbi = _upsample_h2v2_fancy(cb[:, :ch, :cw])[:, :h, :w].long() - 128
    cri = _upsample_h2v2_fancy(cr[:, :ch, :cw])[:, :h, :w].long() - 128
    yy = yy[:, :h, :w]
    # jdcolor.c tables
    rr = yy + ((_fix(1.402) * cri + half) >> 16)
    gg = yy + ((-_fix(0.34414) * cbi - _fix(0.71414) * cri + half) >> 16)
    bb = yy + ((_fix(1.772) * cbi + half) >> 16)
    out = torch.stack([rr, gg, bb], dim=1).clamp(0, 255).to(x.dtype)
    return out / 255
