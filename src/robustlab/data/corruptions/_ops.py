"""Batched building blocks shared by the corruptions: random draws, borders, filters, resampling.

Every function works on a whole batch ``(N, C, H, W)`` on the batch's device. Border modes are named after
what they do, with the library that uses them:

- ``"nearest"``: ``a a | a b c | c c`` (scikit-image/SciPy ``nearest``, OpenCV ``BORDER_REPLICATE``);
- ``"reflect"``: ``c b | a b c | b a`` (OpenCV ``BORDER_REFLECT_101``, the OpenCV default; torch ``reflect``);
- ``"symmetric"``: ``b a | a b c | c b`` (SciPy/scikit-image ``reflect``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.transforms import luma

# ---------------------------------------------------------------- random numbers (drawn on the generator's device)


def randn(g: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Standard normal numbers of ``shape``, drawn with ``g`` and moved to ``like``'s device and dtype."""
    return torch.randn(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


def rand(g: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Uniform numbers in [0, 1) of ``shape`` (see :func:`randn`)."""
    return torch.rand(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


def uniform(g: torch.Generator, low: float, high: float, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Uniform numbers in [low, high) of ``shape`` (see :func:`randn`)."""
    return rand(g, shape, like) * (high - low) + low


def randint(g: torch.Generator, low: int, high: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Integers in [low, high) of ``shape`` (int64), drawn with ``g`` and moved to ``device``."""
    return torch.randint(low, high, shape, generator=g, device=g.device).to(device)


def poisson(g: torch.Generator, rate: Tensor) -> Tensor:
    """Poisson counts with the given rates (same shape, device and dtype as ``rate``)."""
    return torch.poisson(rate.to(g.device, torch.float64), generator=g).to(rate.device, rate.dtype)


# ---------------------------------------------------------------- borders


def border_index(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source index of each position of a line of ``n`` samples padded by ``before``/``after`` samples.

    Any padding width works (the reflections repeat), unlike ``F.pad``.

    Shape:
        Output: ``(before + n + after,)`` int64 in ``0 .. n - 1``.
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "nearest" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "symmetric":
        j = i.remainder(2 * n)
        return torch.where(j < n, j, 2 * n - 1 - j)
    if mode == "reflect":
        j = i.remainder(2 * n - 2)
        return torch.where(j < n, j, 2 * n - 2 - j)
    raise ValueError(f"unknown border mode {mode!r}")


def pad(x: Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> Tensor:
    """Pad the last two dimensions of ``x`` with a border mode (see the module docstring)."""
    h, w = x.shape[-2], x.shape[-1]
    if not (top or bottom or left or right):
        return x
    fast = {"nearest": "replicate", "reflect": "reflect"}.get(mode)
    if fast is not None and x.dim() == 4 and max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode=fast)
    if mode == "symmetric" and max(top, bottom) <= h and max(left, right) <= w:
        if top or bottom:
            parts = [x[..., :top, :].flip(-2), x, x[..., h - bottom :, :].flip(-2)]
            x = torch.cat(parts, dim=-2)
        if left or right:
            parts = [x[..., :left].flip(-1), x, x[..., w - right :].flip(-1)]
            x = torch.cat(parts, dim=-1)
        return x
    if top or bottom:
        x = x.index_select(-2, border_index(h, top, bottom, mode, x.device))
    if left or right:
        x = x.index_select(-1, border_index(w, left, right, mode, x.device))
    return x


# ---------------------------------------------------------------- linear filters


def filter2d(x: Tensor, kernel: Tensor, mode: str = "reflect") -> Tensor:
    """Correlate every channel with one 2-D kernel, centred (OpenCV ``filter2D`` with ``anchor=(-1, -1)``).

    Kernels of 7×7 and more run as FFT products on the padded image (as OpenCV switches to a DFT for large
    kernels); the result equals the direct correlation up to float rounding.

    Shape:
        - x: ``(N, C, H, W)``; kernel: ``(kh, kw)``
        - Output: ``(N, C, H, W)``
    """
    kh, kw = kernel.shape
    _n, c, h, w = x.shape
    xp = pad(x, kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2, mode)
    k = kernel.to(x.device, x.dtype)
    if kh * kw < 49:
        return F.conv2d(xp, k.expand(c, 1, kh, kw), groups=c)
    ph, pw = xp.shape[-2:]
    spectrum = torch.fft.rfft2(xp, s=(ph, pw)) * torch.fft.rfft2(k.flip(0, 1), s=(ph, pw))
    full = torch.fft.irfft2(spectrum, s=(ph, pw))  # circular convolution; the valid part is exact
    result: Tensor = full[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w].contiguous()
    return result


@lru_cache(maxsize=128)
def _filter_matrix_np(n: int, kernel: tuple[float, ...], mode: str) -> np.ndarray:
    # the 1-D correlation with a centred odd kernel and a border mode, as an (n, n) matrix
    r = len(kernel) // 2
    src = border_index(n, r, r, mode, torch.device("cpu")).numpy()
    m = np.zeros((n, n))
    for i in range(n):
        for j, kj in enumerate(kernel):
            m[i, src[i + j]] += kj
    return m


def separable(x: Tensor, k_rows: Tensor | None, k_cols: Tensor | None, mode: str) -> Tensor:
    """Filter along H with ``k_rows`` and along W with ``k_cols`` (odd 1-D kernels; ``None`` skips).

    Each pass is a product with an ``(n, n)`` matrix that folds in the border mode (fast on small images).

    Shape:
        x: ``(N, C, H, W)`` → ``(N, C, H, W)``
    """
    h, w = x.shape[-2:]
    if k_rows is not None and k_rows.numel() > 1:
        mh = _filter_matrix_np(h, tuple(k_rows.double().tolist()), mode)
        x = torch.from_numpy(mh).to(x.device, x.dtype) @ x
    if k_cols is not None and k_cols.numel() > 1:
        mw = _filter_matrix_np(w, tuple(k_cols.double().tolist()), mode)
        x = x @ torch.from_numpy(mw).to(x.device, x.dtype).t()
    return x


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor | None:
    """SciPy's ``gaussian_filter1d`` kernel: radius ``int(truncate * sigma + 0.5)``; ``None`` for sigma 0."""
    if sigma <= 1e-15:
        return None
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """``skimage.filters.gaussian(x, sigma, channel_axis=...)``: each channel blurred over H and W.

    The defaults are scikit-image's (``mode="nearest"``, ``truncate=4``).

    Shape:
        x: ``(N, C, H, W)`` → ``(N, C, H, W)``
    """
    k = gaussian_kernel1d(sigma, truncate)
    return separable(x, k, k, mode) if k is not None else x.clone()


@lru_cache(maxsize=64)
def _disk_np(radius: float, alias_blur: float) -> np.ndarray:
    # An aliased disk on a grid of at least 17×17, normalised, then smoothed by OpenCV's 3×3 (5×5 for radius
    # > 8) Gaussian with sigma alias_blur and BORDER_REFLECT_101: the reference's ``disk`` helper.
    grid: np.ndarray = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(grid, grid)
    aliased = np.asarray((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    t = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_blur**2))
    g = (g / g.sum()).astype(np.float32)
    k = torch.from_numpy(aliased)[None, None].double()
    gk = torch.from_numpy(g).double()
    smoothed = separable(k, gk, gk, "reflect")[0, 0]
    return smoothed.float().numpy()


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The anti-aliased disk kernel of defocus blur (float32, as OpenCV computes it).

    Shape:
        Output: ``(K, K)`` with ``K = 17`` for radius <= 8, else ``2 * radius + 1``.
    """
    return torch.from_numpy(_disk_np(float(radius), float(alias_blur)).copy())


# ---------------------------------------------------------------- geometry


def motion_blur(x: Tensor, radius: int, sigma: float, angles_deg: Tensor) -> Tensor:
    """ImageMagick's ``-motion-blur radius x sigma + angle``, one angle per image.

    A one-sided Gaussian kernel of width ``2 * radius + 1`` along the direction ``angle``: output pixel
    ``p`` is ``sum_i k_i x(p + round(i * (cos a, sin a)))`` with edge replication, where the tap offsets
    are rounded as ImageMagick does (``ceil(t - 0.5)``) and taps stop where the motion leaves the image.

    Shape:
        - x: ``(N, C, H, W)``; angles_deg: ``(N,)``
        - Output: ``(N, C, H, W)``
    """
    n, c, h, w = x.shape
    width = 2 * int(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * float(sigma) ** 2))
    kernel = kernel / kernel.sum()
    rad = torch.deg2rad(angles_deg.to(torch.float64).cpu())
    p0, p1 = width * torch.sin(rad), width * torch.cos(rad)
    hyp = torch.hypot(p0, p1)
    oy = torch.ceil(taps[:, None] * p0[None] / hyp[None] - 0.5).long()  # (taps, N) offsets along H
    ox = torch.ceil(taps[:, None] * p1[None] / hyp[None] - 0.5).long()  # (taps, N) offsets along W
    inside = (oy.abs() < h) & (ox.abs() < w)
    alive = torch.cumprod(inside.long(), dim=0).bool()  # the reference stops at the first tap outside
    r = min(width - 1, max(h, w))
    xp = F.pad(x, (r, r, r, r), mode="replicate")  # edge replication = clamped coordinates
    hp, wp = h + 2 * r, w + 2 * r
    flat = xp.reshape(n, c, hp * wp)
    base = ((torch.arange(h)[:, None] + r) * wp + torch.arange(w)[None, :] + r).reshape(1, h * w).to(x.device)
    shift = (oy.clamp(-r, r) * wp + ox.clamp(-r, r)).to(x.device)  # (taps, N)
    weight = (alive.double() * kernel[:, None]).to(x.device, x.dtype)  # (taps, N)
    out = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device)
    for i in range(width):
        if not bool(alive[i].any()):
            break
        idx = (base + shift[i][:, None]).unsqueeze(1).expand(n, c, h * w)
        out.addcmul_(flat.gather(2, idx), weight[i].view(n, 1, 1))
    return out.view(n, c, h, w)


@lru_cache(maxsize=256)
def _zoom_matrix_np(size: int, factor: float) -> np.ndarray:
    # rows of the zoomed-and-cropped line as linear combinations of the input line (see clipped_zoom)
    crop = math.ceil(size / factor)
    start = (size - crop) // 2
    out = round(crop * factor)
    trim = (out - size) // 2
    m = np.zeros((size, size))
    for i in range(size):
        o = i + trim
        pos = o * (crop - 1) / (out - 1) if out > 1 else 0.0
        lo = min(math.floor(pos), crop - 1)
        hi = min(lo + 1, crop - 1)
        frac = pos - lo
        m[i, start + lo] += 1 - frac
        m[i, start + hi] += frac
    return m


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre by ``factor`` keeping the size (the reference's ``clipped_zoom``).

    The central ``ceil(H / factor)`` crop is resized to ``round(crop * factor)`` with linear interpolation on
    a grid whose corners align (``scipy.ndimage.zoom(order=1)``), then cropped back to ``H × W`` (centred).
    Both steps are linear, so they run as one matrix product per side.

    Shape:
        x: ``(N, C, H, W)`` → ``(N, C, H, W)``
    """
    h, w = x.shape[-2:]
    mh = torch.from_numpy(_zoom_matrix_np(h, float(factor))).to(x.device, x.dtype)
    mw = torch.from_numpy(_zoom_matrix_np(w, float(factor))).to(x.device, x.dtype)
    return mh @ x @ mw.t()


def bilinear_sample(x: Tensor, ys: Tensor, xs: Tensor, mode: str) -> Tensor:
    """Sample ``x`` at real pixel coordinates with bilinear interpolation and a border mode.

    ``mode="symmetric"`` mirrors coordinates about the pixel edges -0.5 and n - 0.5 (SciPy
    ``map_coordinates(order=1, mode="reflect")``); ``mode="reflect"`` mirrors them about the centres of the
    edge pixels, which for bilinear interpolation is the same as mapping the four neighbours with
    ``BORDER_REFLECT_101`` (OpenCV ``warpAffine``). Runs on ``F.grid_sample``.

    Shape:
        - x: ``(N, C, H, W)``; ys, xs: ``(N, Ho, Wo)`` (row and column coordinates)
        - Output: ``(N, C, Ho, Wo)``
    """
    h, w = x.shape[-2:]
    if mode == "reflect":
        gx = 2 * xs / max(w - 1, 1) - 1
        gy = 2 * ys / max(h - 1, 1) - 1
        align = True
    elif mode == "symmetric":
        gx = (2 * xs + 1) / w - 1
        gy = (2 * ys + 1) / h - 1
        align = False
    else:
        raise ValueError(f"unknown border mode {mode!r}")
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=align)


@lru_cache(maxsize=64)
def _pillow_box_np(in_size: int, out_size: int) -> np.ndarray:
    # Pillow's ImagingResample coefficients for the BOX filter (support 0.5, scaled by the reduction factor):
    # output sample i averages the inputs j whose centres fall in (centre - scale/2, centre + scale/2].
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        for j in range(lo, hi):
            t = (j - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                m[i, j] = 1.0
        total = m[i].sum()
        if total:
            m[i] /= total
    return m


def pillow_box_resize(x: Tensor, height: int, width: int) -> Tensor:
    """``PIL.Image.resize((width, height), Image.BOX)`` in float (Pillow rounds to 8 bits after each pass).

    Shape:
        x: ``(N, C, H, W)`` → ``(N, C, height, width)``
    """
    mh = torch.from_numpy(_pillow_box_np(x.shape[-2], height)).to(x.device, x.dtype)
    mw = torch.from_numpy(_pillow_box_np(x.shape[-1], width)).to(x.device, x.dtype)
    return torch.einsum("ih,nchw,jw->ncij", mh, x, mw)


# ---------------------------------------------------------------- textures


def plasma_fractal(g: torch.Generator, n: int, mapsize: int, wibbledecay: float, like: Tensor) -> Tensor:
    """Diamond-square height maps in [0, 1], one per image (the reference's ``plasma_fractal``).

    Shape:
        Output: ``(N, mapsize, mapsize)`` (``mapsize`` a power of two).
    """
    m = torch.zeros((n, mapsize, mapsize), dtype=torch.float64, device=like.device)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(a: Tensor) -> Tensor:
        noise = uniform(g, -wibble, wibble, tuple(a.shape), a)
        return a / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        # squares: the centre of each square gets the mean of its corners plus noise
        corners = m[:, 0:mapsize:step, 0:mapsize:step]
        acc = corners + torch.roll(corners, shifts=-1, dims=1)
        acc = acc + torch.roll(acc, shifts=-1, dims=2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(acc)
        # diamonds: the edge midpoints get the mean of their four neighbours plus noise
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = dr + torch.roll(dr, shifts=1, dims=1) + ul + torch.roll(ul, shifts=-1, dims=2)
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, shifts=1, dims=2) + ul + torch.roll(ul, shifts=-1, dims=1)
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return (m / m.amax(dim=(1, 2), keepdim=True)).to(like.dtype)


def next_power_of_2(v: int) -> int:
    """Smallest power of two >= ``v``."""
    return 1 if v <= 1 else 2 ** (v - 1).bit_length()


# ---------------------------------------------------------------- colour


def rgb_to_gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma (OpenCV ``COLOR_RGB2GRAY``); grey input is returned as is: :func:`robustlab.transforms.luma`.

    Shape:
        x: ``(N, C, H, W)`` → ``(N, 1, H, W)``
    """
    return luma(x)
