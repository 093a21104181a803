"""The gradient-masking audit on the models of issue 15's training methods (issue 17's findings table).

Every adversarially trained arm of ``benchmarks/robust_training.py`` (seed 0) is audited at its training budget
(L∞ 8/255) with the training audit's reduced ladder (:data:`robustlab.train.post_audit.TRAINING_AUDIT`: 50 long
steps, 2 restarts, 50 APGD iterations, 500 Square queries) on the first ``--n`` CIFAR-10 test points, the default
surrogate (the cheapest standard zoo model of the data) and the model's own inference route (MultiBN: its
selector). PGD-20 and AutoAttack are the robust-training benchmark's own numbers (its ``eval-n500.json``).

Run (resumable: each audit is kept in OUT as ``audit-<arm>-s<seed>.json``):
    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/audit_methods.py --out /work/runs/rt
    .venv/bin/python benchmarks/audit_methods.py --out /work/runs/rt --report --write docs/findings.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from _common import describe_machine, machine, write_section

#: The arms trained against an L∞ 8/255 adversary (the others have no ε to audit at).
ARMS = (
    "pgd-at",
    "trades",
    "dial",
    "iat",
    "pyramid-at",
    "mixed-at",
    "mixed-at-ls",
    "nofrost",
    "nofrost-ls",
    "multibn",
    "advprop",
)
EPS = 8 / 255
HEADING = "## The gradient-masking audit: robust zoo and robust-training methods in one table (issue 17)"
log = logging.getLogger("audit_methods")


def _pct(rate: dict[str, Any] | float | None) -> str:
    if rate is None:
        return "–"
    value = rate["value"] if isinstance(rate, dict) else rate
    return f"{100 * value:.1f} %"


def run(args: argparse.Namespace) -> None:
    from robustlab.data import load_dataset
    from robustlab.train.post_audit import TRAINING_AUDIT, audit_weights

    data = load_dataset("cifar10", "test", os.environ.get("ROBUSTLAB_DATA"))
    for arm in args.arms.split(","):
        folder = args.out / f"{arm}-s{args.seed}"
        target = args.out / f"audit-{arm}-s{args.seed}.json"
        if target.exists():
            log.info("%s: kept (%s)", arm, target)
            continue
        if not (folder / "model.safetensors").exists():
            log.warning("%s: not trained (%s missing); skipped", arm, folder)
            continue
        t0 = time.perf_counter()
        last = [0.0]

        def progress(attack: str, done: int, total: int, arm: str = arm, last: list[float] = last) -> None:
            now = time.perf_counter()
            if now - last[0] > 30 or done >= total:
                last[0] = now
                log.info("%s: %s %d/%d model calls", arm, attack, done, total)

        record = audit_weights(
            folder / "model.safetensors", data, eps=EPS, n=args.n, config=TRAINING_AUDIT, progress=progress
        )
        record["seconds"] = time.perf_counter() - t0
        record["machine"] = machine()
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(target)
        log.info("%s: %s in %.0f s", arm, record["verdict"], record["seconds"])


def _row(name: str, source: str, route: str, clean: str, pgd20: str, aa: str, rec: dict[str, Any]) -> str:
    honest = rec["honest"]
    pgd = next((r for r in rec["rungs"] if r["role"] == "short"), None)
    gpga = next((r for r in rec["rungs"] if r["registered_attack"] == "gpga"), None)
    flags = ", ".join(f"`{f['code']}`" for f in rec["flags"]) or "none"
    return (
        f"| {name} | {source} | {route} | {clean} | {pgd20} | {aa} | "
        f"{_pct(pgd['robust_accuracy'] if pgd else None)} → **{_pct(honest['robust_accuracy'])}** "
        f"({honest.get('attack') or '–'}) | {gpga['broken'] if gpga else '–'} | {flags} | {rec['seconds']:.0f} s |"
    )


def report(args: argparse.Namespace) -> str:
    from robustlab.train.zoo import AUDITS, ROBUST_ZOO_DIR, SWEEP_ZOO_DIR

    rows, machines, records = [], [], {}
    zoos = ((ROBUST_ZOO_DIR, "robust zoo"), (SWEEP_ZOO_DIR, "β sweep"))  # the sweep's own arms after the zoo
    for full, folder, source in [(f, d, s) for d, s in zoos for f in sorted((d / AUDITS).glob("*.json"))]:
        rec = json.loads(full.read_text())
        side = json.loads((folder / full.name).read_text())
        rob = side["metrics"]["robust"]
        records[full.stem] = rec
        rows.append(
            _row(
                full.stem,
                source,
                "–",
                _pct(side["metrics"]["test_accuracy"]) + " (10k)",
                _pct(rob["pgd20"]) + f" ({rob['pgd20_images'] // 1000}k)",
                f"{_pct(rob['autoattack'])} (n={rob['autoattack_images']})",
                rec,
            )
        )
    for arm in args.arms.split(","):
        path = args.out / f"audit-{arm}-s{args.seed}.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        ev_path = args.out / f"{arm}-s{args.seed}" / "eval-n500.json"
        ev = json.loads(ev_path.read_text()) if ev_path.exists() else {}
        machines.append(rec["machine"])
        records[f"{arm}-s{args.seed}"] = rec
        aa = f"{_pct(ev.get('autoattack 8/255'))} (n={ev.get('autoattack_n', '–')})"
        clean, pgd20 = _pct(ev.get("clean")) + " (500)", _pct(ev.get("pgd20 8/255")) + " (500)"
        rows.append(_row(arm, "issue 15 method", ev.get("route") or "–", clean, pgd20, aa, rec))
    text = "\n".join(
        [
            HEADING,
            "",
            "`python benchmarks/audit_methods.py` (generated; records in `benchmarks/results/audit_methods.json`). "
            "Every robust-zoo model (`robustlab zoo audit --robust`) and the β sweep's own arms (`--sweep`) "
            "(CIFAR-10: 15 epochs of the 10,000 training images, L∞ 8/255; MNIST: L∞ 0.3, no standard zoo model to "
            "serve as surrogate, so no transfer or guided rungs) and each adversarially trained arm of the "
            "robust-training benchmark (issue 15: ResNet-8 width "
            f"8, 8 epochs, seed {args.seed}), audited at L∞ 8/255 with the training audit's reduced ladder (50 long "
            "steps, 2 restarts, 50 APGD iterations, 500 Square queries, and the guided attack `gpga-50`) on the "
            f"first {args.n} test points, surrogate `vgg8-w25` for CIFAR-10 (the default), each model's inference "
            "route. "
            "Clean, PGD-20 and AutoAttack are the zoo's and the robust-training benchmark's own numbers (points in "
            "brackets). *gpga breaks*: points the guided attack broke after every earlier rung had left them robust. "
            + (describe_machine(machines[-1]) if machines else ""),
            "",
            "| model | from | route | clean | PGD-20 | AutoAttack | audit: PGD-20 alone → honest number (attack) "
            "| gpga breaks | flags | audit time |",
            "|---|---|---|---:|---:|---:|---|---:|---|---:|",
            *rows,
        ]
    )
    if args.write:
        write_section(args.write, HEADING, text)
        for rec in records.values():
            rec.pop("worst", None)
        (Path(__file__).parent / "results" / "audit_methods.json").write_text(json.dumps(records, indent=1) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the robust-training benchmark's folder")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only write the table from the kept audits")
    p.add_argument("--write", type=Path, help="replace the findings section in this file")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not args.report:
        run(args)
    print(report(args))


if __name__ == "__main__":
    main()
