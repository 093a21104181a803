"""Does a dataset fit a model? Labels in range and class names that mean the same classes.

Every place where a model meets a dataset (``evaluate``, ``attack``, ``clever``, the corruptions, the study's jobs
and the command line) calls :func:`check_dataset_fits`, so a 5-class model is never scored on CIFAR-10's ten labels
and a ``folder:`` dataset whose class folders are not the model's classes is refused instead of scoring 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robustlab.errors import ConfigError
from robustlab.models.adapter import ModelAdapter
from robustlab.threat.targets import check_labels

__all__ = ["check_dataset_fits", "model_classes"]


def model_classes(model: torch.nn.Module) -> tuple[str, ...] | None:
    """The class names of ``model`` in logit order, when its spec knows them (``None`` otherwise)."""
    spec = getattr(model, "spec", None)
    return None if spec is None else spec.class_names()


def _placeholders(names: Sequence[str]) -> bool:
    """Names ``"0" .. "k-1"``: what a ``npz:`` file without ``classes`` gets, i.e. no names at all."""
    return tuple(names) == tuple(str(k) for k in range(len(names)))


def check_dataset_fits(
    model: ModelAdapter,
    labels: torch.Tensor,
    classes: Sequence[str] | None = None,
    *,
    dataset: str = "the dataset",
) -> None:
    """Refuse a dataset whose labels or class names do not fit ``model``'s classes.

    Args:
        model: The classifier (its ``num_classes`` and, when its spec knows them, its class names).
        labels: The labels that will be compared with the model's predictions.
        classes: The dataset's class names (``classes[k]`` names label ``k``); ``None``: labels only.
        dataset: The dataset's name, for the message.

    Raises:
        ConfigError: if a label lies outside ``0 .. num_classes - 1``, the dataset has more classes than the
            model, or a class name differs from the model's class of the same index (case-insensitive; names
            ``"0" .. "k-1"`` of a ``npz:`` file without names are not compared).

    Shape:
        labels: (N,) integer.
    """
    k = int(model.num_classes)
    name = getattr(model, "name", type(model).__name__)
    if classes is not None and len(classes) > k:
        raise ConfigError(
            f"{dataset} has {len(classes)} classes but model {name} has {k}: its predictions cannot be "
            "compared with these labels; use a model trained on this dataset's classes."
        )
    try:
        check_labels(labels, k)
    except ConfigError as exc:
        raise ConfigError(f"{dataset} does not fit model {name}: {exc}") from exc
    own = model_classes(model)
    if classes is None or own is None or _placeholders(classes) or _placeholders(own):
        return
    wrong = [i for i, c in enumerate(classes) if c.casefold() != own[i].casefold()]
    if wrong:
        pairs = ", ".join(f"{i}: {classes[i]!r} vs {own[i]!r}" for i in wrong[:4])
        more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
        raise ConfigError(
            f"the classes of {dataset} are not model {name}'s: label {pairs}{more}. Label k must name the "
            f"model's class k; the model's classes are {', '.join(own)}."
        )
