"""Standard AutoAttack, robustlab against the reference, taking turns stage by stage in one process (CPU time).

On a shared two-core machine the CPU time of a process depends on what runs beside it (the two cores here are
hyper-threads of one physical core: the same cascade took 27.6 CPU s alone and 56 CPU s beside three other jobs),
so two cascades run one after the other, or side by side in two processes, can differ by 10 % from load alone.
This benchmark runs both implementations in the same process on the same TorchScript model and takes turns at
every stage of the cascade: the reference's APGD-CE, then ours, then the reference's APGD-T on the points its
APGD-CE left, then ours on ours, and so on through FAB-T and Square; the order within each pair alternates from
stage to stage and from round to round, so both see the same load within seconds to minutes. Each stage is set
as ``run_standard_evaluation`` sets it (the reference) and as robustlab's cascade sets it (ours); the per-point
verdicts after each stage are compared.

The reference (pyautoattack 0.2.0, algorithm-identical to fra31/auto-attack) is imported from the reference
virtualenv (``--ref-site``, its site-packages appended to ``sys.path`` after robustlab's own, so that torch and
numpy are robustlab's; pyautoattack is pure Python and needs nothing else). It stays out of robustlab's
dependencies: only this benchmark process loads it.

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/autoattack_interleaved.py --n 200 \\
        [--rounds 1] [--write-docs]

Results: ``benchmarks/results/autoattack_interleaved.json`` and the section "AutoAttack on the LeNet5, taking
turns" of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _autoattack_ref import REF_SITE, Counted, reference_stage
from _common import describe_machine, machine, write_section
from autoattack import _STAGES, _traced

from robustlab.attacks import attack
from robustlab.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "autoattack_interleaved.json"
HEADING = "## AutoAttack on the LeNet5, taking turns"
EPS = 0.3


def ours_stage(model: nn.Module, name: str, x: Tensor, y: Tensor, seed: int) -> Tensor:
    """robustlab's attack ``name`` on ``(x, y)`` as its cascade configures it; its per-point robust verdicts."""
    attack_name, params, steps = _STAGES[name]
    res = attack(model, x, y, attack_name, norm="linf", eps=EPS, seed=seed, steps=steps, batch_size=len(y), **params)
    return res.robust.clone()


def one_round(net: nn.Module, x: Tensor, y: Tensor, first: str) -> dict[str, Any]:
    """Both cascades on ``(x, y)``, taking turns stage by stage, ``first`` going first at the first stage."""
    with torch.no_grad():
        correct = net(x).argmax(1) == y
    alive = {"reference": correct.clone(), "robustlab": correct.clone()}
    order = [first, "robustlab" if first == "reference" else "reference"]
    stages = []
    for k, name in enumerate(_STAGES):
        row: dict[str, Any] = {"stage": name, "cpu_seconds": {}, "calls": {}, "rows": {}, "forward_cpu_seconds": {}}
        for side in order if k % 2 == 0 else order[::-1]:
            rows = alive[side].nonzero().flatten()
            counted = Counted(net)
            t0 = time.process_time()
            if rows.numel():
                if side == "reference":
                    adv = reference_stage(counted, name, x[rows], y[rows], norm="Linf", eps=EPS, seed=0)
                    with torch.no_grad():
                        robust = net(adv).argmax(1) == y[rows]
                else:
                    robust = ours_stage(counted, name, x[rows], y[rows], 0)
                alive[side][rows[~robust]] = False
            row["cpu_seconds"][side] = time.process_time() - t0
            row["calls"][side], row["rows"][side] = counted.calls, counted.rows
            row["forward_cpu_seconds"][side] = counted.seconds
        row["robust_after"] = {side: float(alive[side].double().mean()) for side in alive}
        row["robust_in_one_only"] = {
            "robustlab": int((alive["robustlab"] & ~alive["reference"]).sum()),
            "reference": int((alive["reference"] & ~alive["robustlab"]).sum()),
        }
        print(json.dumps(row), flush=True)
        stages.append(row)
    return {"first": first, "stages": stages, "robust": {side: alive[side].tolist() for side in alive}}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    sides = ("robustlab", "reference")
    per_stage = {}
    for name in _STAGES:
        rows = [st for r in rounds for st in r["stages"] if st["stage"] == name]
        per_stage[name] = {
            key: {side: sum(st[key][side] for st in rows) for side in sides}
            for key in ("cpu_seconds", "calls", "rows", "forward_cpu_seconds")
        }
        per_stage[name]["speedup_cpu"] = per_stage[name]["cpu_seconds"]["reference"] / max(
            per_stage[name]["cpu_seconds"]["robustlab"], 1e-9
        )
    total = {side: sum(v["cpu_seconds"][side] for v in per_stage.values()) for side in sides}
    forward = {side: sum(v["forward_cpu_seconds"][side] for v in per_stage.values()) for side in sides}
    last = rounds[-1]["stages"][-1]
    return {
        "per_stage": per_stage,
        "cpu_seconds": total,
        "forward_cpu_seconds": forward,
        "other_cpu_seconds": {side: total[side] - forward[side] for side in sides},
        "speedup_cpu": total["reference"] / total["robustlab"],
        "robust_accuracy": last["robust_after"],
        "same_verdicts": all(r["stages"][-1]["robust_in_one_only"] == {"robustlab": 0, "reference": 0} for r in rounds),
    }


