"""The ``attack`` job kind: every model under every attack configuration of the spec's grid.

Spec section ``attacks`` (a list; lists inside an entry expand to one job per combination), records with the
success rule's columns as :class:`robustlab.attacks.AttackResult` computes them, and the analyses built on
them: success and distortion per configuration, the accuracy–robustness frontier of minimal-distortion
configurations, and class-wise robustness under each untargeted configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, ClassVar

import plotly.graph_objects as go
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from robustlab.analysis.classwise import ClasswiseAnalysis, classwise_analysis
from robustlab.analysis.pareto import ParetoAnalysis, pareto_analysis, points_from_summary
from robustlab.analysis.summary import attack_summary, rate_of
from robustlab.attacks import AttackResult
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import NormName, SpecSection, StudySpec, TargetMode, lookup
from robustlab.errors import RobustlabError
from robustlab.report.figures import bar_figure, labels, rate_bar_figure, short
from robustlab.report.html import Section, render, sources_of
from robustlab.store import artifact_path, has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema


def _unset() -> list[Any]:
    return [None]


def _untargeted() -> list[Any]:
    return ["untargeted"]


class AttackSection(SpecSection):
    """One attack with a parameter grid (lists expand to one job per combination)."""

    name: str
    norm: NormName | None = None
    eps: list[float | str | None] = Field(default_factory=_unset)
    steps: list[int | None] = Field(default_factory=_unset)
    targets: list[TargetMode] = Field(default_factory=_untargeted)
    minimal: bool = False
    transfer: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("eps", "steps", "targets", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("name")
    @classmethod
    def _known_attack(cls, v: str) -> str:
        from robustlab.attacks import ATTACKS

        lookup(ATTACKS.get, v)
        return v.lower()

    @field_validator("eps")
    @classmethod
    def _valid_eps(cls, v: list[float | str | None]) -> list[float | None]:
        from robustlab.attacks import parse_eps

        return [parse_eps(e) for e in v]

    @field_validator("params")
    @classmethod
    def _no_shadowing(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {"norm", "eps", "steps", "target", "targets", "minimal", "seed", "batch_size"})
        if clash:
            raise ValueError(f"{', '.join(clash)} belong(s) at the attack's top level, not under params")
        runner = sorted(set(v) & {"keep_adversarials", "progress"})
        if runner:
            raise ValueError(
                f"{', '.join(runner)} are set by the runner (transfer: true keeps adversarials), not params"
            )
        return v

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, v: list[int | None]) -> list[int | None]:
        if any(s is not None and s <= 0 for s in v):
            raise ValueError(f"steps must be positive, got {v}")
        return v

    @model_validator(mode="after")
    def _method_accepts_params(self) -> AttackSection:
        """The attack checks its settings now (:func:`robustlab.attacks.check_params`): a typo such as
        ``restart`` fails when the spec is parsed, not when the job runs."""
        from robustlab.attacks import check_params

        for steps in self.steps:
            try:
                check_params(self.name, self.params, norm=self.norm, minimal=self.minimal, steps=steps)
            except RobustlabError as exc:
                raise ValueError(str(exc)) from None
        return self


def attack_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every attack configuration of the grid, as the canonical params of its jobs."""
    return _expand([a.model_dump() for a in spec.section("attacks") or []], spec.seed)


