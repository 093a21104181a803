"""Bad input to the semantic threat model and attack: each case is one clear line (message checked), raised before
any result is returned; and what looks unusual but is fine (geometry on non-square images) works."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import attack
from robustlab.attacks._semantic import semantic_attack
from robustlab.errors import ConfigError, InputContractError, UnknownNameError
from robustlab.threat.semantic import semantic_threat
from robustlab.transforms import apply_attributes, rotate, translate

QUICK: dict[str, Any] = {"steps": 2, "restarts": 0, "grid": 3}


def problem(channels: int = 3, h: int = 8, w: int = 8, n: int = 4) -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    )
    x = torch.rand(n, channels, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@contextmanager
def one_line_error(kind: type[Exception], match: str) -> Iterator[None]:
    """``pytest.raises(kind, match=match)`` that also asserts the message is one line."""
    with pytest.raises(kind, match=match) as info:
        yield
    assert "\n" not in str(info.value), str(info.value)


# ---- names ----


def test_an_unknown_attribute_suggests_close_matches() -> None:
    with one_line_error(UnknownNameError, r"unknown attribute 'rotaton'\. Did you mean: rotation\?"):
        semantic_threat("mild", ["hue", "rotaton"])
    model, x, y = problem()
    with one_line_error(UnknownNameError, r"unknown attribute 'satuation'\. Did you mean: saturation"):
        attack(model, x, y, "semantic", attributes=["satuation"], **QUICK)
    with one_line_error(UnknownNameError, r"unknown attribute 'bluur'\. Did you mean: blur"):
        semantic_threat("mild", ranges={"bluur": (0.1, 1.0)})


def test_an_unknown_preset_suggests_close_matches_and_names_the_known_ones() -> None:
    with one_line_error(UnknownNameError, r"unknown semantic preset 'midl'\. Did you mean: mild\? .*caa, mild"):
        semantic_threat("midl")
    model, x, y = problem()
    with one_line_error(UnknownNameError, r"unknown semantic preset 'ca'\. Did you mean: caa"):
        semantic_attack(model, x, y, preset="ca", **QUICK)


def test_names_are_case_insensitive_like_every_registry() -> None:
    threat = semantic_threat("MILD", ["Hue", "ROTATION"], {"Rotation": (-5.0, 5.0)})
    assert threat.preset == "mild"
    assert threat.ranges() == {"rotation": (-5.0, 5.0), "hue": (-math.pi / 6, math.pi / 6)}


# ---- ranges ----


@pytest.mark.parametrize(
    ("attribute", "bounds", "message"),
    [
        ("saturation", (-0.1, 1.2), r"saturation: range -0\.1:1\.2 leaves its domain; values must be >= 0"),
        ("blur", (0.0, 1.0), r"blur: range 0:1 leaves its domain; values must be > 0"),
        ("blur", (-1.0, 1.0), r"blur: range -1:1 leaves its domain; values must be > 0"),
        ("blur", (0.5, 6.0), r"blur: range 0\.5:6 leaves its domain; values must be <= 5"),
        ("gamma", (0.0, 1.2), r"gamma: range 0:1\.2 leaves its domain; values must be > 0"),
        ("gamma", (0.0, 0.0), r"gamma: range 0:0 leaves its domain; values must be > 0"),
        ("scale", (0.0, 1.1), r"scale: range 0:1\.1 leaves its domain; values must be > 0"),
        ("rotation", (-200.0, 10.0), r"rotation: range -200:10 leaves its domain; values must be >= -180"),
        ("brightness", (0.1, -0.1), r"brightness: the range must be two finite numbers low <= high, got 0\.1:-0\.1"),
        ("hue", (0.0, math.nan), r"hue: the range must be two finite numbers low <= high"),
        ("hue", (0.1,), r"hue: a range is two numbers \(low, high\), got \(0\.1,\)"),
    ],
)
def test_a_range_outside_the_attributes_domain(attribute: str, bounds: tuple[float, ...], message: str) -> None:
    with one_line_error(ConfigError, message):
        semantic_threat("mild", [attribute], {attribute: bounds})  # type: ignore[dict-item]


def test_a_range_on_the_domains_edge_is_accepted() -> None:
    threat = semantic_threat("mild", ["saturation", "rotation"], {"saturation": (0.0, 2.0), "rotation": (-180, 180)})
    assert threat.ranges() == {"rotation": (-180.0, 180.0), "saturation": (0.0, 2.0)}


def test_a_range_for_an_attribute_not_varied() -> None:
    with one_line_error(ConfigError, r"a range is given for 'rotation', which is not among the attributes hue$"):
        semantic_threat("mild", ["hue"], {"rotation": (-5.0, 5.0)})
    model, x, y = problem()
    with one_line_error(ConfigError, r"a range is given for 'gamma', which is not among the attributes"):
        semantic_attack(model, x, y, preset="caa", ranges={"gamma": (0.9, 1.1)}, **QUICK)


def test_no_attribute_or_one_named_twice() -> None:
    with one_line_error(ConfigError, "a semantic threat model needs at least one attribute"):
        semantic_threat("mild", [])
    with one_line_error(ConfigError, "attribute.s. named twice: hue"):
        semantic_threat("mild", ["hue", "rotation", "Hue"])


# ---- pixel budget, padding, search settings ----


@pytest.mark.parametrize("eps", [-0.1, math.nan, math.inf])
def test_a_pixel_budget_that_is_negative_or_not_finite(eps: float) -> None:
    with one_line_error(ConfigError, r"the pixel budget must be a finite number >= 0 \(0: attributes only\), got"):
        semantic_threat("mild", pixel_eps=eps)


def test_a_negative_pixel_budget_through_attack_is_read_as_a_bad_eps() -> None:
    model, x, y = problem()
    with one_line_error(ConfigError, r"eps must be >= 0, got -0\.1"):
        attack(model, x, y, "semantic", eps=-0.1, **QUICK)
    with one_line_error(ConfigError, "eps must be >= 0, got '-1/255'"):
        attack(model, x, y, "semantic", eps="-1/255", **QUICK)


def test_an_unknown_padding() -> None:
    with one_line_error(ConfigError, "unknown padding 'border'; use one of zeros, reflection"):
        semantic_threat("mild", padding="border")


def test_an_unknown_search_setting_suggests_close_matches() -> None:
    model, x, y = problem()
    with one_line_error(ConfigError, r"unknown semantic attack setting 'restart' \(did you mean restarts\b"):
        attack(model, x, y, "semantic", restart=2)
    with one_line_error(ConfigError, r"unknown semantic attack setting 'pixel_esp' \(did you mean pixel_eps\?\)"):
        semantic_attack(model, x, y, pixel_esp=0.01)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"steps": -1}, "steps must be an integer >= 0, got -1"),
        (
            {"steps": 0},
            r"semantic attack: steps=0 is the single-attribute sweep alone; it needs single_starts, grid >= 2 and "
            r"restarts=0 \(got single_starts=True, grid=9, restarts=3\)",
        ),
        ({"steps": 0, "restarts": 0, "grid": 0}, r"steps=0 is the single-attribute sweep alone; .*grid=0"),
        ({"steps": 0, "restarts": 0, "single_starts": False}, r"steps=0 .*single_starts=False"),
        ({"restarts": -1}, "semantic attack: restarts must be an integer >= 0, got -1"),
        ({"grid": 1}, r"semantic attack: grid must be 0 \(no sweep\) or >= 2 points"),
        ({"rel_step": 0.0}, "semantic attack: rel_step must be a number > 0, got 0.0"),
        ({"loss": "dlr"}, "semantic attack: loss must be 'margin' or 'ce', got 'dlr'"),
    ],
)
def test_a_search_setting_out_of_range(setting: dict[str, Any], message: str) -> None:
    model, x, y = problem()
    with one_line_error(ConfigError, message):
        attack(model, x, y, "semantic", **setting)


def test_settings_of_the_lp_attacks_that_the_semantic_attack_does_not_have() -> None:
    model, x, y = problem()
    with one_line_error(ConfigError, r"the semantic attack's pixel residual is L∞ \(norm='linf'\), got norm='l2'"):
        attack(model, x, y, "semantic", norm="l2")
    with one_line_error(ConfigError, "the semantic attack has no minimal search and no absolute step_size"):
        attack(model, x, y, "semantic", minimal=True)
    with one_line_error(ConfigError, "the semantic attack has no minimal search and no absolute step_size"):
        attack(model, x, y, "semantic", step_size=0.01)


# ---- images ----


def test_colour_attributes_on_single_channel_images_say_to_drop_them() -> None:
    model, x, y = problem(channels=1)
    with one_line_error(
        ConfigError,
        r"^hue, saturation need RGB images; these have 1 channel\(s\): drop them from the attributes",
    ):
        semantic_attack(model, x, y, preset="mild", **QUICK)
    with one_line_error(ConfigError, r"^hue_hsv needs RGB images; these have 1 channel\(s\): drop it from"):
        attack(model, x, y, "semantic", attributes=["rotation", "hue_hsv"], **QUICK)
    # dropped, the rest runs on one channel
    result = semantic_attack(model, x, y, attributes=["brightness", "contrast", "rotation", "blur"], **QUICK)
    assert result.n == 4 and set(result.columns) >= {"attr_brightness", "attr_contrast", "attr_rotation"}


def test_geometry_on_non_square_images_works() -> None:
    model, x, y = problem(h=12, w=20, n=6)
    # identities are exact, an integer shift is exact and a half turn flips both axes
    geometry = {"rotation": 0.0, "translate_x": 0.0, "translate_y": 0.0, "scale": 1.0}
    assert torch.equal(apply_attributes(x, {a: torch.full((6,), v) for a, v in geometry.items()}), x)
    shifted = translate(x, torch.tensor([[3.0, -2.0]] * 6))
    assert torch.equal(shifted[:, :, :-2, 3:], x[:, :, 2:, :-3])
    assert torch.equal(shifted[:, :, -2:], torch.zeros_like(shifted[:, :, -2:]))
    assert (rotate(x, torch.full((6,), 180.0)) - x.flip(2, 3)).abs().max() < 1e-5
    # and the attack runs and records a reproducible judged image
    ranges = {"rotation": (-20.0, 20.0), "scale": (0.8, 1.2), "translate_x": (-3.0, 3.0), "translate_y": (-3.0, 3.0)}
    result = semantic_attack(
        model, x, y, attributes=list(ranges), ranges=ranges, pixel_eps=0.0, keep_adversarials=True, **QUICK
    )
    assert result.adversarials is not None and result.adversarials.shape == x.shape
    threat = semantic_threat("mild", list(ranges), ranges, 0.0)
    values = torch.tensor([result.columns[f"attr_{a}"] for a in threat.attributes], dtype=torch.float64).T
    again = threat.render(x, threat.normalise(values).float())
    assert (again - result.adversarials).abs().max() < 1e-5


def test_images_that_are_not_a_batch_of_nchw() -> None:
    model, x, y = problem()
    with one_line_error(InputContractError, r"semantic attack: input shape \(3, 8, 8\) is not \(N, C, H, W\)\. Add a"):
        semantic_attack(model, x[0], y, **QUICK)
    with one_line_error(ConfigError, r"y must be a tensor of shape \(4,\)"):
        semantic_attack(model, x, y[:2], **QUICK)
