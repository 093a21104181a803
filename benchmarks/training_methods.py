"""Each training method's epoch against its own pass floor (issue 15: within 1.15×).

    ROBUSTLAB_DATA=../shared/data nice .venv/bin/python benchmarks/training_methods.py [--n 1280] [--repeats 2] \\
        [--methods advprop,iat,...] [--write docs/benchmarks.md]

For every method: the model layout the method declares (multi-branch batch norm, DuBIN, normalizer-free, a
selector or a domain head; ``resnet_cifar`` depth 8 width 8), the first ``--n`` CIFAR-10 training images, batch
128, no data augmentation (the floor counts network passes, not the loader's crops), one thread, CPU time
(``time.process_time``) of one ``train_model`` epoch (no monitor), best of ``--repeats`` after an untimed
round on two batches (first calls, lazy initialisation).

The floor of a method is the network passes its algorithm needs per batch, each measured on its own on that model
and batch (best of 5): ``atk(b)``, an eval-mode forward and a backward to the input on ``b`` rows (one inner
maximisation step); ``ev(b)``, an eval-mode forward without gradients; ``fb(b)``, a train-mode forward and a
backward to the parameters on ``b`` rows (the training step's passes). The counts, per batch of ``B`` rows and
``s`` inner steps:

| method | floor per batch |
|---|---|
| standard | fb(B) |
| pgd-at | s·atk(B) + fb(B) |
| trades, dial | ev(B) + s·atk(B) + fb(2B) |
| advprop, iat, nofrost, mixed-at, pyramid-at | s·atk(B) + fb(2B) |
| mdprop | s·atk(B) (two half batches) + fb(2B) |
| multibn | s·atk(B) for each of its two adversarial types + fb(K·B) (K types through one forward) + the selector |
| augmax | s·atk(B) (the mixing weights' ascent) + fb(3B) (clean, AugMax and AugMix forwards, one backward) |

What a method does beyond network passes (AugMax's chains, MultiBN's corruptions, the optimiser step, the loop's
bookkeeping) is inside the ratio, i.e. charged to the method: the target is ≤ 1.15.

Results: ``benchmarks/results/training_methods.json`` and, with ``--write``, a section of that file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
EPS = 8 / 255
HEADING = "## Training methods against their pass floor (`benchmarks/training_methods.py`, issue 15)"
STEPS = 3

#: method → (its settings, floor per batch as a function of the measured unit costs and B).
METHODS: dict[str, tuple[dict[str, Any], Callable[[Callable[[str, int], float], int], float]]] = {
    "standard": ({}, lambda u, b: u("fb", b)),
    "pgd-at": ({"eps": EPS, "steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", b)),
    "trades": ({"eps": EPS, "steps": STEPS}, lambda u, b: u("ev", b) + STEPS * u("atk", b) + u("fb", 2 * b)),
    "dial": ({"eps": EPS, "steps": STEPS}, lambda u, b: u("ev", b) + STEPS * u("atk", b) + u("fb", 2 * b)),
    "advprop": ({"steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "iat": ({"eps": EPS, "steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "nofrost": ({"eps": EPS, "steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "mixed-at": ({"eps": EPS, "steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "pyramid-at": ({"steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "mdprop": ({"steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 2 * b)),
    "multibn": ({"steps": STEPS}, lambda u, b: 2 * STEPS * u("atk", b) + u("fb", 4 * b) + u("sel", 4 * b)),
    "augmax": ({"steps": STEPS}, lambda u, b: STEPS * u("atk", b) + u("fb", 3 * b)),
}


def build(method: str, params: dict[str, Any]) -> tuple[Any, Any]:
    from robustlab.models import ModelSpec
    from robustlab.models.loading import assemble
    from robustlab.train import TrainConfig
    from robustlab.train.standalone import with_method_needs

    cfg = TrainConfig(epochs=1, batch_size=128, method=method, method_params=params, monitor_n=0, augment="none",
                      label_smoothing=0.0, seed=0)  # fmt: skip
    spec = ModelSpec("bench", "resnet", "resnet_cifar", 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26),
                     "cifar10", {"depth": 8, "width": 8})  # fmt: skip
    spec = with_method_needs(spec, cfg)
    torch.manual_seed(0)
    return assemble(spec), cfg


def units(model: Any, x: torch.Tensor, y: torch.Tensor) -> Callable[[str, int], float]:
    """Measured CPU seconds of one pass kind on ``b`` rows (best of 5), memoised."""
    from robustlab.models.adapter import eval_mode, trusted_inputs
    from robustlab.models.norm_layers import route, routes_of, selector_weights

    memo: dict[tuple[str, int], float] = {}

    def once(kind: str, b: int) -> None:
        xb = torch.cat([x] * (1 + b // len(x)))[:b].clone()
        yb = torch.cat([y] * (1 + b // len(y)))[:b]
        # a multi-branch model's passes through one branch (as its training passes run; soft routing would run
        # every branch)
        one = route(model.net, "main") if routes_of(model.net) else contextlib.nullcontext()
        with trusted_inputs(model), one:
            if kind == "atk":
                with eval_mode(model):
                    xb.requires_grad_(True)
                    loss = F.cross_entropy(model(xb), yb)
                    torch.autograd.grad(loss, xb)
            elif kind == "ev":
                with eval_mode(model), torch.no_grad():
                    model(xb)
            elif kind == "fb":
                model.train()
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb).backward()
            elif kind == "sel" and routes_of(model.net) and hasattr(model.net, "selector"):
                z = (xb - model.mean) / model.std  # the selector's own forward and backward
                selector_weights(model.net, z, hard=False).sum().backward()

    def unit(kind: str, b: int) -> float:
        if (kind, b) not in memo:
            once(kind, b)  # warm
            best = float("inf")
            for _ in range(5):
                t = time.process_time()
                once(kind, b)
                best = min(best, time.process_time() - t)
            memo[kind, b] = best
        return memo[kind, b]

    return unit


def measure(method: str, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, Any]:
    from robustlab.train import train_model

    params, floor_of = METHODS[method]
    model, cfg = build(method, params)
    with tempfile.TemporaryDirectory() as run:  # untimed: first calls, lazy initialisation
        train_model(model, x[:256], y[:256], cfg, run)
    best = float("inf")
    for _ in range(repeats):
        model, cfg = build(method, params)
        with tempfile.TemporaryDirectory() as run:
            t = time.process_time()
            train_model(model, x, y, cfg, run)
            best = min(best, time.process_time() - t)
    model, _ = build(method, params)
    u = units(model, x[:128].float() / 255, y[:128])
    batches = len(x) // 128
    floor = batches * floor_of(u, 128)
    return {"method": method, "epoch_cpu_s": best, "floor_cpu_s": floor, "ratio": best / floor, "batches": batches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--data", default=os.environ.get("ROBUSTLAB_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--write", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    from robustlab.data import load_dataset
    from robustlab.train import TRAINING_METHODS

    train = load_dataset("cifar10", "train", args.data)
    x, y = train.x[: args.n], torch.as_tensor(train.y[: args.n]).long()
    rows, skipped = [], []
    for method in args.methods.split(","):
        if method not in TRAINING_METHODS.names():
            skipped.append(method)
            continue
        r = measure(method, x, y, args.repeats)
        rows.append(r)
        print(f"{method}: epoch {r['epoch_cpu_s']:.2f} CPU s, floor {r['floor_cpu_s']:.2f}, ratio {r['ratio']:.2f}",
              flush=True)  # fmt: skip
    m = machine("torch")
    result = {"machine": m, "n": args.n, "steps": STEPS, "rows": rows, "skipped": skipped}
    (ROOT / "benchmarks" / "results" / "training_methods.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        HEADING,
        "",
        f"{describe_machine(m)} One epoch of {args.n} CIFAR-10 images (batch 128, {STEPS} inner steps, ε 8/255 "
        "where the method has one), `resnet_cifar` d8 w8 in each method's own layout, one thread, CPU seconds, best "
        f"of {args.repeats}; the floor counts the network passes the algorithm needs (see the script's docstring).\n",
        "| method | epoch CPU s | floor CPU s | × floor | ≤ 1.15 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "yes" if r["ratio"] <= 1.15 else "**no**"
        lines.append(f"| {r['method']} | {r['epoch_cpu_s']:.2f} | {r['floor_cpu_s']:.2f} | {r['ratio']:.2f} | {ok} |")
    text = "\n".join(lines)
    print(text)
    if args.write is not None:
        write_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
