"""Target selection: untargeted, random (seeded), least-likely and top-2.

A target is never the label. Modes read the *clean* logits once, before the attack, so every attack in a
study sees the same targets for the same seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from robustlab._registry import Registry
from robustlab.errors import ConfigError


class TargetMode(ABC):
    """How to choose the target class of each sample.

    Attributes:
        name: Registry name.
        min_classes: Fewest classes for which the mode is meaningful.
    """

    name: str
    min_classes: int = 2
    targeted: bool = True

    def check(self, num_classes: int) -> None:
        """Raise :class:`ConfigError` if the model has too few classes for this mode."""
        if num_classes < self.min_classes:
            raise ConfigError(
                f"target mode {self.name!r} needs at least {self.min_classes} classes, the model has "
                f"{num_classes}{self._hint}"
            )

    _hint = ""

    @abstractmethod
    def select(self, clean_logits: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        """Targets for each sample, or ``None`` for an untargeted attack.

        Shape:
            - clean_logits: ``(N, K)``; labels: ``(N,)``
            - output: ``(N,)`` int64 or ``None``
        """


class Untargeted(TargetMode):
    """Any class but the label counts as success."""

    name = "untargeted"
    targeted = False

    def select(self, clean_logits: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        return None


class RandomTarget(TargetMode):
    """A class drawn uniformly among those other than the label, from the given generator."""

    name = "random"

    def select(self, clean_logits: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        k = clean_logits.shape[1]
        shift = torch.randint(1, k, labels.shape, generator=generator, device=generator.device)
        return (labels + shift.to(labels.device)) % k


class LeastLikely(TargetMode):
    """The class with the lowest clean logit among those other than the label (Kurakin et al. 2017)."""

    name = "least-likely"
    min_classes = 3
    _hint = ": with 2 classes the least-likely class is the only other class; use target='top2'"

    def select(self, clean_logits: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        z = torch.nan_to_num(clean_logits, nan=0.0)
        return _argmin_other(z, labels)


class Top2(TargetMode):
    """The class with the highest clean logit among those other than the label (the runner-up)."""

    name = "top2"

    def select(self, clean_logits: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor | None:
        z = torch.nan_to_num(clean_logits, nan=0.0)
        mask = torch.nn.functional.one_hot(labels, z.shape[1]).bool()
        return z.masked_fill(mask, float("-inf")).argmax(1)


def _argmin_other(z: Tensor, labels: Tensor) -> Tensor:
    mask = torch.nn.functional.one_hot(labels, z.shape[1]).bool()
    return z.masked_fill(mask, float("inf")).argmin(1)


TARGET_MODES: Registry[TargetMode] = Registry("target mode")
for _mode in (Untargeted(), RandomTarget(), LeastLikely(), Top2()):
    TARGET_MODES.register(_mode.name, _mode)


def get_target_mode(name: str) -> TargetMode:
    """Look up a target mode; underscores and hyphens are interchangeable (``least_likely``)."""
    return TARGET_MODES.get(name.replace("_", "-"))


def check_labels(labels: Tensor, num_classes: int, what: str = "labels") -> None:
    """Raise :class:`ConfigError` unless every entry is an integer class index in ``[0, num_classes)``."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ConfigError(f"{what} must be integer class indices, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ConfigError(f"{what} must have shape (N,), got {tuple(labels.shape)}")
    bad = ((labels < 0) | (labels >= num_classes)).nonzero().flatten()
    if bad.numel():
        first = bad[:5].tolist()
        raise ConfigError(
            f"{what} out of range: the model has {num_classes} classes (0..{num_classes - 1}) but "
            f"{bad.numel()} {what} are outside, at positions {first} (values {labels[bad[:5]].tolist()})"
        )


def resolve_targets(
    target: str | Tensor,
    clean_logits: Tensor,
    labels: Tensor,
    generator: torch.Generator,
) -> tuple[str, Tensor | None]:
    """Turn a target mode or an explicit target tensor into per-sample targets.

    Args:
        target: A mode name or explicit targets.
        clean_logits: Logits of the clean inputs.
        labels: True labels.
        generator: Source of randomness for ``"random"``.

    Returns:
        The mode name (``"explicit"`` for a tensor) and the targets, ``None`` when untargeted.

    Raises:
        ConfigError: too few classes for the mode, targets out of range or equal to the label.
        UnknownNameError: unknown mode, with close matches.

    Shape:
        - clean_logits: ``(N, K)``; labels: ``(N,)``
        - targets: ``(N,)`` int64
    """
    k = clean_logits.shape[1]
    if isinstance(target, Tensor):
        targets = target.to(labels.device)
        check_labels(targets, k, "targets")
        if targets.shape != labels.shape:
            raise ConfigError(f"targets have shape {tuple(targets.shape)}, labels {tuple(labels.shape)}")
        same = (targets == labels).nonzero().flatten()
        if same.numel():
            raise ConfigError(
                f"{same.numel()} targets equal their label (positions {same[:5].tolist()}): "
                "a targeted attack needs a different class"
            )
        return "explicit", targets.long()
    mode = get_target_mode(target)
    mode.check(k)
    return mode.name, mode.select(clean_logits, labels, generator)