def _expand(sections: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The configurations of attack sections given as plain data (parsed, or from a run's canonical spec)."""
    out = []
    for a in sections:
        for eps, steps, target in itertools.product(a["eps"], a["steps"], a["targets"]):
            out.append(
                {
                    "attack": a["name"],
                    "norm": a["norm"],
                    "eps": eps,
                    "steps": steps,
                    "target": target,
                    "minimal": a["minimal"],
                    "transfer": a["transfer"],
                    "params": dict(sorted(a["params"].items())),
                    "seed": seed,
                }
            )
    return out


def config_key(cfg: dict[str, Any]) -> str:
    """A short name of an attack configuration, e.g. ``ifgsm-linf-eps0.0314-s10-untargeted``; extra params
    add a hash of the params dict (``cw-l2-s20-untargeted-4f2a1c``), shown to readers as :func:`config_label`."""
    return "-".join(_key_parts(cfg, hashed=True))


def config_label(cfg: dict[str, Any]) -> str:
    """The name readers see: the key with its params spelled out instead of their hash, e.g.
    ``cw-l2-s20-untargeted (search_steps=3)``."""
    extra = ", ".join(f"{k}={v}" for k, v in cfg["params"].items())
    return "-".join(_key_parts(cfg, hashed=False)) + (f" ({extra})" if extra else "")


def key_labels(spec: dict[str, Any], norms: dict[str, str] | None = None) -> dict[str, str]:
    """Each configuration key of a run's canonical spec (its manifest's ``spec``) → :func:`config_label`, with
    the norm an attack chose by default (``norms``: key → the norm its records carry) spelled out."""
    out = {}
    for c in _expand(spec.get("attacks") or [], spec.get("seed", 0)):
        key = config_key(c)
        out[key] = config_label({**c, "norm": c["norm"] or (norms or {}).get(key)})
    return out


def _key_parts(cfg: dict[str, Any], *, hashed: bool) -> list[str]:
    parts = [cfg["attack"], cfg["norm"] or "default"]
    eps = cfg["eps"]
    if eps is not None:
        in_255 = eps * 255
        readable = not hashed and eps > 0 and abs(in_255 - round(in_255)) < 1e-6
        parts.append(f"eps{round(in_255)}/255" if readable else f"eps{eps:.4g}")
    if cfg["steps"] is not None:
        parts.append(f"s{cfg['steps']}")
    parts.append(cfg["target"])
    if cfg["minimal"]:
        parts.append("minimal")
    if cfg["params"] and hashed:
        parts.append(hashlib.sha256(json.dumps(cfg["params"], sort_keys=True).encode()).hexdigest()[:6])
    return parts


def write_attack_records(run: Path, job: Job, result: AttackResult, model: Any) -> Path:
    """Write an attack's records as the ``attack`` kind does: its columns (the success rule included, as
    :meth:`AttackResult.to_columns` computes it; ``index`` holds the dataset rows given to ``attack()``) and the
    job's constants."""
    p = job.params
    cols = result.to_columns()
    del cols["attack"], cols["norm"]
    constants = record_constants(
        job,
        model,
        key=p["key"],
        attack=p["attack"],
        norm=result.norm,
        target_mode=p["target"],
        eps_budget=result.eps,
        minimal=p["minimal"],
    )
    return write_records(run, "attack", job.id, cols, constants)


@dataclasses.dataclass
class AttackAnalysis:
    """``rows``: :func:`robustlab.analysis.attack_summary` (every rate with its interval and counts) plus each
    configuration's readable ``label``; ``pareto``: one frontier per minimal-distortion configuration (each
    model at its median distortion); ``classwise``: one per untargeted configuration."""

    rows: list[dict[str, Any]]
    pareto: list[ParetoAnalysis]
    classwise: list[ClasswiseAnalysis]

    def label(self, key: str) -> str:
        """The readable name of configuration ``key``."""
        return next((r["label"] for r in self.rows if r["key"] == key), key)

    def distortion_keys(self) -> list[str]:
        """Configurations whose distortions are minimal: a minimal search, or a minimal-distortion attack."""
        return sorted({r["key"] for r in self.rows if r["minimal"] or not r["fixed_budget"]})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "pareto": [p.to_dict() for p in self.pareto]}


#: How norms are written for readers.
NORM_NAMES = {"l0": "L0", "l1": "L1", "l2": "L2", "linf": "L∞"}


def _pareto_figure(p: ParetoAnalysis, label: str, sources: dict[str, str]) -> go.Figure:
    import numpy as np

    fig = go.Figure()
    for fam in sorted({pt.family for pt in p.points}):
        pts = [pt for pt in p.points if pt.family == fam]
        fig.add_trace(
            go.Scatter(
                x=[pt.error for pt in pts],
                y=[pt.distortion for pt in pts],
                mode="markers+text",
                name=fam,
                text=labels([pt.model for pt in pts], sources),
                textposition="top center",
                marker={"size": 10},
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[pt.error for pt in p.frontier],
            y=[pt.distortion for pt in p.frontier],
            mode="lines",
            name="Pareto frontier",
            line={"dash": "dot", "color": "black"},
        )
    )
    fit = p.fit_all
    if fit is not None:
        xs = np.geomspace(min(pt.error for pt in p.points), max(pt.error for pt in p.points), 50)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=fit.a + fit.b * np.log(xs),
                mode="lines",
                name=f"fit: {fit.a:.3g} + {fit.b:.3g}·ln(error), R²={fit.r2:.2f}",
                line={"color": "firebrick"},
            )
        )
    fig.update_layout(
        title=f"Accuracy vs robustness: {label}",
        xaxis_title="top-1 error (log)",
        yaxis_title=f"median minimal {NORM_NAMES.get(p.norm, p.norm)} distortion",
        xaxis_type="log",
        height=500,
    )
    return fig


