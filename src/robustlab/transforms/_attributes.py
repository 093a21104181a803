"""The attribute registry: every transform a semantic threat model may vary, with its identity, the values it is
defined for and its default range, and the one function that renders an image from a set of attribute values in a
fixed order.

Order (:func:`apply_attributes`): geometry (rotation, translation and scale as one affine resampling), then colour
and tone (hue → saturation → contrast → brightness → gamma), then blur. The result is not clamped: the caller
clamps once, after any pixel residual.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab._registry import Registry
from robustlab.errors import ConfigError
from robustlab.transforms import _colour
from robustlab.transforms._blur import gaussian_blur
from robustlab.transforms._geometry import PADDINGS, affine


@dataclass(frozen=True)
class Attribute:
    """One scalar image attribute.

    Attributes:
        name: Registry name (``hue``, ``rotation``, ...).
        group: ``"geometry"``, ``"colour"``, ``"tone"`` or ``"blur"``.
        identity: The value that leaves the image unchanged.
        domain: ``(low, high)``: the values the transform is defined for (``None``: unbounded on that side).
        open_low: The domain excludes its low end (blur sigma > 0, gamma > 0, scale > 0).
        default_range: The range used when a threat model names the attribute without one (the ``mild`` preset's).
        unit: For people (``"rad"``, ``"°"``, ``"px"``, ``"×"``, ``""``).
        colour: Needs three channels (hue and saturation).
        period: The attribute's period (hue 2π, rotation 360°): values ``period`` apart render the same image;
            ``None``: not periodic.
        op: ``op(x, values)`` for the photometric and blur attributes (the geometric ones go through one affine map).
        summary: One line for ``--help`` and the report.
    """

    name: str
    group: str
    identity: float
    domain: tuple[float | None, float | None]
    default_range: tuple[float, float]
    unit: str
    summary: str
    open_low: bool = False
    colour: bool = False
    period: float | None = None
    op: Callable[[Tensor, Tensor], Tensor] | None = None

    def check_range(self, low: float, high: float) -> None:
        """Raise :class:`ConfigError` unless ``low <= high`` both lie in the attribute's domain."""
        lo, hi = self.domain
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ConfigError(f"{self.name}: the range must be two finite numbers low <= high, got {low}:{high}")
        below = lo is not None and (low <= lo if self.open_low else low < lo)
        if below or (hi is not None and high > hi):
            bound = f"{'>' if self.open_low else '>='} {lo}" if below else f"<= {hi}"
            raise ConfigError(
                f"{self.name}: range {low:g}:{high:g} leaves its domain; values must be {bound} ({self.summary})"
            )


ATTRIBUTES: Registry[Attribute] = Registry("attribute")

_GEOMETRY = ("rotation", "translate_x", "translate_y", "scale")
#: Colour and tone, in the order they are applied.
_PHOTOMETRIC = ("hue", "hue_hsv", "saturation", "saturation_hsv", "contrast", "contrast_mult", "brightness", "gamma")


def _add(attr: Attribute) -> None:
    ATTRIBUTES.register(attr.name, attr)


_add(
    Attribute(
        "rotation", "geometry", 0.0, (-180.0, 180.0), (-10.0, 10.0), "°", "rotation, counter-clockwise",
        period=360.0,
    )
)  # fmt: skip
_add(Attribute("translate_x", "geometry", 0.0, (None, None), (-3.0, 3.0), "px", "shift right"))
_add(Attribute("translate_y", "geometry", 0.0, (None, None), (-3.0, 3.0), "px", "shift down"))
_add(Attribute("scale", "geometry", 1.0, (0.0, None), (0.9, 1.1), "×", "zoom about the centre", open_low=True))
_add(
    Attribute(
        "hue", "colour", 0.0, (-math.pi, math.pi), (-math.pi / 6, math.pi / 6), "rad",
        "YIQ chroma rotation (luma kept)", colour=True, period=2 * math.pi, op=_colour.hue,
    )
)  # fmt: skip
_add(
    Attribute(
        "hue_hsv", "colour", 0.0, (-math.pi, math.pi), (-math.pi, math.pi), "rad",
        "HSV hue shift (kornia adjust_hue, ART's composite attack)", colour=True, period=2 * math.pi,
        op=_colour.hue_hsv,
    )
)  # fmt: skip
_add(
    Attribute(
        "saturation", "colour", 1.0, (0.0, None), (0.7, 1.3), "×",
        "blend with the luma image (PIL)", colour=True, op=_colour.saturation,
    )
)  # fmt: skip
_add(
    Attribute(
        "saturation_hsv", "colour", 1.0, (0.0, None), (0.7, 1.3), "×",
        "HSV saturation scale, clamped (kornia adjust_saturation, ART)", colour=True, op=_colour.saturation_hsv,
    )
)  # fmt: skip
_add(
    Attribute(
        "contrast", "tone", 1.0, (0.0, None), (0.8, 1.25), "×",
        "deviations from the mean luma scaled (PIL; mean kept)", op=_colour.contrast,
    )
)  # fmt: skip
_add(
    Attribute(
        "contrast_mult", "tone", 1.0, (0.0, None), (0.7, 1.3), "×",
        "every value multiplied (kornia adjust_contrast, ART's 'contrast')", op=_colour.contrast_mult,
    )
)  # fmt: skip
_add(Attribute("brightness", "tone", 0.0, (-1.0, 1.0), (-0.1, 0.1), "", "added to every value", op=_colour.brightness))
_add(
    Attribute("gamma", "tone", 1.0, (0.0, None), (0.8, 1.25), "", "x ** gamma", open_low=True, op=_colour.gamma)
)  # fmt: skip
_add(
    Attribute(
        "blur", "blur", 0.0, (0.0, 5.0), (0.01, 1.5), "px",
        "Gaussian sigma (5-tap; <= 0.01 is no blur)", open_low=True, op=None,
    )
)  # fmt: skip

#: Every attribute, in rendering order.
ORDER = (*_GEOMETRY, *_PHOTOMETRIC, "blur")
assert set(ORDER) == set(ATTRIBUTES.names())


def apply_attributes(x: Tensor, values: Mapping[str, Tensor], padding: str = "zeros") -> Tensor:
    """Render ``x`` with the given attribute values (those not given stay at their identity); not clamped.

    Args:
        x: Images in [0, 1].
        values: Attribute name → per-image values.
        padding: Border of the geometric resampling, ``"zeros"`` or ``"reflection"``.

    Shape:
        - x: ``(N, C, H, W)``; each value: ``(N,)``
        - output: ``(N, C, H, W)``
    """
    if padding not in PADDINGS:
        raise ConfigError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")
    unknown = [name for name in values if name not in ATTRIBUTES]
    if unknown:
        ATTRIBUTES.get(unknown[0])  # raises with close matches
    if any(name in values for name in _GEOMETRY):
        shift = None
        if "translate_x" in values or "translate_y" in values:
            zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            shift = torch.stack([values.get("translate_x", zero), values.get("translate_y", zero)], dim=1)
        x = affine(x, values.get("rotation"), shift, values.get("scale"), padding)
    for name in _PHOTOMETRIC:
        if name in values:
            op = ATTRIBUTES.get(name).op
            assert op is not None
            x = op(x, values[name])
    if "blur" in values:
        x = gaussian_blur(x, values["blur"])
    return x
