"""Clean accuracy of every registered model at once (the zoo's health check: ``robustlab zoo eval``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from robustlab.data import load_dataset
from robustlab.errors import ModelError
from robustlab.metrics.accuracy import evaluate
from robustlab.models.loading import build_model, list_models

log = logging.getLogger(__name__)


def evaluate_registered(
    *,
    source: str | None = None,
    n: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every registered CIFAR-10 model on the test set (or a seeded subset of ``n`` images).

    Models whose weights are not available (offline, not downloaded) are listed with ``accuracy=None``
    and the reason, rather than failing the whole table.

    Args:
        source: Only ``"zoo"`` or ``"published"`` models; ``None``: all.
        n: Evaluate a seeded subset of ``n`` test images; ``None``: all 10 000.
        seed: Seed of the subset.
        data_dir: Data directory (see :func:`robustlab.data.resolve_data_dir`).
        progress: Called as ``progress(done, total, "<model>: <accuracy>")`` after each model.

    Returns:
        One row per model: ``model``, ``family``, ``source``, ``n``, ``recorded_accuracy``, ``accuracy``
        (``None`` when unavailable), ``seconds`` and ``error``.
    """
    test = load_dataset("cifar10", "test", data_dir).subset(n, seed)
    specs = [spec for spec in list_models(source) if spec.dataset == "cifar10"]
    rows: list[dict[str, Any]] = []
    for spec in specs:
        row: dict[str, Any] = {
            "model": spec.name,
            "family": spec.family,
            "source": spec.source,
            "n": len(test),
            "recorded_accuracy": spec.metrics.get("test_accuracy"),
            "accuracy": None,
            "seconds": 0.0,
            "error": None,
        }
        try:
            model = build_model(spec, data_dir=data_dir, download=False)
        except ModelError as exc:
            row["error"] = str(exc)
            log.warning("%s skipped: %s", spec.name, exc)
        else:
            result = evaluate(model, test, batch_size=500)
            row.update(accuracy=result.accuracy, seconds=result.seconds)
        if progress is not None:
            acc = "unavailable" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            progress(len(rows) + 1, len(specs), f"{spec.name}: {acc}")
        rows.append(row)
    return rows