_PARETO = """<p>Each model sits at its top-1 error and its MEDIAN minimal distortion over successful inputs (the
mean would follow single outliers).</p>
{% for p in pareto %}<h3>{{ p.label }}</h3>
<p>Frontier: {{ p.frontier|join(", ") }}.
{% if p.fit_all %}Fit over all models:
distortion = {{ "%.4g"|format(p.fit_all.a) }} + {{ "%.4g"|format(p.fit_all.b) }}·ln(error),
R² = {{ "%.3f"|format(p.fit_all.r2) }}, {{ (p.fit_all.confidence*100)|round|int }}% bootstrap interval of b:
[{{ "%.4g"|format(p.fit_all.b_ci[0]) }}, {{ "%.4g"|format(p.fit_all.b_ci[1]) }}] (n = {{ p.fit_all.n }}).{% endif %}
{% if p.fit_frontier %} On the frontier: b = {{ "%.4g"|format(p.fit_frontier.b) }},
R² = {{ "%.3f"|format(p.fit_frontier.r2) }}.{% endif %}
Family medians: {% for f, v in p.family_medians.items() %}{{ f }} {{ "%.4g"|format(v) }}{% if not loop.last %},
{% endif %}{% endfor %}.</p>
{% endfor %}"""

_PER_MODEL = """<p>Success rate: over the inputs the model classifies correctly when clean; robust accuracy: over all
inputs. Medians over successful inputs.</p>
{% for m in per_model %}<h3 id="m-{{ loop.index }}">{{ m.model }}</h3>
<div class="wide"><table><tr><th class="l">attack</th><th>success rate</th><th>robust accuracy</th>
<th>median L1</th><th>median L2</th><th>median L∞</th><th>gradient passes</th></tr>
{% for r in m.rows %}<tr><td class="l">{{ r.label }}</td><td>{{ rate(r, "success_rate") }}</td>
<td>{{ rate(r, "robust_accuracy") }}</td>
<td>{{ fmt(r.median_l1) }}</td><td>{{ fmt(r.median_l2) }}</td><td>{{ fmt(r.median_linf) }}</td>
<td>{{ r.gradient_passes }}</td></tr>{% endfor %}
</table></div>{% endfor %}"""

_LEGEND = """<dl class="legend">{% for abbr, r in legend %}<dt>{{ abbr }}</dt><dd>{{ r.label }}: success rate /
median {{ norm_names.get(r.norm, r.norm) }} distortion over successes{% if r.key != r.label %} (stored as
<code>{{ r.key }}</code>{% if " (" in r.label %}; its last part is a hash of the params{% endif %}){% endif %}</dd>
{% endfor %}</dl>"""


#: The per-point columns of an attack record (an attack result's fields, the success rule's verdicts, the
#: distortions and costs, the settings and seed), shared by every kind whose records are attack results.
POINT_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("index", pa.int64()),
    ("label", pa.int64()),
    ("target", pa.int64()),
    ("clean_pred", pa.int64()),
    ("adv_pred", pa.int64()),
    ("success", pa.bool_()),
    ("status", pa.string()),
    ("correct", pa.bool_()),
    ("robust", pa.bool_()),
    ("won", pa.bool_()),
    ("fixed_budget", pa.bool_()),
    ("l0", pa.float64()),
    ("l1", pa.float64()),
    ("l2", pa.float64()),
    ("linf", pa.float64()),
    ("eps", pa.float64()),
    ("forward_passes", pa.int64()),
    ("gradient_passes", pa.int64()),
    ("params", pa.string()),
    ("seed", pa.int64()),
)


