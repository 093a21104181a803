"""Reference side of the transforms comparison (runs in the reference environment): kornia 0.9.0's colour
adjustments, affine warps and Gaussian blur on the same images and per-image parameters."""

from __future__ import annotations

from typing import Any

import kornia
import torch
from kornia.enhance import (
    adjust_brightness,
    adjust_contrast,
    adjust_contrast_with_mean_subtraction,
    adjust_gamma,
    adjust_hue,
    adjust_saturation,
    adjust_saturation_with_gray_subtraction,
)
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import rotate, scale, translate
from torch import Tensor

NAMES = (
    "hue_hsv",
    "saturation_hsv",
    "contrast_mult",
    "brightness",
    "contrast",
    "saturation",
    "gamma",
    "rotation",
    "translate",
    "scale",
    "blur",
)


def transforms(job: dict[str, Any]) -> dict[str, Tensor]:
    """Every comparable kornia operation, one output per name, in float32 and in float64.

    Job keys: ``x`` (``(N, 3, H, W)`` in [0, 1]) and one ``(N,)`` parameter per operation (``translate``:
    ``(N, 2)`` pixels): ``hue_hsv``, ``saturation_hsv``, ``contrast_mult``, ``brightness``, ``contrast``,
    ``saturation``, ``gamma``, ``rotation`` (degrees), ``translate``, ``scale``, ``blur`` (sigma, pixels).

    Returns:
        ``version`` (kornia's, as a uint8 tensor of its characters) and ``f32/<name>``, ``f64/<name>``: one
        ``(N, 3, H, W)`` tensor per operation computed on ``x`` and the parameters cast to that dtype;
        ``rotation_reflection`` is the rotation with reflection padding.
    """
    out = {"version": torch.tensor(list(kornia.__version__.encode()), dtype=torch.uint8)}
    for tag, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        cast = {name: job[name].to(dtype) for name in NAMES}
        out.update({f"{tag}/{k}": v for k, v in _transforms(job["x"].to(dtype), cast).items()})
    return out


def _transforms(x: Tensor, job: dict[str, Tensor]) -> dict[str, Tensor]:
    with torch.no_grad():
        out: dict[str, Tensor] = {
            "hue_hsv": adjust_hue(x, job["hue_hsv"]),
            "saturation_hsv": adjust_saturation(x, job["saturation_hsv"]),
            "contrast_mult": adjust_contrast(x, job["contrast_mult"]),
            "brightness": adjust_brightness(x, job["brightness"]),
            "contrast": adjust_contrast_with_mean_subtraction(x, job["contrast"]),
            "saturation": adjust_saturation_with_gray_subtraction(x, job["saturation"]),
            "gamma": adjust_gamma(x, job["gamma"]),
            "rotation": rotate(x, job["rotation"], mode="bilinear", padding_mode="zeros", align_corners=True),
            "rotation_reflection": rotate(
                x, job["rotation"], mode="bilinear", padding_mode="reflection", align_corners=True
            ),
            "translate": translate(x, job["translate"], mode="bilinear", padding_mode="zeros", align_corners=True),
            "scale": scale(
                x, job["scale"].unsqueeze(1).expand(-1, 2), mode="bilinear", padding_mode="zeros", align_corners=True
            ),
            "blur": gaussian_blur2d(x, (5, 5), job["blur"].unsqueeze(1).expand(-1, 2), border_type="reflect"),
        }
    return out
