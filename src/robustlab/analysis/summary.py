"""Per model × attack configuration: success rate, robust accuracy and distortion statistics."""

from __future__ import annotations

from typing import Any

import duckdb

from robustlab.store import has_view


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def attack_summary(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """One row per (model, attack configuration key).

    ``success_rate`` is over initially correct inputs (numerical errors excluded from neither: they count as
    not robust); distortions are over successful attacks on initially correct inputs.
    """
    if not has_view(con, "attack"):
        return []
    return _rows(
        con,
        """
        WITH a AS (SELECT *, clean_pred = label AND status != 'numerical_error' AS correct,
                          success AND clean_pred = label AS won FROM attack)
        SELECT model, family, key, attack, norm, target_mode, minimal, any_value(eps_budget) AS eps_budget,
               count(*) AS n,
               avg(correct::INT) AS clean_accuracy,
               avg((adv_pred = label AND status != 'numerical_error')::INT) AS robust_accuracy,
               sum(won::INT) / nullif(sum(correct::INT), 0) AS success_rate,
               median(l1) FILTER (WHERE won) AS median_l1, avg(l1) FILTER (WHERE won) AS mean_l1,
               median(l2) FILTER (WHERE won) AS median_l2, avg(l2) FILTER (WHERE won) AS mean_l2,
               median(linf) FILTER (WHERE won) AS median_linf, avg(linf) FILTER (WHERE won) AS mean_linf,
               sum(gradient_passes) AS gradient_passes,
               sum((status = 'numerical_error')::INT) AS numerical_errors
        FROM a GROUP BY ALL ORDER BY key, model""",
    )


def clean_summary(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Clean accuracy of each model on the screened candidates."""
    if not has_view(con, "clean"):
        return []
    return _rows(
        con, "SELECT model, family, count(*) AS n, avg(correct::INT) AS accuracy FROM clean GROUP BY ALL ORDER BY model"
    )


def clever_summary(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Mean and median CLEVER score per model."""
    if not has_view(con, "clever"):
        return []
    return _rows(
        con,
        "SELECT model, family, norm, count(*) AS n, avg(score) AS mean_score, median(score) AS median_score, "
        "sum(poor_fit::INT) AS poor_fits FROM clever WHERE clean_pred = label GROUP BY ALL ORDER BY model",
    )


def clever_vs_attack(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Per input: CLEVER score next to the smallest successful distortion any attack found in the same norm.

    ``flag`` marks inputs where the CLEVER estimate (of a lower bound) exceeds a distortion an attack
    actually achieved: a sign of gradient masking or a poor fit (Goodfellow 2018).
    """
    if not (has_view(con, "clever") and has_view(con, "attack")):
        return []
    return _rows(
        con,
        """
        WITH won AS (SELECT * FROM attack WHERE success AND clean_pred = label AND target_mode = 'untargeted'),
        best AS (
            SELECT model, index, 'l2' AS norm, min(l2) AS dist FROM won GROUP BY ALL
            UNION ALL SELECT model, index, 'linf', min(linf) FROM won GROUP BY ALL
            UNION ALL SELECT model, index, 'l1', min(l1) FROM won GROUP BY ALL)
        SELECT c.model, c.family, c.index, c.norm, c.score, b.dist AS attack_distortion,
               c.score / nullif(b.dist, 0) AS ratio, c.score > b.dist AS flag
        FROM clever c JOIN best b USING (model, index, norm)
        WHERE c.clean_pred = c.label ORDER BY c.model, c.index""",
    )
