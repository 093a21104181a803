"""The ``audit`` job kind: the gradient-masking audit (:func:`robustlab.audit.audit`, ``docs/audit.md``) of every
model at each budget of the spec.

Spec section ``audit`` (a list; ``norm`` and ``eps`` lists expand to one job per combination)::

    audit:
      - {norm: linf, eps: [4/255, 8/255], n: 200, surrogate: vgg8-w25}
      - {norm: l2, eps: 0.5, seed: 3, params: {steps_long: 50, square_queries: 300}}

``n`` audits the first ``n`` points of the evaluation subset (default: all of it); ``seed`` seeds the audit's random
starts (default: the study's seed); ``surrogate`` names a model of the same data whose gradients guide the transfer
rungs (a zoo name or ``path.py:factory``; unset: the audit's default, the cheapest standard zoo model of the same
data, :func:`robustlab.audit.choose_surrogate`; ``none``: the rungs are skipped); ``params`` sets the audit's budgets
(the fields of :class:`~robustlab.audit.AuditConfig`). An entry is checked when the spec is parsed: ε must be finite
and > 0, the surrogate must be known, every budget a known field with a valid value.

Each job runs the audit on its points and writes one record per point (``broken_by``: the rung that broke it first;
``clean_pred`` and ``adv_pred``, the model's answers on the point and on its worst candidate, by one more forward pass
each, outside the audit's counts) and, as constants of the job, per rung its budget, points attacked and broken,
robust accuracy, seconds and model calls (the ``rung_*`` lists), the skipped rungs with their reasons, the flags
(stable codes, evidence, whether each is evidence of masking), the honest number with its interval and attack,
PGD-20's number alone, and the verdict. The analysis reads them back per model and budget; the report shows, per
budget, PGD-20 alone, the honest number with its attack, the flags with their evidence and the verdict.

For a randomised model ``clean_pred`` and ``adv_pred`` are one draw each; the honest number (the constants) is the
audit's expected accuracy over its evaluation draws.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import torch
from pydantic import Field, field_validator

from robustlab.analysis.summary import query_rows
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import NormName, SpecSection, StudySpec, model_problem
from robustlab.errors import RobustlabError
from robustlab.kinds.autoattack import NORM_NAMES
from robustlab.report.figures import short
from robustlab.report.html import Section, render, sources_of
from robustlab.store import has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema


def _default_norm() -> list[Any]:
    return ["linf"]


def audit_config(params: dict[str, Any]) -> Any:
    """The :class:`~robustlab.audit.AuditConfig` of a spec entry's ``params``.

    Raises:
        ConfigError: an unknown field (close matches named) or an invalid value.
    """
    from robustlab.audit import AuditConfig
    from robustlab.errors import ConfigError

    fields = [f.name for f in dataclasses.fields(AuditConfig)]
    unknown = [k for k in params if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown audit budget {unknown[0]!r}{hint}; known: {', '.join(fields)}")
    values = dict(params)
    if "sweep" in values:
        sweep = values["sweep"]
        values["sweep"] = tuple(sweep) if isinstance(sweep, list | tuple) else (sweep,)
    return AuditConfig(**values)


class AuditSection(SpecSection):
    """The gradient-masking audit at each budget (``norm`` and ``eps`` lists expand to one job per combination)."""

    norm: list[NormName] = Field(default_factory=_default_norm)
    eps: list[float | str] = Field(min_length=1, description="Budgets (> 0), e.g. 8/255.")
    n: int | None = Field(default=None, gt=0, description="The first n points of the evaluation subset (default all).")
    seed: int | None = Field(default=None, description="Seed of the audit's random starts (default: the study's).")
    surrogate: str | None = Field(
        default=None,
        description="A model of the same data guiding the transfer rungs (default: the audit's choice from the zoo; "
        "'none': no transfer rungs).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Budgets: the fields of AuditConfig.")

    @field_validator("norm", "eps", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("eps")
    @classmethod
    def _positive_eps(cls, v: list[float | str]) -> list[float]:
        from robustlab.attacks import parse_eps

        out = []
        for e in v:
            value = parse_eps(e)
            if value is None or not value > 0 or not math.isfinite(value):
                raise ValueError(
                    f"eps must be finite and > 0, got {e!r}: at eps = 0 no attack can change an image, so there is "
                    "nothing to audit"
                )
            out.append(value)
        return out

    @field_validator("surrogate")
    @classmethod
    def _known_surrogate(cls, v: str | None) -> str | None:
        problem = None if v is None or v.lower() == "none" else model_problem(v)
        if problem is not None:
            raise ValueError(f"surrogate: {problem}")
        return v

    @field_validator("params")
    @classmethod
    def _valid_budgets(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            config = audit_config(v)
        except RobustlabError as exc:
            raise ValueError(str(exc)) from None
        except TypeError as exc:  # a value of the wrong type that AuditConfig's own checks did not name
            raise ValueError(f"invalid audit budget: {exc}") from None
        return {k: getattr(config, k) for k in v}  # sweep as a tuple


def audit_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every audit of the spec, as the canonical params of its jobs (the full budget, so that changed defaults
    make new jobs)."""
    return expand([s.model_dump() for s in spec.section("audit") or []], spec.seed)


