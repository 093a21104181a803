"""Differentiable image transforms with one parameter per image, below attacks, corruptions and training.

- Colour and tone: :func:`hue`, :func:`saturation`, :func:`contrast` (invariant kinds: YIQ chroma rotation, blend
  with luma, mean-preserving), :func:`hue_hsv`, :func:`saturation_hsv`, :func:`contrast_mult` (kornia's kinds, as
  ART's composite attack uses them), :func:`brightness`, :func:`gamma`.
- Geometry: :func:`rotate`, :func:`translate`, :func:`scale` (one affine map, an exact pixel-coordinate bilinear
  sampler).
- Blur: :func:`gaussian_blur` (per-image sigma).
- :data:`ATTRIBUTES`: each transform as a named scalar attribute (identity, domain, default range), and
  :func:`apply_attributes`, the one rendering order.

Every transform returns its input exactly at the identity value and none clamps (chains clamp once at the end).
Why our own code rather than kornia (DESIGN.md's choice for transforms): kornia clamps inside every photometric op,
which zeroes gradients mid-chain, its identity values are off by about 1e-7 (a colour-space round trip), and the
invariant kinds the known-answer tests need are not all there. The kornia-kind functions are checked against
kornia 0.9.0 side by side (``tests/reference``). This package imports only the base modules.
"""

from robustlab.transforms._attributes import ATTRIBUTES, ORDER, Attribute, apply_attributes
from robustlab.transforms._blur import gaussian_blur
from robustlab.transforms._colour import (
    brightness,
    chroma,
    contrast,
    contrast_mult,
    gamma,
    hsv_to_rgb,
    hue,
    hue_hsv,
    luma,
    rgb_to_hsv,
    saturation,
    saturation_hsv,
)
from robustlab.transforms._geometry import PADDINGS, affine, rotate, sample_bilinear, scale, translate

__all__ = [
    "ATTRIBUTES",
    "ORDER",
    "PADDINGS",
    "Attribute",
    "affine",
    "apply_attributes",
    "brightness",
    "chroma",
    "contrast",
    "contrast_mult",
    "gamma",
    "gaussian_blur",
    "hsv_to_rgb",
    "hue",
    "hue_hsv",
    "luma",
    "rgb_to_hsv",
    "rotate",
    "sample_bilinear",
    "saturation",
    "saturation_hsv",
    "scale",
    "translate",
]
