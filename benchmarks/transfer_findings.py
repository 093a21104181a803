"""Transferability against I-FGSM's eps and number of iterations, from a finished study run.

    robustlab run examples/transfer_sweep.yaml --out runs/transfer-sweep
    python benchmarks/transfer_findings.py runs/transfer-sweep [--json out.json]

For every transferred attack configuration of the run: its eps and steps, the white-box success (the transfer
matrix's diagonal), the mean off-diagonal transfer rate, the same rate over only the examples that fooled their
source (untargeted: error rate of the other model; targeted:
rate of hitting the source's target), same-family against cross-family pairs, the best source, and the median
L2 / L∞ distortion of the examples. Prints a Markdown table (the one in docs/findings.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from robustlab.analysis.transfer import transfer_matrices
from robustlab.store import connect


def configurations(run: Path) -> list[dict[str, Any]]:
    con = connect(run)
    meta = {
        key: (eps, json.loads(params)["steps"], l2, linf)
        for key, eps, params, l2, linf in con.execute(
            "SELECT key, any_value(eps_budget), any_value(params), median(l2), median(linf) FROM attack GROUP BY key"
        ).fetchall()
    }
    family = dict(con.execute("SELECT DISTINCT model, family FROM clean").fetchall())
    given_success = dict(  # untargeted transfer over the examples that fooled their own source
        con.execute("""
            SELECT t.key, avg((t.pred != t.label)::INT) FROM transfer t
            JOIN (SELECT DISTINCT model, index, correct FROM clean) ct ON ct.model = t.model AND ct.index = t.index
            WHERE t.source_model != t.model AND t.source_success AND ct.correct AND t.target_mode = 'untargeted'
            GROUP BY t.key""").fetchall()
    )
    rows = []
    for m in transfer_matrices(con):
        n = len(m.models)
        off = [(i, j) for i in range(n) for j in range(n) if i != j and m.rates[i][j] is not None]
        same = [m.rates[i][j] for i, j in off if family[m.models[i]] == family[m.models[j]]]
        cross = [m.rates[i][j] for i, j in off if family[m.models[i]] != family[m.models[j]]]
        per_source = {
            m.models[i]: statistics.fmean(m.rates[i][j] for j in range(n) if j != i and m.rates[i][j] is not None)
            for i in range(n)
        }
        best = max(per_source, key=per_source.__getitem__)
        eps, steps, l2, linf = meta[m.key]
        rows.append(
            {
                "key": m.key,
                "target_mode": m.target_mode,
                "eps_255": eps * 255,
                "steps": steps,
                "white_box": statistics.fmean(m.rates[i][i] for i in range(n) if m.rates[i][i] is not None),
                "transfer": statistics.fmean(m.rates[i][j] for i, j in off),
                "transfer_given_source_success": given_success.get(m.key),
                "same_family": statistics.fmean(same) if same else None,
                "cross_family": statistics.fmean(cross) if cross else None,
                "best_source": best,
                "best_source_rate": per_source[best],
                "median_l2": l2,
                "median_linf_255": linf * 255,
            }
        )
    return sorted(rows, key=lambda r: (r["target_mode"], r["eps_255"], r["steps"]))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | eps (/255) | steps | white-box success | mean transfer (off-diagonal) | transfer of successful "
        "examples | same / cross family "
        "| best source (its mean) | median L2 | median L∞ (/255) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        fam = (
            f"{r['same_family']:.3f} / {r['cross_family']:.3f}"
            if r["same_family"] is not None and r["cross_family"] is not None
            else "–"
        )
        g = r["transfer_given_source_success"]
        given = "–" if g is None else f"{g:.3f}"
        lines.append(
            f"| {r['target_mode']} | {r['eps_255']:.0f} | {r['steps']} | {r['white_box']:.3f} | {r['transfer']:.3f} "
            f"| {given} | {fam} | {r['best_source']} ({r['best_source_rate']:.3f}) | {r['median_l2']:.3f} "
            f"| {r['median_linf_255']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = configurations(args.run)
    if not rows:
        raise SystemExit(f"{args.run} has no transfer records: run a spec with `transfer: true` first")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
