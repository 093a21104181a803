"""``reweighted``: cross-entropy with one weight per class (re-weighting for imbalanced data).

``weights`` is a comma-separated list, one per class, e.g. the class-balanced "effective number" weights of Cui et
al. (CVPR 2019) that :func:`robustlab.train.imbalance.effective_number_weights` computes. The loss is
``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` (PyTorch's weighted mean), with the run's label smoothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod


@dataclass(frozen=True)
class ReweightedSettings:
    """Settings of ``reweighted``: ``weights``, comma-separated, one per class (required)."""

    weights: str | None = None


class Reweighted(TrainingMethod):
    """Class-weighted cross-entropy on the clean batch."""

    name = "reweighted"
    adversarial = False

    def __init__(self) -> None:
        self.settings = ReweightedSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        assert isinstance(copy, Reweighted)
        copy.class_weights()
        return copy

    def class_weights(self) -> list[float]:
        """The weights as numbers (validated)."""
        text = self.settings.weights
        if text is None:
            raise ConfigError("reweighted needs weights: one per class, comma-separated, e.g. weights='1,2.5,10'")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError(f"reweighted: weights must be comma-separated numbers, got {text!r}") from None
        if not all(v >= 0 for v in values) or not any(v > 0 for v in values):
            raise ConfigError(f"reweighted: weights must be >= 0 and not all 0, got {text!r}")
        return values

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        w = torch.tensor(self.class_weights(), dtype=x.dtype, device=x.device)
        if int(y.max()) >= len(w):
            raise ConfigError(f"reweighted: {len(w)} weights, but label {int(y.max())} has none")
        logits = ctx.forward(x)  # (B, K)
        return StepOutput(F.cross_entropy(logits, y, weight=w, label_smoothing=ctx.label_smoothing), logits)


TRAINING_METHODS.register("reweighted", Reweighted())
