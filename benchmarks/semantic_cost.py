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

The same per component: ART's single-component attacks (``enabled_attack=(k,)``, 10 sign steps from a random
start, batched, on ``benchmarks/semantic.py``'s first ``art_n`` images) against our attack on that one attribute at
a ladder of settings, cheapest first, up to the first as strong as ART: the sweep alone (``steps=0``: 2 or 4 points
of the range, forward passes only), one ascent from the identity of 3, 5 or 10 steps, then that plus one random
start. With ``--art-python`` (default: ``/work/art-venv/bin/python`` when it exists) ART's components are run again
here, each just before our ladder on that attribute, so that both sides' CPU seconds come from one run on one
machine (its robust accuracy is checked against the stored one); without it, the stored ART figures are used and
the ratios mix two runs.

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/semantic_cost.py \\
        [--from benchmarks/results/semantic.json] [--art-python PY] [--write-docs]

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
from semantic import predict

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
#: Our settings for one attribute, cheapest first.
SINGLE_LADDER: list[tuple[str, dict[str, Any]]] = [
    ("sweep alone, 2 points (both ends)", {"steps": 0, "restarts": 0, "single_starts": True, "grid": 2}),
    ("sweep alone, 4 points", {"steps": 0, "restarts": 0, "single_starts": True, "grid": 4}),
    ("identity start, 3 steps", {"steps": 3, "restarts": 0, "single_starts": False, "grid": 0}),
    ("identity start, 5 steps", {"steps": 5, "restarts": 0, "single_starts": False, "grid": 0}),
    ("identity start, 10 steps", {"steps": 10, "restarts": 0, "single_starts": False, "grid": 0}),
    ("identity + 1 random start, 10 steps", {"steps": 10, "restarts": 1, "single_starts": False, "grid": 0}),
]


def art_again(
    art_python: str, model: Any, x: Any, y: Any, correct: Any, attribute: str | None, batch: int
) -> dict[str, Any]:
    """ART's single component ``attribute`` (``None``: the scheduled composite of all five) on ``x`` here and now
    (``benchmarks/semantic.py``'s helper and settings, one thread): its robust accuracy among the clean-correct
    images (``correct``), judged by our model, and its CPU seconds (``generate`` alone)."""
    from semantic import ART_COMPONENTS, art_job, art_task, check_art_model, rates, run_art

    name = attribute or "composite"
    enabled = (ART_COMPONENTS[attribute],) if attribute else tuple(ART_COMPONENTS.values())
    task = art_task(name, enabled, len(x), batch, 0, attribute is None)
    _, out_path = run_art(art_python, art_job(model, x, y, [task], 1))
    out = torch.load(out_path, weights_only=False)
    check_art_model(out, model, x)
    a = out["tasks"][name]
    robust = predict(model, a["x_adv"].float().clamp(0, 1)) == y
    return {**rates(robust, correct), "cpu_seconds": a["cpu_seconds"], "versions": out["versions"]}


def same_as_stored(what: str, stored: dict[str, Any], again: dict[str, Any]) -> None:
    """Warn when ART's robust accuracy measured again differs from the stored one (the same images and seed)."""
    then, now = stored["robust_among_correct"]["value"], again["robust_among_correct"]["value"]
    if abs(then - now) > 1e-9:
        print(f"warning: ART ({what}) gives {now:.3f} now, {then:.3f} stored", file=sys.stderr)


