"""Differentiable image transforms with one parameter per image, below attacks, corruptions and training.

- Colour and tone: :func:`hue`, :func:`saturation`, :func:`contrast` (invariant kinds: YIQ chroma rotation, blend
  with luma, mean-preserving), :func:`hue_hsv`, :func:`saturation_hsv`, :func:`contrast_mult` (kornia's kinds, as
  ART's composite attack uses them), :func:`brightness`, :func:`gamma`.
- Geometry: :func:`rotate`, :func:`translate`, :func:`scale` (one affine map, an exact pixel-coordinate bilinear
  sampler).
- Blur: :func:`gaussian_blur` (per-image sigma).
- AugMix / AugMax: PIL's augmentation ops batched with per-image parameters (:func:`autocontrast`,
  :func:`equalize`, :func:`posterize`, :func:`solarize`, :func:`pil_affine`, :func:`pil_rotate`, :func:`shear_x`,
  :func:`shear_y`, :func:`translate_x`, :func:`translate_y`, ``enhance_*``), :func:`sample_chains` and the two
  mixtures :func:`augmix_mix` (random) and :func:`augmax_mix` (differentiable in ``m`` and ``q``).
- :data:`ATTRIBUTES`: each transform as a named scalar attribute (identity, domain, default range), and
  :func:`apply_attributes`, the one rendering order.

Every transform returns its input exactly at the identity value and none clamps (chains clamp once at the end).
Why our own code rather than kornia (DESIGN.md's choice for transforms): kornia clamps inside every photometric op,
which zeroes gradients mid-chain, its identity values are off by about 1e-7 (a colour-space round trip), and the
invariant kinds the known-answer tests need are not all there. The kornia-kind functions are checked against
kornia 0.9.0 side by side (``tests/reference``). This package imports only the base modules.
"""

from robustlab.transforms._attributes import ATTRIBUTES, ORDER, Attribute, apply_attributes
from robustlab.transforms._augmix import (
    AUGMAX_OPS,
    AUGMIX_ALL_OPS,
    COLOUR_OPS,
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
    pil_affine,
    pil_rotate,
    posterize,
    sample_chains,
    shear_x,
    shear_y,
    solarize,
    translate_x,
    translate_y,
)
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
    "AUGMAX_OPS",
    "AUGMIX_ALL_OPS",
    "COLOUR_OPS",
    "ORDER",
    "PADDINGS",
    "Attribute",
    "affine",
    "apply_attributes",
    "apply_op",
    "augmax_mix",
    "augmix_mix",
    "autocontrast",
    "brightness",
    "chroma",
    "contrast",
    "contrast_mult",
    "enhance_brightness",
    "enhance_color",
    "enhance_contrast",
    "enhance_sharpness",
    "equalize",
    "gamma",
    "gaussian_blur",
    "hsv_to_rgb",
    "hue",
    "hue_hsv",
    "luma",
    "op_parameter",
    "ops_for",
    "pil_affine",
    "pil_rotate",
    "posterize",
    "rgb_to_hsv",
    "rotate",
    "sample_bilinear",
    "sample_chains",
    "saturation",
    "saturation_hsv",
    "scale",
    "shear_x",
    "shear_y",
    "solarize",
    "translate",
    "translate_x",
    "translate_y",
]
