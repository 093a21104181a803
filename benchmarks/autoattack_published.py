"""Published numbers: advertorch's MNIST LeNet5 pair under robustlab's APGD-CE, Square and standard AutoAttack.

advertorch published (``../shared/data/pretrained-advertorch-lenet5-mnist/SOURCE.md``, 10,000 MNIST test images,
L∞ 0.3) for the PGD-trained LeNet5: APGD-CE (100 iterations) 90.98 % robust accuracy, Square (1,000 queries,
p_init 0.8) 89.29 %; the clean-trained LeNet5 falls to every attack (0 %). The issue asks ours to land within 0.5
points of each and standard AutoAttack to be at most the smaller of the two. Standard AutoAttack on all 10,000
points costs about 8 CPU-s per robust point on this machine (about 20 CPU-hours); it runs on the first ``--n-aa``
points, where the other two attacks are also reported, so the comparison is on the same points.

    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/autoattack_published.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section
from _lenet5 import CHECKPOINT, LeNet5

from robustlab.attacks import attack
from robustlab.data import load_dataset
from robustlab.models import ModelAdapter

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"apgd-ce": 0.9098, "square": 0.8929}


def _model(file: str) -> ModelAdapter:
    import os

    data = Path(os.environ.get("ROBUSTLAB_DATA") or ROOT.parent / "shared" / "data")
    net = LeNet5()
    net.load_state_dict(torch.load(data / CHECKPOINT.parent / file, map_location="cpu", weights_only=True))
    return ModelAdapter(net, num_classes=10, input_shape=(1, 28, 28), name=file)


def _run(label: str, model: ModelAdapter, x: torch.Tensor, y: torch.Tensor, name: str, **kw: Any) -> dict[str, Any]:
    t0 = time.process_time()
    res = attack(model, x, y, name, norm="linf", eps=0.3, seed=0, batch_size=500, **kw)
    s = res.summary()
    out = {
        "run": label,
        "n": s["n"],
        "clean_accuracy": s["clean_accuracy"],
        "robust_accuracy": s["robust_accuracy"],
        "interval": [s["rates"]["robust_accuracy"]["low"], s["rates"]["robust_accuracy"]["high"]],
        "cpu_seconds": time.process_time() - t0,
        "robust": res.robust,
    }
    if "cascade" in s:
        out["cascade"] = [(c["attack"], c["robust_accuracy_after"]) for c in s["cascade"]]
        out["flags"] = s["flags"]
    print(json.dumps({k: v for k, v in out.items() if k != "robust"}), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--n-aa", type=int, default=200)
    p.add_argument("--n-square", type=int, default=None, help="Square on the first N points only (default: --n)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--only", help="Only these runs (comma-separated): apgd-adv, square-adv, apgd-clean, aa-adv, aa-clean"
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    m = machine()
    data = load_dataset("mnist", "test")
    x, y = data.images()[: args.n], data.y[: args.n].long()
    adv, clean = _model("mnist_lenet5_advtrained.pt"), _model("mnist_lenet5_clntrained.pt")
    plan = {
        "apgd-adv": lambda: _run("apgd-ce (100 it), PGD-trained", adv, x, y, "apgd", loss="ce", steps=100),
        "square-adv": lambda: _run(
            "square (1,000 queries, p_init 0.8), PGD-trained",
            adv,
            x[: args.n_square],
            y[: args.n_square],
            "square",
            queries=1000,
            p_init=0.8,
        ),
        "apgd-clean": lambda: _run("apgd-ce (100 it), clean-trained", clean, x, y, "apgd", loss="ce", steps=100),
        "aa-adv": lambda: _run("standard autoattack, PGD-trained", adv, x[: args.n_aa], y[: args.n_aa], "autoattack"),
        "aa-clean": lambda: _run(
            "standard autoattack, clean-trained", clean, x[: args.n_aa], y[: args.n_aa], "autoattack"
        ),
    }
    if args.only:
        for key in args.only.split(","):
            plan[key]()
        return
    runs = [run() for run in plan.values()]
    first = args.n_aa
    sub = {r["run"]: float(r["robust"][:first].double().mean()) for r in runs[:2]}
    lines = [
        "## Published numbers: advertorch's LeNet5 pair (benchmarks/autoattack_published.py)",
        "",
        describe_machine(m),
        "",
        f"MNIST test images (first {args.n:,}), L∞ 0.3, seed 0. Published by advertorch on the 10,000 test images: "
        "APGD-CE 90.98 %, Square 89.29 % for the PGD-trained LeNet5; 0 % for the clean-trained one.",
        "",
        "| run | n | clean | robust accuracy (95 % interval) | published | CPU s |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r, pub in zip(runs, ["90.98 %", "89.29 %", "0 %", "≤ min of the two", "0 %"], strict=True):
        lines.append(
            f"| {r['run']} | {r['n']:,} | {r['clean_accuracy']:.2%} | {r['robust_accuracy']:.2%} "
            f"({r['interval'][0]:.2%}–{r['interval'][1]:.2%}) | {pub} | {r['cpu_seconds']:.0f} |"
        )
    aa = runs[3]
    lines += [
        "",
        f"On the first {first} points: APGD-CE {sub[runs[0]['run']]:.2%}, Square {sub[runs[1]['run']]:.2%}, standard "
        f"AutoAttack {aa['robust_accuracy']:.2%} (cascade {aa.get('cascade')}, flags {aa.get('flags')}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "robust"} for r in runs], indent=1))
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "## Published numbers: advertorch's LeNet5", text)


if __name__ == "__main__":
    main()