def per_component(source: dict[str, Any], model: Any, x: Any, y: Any, art_python: str | None) -> dict[str, Any]:
    """Each ART single component against our cheapest setting on that attribute that is at least as strong."""
    ag = source["agreement"]
    n = int(ag["n"])
    x, y = x[:n], y[:n]
    out: dict[str, Any] = {"n": n, "art_measured_here": art_python is not None, "components": {}}
    correct = predict(model, x) == y if art_python is not None else None
    for attribute, v in ag["single"].items():
        art_stored = v["art"]
        if art_python is not None:
            again = art_again(art_python, model, x, y, correct, attribute, source["settings"]["batch_size"])
            out["art_versions"] = again.pop("versions")
            same_as_stored(attribute, art_stored, again)
            v = {**v, "art": again}
        art_robust = float(v["art"]["robust_among_correct"]["value"])
        art_cpu = float(v["art"]["cpu_seconds"]) / n
        rows = []
        for label, params in SINGLE_LADDER:
            cpu0 = time.process_time()
            res = attack(
                model, x, y, "semantic", eps=0, preset="caa", attributes=[attribute], seed=0,
                batch_size=source["settings"]["batch_size"], **params,
            )  # fmt: skip
            cpu = (time.process_time() - cpu0) / n
            rate = Rate(int((res.robust & res.correct).sum()), int(res.correct.sum())).to_dict()
            rows.append(
                {
                    "setting": label,
                    "params": params,
                    "robust_among_correct": rate,
                    "cpu_seconds_per_image": cpu,
                    "speedup_cpu": art_cpu / cpu,
                    "at_least_as_strong_as_art": rate["value"] <= art_robust,
                }
            )
            print(f"{attribute}, {label}: {rate['value']:.3f} (ART {art_robust:.3f}), {art_cpu / cpu:.1f}×", flush=True)
            if rows[-1]["at_least_as_strong_as_art"]:
                break  # the rest of the ladder costs more
        strong = [r for r in rows if r["at_least_as_strong_as_art"]]
        out["components"][attribute] = {
            "art": {"robust_among_correct": v["art"]["robust_among_correct"], "cpu_seconds_per_image": art_cpu},
            "ours": rows,
            "cheapest_at_least_as_strong": strong[0] if strong else None,
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = json.loads(args.source.read_text())
    comp = source["agreement"]["composite"]
    n = int(comp["n"])
    art = comp["art"]
    torch.set_num_threads(source["settings"]["threads"])
    model = load_model("resnet20-akamaster", data_dir=args.data_dir).eval()
    data = load_dataset("cifar10", "test", args.data_dir)
    x, y = data.images()[:n].float(), data.y[:n].long()
    if args.art_python is not None:
        print(f"ART's scheduled composite on {n} images ...", flush=True)
        again = art_again(args.art_python, model, x, y, predict(model, x) == y, None, source["settings"]["batch_size"])
        again.pop("versions")
        same_as_stored("composite", art, again)
        art = again
    art_robust = float(art["robust_among_correct"]["value"])
    art_cpu = float(art["cpu_seconds"]) / n
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
    single = per_component(source, model, data.images().float(), data.y.long(), args.art_python)
    return {
        "single": single,
        "n": n,
        "clean_correct": int(art["robust_among_correct"]["n"]),
        "art": {"robust_among_correct": art["robust_among_correct"], "cpu_seconds_per_image": art_cpu},
        "art_measured": (
            {"here": True}
            if args.art_python is not None
            else {"here": False, "commit": source["machine"].get("commit"), "command": source["settings"]["command"]}
        ),
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
        "ART's scheduled composite adversarial attack (all five `caa` components, `attack_order='scheduled'`, "
        "`max_iter=5`, `max_inner_iter=10`), "
        + (
            "run in this same run just before ours,"
            if r["art_measured"].get("here")
            else f"as measured by `{r['art_measured']['command']}` (commit {r['art_measured']['commit']}),"
        )
        + " against our joint attack (the `caa` preset, all five attributes, pixel "
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
    ]
    single = r.get("single")
    if single:
        lines += [
            "",
            f"Per component, on the first {single['n']} images: ART's single-component attack (10 sign steps from a "
            "random start, batched) against the cheapest of our settings on that attribute (the sweep alone, "
            "`steps=0`, of 2 or 4 points; one ascent from the identity of 3, 5 or 10 steps; that plus one random "
            "start of 10) whose robust accuracy is at most ART's. "
            + (
                "ART ran in this same run, each component just before ours on that attribute, so both sides' CPU "
                "times come from one machine at one time."
                if single.get("art_measured_here")
                else "ART's figures are those stored by `benchmarks/semantic.py` (another run)."
            ),
            "",
            "| component | ART robust | ART CPU ms / image | ours, cheapest as strong | its robust | "
            "its CPU ms / image | ART / ours |",
            "|---|---|---:|---|---|---:|---:|",
        ]
        for a, v in single["components"].items():
            art_rate = v["art"]["robust_among_correct"]["value"]
            best = v["cheapest_at_least_as_strong"]
            if best is None:
                lines.append(f"| {a} | {art_rate:.3f} | {v['art']['cpu_seconds_per_image'] * 1e3:.1f} | none | | | |")
                continue
            lines.append(
                f"| {a} | {art_rate:.3f} | {v['art']['cpu_seconds_per_image'] * 1e3:.1f} | {best['setting']} | "
                f"{best['robust_among_correct']['value']:.3f} | {best['cpu_seconds_per_image'] * 1e3:.1f} | "
                f"{best['speedup_cpu']:.1f}× |"
            )
        bests = [v["cheapest_at_least_as_strong"] for v in single["components"].values()]
        if all(bests):
            low = min(b["speedup_cpu"] for b in bests)
            verdict = "met" if low >= 5 else "not met"
            lines += [
                "",
                f"Per component at (at least) ART's strength: lowest ART / ours **{low:.1f}×** "
                f"(target ≥ 5×: {verdict}).",
            ]
        else:
            lines += [
                "",
                "Per component: not every component reached ART's strength with our settings (target not met).",
            ]
    lines += ["", describe_machine(r["machine"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, default=SOURCE, help="benchmarks/semantic.py's results.")
    p.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument(
        "--art-python",
        default="/work/art-venv/bin/python" if Path("/work/art-venv/bin/python").is_file() else None,
        help="Python of ART's own environment (with kornia): run ART's components again in this run.",
    )
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
