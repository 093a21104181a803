"""The inner maximiser of PGD-AT alone: robustlab's (``StepContext.perturb``, as ``train_model`` calls it) against the
same attack written by hand in plain torch, taking turns batch by batch.

    ROBUSTLAB_DATA=../shared/data .venv/bin/python benchmarks/inner_maximiser.py [--rounds 4] \\
        [--write docs/benchmarks.md]

``benchmarks/training.py`` times whole epochs; this isolates the attack, where robustlab's own code runs. On the
same 30 batches of 100 MNIST training images, PGD-7 at ε 0.3 (step 2.5·ε/7, uniform random start, eval mode), one
thread, three contenders take turns on every batch, the order rotated from batch to batch: the hand-written attack
(``torch.autograd.grad`` on the input, sign step, projection, clip), a second copy of it (what two identical
contenders differ by: the comparison's noise floor on this machine), and robustlab's. Two networks: fast_mnist (Wong
et al.'s MNIST CNN) and a linear layer (where the network costs almost nothing, so a per-batch overhead shows). CPU
seconds summed over the rounds; ratios to the hand-written attack.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section

from robustlab import ModelAdapter, load_dataset
from robustlab._allocator import retain_freed_memory
from robustlab.models.adapter import trusted_inputs
from robustlab.models.archs import build_architecture
from robustlab.train.methods import StepContext

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Adversarial training: the inner maximiser alone"
EPS, STEPS, BATCH, BATCHES = 0.3, 7, 100, 30
ALPHA = 2.5 * EPS / STEPS


def _network(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    return build_architecture("fast_mnist")


def _hand(net: nn.Module, gen: torch.Generator) -> Callable[[Tensor, Tensor], Tensor]:
    def attack(xb: Tensor, yb: Tensor) -> Tensor:
        delta = (torch.rand(xb.shape, generator=gen) * 2 - 1) * EPS
        xa = (xb + delta).clamp(0, 1)
        for _ in range(STEPS):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(net(xa), yb), xa)
            xa = torch.min(torch.max(xa.detach() + ALPHA * g.sign(), xb - EPS), xb + EPS).clamp(0, 1)
        return xa

    return attack


def _ours(model: ModelAdapter) -> Callable[[Tensor, Tensor], Tensor]:
    ctx = StepContext(model=model, generator=torch.Generator().manual_seed(0))

    def attack(xb: Tensor, yb: Tensor) -> Tensor:
        with trusted_inputs(model):
            return ctx.perturb(xb, yb, eps=EPS, steps=STEPS, step_size=ALPHA, random_start=True)

    return attack


def measure(kind: str, x: Tensor, y: Tensor, rounds: int) -> dict[str, Any]:
    """CPU seconds of each contender over ``rounds`` passes over the batches, taking turns on every batch."""
    net = _network(kind)
    model = ModelAdapter(net, num_classes=10, input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,)).eval()
    contenders = {
        "hand": _hand(net, torch.Generator().manual_seed(0)),
        "hand (second copy)": _hand(net, torch.Generator().manual_seed(1)),
        "robustlab": _ours(model),
    }
    names = list(contenders)
    for name in names:  # first calls
        contenders[name](x[:BATCH], y[:BATCH])
    spent = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for i in range(BATCHES):
            xb, yb = x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.process_time()
                contenders[name](xb, yb)
                spent[name] += time.process_time() - t0
    return {
        "network": kind,
        "cpu_s": {k: round(v, 3) for k, v in spent.items()},
        "ms_per_batch": {k: round(1e3 * v / (rounds * BATCHES), 2) for k, v in spent.items()},
        "over_hand": {k: round(v / spent["hand"], 3) for k, v in spent.items()},
    }


def docs(result: dict[str, Any]) -> str:
    lines = [
        HEADING + " (`benchmarks/inner_maximiser.py`)",
        "",
        f"PGD-{STEPS} at ε {EPS} (step 2.5·ε/{STEPS}, random start, eval mode) on {BATCHES} batches of {BATCH} MNIST "
        f"training images, {result['rounds']} rounds, one thread; the contenders take turns on every batch, the order "
        "rotated. CPU ms per batch and the ratio to the hand-written attack; the second copy of the hand-written "
        "attack shows the comparison's noise.",
        "",
        "| network | hand-written | second copy | robustlab | robustlab / hand-written |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        ms, ratio = r["ms_per_batch"], r["over_hand"]
        lines.append(
            f"| {r['network']} | {ms['hand']} | {ms['hand (second copy)']} ({ratio['hand (second copy)']:.3f}×) "
            f"| {ms['robustlab']} | **{ratio['robustlab']:.3f}×** |"
        )
    lines += ["", describe_machine(result["machine"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "inner_maximiser.json")
    p.add_argument("--write", type=Path, help="Markdown file to write the results section into.")
    args = p.parse_args()
    retain_freed_memory()  # as robustlab's command line does
    torch.set_num_threads(1)
    train = load_dataset("mnist", "train")
    x, y = train.images()[: BATCH * BATCHES].float(), train.y[: BATCH * BATCHES].long()
    results = [measure(kind, x, y, args.rounds) for kind in ("fast_mnist", "linear")]
    result = {"rounds": args.rounds, "results": results, "machine": machine()}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    if args.write:
        write_section(args.write, HEADING, docs(result))


if __name__ == "__main__":
    main()
