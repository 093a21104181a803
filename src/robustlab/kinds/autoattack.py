"""The ``autoattack`` job kind: every model under the AutoAttack cascade, per norm, budget and version.

Spec section ``autoattack`` (a list; lists inside an entry expand to one job per combination)::

    autoattack:
      - {norm: linf, eps: [4/255, 8/255], version: standard}
      - {norm: l2, eps: 0.5, version: [standard, plus]}

Each job runs :func:`robustlab.attack` with ``"autoattack"`` (:mod:`robustlab.attacks._autoattack`) on the
evaluation subset with the study's seed, and writes the attack's per-sample columns plus ``broken_by`` (the stage
that broke each point) and, as constants of the job, the cascade's stage order and seconds, the flags with their
messages and, for version ``rand``, the expected robust accuracy over the evaluation draws. The analysis gives, per
model and configuration, the robust accuracy with its 95 % Wilson interval, the cascade table (robust accuracy
after each stage, counted from ``broken_by``) and the flags; the report shows them with one small figure per
configuration.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import plotly.graph_objects as go
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from robustlab.analysis.summary import add_rate, query_rows, rate_of
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import NormName, SpecSection, StudySpec
from robustlab.errors import RobustlabError
from robustlab.kinds.attack import POINT_COLUMNS
from robustlab.report.figures import short
from robustlab.report.html import Section, rate_cell, render, sources_of
from robustlab.stats import Rate
from robustlab.store import has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema

#: How norms are written for readers.
NORM_NAMES = {"l1": "L1", "l2": "L2", "linf": "L∞"}


def _default_norm() -> list[Any]:
    return ["linf"]


def _default_version() -> list[Any]:
    return ["standard"]


def _unset() -> list[Any]:
    return [None]


def check_config(norm: str, version: str, steps: int | None, queries: int | None, eval_draws: int | None) -> None:
    """Check one AutoAttack configuration without running it: a known version (close matches suggested), a norm
    the version covers, valid settings.

    Raises:
        RobustlabError: what is wrong, in one sentence (``ConfigError`` or ``UnknownNameError``).
    """
    from robustlab.attacks import ATTACKS, check_params

    params: dict[str, Any] = {"version": version}
    if queries is not None:
        params["queries"] = queries
    if eval_draws is not None:
        params["eval_draws"] = eval_draws
    check_params("autoattack", params, norm=norm, steps=steps)
    method = ATTACKS.get("autoattack").configure(steps, None, params)
    method.stages(norm)  # type: ignore[attr-defined]  # the cascade of this version for this norm


class AutoAttackSection(SpecSection):
    """AutoAttack over a grid (lists expand to one job per combination of norm, eps, version, steps, queries)."""

    norm: list[NormName] = Field(default_factory=_default_norm)
    eps: list[float | str | None] = Field(default_factory=_unset)
    version: list[str] = Field(default_factory=_default_version)
    steps: list[int | None] = Field(
        default_factory=_unset, description="Iterations of APGD, APGD-T and FAB-T (default: AutoAttack's 100)."
    )
    queries: list[int | None] = Field(default_factory=_unset, description="Square's queries (default: 5000).")
    eval_draws: int | None = Field(default=None, description="Version rand: evaluation draws per point (>= 20).")

    @field_validator("norm", "eps", "version", "steps", "queries", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("eps")
    @classmethod
    def _valid_eps(cls, v: list[float | str | None]) -> list[float | None]:
        from robustlab.attacks import parse_eps

        return [parse_eps(e) for e in v]

    @field_validator("version")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [s.lower() for s in v]

    @model_validator(mode="after")
    def _configs_run(self) -> AutoAttackSection:
        """Every combination is checked now (:func:`check_config`): an unknown version, a norm the version does
        not cover or a bad setting fails when the spec is parsed, before any job is written."""
        if self.eval_draws is not None and "rand" not in self.version:
            raise ValueError("eval_draws applies to version 'rand' only")
        seen = set()
        for norm, version, steps, queries in itertools.product(self.norm, self.version, self.steps, self.queries):
            if (norm, version, steps, queries) in seen:
                continue
            seen.add((norm, version, steps, queries))
            draws = self.eval_draws if version == "rand" else None
            try:
                check_config(norm, version, steps, queries, draws)
            except RobustlabError as exc:
                raise ValueError(str(exc)) from None
        return self


def autoattack_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every AutoAttack configuration of the spec's grid, as the canonical params of its jobs (with the study's
    seed: the one generator of every stage is seeded with it)."""
    return expand([s.model_dump() for s in spec.section("autoattack") or []], spec.seed)


