"""Study-runner overhead and scaling: attack time against the number of models, and the whole study
(attacks + transfer matrix) against its floor — N attacks plus N² forward passes over the adversarial sets,
measured directly in the same process on the same models and images.

    python benchmarks/study.py --models 2 4 8 --n 256 --repeat 2 [--data DIR] [--write docs/benchmarks.md]

Writes a "Study runner" section into docs/benchmarks.md (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import write_section  # benchmarks/, first on sys.path when a script runs

from robustlab import load_dataset, load_model
from robustlab._allocator import retain_freed_memory
from robustlab.attacks import attack
from robustlab.bench import parse_spec, run_study
from robustlab.bench.default import available_models
from robustlab.models import eval_mode


def floor_seconds(
    models: list[str], x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, bs: int, data: str | None
) -> tuple[float, float]:
    """(N attacks, N² forward passes over the adversarial sets), timed directly with no store or jobs."""
    nets = [load_model(m, data_dir=data, download=False) for m in models]
    t0 = time.process_time()
    advs = [
        attack(n, x, y, "ifgsm", norm="linf", eps=eps, steps=steps, batch_size=bs, keep_adversarials=True).adversarials
        for n in nets
    ]
    t1 = time.process_time()
    with torch.no_grad():
        for net in nets:
            with eval_mode(net):
                for adv in advs:
                    assert adv is not None
                    for i in range(0, len(adv), bs):
                        net(adv[i : i + bs]).argmax(1)
    return t1 - t0, time.process_time() - t1


def study_seconds(models: list[str], n: int, eps: float, steps: int, bs: int, data: str | None) -> dict[str, float]:
    spec = parse_spec(
        {
            "models": models,
            "dataset": {"n": n, "subset": "random"},
            "batch_size": bs,
            "attacks": [{"name": "ifgsm", "norm": "linf", "eps": eps, "steps": steps, "transfer": True}],
        }
    )
    marks: dict[str, float] = {}
    per_job: dict[str, float] = {}  # attack phase: CPU seconds of each job, by model

    def progress(phase: str, done: int, total: int, label: str) -> None:
        now = time.process_time()
        marks.setdefault(f"{phase}_start", now)
        if phase == "attack" and label:
            per_job[label.rsplit(" on ", 1)[-1]] = now - marks["attack_last"]
        marks[f"{phase}_last"] = now
        if done == total:
            marks[f"{phase}_end"] = now

    run = Path(tempfile.mkdtemp(prefix="rl-bench-"))
    try:
        t0 = time.process_time()
        run_study(spec, run, data_dir=data, progress=progress)
        total = time.process_time() - t0
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return {
        "total": total,
        "clean": marks["clean_end"] - t0,
        "attack": marks["attack_end"] - marks["attack_start"],
        "transfer": marks["transfer_end"] - marks["transfer_start"],
        "first_two_jobs": per_job[models[0]] + per_job[models[1]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is the work done)")
    ap.add_argument("--repeat", type=int, default=1, help="measure each size this many times; keep the fastest")
    ap.add_argument("--data", default=None)
    ap.add_argument("--write", default=None, help="Markdown file to write the results section into.")
    args = ap.parse_args()
    retained = retain_freed_memory()  # as the command line does
    torch.set_num_threads(args.threads)
    pool = available_models(args.data)
    if len(pool) < max(args.models):
        raise SystemExit(f"need {max(args.models)} models, {len(pool)} available: {pool}")
    ds = load_dataset("cifar10", "test", args.data).subset(args.n, 0)
    x, y = ds.images(), ds.y
    eps = 4 / 255
    rows = []
    for k in args.models:
        models = pool[:k]
        floors, studies = [], []
        for _ in range(args.repeat):  # interleaved, so a load change on a shared machine hits both
            floors.append(floor_seconds(models, x, y, eps, args.steps, args.batch_size, args.data))
            studies.append(study_seconds(models, args.n, eps, args.steps, args.batch_size, args.data))
        fa, ff = min(f[0] for f in floors), min(f[1] for f in floors)
        s = {key: min(t[key] for t in studies) for key in studies[0]}
        rows.append(
            {
                "models": k,
                "floor_attacks": fa,
                "floor_forward": ff,
                **s,
                "ratio": (s["attack"] + s["transfer"]) / (fa + ff),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "## Study runner",
        "",
        f"`python benchmarks/study.py --models {' '.join(map(str, args.models))} --n {args.n} --repeat {args.repeat} "
        f"--threads {args.threads}` (CPU seconds of the process, in-process executor; the fastest of the repeats "
        "for each number, floor and study interleaved) — I-FGSM "
        f"({args.steps} steps, L∞ 4/255, transfer on) on {args.n} CIFAR-10 test images, models = the first k of "
        f"`{', '.join(pool[: max(args.models)])}`.",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, shared and noisy; torch "
        f"{torch.__version__}, Python {platform.python_version()}; freed memory retained by the process: {retained} "
        "(as `robustlab run` does). CPU seconds, because wall time on this shared machine also measures "
        "the neighbours: single jobs swung by 30 % in wall time between identical runs.",
        "The models differ in cost, so linear growth shows in the last column: the attack jobs of the same two "
        "models cost the same whatever the number of models beside them (no per-model cost grows with N); the "
        "phase totals grow with the added models' own cost, which the floor measures.",
        "",
        "| models | floor: N attacks (CPU s) | floor: N² forwards (CPU s) | study attack phase (CPU s) "
        "| study transfer phase (CPU s) "
        "| attack phase / floor attacks | transfer phase / floor forwards | (attack+transfer) / floor "
        f"| attack jobs of {pool[0]} + {pool[1]} (CPU s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['models']} | {r['floor_attacks']:.1f} | {r['floor_forward']:.1f} | {r['attack']:.1f} | "
            f"{r['transfer']:.1f} | {r['attack'] / r['floor_attacks']:.2f}× | "
            f"{r['transfer'] / r['floor_forward']:.2f}× | {r['ratio']:.2f}× | {r['first_two_jobs']:.2f} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write:
        write_section(Path(args.write), "## Study runner", section)


if __name__ == "__main__":
    main()
