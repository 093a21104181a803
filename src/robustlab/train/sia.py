"""``sia``: semantic adversarial training (Madry-style, on Semantic Image Attack points).

Each step ascends the cross-entropy over the attributes of a semantic threat model and a small L∞ pixel residual
(:func:`robustlab.attacks.semantic_perturb`: ``steps`` sign steps from a uniform random point of the parameter box,
every row taking every step) and trains on the rendered images only. The SIA paper (Luo et al., arXiv 2303.13010)
claims that this training transfers robustness to gradient attacks; ``docs/findings.md`` says what we measured.

Settings: ``preset`` (``mild`` or ``caa``), ``attributes`` (comma-separated; default: the preset's), ``pixel_eps``
(default: the preset's; 0: attributes only), ``steps`` (0: no ascent, i.e. **random-attribute augmentation**, the
baseline that separates "adversarial" from "more augmentation"), ``random_start``, ``class_fraction``
(comma-separated, one per class: the fraction of each class's rows perturbed, the others trained on clean; for the
oversampling arms of the imbalanced-data experiment, where it is ``1 - n_c / n_balanced`` so that in expectation
exactly the duplicated rows are augmented).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod


@dataclass(frozen=True)
class SIASettings:
    """Settings of ``sia`` (see the module docstring)."""

    preset: str = "mild"
    attributes: str | None = None
    pixel_eps: float | None = None
    steps: int = 3
    random_start: bool = True
    class_fraction: str | None = None


class SIA(TrainingMethod):
    """Cross-entropy on semantic adversarial points (attributes + pixel residual)."""

    name = "sia"
    adversarial = True

    def __init__(self) -> None:
        self.settings = SIASettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        from robustlab.errors import ConfigError

        params = dict(params)
        if isinstance(params.get("pixel_eps"), str):
            from robustlab.attacks import parse_eps

            params["pixel_eps"] = parse_eps(params["pixel_eps"])
        copy = super().configure(params)
        assert isinstance(copy, SIA)
        if copy.settings.steps < 0:
            raise ConfigError(f"sia: steps must be >= 0 (0: random attributes, no ascent), got {copy.settings.steps}")
        if copy.settings.steps == 0 and not copy.settings.random_start:
            raise ConfigError("sia: steps=0 without random_start trains on the clean images; use method standard")
        copy.threat()  # validates preset, attributes and budget now, not at the first step
        copy.fractions()
        return copy

    def fractions(self) -> list[float] | None:
        """The per-class fractions of ``class_fraction`` (``None``: every row is perturbed)."""
        from robustlab.errors import ConfigError

        text = self.settings.class_fraction
        if text is None:
            return None
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError(f"sia: class_fraction must be comma-separated numbers, got {text!r}") from None
        if not all(0 <= v <= 1 for v in values):
            raise ConfigError(f"sia: every class_fraction must lie in [0, 1], got {text!r}")
        return values

    def threat(self) -> Any:
        """The semantic threat model of these settings."""
        from robustlab.threat import semantic_threat

        s = self.settings
        names = None if s.attributes is None else [a.strip() for a in s.attributes.split(",") if a.strip()]
        return semantic_threat(s.preset, names, pixel_eps=s.pixel_eps)

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        from robustlab.attacks import semantic_perturb

        s = self.settings
        threat = self.threat()
        threat.check_images(x)
        b, a = len(x), threat.size
        x_full, y_full = x, y
        pick = None
        fractions = self.fractions()
        if fractions is not None:  # drawn first: the rows to perturb
            from robustlab.errors import ConfigError

            if int(y.max()) >= len(fractions):
                raise ConfigError(f"sia: class_fraction has {len(fractions)} values; label {int(y.max())} has none")
            chance = ctx.draw(torch.empty(b, dtype=x.dtype, device=x.device),
                              lambda t: torch.rand(t.shape, generator=ctx.generator, dtype=t.dtype))  # fmt: skip
            pick = chance < torch.tensor(fractions, dtype=x.dtype, device=x.device)[y]
        if s.random_start:

            def uniform(t: Tensor) -> Tensor:
                return torch.rand(t.shape, generator=ctx.generator, dtype=t.dtype) * 2 - 1

            u0 = ctx.draw(torch.empty(b, a, dtype=x.dtype, device=x.device), uniform)
            delta0 = ctx.draw(x, uniform) * threat.pixel_eps if threat.pixel_eps > 0 else None
        else:
            u0, delta0 = threat.identity(b, x), None
        if pick is not None:  # only the picked rows are perturbed (and cost inner passes)
            x, y, u0 = x[pick], y[pick], u0[pick]
            delta0 = None if delta0 is None else delta0[pick]
        if len(x) == 0:
            x_adv = x
        elif s.steps == 0:  # random-attribute augmentation
            with torch.no_grad():
                x_adv = threat.render(x, *threat.project(u0, delta0))
        else:
            with ctx.attack_mode(), torch.enable_grad():
                x_adv, _, _ = semantic_perturb(ctx.model, threat, x, y, steps=s.steps, u0=u0, delta0=delta0)
        ctx.inner_passes += s.steps * len(x)
        if pick is not None:
            x_adv = x_full.index_put((pick,), x_adv)
            y = y_full
        logits = ctx.forward(x_adv)  # (B, K)
        return StepOutput(ctx.ce(logits, y), logits)


TRAINING_METHODS.register("sia", SIA())