def expand(sections: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The configurations of ``autoattack`` sections given as plain data (parsed, or a run's canonical spec)."""
    out = []
    for s in sections:
        grid = itertools.product(s["norm"], s["eps"], s["version"], s["steps"], s["queries"])
        for norm, eps, version, steps, queries in grid:
            cfg = {
                "attack": "autoattack",
                "norm": norm,
                "eps": eps,
                "version": version,
                "steps": steps,
                "queries": queries,
                "eval_draws": s["eval_draws"] if version == "rand" else None,
                "seed": seed,
            }
            out.append({**cfg, "key": config_key(cfg)})
    return out


def _eps_text(eps: float | None, *, readable: bool) -> str:
    if eps is None:
        return "default"
    from robustlab.attacks import format_eps

    return format_eps(eps) if readable else f"{eps:.10g}"  # stored keys: budgets 1e-6 apart stay apart


def config_key(cfg: dict[str, Any]) -> str:
    """The stored name of a configuration, e.g. ``autoattack-standard-linf-eps0.03137254902`` (``-s10-q100``
    when steps and queries are set)."""
    parts = ["autoattack", cfg["version"], cfg["norm"], f"eps{_eps_text(cfg['eps'], readable=False)}"]
    if cfg["steps"] is not None:
        parts.append(f"s{cfg['steps']}")
    if cfg["queries"] is not None:
        parts.append(f"q{cfg['queries']}")
    if cfg.get("eval_draws") is not None:
        parts.append(f"d{cfg['eval_draws']}")
    return "-".join(parts)


def config_label(cfg: dict[str, Any]) -> str:
    """The name readers see, e.g. ``AutoAttack standard, L∞ 8/255 (steps=10, queries=100)``."""
    extra = ", ".join(f"{k}={cfg[k]}" for k in ("steps", "queries", "eval_draws") if cfg.get(k) is not None)
    norm = NORM_NAMES.get(cfg["norm"], cfg["norm"])
    base = f"AutoAttack {cfg['version']}, {norm} {_eps_text(cfg['eps'], readable=True)}"
    return base + (f" ({extra})" if extra else "")


def key_labels(spec: dict[str, Any]) -> dict[str, str]:
    """Each configuration key of a run's canonical spec (its manifest's ``spec``) → :func:`config_label`."""
    return {c["key"]: config_label(c) for c in expand(spec.get("autoattack") or [], spec.get("seed", 0))}


@dataclass
class AutoAttackAnalysis:
    """The AutoAttack results of a run.

    Attributes:
        rows: One per model × configuration: ``clean_accuracy`` and ``robust_accuracy`` (the evaluator's verdicts
            in the records) with their 95 % Wilson intervals and counts (``<rate>_low/_high/_k/_n``),
            ``expected_robust_accuracy`` (+ ``_low``/``_high``, version ``rand``), ``n_numerical_error``,
            ``flags`` (codes), ``seconds`` (the cascade's), ``seed``, ``label``.
        cascade: One per model × configuration × stage, in cascade order: ``attacked``, ``broken`` and
            ``robust_accuracy_after`` (clean-correct points not broken by this or an earlier stage, over all
            points, with interval and counts) and ``seconds``.
        flags: One per model × configuration × flag: ``code`` and ``message``.
    """

    rows: list[dict[str, Any]]
    cascade: list[dict[str, Any]]
    flags: list[dict[str, Any]]

    def config_keys(self) -> list[str]:
        """The configurations, in a fixed order."""
        return sorted({r["key"] for r in self.rows})

    def label(self, key: str) -> str:
        """The readable name of configuration ``key``."""
        return next((r["label"] for r in self.rows if r["key"] == key), key)

    def stages(self, model: str, key: str) -> list[dict[str, Any]]:
        """The cascade of ``model`` under configuration ``key``, in order."""
        return [c for c in self.cascade if c["model"] == model and c["key"] == key]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "cascade": self.cascade, "flags": self.flags}


def _analyse(con: Any, study: Any) -> AutoAttackAnalysis:
    rows = query_rows(
        con,
        """
        SELECT model, family, key, version, norm, any_value(eps_budget) AS eps_budget, any_value(seed) AS seed,
               count(*) AS n, sum(correct::INT) AS n_correct, sum(robust::INT) AS n_robust,
               sum((status = 'numerical_error')::INT) AS n_numerical_error,
               any_value(stages) AS stages, any_value(stage_seconds) AS stage_seconds,
               any_value(flags) AS flags, any_value(flag_messages) AS flag_messages,
               any_value(expected_robust_accuracy) AS expected_robust_accuracy,
               any_value(expected_robust_accuracy_low) AS expected_robust_accuracy_low,
               any_value(expected_robust_accuracy_high) AS expected_robust_accuracy_high,
               any_value(eval_draws) AS eval_draws,
               sum(gradient_passes) AS gradient_passes, sum(forward_passes) AS forward_passes
        FROM autoattack GROUP BY model, family, key, version, norm ORDER BY key, model""",
    )
    broken = {
        (m, k, b): c
        for m, k, b, c in con.execute(
            "SELECT model, key, broken_by, count(*) FROM autoattack WHERE broken_by <> '' GROUP BY ALL"
        ).fetchall()
    }
    names = key_labels(study.spec)
    cascade: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    for r in rows:
        r["label"] = names.get(r["key"], r["key"])
        add_rate(r, "clean_accuracy", r["n_correct"], r["n"])
        add_rate(r, "robust_accuracy", r["n_robust"], r["n"])
        stages, seconds = list(r.pop("stages") or []), list(r.pop("stage_seconds") or [])
        remaining = r["n_correct"]
        for i, (stage, sec) in enumerate(zip(stages, seconds, strict=True)):
            hit = broken.get((r["model"], r["key"], stage), 0)
            row = {"model": r["model"], "key": r["key"], "label": r["label"], "stage": i + 1, "attack": stage}
            row.update(attacked=remaining, broken=hit, seconds=sec)
            remaining -= hit
            cascade.append(add_rate(row, "robust_accuracy_after", remaining, r["n"]))
        r["seconds"] = sum(seconds)
        r["stage_names"] = stages
        codes, messages = list(r.pop("flags") or []), list(r.pop("flag_messages") or [])
        r["flags"] = codes
        for code, message in zip(codes, messages, strict=True):
            flags.append({"model": r["model"], "key": r["key"], "label": r["label"], "code": code, "message": message})
    return AutoAttackAnalysis(rows, cascade, flags)


def _cascade_figure(a: AutoAttackAnalysis, key: str, sources: dict[str, str]) -> go.Figure:
    """Robust accuracy after each stage (the clean accuracy first), one line per model, 95 % intervals as bars."""
    fig = go.Figure()
    for r in (r for r in a.rows if r["key"] == key):
        stages = a.stages(r["model"], key)
        rates = [rate_of(r, "clean_accuracy"), *(rate_of(s, "robust_accuracy_after") for s in stages)]
        values = [x.value if x.n else None for x in rates]
        fig.add_trace(
            go.Scatter(
                x=["clean", *(s["attack"] for s in stages)],
                y=values,
                mode="lines+markers",
                name=short(r["model"], sources.get(r["model"])),
                error_y={
                    "type": "data",
                    "array": [x.interval[1] - x.value if x.n else 0.0 for x in rates],
                    "arrayminus": [x.value - x.interval[0] if x.n else 0.0 for x in rates],
                },
                hovertext=[str(x) for x in rates],
            )
        )
    fig.update_layout(
        title=f"Robust accuracy after each stage: {a.label(key)}",
        xaxis_title="stage",
        yaxis_title="robust accuracy",
        yaxis_range=[0, 1.02],
        height=380,
    )
    return fig


_SECTION = """<p>Each stage of AutoAttack attacks only the points still robust; every point it returns is
projected into the threat model, clipped to [0, 1] and classified afresh before it counts. <em>Robust accuracy
after</em> a stage: points classified correctly and not broken by it or an earlier stage, over all points (95 %
Wilson interval, counts). The last column is the evaluator's final verdict on the records; it equals the
cascade's last stage unless the model is randomised. Seed: the study's.</p>
{% for c in configs %}<h3>{{ c.label }}</h3>
<div class="wide"><table><tr><th class="l">model</th><th>clean accuracy</th>
{% for s in c.stage_names %}<th>after {{ s }}</th>{% endfor %}<th>robust accuracy</th>
{% if c.rand %}<th>expected robust accuracy</th>{% endif %}<th>seconds</th><th class="l">flags</th></tr>
{% for m in c.models %}<tr><td class="l">{{ m.name }}</td><td>{{ rate(m.row, "clean_accuracy") }}</td>
{% for s in m.stages %}<td>{{ rate(s, "robust_accuracy_after") }}</td>{% endfor %}
<td>{{ rate(m.row, "robust_accuracy") }}</td>
{% if c.rand %}<td>{{ fmt(m.row.expected_robust_accuracy) }} [{{ fmt(m.row.expected_robust_accuracy_low) }},
{{ fmt(m.row.expected_robust_accuracy_high) }}] ({{ m.row.eval_draws }} draws)</td>{% endif %}
<td>{{ fmt(m.row.seconds) }}</td><td class="l">{{ m.row.flags|join(", ") or "none" }}</td></tr>
{% endfor %}</table></div>
{% if c.rand %}<p>Version rand: <em>robust accuracy</em> is the reference's single-draw figure; the expected robust
accuracy averages the evaluation draws per point (normal 95 % interval over points).</p>{% endif %}
{% if c.flags %}<ul class="flags">{% for f in c.flags %}<li class="flag"><strong>{{ f.model }}</strong>:
<code>{{ f.code }}</code>: {{ f.message }}</li>{% endfor %}</ul>
{% else %}<p>No flags.</p>{% endif %}
{% for name, count in c.numerical %}<p class="flag">{{ name }}: {{ count }} point(s) gave non-finite logits (status
numerical_error), counted neither correct nor robust.</p>{% endfor %}
{% endfor %}"""


class AutoAttackKind(JobKind):
    """The ``autoattack`` job kind (see the module docstring)."""

    name = "autoattack"
    field = "autoattack"
    section = list[AutoAttackSection]
    default: ClassVar[Any] = Field(default_factory=list)
    after = ("clean",)
    schema = RecordSchema(
        "autoattack",
        1,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("key", pa.string()),
            ("attack", pa.string()),
            ("version", pa.string()),
            ("norm", pa.string()),
            ("eps_budget", pa.float64()),
            *POINT_COLUMNS,
            ("broken_by", pa.string()),
            ("stages", pa.list_(pa.string())),
            ("stage_seconds", pa.list_(pa.float64())),
            ("flags", pa.list_(pa.string())),
            ("flag_messages", pa.list_(pa.string())),
            ("expected_robust_accuracy", pa.float64()),
            ("expected_robust_accuracy_low", pa.float64()),
            ("expected_robust_accuracy_high", pa.float64()),
            ("eval_draws", pa.int64()),
        ),
    )

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        subset = tuple(state.evaluation_subset())
        return [
            Job("autoattack", model, {**data_params(spec), **cfg}, subset, label=f"{cfg['key']} on {model}")
            for model in spec.models
            for cfg in autoattack_configs(spec)
        ]

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.attacks import attack

        p = job.params
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        settings = {k: p[k] for k in ("queries", "eval_draws") if p[k] is not None}
        result = attack(
            model,
            x,
            y,
            "autoattack",
            norm=p["norm"],
            eps=p["eps"],
            steps=p["steps"],
            seed=p["seed"],
            batch_size=p["batch_size"],
            index=idx,
            version=p["version"],
            **settings,
        )
        s = result.summary()
        cols = result.to_columns()
        del cols["attack"], cols["norm"]
        expected = s.get("expected_robust_accuracy") or {}
        constants = record_constants(
            job,
            model,
            key=p["key"],
            attack="autoattack",
            version=p["version"],
            norm=result.norm,
            eps_budget=result.eps,
            stages=[c["attack"] for c in s["cascade"]],
            stage_seconds=[float(c["seconds"]) for c in s["cascade"]],
            flags=list(s["flags"]),
            flag_messages=[f["message"] for f in s["flag_details"]],
            expected_robust_accuracy=expected.get("value"),
            expected_robust_accuracy_low=expected.get("low"),
            expected_robust_accuracy_high=expected.get("high"),
            eval_draws=expected.get("draws"),
        )
        write_records(run, "autoattack", job.id, cols, constants)
        return {"robust_accuracy": s["robust_accuracy"], "flags": s["flags"]}

    def analyse(self, con: Any, study: Any) -> AutoAttackAnalysis | None:
        if not has_view(con, "autoattack"):
            return None
        return _analyse(con, study)

    def report(self, study: Any) -> list[Section]:
        a: AutoAttackAnalysis | None = study["autoattack"]
        if a is None or not a.rows:
            return []
        sources = sources_of(study)
        configs = []
        summary: dict[str, dict[str, Any]] = {}
        for key in a.config_keys():
            rows = [r for r in a.rows if r["key"] == key]
            models = [
                {"name": short(r["model"], sources.get(r["model"])), "row": r, "stages": a.stages(r["model"], key)}
                for r in rows
            ]
            configs.append(
                {
                    "label": a.label(key),
                    "stage_names": max((r["stage_names"] for r in rows), key=len),
                    "rand": any(r["version"] == "rand" for r in rows),
                    "models": models,
                    "flags": [
                        {**f, "model": short(f["model"], sources.get(f["model"]))} for f in a.flags if f["key"] == key
                    ],
                    "numerical": [
                        (short(r["model"], sources.get(r["model"])), r["n_numerical_error"])
                        for r in rows
                        if r["n_numerical_error"]
                    ],
                }
            )
            for r in rows:
                summary.setdefault(r["model"], {})[a.label(key)] = rate_cell(
                    Rate(r["robust_accuracy_k"], r["robust_accuracy_n"])
                )
        figures = [(f"autoattack_{i}", _cascade_figure(a, key, sources)) for i, key in enumerate(a.config_keys(), 1)]
        tables = [("autoattack", a.rows), ("autoattack_cascade", a.cascade), ("autoattack_flags", a.flags)]
        return [
            Section(
                "autoattack",
                "AutoAttack",
                html=[render(_SECTION, configs=configs)],
                figures=figures,
                tables=tables,
                summary=summary,
            )
        ]


register_kind(AutoAttackKind())
