"""Figures of a study, each built twice from the same data: plotly (interactive, inlined in the HTML report)
and matplotlib (static PNG for papers and slides)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from robustlab.analysis.classwise import ClasswiseAnalysis
from robustlab.analysis.study import ParetoAnalysis, StudyAnalysis
from robustlab.analysis.transfer import TransferMatrix


def _short(name: str) -> str:
    """Axis label of a model: published checkpoints get a star, user factories lose their directory."""
    if ":" in name:
        path, _, factory = name.rpartition(":")
        name = f"{path.rsplit('/', 1)[-1]}:{factory}"
    return name.replace("-akamaster", "*")


def transfer_figure(t: TransferMatrix) -> go.Figure:
    labels = [_short(m) for m in t.models]
    what = "error rate" if t.target_mode == "untargeted" else "target match rate"
    return _heatmap(t.rates, labels, labels, f"Transfer: {t.key}", what, "target model", "source model", digits=3)


def pareto_figure(p: ParetoAnalysis) -> go.Figure:
    fig = go.Figure()
    families = sorted({pt.family for pt in p.points})
    for fam in families:
        pts = [pt for pt in p.points if pt.family == fam]
        fig.add_trace(
            go.Scatter(
                x=[pt.error for pt in pts],
                y=[pt.distortion for pt in pts],
                mode="markers+text",
                name=fam,
                text=[_short(pt.model) for pt in pts],
                textposition="top center",
                marker={"size": 10},
            )
        )
    front = p.frontier
    fig.add_trace(
        go.Scatter(
            x=[pt.error for pt in front],
            y=[pt.distortion for pt in front],
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
                name=(f"fit: {fit.a:.3g} + {fit.b:.3g}·ln(error), R²={fit.r2:.2f}"),
                line={"color": "firebrick"},
            )
        )
    fig.update_layout(
        title=f"Accuracy vs robustness: {p.key}",
        xaxis_title="top-1 error (log)",
        yaxis_title=f"mean minimal {p.norm} distortion",
        xaxis_type="log",
        height=500,
    )
    return fig


def success_figure(attacks: list[dict[str, Any]]) -> go.Figure:
    keys = sorted({r["key"] for r in attacks})
    models = sorted({r["model"] for r in attacks})
    fig = go.Figure()
    for key in keys:
        by = {r["model"]: r["success_rate"] for r in attacks if r["key"] == key}
        fig.add_trace(go.Bar(name=key, x=[_short(m) for m in models], y=[by.get(m) for m in models]))
    fig.update_layout(
        barmode="group",
        title="Attack success rate (over initially correct inputs)",
        yaxis_title="success rate",
        yaxis_range=[0, 1.05],
        height=450,
    )
    return fig


def distortion_figure(attacks: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    keys = sorted({r["key"] for r in attacks if r["minimal"] or r["attack"] in ("cw", "ead")})
    models = sorted({r["model"] for r in attacks})
    for key in keys:
        by = {r["model"]: r.get(f"median_{r['norm']}") for r in attacks if r["key"] == key}
        fig.add_trace(go.Bar(name=key, x=[_short(m) for m in models], y=[by.get(m) for m in models]))
    fig.update_layout(
        barmode="group", title="Median minimal distortion (in each attack's norm)", yaxis_title="distortion", height=450
    )
    return fig


def clever_figure(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for model in sorted({r["model"] for r in rows}):
        pts = [r for r in rows if r["model"] == model]
        fig.add_trace(
            go.Scatter(
                x=[r["attack_distortion"] for r in pts], y=[r["score"] for r in pts], mode="markers", name=_short(model)
            )
        )
    if rows:
        hi = max(max(r["attack_distortion"] for r in rows), max(r["score"] for r in rows))
        fig.add_trace(
            go.Scatter(
                x=[0, hi], y=[0, hi], mode="lines", name="CLEVER = attack", line={"dash": "dash", "color": "grey"}
            )
        )
    fig.update_layout(
        title="CLEVER score vs smallest distortion found by an attack (points above the line: "
        "estimate exceeds a real adversarial example)",
        xaxis_title="attack distortion",
        yaxis_title="CLEVER score",
        height=500,
    )
    return fig


def _heatmap(
    z: list[list[float | None]],
    x: list[str],
    y: list[str],
    title: str,
    colorbar: str,
    xaxis: str,
    yaxis: str,
    zmax: float | None = 1.0,
    digits: int = 2,
) -> go.Figure:
    text = [[None if v is None else round(v, digits) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            colorscale="Viridis",
            zmin=0,
            zmax=zmax,
            text=text,
            texttemplate="%{text}",
            colorbar={"title": colorbar},
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=xaxis,
        yaxis_title=yaxis,
        yaxis_autorange="reversed",
        height=max(400, 35 * len(y) + 180),
    )
    return fig


def classwise_figure(c: ClasswiseAnalysis) -> go.Figure:
    """Model × class robust accuracy under one perturbation."""
    models = list(c.results)
    classes = list(next(iter(c.results.values())).classes)
    z = [list(c.results[m].robust_accuracy) for m in models]
    return _heatmap(
        z,
        classes,
        [_short(m) for m in models],
        f"Per-class robust accuracy: {c.perturbation}",
        "robust accuracy",
        "true class",
        "model",
    )


def confusion_figure(c: ClasswiseAnalysis) -> go.Figure:
    """Adversarial confusion summed over models, rows normalised: where each class's images end up."""
    first = next(iter(c.results.values()))
    k = len(first.classes)
    total = np.zeros((k, k))
    for r in c.results.values():
        total += np.array(r.confusion, dtype=float)
    rows = total.sum(1, keepdims=True)
    z = np.divide(total, rows, out=np.zeros_like(total), where=rows > 0).tolist()
    return _heatmap(
        z,
        list(first.classes),
        list(first.classes),
        f"Confusion under {c.perturbation} (all models)",
        "fraction of row",
        "predicted class",
        "true class",
    )


