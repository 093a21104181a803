"""Model diagnosis from semantic attack records: which attributes make a model fail, per model and per class.

Three histograms, each with its denominators (never a bare share):

- ``sensitivity`` (H1): among clean-correct images, the fraction that each attribute fools **alone** (the
  attack's single-attribute searches, column ``single_fooled_by``).
- ``necessity`` (H2): among successes, the fraction that resetting each attribute to its identity **undoes**
  (column ``undone_by``). The default: it measures what an attribute contributes to a success, where the size of its
  parameter does not (with random starts every parameter ends up large).
- ``shapley`` (H3, optional): the mean exact Shapley value of each attribute (and of the pixel residual) over the
  successes (columns ``shapley_<name>``); each success's values sum to 1.

Achromatic images (column ``achromatic``) are left out of the colour attributes' denominators: hue and saturation
can neither act on a grey image nor be blamed for it. ``share`` normalises the fractions to sum 1 for display;
``fraction`` with ``count`` / ``denominator`` is the measurement.

Works on :meth:`AttackResult.to_columns` or on the store's records (the same column names).

Also here, shared by ``robustlab semantic`` and the study's ``semantic`` job kind: the captions of a grid of examples
(:func:`examples`), the histograms a run supports (:func:`histogram_methods`), and the checks of a diagnosis run's
settings as people write them (:func:`parse_range`, :func:`semantic_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from robustlab.errors import ConfigError
from robustlab.stats import Rate
from robustlab.transforms import ATTRIBUTES

HISTOGRAM_METHODS = ("necessity", "sensitivity", "shapley")
_SOURCE = {"sensitivity": "single_fooled_by", "necessity": "undone_by"}


def _names(cell: Any) -> set[str]:
    return {a for a in str(cell or "").split(",") if a}


def attribute_histogram(
    columns: Mapping[str, Sequence[Any]],
    attributes: Sequence[str],
    method: str = "necessity",
    rows: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One histogram over ``attributes`` from per-image columns.

    Args:
        columns: Per-image columns with ``correct``, ``won``, ``achromatic`` and the method's source column.
        attributes: The attributes of the threat model (``shapley`` adds ``pixel`` when its column exists).
        method: ``necessity``, ``sensitivity`` or ``shapley``.
        rows: Restrict to these row positions (a class), default all.

    Returns:
        ``{"method", "population", "n", "share": {a: float | None}, "fraction": {a: ...}, "count": {a: int},
        "denominator": {a: int}, "rates": {a: Rate dict}, "excluded_achromatic": int}``; ``share`` is ``None``
        everywhere when nothing was counted.

    Raises:
        ConfigError: an unknown method, or records without the method's column (e.g. ``shapley`` without
            ``shapley=True``).
    """
    if method not in HISTOGRAM_METHODS:
        raise ConfigError(f"unknown histogram method {method!r}; use one of {', '.join(HISTOGRAM_METHODS)}")
    n_all = len(columns["won"])
    picked = range(n_all) if rows is None else rows
    population = "correct" if method == "sensitivity" else "won"
    members = [i for i in picked if bool(columns[population][i])]
    grey = columns.get("achromatic", [False] * n_all)
    players = list(attributes)
    if method == "shapley":
        if "pixel" not in players and "shapley_pixel" in columns:
            players.append("pixel")
        missing = [p for p in players if f"shapley_{p}" not in columns]
        if missing:
            raise ConfigError("these records have no Shapley values: run the semantic attack with shapley=True")
    elif _SOURCE[method] not in columns:
        raise ConfigError(
            f"these records have no {_SOURCE[method]!r} column: the {method} histogram needs "
            + ("single_starts=True" if method == "sensitivity" else "necessity=True")
        )
    fraction: dict[str, float | None] = {}
    count: dict[str, int] = {}
    denominator: dict[str, int] = {}
    rates: dict[str, Any] = {}
    excluded = 0
    for a in players:
        colour = a != "pixel" and ATTRIBUTES.get(a).colour
        group = [i for i in members if not (colour and bool(grey[i]))]
        if colour:
            excluded = max(excluded, len(members) - len(group))
        denominator[a] = len(group)
        if method == "shapley":
            values = [float(columns[f"shapley_{a}"][i]) for i in group]
            fraction[a] = sum(values) / len(values) if values else None
            count[a] = len(values)
        else:
            count[a] = sum(a in _names(columns[_SOURCE[method]][i]) for i in group)
            fraction[a] = count[a] / len(group) if group else None
            rates[a] = Rate(count[a], len(group)).to_dict()
    total = sum(max(v, 0.0) for v in fraction.values() if v is not None)
    share = {a: (max(v, 0.0) / total if v is not None and total > 0 else None) for a, v in fraction.items()}
    return {
        "method": method,
        "population": "clean-correct images" if method == "sensitivity" else "successes",
        "n": len(members),
        "share": share,
        "fraction": fraction,
        "count": count,
        "denominator": denominator,
        "rates": rates,
        "excluded_achromatic": excluded,
    }


