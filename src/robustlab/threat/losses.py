"""Attack losses, all computed on logits and all to be *maximised* by the attacker.

Softmax outputs make every one of them wrong (cross-entropy of probabilities saturates, margins shrink to
[-1, 1]); the model contract says logits, and the evaluation-hygiene checks warn about softmax outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch.nn.functional as F
from torch import Tensor

from robustlab._registry import Registry
from robustlab.errors import ConfigError


def other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """The largest logit among the classes other than ``cls``.

    The excluded class is masked with ``-inf``, never multiplied by zero: zeroing it makes the "other" maximum
    at least 0, which is wrong as soon as all logits are negative (a bug shipped by several C&W
    implementations).

    Shape:
        - logits: ``(N, K)``
        - cls: ``(N,)`` int64
        - output: ``(N,)``
    """
    mask = F.one_hot(cls, logits.shape[1]).bool()
    return logits.masked_fill(mask, float("-inf")).amax(1)


def margin(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """Signed attack margin: positive exactly when the attack goal is met with room to spare.

    Untargeted: ``max_{k != y} z_k - z_y``; targeted: ``z_t - max_{k != t} z_k``.

    Shape:
        - logits: ``(N, K)``; labels, targets: ``(N,)``
        - output: ``(N,)``
    """
    if targets is None:
        return other_max(logits, labels) - logits.gather(1, labels[:, None]).squeeze(1)
    return logits.gather(1, targets[:, None]).squeeze(1) - other_max(logits, targets)


class Loss(ABC):
    """A per-sample objective on logits that the attack ascends."""

    name: str

    def check(self, num_classes: int, targeted: bool) -> None:  # noqa: B027 - optional hook
        """Raise :class:`ConfigError` if the loss is undefined for this number of classes."""

    @abstractmethod
    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        """The per-sample loss.

        ``reference`` is what a loss compares against besides the labels (TRADES' KL: the clean logits); the
        gradient loop passes it row by row, compacted with the rest of its state. Losses that need none ignore it.

        Shape: logits ``(N, K)``, labels/targets ``(N,)``, reference ``(N, K)`` → ``(N,)``."""


class CrossEntropy(Loss):
    """Cross-entropy of the label (untargeted, ascended) or minus that of the target (targeted).

    References:
        Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015.
    """

    name = "ce"

    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        if targets is None:
            return F.cross_entropy(logits, labels, reduction="none")
        return -F.cross_entropy(logits, targets, reduction="none")


class Margin(Loss):
    """The C&W margin, capped at the confidence ``kappa``: ``min(margin, kappa)``.

    Args:
        kappa: Confidence; once the margin exceeds it the loss is flat.

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
    """

    name = "margin"

    def __init__(self, kappa: float = 0.0) -> None:
        self.kappa = kappa

    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        return margin(logits, labels, targets).clamp(max=self.kappa)


class DLR(Loss):
    """Difference of logits ratio: shift- and scale-invariant margin.

    Untargeted: ``-(z_y - max_{k!=y} z_k) / (z_pi1 - z_pi3)``; targeted:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi`` the sorted logits.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
        parameter-free attacks", ICML 2020.
    """

    name = "dlr"

    def check(self, num_classes: int, targeted: bool) -> None:
        need = 4 if targeted else 3
        if num_classes < need:
            kind = "targeted" if targeted else "untargeted"
            raise ConfigError(
                f"the {kind} DLR loss needs at least {need} classes, the model has {num_classes}; "
                "use loss='ce' or loss='margin'"
            )

    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        srt = logits.sort(dim=1, descending=True).values  # (N, K)
        z_y = logits.gather(1, labels[:, None]).squeeze(1)
        if targets is None:
            return -(z_y - other_max(logits, labels)) / (srt[:, 0] - srt[:, 2] + 1e-12)
        z_t = logits.gather(1, targets[:, None]).squeeze(1)
        return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


class KL(Loss):
    """``KL(softmax(reference) ‖ softmax(logits))`` per sample: how far the prediction moved away from a reference
    distribution, ascended by TRADES' inner maximisation with the clean logits as the reference.

    Labels and targets are not used; ``reference`` is required.

    References:
        Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019.
    """

    name = "kl"

    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        if reference is None:
            raise ConfigError("the kl loss needs reference logits (e.g. the clean logits): pass reference=...")
        return F.kl_div(F.log_softmax(logits, dim=1), F.softmax(reference, dim=1), reduction="none").sum(1)


LOSSES: Registry[type[Loss]] = Registry("loss")
LOSSES.register("ce", CrossEntropy)
LOSSES.register("margin", Margin)
LOSSES.register("dlr", DLR)
LOSSES.register("kl", KL)


def make_loss(name: str, kappa: float = 0.0) -> Loss:
    """Build a loss by name; ``kappa`` applies to the margin loss only."""
    cls = LOSSES.get(name)
    return Margin(kappa) if cls is Margin else cls()
