"""Corruption robustness: accuracy per corruption × severity, corruption error (CE), mean CE and relative mCE.

With ``E(f, c, s)`` the top-1 error of model ``f`` on corruption ``c`` at severity ``s`` and ``b`` a baseline
model (AlexNet in ImageNet-C; in robustlab the zoo's AlexNet-style ``alexnet-w50``):

- ``CE(f, c) = sum_s E(f, c, s) / sum_s E(b, c, s)``, and mCE is its mean over the 15 benchmark corruptions;
- relative ``CE(f, c) = sum_s (E(f, c, s) − E(f, clean)) / sum_s (E(b, c, s) − E(b, clean))``, relative mCE its
  mean;
- without a baseline, the unnormalised mean error ``mean_s E(f, c, s)`` and its mean over corruptions (what
  CIFAR-10-C papers usually report as "mCE").

References:
    Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
    Perturbations", ICLR 2019.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from robustlab.data import to_float_images
from robustlab.data.corruptions import (
    BENCHMARK_CORRUPTIONS,
    MAX_SEVERITY,
    ConstantSet,
    constant_set_for,
    corrupt,
    get_corruption,
)
from robustlab.errors import ConfigError
from robustlab.metrics.accuracy import predict_classes
from robustlab.models.adapter import model_device
from robustlab.models.classes import check_dataset_fits

if TYPE_CHECKING:
    from robustlab.data import Dataset
    from robustlab.models.adapter import ModelAdapter

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK_SIZE",
    "CorruptionAccuracy",
    "CorruptionErrors",
    "CorruptionReport",
    "corruption_accuracy",
    "corruption_errors",
    "corruption_report",
]

#: Images corrupted together with one generator. Fixed, so corrupted images never depend on the batch size.
CHUNK_SIZE = 250

ProgressFn = Callable[[str, int, int], None]


def chunk_seed(seed: int, name: str, severity: int, chunk: int) -> int:
    """The generator seed of one chunk: a stable hash of (seed, corruption, severity, chunk index)."""
    return zlib.crc32(f"{int(seed)}:{name}:{int(severity)}:{int(chunk)}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class CorruptionAccuracy:
    """Accuracy of one model on the corrupted versions of one dataset (subset).

    Attributes:
        model: Model name.
        dataset: ``"name/split"``.
        n: Number of images.
        seed: Seed of the corruptions (chunk generators derive from it).
        constants: Constant set used (``"cifar"`` or ``"imagenet"``).
        corruptions / severities: What was evaluated.
        clean_correct / clean_accuracy: On the uncorrupted images.
        correct / accuracy: ``[corruption][severity]`` counts and accuracies.
        seconds: Wall time.
        indices: Rows of the evaluated images in the full split.
        labels / clean_predictions: Per-sample labels and clean predictions.
        predictions: ``[corruption][severity]`` per-sample predictions (for class-wise analysis).

    Shape:
        indices, labels, clean_predictions, predictions[c][s]: ``(n,)`` int64.
    """

    model: str
    dataset: str
    n: int
    seed: int
    constants: str
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    clean_correct: int
    clean_accuracy: float
    correct: dict[str, dict[int, int]]
    accuracy: dict[str, dict[int, float]]
    seconds: float
    indices: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    clean_predictions: torch.Tensor = field(repr=False)
    predictions: dict[str, dict[int, torch.Tensor]] = field(repr=False)

    def error(self, corruption: str, severity: int) -> float:
        """Top-1 error on ``corruption`` at ``severity``."""
        return 1.0 - self.accuracy[corruption][severity]

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``per_sample=True`` adds labels and predictions as lists."""
        out: dict[str, Any] = {
            "model": self.model,
            "dataset": self.dataset,
            "n": self.n,
            "seed": self.seed,
            "constants": self.constants,
            "corruptions": list(self.corruptions),
            "severities": list(self.severities),
            "clean_correct": self.clean_correct,
            "clean_accuracy": self.clean_accuracy,
            "accuracy": {c: {str(s): a for s, a in d.items()} for c, d in self.accuracy.items()},
            "correct": {c: {str(s): k for s, k in d.items()} for c, d in self.correct.items()},
            "seconds": self.seconds,
        }
        if per_sample:
            out["indices"] = self.indices.tolist()
            out["labels"] = self.labels.tolist()
            out["clean_predictions"] = self.clean_predictions.tolist()
            out["predictions"] = {c: {str(s): p.tolist() for s, p in d.items()} for c, d in self.predictions.items()}
        return out


