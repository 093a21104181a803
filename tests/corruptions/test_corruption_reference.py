"""Known answers: the deterministic corruptions against independent implementations of the reference
formulas (SciPy, Pillow, colorsys), the noisy ones against their distributions."""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from robustlab.data.corruptions import _ops, corrupt, get_corruption


def _smooth(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def test_gaussian_blur_is_scipy_gaussian_filter_nearest() -> None:
    x = _smooth()
    sigma = get_corruption("gaussian_blur").params(5, "cifar")
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    assert np.abs(corrupt(x, "gaussian_blur", 5).numpy() - ref).max() < 1e-12


def test_zoom_blur_matches_scipy_zoom() -> None:
    x = _smooth()
    zooms = get_corruption("zoom_blur").params(2, "cifar")
    out = x.numpy().copy()
    for z in zooms:
        for i, im in enumerate(x.numpy()):
            ch = int(np.ceil(32 / z))
            top = (32 - ch) // 2
            r = ndimage.zoom(im[:, top : top + ch, top : top + ch], (1, z, z), order=1)
            t = (r.shape[1] - 32) // 2
            out[i] += r[:, t : t + 32, t : t + 32]
    ref = np.clip(out / (len(zooms) + 1), 0, 1)
    assert np.abs(corrupt(x, "zoom_blur", 2).numpy() - ref).max() < 1e-9


def test_pixelate_matches_pillow_box_within_8bit_rounding() -> None:
    x = torch.round(_smooth(n=2).float() * 255) / 255
    c = get_corruption("pixelate").params(5, "cifar")
    ref = []
    for im in (x * 255).round().byte().permute(0, 2, 3, 1).numpy():
        p = Image.fromarray(im).resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
        ref.append(np.asarray(p))
    ref_t = torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2).float() / 255
    assert (corrupt(x, "pixelate", 5) - ref_t).abs().max() <= 1.01 / 255


@pytest.mark.parametrize(
    ("size", "severity", "grey"), [((32, 32), 1, False), ((28, 40), 5, False), ((17, 24), 3, True)]
)
def test_jpeg_is_bit_exact_with_pillow(size: tuple[int, int], severity: int, grey: bool) -> None:
    x = torch.nn.functional.interpolate(_smooth(n=3, seed=severity).float(), size=size, mode="bilinear")
    x = torch.round((x.mean(1, keepdim=True) if grey else x) * 255) / 255
    quality = get_corruption("jpeg_compression").params(severity, "cifar")
    ref = []
    for im in (x * 255).round().byte().permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(im[..., 0] if grey else im)).save(buf, "JPEG", quality=quality)
        dec = np.asarray(Image.open(buf))
        ref.append(dec[..., None] if grey else dec)
    ref_t = torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2).double()
    ours = torch.round(corrupt(x, "jpeg_compression", severity, constants="cifar").double() * 255)
    assert torch.equal(ours, ref_t)


def _hsv_reference(x: torch.Tensor, fn: object) -> torch.Tensor:
    out = x.clone()
    arr = x.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    res = np.array([colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*p))) for p in arr])  # type: ignore[operator]
    out.copy_(torch.from_numpy(res).view(x.shape[0], x.shape[2], x.shape[3], 3).permute(0, 3, 1, 2))
    return out.clamp(0, 1)


def test_brightness_and_saturate_are_the_hsv_round_trip() -> None:
    x = _smooth(n=1, size=16)
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 0.4  # grey: hue 0, so saturating turns it red as in scikit-image
    d = get_corruption("brightness").params(4, "cifar")
    ref = _hsv_reference(x, lambda h, s, v: (h, s, min(v + d, 1.0)))
    assert (corrupt(x, "brightness", 4) - ref).abs().max() < 1e-9
    f, o = get_corruption("saturate").params(5, "cifar")
    ref = _hsv_reference(x, lambda h, s, v: (h, min(max(s * f + o, 0.0), 1.0), v))
    assert (corrupt(x, "saturate", 5) - ref).abs().max() < 1e-9


def test_contrast_and_defocus_kernel() -> None:
    x = _smooth()
    m = x.mean(dim=(2, 3), keepdim=True)
    assert (corrupt(x, "contrast", 3) - ((x - m) * 0.4 + m).clamp(0, 1)).abs().max() < 1e-12
    k = _ops.disk_kernel(1.5, 0.1)
    assert k.shape == (17, 17) and abs(float(k.sum()) - 1) < 1e-5 and torch.equal(k, k.flip(0))


def test_motion_blur_kernel_at_angle_zero_is_one_sided_horizontal() -> None:
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 6] = 1.0
    y = _ops.motion_blur(x, 2, 1.0, torch.zeros(1))  # out(p) = sum_i k_i x(p + (0, i))
    k = torch.exp(-(torch.arange(5.0, dtype=torch.float64) ** 2) / 2)
    k /= k.sum()
    assert torch.allclose(y[0, 0, 4, 2:7], k.flip(0)) and y[0, 0, 4, 7:].sum() == 0 and y[0, 0, 3].sum() == 0


def test_plasma_fractal_is_normalised() -> None:
    m = _ops.plasma_fractal(torch.Generator().manual_seed(0), 3, 32, 3.0, torch.empty(0, dtype=torch.float64))
    assert m.shape == (3, 32, 32)
    assert torch.allclose(m.amin(dim=(1, 2)), torch.zeros(3, dtype=m.dtype))
    assert torch.allclose(m.amax(dim=(1, 2)), torch.ones(3, dtype=m.dtype))


@pytest.mark.parametrize(("name", "mean", "std"), [("gaussian_noise", 0.0, 0.08), ("speckle_noise", 0.0, 0.12)])
def test_additive_noise_has_the_published_distribution(name: str, mean: float, std: float) -> None:
    x = torch.full((4, 3, 32, 32), 0.5, dtype=torch.float64)
    d = corrupt(x, name, 3) - x
    scale = 0.5 if name == "speckle_noise" else 1.0  # speckle noise is multiplicative
    assert abs(float(d.mean())) < 0.005 and abs(float(d.std()) - std * scale) < 0.003


def test_shot_and_impulse_noise_statistics() -> None:
    x = torch.full((4, 3, 32, 32), 0.5, dtype=torch.float64)
    photons = get_corruption("shot_noise").params(5, "cifar")
    d = corrupt(x, "shot_noise", 5) - x  # variance of Poisson(x c) / c is x / c
    assert abs(float(d.var()) - 0.5 / photons) < 0.1 * 0.5 / photons
    y = corrupt(x, "impulse_noise", 5)
    amount = get_corruption("impulse_noise").params(5, "cifar")
    flipped = (y != x).double().mean()
    assert abs(float(flipped) - amount) < 0.01 and abs(float((y == 1).double().mean()) - amount / 2) < 0.01
