"""Class-wise robustness and corruption errors of a study, from its stored per-sample records.

Nothing is re-run: attack records hold (label, clean prediction, adversarial prediction); corruption records
hold the prediction for every image × corruption × severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import torch

from robustlab.metrics.classwise import (
    CFPSCorrelation,
    ClasswiseResult,
    cfps_vulnerability_correlation,
    classwise_metrics,
)
from robustlab.metrics.corruption import CorruptionAccuracy, CorruptionErrors, corruption_errors
from robustlab.store import has_view


@dataclass
class ClasswiseAnalysis:
    """Class-wise results per perturbation (an untargeted attack configuration, or ``corruptions``)."""

    perturbation: str
    results: dict[str, ClasswiseResult]
    correlation: CFPSCorrelation | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "perturbation": self.perturbation,
            "models": {m: r.to_dict() for m, r in self.results.items()},
            "correlation": None
            if self.correlation is None
            else {k: v for k, v in self.correlation.to_dict().items() if k != "points"},
        }


def _correlate(results: dict[str, ClasswiseResult]) -> CFPSCorrelation | None:
    usable = {m: r for m, r in results.items() if any(v is not None for v in r.cfps)}
    return cfps_vulnerability_correlation(usable, permutations=2000) if usable else None


def classwise_analyses(con: duckdb.DuckDBPyConnection, classes: tuple[str, ...]) -> list[ClasswiseAnalysis]:
    """Class-wise metrics of every model under every untargeted attack configuration and under corruptions."""
    out = []
    if has_view(con, "attack"):
        keys = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT key FROM attack WHERE target_mode = 'untargeted' ORDER BY key"
            ).fetchall()
        ]
        for key in keys:
            rows = con.execute(
                "SELECT model, list(label ORDER BY index), list(clean_pred ORDER BY index), "
                "list(adv_pred ORDER BY index) FROM attack WHERE key = ? GROUP BY model "
                "ORDER BY model",
                [key],
            ).fetchall()
            results = {m: classwise_metrics(y, c, a, classes=classes) for m, y, c, a in rows}
            out.append(ClasswiseAnalysis(key, results, _correlate(results)))
    if has_view(con, "corruption"):
        rows = con.execute(
            "SELECT model, list(label), list(clean_pred), list(pred) FROM corruption GROUP BY model ORDER BY model"
        ).fetchall()
        results = {m: classwise_metrics(y, c, p, classes=classes) for m, y, c, p in rows}
        out.append(ClasswiseAnalysis("corruptions", results, _correlate(results)))
    return out


def corruption_accuracies(con: duckdb.DuckDBPyConnection, dataset: str) -> dict[str, CorruptionAccuracy]:
    """Rebuild each model's :class:`CorruptionAccuracy` from its corruption records."""
    if not has_view(con, "corruption"):
        return {}
    out = {}
    models = [r[0] for r in con.execute("SELECT DISTINCT model FROM corruption ORDER BY model").fetchall()]
    for model in models:
        rows = con.execute(
            "SELECT corruption, severity, any_value(seed), any_value(constants), "
            "list(index ORDER BY index), list(label ORDER BY index), list(clean_pred ORDER BY index), "
            "list(pred ORDER BY index) FROM corruption WHERE model = ? GROUP BY ALL "
            "ORDER BY corruption, severity",
            [model],
        ).fetchall()
        names = tuple(dict.fromkeys(r[0] for r in rows))
        severities = tuple(sorted({int(r[1]) for r in rows}))
        idx, labels, clean = (torch.tensor(v) for v in rows[0][4:7])
        preds: dict[str, dict[int, torch.Tensor]] = {}
        for name, sev, *_rest, pred in rows:
            preds.setdefault(name, {})[int(sev)] = torch.tensor(pred)
        correct = {c: {s: int((p == labels).sum()) for s, p in d.items()} for c, d in preds.items()}
        n = len(labels)
        out[model] = CorruptionAccuracy(
            model=model,
            dataset=dataset,
            n=n,
            seed=int(rows[0][2]),
            constants=str(rows[0][3]),
            corruptions=names,
            severities=severities,
            clean_correct=int((clean == labels).sum()),
            clean_accuracy=float((clean == labels).float().mean()),
            correct=correct,
            accuracy={c: {s: k / n for s, k in d.items()} for c, d in correct.items()},
            seconds=0.0,
            indices=idx,
            labels=labels,
            clean_predictions=clean,
            predictions=preds,
        )
    return out


def corruption_summary(accs: dict[str, CorruptionAccuracy], baseline: str | None) -> dict[str, CorruptionErrors]:
    """CE / mCE per model, normalised by ``baseline`` when it was evaluated."""
    base = accs.get(baseline) if baseline else None
    return {m: corruption_errors(a, base) for m, a in accs.items()}
