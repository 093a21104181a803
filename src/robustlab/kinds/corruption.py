"""The ``corruption`` job kind: common corruptions (Hendrycks & Dietterich, ICLR 2019) of the evaluation images,
every model's predictions at every corruption and severity, and the corruption errors (CE, mCE) and class-wise
robustness computed from them.

References:
    Hendrycks, Dietterich. "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations."
    ICLR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pyarrow as pa
import torch
from pydantic import Field, field_validator

from robustlab.analysis.classwise import ClasswiseAnalysis, classwise_analysis
from robustlab.analysis.summary import add_rate
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import SpecSection, StudySpec, lookup
from robustlab.metrics.corruption import CorruptionAccuracy, CorruptionErrors, corruption_errors
from robustlab.report.figures import heatmap, labels, short
from robustlab.report.html import Section, rate_cell, render, sources_of
from robustlab.stats import Rate, format_number
from robustlab.store import has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema


class CorruptionSection(SpecSection):
    """Common corruptions on the first ``n`` images of the subset (all of them by default)."""

    names: list[str] | None = Field(None, description="Corruptions (default: the 15 benchmark corruptions).")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    n: int | None = Field(default=None, gt=0)
    seed: int = 0
    baseline: str | None = Field(None, description="Model that normalises CE (ImageNet-C used AlexNet).")

    @field_validator("names")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        from robustlab.data.corruptions import CORRUPTIONS

        for name in v or []:
            lookup(CORRUPTIONS.get, name)
        return v

    @field_validator("severities")
    @classmethod
    def _range(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= s <= 5 for s in v):
            raise ValueError(f"severities must be a non-empty list of values in 1..5, got {v}")
        return sorted(set(v))


def corruption_accuracies(con: Any, dataset: str) -> dict[str, CorruptionAccuracy]:
    """Rebuild each model's :class:`CorruptionAccuracy` from its corruption records."""
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
        idx, labels_, clean = (torch.tensor(v) for v in rows[0][4:7])
        preds: dict[str, dict[int, torch.Tensor]] = {}
        for name, sev, *_rest, pred in rows:
            preds.setdefault(name, {})[int(sev)] = torch.tensor(pred)
        correct = {c: {s: int((p == labels_).sum()) for s, p in d.items()} for c, d in preds.items()}
        n = len(labels_)
        out[model] = CorruptionAccuracy(
            model=model,
            dataset=dataset,
            n=n,
            seed=int(rows[0][2]),
            constants=str(rows[0][3]),
            corruptions=names,
            severities=severities,
            clean_correct=int((clean == labels_).sum()),
            clean_accuracy=float((clean == labels_).float().mean()),
            correct=correct,
            accuracy={c: {s: k / n for s, k in d.items()} for c, d in correct.items()},
            seconds=0.0,
            indices=idx,
            labels=labels_,
            clean_predictions=clean,
            predictions=preds,
        )
    return out


@dataclass
class CorruptionAnalysis:
    """Per model: accuracies at every corruption and severity (``accuracy``), CE/mCE normalised by the spec's
    baseline when it was evaluated (``errors``); class-wise results over every corrupted image."""

    accuracy: dict[str, CorruptionAccuracy]
    errors: dict[str, CorruptionErrors]
    classwise: list[ClasswiseAnalysis] = field(default_factory=list)

    def error_rate(self, model: str, corruptions: tuple[str, ...] | None = None) -> Rate:
        """Error of ``model`` pooled over every severity of ``corruptions`` (``None``: the clean images), i.e.
        the mean error over them, as a rate. Its interval treats every (image, corruption, severity) as
        independent, which the images reused across severities are not: read it as a lower bound on the
        uncertainty."""
        acc = self.accuracy[model]
        if corruptions is None:
            return Rate(acc.n - acc.clean_correct, acc.n)
        wrong = sum(acc.n - acc.correct[c][s] for c in corruptions for s in acc.severities)
        return Rate(wrong, acc.n * len(acc.severities) * len(corruptions))

    def rows(self) -> list[dict[str, Any]]:
        """One row per model, corruption (``clean`` for none) and severity (0 for clean): the accuracy with its
        95 % Wilson interval and counts (``accuracy_low``, ``accuracy_high``, ``accuracy_k``, ``accuracy_n``)."""
        out = []
        for m, acc in sorted(self.accuracy.items()):
            clean = {"model": m, "corruption": "clean", "severity": 0}
            out.append(add_rate(clean, "accuracy", acc.clean_correct, acc.n))
            for c in acc.corruptions:
                for sev in acc.severities:
                    row = {"model": m, "corruption": c, "severity": sev}
                    out.append(add_rate(row, "accuracy", acc.correct[c][sev], acc.n))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"errors": {m: e.to_dict() for m, e in sorted(self.errors.items())}, "accuracy": self.rows()}


#: The class-wise analysis of the corruptions pools every corruption and severity.
_CLASSWISE_TITLE = "all corruptions and severities (each image counted once per corruption and severity)"


