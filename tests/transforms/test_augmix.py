"""AugMix's ops batched in torch against Pillow one image at a time, the chains' draws, and the two mixtures.

uint8 inputs: equal to PIL (lookup tables, ``ImageEnhance``), and the resampling ops within one level where PIL's
double value lies within 1e-3 of an integer (ours is float32). Float inputs: the lookup-table ops on the grid
``k / 255`` equal to PIL; the affine ops continuous, so ``0 ≤ 255 · ours − PIL < 1`` (PIL truncates); the
``ImageEnhance`` ops within 1.5 grey levels (PIL rounds each pixel's grey and the smoothed image first).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch import Tensor

from robustlab.transforms import (
    AUGMAX_OPS,
    AUGMIX_ALL_OPS,
    apply_op,
    augmax_mix,
    augmix_mix,
    autocontrast,
    enhance_brightness,
    enhance_color,
    enhance_contrast,
    enhance_sharpness,
    equalize,
    op_parameter,
    ops_for,
    pil_rotate,
    posterize,
    sample_chains,
    shear_x,
    shear_y,
    solarize,
    translate_x,
    translate_y,
)


def _images(n: int, channels: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 images ``(n, channels, size, size)``: a gradient plus noise squeezed into a different level range per
    image and channel (so autocontrast and equalize have work), one constant channel (their identity case) and one
    image with many pixels at its top level (equalize's table reaches past 255 there, which PIL clips)."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(size), np.arange(size)) / (2 * size - 2)
    out = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        for c in range(channels):
            lo = rng.integers(0, 120)
            hi = rng.integers(lo + 1, 256)
            v = np.clip(ramp + 0.25 * rng.standard_normal((size, size)), 0, 1)
            out[i, c] = np.round(lo + (hi - lo) * v)
    out[0, 0] = 77
    out[-1, :, : size // 3] = 255
    return out


def _float(a: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.from_numpy(a).to(dtype) / 255.0


def _pil(a: np.ndarray) -> Image.Image:
    """One ``(C, H, W)`` uint8 image as PIL ``L`` or ``RGB``."""
    return Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))


def _unpil(im: Image.Image) -> np.ndarray:
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _levels(t: Tensor) -> np.ndarray:
    return (t.double() * 255.0).numpy()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", ["autocontrast", "equalize"])
def test_histogram_ops_equal_pil(op: str, channels: int) -> None:
    a = _images(6, channels, size=32)  # 1024 pixels: equalize's step is 4 at most (1 or 0 on 16 × 16 images)
    fn = {"autocontrast": autocontrast, "equalize": equalize}[op]
    ours = fn(_float(a))
    pil = getattr(ImageOps, op)
    expected = np.stack([_unpil(pil(_pil(img))) for img in a])
    np.testing.assert_array_equal(_levels(ours).round(), expected)
    assert np.abs(_levels(ours) - expected).max() < 1e-4  # on the grid k / 255
    np.testing.assert_array_equal(fn(torch.from_numpy(a)).numpy(), expected)  # uint8 in, uint8 out
    assert not np.array_equal(expected, a)  # the images do change


@pytest.mark.parametrize("channels", [1, 3])
def test_posterize_and_solarize_equal_pil(channels: int) -> None:
    a = _images(8, channels)
    x = _float(a)
    bits = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    expected = np.stack([_unpil(ImageOps.posterize(_pil(img), int(b))) for img, b in zip(a, bits, strict=True)])
    assert np.abs(_levels(posterize(x, bits)) - expected).max() < 1e-4
    np.testing.assert_array_equal(posterize(torch.from_numpy(a), bits).numpy(), expected)
    thresholds = torch.tensor([0, 1, 100, 128, 180, 254, 255, 256])
    expected = np.stack([_unpil(ImageOps.solarize(_pil(img), int(t))) for img, t in zip(a, thresholds, strict=True)])
    assert np.abs(_levels(solarize(x, thresholds)) - expected).max() < 1e-4
    np.testing.assert_array_equal(solarize(torch.from_numpy(a), thresholds).numpy(), expected)


def _pil_affine_ref(img: Image.Image, name: str, p: float) -> Image.Image:
    """AugMix's ``augmentations.py`` calls, at a given parameter."""
    size = img.size
    if name == "rotate":
        return img.rotate(p, resample=Image.Resampling.BILINEAR)
    data = {
        "shear_x": (1, p, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, p, 1, 0),
        "translate_x": (1, 0, p, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, p),
    }[name]
    return img.transform(size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)


