"""Class-wise robustness of a study, from its stored per-sample records.

Nothing is re-run: a job kind hands (label, clean prediction, perturbed prediction) per model and perturbation
to :func:`classwise_analysis`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from robustlab.errors import ConfigError
from robustlab.metrics.classwise import ClasswiseResult, classwise_metrics
from robustlab.stats import Rate

#: A class with fewer images than this gets a warning: its rates' 95 % intervals are wider than about ±0.2.
MIN_CLASS_IMAGES = 20


def class_rates(r: ClasswiseResult, which: Literal["clean", "robust"] = "robust") -> list[Rate]:
    """Per-class clean or robust accuracy of ``r`` as rates (correct of the class's images)."""
    correct = r.robust_correct if which == "robust" else r.clean_correct
    return [Rate(int(k), int(n)) for k, n in zip(correct, r.support, strict=True)]


def worst_class(r: ClasswiseResult) -> tuple[str, Rate] | None:
    """The class with the lowest robust accuracy and its rate; ``None`` when no class has an image."""
    return None if r.worst_class < 0 else (r.classes[r.worst_class], class_rates(r)[r.worst_class])


@dataclass
class ClasswiseAnalysis:
    """Class-wise results under one perturbation (e.g. an untargeted attack configuration).

    Attributes:
        perturbation: Its name (an attack configuration key, ``corruptions``).
        results: Per model.
        correlation: CFPS against per-class vulnerability, pooled over models (``None``: nothing to pool).
        title: The name shown to readers (default: ``perturbation``).
    """

    perturbation: str
    results: dict[str, ClasswiseResult]
    correlation: CFPSCorrelation | None
    title: str | None = None

    @property
    def small_classes(self) -> dict[str, int]:
        """Classes with fewer than :data:`MIN_CLASS_IMAGES` images (for any model) and their fewest images."""
        out: dict[str, int] = {}
        for r in self.results.values():
            for name, n in zip(r.classes, r.support, strict=True):
                if n < MIN_CLASS_IMAGES:
                    out[name] = min(n, out.get(name, n))
        return out

    @property
    def warning(self) -> str | None:
        """A sentence naming the classes with fewer than :data:`MIN_CLASS_IMAGES` images, or ``None``."""
        small = self.small_classes
        if not small:
            return None
        listed = ", ".join(f"{c} ({n})" for c, n in small.items())
        return (
            f"{len(small)} class(es) have fewer than {MIN_CLASS_IMAGES} images: {listed}. Their per-class rates "
            "have wide intervals; compare classes with care."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form: each model's class-wise results with per-class rates (``rates``: clean and robust accuracy
        with intervals), ``worst`` (class and rate, ``None`` when nothing was measured), and the class-size
        ``warning``."""
        models = {}
        for m, r in self.results.items():
            d = r.to_dict()
            w = worst_class(r)
            if w is None:
                d["worst_class"] = d["worst_class_accuracy"] = None
            d["worst"] = None if w is None else {"class": w[0], **w[1].to_dict()}
            d["rates"] = {
                f"{which}_accuracy": [x.to_dict() for x in class_rates(r, which)] for which in ("clean", "robust")
            }
            models[m] = d
        return {
            "perturbation": self.perturbation,
            "title": self.title or self.perturbation,
            "models": models,
            "small_classes": self.small_classes,
            "warning": self.warning,
            "correlation": None
            if self.correlation is None
            else {k: v for k, v in self.correlation.to_dict().items() if k != "points"},
        }


def _correlate(results: dict[str, ClasswiseResult]) -> CFPSCorrelation | None:
    usable = {m: r for m, r in results.items() if any(v is not None for v in r.cfps)}
    return cfps_vulnerability_correlation(usable, permutations=2000) if usable else None


def classwise_analysis(
    perturbation: str, rows: list[tuple[Any, ...]], classes: tuple[str, ...] | None, title: str | None = None
) -> ClasswiseAnalysis:
    """Class-wise metrics of every model under one perturbation.

    Args:
        perturbation: Its name (an attack configuration key, a perturbation family).
        rows: ``(model, labels, clean predictions, perturbed predictions)`` per model, e.g. from a DuckDB
            ``SELECT model, list(label), list(clean_pred), list(pred) ... GROUP BY model``.
        classes: Class names (``None``: the labels' indices).
        title: The name shown to readers (default: ``perturbation``).
    """
    results = {m: classwise_metrics(y, c, p, classes=classes) for m, y, c, p in rows}
    return ClasswiseAnalysis(perturbation, results, _correlate(results), title)


# ------------------------------------------------------------------------------------------- correlation


@dataclass(frozen=True)
class CFPSCorrelation:
    """Correlation between CFPS and per-class vulnerability, pooled over (model, class) points.

    Attributes:
        models: The models pooled.
        cfps: Which score: ``"cfps"`` (under perturbation) or ``"clean_cfps"``.
        vulnerability: ``"robust_error"`` (1 − robust accuracy) or ``"accuracy_drop"`` (clean − robust).
        n_points: Number of (model, class) points.
        pearson / spearman: Pooled correlation coefficients (nan with fewer than 2 points or a constant side).
        pearson_p / spearman_p: Two-sided permutation p-values (``permutations`` shuffles, fixed seed).
        per_model: Per-model Pearson and Spearman coefficients over the classes.
        points: The pooled points ``{"model", "class", "cfps", "vulnerability"}``.
    """

    models: tuple[str, ...]
    cfps: str
    vulnerability: str
    n_points: int
    pearson: float
    spearman: float
    pearson_p: float
    spearman_p: float
    permutations: int
    per_model: dict[str, dict[str, float]]
    points: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson and Spearman (average ranks for ties) of ``a`` and ``b``; nan where undefined."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan
    return float(stats.pearsonr(a, b).statistic), float(stats.spearmanr(a, b).statistic)


def _permutation_p(a: np.ndarray, b: np.ndarray, observed: float, perms: np.ndarray) -> float:
    """Two-sided p-value of Pearson's r under the row permutations ``perms`` of ``b`` (``+1`` correction).

    Shape:
        a, b: (n,); perms: (P, n) integer.
    """
    ac, bc = a - a.mean(), b - b.mean()
    r = bc[perms] @ ac / math.sqrt(float((ac * ac).sum() * (bc * bc).sum()))  # (P,)
    hits = int((np.abs(r) >= abs(observed) - 1e-12).sum())
    return (hits + 1) / (len(perms) + 1)


def cfps_vulnerability_correlation(
    results: Mapping[str, ClasswiseResult],
    *,
    cfps: Literal["cfps", "clean_cfps"] = "cfps",
    vulnerability: Literal["robust_error", "accuracy_drop"] = "robust_error",
    permutations: int = 10_000,
    seed: int = 0,
) -> CFPSCorrelation:
    """Does a class's CFPS track its vulnerability? Pearson and Spearman over models × classes.

    The coefficients come from :mod:`scipy.stats`; the p-values from ``permutations`` shuffles of the
    vulnerabilities (the same shuffles for both coefficients; Spearman's on average ranks).

    Args:
        results: Class-wise results by model name (the same classes for each).
        cfps: Score on the perturbed (``"cfps"``) or clean (``"clean_cfps"``) predictions.
        vulnerability: ``"robust_error"`` = 1 − robust accuracy, ``"accuracy_drop"`` = clean − robust.
        permutations: Shuffles for the permutation p-values (0 skips them: p = nan).
        seed: Seed of the shuffles.

    Raises:
        ConfigError: no results, different classes, or an unknown score name.

    References:
        Medi, Grabinski & Keuper, "Towards Class-wise Robustness Analysis", arXiv:2411.19853, 2024.
    """
    if not results:
        raise ConfigError("need class-wise results of at least one model")
    if cfps not in ("cfps", "clean_cfps") or vulnerability not in ("robust_error", "accuracy_drop"):
        raise ConfigError(f"unknown score: cfps={cfps!r}, vulnerability={vulnerability!r}")
    if len({r.classes for r in results.values()}) != 1:
        raise ConfigError("all class-wise results must have the same classes")
    points: list[dict[str, Any]] = []
    per_model: dict[str, dict[str, float]] = {}
    for model, r in results.items():
        xs, ys = [], []
        for c, name in enumerate(r.classes):
            score = getattr(r, cfps)[c]
            robust, clean = r.robust_accuracy[c], r.clean_accuracy[c]
            if score is None or robust is None or clean is None:
                continue
            vul = 1 - robust if vulnerability == "robust_error" else clean - robust
            xs.append(score)
            ys.append(vul)
            points.append({"model": model, "class": name, "cfps": score, "vulnerability": vul})
        if len(xs) > 1:
            p, s = _correlations(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
            per_model[model] = {"pearson": p, "spearman": s}
        else:
            per_model[model] = {}
    a = np.asarray([p["cfps"] for p in points], dtype=np.float64)
    b = np.asarray([p["vulnerability"] for p in points], dtype=np.float64)
    pearson, spearman = _correlations(a, b)
    pearson_p = spearman_p = math.nan
    if permutations > 0 and len(a) > 2 and not math.isnan(pearson):
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(len(b)) for _ in range(permutations)])  # (P, n)
        pearson_p = _permutation_p(a, b, pearson, perms)
        spearman_p = _permutation_p(stats.rankdata(a), stats.rankdata(b), spearman, perms)
    return CFPSCorrelation(
        models=tuple(results),
        cfps=cfps,
        vulnerability=vulnerability,
        n_points=len(points),
        pearson=pearson,
        spearman=spearman,
        pearson_p=pearson_p,
        spearman_p=spearman_p,
        permutations=permutations,
        per_model=per_model,
        points=points,
    )
