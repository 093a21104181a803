"""The ``clever`` job kind: CLEVER scores (Weng et al., ICLR 2018) of every model on the first images of the
evaluation subset, and their comparison with the smallest distortion any attack found.

References:
    Weng, Zhang, Chen, Yi, Su, Gao, Hsieh, Daniel. "Evaluating the Robustness of Neural Networks: An Extreme
    Value Theory Approach." ICLR 2018.
    Goodfellow. "Gradient Masking Causes CLEVER to Overestimate Adversarial Perturbation Size." 2018.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pyarrow as pa
from pydantic import Field

from robustlab.analysis.summary import add_rate, query_rows
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import NormName, SpecSection, StudySpec, TargetMode
from robustlab.report.figures import short
from robustlab.report.html import Section, render, sources_of
from robustlab.stats import median
from robustlab.store import has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema


class CleverSection(SpecSection):
    """CLEVER scores on the first ``n`` images of the subset."""

    norm: NormName = "l2"
    target: TargetMode = "untargeted"
    n: int = Field(default=10, gt=0)
    batches: int = Field(default=10, ge=2, description="At least 2: the extreme-value fit needs several maxima.")
    samples: int = Field(default=32, gt=0)
    radius: float = Field(default=2.0, gt=0)


@dataclass
class CleverAnalysis:
    """``rows``: mean and median score per model (over clean-correct inputs); ``versus_attack``: per input, the
    score next to the smallest successful untargeted distortion in the same norm, ``flag`` where the score
    (an estimate of a lower bound) exceeds it: a sign of gradient masking or a poor fit."""

    rows: list[dict[str, Any]]
    versus_attack: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "versus_attack": self.versus_attack}


def _versus_attack(con: Any) -> list[dict[str, Any]]:
    if not has_view(con, "attack"):
        return []
    return query_rows(
        con,
        """
        WITH won AS (SELECT * FROM attack WHERE won AND target_mode = 'untargeted'),
        best AS (
            SELECT model, index, 'l2' AS norm, min(l2) AS dist FROM won GROUP BY ALL
            UNION ALL SELECT model, index, 'linf', min(linf) FROM won GROUP BY ALL
            UNION ALL SELECT model, index, 'l1', min(l1) FROM won GROUP BY ALL)
        SELECT c.model, c.family, c.index, c.norm, c.score, b.dist AS attack_distortion,
               c.score / nullif(b.dist, 0) AS ratio, c.score > b.dist AS flag
        FROM clever c JOIN best b USING (model, index, norm)
        WHERE c.clean_pred = c.label ORDER BY c.model, c.index""",
    )


def _figure(rows: list[dict[str, Any]], sources: dict[str, str]) -> go.Figure:
    fig = go.Figure()
    for model in sorted({r["model"] for r in rows}):
        pts = [r for r in rows if r["model"] == model]
        fig.add_trace(
            go.Scatter(
                x=[r["attack_distortion"] for r in pts],
                y=[r["score"] for r in pts],
                mode="markers",
                name=short(model, sources.get(model)),
            )
        )
    values = [v for r in rows for v in (r["attack_distortion"], r["score"]) if v is not None]
    lo, hi = min(values), max(values)
    log = lo > 0  # distances spread over orders of magnitude: a log scale keeps the small ones readable
    fig.add_trace(
        go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="CLEVER = attack", line={"dash": "dash", "color": "grey"})
    )
    if log:
        fig.update_layout(xaxis_type="log", yaxis_type="log")
    fig.update_layout(
        title="CLEVER score vs smallest distortion found by an attack (points above the line: "
        "estimate exceeds a real adversarial example)",
        xaxis_title="attack distortion",
        yaxis_title="CLEVER score",
        height=500,
    )
    return fig


_TABLE = """<div class="wide"><table><tr><th class="l">model</th><th>norm</th><th>n</th><th>mean score</th>
<th>median score</th><th>poor-fit rate</th></tr>
{% for r in rows %}<tr><td class="l">{{ short(r.model) }}</td><td>{{ r.norm }}</td><td>{{ r.n }}</td>
<td>{{ fmt(r.mean_score) }}</td><td>{{ fmt(r.median_score) }}</td><td>{{ rate(r, "poor_fit_rate") }}</td></tr>
{% endfor %}</table></div>
{% if n_flags %}<p class="flag">{{ n_flags }} of {{ n_compared }} input(s) have a CLEVER score above a distortion an
attack actually found.</p>
{% endif %}"""


class Clever(JobKind):
    name = "clever"
    field = "clever"
    always_in_identity = True  # a kind of the first release (see JobKind)
    section = CleverSection | None
    default = None
    after = ("clean",)
    schema = RecordSchema(
        "clever",
        2,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("index", pa.int64()),
            ("label", pa.int64()),
            ("clean_pred", pa.int64()),
            ("score", pa.float64()),
            ("target", pa.int64()),
            ("margin", pa.float64()),
            ("lipschitz", pa.float64()),
            ("ks_pvalue", pa.float64()),
            ("fit_status", pa.string()),
            ("poor_fit", pa.bool_()),
            ("targets", pa.list_(pa.int64())),
            ("target_scores", pa.list_(pa.float64())),
            ("norm", pa.string()),
            ("target_mode", pa.string()),
            ("radius", pa.float64()),
            ("batches", pa.int64()),
            ("samples", pa.int64()),
            ("fit", pa.string()),
            ("seed", pa.int64()),
            ("forward_passes", pa.int64()),
            ("gradient_passes", pa.int64()),
        ),
    )

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        c = spec.section("clever").model_dump()
        n = c.pop("n")
        subset = tuple(state.evaluation_subset()[:n])
        params = {**data_params(spec), **c, "seed": spec.seed}
        return [Job("clever", m, params, subset, label=f"clever {m}") for m in spec.models]

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.metrics.clever import clever

        p = job.params
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        result = clever(
            model,
            x,
            y,
            norm=p["norm"],
            target=p["target"],
            batches=p["batches"],
            samples=p["samples"],
            radius=p["radius"],
            seed=p["seed"],
        )
        cols = result.to_columns()
        cols["index"] = idx.tolist()
        write_records(run, "clever", job.id, cols, record_constants(job, model))
        return {"median_score": median(v for v in cols["score"] if v is not None)}  # non-finite scores: None

    def analyse(self, con: Any, study: Any) -> CleverAnalysis | None:
        if not has_view(con, "clever"):
            return None
        rows = query_rows(
            con,
            "SELECT model, family, norm, count(*) AS n, avg(score) AS mean_score, median(score) AS median_score, "
            "sum(poor_fit::INT) AS poor_fits FROM clever WHERE clean_pred = label GROUP BY ALL ORDER BY model",
        )
        for r in rows:
            add_rate(r, "poor_fit_rate", r["poor_fits"], r["n"])
        return CleverAnalysis(rows, _versus_attack(con))

    def report(self, study: Any) -> list[Section]:
        a: CleverAnalysis | None = study["clever"]
        if a is None or not a.rows:
            return []
        n_flags = sum(bool(r["flag"]) for r in a.versus_attack)
        sources = sources_of(study)
        figures = [("clever_vs_attack", _figure(a.versus_attack, sources))] if a.versus_attack else []
        return [
            Section(
                "clever",
                "CLEVER",
                html=[
                    render(
                        _TABLE,
                        rows=a.rows,
                        n_flags=n_flags,
                        n_compared=len(a.versus_attack),
                        short=lambda m: short(m, sources.get(m)),
                    )
                ],
                figures=figures,
                tables=[("clever", a.rows), ("clever_vs_attack", a.versus_attack)],
            )
        ]


register_kind(Clever())