GEOMETRIC = {
    "rotate": (pil_rotate, [-8.0, -3.0, 0.0, 5.0, 30.0, 90.0]),
    "shear_x": (shear_x, [-0.09, -0.03, 0.0, 0.003, 0.05, 0.3]),
    "shear_y": (shear_y, [-0.09, -0.03, 0.0, 0.003, 0.05, 0.3]),
    "translate_x": (translate_x, [-3.0, -1.0, 0.0, 2.0, 3.0, 1.5]),
    "translate_y": (translate_y, [-3.0, -1.0, 0.0, 2.0, 3.0, -0.25]),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_geometric_ops_match_pil(name: str, channels: int) -> None:
    fn, params = GEOMETRIC[name]
    a = _images(len(params), channels, size=12)
    p = torch.tensor(params, dtype=torch.float64)
    expected = np.stack([_unpil(_pil_affine_ref(_pil(img), name, v)) for img, v in zip(a, params, strict=True)])
    for dtype in (torch.float32, torch.float64):
        diff = _levels(fn(_float(a, dtype), p)) - expected  # PIL truncates its bilinear value to uint8
        assert diff.min() > -1e-3 and diff.max() < 1 + 1e-3
    # uint8: truncated like PIL; off by one level only where PIL's value is within 1e-3 of an integer
    diff = fn(torch.from_numpy(a), p).numpy().astype(int) - expected
    assert np.abs(diff).max() <= 1 and (diff == 0).mean() > 0.99
    assert (expected == 0).any()  # the fill is exercised


ENHANCE = {
    "color": (enhance_color, ImageEnhance.Color),
    "contrast": (enhance_contrast, ImageEnhance.Contrast),
    "brightness": (enhance_brightness, ImageEnhance.Brightness),
    "sharpness": (enhance_sharpness, ImageEnhance.Sharpness),
}


@pytest.mark.parametrize("name", list(ENHANCE))
def test_enhance_ops_match_pil(name: str) -> None:
    fn, enhancer = ENHANCE[name]
    factors = [0.118, 0.3, 0.64, 1.0, 1.5]
    for channels in (3,) if name == "color" else (1, 3):
        a = _images(len(factors), channels, seed=1)
        ours = _levels(fn(_float(a, torch.float64), torch.tensor(factors)))
        expected = np.stack([_unpil(enhancer(_pil(img)).enhance(f)) for img, f in zip(a, factors, strict=True)]).astype(
            float
        )
        assert np.abs(ours - expected).max() <= 1.5
        exact = fn(torch.from_numpy(a), torch.tensor(factors)).numpy()  # uint8: PIL's integer arithmetic
        np.testing.assert_array_equal(exact, expected)


def test_colour_op_refuses_grey_images() -> None:
    with pytest.raises(ValueError, match="3-channel"):
        enhance_color(torch.rand(2, 1, 4, 4), torch.ones(2))


def test_identity_parameters_return_the_input() -> None:
    x = torch.rand(4, 3, 9, 11)  # off the uint8 grid: the geometric, solarize and enhance identities are exact
    zero, one = torch.zeros(4), torch.ones(4)
    for fn in (pil_rotate, shear_x, shear_y, translate_x, translate_y):
        assert torch.equal(fn(x, zero), x)
    assert torch.equal(solarize(x, torch.full((4,), 256)), x)
    for enhance in (enhance_color, enhance_contrast, enhance_brightness, enhance_sharpness):
        assert torch.equal(enhance(x, one), x)
    grid = _float(_images(4, 3))
    assert torch.equal(posterize(grid, torch.full((4,), 8)), grid)
    flat = torch.full((2, 3, 5, 5), 0.4)  # one level: autocontrast and equalize leave it
    assert torch.equal(autocontrast(flat), torch.round(flat * 255) / 255)
    assert torch.equal(equalize(flat), torch.round(flat * 255) / 255)


@pytest.mark.parametrize("name", AUGMIX_ALL_OPS)
def test_batched_equals_one_at_a_time(name: str) -> None:
    x = _float(_images(5, 3, seed=2))
    g = torch.Generator().manual_seed(3)
    level = 0.1 + 2.9 * torch.rand(5, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(5, generator=g) > 0.5, -1.0, 1.0)
    p = op_parameter(name, level, sign, 16, 16)
    batched = apply_op(name, x, p)
    single = torch.cat([apply_op(name, x[i : i + 1], p[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)


def test_levels_follow_augmix_parameters() -> None:
    levels = [0.1, 0.5, 0.9375, 1.0, 1.25, 1.5, 2.0, 2.5, 2.8125, 2.999]
    lv, plus = torch.tensor(levels, dtype=torch.float64), torch.ones(len(levels))

    def param(name: str, size: int = 32) -> list[float]:
        return op_parameter(name, lv, plus, size, size).tolist()

    assert param("posterize") == [4 - int(v * 4 / 10) for v in levels]
    assert param("rotate") == [int(v * 30 / 10) for v in levels]
    assert param("solarize") == [256 - int(v * 256 / 10) for v in levels]
    assert param("translate_x") == [int(v * (32 / 3) / 10) for v in levels]
    assert param("translate_y", 64) == [int(v * (64 / 3) / 10) for v in levels]
    assert param("shear_y") == [v * 0.3 / 10.0 for v in levels]
    assert param("sharpness") == [v * 1.8 / 10.0 + 0.1 for v in levels]
    minus = op_parameter("shear_x", lv, -plus, 32, 32)
    assert minus.tolist() == [-v * 0.3 / 10.0 for v in levels]
    assert op_parameter("solarize", lv, -plus, 32, 32).tolist() == param("solarize")  # unsigned op


def _chains_one_at_a_time(x: Tensor, seed: int, width: int, ops: tuple[str, ...], severity: float) -> Tensor:
    """``sample_chains``'s draws, in its order, applied one row (image, chain) and one op at a time."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = x.shape
    n = width * b
    depths = torch.randint(1, 4, (n,), generator=g)
    choice = torch.randint(0, len(ops), (3, n), generator=g)
    levels = 0.1 + (severity - 0.1) * torch.rand(3, n, generator=g, dtype=torch.float64)
    signs = torch.where(torch.rand(3, n, generator=g) > 0.5, -1.0, 1.0)
    q = torch.round(x * 255).to(torch.uint8)  # the chains run on uint8 levels
    rows = []
    for r in range(n):
        img = q[r % b : r % b + 1]
        for step in range(int(depths[r])):
            name = ops[int(choice[step, r])]
            img = apply_op(name, img, op_parameter(name, levels[step, r : r + 1], signs[step, r : r + 1], h, w))
        rows.append(img)
    return torch.cat(rows).view(width, b, c, h, w).float() / 255.0


def test_chains_equal_a_per_image_loop_and_are_deterministic() -> None:
    x = _float(_images(6, 3, seed=4))
    chains = sample_chains(x, torch.Generator().manual_seed(11))
    assert chains.shape == (3, *x.shape) and not chains.requires_grad
    assert chains.min() >= 0 and chains.max() <= 1
    torch.testing.assert_close(chains, _chains_one_at_a_time(x, 11, 3, AUGMAX_OPS, 3.0), atol=1e-6, rtol=0)
    assert torch.equal(chains, sample_chains(x, torch.Generator().manual_seed(11)))
    assert not torch.equal(chains, sample_chains(x, torch.Generator().manual_seed(12)))
    assert not torch.equal(chains[0], chains[1])  # the chains of one image differ


def test_chains_all_ops_any_order_large_severity() -> None:
    """The batched chains group rows by op (and translations by shift) whatever the op order; at severity 40 the
    shifts reach past the image (all fill), solarize thresholds drop below 1 and the blends clip."""
    x = _float(_images(6, 3, seed=9))
    ops = tuple(reversed(AUGMIX_ALL_OPS))
    chains = sample_chains(x, torch.Generator().manual_seed(3), ops=ops, severity=40.0)
    assert torch.equal(chains, _chains_one_at_a_time(x, 3, 3, ops, 40.0))


def test_chains_replayed_with_pil() -> None:
    """The chains on uint8 images against the same draws replayed with Pillow one image at a time: equal but for
    rare one-level differences of the resampling (which a later op can carry along)."""
    a = _images(4, 3, size=32, seed=7)
    chains = sample_chains(torch.from_numpy(a), torch.Generator().manual_seed(5))
    assert chains.dtype == torch.uint8
    g = torch.Generator().manual_seed(5)
    n = 3 * len(a)
    depths = torch.randint(1, 4, (n,), generator=g)
    choice = torch.randint(0, len(AUGMAX_OPS), (3, n), generator=g)
    levels = 0.1 + 2.9 * torch.rand(3, n, generator=g, dtype=torch.float64)
    signs = torch.where(torch.rand(3, n, generator=g) > 0.5, -1.0, 1.0)
    expected = []
    for r in range(n):
        img = _pil(a[r % len(a)])
        for step in range(int(depths[r])):
            name = AUGMAX_OPS[int(choice[step, r])]
            p = float(op_parameter(name, levels[step, r : r + 1], signs[step, r : r + 1], 32, 32)[0])
            if name in ("autocontrast", "equalize"):
                img = getattr(ImageOps, name)(img)
            elif name in ("posterize", "solarize"):
                img = getattr(ImageOps, name)(img, int(p))
            else:
                img = _pil_affine_ref(img, name, p)
        expected.append(_unpil(img))
    diff = chains.reshape(n, 3, 32, 32).numpy().astype(int) - np.stack(expected)
    assert (diff == 0).mean() > 0.99


def test_chains_fixed_depth_and_one_op() -> None:
    x = _float(_images(5, 3, seed=5))
    chains = sample_chains(x, torch.Generator().manual_seed(0), width=4, depth=1, ops=("posterize",))
    # severity 3: levels in [0.1, 3) keep 4 or 3 bits
    four, three = posterize(x, torch.full((5,), 4)), posterize(x, torch.full((5,), 3))
    for chain in chains:
        for i in range(5):
            assert torch.equal(chain[i], four[i]) or torch.equal(chain[i], three[i])
    with pytest.raises(ValueError, match="at least 1"):
        sample_chains(x, torch.Generator(), depth=0)
    with pytest.raises(ValueError, match="unknown"):
        sample_chains(x, torch.Generator(), ops=("blur",))


def test_single_channel_images_skip_colour_ops_and_record_it() -> None:
    assert ops_for(3) == (AUGMIX_ALL_OPS, ())
    usable, skipped = ops_for(1)
    assert skipped == ("color",) and "color" not in usable and len(usable) == len(AUGMIX_ALL_OPS) - 1
    assert ops_for(1, AUGMAX_OPS) == (AUGMAX_OPS, ())
    grey = _float(_images(4, 1, seed=6))
    record: list[str] = []
    chains = sample_chains(grey, torch.Generator().manual_seed(0), ops=AUGMIX_ALL_OPS, skipped=record)
    assert record == ["color"] and chains.shape == (3, *grey.shape)
    with pytest.raises(ValueError, match="none of the ops"):
        sample_chains(grey, torch.Generator(), ops=("color",))
    record.clear()
    sample_chains(_float(_images(2, 3)), torch.Generator().manual_seed(0), ops=AUGMIX_ALL_OPS, skipped=record)
    assert record == []


def test_augmix_mix_is_a_random_convex_mixture() -> None:
    x = torch.rand(8, 3, 5, 5)
    chains = torch.stack([torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)])
    out = augmix_mix(x, chains, torch.Generator().manual_seed(0))
    ratio = (out / x).flatten(1)  # (1 - m) per image
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all() and ratio[:, 0].std() > 0.05
    assert torch.equal(out, augmix_mix(x, chains, torch.Generator().manual_seed(0)))
    ones = torch.stack([torch.ones_like(x)] * 3)  # Σ w = 1: the mixture of ones is one
    blend = augmix_mix(torch.ones_like(x), ones, torch.Generator().manual_seed(1))
    torch.testing.assert_close(blend, torch.ones_like(x))


def test_augmax_mix_weights_identity_and_gradients() -> None:
    b, k = 4, 3
    x = torch.rand(b, 3, 6, 6)
    chains = torch.rand(k, b, 3, 6, 6)
    q = torch.randn(b, k)
    assert torch.equal(augmax_mix(x, chains, torch.zeros(b), q), x)
    # chain i is the unit image of channel i, so with m = 1 the output's channel i is softmax(q)_i
    basis = torch.eye(k).view(k, 1, k, 1, 1).expand(k, b, k, 6, 6)
    w = augmax_mix(torch.zeros(b, k, 6, 6), basis, torch.ones(b), q)[:, :, 0, 0]
    torch.testing.assert_close(w, torch.softmax(q, 1))
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(b))
    m = torch.full((b,), 0.5, requires_grad=True)
    qq = q.clone().requires_grad_(True)
    augmax_mix(x, chains, m, qq).square().sum().backward()
    assert m.grad is not None and qq.grad is not None
    assert torch.isfinite(m.grad).all() and (m.grad != 0).all()
    assert torch.isfinite(qq.grad).all() and (qq.grad.abs().sum(1) > 0).all()
    torch.testing.assert_close(qq.grad.sum(1), torch.zeros(b), atol=1e-4, rtol=0)  # softmax: shift invariance
    with pytest.raises(ValueError, match="q must be"):
        augmax_mix(x, chains, m, torch.zeros(b, k + 1))
    levels = torch.randint(0, 256, (k, b, 3, 6, 6), dtype=torch.uint8)  # uint8 chains are read as k / 255
    torch.testing.assert_close(augmax_mix(x, levels, m, q), augmax_mix(x, levels.float() / 255, m, q))
    with pytest.raises(ValueError, match="floating"):
        augmax_mix(levels[0], levels, m, q)


def test_rotation_turns_counter_clockwise() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 2] = 1.0  # top centre
    out = pil_rotate(x, torch.tensor([90.0]))
    assert math.isclose(float(out[0, 0, 2, 0]), 1.0, abs_tol=1e-6)  # now at the left centre
