"""Per model × attack configuration: success rate, robust accuracy and distortion statistics.

The success rule lives in one place: the attack records carry ``correct`` (clean-correct, finite logits),
``robust`` and ``won`` (a success on a clean-correct input), computed once by
:class:`robustlab.attacks.AttackResult`; these queries only count them. Medians are DuckDB's ``median``
(the average of the two middle values, the convention of :func:`robustlab.stats.median`).
"""

from __future__ import annotations

from typing import Any

import duckdb

from robustlab.stats import Rate
from robustlab.store import has_view

#: The rates of an attack summary row: name → (column of its count k, column of its denominator n).
ATTACK_RATES = {
    "clean_accuracy": ("n_correct", "n"),
    "robust_accuracy": ("n_robust", "n"),
    "success_rate": ("n_success", "n_correct"),
}


def add_rate(row: dict[str, Any], name: str, k: int | None, n: int | None) -> dict[str, Any]:
    """Put the rate ``name`` = ``k`` / ``n`` into ``row`` with its 95 % Wilson interval and its counts:
    ``name`` (``None`` when ``n`` is 0), ``name_low``, ``name_high``, ``name_k`` and ``name_n``
    (:class:`robustlab.stats.Rate`). Returns ``row``."""
    d = Rate(int(k or 0), int(n or 0)).to_dict()
    row[name] = d["value"]
    for part in ("low", "high", "k", "n"):
        row[f"{name}_{part}"] = d[part]
    return row


def rate_of(row: dict[str, Any], name: str) -> Rate:
    """The :class:`~robustlab.stats.Rate` that :func:`add_rate` put into ``row`` under ``name``."""
    return Rate(int(row[f"{name}_k"]), int(row[f"{name}_n"]))


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a query as dicts (column name → value)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def attack_summary(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """One row per (model, attack configuration key), with the counts behind every rate.

    ``success_rate`` = ``n_success`` / ``n_correct`` (over clean-correct inputs; a numerical error counts as
    neither correct nor robust); ``clean_accuracy`` = ``n_correct`` / ``n``; ``robust_accuracy`` =
    ``n_robust`` / ``n``; distortions are over successes on clean-correct inputs. ``fixed_budget`` is false
    for minimal-distortion attacks (C&W, EAD), whose distortions are minimal without a search.

    Each rate comes with its 95 % Wilson interval and counts (:func:`add_rate`): ``success_rate_low``,
    ``success_rate_high``, ``success_rate_k``, ``success_rate_n`` and the same for the two accuracies.
    """
    if not has_view(con, "attack"):
        return []
    rows = query_rows(
        con,
        """
        SELECT model, family, key, attack, norm, target_mode, minimal, fixed_budget,
               any_value(eps_budget) AS eps_budget,
               count(*) AS n,
               sum(correct::INT) AS n_correct, avg(correct::INT) AS clean_accuracy,
               sum(robust::INT) AS n_robust, avg(robust::INT) AS robust_accuracy,
               sum(won::INT) AS n_success, sum(won::INT) / nullif(sum(correct::INT), 0) AS success_rate,
               median(l1) FILTER (WHERE won) AS median_l1, avg(l1) FILTER (WHERE won) AS mean_l1,
               median(l2) FILTER (WHERE won) AS median_l2, avg(l2) FILTER (WHERE won) AS mean_l2,
               median(linf) FILTER (WHERE won) AS median_linf, avg(linf) FILTER (WHERE won) AS mean_linf,
               sum(gradient_passes) AS gradient_passes, sum(forward_passes) AS forward_passes,
               sum((status = 'numerical_error')::INT) AS n_numerical_error
        FROM attack GROUP BY ALL ORDER BY key, model""",
    )
    for row in rows:
        for name, (k, n) in ATTACK_RATES.items():
            add_rate(row, name, row[k], row[n])
    return rows