class Attack(JobKind):
    name = "attack"
    field = "attacks"
    always_in_identity = True  # a kind of the first release (see JobKind)
    section = list[AttackSection]
    default: ClassVar[Any] = Field(default_factory=list)
    after = ("clean",)
    schema = RecordSchema(
        "attack",
        2,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("key", pa.string()),
            ("attack", pa.string()),
            ("norm", pa.string()),
            ("target_mode", pa.string()),
            ("eps_budget", pa.float64()),
            ("minimal", pa.bool_()),
            *POINT_COLUMNS,
        ),
    )

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        subset = tuple(state.evaluation_subset())
        return [
            Job(
                "attack",
                model,
                {**data_params(spec), **cfg, "key": config_key(cfg)},
                subset,
                label=f"{config_key(cfg)} on {model}",
            )
            for model in spec.models
            for cfg in attack_configs(spec)
        ]

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.attacks import attack

        p = job.params
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        result = attack(
            model,
            x,
            y,
            p["attack"],
            norm=p["norm"],
            eps=p["eps"],
            steps=p["steps"],
            target=p["target"],
            minimal=p["minimal"],
            seed=p["seed"],
            batch_size=p["batch_size"],
            keep_adversarials=p["transfer"],
            index=idx,  # dataset rows: the saved adversarials carry them, not positions in the subset
            **p["params"],
        )
        if p["transfer"]:
            result.save_adversarials(artifact_path(run, job.id))  # before the records: they mark the job done
        write_attack_records(run, job, result, model)
        s = result.summary()
        return {"success_rate": s["success_rate"], "gradient_passes": s["gradient_passes"]}

    def analyse(self, con: Any, study: Any) -> AttackAnalysis | None:
        if not has_view(con, "attack"):
            return None
        rows = attack_summary(con)
        names = key_labels(study.spec, {r["key"]: r["norm"] for r in rows})
        rows = [{**r, "label": names.get(r["key"], r["key"])} for r in rows]
        clean = study["clean"]
        errors = clean.errors if clean is not None else {}
        a = AttackAnalysis(rows, [], [])
        for key in a.distortion_keys():
            pts = points_from_summary(rows, errors, key)
            if pts:
                a.pareto.append(pareto_analysis(key, next(r["norm"] for r in rows if r["key"] == key), pts))
        keys = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT key FROM attack WHERE target_mode = 'untargeted' ORDER BY key"
            ).fetchall()
        ]
        for key in keys:
            per_model = con.execute(
                "SELECT model, list(label ORDER BY index), list(clean_pred ORDER BY index), "
                "list(adv_pred ORDER BY index) FROM attack WHERE key = ? GROUP BY model ORDER BY model",
                [key],
            ).fetchall()
            a.classwise.append(classwise_analysis(key, per_model, study.classes, title=a.label(key)))
        return a

    def report(self, study: Any) -> list[Section]:
        a: AttackAnalysis | None = study["attack"]
        if a is None:
            return []
        sources = sources_of(study)
        models = sorted({r["model"] for r in a.rows})
        keys = sorted({r["key"] for r in a.rows})
        success = {a.label(k): {r["model"]: rate_of(r, "success_rate") for r in a.rows if r["key"] == k} for k in keys}
        figures = [
            (
                "success",
                rate_bar_figure(
                    success,
                    models,
                    sources,
                    "Attack success rate (over initially correct inputs), 95 % intervals",
                    "success rate",
                ),
            )
        ]
        norms = sorted({r["norm"] for r in a.rows if r["key"] in a.distortion_keys()})
        for norm in norms:  # one figure per norm: L2 and L∞ distortions never share an axis
            dist = {
                a.label(k): {r["model"]: r.get(f"median_{norm}") for r in a.rows if r["key"] == k}
                for k in a.distortion_keys()
                if any(r["key"] == k and r["norm"] == norm for r in a.rows)
            }
            name = NORM_NAMES.get(norm, norm)
            title = f"Median minimal {name} distortion over successes"
            figures.append((f"distortion_{norm}", bar_figure(dist, models, sources, title, f"{name} distortion")))
        abbr = {k: f"A{i}" for i, k in enumerate(keys, 1)}
        summary: dict[str, dict[str, Any]] = {}
        for r in a.rows:
            d = r.get(f"median_{r['norm']}")
            summary.setdefault(r["model"], {})[abbr[r["key"]]] = render(
                "{{ rate(r, 'success_rate') }} / {{ fmt(d) }}", r=r, d=d
            )
        legend = [(abbr[k], next(r for r in a.rows if r["key"] == k)) for k in keys]
        notes = [render(_LEGEND, legend=legend, norm_names=NORM_NAMES)]
        pareto_rows = [
            {"key": p.key, "label": a.label(p.key), **dataclasses.asdict(pt), "on_frontier": pt in p.frontier}
            for p in a.pareto
            for pt in p.points
        ]
        pareto = [
            {**p.to_dict(), "label": a.label(p.key), "frontier": labels([q.model for q in p.frontier], sources)}
            for p in a.pareto
        ]
        per_model = [
            {"model": short(m, sources.get(m)), "rows": [r for r in a.rows if r["model"] == m]} for m in models
        ]
        return [
            Section("attacks", "Attacks", figures=figures, tables=[("attacks", a.rows)], summary=summary, notes=notes),
            Section(
                "pareto",
                "Pareto frontier",
                html=[render(_PARETO, pareto=pareto)] if a.pareto else [],
                figures=[(f"pareto_{i}", _pareto_figure(p, a.label(p.key), sources)) for i, p in enumerate(a.pareto)],
                tables=[("pareto", pareto_rows)],
            ),
            Section("models", "Per model", html=[render(_PER_MODEL, per_model=per_model)]),
        ]


register_kind(Attack())
