"""AugMix's augmentation operations and AugMax's chains, batched in torch with one parameter per image, and the two
ways of mixing the chains: AugMix's random one and AugMax's differentiable one.

The references apply each operation with PIL to one uint8 image at a time. Here every operation acts on a whole
batch ``(N, C, H, W)`` with its parameters as ``(N,)`` tensors, and :func:`sample_chains` groups the draws by
operation across the batch: per step of the chains, the rows (image, chain) sorted by what they drew (one gather),
then in place on each op's run of rows: one table pass for autocontrast and equalize (histograms from one
``bincount``), one exact copy per translation shift, one ``F.grid_sample`` per rotation or shear op (rotations: one
grid per whole-degree angle), and one call for each other op; a handful of batched calls per step whatever the
batch size.

Two kinds of input, one semantics:

- ``uint8`` images (0..255) follow PIL's integer arithmetic: the lookup tables exactly, bilinear resampling
  truncated to an integer as PIL does (to within one grey level where PIL's double-precision value lies within
  1e-3 of an integer, since the resampling runs in float32), the ``ImageEnhance`` blends truncated, with PIL's
  integer grey (``L = (19595 R + 38470 G + 7471 B + 2^15) >> 16``), integer mean and rounded smoothing.
  :func:`sample_chains` runs its chains this way, like the reference's uint8 PIL images, and converts at the end.
- floating images in [0, 1]: :func:`autocontrast`, :func:`equalize` and :func:`posterize` read the image at 256
  levels (``round(255 x)``) and return values on the grid ``k / 255``; :func:`solarize` compares ``round(255 x)``
  with the threshold and inverts ``x`` itself; the geometric and ``ImageEnhance`` ops are continuous (no
  truncation; luma ``0.299 R + 0.587 G + 0.114 B``, unrounded means) and clip to [0, 1] where PIL clips.

Operations (parameters in PIL's units):

- :func:`autocontrast`, :func:`equalize` (``ImageOps``, per channel, from each image's own histograms),
  :func:`posterize` (bits kept), :func:`solarize` (threshold on the 0–255 scale; 256 inverts nothing).
- :func:`pil_affine` (``Image.transform(..., AFFINE, data, BILINEAR)``, fill 0), :func:`pil_rotate`
  (``Image.rotate``), :func:`shear_x`, :func:`shear_y`, :func:`translate_x`, :func:`translate_y` (AugMix's
  affine data). Integer translations (and the identity) are exact copies; the others use ``F.grid_sample``.
- :func:`enhance_color`, :func:`enhance_contrast`, :func:`enhance_brightness`, :func:`enhance_sharpness`
  (``ImageEnhance``; the four ops of AugMix's ``augmentations_all`` that overlap ImageNet-C, not used by default).

The geometric ops follow the references' PIL calls: bilinear resampling (``Image.BILINEAR``) and fill 0 (no
``fillcolor``), not the nearest-neighbour resampling and grey fill of other AugMix ports (torchvision's).

Chains (:func:`sample_chains`) draw like AugMix's ``augment_and_mix`` and AugMax's ``aug``: per image and chain a
depth uniform in {1, 2, 3} (or fixed), at each step an op uniform over the list and a level
``uniform(0.1, severity)`` mapped through AugMix's ``int_parameter`` / ``float_parameter``, with a random sign for
rotate, shear and translate. The translation's maximum is a third of the image's own width or height (the
references hard-code ``IMAGE_SIZE = 32``, the same for CIFAR). The draws come from a ``torch.Generator``, not
NumPy's global state: the same seed gives the same chains, but not the reference's chains.

Shape (every op):
    - x: ``(N, C, H, W)``, uint8 or floating in [0, 1]; parameter: ``(N,)``
    - output: like ``x`` (same dtype)

References:
    Hendrycks et al., "AugMix: A Simple Data Processing Method to Improve Robustness and Uncertainty", ICLR 2020
    (google-research/augmix, ``augmentations.py``, ``augment_and_mix``).
    Wang et al., "AugMax: Adversarial Composition of Random Augmentations for Robust Training", NeurIPS 2021
    (VITA-Group/AugMax, ``augmax_modules/augmax.py``: ``aug``, ``AugMaxDataset``, ``AugMaxModule``,
    ``AugMixModule``).
    Pillow, ``ImageOps.autocontrast`` / ``equalize`` / ``posterize`` / ``solarize``, ``Image.transform``,
    ``Image.blend``, ``ImageEnhance``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.transforms._colour import luma

#: AugMix's ``augmentations`` list, which AugMax uses: the ops that do not overlap CIFAR-10-C / ImageNet-C.
AUGMAX_OPS: tuple[str, ...] = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
#: AugMix's ``augmentations_all``: :data:`AUGMAX_OPS` plus PIL's four ``ImageEnhance`` ops.
AUGMIX_ALL_OPS: tuple[str, ...] = (*AUGMAX_OPS, "color", "contrast", "brightness", "sharpness")
#: Ops that need a colour (3-channel) image; :func:`sample_chains` leaves them out of other images.
COLOUR_OPS: frozenset[str] = frozenset({"color"})

_LEVEL_OPS = frozenset({"autocontrast", "equalize", "posterize", "solarize"})
_HISTOGRAM_OPS = frozenset({"autocontrast", "equalize"})
_AFFINE_OPS = frozenset({"rotate", "shear_x", "shear_y", "translate_x", "translate_y"})
_TRANSLATE_OPS = frozenset({"translate_x", "translate_y"})
_SIGNED_OPS = _AFFINE_OPS
_LEVELS = 256
#: uint8 resampling: PIL truncates a double; ours is float32 (about 1e-5 px and 1e-4 levels off), so a value this
#: close below an integer counts as that integer.
_TRUNC_SLACK = 1e-3


def _per_image(p: Tensor, x: Tensor) -> Tensor:
    """A per-image parameter ``(N,)`` shaped to broadcast over ``(N, C, H, W)``."""
    return p.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _levels(x: Tensor) -> Tensor:
    """The image at PIL's 256 levels as uint8: ``x`` itself if uint8, else ``round(255 x)``."""
    if x.dtype == torch.uint8:
        return x
    return (x * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def _restore(q: Tensor, like: Tensor) -> Tensor:
    """uint8 levels back in ``like``'s dtype: unchanged for uint8, ``k / 255`` for floats."""
    return q if like.dtype == torch.uint8 else q.to(like.dtype).div_(255.0)


def _channel_offsets(n: int, c: int, device: torch.device) -> Tensor:
    """``256 · (image, channel)`` row numbers, int32, shaped ``(N, C, 1, 1)``: index into flat per-channel tables."""
    return (torch.arange(n * c, device=device, dtype=torch.int32) * _LEVELS).view(n, c, 1, 1)


def _level_index(q: Tensor) -> Tensor:
    """Each value's entry in flat per-channel tables: ``256 · (image, channel) + level``, int32 ``(N, C, H, W)``
    (the bins of the histograms and the indices of the table lookups)."""
    n, c = q.shape[:2]
    return q.to(torch.int32).add_(_channel_offsets(n, c, q.device))


def _apply_lut(q: Tensor, lut: Tensor) -> Tensor:
    """Map each channel's levels through its own table: q uint8 ``(N, C, H, W)``, lut uint8 ``(N C, 256)``."""
    return lut.reshape(-1).index_select(0, _level_index(q).reshape(-1)).view(q.shape)


# ---- point and histogram ops: 256-entry tables per image and channel ---------------------------------------------


def _autocontrast_lut(q: Tensor) -> Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): level ``i`` ↦ ``clip(int(i · s − lo · s), 0, 255)``, ``s = 255 / (hi −
    lo)``, from each channel's lowest and highest level (PIL's double arithmetic, operation for operation);
    identity for a one-level channel. ``(N C, 256)`` uint8."""
    n, c = q.shape[:2]
    flat = q.reshape(n * c, -1)
    lo, hi = flat.amin(1).double(), flat.amax(1).double()  # (separate reductions: aminmax is slow on uint8)
    flat_channel = hi <= lo
    # a true division (``255.0 / tensor`` multiplies by a reciprocal, one ulp off PIL's table at the top level);
    # a one-level channel gets scale 1, offset 0: the identity table
    span = torch.where(flat_channel, 255.0, hi - lo)
    scale = torch.full_like(span, 255.0).div_(span)
    offset = torch.where(flat_channel, 0.0, -lo * scale)
    ix = torch.arange(_LEVELS, device=q.device, dtype=torch.float64)
    return (ix * scale[:, None]).add_(offset[:, None]).trunc_().clamp_(0, 255).to(torch.uint8)


def _equalize_lut(q: Tensor, index: Tensor | None = None) -> Tensor:
    """``ImageOps.equalize``: with ``h`` a channel's histogram and ``step = (total − h[last non-empty]) // 255``,
    level ``i`` ↦ ``(step // 2 + Σ_{j<i} h[j]) // step``, clipped to 255 (PIL's uint8 table clips); identity for a
    one-level channel or ``step`` 0. All histograms from one ``bincount`` (of ``index``, :func:`_level_index` of
    ``q``, when given). ``(N C, 256)`` uint8."""
    n, c, h, w = q.shape
    flat = q.reshape(n * c, -1)
    idx = _level_index(q) if index is None else index
    hist = torch.bincount(idx.reshape(-1), minlength=n * c * _LEVELS).view(n * c, _LEVELS)
    lo, hi = flat.amin(1), flat.amax(1)
    step = (h * w - hist.gather(1, hi.long()[:, None]).squeeze(1)) // 255
    keep = (lo == hi) | (step == 0)
    # (step // 2 + Σ_{j<i} h[j]) // step as the floor of a float quotient: exact for numerators below 2^24 in
    # float32 (a quotient below an integer k is at most k − 1 / step, and float32's relative error 2^−24 is
    # smaller than 1 / numerator), else in float64; vectorised where integer division is not. The cast floors
    # (values ≥ 0). Identity rows (divided by 1 here) are replaced by the identity table.
    before = torch.cumsum(hist, 1).sub_(hist).add_((step // 2)[:, None])
    exact = torch.float32 if 2 * h * w < 2**24 else torch.float64
    divisor = torch.where(keep, 1, step).to(exact)
    lut = before.to(exact).div_(divisor[:, None]).clamp_(max=255).to(torch.uint8)
    if bool(keep.any()):
        lut = torch.where(keep[:, None], torch.arange(_LEVELS, device=q.device, dtype=torch.uint8), lut)
    return lut


def _posterize_levels(q: Tensor, bits: Tensor, out: Tensor | None = None) -> Tensor:
    """``ImageOps.posterize`` on uint8 levels: ``i & ~(2^(8 − bits) − 1)``, one mask per image (into ``out``, which
    may be ``q``, when given)."""
    mask = (255 - ((1 << (8 - bits.long())) - 1)).to(torch.uint8)
    return torch.bitwise_and(q, mask.view(-1, 1, 1, 1), out=torch.empty_like(q) if out is None else out)


def _solarize_levels(q: Tensor, threshold: Tensor, out: Tensor | None = None) -> Tensor:
    """``ImageOps.solarize`` on uint8 levels: ``i ≥ threshold`` becomes ``255 − i`` (``i XOR 255``); into ``out``
    (which may be ``q``) when given."""
    t = threshold.double().ceil().clamp(0, 256).view(-1, 1, 1, 1)
    if bool((t >= 1).all()):  # i ≥ t ⟺ i > t − 1, a uint8 threshold (255 for t = 256: nothing flips)
        flip = torch.gt(q, (t - 1).to(torch.uint8)).view(torch.uint8).neg_()  # 0 or 255
    else:
        flip = ((q >= t.clamp(max=255).to(torch.uint8)) & (t <= 255)).to(torch.uint8).mul_(255)
    return flip.bitwise_xor_(q) if out is None else torch.bitwise_xor(q, flip, out=out)


def _lut(name: str, q: Tensor) -> Tensor:
    """The tables of autocontrast or equalize for the uint8 batch ``q``: ``(N C, 256)`` uint8."""
    if name == "autocontrast":
        return _autocontrast_lut(q)
    if name == "equalize":
        return _equalize_lut(q)
    raise ValueError(f"{name!r} is not a histogram op")


def _levels_op(name: str, q: Tensor, p: Tensor) -> Tensor:
    """One of the four point and histogram ops on uint8 levels."""
    if name == "posterize":
        return _posterize_levels(q, p.to(q.device))
    if name == "solarize":
        return _solarize_levels(q, p.to(q.device))
    return _apply_lut(q, _lut(name, q))


def autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel so that its darkest level becomes 0 and its lightest 255 (``ImageOps.autocontrast``,
    cutoff 0): level ``i`` becomes ``clip(int(i · 255 / (hi − lo) − lo · 255 / (hi − lo)), 0, 255)``; a channel
    with one level is unchanged.

    Shape:
        - x: ``(N, C, H, W)``; output: like ``x`` (floats on the grid ``k / 255``)
    """
    q = _levels(x)
    return _restore(_apply_lut(q, _autocontrast_lut(q)), x)


def equalize(x: Tensor) -> Tensor:
    """Equalise each channel's histogram (``ImageOps.equalize``): with ``h`` the channel's 256-bin histogram and
    ``step = (total − h[last non-empty bin]) // 255``, level ``i`` becomes ``(step // 2 + Σ_{j<i} h[j]) // step``
    (clipped to 255, as PIL's uint8 table clips); a channel with one level, or ``step`` 0, is unchanged. All
    histograms of the batch come from one ``bincount``.

    Shape:
        - x: ``(N, C, H, W)``; output: like ``x`` (floats on the grid ``k / 255``)
    """
    q = _levels(x)
    return _restore(_apply_lut(q, _equalize_lut(q)), x)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the ``bits`` most significant bits of each 8-bit level (``ImageOps.posterize``; 8 keeps all).

    Shape:
        - x: ``(N, C, H, W)``; bits: ``(N,)`` integers in 1..8
        - output: like ``x`` (floats on the grid ``k / 255``)
    """
    return _restore(_posterize_levels(_levels(x), bits.to(x.device)), x)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert the values at or above ``threshold`` (``ImageOps.solarize``: level ``i ≥ threshold`` becomes
    ``255 − i``); on floats ``1 − x`` where ``round(255 x) ≥ threshold``, else ``x``. 256 inverts nothing.

    Shape:
        - x: ``(N, C, H, W)``; threshold: ``(N,)`` on the 0–255 scale
        - output: like ``x``
    """
    if x.dtype == torch.uint8:
        return _solarize_levels(x, threshold.to(x.device))
    level = torch.round(x * 255.0)
    return torch.where(level >= _per_image(threshold, x), 1.0 - x, x)


# ---- geometric ops --------------------------------------------------------------------------------------------------


def _shift(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Integer translations: output ``(i, j)`` takes the input at ``(i + dx, j + dy)`` (column, row), 0 outside.
    One zero padding by the largest shift, then one gather of every image's window."""
    n, c, h, w = x.shape
    if n == 0:
        return x.clone()
    dx, dy = dx.clamp(-w, w), dy.clamp(-h, h)  # beyond the image everything is fill
    px, py = int(dx.abs().max()), int(dy.abs().max())
    padded = F.pad(x, (px, px, py, py))
    wp = w + 2 * px
    cols = torch.arange(w, device=x.device).view(1, 1, w) + (dx + px).view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + (dy + py).view(n, 1, 1)
    index = (rows * wp + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


def _normalised_grid(data: Tensor, h: int, w: int, dtype: torch.dtype) -> Tensor:
    """``F.grid_sample``'s grid (``align_corners=False``) of PIL's affine data, coordinates first: the map from
    output to input in normalised coordinates, ``x' = a x + b (H / W) y + (a + b H / W + 2 c / W − 1)`` and
    ``y' = d (W / H) x + e y + (d W / H + e + 2 f / H − 1)``, built in float64 and evaluated at the output pixel
    centres with one matrix product. ``(N, 6)`` → ``(N, 2, H W)``."""
    n = data.shape[0]
    a, b, c, d, e, f = data.to(torch.float64).unbind(1)
    theta = torch.stack(
        [
            torch.stack([a, b * (h / w), a + b * (h / w) + 2 * c / w - 1], 1),
            torch.stack([d * (w / h), e, d * (w / h) + e + 2 * f / h - 1], 1),
        ],
        1,
    )  # (N, 2, 3)
    return torch.mm(theta.reshape(n * 2, 3).to(dtype), _grid_base(h, w, data.device, dtype)).view(n, 2, h * w)


@functools.lru_cache(maxsize=16)
def _grid_base(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The output pixel centres in normalised coordinates, ``(x, y, 1)`` per pixel, built in float64 and stored in
    ``dtype``: ``(3, H W)``, cached (read only)."""
    xs = (torch.arange(w, device=device, dtype=torch.float64) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=torch.float64) * 2 + 1) / h - 1
    ones = torch.ones(h * w, device=device, dtype=torch.float64)
    return torch.stack([xs.repeat(h), ys.repeat_interleave(w), ones]).to(dtype)


def _resample(
    x: Tensor,
    data: Tensor,
    out: Tensor | None = None,
    *,
    axes: Sequence[int] | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    """PIL's bilinear affine resampling through ``F.grid_sample``: ``padding_mode="border"`` repeats the edge pixels
    for the points inside ``[0, W) × [0, H)`` (normalised: ``[−1, 1)``) as PIL does, and the points outside are 0.
    uint8 runs in float32 and truncates as PIL does (with :data:`_TRUNC_SLACK`), into ``out`` when given (which
    may be ``x`` itself: ``x`` is read before ``out`` is written).

    ``axes``: the coordinates (0 for x, 1 for y) to test against the image; by default those whose map is not the
    identity in some row (an identity axis maps each pixel centre to itself exactly: products with 1 and 0, sums
    with 0). ``rows``: image ``i`` takes the map ``data[rows[i]]`` (grids and tests computed once per map)."""
    n, _, h, w = x.shape
    compute = torch.float32 if x.dtype == torch.uint8 else x.dtype
    data = data.to(device=x.device, dtype=torch.float64)
    coords = _normalised_grid(data, h, w, compute)
    if axes is None:
        a, b, c, d, e, f = data.unbind(1)
        identity = ((a, b, c), (e, d, f))
        axes = [
            k for k, (one, zero, off) in enumerate(identity) if not bool(((one == 1) & (zero == 0) & (off == 0)).all())
        ]
    inside: Tensor | None = None
    for k in axes:  # PIL's 0 ≤ u < W and 0 ≤ v < H
        ck = coords[:, k]
        within = ck.ge(-1).logical_and_(ck.lt(1))  # (elementwise: a reduction over the pair is slow)
        inside = within if inside is None else inside.logical_and_(within)
    grid = coords.transpose(1, 2).reshape(-1, h, w, 2)
    if rows is not None:
        grid = grid.index_select(0, rows)
        inside = None if inside is None else inside.index_select(0, rows)
    sampled = F.grid_sample(x.to(compute), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if x.dtype == torch.uint8:  # values ≥ 0: the cast truncates
        sampled = (torch.empty_like(x) if out is None else out).copy_(sampled.add_(_TRUNC_SLACK))
    return sampled if inside is None else sampled.mul_(inside.view(n, 1, h, w))


def pil_affine(x: Tensor, data: Tensor) -> Tensor:
    """Resample each image through its affine map in PIL's convention (``Image.transform(size, AFFINE, data,
    resample=BILINEAR)``): output pixel ``(i, j)`` (column, row) takes the input at ``(a u + b v + c, d u + e v + f)``
    with ``(u, v) = (i + 0.5, j + 0.5)``, coordinates whose origin is the top-left corner of the image. Points
    inside the image ``[0, W) × [0, H)`` are interpolated bilinearly with the edge pixels repeated; points outside
    are 0 (PIL's fill when no ``fillcolor`` is given). Integer translations ``(1, 0, c, 0, 1, f)``, the identity
    among them, are exact copies (so the identity returns the input bit for bit); the other maps go through
    ``F.grid_sample`` (uint8: float32, truncated like PIL).

    Shape:
        - x: ``(N, C, H, W)``; data: ``(N, 6)``, ``(a, b, c, d, e, f)``
        - output: like ``x``
    """
    data = data.to(device=x.device, dtype=torch.float64)
    a, b, c, d, e, f = data.unbind(1)
    shift = (a == 1) & (b == 0) & (d == 0) & (e == 1) & (c == torch.round(c)) & (f == torch.round(f))
    if bool(shift.all()):
        return _shift(x, c.long(), f.long())
    if not bool(shift.any()):
        return _resample(x, data)
    rows, others = torch.nonzero(shift).squeeze(1), torch.nonzero(~shift).squeeze(1)
    shifted = _shift(x.index_select(0, rows), c[rows].long(), f[rows].long())
    resampled = _resample(x.index_select(0, others), data[others])
    return torch.cat([shifted, resampled]).index_select(0, torch.argsort(torch.cat([rows, others])))


def _rotation_data(degrees: Tensor, h: int, w: int) -> Tensor:
    """PIL's ``Image.rotate`` data: rotate about the centre ``(W / 2, H / 2)`` of the corner-origin coordinates
    (cosine and sine rounded to 15 decimals as PIL rounds them, so 90° is exact)."""
    rad = -degrees.double() * (math.pi / 180.0)
    cos, sin = torch.round(torch.cos(rad), decimals=15), torch.round(torch.sin(rad), decimals=15)
    cx, cy = w / 2.0, h / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return torch.stack([cos, sin, c, -sin, cos, f], dim=1)


def _affine_data(name: str, p: Tensor, h: int, w: int) -> Tensor:
    """The PIL affine data of one geometric op at parameters ``p``: ``(N,)`` → ``(N, 6)`` (float64)."""
    if name == "rotate":
        return _rotation_data(p, h, w)
    p = p.double()
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    rows = {
        "shear_x": (one, p, zero, zero, one, zero),
        "shear_y": (one, zero, zero, p, one, zero),
        "translate_x": (one, zero, p, zero, one, zero),
        "translate_y": (one, zero, zero, zero, one, p),
    }[name]
    return torch.stack(rows, dim=1)


def pil_rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate counter-clockwise by ``degrees`` about the image centre, corners filled with 0
    (``Image.rotate(degrees, resample=BILINEAR)``, AugMix's ``rotate``).

    Shape:
        - x: ``(N, C, H, W)``; degrees: ``(N,)``
        - output: like ``x``
    """
    return pil_affine(x, _rotation_data(degrees.to(x.device), x.shape[2], x.shape[3]))


def shear_x(x: Tensor, factor: Tensor) -> Tensor:
    """Horizontal shear about the top edge: the output at ``(u, v)`` takes the input at ``(u + factor · v, v)``
    (AugMix's ``shear_x``, PIL affine data ``(1, factor, 0, 0, 1, 0)``).

    Shape:
        - x: ``(N, C, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    return pil_affine(x, _affine_data("shear_x", factor.to(x.device), x.shape[2], x.shape[3]))


def shear_y(x: Tensor, factor: Tensor) -> Tensor:
    """Vertical shear about the left edge: the output at ``(u, v)`` takes the input at ``(u, v + factor · u)``
    (AugMix's ``shear_y``, PIL affine data ``(1, 0, 0, factor, 1, 0)``).

    Shape:
        - x: ``(N, C, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    return pil_affine(x, _affine_data("shear_y", factor.to(x.device), x.shape[2], x.shape[3]))


def translate_x(x: Tensor, shift: Tensor) -> Tensor:
    """The output at column ``u`` takes the input at column ``u + shift``: a positive shift moves the content left
    (AugMix's ``translate_x``, PIL affine data ``(1, 0, shift, 0, 1, 0)``).

    Shape:
        - x: ``(N, C, H, W)``; shift: ``(N,)`` pixels
        - output: like ``x``
    """
    return pil_affine(x, _affine_data("translate_x", shift.to(x.device), x.shape[2], x.shape[3]))


def translate_y(x: Tensor, shift: Tensor) -> Tensor:
    """The output at row ``v`` takes the input at row ``v + shift``: a positive shift moves the content up
    (AugMix's ``translate_y``, PIL affine data ``(1, 0, 0, 0, 1, shift)``).

    Shape:
        - x: ``(N, C, H, W)``; shift: ``(N,)`` pixels
        - output: like ``x``
    """
    return pil_affine(x, _affine_data("translate_y", shift.to(x.device), x.shape[2], x.shape[3]))


# ---- ImageEnhance ops (augmentations_all) -------------------------------------------------------------------------


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """``Image.blend(degenerate, x, factor) = degenerate + factor (x − degenerate)``, clipped to the value range.
    uint8: PIL's float32 arithmetic, truncated; floats: written as a change to ``x`` (factor 1 returns ``x``)."""
    if x.dtype == torch.uint8:
        d, xf = degenerate.float(), x.float()
        return (d + _per_image(factor, xf) * (xf - d)).clamp_(0.0, 255.0).to(torch.uint8)
    return (x + (_per_image(factor, x) - 1) * (x - degenerate)).clamp(0.0, 1.0)


def _grey(x: Tensor) -> Tensor:
    """PIL's ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 2^15) >> 16`` on uint8, the luma on floats; a
    one-channel image is its own grey, other channel counts use their mean. ``(N, 1, H, W)``, dtype of ``x``."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        return x.float().mean(dim=1, keepdim=True).round().to(x.dtype) if x.dtype == torch.uint8 else x.mean(1, True)
    if x.dtype != torch.uint8:
        return luma(x)
    r, g, b = x.int().unbind(1)
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).unsqueeze(1).to(torch.uint8)


def enhance_color(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grey image (``ImageEnhance.Color``; 0 gives grey, 1 the input). Needs 3 channels.

    Shape:
        - x: ``(N, 3, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    if x.shape[1] != 3:
        raise ValueError(f"enhance_color needs 3-channel images, got {x.shape[1]} channel(s)")
    return _blend(_grey(x).expand_as(x), x, factor)


def enhance_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with a uniform image at the mean grey (``ImageEnhance.Contrast``; on uint8 the mean of PIL's integer
    grey, rounded to an integer; on floats the mean luma).

    Shape:
        - x: ``(N, C, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    grey = _grey(x)
    if x.dtype == torch.uint8:
        mean = torch.floor(grey.double().mean(dim=(1, 2, 3), keepdim=True) + 0.5).to(torch.uint8)
    else:
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(mean.expand_as(x), x, factor)


def enhance_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with black, i.e. multiply by ``factor`` (``ImageEnhance.Brightness``), clipped to the value range.

    Shape:
        - x: ``(N, C, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    return _blend(torch.zeros_like(x), x, factor)


def enhance_sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with PIL's ``SMOOTH`` image (3×3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` inside, rounded on
    uint8; the one-pixel border copied unchanged) (``ImageEnhance.Sharpness``; 0 gives the smoothed image).

    Shape:
        - x: ``(N, C, H, W)``; factor: ``(N,)``
        - output: like ``x``
    """
    _, c, h, w = x.shape
    smooth = x.clone()
    if h >= 3 and w >= 3:
        compute = torch.float32 if x.dtype == torch.uint8 else x.dtype
        kernel = torch.ones(3, 3, dtype=compute, device=x.device)
        kernel[1, 1] = 5.0
        total = F.conv2d(x.to(compute), kernel.expand(c, 1, 3, 3), groups=c)  # integer sums: exact on uint8
        inner = torch.round(total / 13.0).to(x.dtype) if x.dtype == torch.uint8 else total / 13.0
        smooth[:, :, 1:-1, 1:-1] = inner
    return _blend(smooth, x, factor)


# ---- op lists, levels and chains ----------------------------------------------------------------------------------


def ops_for(channels: int, ops: Sequence[str] = AUGMIX_ALL_OPS) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``ops`` into those usable on images with ``channels`` channels and those left out because they need
    colour (:data:`COLOUR_OPS`: AugMix's ``color`` on anything but 3 channels).

    Returns:
        ``(usable, skipped)``, each in the order of ``ops``.

    Raises:
        ValueError: an unknown op name.
    """
    unknown = [op for op in ops if op not in AUGMIX_ALL_OPS]
    if unknown:
        raise ValueError(f"unknown AugMix op(s) {unknown}; use names from {', '.join(AUGMIX_ALL_OPS)}")
    skipped = tuple(op for op in ops if op in COLOUR_OPS and channels != 3)
    return tuple(op for op in ops if op not in skipped), skipped


def op_parameter(name: str, level: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """The parameter of op ``name`` at AugMix level ``level`` (in ``[0.1, severity)``), as AugMix's
    ``augmentations.py`` maps it: posterize bits ``4 − int(4 level / 10)``, rotate degrees ``± int(30 level / 10)``,
    solarize threshold ``256 − int(256 level / 10)``, shear ``± 0.3 level / 10``, translate pixels
    ``± int(level · (side / 3) / 10)``, enhance factors ``1.8 level / 10 + 0.1``; autocontrast and equalize take
    none (zeros). ``sign`` (±1) applies to rotate, shear and translate.

    Shape:
        - level, sign: ``(N,)`` (level float64 for AugMix's exact integer cut-offs); output: ``(N,)`` float64
    """
    level = level.double()
    if name in ("autocontrast", "equalize"):
        return torch.zeros_like(level)
    if name == "posterize":
        p = 4 - torch.trunc(level * 4 / 10)
    elif name == "solarize":
        p = 256 - torch.trunc(level * 256 / 10)
    elif name == "rotate":
        p = torch.trunc(level * 30 / 10)
    elif name in ("shear_x", "shear_y"):
        p = level * 0.3 / 10.0
    elif name == "translate_x":
        p = torch.trunc(level * (width / 3) / 10)
    elif name == "translate_y":
        p = torch.trunc(level * (height / 3) / 10)
    elif name in ("color", "contrast", "brightness", "sharpness"):
        p = level * 1.8 / 10.0 + 0.1
    else:
        raise ValueError(f"unknown AugMix op {name!r}")
    return p * sign.to(p.device).double() if name in _SIGNED_OPS else p


_ENHANCE = {
    "color": enhance_color,
    "contrast": enhance_contrast,
    "brightness": enhance_brightness,
    "sharpness": enhance_sharpness,
}


def apply_op(name: str, x: Tensor, p: Tensor) -> Tensor:
    """Apply op ``name`` with per-image parameters ``p`` (:func:`op_parameter`'s units) to the batch ``x``.

    Shape:
        - x: ``(N, C, H, W)``; p: ``(N,)``; output: like ``x``
    """
    if name == "solarize":
        return solarize(x, p)
    if name in _LEVEL_OPS:
        return _restore(_levels_op(name, _levels(x), p), x)
    if name in _AFFINE_OPS:
        return pil_affine(x, _affine_data(name, p.to(x.device), x.shape[2], x.shape[3]))
    if name in _ENHANCE:
        return _ENHANCE[name](x, p)
    raise ValueError(f"unknown AugMix op {name!r}")


def _op_group(name: str) -> int:
    """Where a step puts the rows of op ``name`` in its sorted state: equalize, autocontrast (one table pass, with
    equalize's rows first), the translations, the resampled ops (one ``grid_sample``), then the others."""
    order = ("equalize", "autocontrast", "translate_x", "translate_y")
    if name in order:
        return order.index(name)
    return len(order) if name in _AFFINE_OPS else len(order) + 1


def _chain_step(
    q: Tensor,
    order: Tensor,
    runs: list[tuple[int, int, int]],
    usable: Sequence[str],
    draws: tuple[Tensor, Tensor],
    shift_keys: int,
) -> None:
    """One step of the chains, in place, on the uint8 state ``q`` whose row ``i`` is chain row ``order[i]``.

    ``q``'s rows are sorted by what they drew: ``runs`` are ``(op index, shift, rows)``, consecutive runs of rows,
    in :func:`_op_group` order (a translation's rows split further by their shift, ``shift`` the key's remainder
    over ``shift_keys``; 0 for the other ops). Autocontrast and equalize go in one table pass, each translation
    by a whole shift in one exact copy (a pad), rotate and each shear in one resampling, each other op in one call,
    each writing back into its own rows of ``q``.
    """
    levels, signs = (t.index_select(0, order) for t in draws)
    _, _, h, w = q.shape
    spans: list[tuple[str, int, int, int]] = []  # (name, shift key, start, stop)
    start = 0
    for op, shift, count in runs:
        spans.append((usable[op], shift, start, start + count))
        start += count

    def param(name: str, a: int, b: int) -> Tensor:
        return op_parameter(name, levels[a:b], signs[a:b], h, w)

    table = [sp for sp in spans if sp[0] in _HISTOGRAM_OPS]
    if table:
        a, b = table[0][2], table[-1][3]
        sub = q[a:b]
        index = _level_index(sub)
        luts = []
        for name, _, s0, s1 in table:  # equalize's rows first: their bins start at 0
            part = q[s0:s1]
            luts.append(_equalize_lut(part, index[s0 - a : s1 - a]) if name == "equalize" else _autocontrast_lut(part))
        torch.index_select(torch.cat(luts).view(-1), 0, index.view(-1), out=sub.view(-1))
    for name, shift, a, b in spans:
        if name == "rotate":  # whole degrees: one grid per angle
            angles, rows = torch.unique(param(name, a, b), return_inverse=True)
            _resample(q[a:b], _rotation_data(angles, h, w), out=q[a:b], axes=(0, 1), rows=rows)
        elif name in _AFFINE_OPS and name not in _TRANSLATE_OPS:  # a shear moves one coordinate: one test
            axes = (0,) if name == "shear_x" else (1,)
            _resample(q[a:b], _affine_data(name, param(name, a, b), h, w), out=q[a:b], axes=axes)
        elif name in _TRANSLATE_OPS:  # integer shifts (AugMix's int_parameter): exact copies
            side = w if name == "translate_x" else h
            d = max(-side, min(side, shift - shift_keys // 2))
            sub = q[a:b]
            if abs(d) >= side:
                sub.zero_()
            elif d:  # output at i takes the input at i + d: crop d on one side, pad d zeros on the other
                sub.copy_(F.pad(sub, (-d, d) if name == "translate_x" else (0, 0, -d, d)))
        elif name == "posterize":  # in place
            _posterize_levels(q[a:b], param(name, a, b), out=q[a:b])
        elif name == "solarize":
            _solarize_levels(q[a:b], param(name, a, b), out=q[a:b])
        elif name not in _HISTOGRAM_OPS and name not in _AFFINE_OPS:
            sub, p = q[a:b], param(name, a, b)
            sub.copy_(_levels_op(name, sub, p) if name in _LEVEL_OPS else _ENHANCE[name](sub, p))


@torch.no_grad()
def sample_chains(
    x: Tensor,
    generator: torch.Generator,
    *,
    width: int = 3,
    depth: int | None = None,
    severity: float = 3.0,
    ops: Sequence[str] = AUGMAX_OPS,
    skipped: list[str] | None = None,
) -> Tensor:
    """Draw ``width`` AugMix chains for every image and apply them, batched.

    Per image and chain: a depth uniform in {1, 2, 3} (``depth=None``, AugMix's ``mixture_depth = -1``) or
    ``depth``; at each step an op uniform over ``ops``, a level ``uniform(0.1, severity)`` and a sign (±1 with
    probability ½) mapped by :func:`op_parameter`. All draws come from ``generator`` up front, in this order:
    depths ``(width B,)``, ops, levels and signs ``(steps, width B)`` (row ``i B + j`` is chain ``i`` of image
    ``j``); same seed and batch, same chains. The chains run on uint8 levels (``round(255 x)`` for float input),
    with PIL's arithmetic as on the reference's uint8 images, and come back in ``x``'s dtype.

    Step by step, the rows that drew an op are gathered and the op applied to all of them in one call (see the
    module's description), and the chains that have reached their depth are set aside. Ops that need colour are
    left out on images that have none (:func:`ops_for`) and their names appended to ``skipped``. Runs without
    autograd: the chains are fixed images (AugMax optimises only the mixing, :func:`augmax_mix`).

    Args:
        x: Images, uint8 or floating in [0, 1].
        generator: Source of every random draw (its device is where they are drawn).
        width: Chains per image (AugMix's ``mixture_width``, k).
        depth: Ops per chain, or ``None`` for uniform in {1, 2, 3}.
        severity: AugMix's ``aug_severity`` (3 in AugMix and AugMax).
        ops: Op names (:data:`AUGMAX_OPS`, :data:`AUGMIX_ALL_OPS` or a subset).
        skipped: When given, the names of the ops left out for want of colour are appended to it.

    Returns:
        The chains, ``chains[i]`` the ``i``-th chain of every image, in ``x``'s dtype (floats on the grid
        ``k / 255``).

    Shape:
        - x: ``(B, C, H, W)``; output: ``(width, B, C, H, W)``

    Raises:
        ValueError: ``width`` or ``depth`` below 1, ``severity`` not above 0.1, an unknown op, or no op usable.
    """
    if width < 1 or (depth is not None and depth < 1):
        raise ValueError(f"width and depth must be at least 1, got width={width}, depth={depth}")
    if severity <= 0.1:
        raise ValueError(f"severity must be above 0.1 (levels are drawn from [0.1, severity)), got {severity}")
    b, c, h, w = x.shape
    usable, left_out = ops_for(c, ops)
    if skipped is not None:
        skipped.extend(left_out)
    if not usable:
        raise ValueError(f"none of the ops {list(ops)} applies to {c}-channel images")

    n = width * b
    steps = 3 if depth is None else depth
    gdev = generator.device
    depths = (
        torch.randint(1, 4, (n,), generator=generator, device=gdev)
        if depth is None
        else torch.full((n,), depth, device=gdev)
    )
    choice = torch.randint(0, len(usable), (steps, n), generator=generator, device=gdev)
    levels = 0.1 + (severity - 0.1) * torch.rand(steps, n, generator=generator, device=gdev, dtype=torch.float64)
    signs = torch.where(torch.rand(steps, n, generator=generator, device=gdev) > 0.5, -1.0, 1.0)
    depths, choice, levels, signs = (t.to(x.device) for t in (depths, choice, levels, signs))

    # Each step sorts the running rows by a key: the op's group (:func:`_op_group`), then the op, then (for the
    # translations) the shift; the rows whose chain has ended sort last and are set aside, never to be copied
    # again. One gather per step, then each op works in place on its own run of rows.
    plan = sorted(range(len(usable)), key=lambda i: (_op_group(usable[i]), i))
    rank = torch.empty(len(usable), dtype=torch.long)
    rank[torch.tensor(plan, dtype=torch.long)] = torch.arange(len(usable))
    shift_keys = 2 * max(h, w) + 1  # a translation's shift, clamped to ±side, plus max(h, w)
    keys = rank.to(x.device)[choice] * shift_keys
    for name, side in (("translate_x", w), ("translate_y", h)):
        if name in usable:
            shift = op_parameter(name, levels, signs, h, w).clamp(-side, side).long() + shift_keys // 2
            keys = torch.where(choice == usable.index(name), keys + shift, keys)
    ended = len(usable) * shift_keys
    step_of = torch.arange(steps, device=x.device).view(-1, 1)
    keys = torch.where(depths.view(1, -1) > step_of, keys, ended)

    q0 = _levels(x)
    q, order = q0, torch.arange(n, device=x.device)
    done: list[tuple[Tensor, Tensor]] = []
    for step in range(steps):
        key = keys[step].index_select(0, order)
        sorted_key, perm = torch.sort(key, stable=True)
        values, counts = torch.unique_consecutive(sorted_key, return_counts=True)
        order = order.index_select(0, perm)
        q = q0.index_select(0, order.remainder(b)) if step == 0 else q.index_select(0, perm)
        runs = [(k // shift_keys, k % shift_keys, cnt) for k, cnt in zip(values.tolist(), counts.tolist(), strict=True)]
        if runs[-1][0] == len(usable):  # chains that have reached their depth
            m = len(order) - runs.pop()[2]
            done.append((q[m:], order[m:]))
            q, order = q[:m], order[:m]
        if runs:
            runs = [(plan[r], shift, cnt) for r, shift, cnt in runs]  # rank back to op index
            _chain_step(q, order, runs, usable, (levels[step], signs[step]), shift_keys)
    if done:
        q = torch.cat([q, *(d[0] for d in done)])
        order = torch.cat([order, *(d[1] for d in done)])
    return _restore(q.index_select(0, torch.argsort(order)), x).view(width, b, c, h, w)


def _mixable(x: Tensor, chains: Tensor) -> Tensor:
    """Check the shapes and return the chains as floats in ``x``'s dtype (uint8 chains as ``k / 255``)."""
    if not x.is_floating_point():
        raise ValueError(f"x must be floating (images in [0, 1]), got {x.dtype}")
    if chains.dim() != x.dim() + 1 or chains.shape[1:] != x.shape:
        raise ValueError(f"chains must be (k, *x.shape) = (k, {tuple(x.shape)}), got {tuple(chains.shape)}")
    return _restore(chains, x) if chains.dtype == torch.uint8 else chains.to(x.dtype)


def augmix_mix(x: Tensor, chains: Tensor, generator: torch.Generator) -> Tensor:
    """AugMix's random mixture (AugMax's ``AugMixModule``): ``(1 − m) x + m Σ_i w_i chain_i`` with, per image,
    ``w ~ Dirichlet(1, …, 1)`` (normalised exponential draws) and ``m ~ Beta(1, 1)`` (uniform), drawn from
    ``generator``.

    Shape:
        - x: ``(B, C, H, W)`` floating; chains: ``(k, B, C, H, W)`` (floating, or uint8 read as ``k / 255``)
        - output: ``(B, C, H, W)``
    """
    chains = _mixable(x, chains)
    k, b = chains.shape[:2]
    gdev = generator.device
    e = torch.empty(b, k, device=gdev, dtype=torch.float64).exponential_(generator=generator)
    w = (e / e.sum(1, keepdim=True)).to(device=x.device, dtype=x.dtype)
    m = torch.rand(b, generator=generator, device=gdev, dtype=torch.float64)
    mm = _per_image(m, x)
    return (1 - mm) * x + mm * torch.einsum("bk,kbchw->bchw", w, chains)


def augmax_mix(x: Tensor, chains: Tensor, m: Tensor, q: Tensor) -> Tensor:
    """AugMax's mixture (``AugMaxModule``): ``(1 − m) x + m Σ_i softmax(q)_i chain_i``, per image, differentiable
    with respect to ``m`` and ``q`` (the parameters AugMax's inner maximisation ascends; ``m`` in [0, 1] is the
    caller's to keep). ``m = 0`` returns ``x`` exactly.

    Shape:
        - x: ``(B, C, H, W)`` floating; chains: ``(k, B, C, H, W)`` (floating, or uint8 read as ``k / 255``);
          m: ``(B,)``; q: ``(B, k)``
        - output: ``(B, C, H, W)``
    """
    chains = _mixable(x, chains)
    if q.shape != (chains.shape[1], chains.shape[0]):
        raise ValueError(f"q must be (B, k) = {(chains.shape[1], chains.shape[0])}, got {tuple(q.shape)}")
    w = torch.softmax(q.to(x.dtype), dim=1)
    mixed = torch.einsum("bk,kbchw->bchw", w, chains)
    mm = m.to(x.dtype).view(-1, 1, 1, 1)
    return (1 - mm) * x + mm * mixed
