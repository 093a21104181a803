"""``robustlab report RUN``: one self-contained HTML file (plots inline, no network), PNG figures, CSV tables."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from plotly.offline import get_plotlyjs

from robustlab._io import atomic_write_text
from robustlab.analysis import analyse_run
from robustlab.report.figures import all_figures, save_png


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


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
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

    figs = all_figures(a)
    sections: dict[str, list[str]] = {
        k: [] for k in ("attacks", "transfer", "pareto", "clever", "classwise", "corruption")
    }
    pngs = []
    for section, name, fig in figs:
        sections[section].append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
        if png:
            path = out / "figures" / f"{name}.png"
            save_png(fig, path)
            pngs.append(path)

    keys = sorted({r["key"] for r in a.attacks})
    summary = []
    for c in a.clean:
        cells = {}
        for r in a.attacks:
            if r["model"] == c["model"]:
                d = r.get(f"median_{r['norm']}")
                cells[r["key"]] = f"{_fmt(r['success_rate'])} / {_fmt(d)}"
        summary.append(
            {
                "model": c["model"],
                "family": c["family"],
                "accuracy": c["accuracy"],
                "error": a.errors.get(c["model"], float("nan")),
                "cells": cells,
            }
        )
    per_model = [{"model": c["model"], "rows": [r for r in a.attacks if r["model"] == c["model"]]} for c in a.clean]
    nav = (
        [("summary", "Summary")]
        + [
            (s, t)
            for s, t in (
                ("attacks", "Attacks"),
                ("transfer", "Transfer"),
                ("pareto", "Pareto frontier"),
                ("clever", "CLEVER"),
                ("classwise", "Class-wise"),
                ("corruption", "Corruptions"),
            )
            if sections[s]
        ]
        + [("models", "Per model")]
    )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("robustlab.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        name=a.manifest["spec"]["name"],
        plotly_js=jinja2.filters.Markup(get_plotlyjs()),
        n_models=len(a.clean),
        n_images=len(json.loads((Path(run_dir) / "plan.json").read_text())["subset"])
        if (Path(run_dir) / "plan.json").is_file()
        else "?",
        dataset=a.manifest["spec"]["dataset"]["name"],
        versions=a.manifest["versions"],
        run_dir=str(run_dir),
        nav=nav,
        summary=summary,
        summary_keys=keys,
        figures={k: [jinja2.filters.Markup(v) for v in vs] for k, vs in sections.items()},
        pareto=[p.to_dict() for p in a.pareto],
        clever=a.clever,
        n_flags=sum(bool(r["flag"]) for r in a.clever_vs_attack),
        per_model=per_model,
        fmt=_fmt,
        classwise=[c.to_dict() for c in a.classwise],
        corruption=[{"model": m, **e.to_dict()} for m, e in sorted(a.corruption.items())],
    )
    html_path = out / "report.html"
    atomic_write_text(html_path, html)

    tables = []
    for name, rows in (
        ("clean", a.clean),
        ("attacks", a.attacks),
        ("clever", a.clever),
        ("clever_vs_attack", a.clever_vs_attack),
        (
            "pareto",
            [{"key": p.key, **pt.__dict__, "on_frontier": pt in p.frontier} for p in a.pareto for pt in p.points],
        ),
    ):
        if rows:
            path = out / "tables" / f"{name}.csv"
            _write_csv(path, rows)
            tables.append(path)
    for i, t in enumerate(a.transfer):
        path = out / "tables" / f"transfer_{i}_{t.key}.csv"
        _write_csv(
            path,
            [
                {"source": m, **{tm: r for tm, r in zip(t.models, row, strict=True)}}
                for m, row in zip(t.models, t.rates, strict=True)
            ],
        )
        tables.append(path)
    atomic_write_text(out / "analysis.json", json.dumps(a.to_dict(), indent=1, default=str) + "\n")
    return ReportResult(html_path, pngs, tables, len(figs))
