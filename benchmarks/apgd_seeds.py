"""APGD-CE alone, robustlab (its own per-point generator) against the reference (pyautoattack 0.2.0, global
generator), over several seeds on the same points: is either side's random start systematically luckier?

The AutoAttack outcome runs found our cascade's APGD-CE stage leaving a point or two more per 250 than the
reference's (LeNet5 L∞ 0.3, ResNet-20 L∞ 1/255) with different seeds on each side; this asks whether that is the
seed or the attack. Each side runs APGD-CE (100 iterations, 1 restart, as standard AutoAttack sets it) once per seed
on the clean-correct points; the table gives each seed's robust count, their mean and spread, and the points robust
under every seed of one side but broken by some seed of the other.

    python benchmarks/apgd_seeds.py --n 250 --seeds 4 [--eps 1/255]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _autoattack_ref import REF_SITE  # noqa: E402 - after the path it lives on


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=250)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--eps", type=lambda v: float(Fraction(v)), default=1 / 255, help="Budget, e.g. 1/255.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ref-site", default=str(REF_SITE))
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "apgd_seeds.json")
    args = p.parse_args()
    sys.path.append(args.ref_site)
    import pyautoattack  # noqa: F401 - fail early when the reference is missing
    from _autoattack_ref import reference_stage
    from _common import machine

    from robustlab import attack, load_dataset, load_model

    torch.set_num_threads(args.threads)
    model = load_model("resnet20-akamaster").eval()
    data = load_dataset("cifar10", "test")
    x, y = data.images()[: args.n].float(), data.y[: args.n].long()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    robust: dict[str, list[torch.Tensor]] = {"robustlab": [], "reference": []}
    cpu: dict[str, float] = {"robustlab": 0.0, "reference": 0.0}
    for seed in range(args.seeds):
        for side in ("reference", "robustlab") if seed % 2 == 0 else ("robustlab", "reference"):
            t0 = time.process_time()
            if side == "reference":
                adv = reference_stage(model, "apgd-ce", x, y, norm="Linf", eps=args.eps, seed=seed)
                with torch.no_grad():
                    r = model(adv).argmax(1) == y
            else:
                res = attack(model, x, y, "apgd", norm="linf", eps=args.eps, seed=seed, steps=100, batch_size=len(y))
                r = res.robust
            cpu[side] += time.process_time() - t0
            robust[side].append(r.clone())
            print(f"seed {seed} {side}: robust {int(r.sum())} of {len(y)}", flush=True)
    counts = {k: [int(r.sum()) for r in v] for k, v in robust.items()}
    always = {k: torch.stack(v).all(0) for k, v in robust.items()}
    ever = {k: torch.stack(v).any(0) for k, v in robust.items()}
    result = {
        "model": "resnet20-akamaster",
        "eps": args.eps,
        "points": len(y),
        "seeds": args.seeds,
        "robust_counts": counts,
        "mean": {k: statistics.mean(v) for k, v in counts.items()},
        "stdev": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in counts.items()},
        "robust_under_every_seed": {k: int(v.sum()) for k, v in always.items()},
        "ours_always_robust_ref_broke": int((always["robustlab"] & ~ever["reference"]).sum()),
        "ref_always_robust_ours_broke": int((always["reference"] & ~ever["robustlab"]).sum()),
        "cpu_seconds": cpu,
        "machine": machine(),
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
