"""``nofrost`` and ``mixed-at``: the clean/adversarial mixed loss of NoFrost, on a normalizer-free or a BN network.

Per batch ``(x, y)``::

    x′   = PGD(x, y)                                   (L∞, ``steps`` sign steps, uniform random start)
    loss = (1 − λ) · CE_ls(f(x), y) + λ · CE_ls(f(x′), y)

with ``λ = adv_weight`` and ``CE_ls`` the cross-entropy with the run's label smoothing
(``TrainConfig.label_smoothing``, through :meth:`StepContext.ce`).

- ``nofrost`` (Wang et al., ICML 2022) trains a **normalizer-free** network: its :meth:`NoFrost.model_kwargs` is
  ``{"norm_layer": "none"}`` (:func:`robustlab.models.norm_layers.convert_norm`: every batch norm removed,
  weight-standardised convolutions, a SkipInit gain at the end of each residual branch).
- ``mixed-at`` is the same loss on the network as the spec builds it (plain batch norm by default): the paper's
  "AT with BN" comparison arm. It is a method of its own rather than a ``normalizer_free`` switch of ``nofrost``
  because the two arms build different models: the method name then says which layout a run trained (and a run
  fingerprint that differs only in the method name is the comparison), and ``nofrost`` never means a BN network.
  ``mixed-at`` on a spec with ``norm_layer="none"`` is ``nofrost``.

Settings and their source (amazon-science/normalizer-free-robust-training ``PGDAT.py``, read for the research
note §1.7): ``eps`` (required; the reference's 8/255), ``steps`` (10; the reference script's argparse default is 7,
the note's recipe 10), ``step_size`` (``None``: the reference's automatic ``alpha = min(1.25·eps, eps + 4/255) /
steps``, 1/255 at eps 8/255 and 10 steps), ``random_start`` (``True``: advertorch's ``PGDAttack`` starts from a
uniform point of the ball, clipped to [0, 1]), ``adv_weight`` (λ = 0.5, the reference's ``--Lambda``).

**Label smoothing.** The reference trains with label smoothing 0.1 (timm's ``LabelSmoothingCrossEntropy`` on both
terms). robustlab defaults adversarial methods to 0 and warns (:class:`~robustlab.train.LabelSmoothingWarning`)
otherwise; the ±LS arms of the NoFrost experiment differ only in ``TrainConfig(label_smoothing=0.1)``, and the
warning of the +LS arm is expected (label smoothing is the suspected cause of NoFrost's AutoAttack collapse, issue #2
of the reference repository).

**Out of scope.** The reference model is timm's ``nf_resnet50`` with dropout 0.25 before the classifier and
stochastic depth (drop-path) 0.1; neither is applied here (robustlab's normalizer-free conversion has no drop-path,
and the method does not change the architecture beyond its normalisation). The DeepAugment data of NoFrost*
(``CRT_TDAT.py``) is not part of this method either.

Order of the passes: the attack runs first (in the loop's batch-norm mode, ``TrainConfig.attack_bn``; the reference
attacks in eval mode), then the clean and the adversarial forward passes in train mode. The reference computes the
clean logits before the attack; the loss is the same, and so are the batch-norm statistics of ``mixed-at`` unless
``attack_bn="train"``.

The loop's training accuracy is counted on the adversarial logits (as for ``pgd-at``); the clean accuracy and both
terms of the loss are logged (``clean_accuracy``, ``clean_loss``, ``adv_loss``).

References:
    Wang, Zhang, Gao, Zhang, Wang, "Removing Batch Normalization Boosts Adversarial Training", ICML 2022.
    Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015 (the mixed loss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod


@dataclass(frozen=True)
class MixedSettings:
    """Settings of ``nofrost`` and ``mixed-at`` (see the module docstring for their source).

    Attributes:
        eps: L∞ training budget (required).
        steps: PGD steps.
        step_size: Absolute PGD step; ``None``: ``min(1.25·eps, eps + 4/255) / steps``.
        random_start: Start PGD from a uniform point of the ball.
        adv_weight: λ, the weight of the adversarial term; the clean term has ``1 − λ``.
    """

    eps: float | None = None
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    adv_weight: float = 0.5


def auto_step_size(eps: float, steps: int) -> float:
    """The reference's automatic PGD step: ``min(1.25·eps, eps + 4/255) / steps`` (in [0, 1] pixel units)."""
    return min(1.25 * eps, eps + 4.0 / 255.0) / steps


class MixedAT(TrainingMethod):
    """``(1 − λ)·CE(f(x), y) + λ·CE(f(x′), y)`` with ``x′`` a PGD point, on the network as the spec builds it."""

    name = "mixed-at"
    adversarial = True

    def __init__(self) -> None:
        self.settings = MixedSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        s = copy.settings
        if s.eps is None:
            raise ConfigError(
                f"{self.name} needs eps (the training budget), e.g. --eps 8/255 or method_params={{'eps': 8/255}}"
            )
        if not (math.isfinite(s.eps) and s.eps > 0):
            raise ConfigError(f"{self.name}: eps must be > 0, got {s.eps}")
        if s.steps <= 0:
            raise ConfigError(f"{self.name}: steps must be > 0, got {s.steps}")
        if s.step_size is not None and not (math.isfinite(s.step_size) and s.step_size > 0):
            raise ConfigError(f"{self.name}: step_size must be > 0 (or None for the automatic step), got {s.step_size}")
        if not (math.isfinite(s.adv_weight) and 0 < s.adv_weight <= 1):
            raise ConfigError(
                f"{self.name}: adv_weight (λ) must be in (0, 1], got {s.adv_weight}; λ = 0 is clean training "
                "(method standard)"
            )
        return copy

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        step_size = s.step_size if s.step_size is not None else auto_step_size(s.eps, s.steps)
        x_adv = ctx.perturb(x, y, eps=s.eps, steps=s.steps, step_size=step_size, random_start=s.random_start)
        logits = ctx.forward_again(x)  # (B, K)
        logits_adv = ctx.forward(x_adv)  # (B, K)
        clean = ctx.ce(logits, y)
        adv = ctx.ce(logits_adv, y)
        lam = s.adv_weight
        with torch.no_grad():
            clean_acc = float((logits.argmax(1) == y).double().mean())
        logs = {"clean_loss": clean.item(), "adv_loss": adv.item(), "clean_accuracy": clean_acc}
        return StepOutput((1.0 - lam) * clean + lam * adv, logits_adv, logs)


class NoFrost(MixedAT):
    """NoFrost: the mixed loss on a normalizer-free network (the method builds it: ``norm_layer="none"``).

    References:
        Wang et al., "Removing Batch Normalization Boosts Adversarial Training", ICML 2022.
    """

    name = "nofrost"

    def model_kwargs(self) -> dict[str, Any]:
        return {"norm_layer": "none"}


TRAINING_METHODS.register("mixed-at", MixedAT())
TRAINING_METHODS.register("nofrost", NoFrost())
