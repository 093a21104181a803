"""The semantic attack's cost at ART's strength: how much CPU our joint attack needs to be at least as strong as
ART's scheduled composite adversarial attack (CAA) on the same images (issue 16, "at the same strength").

``benchmarks/semantic.py`` runs ART's scheduled composite (all five ``caa`` components, ``attack_order="scheduled"``,
``max_iter=5``, ``max_inner_iter=10``) on the first ``art_composite_n`` CIFAR-10 test images against the published
ResNet-20 and stores its robust accuracy among the clean-correct images and its CPU seconds. This script reads
that result and runs our joint attack (the ``caa`` preset, all five attributes, pixel budget 0) on the same images
at a ladder of settings from the cheapest up:

- ``steps=S, restarts=0, single_starts=False``: one ascent from the identity (S sign steps);
- ``steps=S, restarts=1, single_starts=False``: that, then one ascent from a uniformly random point;
- the defaults (20 steps, single-attribute sweeps and starts, 3 random restarts).

For each: robust accuracy (95 % Wilson interval), CPU seconds per image (the whole ``attack`` call: clean pass and
judging included), and ART's CPU seconds per image over ours. The headline is the cheapest setting whose robust
accuracy is at most ART's: the speed-up at (at least) the same strength.

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/semantic_cost.py \\
        [--from benchmarks/results/semantic.json] [--write-docs]

Results: ``benchmarks/results/semantic_cost.json`` and the section "Semantic attack at ART's strength" of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section

from robustlab.attacks import attack
from robustlab.data import load_dataset
from robustlab.models import load_model
from robustlab.stats import Rate

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).resolve().parent / "results" / "semantic.json"
RESULTS = Path(__file__).resolve().parent / "results" / "semantic_cost.json"
HEADING = "## Semantic attack at ART's strength"
#: Our settings, cheapest first: (label, attack parameters).
LADDER: list[tuple[str, dict[str, Any]]] = [
    ("identity start, 5 steps", {"steps": 5, "restarts": 0, "single_starts": False}),
    ("identity start, 10 steps", {"steps": 10, "restarts": 0, "single_starts": False}),
    ("identity start, 20 steps", {"steps": 20, "restarts": 0, "single_starts": False}),
    ("identity + 1 random start, 10 steps", {"steps": 10, "restarts": 1, "single_starts": False}),
    ("identity + 1 random start, 20 steps", {"steps": 20, "restarts": 1, "single_starts": False}),
    ("defaults", {}),
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = json.loads(args.source.read_text())
    comp = source["agreement"]["composite"]
    n = int(comp["n"])
    art = comp["art"]
    art_robust = float(art["robust_among_correct"]["value"])
    art_cpu = float(art["cpu_seconds"]) / n
    torch.set_num_threads(source["settings"]["threads"])
    model = load_model("resnet20-akamaster", data_dir=args.data_dir).eval()
    data = load_dataset("cifar10", "test", args.data_dir)
    x, y = data.images()[:n].float(), data.y[:n].long()
    rows = []
    for label, params in LADDER:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        res = attack(
            model, x, y, "semantic", eps=0, preset="caa", seed=0, batch_size=source["settings"]["batch_size"], **params
        )
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        correct = res.correct
        k = int((res.robust & correct).sum())
        rate = Rate(k, int(correct.sum())).to_dict()
        rows.append(
            {
                "setting": label,
                "params": params,
                "robust_among_correct": rate,
                "cpu_seconds_per_image": cpu / n,
                "wall_seconds_per_image": wall / n,
                "speedup_cpu": art_cpu / (cpu / n),
                "at_least_as_strong_as_art": rate["value"] <= art_robust,
            }
        )
        print(
            f"{label}: robust {rate['value']:.3f} (ART {art_robust:.3f}), {cpu / n * 1e3:.0f} CPU ms per image "
            f"(ART {art_cpu * 1e3:.0f}): {art_cpu / (cpu / n):.1f}×",
            flush=True,
        )
    strong = [r for r in rows if r["at_least_as_strong_as_art"]]
    return {
        "n": n,
        "clean_correct": int(art["robust_among_correct"]["n"]),
        "art": {"robust_among_correct": art["robust_among_correct"], "cpu_seconds_per_image": art_cpu},
        "art_measured": {"commit": source["machine"].get("commit"), "command": source["settings"]["command"]},
        "ours": rows,
        "cheapest_at_least_as_strong": strong[0] if strong else None,
        "machine": machine(),
    }


def docs(r: dict[str, Any]) -> str:
    art = r["art"]
    ar = art["robust_among_correct"]
    lines = [
        f"{HEADING} (`benchmarks/semantic_cost.py`, issue 16)",
        "",
        f"ART's scheduled composite adversarial attack (all five `caa` components, `attack_order='scheduled'`, "
        f"`max_iter=5`, `max_inner_iter=10`), as measured by `{r['art_measured']['command']}` (commit "
        f"{r['art_measured']['commit']}), against our joint attack (the `caa` preset, all five attributes, pixel "
        f"budget 0) on the same first {r['n']} CIFAR-10 test images ({r['clean_correct']} clean-correct), the "
        "published ResNet-20, one thread. Robust accuracy among the clean-correct images (95 % Wilson interval); "
        "CPU seconds per image (ART: `generate` alone; ours: the whole `attack` call, clean pass and judging "
        "included).",
        "",
        "| setting | robust, clean-correct | CPU ms / image | ART / ours (CPU) | at least as strong as ART |",
        "|---|---|---:|---:|---|",
        f"| ART, scheduled composite | {ar['value']:.3f} [{ar['low']:.3f}, {ar['high']:.3f}] | "
        f"{art['cpu_seconds_per_image'] * 1e3:.0f} | 1.0× | – |",
    ]
    for row in r["ours"]:
        q = row["robust_among_correct"]
        lines.append(
            f"| ours, {row['setting']} | {q['value']:.3f} [{q['low']:.3f}, {q['high']:.3f}] | "
            f"{row['cpu_seconds_per_image'] * 1e3:.0f} | {row['speedup_cpu']:.1f}× | "
            f"{'yes' if row['at_least_as_strong_as_art'] else 'no'} |"
        )
    best = r["cheapest_at_least_as_strong"]
    lines += [
        "",
        (
            f"At (at least) ART's strength, the cheapest of our settings ({best['setting']}) costs "
            f"**{best['speedup_cpu']:.1f}× less CPU** than ART's composite."
            if best
            else "None of our settings reached ART's strength."
        ),
        "",
        describe_machine(r["machine"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, default=SOURCE, help="benchmarks/semantic.py's results.")
    p.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    r = run(args)
    args.json.write_text(json.dumps(r, indent=1) + "\n")
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", HEADING, docs(r))
    else:
        print(docs(r))


if __name__ == "__main__":
    main()
