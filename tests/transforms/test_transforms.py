"""Known answers of the differentiable transforms and of the semantic threat model that renders with them.

Exact where the arithmetic is exact (identities, integer shifts, grey pixels), to float32 rounding (1e-5) where a
rotation by 90° or a colour-space round trip is involved, and closed forms for the blur kernel.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.threat.semantic import PRESETS, SemanticThreat, semantic_threat
from robustlab.transforms import (
    ATTRIBUTES,
    ORDER,
    apply_attributes,
    contrast,
    gamma,
    gaussian_blur,
    hue,
    hue_hsv,
    luma,
    rotate,
    saturation,
    translate,
)

DTYPES = [torch.float32, torch.float64]

#: A value away from each attribute's identity, inside its default range, where every transform has a gradient
#: (no integer shift, no clamp of the HSV saturation at 1).
NON_IDENTITY = {
    "rotation": 7.0,
    "translate_x": 0.4,
    "translate_y": -1.3,
    "scale": 1.07,
    "hue": 0.3,
    "hue_hsv": 0.5,
    "saturation": 1.2,
    "saturation_hsv": 0.8,
    "contrast": 1.2,
    "contrast_mult": 0.9,
    "brightness": 0.05,
    "gamma": 0.8,
    "blur": 0.8,
}


def images(n: int = 4, size: int = 9, dtype: torch.dtype = torch.float32, seed: int = 0) -> Tensor:
    """Random colour images in [0, 1] with some pixels exactly 0 and 1 (the box edges)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)
    x[:, :, 0, 0] = 0.0
    x[:, :, -1, -1] = 1.0
    x[:, 0, 1, 1] = 1.0  # one saturated channel
    return x.to(dtype)


def grey(n: int = 3, size: int = 9, dtype: torch.dtype = torch.float32) -> Tensor:
    return images(n, size, dtype)[:, :1].expand(-1, 3, -1, -1).contiguous()


def per_image(value: float, n: int, dtype: torch.dtype = torch.float32, requires_grad: bool = False) -> Tensor:
    return torch.full((n,), value, dtype=dtype, requires_grad=requires_grad)


# ---- identities ----


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ORDER)
def test_every_attribute_returns_its_input_exactly_at_its_identity(name: str, dtype: torch.dtype) -> None:
    x = images(dtype=dtype)
    out = apply_attributes(x, {name: per_image(ATTRIBUTES.get(name).identity, 4, dtype)})
    assert out.dtype == dtype
    assert torch.equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_attributes_at_their_identity_together_return_the_input_exactly(dtype: torch.dtype) -> None:
    x = images(dtype=dtype)
    values = {name: per_image(ATTRIBUTES.get(name).identity, 4, dtype) for name in ORDER}
    for padding in ("zeros", "reflection"):
        assert torch.equal(apply_attributes(x, values, padding), x)


# ---- the threat model: render and project ----


def all_attributes_threat(pixel_eps: float = 4 / 255) -> SemanticThreat:
    """Every attribute over a range wider than the presets' (the renders must stay in the box regardless)."""
    ranges = {
        "rotation": (-45.0, 45.0),
        "translate_x": (-5.0, 5.0),
        "translate_y": (-5.0, 5.0),
        "scale": (0.5, 2.0),
        "hue": (-math.pi, math.pi),
        "hue_hsv": (-math.pi, math.pi),
        "saturation": (0.0, 3.0),
        "saturation_hsv": (0.0, 3.0),
        "contrast": (0.0, 3.0),
        "contrast_mult": (0.0, 3.0),
        "brightness": (-1.0, 1.0),
        "gamma": (0.2, 5.0),
        "blur": (0.01, 5.0),
    }
    return semantic_threat("mild", list(ORDER), ranges, pixel_eps)


@pytest.mark.parametrize("which", [*PRESETS, "every attribute, wide ranges"])
def test_renders_stay_in_the_unit_box_for_random_parameters(which: str) -> None:
    threat = all_attributes_threat() if which not in PRESETS else semantic_threat(which)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 12, 12, generator=g)
    x[:4] = x[:4].round()  # some images of 0s and 1s only
    u = torch.rand(16, threat.size, generator=g) * 2 - 1
    u[0], u[1] = 1.0, -1.0  # both ends of every range
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * threat.pixel_eps
    for d in (None, delta):
        out = threat.render(x, u, d)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_project_clips_parameters_into_the_threat_model_and_keeps_those_inside() -> None:
    threat = all_attributes_threat(pixel_eps=2 / 255)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(8, threat.size, generator=g) * 3
    delta = torch.randn(8, 3, 6, 6, generator=g) * 0.1
    pu, pd = threat.project(u, delta)
    assert pd is not None
    eps32 = float(torch.tensor(threat.pixel_eps, dtype=torch.float32))  # the budget as float32 images hold it
    assert float(pu.abs().max()) <= 1.0 and float(pd.abs().max()) <= eps32
    inside = u.abs() <= 1
    assert torch.equal(pu[inside], u[inside])
    assert torch.equal(pu[~inside], u[~inside].sign())
    small = delta.abs() <= eps32
    assert torch.equal(pd[small], delta[small])
    assert threat.project(u, None)[1] is None


