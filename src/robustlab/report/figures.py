"""Figure builders shared by the job kinds' report sections: plotly figures (interactive, inlined in the HTML
report) and their matplotlib rendering (static PNG for papers and slides). Each kind draws its own figures
(:meth:`robustlab.store.kinds.JobKind.report`) with these."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from robustlab._io import atomic_path
from robustlab.analysis.classwise import ClasswiseAnalysis, class_rates
from robustlab.stats import Rate


def short(name: str, source: str | None = None) -> str:
    """Axis label of a model: user factories lose their directory; a published checkpoint (``source``, as
    recorded by the run) gets a star."""
    if ":" in name:
        path, _, factory = name.rpartition(":")
        name = f"{path.rsplit('/', 1)[-1]}:{factory}"
    return f"{name}*" if source == "published" else name


def labels(models: list[str], sources: dict[str, str] | None = None) -> list[str]:
    """:func:`short` labels of ``models``."""
    return [short(m, (sources or {}).get(m)) for m in models]


def bar_figure(
    series: dict[str, dict[str, float | None]],
    models: list[str],
    sources: dict[str, str] | None,
    title: str,
    yaxis: str,
    yrange: list[float] | None = None,
) -> go.Figure:
    """Grouped bars: one trace per series name, one bar per model (missing values left empty)."""
    fig = go.Figure()
    for name, by in series.items():
        fig.add_trace(go.Bar(name=name, x=labels(models, sources), y=[by.get(m) for m in models]))
    fig.update_layout(barmode="group", title=title, yaxis_title=yaxis, height=450)
    if yrange is not None:
        fig.update_layout(yaxis_range=yrange)
    return fig


def rate_bar_figure(
    series: dict[str, dict[str, Rate]], models: list[str], sources: dict[str, str] | None, title: str, yaxis: str
) -> go.Figure:
    """Grouped bars of rates with their 95 % Wilson intervals as error bars and in the hover text (value,
    interval, k/n); a model without a rate, or with nothing measured (n = 0), has no bar."""
    fig = go.Figure()
    for name, by in series.items():
        rates = [by.get(m) for m in models]
        value = [None if r is None or not r.n else r.value for r in rates]
        low = [0.0 if v is None or r is None else v - r.interval[0] for v, r in zip(value, rates, strict=True)]
        high = [0.0 if v is None or r is None else r.interval[1] - v for v, r in zip(value, rates, strict=True)]
        fig.add_trace(
            go.Bar(
                name=name,
                x=labels(models, sources),
                y=value,
                error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
                hovertext=["not measured" if r is None else str(r) for r in rates],
                hovertemplate="%{x}<br>%{hovertext}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(barmode="group", title=title, yaxis_title=yaxis, height=450, yaxis_range=[0, 1.05])
    return fig


def heatmap(
    z: list[list[float | None]],
    x: list[str],
    y: list[str],
    title: str,
    colorbar: str,
    xaxis: str,
    yaxis: str,
    zmax: float | None = 1.0,
    digits: int = 2,
    rates: list[list[Rate | None]] | None = None,
    missing: str = "not measured",
) -> go.Figure:
    """A heatmap whose cells show their value; an empty cell (``None``) is blank, and its hover says why
    (``missing``). With ``rates``, the hover shows each cell's rate with its 95 % interval and k/n.

    Shape:
        z, rates: (len(y), len(x)).
    """
    text = [["" if v is None else f"{v:.{digits}f}" for v in row] for row in z]
    hover = [
        [
            f"{missing}" if v is None else (str(rates[i][j]) if rates is not None else f"{v:.{digits + 2}g}")
            for j, v in enumerate(row)
        ]
        for i, row in enumerate(z)
    ]
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
            hovertext=hover,
            hovertemplate=f"{yaxis}: %{{y}}<br>{xaxis}: %{{x}}<br>%{{hovertext}}<extra></extra>",
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


def classwise_figure(c: ClasswiseAnalysis, sources: dict[str, str] | None = None) -> go.Figure:
    """Model × class robust accuracy under one perturbation."""
    models = list(c.results)
    classes = list(next(iter(c.results.values())).classes)
    z = [list(c.results[m].robust_accuracy) for m in models]
    rates: list[list[Rate | None]] = [list(class_rates(c.results[m])) for m in models]
    return heatmap(
        z,
        classes,
        labels(models, sources),
        f"Per-class robust accuracy: {c.title or c.perturbation}",
        "robust accuracy",
        "true class",
        "model",
        rates=rates,
        missing="no image of this class",
    )


def confusion_figure(c: ClasswiseAnalysis) -> go.Figure:
    """Adversarial confusion summed over models, rows normalised: where each class's images end up."""
    first = next(iter(c.results.values()))
    k = len(first.classes)
    total = np.zeros((k, k))
    for r in c.results.values():
        total += np.array(r.confusion, dtype=float)
    rows = total.sum(1)
    counts = total.astype(int).tolist()
    z: list[list[float | None]] = [
        [None if not rows[t] else counts[t][p] / rows[t] for p in range(k)] for t in range(k)
    ]
    rates: list[list[Rate | None]] = [[Rate(counts[t][p], int(rows[t])) for p in range(k)] for t in range(k)]
    return heatmap(
        z,
        list(first.classes),
        list(first.classes),
        f"Confusion under {c.title or c.perturbation} (all models)",
        "fraction of row",
        "predicted class",
        "true class",
        rates=rates,
        missing="no image of this class",
    )


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only: no display, no browser, no kaleido)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: go.Figure, path: Path) -> None:
    """Render a plotly figure's traces with matplotlib (no browser or kaleido needed)."""
    plt = _pyplot()
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
            err = trace.error_y
            yerr = None if err is None or err.array is None else [list(err.arrayminus), list(err.array)]
            ax.bar(
                np.arange(len(xs)) + i * w - 0.4 + w / 2,
                [np.nan if v is None else v for v in trace.y],
                w,
                yerr=yerr,
                capsize=2 if yerr is not None else 0,
                label=trace.name,
            )
            ax.set_xticks(range(len(xs)), xs, rotation=60, ha="right", fontsize=7)
        elif trace.type == "scatter":
            mode = trace.mode or "markers"
            style = ("-" if "lines" in mode else "") + ("o" if "markers" in mode else "")
            ax.plot(list(trace.x), list(trace.y), style, label=trace.name)
            if trace.mode and "text" in trace.mode and trace.text is not None:
                for x, y, t in zip(trace.x, trace.y, trace.text, strict=False):
                    ax.annotate(t, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if layout.xaxis.type == "log":
        ax.set_xscale("log")
    if layout.yaxis.type == "log":
        ax.set_yscale("log")
    ax.set_title((layout.title.text or "")[:90], fontsize=9)
    ax.set_xlabel(layout.xaxis.title.text or "")
    ax.set_ylabel(layout.yaxis.title.text or "")
    if any(t.type in ("bar", "scatter") for t in fig.data):
        ax.legend(fontsize=6)
    mfig.tight_layout()
    mfig.savefig(path)
    plt.close(mfig)


def _image(x: Any) -> np.ndarray:
    """One image ``(C, H, W)`` in [0, 1] (a tensor or an array) as ``imshow`` takes it: ``(H, W)`` or ``(H, W, 3)``."""
    a = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def example_grid_png(
    clean: Sequence[Any],
    changed: Sequence[Any],
    captions: Sequence[str],
    path: str | Path,
    title: str = "",
    headings: tuple[str, str] = ("clean", "adversarial"),
) -> Path:
    """A grid of examples as a PNG, one row each: the clean image, the changed image and a caption (e.g. the
    attribute values and the predicted classes). Written atomically (:func:`robustlab._io.atomic_path`).

    Args:
        clean, changed: Images ``(C, H, W)`` in [0, 1] (tensors or arrays; one or three channels), one per row.
        captions: One text per row (lines separated by ``\\n``; long lines are wrapped).
        path: The PNG file.
        title: Above the grid.
        headings: Titles of the two image columns.

    Raises:
        ValueError: no row, or the three sequences differ in length.
    """
    if not len(clean) or not len(clean) == len(changed) == len(captions):
        raise ValueError(
            f"a grid needs one clean image, one changed image and one caption per row, got {len(clean)}, "
            f"{len(changed)}, {len(captions)}"
        )
    plt = _pyplot()
    rows = len(clean)
    fig, axes = plt.subplots(
        rows, 3, figsize=(6.4, 1.35 * rows + 0.4), dpi=110, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 2.6]}
    )
    for i in range(rows):
        for j, x in enumerate((clean[i], changed[i])):
            img = _image(x)
            axes[i][j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(headings[j], fontsize=8)
        text = "\n".join(textwrap.fill(line, 48) for line in captions[i].split("\n"))
        axes[i][2].axis("off")
        axes[i][2].text(0.0, 0.5, text, fontsize=7, va="center", ha="left", transform=axes[i][2].transAxes)
    if title:
        fig.suptitle(title[:90], fontsize=9)
    fig.tight_layout()
    final = Path(path)
    try:
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return final
