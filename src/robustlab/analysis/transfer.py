"""Transfer matrices: each source model's adversarial examples evaluated on every target model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from robustlab.stats import Rate
from robustlab.store import has_view


@dataclass(frozen=True)
class TransferMatrix:
    """``rates[i][j]``: source ``models[i]``'s examples on target ``models[j]``.

    Untargeted: error rate of the target; targeted: rate at which the target predicts the source's target
    class. Over inputs both models classify correctly when clean, so the diagonal equals the white-box
    success rate. ``hits[i][j]`` of ``counts[i][j]`` inputs count; a pair with no such input has rate
    ``None`` and count 0.
    """

    key: str
    target_mode: str
    models: list[str]
    rates: list[list[float | None]]
    counts: list[list[int]]
    hits: list[list[int]]

    def rate(self, i: int, j: int) -> Rate:
        """Source ``models[i]`` on target ``models[j]`` with its 95 % Wilson interval."""
        return Rate(self.hits[i][j], self.counts[i][j])

    def rows(self) -> list[dict[str, Any]]:
        """The matrix in long form, one row per (source, target) pair: ``rate`` with its interval and counts
        (``rate_low``, ``rate_high``, ``rate_k``, ``rate_n``)."""
        n = len(self.models)
        return [
            {
                "key": self.key,
                "target_mode": self.target_mode,
                "source": self.models[i],
                "target": self.models[j],
                **{f"rate{'' if p == 'value' else '_' + p}": v for p, v in self.rate(i, j).to_dict().items()},
            }
            for i in range(n)
            for j in range(n)
        ]

    def to_dict(self) -> dict[str, Any]:
        n = range(len(self.models))
        cells = [[self.rate(i, j).to_dict() for j in n] for i in n]
        return {
            "key": self.key,
            "target_mode": self.target_mode,
            "models": self.models,
            "rates": self.rates,
            "rates_low": [[c["low"] for c in row] for row in cells],
            "rates_high": [[c["high"] for c in row] for row in cells],
            "hits": self.hits,
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
        SELECT key, target_mode, source_model, target_model, sum(hit::INT), count(*)
        FROM t GROUP BY ALL ORDER BY key, source_model, target_model""").fetchall()
    models = sorted({r[2] for r in rows} | {r[3] for r in rows})
    pos = {m: i for i, m in enumerate(models)}
    out: dict[str, TransferMatrix] = {}
    for key, mode, src, tgt, hits, count in rows:
        if key not in out:
            n = len(models)
            zeros = [[0] * n for _ in range(n)]
            out[key] = TransferMatrix(key, mode, models, [[None] * n for _ in range(n)], zeros, [r[:] for r in zeros])
        out[key].rates[pos[src]][pos[tgt]] = int(hits) / int(count)
        out[key].counts[pos[src]][pos[tgt]] = int(count)
        out[key].hits[pos[src]][pos[tgt]] = int(hits)
    return list(out.values())