def test_values_and_normalise_map_the_ends_of_each_range_to_plus_and_minus_one() -> None:
    threat = semantic_threat("mild")
    low = torch.tensor([threat.low], dtype=torch.float64)
    high = torch.tensor([threat.high], dtype=torch.float64)
    assert torch.equal(threat.normalise(low), -torch.ones_like(low))
    assert torch.equal(threat.normalise(high), torch.ones_like(high))
    u = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(1).expand(-1, threat.size)
    assert torch.allclose(threat.normalise(threat.values(u)), u, atol=1e-12)


# ---- geometry ----


@pytest.mark.parametrize("size", [7, 8])
def test_a_rotation_by_90_degrees_is_a_quarter_turn_counter_clockwise(size: int) -> None:
    x = images(2, size)
    out = rotate(x, per_image(90.0, 2))
    # torch.rot90 with k=1 over (H, W) turns the picture counter-clockwise as displayed
    assert (out - torch.rot90(x, 1, dims=(2, 3))).abs().max() < 1e-5


def test_plus_90_degrees_moves_the_top_middle_pixel_to_the_left_middle() -> None:
    x = torch.zeros(2, 1, 7, 7)
    x[:, 0, 0, 3] = 1.0
    out = rotate(x, torch.tensor([90.0, -90.0]))
    left, right = torch.zeros(7, 7), torch.zeros(7, 7)
    left[3, 0], right[3, 6] = 1.0, 1.0
    assert (out[0, 0] - left).abs().max() < 1e-5
    assert (out[1, 0] - right).abs().max() < 1e-5


