"""The default surrogate of the audit's transfer rungs: a standard (not adversarially trained) zoo model of the
same data.

A surrogate whose own gradients are informative tests whether the audited model's robustness survives attacks it
does not compute itself (transfer, surrogate-initialised PGD). Without one named, the audit takes the registered
standard zoo model of the same dataset, input shape and number of classes with the fewest FLOPs (for CIFAR-10,
``vgg8-w25``, the cheapest model of the default study), never the audited model itself. When no such model exists
(MNIST, Fashion-MNIST and user datasets have no standard zoo model), the transfer rungs are skipped and the result
says why.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from robustlab.models.spec import ModelSpec

#: How the surrogate was chosen: named by the caller, chosen by :func:`choose_surrogate`, or none.
GIVEN, DEFAULT, NONE = "given", "default", "none"


@dataclass(frozen=True)
class SurrogateChoice:
    """Which surrogate the audit used, and why.

    Attributes:
        name: The surrogate's name (``None``: no surrogate, the transfer rungs are skipped).
        how: ``"given"`` (the caller named it), ``"default"`` (chosen from the zoo) or ``"none"``.
        reason: One sentence: why this surrogate, or why none.
    """

    name: str | None
    how: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{name, how, reason}``."""
        return {"name": self.name, "how": self.how, "reason": self.reason}


def _standard(spec: ModelSpec) -> bool:
    """Whether a registered model was trained without an adversary (no robust record, standard method)."""
    return "robust" not in spec.metrics and spec.recipe.get("method", "standard") == "standard"


def choose_surrogate(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dataset: str | None = None,
    exclude: Collection[str] = (),
) -> SurrogateChoice:
    """The default surrogate: the standard zoo model of ``dataset`` (any dataset when ``None``) that takes
    ``input_shape`` images and has ``num_classes`` classes, with the fewest FLOPs (ties: by name).

    Args:
        input_shape: The audited images' shape ``(C, H, W)``.
        num_classes: The audited model's number of classes.
        dataset: The data's registry name (``"cifar10"``); ``None`` when unknown: then shape and classes decide.
        exclude: Names never chosen (the audited model itself).

    Returns:
        The choice; ``name`` is ``None`` (with the reason) when no registered model fits.
    """
    from robustlab.models import list_models

    shape = tuple(int(s) for s in input_shape)
    matching = [
        s
        for s in list_models("zoo")
        if _standard(s)
        and tuple(s.input_shape) == shape
        and s.num_classes == num_classes
        and (dataset is None or s.dataset == dataset)
    ]
    fits = [s for s in matching if s.name not in exclude]
    of = f"of {dataset} " if dataset is not None else ""
    what = f"standard zoo model {of}taking {shape} inputs with {num_classes} classes"
    if not fits:
        others = " other than the audited model" if matching else ""
        return SurrogateChoice(
            None,
            NONE,
            f"no surrogate given and no {what}{others} is registered (name one with --surrogate, e.g. a standard "
            "model trained on the same data)",
        )
    best = min(fits, key=lambda s: (s.metrics.get("flops", float("inf")), s.name))
    flops = best.metrics.get("flops")
    cost = f" ({flops / 1e6:.1f} MFLOPs)" if flops else ""
    return SurrogateChoice(
        best.name,
        DEFAULT,
        f"no surrogate given: {best.name} is the {what} with the fewest FLOPs{cost}",
    )
