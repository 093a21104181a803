"""Class-wise robustness: per-class accuracy, the adversarial confusion matrix and the Class False Positive Score.

Everything is computed from per-sample records (label, clean prediction, prediction under attack or
corruption), so an attack never has to run again to get class-wise numbers.

The Class False Positive Score of class ``c`` is

    CFPS(c) = |{i : f(x_i) = c, y_i != c}| / |{i : f(x_i) = y_i}|,

the number of samples of *other* classes predicted as ``c`` (false positives of ``c``), divided by the number
of correctly classified samples of *all* classes. It measures how attractive ``c`` is as a wrong answer. This
definition is transcribed from a secondary source (a summary of Medi et al., whose own text we could not
check; that summary's formula reads ``y_i = c_j`` in the numerator, which would count true positives and
contradicts its prose, so the false-positive reading is used). Because the normalisation is debatable,
``FP(c) / TP(c)`` is reported as well.

References:
    Medi, Grabinski & Keuper, "Towards Class-wise Robustness Analysis", arXiv:2411.19853, 2024.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robustlab.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "ClasswiseResult",
    "classwise_from_records",
    "classwise_metrics",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class ClasswiseResult:
    """Class-wise clean and robust metrics of one model under one perturbation (attack or corruption).

    Lists are indexed by class. "Robust" refers to the perturbed predictions. Ratios whose denominator is 0
    (a class with no samples, no correct prediction) are ``None``.

    Attributes:
        classes: Class names.
        n: Number of samples.
        support: Samples per true class.
        clean_correct / robust_correct: Correct predictions per true class (``robust_correct`` = TP(c)).
        clean_accuracy / robust_accuracy: Per-class accuracy.
        vulnerability: Per-class accuracy drop, clean minus robust.
        confusion: ``confusion[t][p]``: samples of true class ``t`` predicted ``p`` under perturbation.
        clean_confusion: The same for clean predictions.
        false_positives: FP(c) under perturbation: samples of other classes predicted ``c``.
        clean_false_positives: FP(c) on clean inputs.
        cfps: CFPS(c) under perturbation (see the module docstring).
        clean_cfps: CFPS(c) on clean inputs.
        fp_tp_ratio: FP(c) / TP(c) under perturbation.
        clean_accuracy_overall / robust_accuracy_overall: Overall accuracies.
        worst_class / best_class: Classes with the lowest / highest robust accuracy.
        worst_class_accuracy / best_class_accuracy: Their robust accuracies; ``gap`` = best − worst.
        clean_worst_class / clean_worst_class_accuracy / clean_gap: The same on clean inputs.

    Shape:
        Per-class lists: ``(K,)``; confusion matrices: ``(K, K)``.
    """

    classes: tuple[str, ...]
    n: int
    support: list[int]
    clean_correct: list[int]
    robust_correct: list[int]
    clean_accuracy: list[float | None]
    robust_accuracy: list[float | None]
    vulnerability: list[float | None]
    confusion: list[list[int]]
    clean_confusion: list[list[int]]
    false_positives: list[int]
    clean_false_positives: list[int]
    cfps: list[float | None]
    clean_cfps: list[float | None]
    fp_tp_ratio: list[float | None]
    clean_accuracy_overall: float
    robust_accuracy_overall: float
    worst_class: int
    best_class: int
    worst_class_accuracy: float
    best_class_accuracy: float
    gap: float
    clean_worst_class: int
    clean_worst_class_accuracy: float
    clean_gap: float

    @property
    def num_classes(self) -> int:
        """Number of classes ``K``."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (class names included)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def table(self) -> list[dict[str, Any]]:
        """One row per class: name, support, accuracies, FP, CFPS and FP/TP."""
        return [
            {
                "class": name,
                "support": self.support[k],
                "clean_accuracy": self.clean_accuracy[k],
                "robust_accuracy": self.robust_accuracy[k],
                "vulnerability": self.vulnerability[k],
                "false_positives": self.false_positives[k],
                "cfps": self.cfps[k],
                "fp_tp_ratio": self.fp_tp_ratio[k],
                "clean_cfps": self.clean_cfps[k],
            }
            for k, name in enumerate(self.classes)
        ]


def _as_labels(name: str, values: ArrayLike) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def _extremes(acc: list[float | None]) -> tuple[int, int, float, float]:
    present = [(a, c) for c, a in enumerate(acc) if a is not None]
    if not present:
        return -1, -1, math.nan, math.nan
    worst = min(present)
    best = max(present, key=lambda t: (t[0], -t[1]))
    return worst[1], best[1], worst[0], best[0]