def _check_request(corruptions: Sequence[str] | None, severities: Sequence[int]) -> tuple[list[str], list[int]]:
    names = list(BENCHMARK_CORRUPTIONS) if corruptions is None else [get_corruption(c).name for c in corruptions]
    if not names:
        raise ConfigError("no corruptions requested")
    if len(set(names)) != len(names):
        raise ConfigError(f"corruptions listed twice: {names}")
    sev = list(severities)
    bad = [s for s in sev if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SEVERITY]
    if not sev or bad or len(set(sev)) != len(sev):
        raise ConfigError(f"severities must be distinct integers in 1..{MAX_SEVERITY}, got {sev}")
    return names, sorted(sev)


@torch.no_grad()
def corruption_accuracy(
    model: ModelAdapter,
    dataset: Dataset,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    seed: int = 0,
    batch_size: int = 256,
    constants: ConstantSet = "auto",
    progress: ProgressFn | None = None,
) -> CorruptionAccuracy:
    """Accuracy of ``model`` on every corruption × severity of ``dataset``, corrupting on the model's device.

    Images are corrupted in fixed chunks of :data:`CHUNK_SIZE` with one generator per (seed, corruption,
    severity, chunk), so two models evaluated with the same seed see exactly the same corrupted images, and
    the batch size changes nothing.

    Args:
        model: The classifier (inputs in [0, 1]).
        dataset: The images, e.g. ``load_dataset("cifar10", "test").subset(1000)``.
        corruptions: Names (default: the 15 benchmark corruptions).
        severities: Severities in 1..5.
        seed: Seed of the corruptions.
        batch_size: Forward-pass batch size.
        constants: ``"auto"``, ``"cifar"`` or ``"imagenet"`` (see :func:`robustlab.data.corruptions.corrupt`).
        progress: Called as ``progress(corruption, done, total)`` after each corruption × severity.

    Raises:
        ConfigError: unknown or repeated corruptions, bad severities, labels or class names that do not fit
            the model.
    """
    names, sev = _check_request(corruptions, severities)
    check_dataset_fits(model, dataset.y, dataset.classes, dataset=f"{dataset.name}/{dataset.split}")
    t0 = time.perf_counter()
    device = model_device(model)
    labels = dataset.y.clone()
    clean_pred = predict_classes(model, dataset.x, batch_size)
    cset = constant_set_for(dataset.x.shape[2], dataset.x.shape[3], constants)
    correct: dict[str, dict[int, int]] = {}
    preds: dict[str, dict[int, torch.Tensor]] = {}
    total, done = len(names) * len(sev), 0
    for name in names:
        correct[name], preds[name] = {}, {}
        for s in sev:
            out = []
            for chunk, start in enumerate(range(0, len(dataset), CHUNK_SIZE)):
                xb = to_float_images(dataset.x[start : start + CHUNK_SIZE].to(device))  # (B, C, H, W) in [0, 1]
                g = torch.Generator().manual_seed(chunk_seed(seed, name, s, chunk))
                xc = corrupt(xb, name, s, generator=g, constants=cset)  # type: ignore[arg-type]
                out.append(predict_classes(model, xc, batch_size))
            p = torch.cat(out) if out else torch.empty(0, dtype=torch.int64)
            preds[name][s] = p
            correct[name][s] = int((p == labels).sum())
            done += 1
            log.info("%s severity %d: accuracy %.4f", name, s, correct[name][s] / max(len(dataset), 1))
            if progress is not None:
                progress(name, done, total)
    n = len(dataset)
    clean_correct = int((clean_pred == labels).sum())
    return CorruptionAccuracy(
        model=getattr(model, "name", "model"),
        dataset=f"{dataset.name}/{dataset.split}",
        n=n,
        seed=int(seed),
        constants=cset,
        corruptions=tuple(names),
        severities=tuple(sev),
        clean_correct=clean_correct,
        clean_accuracy=clean_correct / n if n else math.nan,
        correct=correct,
        accuracy={c: {s: k / n if n else math.nan for s, k in d.items()} for c, d in correct.items()},
        seconds=time.perf_counter() - t0,
        indices=dataset.indices.clone(),
        labels=labels,
        clean_predictions=clean_pred,
        predictions=preds,
    )


