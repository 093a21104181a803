"""The accuracy–robustness trade-off: Pareto frontier and the law distortion = a + b·log(error).

A model's distortion is its MEDIAN minimal distortion over successful inputs (the attack summary's statistic):
the mean is driven by single outliers (one FGSM search that only succeeds at a large eps moves a model's mean
tenfold while its median stays put).

References:
    Su, Zhang, Chen, Yi, Chen, Gao. "Is Robustness the Cost of Accuracy? A Comprehensive Study on the
    Robustness of 18 Deep Image Classification Models." ECCV 2018 (Fig. 2: linear scaling law in log error).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from robustlab.stats import median


@dataclass(frozen=True)
class ModelPoint:
    """One model in the accuracy–robustness plane."""

    model: str
    family: str
    error: float  # top-1 clean error in (0, 1)
    distortion: float  # median minimal adversarial distortion over successes (higher = more robust)


def pareto_frontier(points: list[ModelPoint]) -> list[ModelPoint]:
    """Models not dominated by another with lower (or equal) error *and* higher (or equal) distortion.

    Sorted by error.
    """
    front = []
    for p in points:
        dominated = any(
            q.error <= p.error and q.distortion >= p.distortion and (q.error < p.error or q.distortion > p.distortion)
            for q in points
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: p.error)


@dataclass(frozen=True)
class LogErrorFit:
    """Least-squares fit of distortion = a + b·ln(error), with a bootstrap confidence interval."""

    a: float
    b: float
    r2: float
    n: int
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def fit_log_error(
    points: list[ModelPoint], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> LogErrorFit | None:
    """Fit the seed study's law over ``points``; ``None`` with fewer than 3 points or a constant error.

    The interval is a percentile bootstrap over models (resampled with replacement, seeded).
    """
    if len(points) < 3:
        return None
    x = np.log(np.array([p.error for p in points]))
    y = np.array([p.distortion for p in points])
    if np.ptp(x) == 0:
        return None
    a, b = _lstsq(x, y)
    resid = y - (a + b * x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) > 0:
            boot.append(_lstsq(x[idx], y[idx]))
    arr = np.array(boot) if boot else np.array([[a, b]])
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    a_ci = (float(np.percentile(arr[:, 0], lo)), float(np.percentile(arr[:, 0], hi)))
    b_ci = (float(np.percentile(arr[:, 1], lo)), float(np.percentile(arr[:, 1], hi)))
    return LogErrorFit(a, b, r2, len(points), a_ci, b_ci, confidence)


def points_from_summary(
    rows: list[dict[str, Any]], errors: dict[str, float], key: str, metric: str = "median"
) -> list[ModelPoint]:
    """Model points for one attack configuration ``key`` from :func:`attack_summary` rows.

    Args:
        rows: Attack summary rows.
        errors: Clean top-1 error per model.
        key: Attack configuration key (a minimal-distortion configuration, or C&W / EAD).
        metric: ``"median"`` (the default, as everywhere) or ``"mean"`` distortion in the configuration's norm.
    """
    out = []
    for r in rows:
        if r["key"] != key or r["model"] not in errors:
            continue
        d = r.get(f"{metric}_{r['norm']}")
        e = errors[r["model"]]
        if d is not None and 0 < e < 1 and math.isfinite(d):
            out.append(ModelPoint(r["model"], r["family"], e, float(d)))
    return out


@dataclass
class ParetoAnalysis:
    """Frontier and fits for one distortion measure (an attack configuration; each model at its median)."""

    key: str
    norm: str
    points: list[ModelPoint]
    frontier: list[ModelPoint]
    fit_all: LogErrorFit | None
    fit_frontier: LogErrorFit | None
    family_medians: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "norm": self.norm,
            "points": [asdict(p) for p in self.points],
            "frontier": [p.model for p in self.frontier],
            "fit_all": self.fit_all.to_dict() if self.fit_all else None,
            "fit_frontier": self.fit_frontier.to_dict() if self.fit_frontier else None,
            "family_medians": self.family_medians,
        }


def pareto_analysis(key: str, norm: str, points: list[ModelPoint]) -> ParetoAnalysis:
    """Frontier, log-error fits (all models, frontier) and per family the median of its models' distortions."""
    front = pareto_frontier(points)
    fams: dict[str, list[float]] = {}
    for p in points:
        fams.setdefault(p.family, []).append(p.distortion)
    return ParetoAnalysis(
        key,
        norm,
        points,
        front,
        fit_log_error(points),
        fit_log_error(front),
        {f: float(median(v) or 0.0) for f, v in sorted(fams.items())},
    )
