"""robustlab.transforms side by side with kornia 0.9.0 (installed in the reference environment), whose semantics
the kornia-kind transforms take (ART's composite adversarial attack uses kornia's), on 32 CIFAR-sized images (24
random, 4 grey, 4 with many saturated channels) with one parameter per image spanning each range.

Our transforms never clamp (a chain is clamped once at its end), so each is compared after ``clamp(0, 1)`` where
kornia clamps: ``contrast_mult``, ``brightness``, ``contrast``, ``saturation`` (kornia's ``adjust_*`` clamp their
output). kornia's ``adjust_contrast_with_mean_subtraction`` subtracts the mean of ``rgb_to_grayscale`` over each
image (weights 0.299, 0.587, 0.114, our luma), so it is our mean-preserving ``contrast`` exactly; likewise
``adjust_saturation_with_gray_subtraction`` is our blend ``saturation``. Geometry: kornia warps with
``grid_sample(align_corners=True)``, whose pixel grid is ours (centre ``((W - 1) / 2, (H - 1) / 2)``, positive
angle counter-clockwise, zeros or reflection about the edge pixels). Blur: ``gaussian_blur2d(x, (5, 5), sigma)``
with its default reflect border.

Tolerance 1e-5 in float32 everywhere. Measured largest differences: 0 (contrast_mult, brightness), 7.5e-9 (gamma),
1.2e-7 (contrast, saturation), 1.8e-7 (blur), 1.0e-6 and 1.9e-6 (saturation_hsv, hue_hsv), and 3.8e-6 to 8.2e-6 for
the warps (translate, rotation, rotation with reflection, scale): kornia maps pixels to grid_sample's normalised
coordinates and back, which rounds a sample point by about 1e-5 of a pixel on these noise images, whose neighbours
differ by up to 1. In float64 the same comparisons agree to 1e-12 (second test), so none is a difference of
semantics.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from robustlab.transforms import (
    brightness,
    contrast,
    contrast_mult,
    gamma,
    gaussian_blur,
    hue_hsv,
    rotate,
    saturation,
    saturation_hsv,
    scale,
    translate,
)

RunReference = Callable[..., dict[str, Tensor]]

pytestmark = pytest.mark.reference

KORNIA = "0.9.0"
N = 32
TOLERANCE = 1e-5


def images() -> Tensor:
    """24 random images, 4 grey ones and 4 with a third of their channel values at exactly 0 or 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 3, 32, 32, generator=g)
    x[24:28] = x[24:28, :1].expand(-1, 3, -1, -1)
    edge = torch.rand(4, 3, 32, 32, generator=g)
    x[28:] = torch.where(edge < 1 / 6, 0.0, torch.where(edge > 5 / 6, 1.0, x[28:]))
    return x


def spread(low: float, high: float, seed: int) -> Tensor:
    """``N`` values spanning ``[low, high]`` (both ends included) in a shuffled order."""
    values = torch.linspace(low, high, N)
    return values[torch.randperm(N, generator=torch.Generator().manual_seed(seed))]


def parameters() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "hue_hsv": spread(-math.pi, math.pi, 1),
        "saturation_hsv": spread(0.0, 2.0, 2),
        "contrast_mult": spread(0.5, 1.5, 3),
        "brightness": spread(-0.3, 0.3, 4),
        "contrast": spread(0.0, 2.0, 5),
        "saturation": spread(0.0, 2.0, 6),
        "gamma": spread(0.5, 2.0, 7),
        "rotation": spread(-30.0, 30.0, 8),
        "translate": (torch.rand(N, 2, generator=g) * 2 - 1) * 4.5,
        "scale": spread(0.8, 1.25, 9),
        "blur": spread(0.3, 2.0, 10),
    }


def ours(x: Tensor, p: dict[str, Tensor]) -> dict[str, Tensor]:
    return {
        "hue_hsv": hue_hsv(x, p["hue_hsv"]),
        "saturation_hsv": saturation_hsv(x, p["saturation_hsv"]),
        "contrast_mult": contrast_mult(x, p["contrast_mult"]).clamp(0, 1),
        "brightness": brightness(x, p["brightness"]).clamp(0, 1),
        "contrast": contrast(x, p["contrast"]).clamp(0, 1),
        "saturation": saturation(x, p["saturation"]).clamp(0, 1),
        "gamma": gamma(x, p["gamma"]),
        "rotation": rotate(x, p["rotation"], padding="zeros"),
        "rotation_reflection": rotate(x, p["rotation"], padding="reflection"),
        "translate": translate(x, p["translate"], padding="zeros"),
        "scale": scale(x, p["scale"], padding="zeros"),
        "blur": gaussian_blur(x, p["blur"]),
    }


@pytest.fixture(scope="module")
def kornia_env(reference_python: Path) -> Path:
    """The reference interpreter if it has kornia 0.9.0, else a skip saying how to install it."""
    probe = subprocess.run(
        [str(reference_python), "-c", "import kornia; print(kornia.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    install = f"{reference_python} -m pip install kornia=={KORNIA} (or re-create it with scripts/reference-env.sh)"
    if probe.returncode != 0:
        pytest.skip(f"kornia is not installed in the reference environment: {install}")
    if probe.stdout.strip() != KORNIA:
        pytest.skip(f"the reference environment has kornia {probe.stdout.strip()}, not {KORNIA}: {install}")
    return reference_python


_THEIRS: dict[str, Tensor] = {}


@pytest.fixture
def theirs(kornia_env: Path, run_reference: RunReference) -> dict[str, Tensor]:
    """kornia's outputs, computed once for the module (one reference process)."""
    if not _THEIRS:
        _THEIRS.update(run_reference("_ref_kornia:transforms", x=images(), **parameters()))
    return _THEIRS


NAMES = [
    "hue_hsv",
    "saturation_hsv",
    "contrast_mult",
    "brightness",
    "contrast",
    "saturation",
    "gamma",
    "rotation",
    "rotation_reflection",
    "translate",
    "scale",
    "blur",
]


def test_the_reference_is_kornia_0_9_0(theirs: dict[str, Tensor]) -> None:
    assert bytes(theirs["version"].tolist()).decode() == KORNIA


@pytest.mark.parametrize("name", NAMES)
def test_each_transform_matches_kornia_in_float32(theirs: dict[str, Tensor], name: str) -> None:
    x = images()
    mine = ours(x, parameters())[name]
    diff = (mine - theirs[f"f32/{name}"]).abs().amax(dim=(1, 2, 3))
    assert float(diff.max()) < TOLERANCE, {i: float(d) for i, d in enumerate(diff) if d >= TOLERANCE}
    # the comparison means something: every image changed (but grey ones under HSV hue and saturation and the
    # few parameters at an identity)
    changed = (theirs[f"f32/{name}"] - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert int(changed.sum()) >= N - 6, int(changed.sum())


@pytest.mark.parametrize("name", NAMES)
def test_each_transform_matches_kornia_in_float64_to_rounding(theirs: dict[str, Tensor], name: str) -> None:
    """The float32 differences are float32 rounding: in float64 the two agree to 1e-12, except that kornia's HSV
    round trip is off by its saturation's eps (``s = span / (v + 1e-8)``, measured 1.0e-8), which ours cancels."""
    x = images().double()
    mine = ours(x, {k: v.double() for k, v in parameters().items()})[name]
    tolerance = 1e-7 if name in ("hue_hsv", "saturation_hsv") else 1e-12
    assert float((mine - theirs[f"f64/{name}"]).abs().max()) < tolerance