def classwise_metrics(
    labels: ArrayLike,
    clean_pred: ArrayLike,
    perturbed_pred: ArrayLike,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> ClasswiseResult:
    """Class-wise metrics from per-sample labels and predictions.

    Args:
        labels: True class of each sample.
        clean_pred: Prediction on the clean input.
        perturbed_pred: Prediction on the adversarial or corrupted input.
        num_classes: Number of classes ``K``; default ``len(classes)``, else ``max(index) + 1``.
        classes: Class names (default ``"0" .. "K-1"``).

    Returns:
        A :class:`ClasswiseResult`; its per-class counts add up to the overall counts.

    Shape:
        labels, clean_pred, perturbed_pred: ``(N,)`` integer class indices.

    Raises:
        ConfigError: arrays of different lengths, not 1-D integer arrays, or indices outside ``0 .. K-1``.

    References:
        Medi, Grabinski & Keuper, "Towards Class-wise Robustness Analysis", arXiv:2411.19853, 2024.
    """
    y = _as_labels("labels", labels)
    pc = _as_labels("clean_pred", clean_pred)
    pa = _as_labels("perturbed_pred", perturbed_pred)
    if not (len(y) == len(pc) == len(pa)):
        raise ConfigError(
            f"labels, clean_pred and perturbed_pred must have the same length, got {len(y)}, {len(pc)}, {len(pa)}"
        )
    if num_classes is None:
        num_classes = (
            len(classes)
            if classes is not None
            else int(max(y.max(initial=0), pc.max(initial=0), pa.max(initial=0))) + 1
        )
    if classes is None:
        classes = [str(k) for k in range(num_classes)]
    if len(classes) != num_classes or num_classes < 1:
        raise ConfigError(f"got {len(classes)} class names for num_classes={num_classes}")
    for name, arr in (("labels", y), ("clean_pred", pc), ("perturbed_pred", pa)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ConfigError(f"{name} must lie in 0..{num_classes - 1}, got {int(arr.min())}..{int(arr.max())}")
    k = num_classes
    conf = _confusion(y, pa, k)
    clean_conf = _confusion(y, pc, k)
    support = conf.sum(axis=1)
    tp = np.diag(conf)
    clean_tp = np.diag(clean_conf)
    fp = conf.sum(axis=0) - tp
    clean_fp = clean_conf.sum(axis=0) - clean_tp
    total_correct, clean_total_correct = int(tp.sum()), int(clean_tp.sum())
    clean_acc = [_ratio(int(clean_tp[c]), int(support[c])) for c in range(k)]
    robust_acc = [_ratio(int(tp[c]), int(support[c])) for c in range(k)]
    vulnerability = [None if a is None or b is None else a - b for a, b in zip(clean_acc, robust_acc, strict=True)]
    worst, best, worst_acc, best_acc = _extremes(robust_acc)
    c_worst, _, c_worst_acc, c_best_acc = _extremes(clean_acc)
    n = len(y)
    return ClasswiseResult(
        classes=tuple(classes),
        n=n,
        support=support.tolist(),
        clean_correct=clean_tp.tolist(),
        robust_correct=tp.tolist(),
        clean_accuracy=clean_acc,
        robust_accuracy=robust_acc,
        vulnerability=vulnerability,
        confusion=conf.tolist(),
        clean_confusion=clean_conf.tolist(),
        false_positives=fp.tolist(),
        clean_false_positives=clean_fp.tolist(),
        cfps=[_ratio(int(fp[c]), total_correct) for c in range(k)],
        clean_cfps=[_ratio(int(clean_fp[c]), clean_total_correct) for c in range(k)],
        fp_tp_ratio=[_ratio(int(fp[c]), int(tp[c])) for c in range(k)],
        clean_accuracy_overall=clean_total_correct / n if n else math.nan,
        robust_accuracy_overall=total_correct / n if n else math.nan,
        worst_class=worst,
        best_class=best,
        worst_class_accuracy=worst_acc,
        best_class_accuracy=best_acc,
        gap=best_acc - worst_acc,
        clean_worst_class=c_worst,
        clean_worst_class_accuracy=c_worst_acc,
        clean_gap=c_best_acc - c_worst_acc,
    )


def classwise_from_records(
    records: Any, *, classes: Sequence[str] | None = None, num_classes: int | None = None
) -> ClasswiseResult:
    """Class-wise metrics from per-sample records that have ``label``, ``clean_pred`` and ``adv_pred``.

    Works with :class:`robustlab.attacks.AttackResult` (or anything with those three per-sample fields), so
    attack results are analysed without running the attack again.

    Raises:
        ConfigError: the records lack one of the three fields.
    """
    missing = [f for f in ("label", "clean_pred", "adv_pred") if not hasattr(records, f)]
    if missing:
        raise ConfigError(f"records need the per-sample fields label, clean_pred, adv_pred; missing {missing}")
    return classwise_metrics(
        records.label, records.clean_pred, records.adv_pred, classes=classes, num_classes=num_classes
    )