def expand(sections: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The audits of ``audit`` sections given as plain data (parsed, or a run's canonical spec)."""
    out = []
    for s in sections:
        budgets = dataclasses.asdict(audit_config(s["params"]))
        budgets["sweep"] = list(budgets["sweep"])
        for norm, eps in itertools.product(s["norm"], s["eps"]):
            cfg = {
                "norm": norm,
                "eps": float(eps),
                "n": s["n"],
                "seed": seed if s["seed"] is None else s["seed"],
                "surrogate": s["surrogate"],
                "config": budgets,
                "changed": sorted(s["params"]),
            }
            out.append({**cfg, "key": config_key(cfg)})
    return out


def config_key(cfg: dict[str, Any]) -> str:
    """The stored name of an audit, e.g. ``audit-linf-eps0.03137254902-3f2a9c01`` (the last part: a hash of the
    points, seed, surrogate and budgets, so that two entries at one budget stay apart)."""
    rest = {k: cfg[k] for k in ("n", "seed", "surrogate", "config")}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
    return f"audit-{cfg['norm']}-eps{cfg['eps']:.10g}-{digest}"


def config_label(cfg: dict[str, Any]) -> str:
    """The name readers see, e.g. ``L∞ 8/255 (surrogate vgg8-w25, steps_long=50)``."""
    from robustlab.attacks import format_eps

    extra = [f"first {cfg['n']} points"] if cfg["n"] is not None else []
    if cfg["surrogate"] is not None:
        extra.append("no surrogate" if cfg["surrogate"].lower() == "none" else f"surrogate {cfg['surrogate']}")
    extra += [f"{k}={cfg['config'][k]}" for k in cfg.get("changed", [])]
    base = f"{NORM_NAMES.get(cfg['norm'], cfg['norm'])} {format_eps(cfg['eps'])}"
    return base + (f" ({', '.join(extra)})" if extra else "")


#: The constants of one audit job that hold lists, one entry per rung / skipped rung / flag.
_LISTS = (
    "rungs",
    "rung_standalone",
    "rung_eps",
    "rung_attacked",
    "rung_broken",
    "rung_robust_accuracy",
    "rung_seconds",
    "rung_gradient_passes",
    "rung_forward_passes",
    "skipped",
    "skipped_reasons",
    "flags",
    "flag_evidence",
    "flag_masking",
    "warnings",
)


@dataclass
class AuditAnalysis:
    """The audits of a run.

    Attributes:
        rows: One per model × audit: ``n``, ``clean_accuracy``, ``first_pgd`` (its label) and
            ``first_pgd_robust_accuracy`` (PGD-20 alone), the honest number ``robust_accuracy`` with ``_low`` /
            ``_high``, ``honest_attack``, ``expected`` (a randomised model's expected accuracy), ``flags`` (codes),
            ``masking_suspected``, ``verdict``, ``seconds``, model calls, ``label``.
        rungs: One per model × audit × rung that ran, in ladder order: ``attacked``, ``broken``,
            ``robust_accuracy`` (alone for standalone rungs, else after it and every rung before it), ``seconds``
            and model calls.
        flags: One per model × audit × flag: ``code``, ``evidence``, ``masking``.
        skipped: One per model × audit × rung that did not run: ``attack`` and ``reason``.
    """

    rows: list[dict[str, Any]]
    rungs: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    skipped: list[dict[str, Any]]

    def config_keys(self) -> list[str]:
        """The audits, in a fixed order."""
        return sorted({r["key"] for r in self.rows})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "rungs": self.rungs, "flags": self.flags, "skipped": self.skipped}


def _analyse(con: Any, study: Any) -> AuditAnalysis:
    constants = ", ".join(
        f"any_value({c}) AS {c}"
        for c in (
            "norm",
            "eps_budget",
            "seed",
            "surrogate",
            "surrogate_reason",
            "clean_accuracy",
            "robust_accuracy",
            "robust_accuracy_low",
            "robust_accuracy_high",
            "honest_attack",
            "expected",
            "first_pgd",
            "first_pgd_robust_accuracy",
            "masking_suspected",
            "verdict",
            "seconds",
            "gradient_passes",
            "forward_passes",
            *_LISTS,
        )
    )
    rows = query_rows(
        con,
        f"SELECT model, family, key, count(*) AS n, {constants} FROM audit GROUP BY model, family, key "
        "ORDER BY key, model",
    )
    labels = {c["key"]: config_label(c) for c in expand(study.spec.get("audit") or [], study.spec.get("seed", 0))}
    rungs: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for r in rows:
        r["label"] = labels.get(r["key"], r["key"])
        lists = {c: list(r.pop(c) or []) for c in _LISTS}
        head = {"model": r["model"], "key": r["key"], "label": r["label"]}
        names = ("standalone", "eps", "attacked", "broken", "robust_accuracy", "seconds")
        for i, attack in enumerate(lists["rungs"]):
            row = {**head, "step": i + 1, "attack": attack, **{k: lists[f"rung_{k}"][i] for k in names}}
            row["gradient_passes"] = lists["rung_gradient_passes"][i]
            row["forward_passes"] = lists["rung_forward_passes"][i]
            rungs.append(row)
        for code, evidence, masking in zip(lists["flags"], lists["flag_evidence"], lists["flag_masking"], strict=True):
            flags.append({**head, "code": code, "evidence": evidence, "masking": masking})
        for attack, reason in zip(lists["skipped"], lists["skipped_reasons"], strict=True):
            skipped.append({**head, "attack": attack, "reason": reason})
        r["flags"] = lists["flags"]
        r["warnings"] = lists["warnings"]
        r["rung_names"] = lists["rungs"]
    return AuditAnalysis(rows, rungs, flags, skipped)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


_SECTION = """<p>The gradient-masking audit (docs/audit.md): model checks, a ladder of attacks on the same points (each
rung after PGD-20 only on the points still robust), flags with stable codes and a verdict. <em>PGD-20 alone</em> is
what a PGD-only evaluation would report; the <em>honest</em> number is the lowest verified robust accuracy (robust to
every rung; 95 % interval) and the rung that last lowered it.</p>
{% for c in configs %}<h3>{{ c.label }}</h3>
<div class="wide"><table><tr><th class="l">model</th><th>points</th><th>clean</th><th>PGD-20 alone</th>
<th>honest (95 %)</th><th class="l">reached by</th><th class="l">flags</th><th>time (s)</th></tr>
{% for m in c.models %}<tr><td class="l">{{ m.name }}</td><td>{{ m.row.n }}</td><td>{{ pct(m.row.clean_accuracy) }}</td>
<td>{{ pct(m.row.first_pgd_robust_accuracy) }}</td>
<td>{{ pct(m.row.robust_accuracy) }} [{{ pct(m.row.robust_accuracy_low) }}, {{ pct(m.row.robust_accuracy_high) }}]
{% if m.row.expected %}(expected){% endif %}</td>
<td class="l">{{ m.row.honest_attack or "no attack broke a point" }}</td>
<td class="l">{% for code in m.row.flags %}<code>{{ code }}</code>{% if not loop.last %}, {% endif %}{% else %}none
{% endfor %}</td><td>{{ fmt(m.row.seconds) }}</td></tr>
{% endfor %}</table></div>
{% for m in c.models %}<p><strong>{{ m.name }}</strong>: {{ m.row.verdict }}</p>
{% if m.flags %}<ul class="flags">{% for f in m.flags %}<li class="flag"><code>{{ f.code }}</code>{% if not f.masking %}
(hygiene){% endif %}: {{ f.evidence }}</li>{% endfor %}</ul>{% endif %}
{% endfor %}{% endfor %}"""


class AuditKind(JobKind):
    """The ``audit`` job kind (see the module docstring)."""

    name = "audit"
    field = "audit"
    section = list[AuditSection]
    default: ClassVar[Any] = Field(default_factory=list)
    after = ("clean",)
    schema = RecordSchema(
        "audit",
        1,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("key", pa.string()),
            ("index", pa.int64()),
            ("label", pa.int64()),
            ("clean_pred", pa.int64()),
            ("adv_pred", pa.int64()),
            ("broken_by", pa.string()),
            ("norm", pa.string()),
            ("eps_budget", pa.float64()),
            ("seed", pa.int64()),
            ("surrogate", pa.string()),
            ("surrogate_reason", pa.string()),
            ("clean_accuracy", pa.float64()),
            ("robust_accuracy", pa.float64()),
            ("robust_accuracy_low", pa.float64()),
            ("robust_accuracy_high", pa.float64()),
            ("honest_attack", pa.string()),
            ("expected", pa.bool_()),
            ("first_pgd", pa.string()),
            ("first_pgd_robust_accuracy", pa.float64()),
            ("masking_suspected", pa.bool_()),
            ("verdict", pa.string()),
            ("seconds", pa.float64()),
            ("gradient_passes", pa.int64()),
            ("forward_passes", pa.int64()),
            ("rungs", pa.list_(pa.string())),
            ("rung_standalone", pa.list_(pa.bool_())),
            ("rung_eps", pa.list_(pa.float64())),
            ("rung_attacked", pa.list_(pa.int64())),
            ("rung_broken", pa.list_(pa.int64())),
            ("rung_robust_accuracy", pa.list_(pa.float64())),
            ("rung_seconds", pa.list_(pa.float64())),
            ("rung_gradient_passes", pa.list_(pa.int64())),
            ("rung_forward_passes", pa.list_(pa.int64())),
            ("skipped", pa.list_(pa.string())),
            ("skipped_reasons", pa.list_(pa.string())),
            ("flags", pa.list_(pa.string())),
            ("flag_evidence", pa.list_(pa.string())),
            ("flag_masking", pa.list_(pa.bool_())),
            ("warnings", pa.list_(pa.string())),
        ),
    )

    def check(self, spec: Any) -> list[str]:
        n = spec.dataset.n
        return [
            f"audit.{i}.n: {s.n} points, but the evaluation subset has {n}"
            for i, s in enumerate(spec.section("audit") or [])
            if s.n is not None and s.n > n
        ]

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        subset = state.evaluation_subset()
        jobs = []
        for cfg in audit_configs(spec):
            points = tuple(subset if cfg["n"] is None else subset[: cfg["n"]])
            params = {**data_params(spec), **{k: v for k, v in cfg.items() if k != "changed"}}
            jobs += [Job("audit", m, params, points, label=f"{cfg['key']} on {m}") for m in spec.models]
        return jobs

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.audit import audit
        from robustlab.models import load_model
        from robustlab.models.adapter import predict_logits

        p = job.params
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        named = p["surrogate"]
        surrogate: Any = "auto" if named is None else None  # unset: the audit's default surrogate
        if named is not None and named.lower() != "none":
            surrogate = load_model(
                named, data_dir=ctx.data_dir, download=False, device=ctx.device, input_shape=ctx.input_shape
            )
        result = audit(
            model,
            x,
            y,
            eps=p["eps"],
            norm=p["norm"],
            surrogate=surrogate,
            surrogate_name=None if isinstance(surrogate, str) or surrogate is None else named,
            dataset=p["dataset"],
            config=audit_config(p["config"]),
            seed=p["seed"],
            batch_size=p["batch_size"],
            index=idx,
            keep_adversarials=True,
        )
        worst = x if result.adversarials is None else result.adversarials  # kept: keep_adversarials=True
        with torch.no_grad():
            clean_pred = predict_logits(model, x, p["batch_size"]).argmax(1)
            adv_pred = predict_logits(model, worst, p["batch_size"]).argmax(1)
        honest = result.honest
        first = honest.get("first_pgd") or {}
        rungs = result.rungs
        cols = {
            "index": idx.tolist(),
            "label": y.cpu().tolist(),
            "clean_pred": clean_pred.cpu().tolist(),
            "adv_pred": adv_pred.cpu().tolist(),
            "broken_by": list(result.broken_by),
        }
        constants = record_constants(
            job,
            model,
            key=p["key"],
            norm=result.norm,
            eps_budget=result.eps,
            seed=p["seed"],
            surrogate=result.surrogate,
            surrogate_reason=None if result.surrogate_choice is None else result.surrogate_choice.reason,
            clean_accuracy=result.clean_accuracy,
            robust_accuracy=honest["robust_accuracy"],
            robust_accuracy_low=honest["low"],
            robust_accuracy_high=honest["high"],
            honest_attack=honest["attack"],
            expected=bool(honest["expected"]),
            first_pgd=first.get("attack"),
            first_pgd_robust_accuracy=first.get("value"),
            masking_suspected=result.masking_suspected,
            verdict=result.verdict,
            seconds=result.seconds,
            gradient_passes=result.gradient_passes,
            forward_passes=result.forward_passes,
            rungs=[r.rung.label for r in rungs],
            rung_standalone=[r.rung.standalone for r in rungs],
            rung_eps=[float(r.eps) for r in rungs],
            rung_attacked=[r.attacked for r in rungs],
            rung_broken=[r.broken for r in rungs],
            rung_robust_accuracy=[r.robust_accuracy for r in rungs],
            rung_seconds=[float(r.seconds) for r in rungs],
            rung_gradient_passes=[r.gradient_passes for r in rungs],
            rung_forward_passes=[r.forward_passes for r in rungs],
            skipped=[s["attack"] for s in result.skipped],
            skipped_reasons=[s["reason"] for s in result.skipped],
            flags=result.codes,
            flag_evidence=[f.evidence for f in result.flags],
            flag_masking=[f.masking for f in result.flags],
            warnings=list(result.warnings),
        )
        write_records(run, "audit", job.id, cols, constants)
        return {"robust_accuracy": honest["robust_accuracy"], "flags": result.codes}

    def analyse(self, con: Any, study: Any) -> AuditAnalysis | None:
        if not has_view(con, "audit"):
            return None
        return _analyse(con, study)

    def report(self, study: Any) -> list[Section]:
        a: AuditAnalysis | None = study["audit"]
        if a is None or not a.rows:
            return []
        sources = sources_of(study)
        configs = []
        summary: dict[str, dict[str, Any]] = {}
        for key in a.config_keys():
            rows = [r for r in a.rows if r["key"] == key]
            models = [
                {
                    "name": short(r["model"], sources.get(r["model"])),
                    "row": r,
                    "flags": [f for f in a.flags if f["key"] == key and f["model"] == r["model"]],
                }
                for r in rows
            ]
            configs.append({"label": rows[0]["label"], "models": models})
            for r in rows:
                flags = f" ({', '.join(r['flags'])})" if r["flags"] else ""
                summary.setdefault(r["model"], {})[f"audit {r['label']}"] = (
                    f"{_percent(r['robust_accuracy'])} vs PGD-20 {_percent(r['first_pgd_robust_accuracy'])}{flags}"
                )
        tables = [("audit", a.rows), ("audit_rungs", a.rungs), ("audit_flags", a.flags), ("audit_skipped", a.skipped)]
        return [
            Section(
                "audit",
                "Gradient-masking audit",
                html=[render(_SECTION, configs=configs, pct=_percent)],
                tables=tables,
                summary=summary,
            )
        ]


register_kind(AuditKind())
