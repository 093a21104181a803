"""PGD-AT epochs of ``robustlab.train_model`` in its two memory layouts: the network's weights row-major
(``memory_format="contiguous"``, PyTorch's default) against channels-last (what ``"auto"`` picks for a convolutional
network on CPU), on the robust zoo's architectures.

    ROBUSTLAB_DATA=../shared/data .venv/bin/python benchmarks/training_layout.py [--rounds 4] [--n 640] \\
        [--write docs/benchmarks.md]

For each architecture, ``--rounds`` rounds; in a round, one epoch in each layout on the same first ``--n`` training
images (the order of the two alternating from round to round), the same initial weights, PGD-7 (CIFAR-10: ε 8/255,
batch 64; MNIST: ε 0.3, batch 100), SGD, no augmentation, no monitor, one thread, CPU time of the whole
``train_model`` call. The ratio is the median over the rounds of channels-last / row-major (epochs that run one
after the other on this shared machine differ by several per cent from load alone, so each round's pair is
compared, not the sums). The result goes to ``benchmarks/results/training_layout.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section

from robustlab import ModelAdapter, TrainConfig, load_dataset, train_model
from robustlab._allocator import retain_freed_memory
from robustlab.models.archs import build_architecture

HEADING = "## Adversarial training: the memory layout"
#: (name, architecture, its arguments, dataset): the robust zoo's families.
NETWORKS: list[tuple[str, str, dict[str, Any], str]] = [
    ("fast_mnist", "fast_mnist", {}, "mnist"),
    ("vgg8-w25", "vgg", {"depth": 8, "width": 0.25}, "cifar10"),
    ("resnet8", "resnet_cifar", {"depth": 8}, "cifar10"),
    ("alexnet-w25", "alexnet_cifar", {"width": 0.25}, "cifar10"),
    ("resnet20", "resnet_cifar", {"depth": 20}, "cifar10"),
]


def epoch(arch: str, kwargs: dict[str, Any], data: tuple[torch.Tensor, torch.Tensor], fmt: str) -> tuple[float, str]:
    """CPU seconds of one PGD-AT epoch of ``train_model`` in layout ``fmt``, and the layout it trained in."""
    x, y = data
    mnist = x.shape[1] == 1
    torch.manual_seed(0)
    net = build_architecture(arch, **kwargs)
    mean, std = ((0.0,), (1.0,)) if mnist else ((0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616))  # as the zoo
    model = ModelAdapter(net, num_classes=10, input_shape=tuple(x.shape[1:]), mean=mean, std=std)
    cfg = TrainConfig(
        epochs=1,
        batch_size=100 if mnist else 64,
        lr=0.01,
        augment="none",
        schedule="constant",
        method="pgd-at",
        method_params={"eps": 0.3 if mnist else 8 / 255, "steps": 7},
        monitor_n=0,
    )
    run = Path(tempfile.mkdtemp(prefix="rl-bench-layout-"))
    try:
        t0 = time.process_time()
        used = train_model(model, x, y, cfg, run / "run", memory_format=fmt).memory_format
        return time.process_time() - t0, used
    finally:
        shutil.rmtree(run, ignore_errors=True)


def docs(result: dict[str, Any]) -> str:
    lines = [
        HEADING + " (`benchmarks/training_layout.py`)",
        "",
        f"One PGD-7 epoch of `train_model` on the first {result['n']} training images (CIFAR-10: ε 8/255, batch 64; "
        "MNIST: ε 0.3, batch 100), SGD, one thread, CPU seconds of the whole call, the network's weights row-major "
        '(`memory_format="contiguous"`, PyTorch\'s default) and channels-last (what `"auto"` picks for a '
        f"convolutional network on CPU); {result['rounds']} rounds, the two layouts' order alternating; the ratio "
        "is the median of the rounds' ratios (range in brackets).",
        "",
        "| network | row-major CPU s (median) | channels-last CPU s (median) | channels-last / row-major |",
        "|---|---:|---:|---:|",
    ]
    for r in result["networks"]:
        lo, hi = min(r["ratios"]), max(r["ratios"])
        lines.append(
            f"| {r['network']} | {statistics.median(r['contiguous_s']):.2f} | "
            f"{statistics.median(r['channels_last_s']):.2f} | **{r['median_ratio']:.3f}** ({lo:.3f}–{hi:.3f}) |"
        )
    lines += ["", describe_machine(result["machine"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--n", type=int, default=640, help="Training images per epoch.")
    p.add_argument("--only", default=None, help="Comma-separated network names (default: all).")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "training_layout.json")
    p.add_argument("--write", type=Path, help="Markdown file to write the results section into.")
    args = p.parse_args()
    retain_freed_memory()  # as robustlab's command line does
    torch.set_num_threads(1)
    wanted = set(args.only.split(",")) if args.only else None
    results = []
    for name, arch, kwargs, dataset in NETWORKS:
        if wanted is not None and name not in wanted:
            continue
        train = load_dataset(dataset, "train")
        data = (train.x[: args.n], train.y[: args.n])
        epoch(arch, kwargs, (data[0][:128], data[1][:128]), "contiguous")  # first calls, untimed
        spent: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
        used = set()
        for r in range(args.rounds):
            for fmt in ("contiguous", "channels_last") if r % 2 == 0 else ("channels_last", "contiguous"):
                t, layout = epoch(arch, kwargs, data, fmt)
                spent[fmt].append(t)
                used.add((fmt, layout))
            print(f"{name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in spent.items()), flush=True)
        ratios = [c / r for c, r in zip(spent["channels_last"], spent["contiguous"], strict=True)]
        results.append(
            {
                "network": name,
                "dataset": dataset,
                "contiguous_s": [round(t, 3) for t in spent["contiguous"]],
                "channels_last_s": [round(t, 3) for t in spent["channels_last"]],
                "ratios": [round(v, 3) for v in ratios],
                "median_ratio": round(statistics.median(ratios), 3),
                "layouts_used": sorted(f"{a}->{b}" for a, b in used),
            }
        )
    result = {"rounds": args.rounds, "n": args.n, "networks": results, "machine": machine()}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    if args.write:
        write_section(args.write, HEADING, docs(result))


if __name__ == "__main__":
    main()