@pytest.mark.parametrize(("dx", "dy"), [(2, 1), (-3, 2), (0, -1)])
def test_an_integer_translation_moves_the_content_right_and_down_exactly(dx: int, dy: int) -> None:
    x = images(2, 9)
    out = translate(x, torch.tensor([[dx, dy]] * 2, dtype=torch.float32), padding="zeros")
    expected = torch.zeros_like(x)
    h, w = x.shape[2:]
    expected[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    assert torch.equal(out, expected)


def test_reflection_padding_mirrors_about_the_edge_pixels() -> None:
    x = images(1, 6)
    out = translate(x, torch.tensor([[2.0, 0.0]]), padding="reflection")
    # column j of the output is input column j - 2, mirrored about column 0: -2 -> 2, -1 -> 1
    assert torch.equal(out[..., 2:], x[..., :-2])
    assert torch.equal(out[..., 0], x[..., 2])
    assert torch.equal(out[..., 1], x[..., 1])


# ---- colour ----


@pytest.mark.parametrize("dtype", DTYPES)
def test_yiq_hue_keeps_luma_and_rotating_back_restores_the_image(dtype: torch.dtype) -> None:
    x = images(4, dtype=dtype)
    theta = torch.tensor([0.3, -1.0, 2.5, math.pi], dtype=dtype)
    turned = hue(x, theta)
    assert (turned - x).abs().max() > 0.05
    assert (luma(turned) - luma(x)).abs().max() < 1e-5
    assert (hue(turned, -theta) - x).abs().max() < 1e-5
    assert (hue(x, per_image(2 * math.pi, 4, dtype)) - x).abs().max() < 1e-5


def test_yiq_hue_leaves_grey_images_unchanged() -> None:
    x = grey()
    assert (hue(x, per_image(1.0, 3)) - x).abs().max() < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturation_zero_gives_the_luma_in_every_channel(dtype: torch.dtype) -> None:
    x = images(dtype=dtype)
    out = saturation(x, per_image(0.0, 4, dtype))
    assert (out - luma(x).expand_as(x)).abs().max() < (1e-6 if dtype == torch.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrast_keeps_the_mean_luma_of_each_image(dtype: torch.dtype) -> None:
    x = images(dtype=dtype)
    out = contrast(x, torch.tensor([0.0, 0.5, 1.7, 3.0], dtype=dtype))
    mean = luma(x).mean(dim=(1, 2, 3))
    assert (luma(out).mean(dim=(1, 2, 3)) - mean).abs().max() < (1e-6 if dtype == torch.float32 else 1e-14)
    # factor 0: every pixel of every channel is the mean luma
    assert (out[0] - mean[0]).abs().max() < (1e-6 if dtype == torch.float32 else 1e-14)


def test_hsv_hue_by_a_full_turn_is_the_identity() -> None:
    x = images()
    assert (hue_hsv(x, per_image(2 * math.pi, 4)) - x).abs().max() < 1e-5
    assert (hue_hsv(x, per_image(-2 * math.pi, 4)) - x).abs().max() < 1e-5


def test_hsv_hue_leaves_grey_images_unchanged_with_a_zero_gradient() -> None:
    x = grey()
    angle = torch.tensor([0.7, -2.0, math.pi], requires_grad=True)
    out = hue_hsv(x, angle)
    assert torch.equal(out, x)
    (grad,) = torch.autograd.grad((out * torch.rand_like(out)).sum(), angle)
    assert torch.equal(grad, torch.zeros_like(grad))


# ---- blur ----


def test_blur_keeps_a_constant_image_constant() -> None:
    x = torch.full((3, 3, 8, 8), 0.37)
    out = gaussian_blur(x, torch.tensor([0.3, 0.8, 4.0]))
    assert (out - 0.37).abs().max() < 1e-6


def test_blur_of_a_centred_impulse_is_the_closed_form_5_tap_kernel() -> None:
    sigmas = [0.5, 0.8, 1.5]
    x = torch.zeros(3, 1, 9, 9, dtype=torch.float64)
    x[:, :, 4, 4] = 1.0
    out = gaussian_blur(x, torch.tensor(sigmas, dtype=torch.float64))
    for i, s in enumerate(sigmas):
        taps = [math.exp(-(k**2) / (2 * s**2)) for k in range(-2, 3)]
        w = torch.tensor(taps, dtype=torch.float64) / sum(taps)
        expected = torch.zeros(9, 9, dtype=torch.float64)
        expected[2:7, 2:7] = torch.outer(w, w)
        assert (out[i, 0] - expected).abs().max() < 1e-15


# ---- gradients ----


@pytest.mark.parametrize("name", ORDER)
def test_the_gradient_with_respect_to_every_attribute_is_finite_and_non_zero(name: str) -> None:
    x = F.interpolate(images(2, 4, seed=3)[:, :, 1:3, 1:3] * 0.8 + 0.1, size=(10, 10), mode="bilinear")
    value = per_image(NON_IDENTITY[name], 2, requires_grad=True)
    out = apply_attributes(x, {name: value}, "zeros")
    weights = torch.rand(out.shape, generator=torch.Generator().manual_seed(4))
    (grad,) = torch.autograd.grad((out * weights).sum(), value)
    assert torch.isfinite(grad).all()
    assert bool((grad.abs() > 1e-6).all()), grad


def test_rendering_only_some_attributes_keeps_the_others_at_their_identity_clamped_into_their_range() -> None:
    threat = semantic_threat("mild", ["hue", "brightness", "blur"], {"brightness": (0.02, 0.05), "blur": (0.8, 1.5)})
    x = images()
    u = torch.rand(4, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1
    at_identity = threat.identity(4, x)
    at_identity[:, 0] = u[:, 0]  # hue as given; brightness 0.02 and blur 0.8, the nearest values to no change
    only_hue = threat.render(x, u, only=torch.tensor([True, False, False]))
    assert torch.equal(only_hue, threat.render(x, at_identity))
    # attributes whose range holds their identity are left out, exactly as at their identity
    mild = semantic_threat("mild", ["hue", "brightness"])
    v = torch.rand(4, 2, generator=torch.Generator().manual_seed(6)) * 2 - 1
    hue_only = mild.render(x, v, only=torch.tensor([True, False]))
    assert torch.equal(hue_only, hue(x, mild.values(v)[:, 0]).clamp(0, 1))


def test_gamma_at_its_identity_passes_values_outside_the_box_through_exactly() -> None:
    # brightness can push values past 1 before gamma; a gamma of 1 must not clamp them before the blur mixes them
    x = images()
    values = {"brightness": per_image(0.2, 4), "blur": per_image(0.8, 4)}
    with_gamma = apply_attributes(x, {**values, "gamma": per_image(1.0, 4)})
    assert torch.equal(with_gamma, apply_attributes(x, values))
    # and inside the box it is the power
    g = torch.tensor([0.5, 0.8, 1.25, 2.0])
    assert (gamma(x, g) - x ** g.view(-1, 1, 1, 1)).abs().max() < 1e-6