def docs(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = [
        f"{HEADING} (`benchmarks/autoattack_interleaved.py`)",
        "",
        f"Standard AutoAttack (L∞ {EPS}) on advertorch's PGD-trained LeNet5, the first {r['n']} MNIST test images, "
        f"{len(r['rounds'])} round(s); robustlab and the reference (pyautoattack 0.2.0) in one process on the same "
        "TorchScript model, taking turns stage by stage (each on the points its own previous stages left; the order "
        "within a pair alternating), one thread, seed 0. CPU seconds summed over the rounds; calls, rows and the "
        "CPU seconds inside the model's forward passes counted by a thin wrapper around the model on both sides.",
        "",
        "| stage | CPU s robustlab | CPU s reference | speed-up | model calls | rows forwarded | forward CPU s |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, v in s["per_stage"].items():
        c = v["cpu_seconds"]
        lines.append(
            f"| {name} | {c['robustlab']:.1f} | {c['reference']:.1f} | {v['speedup_cpu']:.2f}× | "
            f"{v['calls']['robustlab']} / {v['calls']['reference']} | {v['rows']['robustlab']} / "
            f"{v['rows']['reference']} | {v['forward_cpu_seconds']['robustlab']:.1f} / "
            f"{v['forward_cpu_seconds']['reference']:.1f} |"
        )
    c = s["cpu_seconds"]
    lines += [
        f"| **cascade** | {c['robustlab']:.1f} | {c['reference']:.1f} | **{s['speedup_cpu']:.2f}×** | | | "
        f"{s['forward_cpu_seconds']['robustlab']:.1f} / {s['forward_cpu_seconds']['reference']:.1f} |",
        "",
        f"Robust accuracy after the cascade: robustlab {s['robust_accuracy']['robustlab']:.1%}, reference "
        f"{s['robust_accuracy']['reference']:.1%}; the same verdict on every point: "
        f"{'yes' if s['same_verdicts'] else 'no'}. Outside the model's forward passes: robustlab "
        f"{s['other_cpu_seconds']['robustlab']:.1f} CPU s, the reference {s['other_cpu_seconds']['reference']:.1f}.",
        "",
        describe_machine(r["machine"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1, help="Rounds (the first goes reference-first, then alternate).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--ref-site", default=str(REF_SITE),
        help="site-packages of the reference virtualenv (scripts/reference-env.sh).",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    sys.path.append(args.ref_site)
    import pyautoattack  # noqa: F401 - fail before any work when the reference is missing

    torch.set_num_threads(args.threads)
    from _lenet5 import lenet5

    data = load_dataset("mnist", "test")
    x, y = data.images()[: args.n].float(), data.y[: args.n].long()
    with tempfile.TemporaryDirectory() as tmp:
        net = _traced(lenet5(), x, Path(tmp) / "model.pt")
        for _ in range(3):  # warm-up: TorchScript's profiling runs, first calls
            reference_stage(net, "apgd-ce", x[:8], y[:8], norm="Linf", eps=EPS, seed=0)
            ours_stage(net, "apgd-ce", x[:8], y[:8], 0)
        rounds = [one_round(net, x, y, "reference" if i % 2 == 0 else "robustlab") for i in range(args.rounds)]
    result = {"n": args.n, "eps": EPS, "rounds": rounds, "summary": summarise(rounds), "machine": machine()}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", HEADING, docs(result))


if __name__ == "__main__":
    main()
