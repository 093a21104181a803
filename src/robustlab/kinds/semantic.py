"""The ``semantic`` job kind: every model under the semantic attack (:func:`robustlab.attack` with ``"semantic"``:
image attributes and a small L∞ pixel residual, judged by re-rendering), with the diagnosis of which attributes
make each model fail (:mod:`robustlab.metrics.semantic`), per model and per class.

Spec section ``semantic`` (a list; ``preset`` and ``pixel_eps`` lists expand to one job per combination)::

    semantic:
      - {preset: mild, pixel_eps: [0, 1/255], n: 200}
      - {preset: caa, attributes: [hue_hsv, rotation], ranges: {rotation: "-30:30"}, steps: 10, restarts: 5}
      - {attributes: [hue, brightness], ranges: {hue: [-pi/6, pi/6]}, shapley: true, params: {grid: 17}}

``preset`` (``mild`` or ``caa``), ``attributes``, ``ranges`` (attribute → ``"low:high"`` or ``[low, high]``; numbers,
fractions and multiples of ``pi``), ``pixel_eps`` (default: the preset's) and ``padding`` are the threat model
(:func:`robustlab.threat.semantic_threat`); ``steps``, ``restarts`` and ``params`` (``grid``, ``single_starts``,
``loss``, ``rel_step``, ``early_stop``) the search (:class:`robustlab.attacks.SemanticConfig`); ``shapley`` adds exact
Shapley values; ``n`` attacks the first ``n`` points of the evaluation subset (default: all); ``seed`` seeds the random
restarts (default: the study's); ``examples`` is the number of successes shown in the report's grid of examples
(0: none). Every entry is checked when the spec is parsed, by the same functions the attack calls: an unknown
preset or attribute (close matches), a range outside an attribute's domain, a negative pixel budget or a bad setting
fails before anything is written, and colour attributes on a dataset known to have one channel are refused then too.

Each job writes the attack's per-point columns (as the ``attack`` kind: the success rule's ``correct``, ``robust``
and ``won``, distortions, passes) plus ``attr_<name>`` for every registered attribute (the judged example's value;
null for an attribute the threat model does not vary), ``pixel_linf``, ``achromatic``, ``undone_by`` (the necessity
test: the attributes whose reset to identity alone undoes the success), ``single_fooled_by`` (the attributes that
fooled the image alone) and ``shapley_<player>`` (null unless ``shapley``); as constants, the threat model (preset,
attributes, ranges, pixel budget, padding) and the attack's seconds. With ``examples`` it first writes the grid of
examples as ``artifacts/<job id>.png`` (clean | re-rendered adversarial | attribute values and classes).

The analysis computes, per model and configuration, clean and robust accuracy and the success rate with their
95 % Wilson intervals and counts, the diagnosis histograms (necessity; single-attribute sensitivity when the
single-attribute searches ran; Shapley when asked) with their denominators, overall and per class, and the
class-wise robust accuracy (which the report's class-wise section shows with the other perturbations). The report
shows, per configuration, the necessity histogram of every model as a bar chart with 95 % intervals, the histogram
and class-wise tables with their counts, and the grids of examples.

Changing the records: the ``attr_*`` and ``shapley_*`` columns follow the registered attributes
(:data:`robustlab.transforms.ORDER`); registering another attribute changes the schema, so bump its version.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from robustlab.analysis.classwise import ClasswiseAnalysis, classwise_analysis
from robustlab.analysis.summary import add_rate, query_rows
from robustlab.bench.jobs import JobContext, record_constants
from robustlab.bench.plan import Job, PlanState, data_params
from robustlab.bench.spec import SpecSection, StudySpec
from robustlab.errors import RobustlabError
from robustlab.kinds.attack import POINT_COLUMNS
from robustlab.metrics.semantic import (
    diagnosis,
    examples,
    histogram_methods,
    parse_range,
    semantic_config,
    top_attribute,
)
from robustlab.report.figures import example_grid_png, rate_bar_figure, short
from robustlab.report.html import Section, render, sources_of
from robustlab.stats import Rate
from robustlab.store import artifact_path, has_view, write_records
from robustlab.store.kinds import JobKind, register_kind
from robustlab.store.schema import RecordSchema
from robustlab.transforms import ORDER

#: The players of a Shapley attribution: every attribute, and the pixel residual.
_PLAYERS = (*ORDER, "pixel")
#: Search settings that have their own key in a spec entry (and their own option on the command line).
OWN_SETTINGS = ("steps", "restarts")


def _default_preset() -> list[Any]:
    return ["mild"]


def _unset() -> list[Any]:
    return [None]


class SemanticSection(SpecSection):
    """The semantic attack and its diagnosis (``preset`` and ``pixel_eps`` lists expand to one job per combination)."""

    preset: list[str] = Field(default_factory=_default_preset, description="mild or caa.")
    attributes: list[str] | None = Field(default=None, description="Attributes to vary (default: the preset's).")
    ranges: dict[str, Any] = Field(default_factory=dict, description='Attribute → "low:high" or [low, high].')
    pixel_eps: list[float | str | None] = Field(
        default_factory=_unset, description="L∞ budget of the pixel residual (default: the preset's; 0: none)."
    )
    padding: str | None = Field(default=None, description="zeros or reflection (default: the preset's).")
    steps: int | None = Field(
        default=None,
        ge=0,
        description="Sign steps per ascent (default: the attack's); 0: the single-attribute sweeps alone, restarts 0.",
    )
    restarts: int | None = Field(default=None, ge=0, description="Random joint restarts (default: the attack's).")
    shapley: bool = Field(default=False, description="Also exact Shapley values over the attributes.")
    n: int | None = Field(default=None, gt=0, description="The first n points of the evaluation subset (default all).")
    seed: int | None = Field(default=None, description="Seed of the random restarts (default: the study's).")
    examples: int = Field(default=8, ge=0, le=32, description="Successes shown in the report's grid (0: none).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Search settings: grid, single_starts, loss, rel_step, early_stop."
    )

    @field_validator("preset", "pixel_eps", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("pixel_eps")
    @classmethod
    def _valid_eps(cls, v: list[float | str | None]) -> list[float | None]:
        from robustlab.attacks import parse_eps

        try:
            return [parse_eps(e) for e in v]
        except RobustlabError as exc:
            raise ValueError(f"the pixel budget: {exc}") from None

    @field_validator("ranges")
    @classmethod
    def _valid_ranges(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            return {a: list(parse_range(r, f"ranges.{a}")) for a, r in v.items()}
        except RobustlabError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("params")
    @classmethod
    def _no_own_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        own = sorted(set(v) & set(OWN_SETTINGS))
        if own:
            raise ValueError(f"{', '.join(own)} belong(s) at the entry's top level, not under params")
        return v

    @model_validator(mode="after")
    def _threat_and_search_valid(self) -> SemanticSection:
        """The threat model of every preset × pixel budget and the search settings, checked by the functions the
        attack calls (:func:`robustlab.threat.semantic_threat`, :meth:`SemanticConfig.check`)."""
        from robustlab.threat import semantic_threat

        try:
            semantic_config(_search(self.model_dump()))
            for preset, eps in itertools.product(self.preset, self.pixel_eps):
                semantic_threat(preset, self.attributes, _ranges(self.ranges), _float(eps), self.padding)
        except RobustlabError as exc:
            raise ValueError(str(exc)) from None
        return self


def _search(section: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's search settings: ``params`` plus the set ``steps`` and ``restarts``."""
    own = {k: section[k] for k in OWN_SETTINGS if section.get(k) is not None}
    return {**section["params"], **own}


