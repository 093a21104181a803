"""``robustlab report RUN``: one self-contained HTML file (plots inline, no network), PNG figures, CSV tables.

The report is assembled from the job kinds (:mod:`robustlab.store.kinds`): each kind returns its
:class:`Section` objects (title, nav id, text, figures, tables, summary cells); this module lays them out,
adds the summary table they contribute to and the class-wise section of every kind that has class-wise
results, and writes the files.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
from markupsafe import Markup  # jinja2's own safe-string type
from plotly.offline import get_plotlyjs

from robustlab._io import atomic_write_text
from robustlab.analysis import analyse_run
from robustlab.analysis.classwise import MIN_CLASS_IMAGES, class_rates, worst_class
from robustlab.analysis.study import StudyAnalysis
from robustlab.analysis.summary import rate_of
from robustlab.report.figures import classwise_figure, confusion_figure, save_png, short
from robustlab.stats import Rate, format_number
from robustlab.store.kinds import job_kinds


@dataclass(frozen=True)
class ReportResult:
    """Where the report went."""

    html: Path
    figures: list[Path]
    tables: list[Path]
    n_plots: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "figures": [str(p) for p in self.figures],
            "tables": [str(p) for p in self.tables],
            "n_plots": self.n_plots,
        }


@dataclass
class Section:
    """One section of the report, as a job kind describes it.

    Attributes:
        id: Anchor and navigation id (unique in the report).
        title: Heading (and navigation text).
        html: Text and tables shown before the figures, already rendered (see :func:`render`).
        figures: ``(file name, figure)``; each is inlined and written as ``figures/<name>.png``.
        tables: ``(file name, rows)``; each is written as ``tables/<name>.csv``.
        summary: Cells the kind adds to the summary table: model → column → text (or markup, e.g.
            :func:`rate_cell`).
        notes: Lines shown under the summary table (e.g. the legend of abbreviated column names).
        in_nav: Whether the section is listed in the navigation (when it shows anything).
    """

    id: str
    title: str
    html: list[Any] = field(default_factory=list)
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[Any] = field(default_factory=list)
    in_nav: bool = True

    @property
    def shown(self) -> bool:
        return bool(self.html or self.figures)


def rate_cell(rate: Rate) -> Any:
    """A rate as the report shows every rate: value, 95 % Wilson interval and k/n, e.g.
    ``0.800 [0.490, 0.943] (8/10)`` (``– (0/0)`` when nothing was measured)."""
    return Markup('<span class="rate">{}</span>').format(str(rate))


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("robustlab.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
    undefined=jinja2.StrictUndefined,
)
_ENV.globals["fmt"] = format_number
_ENV.globals["rate_cell"] = rate_cell
_ENV.globals["rate"] = lambda row, name: rate_cell(rate_of(row, name))
_ENV.globals["MIN_CLASS_IMAGES"] = MIN_CLASS_IMAGES


def render(template: str, **context: Any) -> Any:
    """Render a kind's HTML fragment (autoescaped; ``fmt``, ``rate_cell`` and ``rate(row, name)`` available) as
    markup for :attr:`Section.html`."""
    return Markup(_ENV.from_string(template).render(**context))


_CLASSWISE = """<p>Per-class robust accuracy: the share of each class's images still classified correctly under
the perturbation, with its 95 % Wilson interval and counts. Classes with fewer than {{ MIN_CLASS_IMAGES }} images
are flagged: their intervals are wide. CFPS(c) = |{i : f(x<sub>i</sub>) = c, y<sub>i</sub> ≠ c}| /
|{i : f(x<sub>i</sub>) = y<sub>i</sub>}| under the perturbation (Medi, Grabinski &amp; Keuper 2024, as transcribed
from a secondary source): how often a class <em>receives</em> wrong answers (a score, not a rate). Its correlation
with per-class robust error is pooled over models × classes.</p>
{% for c in classwise %}<h3>{{ c.title }}</h3>
{% if c.warning %}<p class="flag warn-small">{{ c.warning }}</p>{% endif %}
{% if c.correlation %}<p>CFPS vs robust error: Spearman {{ fmt(c.correlation.spearman) }}
(p = {{ fmt(c.correlation.spearman_p) }}), Pearson {{ fmt(c.correlation.pearson) }}
over {{ c.correlation.n_points }} (model, class) points.</p>{% endif %}
<div class="wide"><table><tr><th class="l">robust accuracy</th>{% for k in c.classes %}<th>{{ k }}</th>{% endfor %}
<th>worst class (robust accuracy)</th></tr>
{% for m in c.models %}<tr><td class="l">{{ m.model }}</td>{% for r in m.rates %}<td>{{ rate_cell(r) }}</td>{% endfor %}
<td>{% if m.worst %}{{ m.worst[0] }}: {{ rate_cell(m.worst[1]) }}{% else %}– (nothing measured){% endif %}</td></tr>
{% endfor %}</table></div>
<div class="wide"><table><tr><th class="l">CFPS (score)</th>{% for k in c.classes %}<th>{{ k }}</th>{% endfor %}</tr>
{% for m in c.models %}<tr><td class="l">{{ m.model }}</td>{% for v in m.cfps %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>{% endfor %}"""


def _classwise_rows(a: StudyAnalysis) -> list[dict[str, Any]]:
    out = []
    for c in a.classwise:
        first = next(iter(c.results.values()))
        models = [
            {"model": m, "rates": class_rates(r), "worst": worst_class(r), "cfps": r.cfps} for m, r in c.results.items()
        ]
        out.append(
            {
                "title": c.title or c.perturbation,
                "warning": c.warning,
                "classes": first.classes,
                "models": models,
                "correlation": c.correlation,
            }
        )
    return out


def _classwise_section(a: StudyAnalysis, sources: dict[str, str]) -> Section:
    figures: list[tuple[str, go.Figure]] = []
    for i, c in enumerate(a.classwise):
        figures += [(f"classwise_{i}", classwise_figure(c, sources)), (f"confusion_{i}", confusion_figure(c))]
    html = [render(_CLASSWISE, classwise=_classwise_rows(a))] if a.classwise else []
    return Section("classwise", "Class-wise", html=html, figures=figures)


def sources_of(a: StudyAnalysis) -> dict[str, str]:
    """Each model's source (``zoo``, ``published``, ``user``) as the run recorded it."""
    recorded = {m: c.get("source", "user") for m, c in (a.context.get("models") or {}).items()}
    for kind in a.kinds.values():
        recorded.update(getattr(kind, "sources", None) or {})
    return recorded


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_report(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, png: bool = True
) -> ReportResult:
    """Analyse ``run_dir`` and write ``report.html``, ``figures/*.png`` and ``tables/*.csv`` into ``out_dir``
    (default: the run directory)."""
    a = analyse_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)

    sections = [s for kind in job_kinds() for s in kind.report(a)]
    sources = sources_of(a)
    sections.append(_classwise_section(a, sources))
    columns: list[str] = []
    summary: dict[str, dict[str, Any]] = {}
    notes = [n for s in sections for n in s.notes]
    for s in sections:
        for model, cells in s.summary.items():
            summary.setdefault(model, {}).update(cells)
            columns += [c for c in cells if c not in columns]
    pngs, n_plots, rendered = [], 0, []
    for s in sections:
        plots = []
        for name, fig in s.figures:
            plots.append(Markup(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})))
            n_plots += 1
            if png:
                path = out / "figures" / f"{name}.png"
                save_png(fig, path)
                pngs.append(path)
        if s.shown:
            rendered.append({"id": s.id, "title": s.title, "html": s.html, "plots": plots})
    nav = [("summary", "Summary")] + [(s.id, s.title) for s in sections if s.shown and s.in_nav]
    plan = Path(run_dir) / "plan.json"
    html = _ENV.get_template("report.html.j2").render(
        name=a.spec["name"],
        plotly_js=Markup(get_plotlyjs()),
        n_models=len(a.spec["models"]),
        n_images=len(json.loads(plan.read_text())["subset"] or []) if plan.is_file() else "?",
        dataset=a.spec["dataset"]["name"],
        versions=a.manifest["versions"],
        run_dir=str(run_dir),
        nav=nav,
        columns=columns,
        summary=[
            {"model": short(m, sources.get(m)), "cells": summary.get(m, {})} for m in a.spec["models"] if m in summary
        ],
        notes=notes,
        sections=rendered,
    )
    html_path = out / "report.html"
    atomic_write_text(html_path, html)

    tables = []
    for s in sections:
        for name, rows in s.tables:
            if rows:
                path = out / "tables" / f"{name}.csv"
                _write_csv(path, rows)
                tables.append(path)
    atomic_write_text(out / "analysis.json", json.dumps(a.to_dict(), indent=1, default=str) + "\n")
    return ReportResult(html_path, pngs, tables, n_plots)
