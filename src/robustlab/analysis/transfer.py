"""Transfer matrices: each source model's adversarial examples evaluated on every target model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from robustlab.store import has_view


@dataclass(frozen=True)
class TransferMatrix:
    """``rates[i][j]``: source ``models[i]``'s examples on target ``models[j]``.

    Untargeted: error rate of the target; targeted: rate at which the target predicts the source's target
    class. Over inputs both models classify correctly when clean, so the diagonal equals the white-box
    success rate.
    """

    key: str
    target_mode: str
    models: list[str]
    rates: list[list[float | None]]
    counts: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "target_mode": self.target_mode,
            "models": self.models,
            "rates": self.rates,
            "counts": self.counts,
        }


def transfer_matrices(con: duckdb.DuckDBPyConnection) -> list[TransferMatrix]:
    """One matrix per transferred attack configuration."""
    if not (has_view(con, "transfer") and has_view(con, "clean")):
        return []
    rows = con.execute("""
        WITH t AS (
            SELECT t.key, t.target_mode, t.source_model, t.model AS target_model,
                   CASE WHEN t.target_mode = 'untargeted' THEN t.pred != t.label ELSE t.pred = t.target END AS hit
            FROM transfer t
            JOIN (SELECT DISTINCT model, index, correct FROM clean) cs
              ON cs.model = t.source_model AND cs.index = t.index
            JOIN (SELECT DISTINCT model, index, correct FROM clean) ct
              ON ct.model = t.model AND ct.index = t.index
            WHERE cs.correct AND ct.correct)
        SELECT key, target_mode, source_model, target_model, avg(hit::INT), count(*)
        FROM t GROUP BY ALL ORDER BY key, source_model, target_model""").fetchall()
    models = sorted({r[2] for r in rows} | {r[3] for r in rows})
    pos = {m: i for i, m in enumerate(models)}
    out: dict[str, TransferMatrix] = {}
    for key, mode, src, tgt, rate, count in rows:
        if key not in out:
            n = len(models)
            out[key] = TransferMatrix(key, mode, models, [[None] * n for _ in range(n)], [[0] * n for _ in range(n)])
        out[key].rates[pos[src]][pos[tgt]] = float(rate)
        out[key].counts[pos[src]][pos[tgt]] = int(count)
    return list(out.values())