def _figure(a: CorruptionAnalysis, sources: dict[str, str]) -> go.Figure:
    """Model × corruption error, averaged over severities (hover: pooled rate with its interval)."""
    models = sorted(a.accuracy)
    names = list(a.accuracy[models[0]].corruptions)
    rates: list[list[Rate | None]] = [[a.error_rate(m, (c,)) for c in names] for m in models]
    z: list[list[float | None]] = [[r.value if r is not None and r.n else None for r in row] for row in rates]
    return heatmap(
        z,
        names,
        labels(models, sources),
        "Corruption error (mean over severities)",
        "error",
        "corruption",
        "model",
        rates=rates,
    )


_TABLE = """<p>Errors with their 95 % Wilson intervals and counts. The mean corruption error pools every
corruption and severity; its interval treats each (image, corruption, severity) as independent, which the reused
images are not, so it is narrower than the true uncertainty. mCE and relative mCE are ratios of errors (to the
baseline model's), not rates.</p>
<div class="wide"><table><tr><th class="l">model</th><th>clean error</th><th>mean corruption error</th>
<th>mCE (vs baseline)</th><th>relative mCE</th></tr>
{% for r in rows %}<tr><td class="l">{{ r.model }}</td><td>{{ rate_cell(r.clean) }}</td>
<td>{{ rate_cell(r.corrupted) }}</td>
<td>{{ fmt(r.mce) }}</td><td>{{ fmt(r.relative_mce) }}</td></tr>{% endfor %}</table></div>"""


class Corruption(JobKind):
    name = "corruption"
    field = "corruptions"
    always_in_identity = True  # a kind of the first release (see JobKind)
    section = CorruptionSection | None
    default = None
    after = ("clean",)
    schema = RecordSchema(
        "corruption",
        1,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("seed", pa.int64()),
            ("constants", pa.string()),
            ("index", pa.int64()),
            ("label", pa.int64()),
            ("clean_pred", pa.int64()),
            ("corruption", pa.string()),
            ("severity", pa.int64()),
            ("pred", pa.int64()),
        ),
    )

    def check(self, spec: StudySpec) -> list[str]:
        c = spec.section("corruptions")
        if c is not None and c.baseline is not None and c.baseline not in spec.models:
            return [f"corruptions.baseline {c.baseline!r} must be one of the study's models"]
        return []

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        c = spec.section("corruptions").model_dump()
        subset = state.evaluation_subset()
        n = c.pop("n") or len(subset)
        c.pop("baseline")
        params = {**data_params(spec), **c}
        return [Job("corruption", m, params, tuple(subset[:n]), label=f"corruptions {m}") for m in spec.models]

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.metrics.corruption import corruption_accuracy

        p = job.params
        ds = ctx.dataset(p["dataset"], p["split"]).take(torch.tensor(job.indices))
        model = ctx.model(job.model)
        result = corruption_accuracy(model, ds, p["names"], p["severities"], seed=p["seed"], batch_size=p["batch_size"])
        cols: dict[str, list[Any]] = {k: [] for k in ("index", "label", "clean_pred", "corruption", "severity", "pred")}
        for name, by_severity in result.predictions.items():
            for severity, pred in by_severity.items():
                cols["index"] += result.indices.tolist()
                cols["label"] += result.labels.tolist()
                cols["clean_pred"] += result.clean_predictions.tolist()
                cols["corruption"] += [name] * result.n
                cols["severity"] += [severity] * result.n
                cols["pred"] += pred.tolist()
        constants = record_constants(job, model, seed=p["seed"], constants=result.constants)
        write_records(run, "corruption", job.id, cols, constants)
        return {"clean_accuracy": result.clean_accuracy}

    def analyse(self, con: Any, study: Any) -> CorruptionAnalysis | None:
        if not has_view(con, "corruption"):
            return None
        spec = study.spec
        accs = corruption_accuracies(con, f"{spec['dataset']['name']}/{spec['dataset']['split']}")
        baseline = (spec.get("corruptions") or {}).get("baseline")
        base = accs.get(baseline) if baseline else None
        rows = con.execute(
            "SELECT model, list(label), list(clean_pred), list(pred) FROM corruption GROUP BY model ORDER BY model"
        ).fetchall()
        return CorruptionAnalysis(
            accs,
            {m: corruption_errors(a, base) for m, a in accs.items()},
            [classwise_analysis("corruptions", rows, study.classes, title=_CLASSWISE_TITLE)],
        )

    def report(self, study: Any) -> list[Section]:
        a: CorruptionAnalysis | None = study["corruption"]
        if a is None or not a.accuracy:
            return []
        sources = sources_of(study)
        rows = [
            {
                "model": short(m, sources.get(m)),
                "clean": a.error_rate(m),
                "corrupted": a.error_rate(m, e.benchmark),
                "mce": e.mce,
                "relative_mce": e.relative_mce,
            }
            for m, e in sorted(a.errors.items())
        ]
        # the summary table: corruption error and mCE next to each model's clean and AutoAttack accuracy
        summary = {
            m: {"corruption error": rate_cell(a.error_rate(m, e.benchmark)), "mCE": format_number(e.mce)}
            for m, e in a.errors.items()
        }
        return [
            Section(
                "corruption",
                "Corruptions",
                summary=summary,
                html=[render(_TABLE, rows=rows)],
                figures=[("corruption_errors", _figure(a, sources))],
                tables=[("corruption_accuracy", a.rows())],
            )
        ]


register_kind(Corruption())