def _float(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _ranges(ranges: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    return {a: (float(r[0]), float(r[1])) for a, r in ranges.items()}


def semantic_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every semantic attack of the spec, as the canonical params of its jobs (the resolved threat model and the
    full search configuration, so that changed defaults make new jobs)."""
    return expand([s.model_dump() for s in spec.section("semantic") or []], spec.seed)


def expand(sections: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The configurations of ``semantic`` sections given as plain data (parsed, or a run's canonical spec)."""
    from robustlab.threat import semantic_threat

    out = []
    for s in sections:
        search = _search(s)
        config = dataclasses.asdict(semantic_config(search))
        for preset, eps in itertools.product(s["preset"], s["pixel_eps"]):
            threat = semantic_threat(preset, s["attributes"], _ranges(s["ranges"]), eps, s["padding"])
            cfg = {
                "preset": threat.preset,
                "attributes": list(threat.attributes),
                "ranges": {a: list(r) for a, r in threat.ranges().items()},
                "pixel_eps": threat.pixel_eps,
                "padding": threat.padding,
                "config": config,
                "shapley": s["shapley"],
                "n": s["n"],
                "seed": seed if s["seed"] is None else s["seed"],
                "examples": s["examples"],
                "changed": sorted(search),
                "custom": {"attributes": s["attributes"] is not None, "ranges": sorted(s["ranges"])},
            }
            out.append({**cfg, "key": config_key(cfg)})
    return out


#: Entries of a configuration that only name it for readers (not part of its jobs).
_LABEL_ONLY = ("changed", "custom")


def config_key(cfg: dict[str, Any]) -> str:
    """The stored name of a configuration, e.g. ``semantic-mild-eps0.003921568627-3f2a9c01`` (the last part: a hash
    of the attributes, ranges, padding, search, points, seed and examples)."""
    rest = {k: v for k, v in cfg.items() if k not in ("preset", "pixel_eps", "key", *_LABEL_ONLY)}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
    return f"semantic-{cfg['preset']}-eps{cfg['pixel_eps']:.10g}-{digest}"


def config_label(cfg: dict[str, Any]) -> str:
    """The name readers see, e.g. ``mild, pixel L∞ 1/255 (first 50 points, steps=5)``."""
    from robustlab.attacks import format_eps

    eps = cfg["pixel_eps"]
    base = f"{cfg['preset']}, pixel L∞ {format_eps(eps)}" if eps > 0 else f"{cfg['preset']}, no pixel residual"
    custom = cfg.get("custom") or {}
    extra = [f"attributes {', '.join(cfg['attributes'])}"] if custom.get("attributes") else []
    extra += [f"{a} {lo:.3g}:{hi:.3g}" for a, (lo, hi) in cfg["ranges"].items() if a in custom.get("ranges", [])]
    extra += [f"first {cfg['n']} points"] if cfg["n"] is not None else []
    extra += [f"{k}={cfg['config'][k]}" for k in cfg.get("changed", [])]
    extra += ["Shapley"] if cfg["shapley"] else []
    return base + (f" ({', '.join(extra)})" if extra else "")


def grid_path(run: str | Path, job_id: str) -> Path:
    """Where a job's grid of examples lives (beside its adversarial examples, were they kept)."""
    return artifact_path(run, job_id).with_suffix(".png")


# ------------------------------------------------------------------------------------------------ analysis


@dataclass
class SemanticAnalysis:
    """The semantic attacks of a run.

    Attributes:
        rows: One per model × configuration: clean accuracy, robust accuracy and success rate with their 95 %
            Wilson intervals and counts (``<rate>_low/_high/_k/_n``), the threat model, ``top_attribute`` (the
            largest necessity share), ``seconds``, model calls, ``label``, ``grid`` (the grid's file, if any).
        histogram: One per model × configuration × method × attribute: ``fraction`` (``count`` /
            ``denominator``; ``low`` / ``high``: its 95 % Wilson interval, none for Shapley means) and ``share``
            (the fractions normalised to sum 1).
        classes: One per model × configuration × class: images, clean-correct, successes, robust accuracy with
            its interval, and the class's top attribute by necessity with its count and denominator.
        classwise: Class-wise robust accuracy per configuration (the report's class-wise section).
    """

    rows: list[dict[str, Any]]
    histogram: list[dict[str, Any]]
    classes: list[dict[str, Any]]
    classwise: list[ClasswiseAnalysis] = field(default_factory=list)

    def config_keys(self) -> list[str]:
        """The configurations, in a fixed order."""
        return sorted({r["key"] for r in self.rows})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "histogram": self.histogram, "classes": self.classes}


def _columns(con: Any, model: str, key: str) -> dict[str, list[Any]]:
    """The per-point columns of one model × configuration (ordered by dataset row)."""
    cur = con.execute("SELECT * FROM semantic WHERE model = ? AND key = ? ORDER BY index", [model, key])
    names = [d[0] for d in cur.description]
    values = list(zip(*cur.fetchall(), strict=True)) or [() for _ in names]
    columns = {n: list(v) for n, v in zip(names, values, strict=True)}
    # a player the attack did not attribute (an attribute not varied, no pixel residual) has no Shapley column
    return {n: v for n, v in columns.items() if not (n.startswith("shapley_") and all(x is None for x in v))}


def _top(histogram: Mapping[str, Any]) -> tuple[str | None, int, int]:
    """The attribute with the largest share, its count and denominator (``None, 0, 0`` when nothing counted)."""
    a = top_attribute(histogram)
    return (a, histogram["count"][a], histogram["denominator"][a]) if a is not None else (None, 0, 0)


def _analyse(con: Any, study: Any) -> SemanticAnalysis:
    rows = query_rows(
        con,
        """
        SELECT model, family, key, any_value(job_id) AS job_id, any_value(preset) AS preset,
               any_value(pixel_eps) AS pixel_eps, any_value(padding) AS padding,
               any_value(attributes) AS attributes, any_value(range_low) AS range_low,
               any_value(range_high) AS range_high, any_value(shapley) AS shapley, any_value(params) AS params,
               any_value(seconds) AS seconds, count(*) AS n, sum(correct::INT) AS n_correct,
               sum(robust::INT) AS n_robust, sum(won::INT) AS n_success,
               sum(forward_passes) AS forward_passes, sum(gradient_passes) AS gradient_passes
        FROM semantic GROUP BY model, family, key ORDER BY key, model""",
    )
    labels = {c["key"]: config_label(c) for c in expand(study.spec.get("semantic") or [], study.spec.get("seed", 0))}
    histogram: list[dict[str, Any]] = []
    classes: list[dict[str, Any]] = []
    for r in rows:
        r["label"] = labels.get(r["key"], r["key"])
        add_rate(r, "clean_accuracy", r["n_correct"], r["n"])
        add_rate(r, "robust_accuracy", r["n_robust"], r["n"])
        add_rate(r, "success_rate", r["n_success"], r["n_correct"])
        attributes = list(r["attributes"])
        settings = json.loads(r.pop("params"))
        methods = histogram_methods(bool(settings.get("single_starts", True)), bool(r["shapley"]))
        d = diagnosis(_columns(con, r["model"], r["key"]), attributes, methods, study.classes)
        head = {"model": r["model"], "key": r["key"], "label": r["label"]}
        for method, h in d["histograms"].items():
            for a in h["share"]:
                row = {**head, "method": method, "attribute": a, "share": h["share"][a], "fraction": h["fraction"][a]}
                rate = h["rates"].get(a) or {}
                row.update(low=rate.get("low"), high=rate.get("high"), count=h["count"][a])
                row.update(denominator=h["denominator"][a], population=h["population"])
                histogram.append(row)
        r["top_attribute"], r["top_count"], r["top_denominator"] = _top(d["histogram"])
        for name, c in d["per_class"].items():
            row = {**head, "class": name, "n": c["n"], "n_correct": c["n_correct"], "n_success": c["n_success"]}
            add_rate(row, "robust_accuracy", c["robust_accuracy"]["k"], c["robust_accuracy"]["n"])
            row["top_attribute"], row["top_count"], row["top_denominator"] = _top(c["histograms"]["necessity"])
            classes.append(row)
        grid = grid_path(study.run_dir, r.pop("job_id"))
        r["grid"] = str(grid) if grid.is_file() else None
        r["ranges"] = {
            a: [lo, hi] for a, lo, hi in zip(attributes, r.pop("range_low"), r.pop("range_high"), strict=True)
        }
    a = SemanticAnalysis(rows, histogram, classes)
    for key in a.config_keys():
        per_model = con.execute(
            "SELECT model, list(label ORDER BY index), list(clean_pred ORDER BY index), "
            "list(adv_pred ORDER BY index) FROM semantic WHERE key = ? GROUP BY model ORDER BY model",
            [key],
        ).fetchall()
        title = f"semantic attack {labels.get(key, key)}"
        a.classwise.append(classwise_analysis(key, per_model, study.classes, title=title))
    return a


# ------------------------------------------------------------------------------------------------ report

_SECTION = """<p>The semantic attack (image attributes within ranges plus a small L∞ pixel residual; every example
judged by re-rendering it from its parameters and classifying it afresh). <em>Necessity</em>: among the successes,
the fraction that resetting one attribute to its identity undoes; <em>alone</em>: among the clean-correct images,
the fraction one attribute fools by itself. Hue and saturation are not blamed for grey images (their denominators
leave them out). Every fraction is shown with its 95 % Wilson interval and counts.</p>
{% for c in configs %}<h3>{{ c.label }}</h3>
<p>Attributes: {% for a, r in c.ranges.items() %}{{ a }} {{ fmt(r[0]) }}:{{ fmt(r[1]) }}{% if not loop.last %},
{% endif %}{% endfor %}; padding {{ c.padding }}.</p>
<div class="wide"><table><tr><th class="l">model</th><th>clean accuracy</th><th>robust accuracy</th>
<th>success rate</th><th class="l">top attribute (necessity)</th><th>seconds</th></tr>
{% for m in c.models %}<tr><td class="l">{{ m.name }}</td><td>{{ rate(m.row, "clean_accuracy") }}</td>
<td>{{ rate(m.row, "robust_accuracy") }}</td><td>{{ rate(m.row, "success_rate") }}</td>
<td class="l">{% if m.row.top_attribute %}{{ m.row.top_attribute }}
({{ m.row.top_count }}/{{ m.row.top_denominator }}){% else %}– (no success){% endif %}</td>
<td>{{ fmt(m.row.seconds) }}</td></tr>
{% endfor %}</table></div>
{% for t in c.histograms %}<div class="wide"><table><tr><th class="l">{{ t.title }}</th>
{% for m in c.models %}<th>{{ m.name }}</th>{% endfor %}</tr>
{% for a in c.attributes %}<tr><td class="l">{{ a }}</td>{% for m in c.models %}
<td>{% if t.cells[m.model][a] %}{{ rate_cell(t.cells[m.model][a]) }}{% else %}–{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>{% endfor %}
{% for m in c.models %}<h4>{{ m.name }}: per class</h4>
<div class="wide"><table><tr><th class="l">class</th><th>images</th><th>clean-correct</th><th>successes</th>
<th>robust accuracy</th><th class="l">top attribute (necessity)</th></tr>
{% for k in m.classes %}<tr><td class="l">{{ k.class }}</td><td>{{ k.n }}</td><td>{{ k.n_correct }}</td>
<td>{{ k.n_success }}</td><td>{{ rate(k, "robust_accuracy") }}</td>
<td class="l">{% if k.top_attribute %}{{ k.top_attribute }} ({{ k.top_count }}/{{ k.top_denominator }}){% else %}–
{% endif %}</td></tr>{% endfor %}</table></div>
{% if m.grid %}<p><img style="max-width: 100%" alt="semantic adversarial examples of {{ m.name }}"
src="data:image/png;base64,{{ m.grid }}"></p>{% endif %}{% endfor %}{% endfor %}"""

#: Histogram tables of the report: method → heading.
_TABLES = {"necessity": "necessity (of successes)", "sensitivity": "fooled alone (of clean-correct)"}


def _grid_base64(path: str | None) -> str | None:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii") if path and Path(path).is_file() else None


class SemanticKind(JobKind):
    """The ``semantic`` job kind (see the module docstring)."""

    name = "semantic"
    field = "semantic"
    section = list[SemanticSection]
    default: ClassVar[Any] = Field(default_factory=list)
    after = ("clean",)
    schema = RecordSchema(
        "semantic",
        1,
        (
            ("model", pa.string()),
            ("family", pa.string()),
            ("key", pa.string()),
            ("preset", pa.string()),
            ("pixel_eps", pa.float64()),
            ("padding", pa.string()),
            ("attributes", pa.list_(pa.string())),
            ("range_low", pa.list_(pa.float64())),
            ("range_high", pa.list_(pa.float64())),
            ("shapley", pa.bool_()),
            ("seconds", pa.float64()),
            *POINT_COLUMNS,
            *((f"attr_{a}", pa.float64()) for a in ORDER),
            ("pixel_linf", pa.float64()),
            ("achromatic", pa.bool_()),
            ("undone_by", pa.string()),
            ("single_fooled_by", pa.string()),
            *((f"shapley_{p}", pa.float64()) for p in _PLAYERS),
        ),
    )

    def check(self, spec: Any) -> list[str]:
        """Points beyond the evaluation subset; colour attributes on a registered dataset of grey images."""
        from robustlab.data import DATASETS
        from robustlab.transforms import ATTRIBUTES

        name = spec.dataset.name
        channels = DATASETS.get(name).shape[0] if name in DATASETS else None
        problems = []
        for i, s in enumerate(spec.section("semantic") or []):
            if s.n is not None and s.n > spec.dataset.n:
                problems.append(f"semantic.{i}.n: {s.n} points, but the evaluation subset has {spec.dataset.n}")
            attributes = {a for c in expand([s.model_dump()], spec.seed) for a in c["attributes"]}
            colour = sorted(a for a in attributes if ATTRIBUTES.get(a).colour)
            if channels is not None and channels != 3 and colour:
                verb = "needs" if len(colour) == 1 else "need"
                problems.append(
                    f"semantic.{i}.attributes: {', '.join(colour)} {verb} RGB images and {name} has {channels} "
                    "channel(s): list attributes without them (e.g. [brightness, contrast, rotation])"
                )
        return problems

    def plan(self, spec: StudySpec, state: PlanState) -> list[Job]:
        subset = state.evaluation_subset()
        jobs = []
        for cfg in semantic_configs(spec):
            points = tuple(subset if cfg["n"] is None else subset[: cfg["n"]])
            params = {**data_params(spec), **{k: v for k, v in cfg.items() if k not in _LABEL_ONLY}}
            jobs += [Job("semantic", m, params, points, label=f"{cfg['key']} on {m}") for m in spec.models]
        return jobs

    def run(self, job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
        from robustlab.attacks import attack

        p = job.params
        x, y, idx = ctx.images(job)
        model = ctx.model(job.model)
        result = attack(
            model,
            x,
            y,
            "semantic",
            eps=p["pixel_eps"],
            seed=p["seed"],
            batch_size=p["batch_size"],
            keep_adversarials=p["examples"] > 0,
            index=idx,
            preset=p["preset"],
            attributes=p["attributes"],
            ranges=_ranges(p["ranges"]),
            padding=p["padding"],
            shapley=p["shapley"],
            **p["config"],
        )
        cols = result.to_columns()
        classes = ctx.dataset(p["dataset"], p["split"]).classes
        rows, captions = examples(cols, p["ranges"], classes, p["examples"])
        if rows and result.adversarials is not None:  # the artifact before the records: they mark the job done
            adv = result.adversarials.cpu()
            title = f"{p['key']} on {short(job.model)}"
            example_grid_png(
                [x[i].cpu() for i in rows], [adv[i] for i in rows], captions, grid_path(run, job.id), title
            )
        del cols["attack"], cols["norm"]
        for name in (*(f"attr_{a}" for a in ORDER), *(f"shapley_{q}" for q in _PLAYERS)):
            cols.setdefault(name, [None] * result.n)
        constants = record_constants(
            job,
            model,
            key=p["key"],
            preset=p["preset"],
            pixel_eps=result.eps,
            padding=p["padding"],
            attributes=list(p["attributes"]),
            range_low=[float(p["ranges"][a][0]) for a in p["attributes"]],
            range_high=[float(p["ranges"][a][1]) for a in p["attributes"]],
            shapley=p["shapley"],
            seconds=result.seconds,
        )
        write_records(run, "semantic", job.id, cols, constants)
        s = result.summary()
        return {"robust_accuracy": s["robust_accuracy"], "success_rate": s["success_rate"]}

    def analyse(self, con: Any, study: Any) -> SemanticAnalysis | None:
        if not has_view(con, "semantic"):
            return None
        return _analyse(con, study)

    def report(self, study: Any) -> list[Section]:
        a: SemanticAnalysis | None = study["semantic"]
        if a is None or not a.rows:
            return []
        sources = sources_of(study)
        configs, figures = [], []
        summary: dict[str, dict[str, Any]] = {}
        for i, key in enumerate(a.config_keys(), 1):
            rows = [r for r in a.rows if r["key"] == key]
            attributes = list(rows[0]["attributes"])
            cells: dict[str, dict[str, dict[str, Rate | None]]] = {}
            for h in (h for h in a.histogram if h["key"] == key and h["method"] in _TABLES):
                by = cells.setdefault(h["method"], {}).setdefault(h["model"], dict.fromkeys(attributes))
                by[h["attribute"]] = Rate(h["count"], h["denominator"])
            models = [
                {
                    "model": r["model"],
                    "name": short(r["model"], sources.get(r["model"])),
                    "row": r,
                    "classes": [c for c in a.classes if c["key"] == key and c["model"] == r["model"]],
                    "grid": _grid_base64(r["grid"]),
                }
                for r in rows
            ]
            histograms = [{"title": title, "cells": cells[m]} for m, title in _TABLES.items() if m in cells]
            configs.append(
                {
                    "label": rows[0]["label"],
                    "ranges": rows[0]["ranges"],
                    "padding": rows[0]["padding"],
                    "attributes": attributes,
                    "models": models,
                    "histograms": histograms,
                }
            )
            necessity = {
                short(m, sources.get(m)): {a: v for a, v in by.items() if v is not None}
                for m, by in cells.get("necessity", {}).items()
            }
            figures.append(
                (
                    f"semantic_{i}",
                    rate_bar_figure(
                        necessity,
                        attributes,
                        None,
                        f"Necessity histogram: {rows[0]['label']}",
                        "fraction of successes undone (95 % interval)",
                    ),
                )
            )
            for r in rows:
                summary.setdefault(r["model"], {})[f"semantic {r['label']}"] = render(
                    "{{ rate(r, 'robust_accuracy') }}{% if r.top_attribute %}, top {{ r.top_attribute }}{% endif %}",
                    r=r,
                )
        tables = [("semantic", a.rows), ("semantic_histogram", a.histogram), ("semantic_classes", a.classes)]
        return [
            Section(
                "semantic",
                "Semantic attack",
                html=[render(_SECTION, configs=configs)],
                figures=figures,
                tables=tables,
                summary=summary,
            )
        ]


register_kind(SemanticKind())