def diagnosis(
    columns: Mapping[str, Sequence[Any]],
    attributes: Sequence[str],
    methods: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every available histogram, overall and per class (by the true label).

    Args:
        columns: Per-image columns (see :func:`attribute_histogram`; ``label`` for the per-class split).
        attributes: The threat model's attributes.
        methods: Histograms to compute (default: those the columns support, necessity first).
        class_names: Names of the classes (default: the label numbers).

    Returns:
        ``{"histogram": <the first method's histogram>, "histograms": {method: ...}, "per_class": {name:
        {"n", "n_correct", "n_success", "robust_accuracy", "histograms": {...}}}}``.
    """
    available = [
        m
        for m in HISTOGRAM_METHODS
        if (m == "shapley" and any(k.startswith("shapley_") for k in columns)) or _SOURCE.get(m, "") in columns
    ]
    methods = list(methods) if methods is not None else available
    histograms = {m: attribute_histogram(columns, attributes, m) for m in methods}
    labels = [int(v) for v in columns["label"]]
    per_class: dict[str, Any] = {}
    for c in sorted(set(labels)):
        rows = [i for i, v in enumerate(labels) if v == c]
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        n_correct = sum(bool(columns["correct"][i]) for i in rows)
        per_class[name] = {
            "n": len(rows),
            "n_correct": n_correct,
            "n_success": sum(bool(columns["won"][i]) for i in rows),
            "robust_accuracy": Rate(sum(bool(columns["robust"][i]) for i in rows), len(rows)).to_dict(),
            "histograms": {m: attribute_histogram(columns, attributes, m, rows) for m in methods},
        }
    first = methods[0] if methods else None
    return {
        "histogram": histograms[first] if first else None,
        "histograms": histograms,
        "per_class": per_class,
    }


def top_attribute(histogram: Mapping[str, Any]) -> str | None:
    """The attribute with the largest share (``None`` when nothing was counted)."""
    share = {a: v for a, v in histogram["share"].items() if v is not None and not math.isnan(v)}
    return max(share, key=lambda a: share[a]) if share and max(share.values()) > 0 else None


#: Examples shown by default in a grid of semantic adversarial examples.
GRID_EXAMPLES = 8


def examples(
    columns: Mapping[str, Sequence[Any]],
    ranges: Mapping[str, Sequence[float]],
    class_names: Sequence[str] | None = None,
    k: int = GRID_EXAMPLES,
) -> tuple[list[int], list[str]]:
    """The images a grid of examples shows, the first ``k`` successes (``won``), and their captions
    (:func:`example_caption`). Returns ``(positions, captions)``."""
    rows = [i for i, won in enumerate(columns["won"]) if bool(won)][: max(k, 0)]
    return rows, [example_caption(columns, i, ranges, class_names) for i in rows]


def _value_text(name: str, value: float) -> str:
    unit = ATTRIBUTES.get(name).unit
    number = f"{value:+.3g}" if ATTRIBUTES.get(name).identity == 0 else f"{value:.3g}"
    return f"{name} {number}{unit if unit in ('°', '×', '') else ' ' + unit}"


def example_caption(
    columns: Mapping[str, Sequence[Any]],
    row: int,
    ranges: Mapping[str, Sequence[float]],
    class_names: Sequence[str] | None = None,
) -> str:
    """What changed in one semantic adversarial example, for a grid: the true and predicted classes, then each
    attribute whose value differs from its identity (clamped into its range, as the threat model renders it: blur's
    identity is its range's low end), then the pixel residual's L∞ norm when there is one.

    Args:
        columns: Per-image columns (:meth:`AttackResult.to_columns` of the semantic attack, or its records):
            ``label``, ``adv_pred``, ``attr_<name>``, ``pixel_linf``.
        row: The image's position.
        ranges: The threat model's attribute → ``(low, high)``.
        class_names: Names of the classes (default: the label numbers).
    """

    def name(c: Any) -> str:
        c = int(c)
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    lines = [f"{name(columns['label'][row])} → {name(columns['adv_pred'][row])}"]
    changed = []
    for a, (lo, hi) in ranges.items():
        value = columns[f"attr_{a}"][row]
        if value is None:
            continue
        identity = min(max(ATTRIBUTES.get(a).identity, lo), hi)
        if abs(float(value) - identity) > 1e-6 * max(1.0, hi - lo):
            changed.append(_value_text(a, float(value)))
    lines.append(", ".join(changed) if changed else "no attribute changed")
    pixel = columns.get("pixel_linf", [None] * (row + 1))[row]
    if pixel:
        lines.append(f"pixel L∞ {float(pixel) * 255:.3g}/255")
    return "\n".join(lines)


def _number(text: str) -> float:
    """``0.5``, ``-1/255``, ``pi``, ``-pi/6``, ``2*pi/3`` or ``2pi`` as a float (:class:`ValueError` otherwise)."""
    t = text.strip().lower().replace(" ", "")
    sign = -1.0 if t.startswith("-") else 1.0
    t = t[1:] if t[:1] in ("+", "-") else t
    if t[:1] in ("+", "-"):
        raise ValueError(text)
    num, slash, den = t.partition("/")
    if num.endswith("pi"):
        coeff = num[:-2].removesuffix("*")
        value = (float(coeff) if coeff else 1.0) * math.pi
    else:
        value = float(num)
    if slash:
        value /= float(den)
    return sign * value


def parse_range(text: Any, what: str) -> tuple[float, float]:
    """An attribute range as ``"LOW:HIGH"`` (or a pair of numbers): numbers, fractions and multiples of ``pi``,
    e.g. ``-0.5:0.5``, ``-pi/6:pi/6``, ``0.7:1.3``.

    Raises:
        ConfigError: naming ``what`` and what was given (the domain is checked by the threat model).
    """
    hint = f"{what}: a range is LOW:HIGH, e.g. -0.5:0.5, -pi/6:pi/6 or 0.7:1.3; got {text!r}"
    if isinstance(text, list | tuple):
        if len(text) != 2:
            raise ConfigError(hint)
        parts = [str(v) for v in text]
    elif isinstance(text, str):
        parts = text.split(":")
        if len(parts) != 2:
            raise ConfigError(hint)
    else:
        raise ConfigError(hint)
    try:
        low, high = (_number(p) for p in parts)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(hint) from None
    return low, high


def semantic_config(settings: Mapping[str, Any]) -> Any:
    """The :class:`~robustlab.attacks.SemanticConfig` of search settings, checked.

    Raises:
        ConfigError: an unknown setting (close matches named) or an invalid value.
    """
    from robustlab.attacks import SemanticConfig

    fields = [f.name for f in dataclasses.fields(SemanticConfig)]
    for key in settings:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown semantic attack setting {key!r}{hint}; settings: {', '.join(fields)}")
    for key in ("single_starts", "early_stop"):
        if key in settings and not isinstance(settings[key], bool):
            raise ConfigError(f"semantic attack: {key} must be true or false, got {settings[key]!r}")
    config = SemanticConfig(**settings)
    config.check()
    return config


def histogram_methods(single_starts: bool, shapley: bool) -> list[str]:
    """The diagnosis histograms a run supports: necessity; sensitivity when the single-attribute searches ran;
    Shapley when it was asked for."""
    return ["necessity", *(["sensitivity"] if single_starts else []), *(["shapley"] if shapley else [])]