def corruption_figure(accs: dict[str, Any]) -> go.Figure:
    """Model × corruption error, averaged over severities."""
    models = sorted(accs)
    names = list(accs[models[0]].corruptions)
    z: list[list[float | None]] = [
        [float(np.mean([1 - accs[m].accuracy[c][s] for s in accs[m].severities])) for c in names] for m in models
    ]
    return _heatmap(
        z, names, [_short(m) for m in models], "Corruption error (mean over severities)", "error", "corruption", "model"
    )


def all_figures(a: StudyAnalysis) -> list[tuple[str, str, go.Figure]]:
    """(section, name, figure) for every plot of the report."""
    figs: list[tuple[str, str, go.Figure]] = []
    if a.attacks:
        figs.append(("attacks", "success", success_figure(a.attacks)))
        if any(r["minimal"] or r["attack"] in ("cw", "ead") for r in a.attacks):
            figs.append(("attacks", "distortion", distortion_figure(a.attacks)))
    for i, t in enumerate(a.transfer):
        figs.append(("transfer", f"transfer_{i}", transfer_figure(t)))
    for i, p in enumerate(a.pareto):
        figs.append(("pareto", f"pareto_{i}", pareto_figure(p)))
    if a.clever_vs_attack:
        figs.append(("clever", "clever_vs_attack", clever_figure(a.clever_vs_attack)))
    for i, c in enumerate(a.classwise):
        figs.append(("classwise", f"classwise_{i}", classwise_figure(c)))
        figs.append(("classwise", f"confusion_{i}", confusion_figure(c)))
    if a.corruption_accuracy:
        figs.append(("corruption", "corruption_errors", corruption_figure(a.corruption_accuracy)))
    return figs


def save_png(fig: go.Figure, path: Path) -> None:
    """Render a plotly figure's traces with matplotlib (no browser or kaleido needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = fig.layout
    mfig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for trace in fig.data:
        if trace.type == "heatmap":
            z = np.array([[np.nan if v is None else v for v in row] for row in trace.z], dtype=float)
            im = ax.imshow(z, vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(trace.x)), trace.x, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(trace.y)), trace.y, fontsize=7)
            if z.size <= 400:
                for (i, j), v in np.ndenumerate(z):
                    if not math.isnan(v):
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
            mfig.colorbar(im, ax=ax)
        elif trace.type == "bar":
            xs = list(trace.x)
            k = len([t for t in fig.data if t.type == "bar"])
            i = [t for t in fig.data if t.type == "bar"].index(trace)
            w = 0.8 / k
            ax.bar(
                np.arange(len(xs)) + i * w - 0.4 + w / 2,
                [np.nan if v is None else v for v in trace.y],
                w,
                label=trace.name,
            )
            ax.set_xticks(range(len(xs)), xs, rotation=60, ha="right", fontsize=7)
        elif trace.type == "scatter":
            style = "-" if trace.mode == "lines" else "o"
            ax.plot(list(trace.x), list(trace.y), style, label=trace.name)
            if trace.mode and "text" in trace.mode and trace.text is not None:
                for x, y, t in zip(trace.x, trace.y, trace.text, strict=False):
                    ax.annotate(t, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if layout.xaxis.type == "log":
        ax.set_xscale("log")
    ax.set_title((layout.title.text or "")[:90], fontsize=9)
    ax.set_xlabel(layout.xaxis.title.text or "")
    ax.set_ylabel(layout.yaxis.title.text or "")
    if any(t.type in ("bar", "scatter") for t in fig.data):
        ax.legend(fontsize=6)
    mfig.tight_layout()
    mfig.savefig(path)
    plt.close(mfig)
