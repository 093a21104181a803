"""Semantic threat models: a set of image attributes, each within a range, plus an optional L∞ pixel residual.

A threat model owns its parameters, their ranges and how to render an image from them (architecture review R3).
Here the parameters are ``u``, one number per attribute in normalised units ``[-1, 1]`` (mapped linearly onto the
attribute's range, so one sign step suits every attribute), and ``delta``, the pixel residual with
``‖delta‖∞ <= pixel_eps``. :meth:`SemanticThreat.render` is differentiable in both; :meth:`SemanticThreat.project`
clips them back into the threat model, and the evaluator judges an example only by re-rendering it from its
projected parameters.

Presets (:data:`PRESETS`):

- ``caa``: the ranges and operations of ART's composite adversarial attack (Hsiung et al., CVPR 2023): HSV hue
  ±π, HSV saturation 0.7–1.3, rotation ±10° (zero padding), brightness ±0.2, multiplicative contrast 0.7–1.3,
  pixel L∞ 8/255. For agreement with ART; hue ±π turns a red car blue, so it does not preserve every class.
- ``mild``: class-preserving changes for diagnosis: YIQ hue ±π/6, blend saturation 0.7–1.3, mean-preserving
  contrast 0.8–1.25, brightness ±0.1, gamma 0.8–1.25, rotation ±10°, translation ±3 px, scale 0.9–1.1 (reflected
  borders), blur sigma up to 1.5 px, pixel L∞ 1/255.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.transforms import ATTRIBUTES, ORDER, PADDINGS, apply_attributes


@dataclass(frozen=True)
class Preset:
    """A named semantic threat model: attribute ranges, pixel budget and border."""

    ranges: Mapping[str, tuple[float, float]]
    pixel_eps: float
    padding: str
    summary: str


PRESETS: dict[str, Preset] = {
    "caa": Preset(
        {
            "hue_hsv": (-math.pi, math.pi),
            "saturation_hsv": (0.7, 1.3),
            "rotation": (-10.0, 10.0),
            "brightness": (-0.2, 0.2),
            "contrast_mult": (0.7, 1.3),
        },
        8 / 255,
        "zeros",
        "ART's composite adversarial attack: its five components, ranges and kornia operations",
    ),
    "mild": Preset(
        {
            name: ATTRIBUTES.get(name).default_range
            for name in ORDER
            if name not in ("hue_hsv", "saturation_hsv", "contrast_mult")
        },
        1 / 255,
        "reflection",
        "class-preserving changes for diagnosis (invariant colour kinds, small geometry, mild blur)",
    ),
}


@dataclass(frozen=True)
class SemanticThreat:
    """Attributes within ranges (normalised parameters ``u`` in ``[-1, 1]``) and an L∞ pixel residual.

    Build one with :func:`semantic_threat`, which validates every field.

    Attributes:
        attributes: Attribute names, in rendering order.
        low, high: Each attribute's range (same order).
        pixel_eps: L∞ budget of the pixel residual (0: none).
        padding: Border of the geometric resampling.
        preset: The preset it came from (``None`` if built from ranges alone).
    """

    attributes: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    pixel_eps: float
    padding: str
    preset: str | None = None

    @property
    def size(self) -> int:
        """Number of attributes."""
        return len(self.attributes)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Attribute → (low, high)."""
        return {a: (lo, hi) for a, lo, hi in zip(self.attributes, self.low, self.high, strict=True)}

    def _bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        lo = torch.tensor(self.low, dtype=torch.float64).to(like.device, like.dtype)
        hi = torch.tensor(self.high, dtype=torch.float64).to(like.device, like.dtype)
        return lo, hi

    def values(self, u: Tensor) -> Tensor:
        """Normalised parameters → attribute values: ``low + (u + 1) / 2 (high - low)``.

        Shape: u ``(N, A)`` → ``(N, A)``."""
        lo, hi = self._bounds(u)
        return lo + (u + 1) * 0.5 * (hi - lo)

    def normalise(self, values: Tensor) -> Tensor:
        """Attribute values → normalised parameters (the inverse of :meth:`values`; a zero-width range maps to 0)."""
        lo, hi = self._bounds(values)
        width = hi - lo
        return torch.where(width > 0, 2 * (values - lo) / torch.where(width > 0, width, 1) - 1, 0)

    def sweep(self, k: int, points: int) -> list[float]:
        """The normalised values of a ``points``-point sweep over attribute ``k``'s range: evenly spaced from one end
        to the other, without the high end when the range spans a whole period (hue ±π, rotation ±180°), where it
        renders the low end's image again (to float rounding: ≤ 3e-6 measured on CIFAR-sized images)."""
        values = torch.linspace(-1.0, 1.0, points).tolist()
        period = ATTRIBUTES.get(self.attributes[k]).period
        if period is not None and points >= 2 and self.high[k] - self.low[k] >= period * (1 - 1e-9):
            values.pop()
        return values

    def identity(self, n: int, like: Tensor) -> Tensor:
        """Each image's normalised parameters at the attributes' identity values (clamped into their ranges: blur's
        identity is its range's low end, which renders no blur). Shape: ``(n, A)``."""
        ident = torch.tensor([ATTRIBUTES.get(a).identity for a in self.attributes], dtype=torch.float64)
        lo, hi = self._bounds(like)
        ident = torch.maximum(torch.minimum(ident.to(like.device, like.dtype), hi), lo)
        return self.normalise(ident).unsqueeze(0).expand(n, -1).clone()

    def identity_renders_input(self, like: Tensor) -> bool:
        """Whether :meth:`identity`'s parameters render images like ``like`` (its dtype and device) exactly: every
        range holds its attribute's identity and the normalised round trip gives it back bit for bit (each attribute
        at its identity value returns the input exactly; blur on a range above 0, for one, does not)."""
        ident = self.identity(1, like)
        wanted = torch.tensor([ATTRIBUTES.get(a).identity for a in self.attributes], dtype=torch.float64)
        return torch.equal(self.values(ident)[0], wanted.to(ident.device, ident.dtype))

    def check_images(self, x: Tensor) -> None:
        """Raise :class:`ConfigError` if an attribute cannot act on these images (colour ones on one channel)."""
        if x.dim() != 4:
            raise ConfigError(f"semantic attacks need images of shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != 3:
            colour = [a for a in self.attributes if ATTRIBUTES.get(a).colour]
            if colour:
                raise ConfigError(
                    f"{', '.join(colour)} need{'s' if len(colour) == 1 else ''} RGB images; these have "
                    f"{x.shape[1]} channel(s): drop {'it' if len(colour) == 1 else 'them'} from the attributes "
                    "(e.g. --attributes brightness,contrast,rotation)"
                )

    def project(self, u: Tensor, delta: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Clip ``u`` to ``[-1, 1]`` and ``delta`` to the pixel budget."""
        u = u.clamp(-1.0, 1.0)
        if delta is not None:
            delta = delta.clamp(-self.pixel_eps, self.pixel_eps)
        return u, delta

    def render(self, x: Tensor, u: Tensor, delta: Tensor | None = None, *, only: Tensor | None = None) -> Tensor:
        """The image seen by the model: the attributes applied in their fixed order, plus ``delta``, clamped to
        [0, 1]. Differentiable in ``u`` and ``delta``; parameters are used as given (project them first).

        Args:
            only: ``(A,)`` bool: render only these attributes (the others at their identity, clamped into their
                ranges as :meth:`identity` does, so the image stays inside the threat model), for the histograms.

        Shape:
            - x: ``(N, C, H, W)``; u: ``(N, A)``; delta: like ``x``
            - output: ``(N, C, H, W)``
        """
        vals = self.values(u)
        drawn = [True] * self.size
        if only is not None:
            # An attribute whose range excludes its identity (blur 0.8:1.5) is never absent from the threat model:
            # it is rendered at its clamped identity, as the joint starts and the evaluator render it.
            rest = self.values(self.identity(u.shape[0], u))
            picked = [bool(only[i]) for i in range(self.size)]
            vals = torch.stack([vals[:, i] if picked[i] else rest[:, i] for i in range(self.size)], dim=1)
            drawn = [
                p or not lo <= ATTRIBUTES.get(a).identity <= hi
                for p, a, lo, hi in zip(picked, self.attributes, self.low, self.high, strict=True)
            ]
        chosen = {a: vals[:, i] for i, a in enumerate(self.attributes) if drawn[i]}
        out = apply_attributes(x, chosen, self.padding)
        if delta is not None:
            out = out + delta
        return out.clamp(0.0, 1.0)


def semantic_threat(
    preset: str = "mild",
    attributes: Sequence[str] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    pixel_eps: float | None = None,
    padding: str | None = None,
) -> SemanticThreat:
    """Build and validate a semantic threat model.

    Args:
        preset: ``"mild"`` or ``"caa"`` (see the module docstring).
        attributes: The attributes to vary (default: the preset's). One outside the preset takes its own default
            range (``robustlab.transforms.ATTRIBUTES[name].default_range``) unless ``ranges`` names it.
        ranges: Attribute → ``(low, high)``, overriding the preset's.
        pixel_eps: L∞ budget of the pixel residual (default: the preset's; 0: attributes only).
        padding: ``"zeros"`` or ``"reflection"`` (default: the preset's).

    Raises:
        UnknownNameError: an unknown preset or attribute (with close matches).
        ConfigError: a range outside an attribute's domain (saturation < 0, blur sigma <= 0, ...), a range for an
            attribute not varied, a negative pixel budget, an unknown padding or no attribute at all.
    """
    if preset not in PRESETS:
        from robustlab._registry import Registry

        reg: Registry[Preset] = Registry("semantic preset")
        for name, p in PRESETS.items():
            reg.register(name, p)
        reg.get(preset)  # raises with close matches (and finds a name written in other case)
        preset = preset.lower()
    base = PRESETS[preset]
    names = list(base.ranges) if attributes is None else [ATTRIBUTES.get(a).name for a in attributes]
    if not names:
        raise ConfigError("a semantic threat model needs at least one attribute (e.g. --attributes hue,rotation)")
    duplicates = sorted({a for a in names if names.count(a) > 1})
    if duplicates:
        raise ConfigError(f"attribute(s) named twice: {', '.join(duplicates)}")
    ranges = {ATTRIBUTES.get(name).name: r for name, r in (ranges or {}).items()}
    for name in ranges:
        if name not in names:
            raise ConfigError(f"a range is given for {name!r}, which is not among the attributes {', '.join(names)}")
    chosen: dict[str, tuple[float, float]] = {}
    for a in names:
        r = ranges.get(a, base.ranges.get(a, ATTRIBUTES.get(a).default_range))
        try:
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise ConfigError(f"{a}: a range is two numbers (low, high), got {r!r}") from None
        ATTRIBUTES.get(a).check_range(lo, hi)
        chosen[a] = (lo, hi)
    eps = base.pixel_eps if pixel_eps is None else float(pixel_eps)
    if not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"the pixel budget must be a finite number >= 0 (0: attributes only), got {pixel_eps!r}")
    pad = base.padding if padding is None else padding
    if pad not in PADDINGS:
        raise ConfigError(f"unknown padding {pad!r}; use one of {', '.join(PADDINGS)}")
    ordered = [a for a in ORDER if a in chosen]
    return SemanticThreat(
        attributes=tuple(ordered),
        low=tuple(chosen[a][0] for a in ordered),
        high=tuple(chosen[a][1] for a in ordered),
        pixel_eps=eps,
        padding=pad,
        preset=preset,
    )
