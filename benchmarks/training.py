"""One PGD-AT epoch of ``robustlab.train_model`` against its gradient floor and against a hand-written PGD-AT loop.

    python benchmarks/training.py [--arch fast_mnist] [--n 2000] [--steps 7] [--repeats 3] [--write docs/benchmarks.md]

Same model (architecture, initial weights), same MNIST training images, same batch (100), ε 0.3, PGD-``steps`` with
step 2.5·ε/steps and a random start, SGD, one thread, CPU time (``time.process_time``), best of ``--repeats``:

- ``robustlab``: one epoch of ``train_model`` with ``method="pgd-at"`` (checkpoint written; no monitor).
- ``hand loop``: the textbook loop in plain torch (eval-mode attack with ``torch.autograd.grad`` on the input,
  sign step, projection, clip; train-mode forward, backward, optimiser step).
- ``floor``: ``(steps + 1) × (forward + backward)`` per batch, with forward + backward measured as one train-mode
  forward and full backward of the batch; and the tighter ``steps × attack pass + training step`` with each part
  measured on its own.

The result goes to ``benchmarks/results/training.json`` (and a section of ``--write``'s file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 0.3


def _model(arch: str) -> Any:
    from robustlab import ModelAdapter
    from robustlab.models.archs import build_architecture

    torch.manual_seed(0)
    net = build_architecture(arch)
    return ModelAdapter(net, num_classes=10, input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,))


def robustlab_epoch(arch: str, x: Tensor, y: Tensor, steps: int, batch: int) -> float:
    from robustlab import TrainConfig, train_model

    model = _model(arch)
    cfg = TrainConfig(
        epochs=1,
        batch_size=batch,
        lr=0.01,
        augment="none",
        schedule="constant",
        weight_decay=0.0,
        method="pgd-at",
        method_params={"eps": EPS, "steps": steps},
        monitor_n=0,
    )
    run = Path(tempfile.mkdtemp(prefix="rl-bench-train-"))
    try:
        t0 = time.process_time()
        train_model(model, x, y, cfg, run / "run")
        return time.process_time() - t0
    finally:
        shutil.rmtree(run, ignore_errors=True)


def hand_epoch(arch: str, x: Tensor, y: Tensor, steps: int, batch: int) -> float:
    """The PGD-AT loop as a user writes it in plain torch (the same batches in the same order as robustlab)."""
    net: nn.Module = _model(arch).net
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    alpha = 2.5 * EPS / steps
    t0 = time.process_time()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        xb, yb = x[idx].float() / 255, y[idx]
        net.eval()
        delta = (torch.rand(xb.shape, generator=gen) * 2 - 1) * EPS
        xa = (xb + delta).clamp(0, 1)
        for _ in range(steps):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(net(xa), yb), xa)
            xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), xb - EPS), xb + EPS).clamp(0, 1)
        net.train()
        loss = F.cross_entropy(net(xa), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.process_time() - t0


def floors(arch: str, x: Tensor, y: Tensor, steps: int, batch: int) -> dict[str, float]:
    """Per-epoch CPU seconds of (forward + full backward), of one attack pass and of one training step."""
    net: nn.Module = _model(arch).net
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    fb = attack = train = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].float() / 255, y[i : i + batch]
        net.train()
        t0 = time.process_time()
        F.cross_entropy(net(xb), yb).backward()
        fb += time.process_time() - t0
        net.eval()
        xa = xb.clone().requires_grad_(True)
        t0 = time.process_time()
        torch.autograd.grad(F.cross_entropy(net(xa), yb), xa)
        attack += time.process_time() - t0
        net.train()
        t0 = time.process_time()
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train += time.process_time() - t0
    return {"forward_backward": fb, "attack_pass": attack, "train_step": train}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="fast_mnist")
    ap.add_argument("--n", type=int, default=2000, help="Training images (an epoch's size).")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", default=None, help="Markdown file to write the results section into.")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import describe_machine, machine, write_section

    from robustlab import load_dataset

    torch.set_num_threads(args.threads)
    train = load_dataset("mnist", "train")
    x, y = train.x[: args.n], train.y[: args.n]
    runs: dict[str, list[float]] = {"robustlab": [], "hand": [], "fb": [], "attack": [], "train": []}
    for _ in range(args.repeats):  # interleaved, so that a change of load hits every contender
        runs["robustlab"].append(robustlab_epoch(args.arch, x, y, args.steps, args.batch))
        runs["hand"].append(hand_epoch(args.arch, x, y, args.steps, args.batch))
        f = floors(args.arch, x, y, args.steps, args.batch)
        runs["fb"].append(f["forward_backward"])
        runs["attack"].append(f["attack_pass"])
        runs["train"].append(f["train_step"])
    best = {k: min(v) for k, v in runs.items()}
    floor_fb = (args.steps + 1) * best["fb"]
    floor_parts = args.steps * best["attack"] + best["train"]
    result = {
        "arch": args.arch,
        "images": args.n,
        "batch": args.batch,
        "steps": args.steps,
        "eps": EPS,
        "repeats": args.repeats,
        "cpu_s": {k: round(v, 3) for k, v in best.items()},
        "all_cpu_s": {k: [round(t, 3) for t in v] for k, v in runs.items()},
        "floor_steps_plus_1_fb_s": round(floor_fb, 3),
        "floor_parts_s": round(floor_parts, 3),
        "robustlab_over_floor": round(best["robustlab"] / floor_fb, 3),
        "robustlab_over_parts_floor": round(best["robustlab"] / floor_parts, 3),
        "robustlab_over_hand": round(best["robustlab"] / best["hand"], 3),
        "machine": machine(),
    }
    out = Path(__file__).parent / "results" / "training.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if args.write:
        text = (
            "## Adversarial training: one PGD-AT epoch\n\n"
            f"`python benchmarks/training.py` — {args.arch}, {args.n} MNIST images, batch {args.batch}, "
            f"PGD-{args.steps} at ε {EPS}, SGD, {args.threads} thread(s), CPU seconds, best of {args.repeats}.\n\n"
            "| | CPU s | × floor (steps+1)·(fwd+bwd) | × floor (steps·attack + train) |\n|---|---|---|---|\n"
            f"| robustlab `train_model` | {best['robustlab']:.2f} | {best['robustlab'] / floor_fb:.2f} | "
            f"{best['robustlab'] / floor_parts:.2f} |\n"
            f"| hand-written loop | {best['hand']:.2f} | {best['hand'] / floor_fb:.2f} | "
            f"{best['hand'] / floor_parts:.2f} |\n"
            f"| floor (steps+1)·(fwd+bwd) | {floor_fb:.2f} | 1.00 | |\n\n"
            f"robustlab / hand loop: {best['robustlab'] / best['hand']:.2f}. {describe_machine(result['machine'])}\n"
        )
        write_section(Path(args.write), "## Adversarial training", text)


if __name__ == "__main__":
    main()