@dataclass(frozen=True)
class CorruptionErrors:
    """Corruption errors of a model, optionally normalised by a baseline model.

    Attributes:
        model / baseline: Model names (``baseline`` is ``None`` without one).
        corruptions: Corruptions covered; ``benchmark`` those of them averaged into the means (the benchmark
            corruptions present, or all of them when none is a benchmark corruption).
        clean_error / baseline_clean_error: Errors on clean images.
        mean_error: Unnormalised ``mean_s E(f, c, s)`` per corruption.
        mean_corruption_error: Mean of ``mean_error`` over ``benchmark`` (unnormalised mCE).
        ce / mce: Baseline-normalised CE per corruption and their mean (``None`` without baseline).
        relative_ce / relative_mce: Relative CE per corruption and their mean (``None`` without baseline, or
            where the baseline's errors do not exceed its clean error).
    """

    model: str
    baseline: str | None
    corruptions: tuple[str, ...]
    benchmark: tuple[str, ...]
    clean_error: float
    baseline_clean_error: float | None
    mean_error: dict[str, float]
    mean_corruption_error: float
    ce: dict[str, float | None] | None
    mce: float | None
    relative_ce: dict[str, float | None] | None
    relative_mce: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def corruption_errors(result: CorruptionAccuracy, baseline: CorruptionAccuracy | None = None) -> CorruptionErrors:
    """CE, mCE and relative mCE of ``result``, normalised by ``baseline`` when given.

    Raises:
        ConfigError: the baseline was evaluated on other images, corruptions, severities or seed.

    References:
        Hendrycks & Dietterich, ICLR 2019, section 3 ("Common corruptions" metrics).
    """
    names = result.corruptions
    bench = tuple(c for c in names if c in BENCHMARK_CORRUPTIONS) or names
    sev = result.severities
    mean_error = {c: sum(result.error(c, s) for s in sev) / len(sev) for c in names}
    mean_ce = sum(mean_error[c] for c in bench) / len(bench)
    clean_error = 1.0 - result.clean_accuracy
    if baseline is None:
        return CorruptionErrors(
            result.model, None, names, bench, clean_error, None, mean_error, mean_ce, None, None, None, None
        )
    mismatch = [
        what
        for what, ours, theirs in (
            ("dataset", result.dataset, baseline.dataset),
            ("seed", result.seed, baseline.seed),
            ("constants", result.constants, baseline.constants),
            ("severities", result.severities, baseline.severities),
        )
        if ours != theirs
    ]
    if not set(names) <= set(baseline.corruptions):
        mismatch.append("corruptions")
    if not torch.equal(result.indices, baseline.indices):
        mismatch.append("images")
    if mismatch:
        raise ConfigError(
            f"the baseline {baseline.model!r} was evaluated differently ({', '.join(mismatch)}): evaluate both "
            "models with the same dataset subset, seed, corruptions and severities"
        )
    b_clean = 1.0 - baseline.clean_accuracy
    ce: dict[str, float | None] = {}
    rel: dict[str, float | None] = {}
    for c in names:
        ours = sum(result.error(c, s) for s in sev)
        theirs = sum(baseline.error(c, s) for s in sev)
        ce[c] = ours / theirs if theirs > 0 else None
        rel_den = sum(baseline.error(c, s) - b_clean for s in sev)
        rel[c] = sum(result.error(c, s) - clean_error for s in sev) / rel_den if rel_den > 0 else None
        if ce[c] is None or rel[c] is None:
            log.warning("corruption %s: the baseline's errors are too small to normalise by", c)
    return CorruptionErrors(
        model=result.model,
        baseline=baseline.model,
        corruptions=names,
        benchmark=bench,
        clean_error=clean_error,
        baseline_clean_error=b_clean,
        mean_error=mean_error,
        mean_corruption_error=mean_ce,
        ce=ce,
        mce=_mean([ce[c] for c in bench]),
        relative_ce=rel,
        relative_mce=_mean([rel[c] for c in bench]),
    )


@dataclass(frozen=True)
class CorruptionReport:
    """What ``robustlab corrupt`` prints: the model's accuracies, the baseline's, and the errors."""

    result: CorruptionAccuracy
    errors: CorruptionErrors
    baseline: CorruptionAccuracy | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            **self.result.to_dict(),
            "errors": self.errors.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
        }


def corruption_report(
    model: ModelAdapter,
    dataset: Dataset,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    baseline: ModelAdapter | None = None,
    seed: int = 0,
    batch_size: int = 256,
    constants: ConstantSet = "auto",
    progress: ProgressFn | None = None,
) -> CorruptionReport:
    """Evaluate ``model`` (and ``baseline``, on the same corrupted images) and compute CE / mCE.

    See :func:`corruption_accuracy` for the arguments; ``baseline`` is the normalising model (ImageNet-C used
    AlexNet; robustlab's zoo has ``alexnet-w50``).
    """
    result = corruption_accuracy(
        model,
        dataset,
        corruptions,
        severities,
        seed=seed,
        batch_size=batch_size,
        constants=constants,
        progress=progress,
    )
    base = None
    if baseline is not None:
        base = corruption_accuracy(
            baseline,
            dataset,
            corruptions,
            severities,
            seed=seed,
            batch_size=batch_size,
            constants=constants,
            progress=progress,
        )
    return CorruptionReport(result, corruption_errors(result, base), base)
