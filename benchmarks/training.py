"""One PGD-AT epoch of ``robustlab.train_model`` against its gradient floor, a hand-written PGD-AT loop and ART.

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/training.py [--arch fast_mnist] \\
        [--dataset mnist] [--n 10000] [--steps 7] [--repeats 5] [--art-python /work/art-venv/bin/python] \\
        [--write docs/benchmarks.md]

Same model (architecture, initial weights), the same first ``--n`` training images of ``--dataset`` (MNIST at ε 0.3,
the default; CIFAR-10 at ε 8/255, e.g. ``--dataset cifar10 --arch vgg8-w25``), batch 100,
PGD-``steps`` with step 2.5·ε/steps and a uniform random start, SGD (lr 0.01, Nesterov momentum 0.9), one thread,
CPU time (``time.process_time``) of one epoch. One untimed round on two batches comes first (imports, first calls),
then ``--repeats`` rounds; the table gives each contender's best round, the JSON also every round and the median
of the rounds' ratios. In a round:

- ``robustlab``: the whole ``train_model`` call with ``method="pgd-at"``: set-up, the epoch, its checkpoint and
  metrics written (no monitor). After each of its steps, its ``on_step`` callback runs the in-process contenders on
  the same batch (the callback's time is taken out of robustlab's), so that the in-process contenders take turns
  every ~0.1 s and see the same load of the machine (two background trainings share its 2 cores here; epochs run
  one after the other differed by up to 30 % from load alone).
- ``hand loop``: the textbook loop in plain torch on the network itself (:class:`HandLoop`: eval-mode attack with
  ``torch.autograd.grad`` on the input, sign step, projection, clip; train-mode forward, backward, optimiser step),
  the same batches in the same order as robustlab.
- ``hand loop through the adapter``: the same loop calling the ``ModelAdapter`` robustlab trains (its
  normalisation, here mean 0 and std 1, is part of every forward and backward pass): what robustlab's own code adds
  on top of the adapter.
- ``hand loop, weights channels-last``: the same loop after ``net.to(memory_format=torch.channels_last)``, the
  layout robustlab trains a convolutional network in on CPU (``train_model(memory_format="auto")``): robustlab's
  own overhead like for like.
- ``floor``: ``(steps + 1) × (forward + backward)`` per batch, with forward + backward measured as one train-mode
  forward and full backward of the batch; and the tighter ``steps × attack pass + training step`` with each part
  measured on its own (:class:`FloorParts`); each in both layouts, the faster layout's being the floor.
- ``ART`` (``--art-python``: ART in its own environment, ``_art_ref.py`` as a subprocess after the rest of the
  round, CPU seconds measured inside it around ``fit`` alone): ``AdversarialTrainer`` with ``ratio=1.0`` and
  ``ProjectedGradientDescent`` at the same settings and attack batch (what ``AdversarialTrainerMadryPGD`` builds,
  whose attack batch of 32 cannot be set), and ``AdversarialTrainerMadryPGD`` as shipped; the same network and
  initial weights (an ``nn.Sequential`` of the same torch modules), ART's own shuffling. Without that environment
  ART is skipped, with the reason printed.

The process keeps freed memory as robustlab's command line does (``retain_freed_memory``, and glibc's environment
variables for ART's process); ``ROBUSTLAB_MALLOC=system`` measures glibc's defaults instead, where every extra
temporary tensor of a step costs a fresh page-faulted allocation.

The result goes to ``benchmarks/results/training.json`` (``training-system-malloc.json`` with glibc's defaults) and,
with ``--write``, a section of that file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The budget and input shape of each dataset the benchmark runs on.
DATASETS = {"mnist": (0.3, (1, 28, 28)), "cifar10": (8 / 255, (3, 32, 32))}
EPS, SHAPE = DATASETS["mnist"]  # set from --dataset in main()
#: Zoo names of the CIFAR-10 architectures (as ``robustlab.train.zoo`` builds them): name -> (architecture, kwargs).
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "vgg8-w25": ("vgg", {"depth": 8, "width": 0.25}),
    "resnet8": ("resnet_cifar", {"depth": 8}),
    "alexnet-w25": ("alexnet_cifar", {"width": 0.25}),
}
LR, MOMENTUM = 0.01, 0.9
ART_SCRIPT = Path(__file__).resolve().parent / "_art_ref.py"
ART_TRAINERS = {
    "adversarial-trainer": "ART `AdversarialTrainer` (ratio 1, PGD batch = training batch)",
    "madry": "ART `AdversarialTrainerMadryPGD` as shipped (PGD batch 32)",
}


def _model(arch: str) -> Any:
    from robustlab import ModelAdapter
    from robustlab.models.archs import build_architecture

    name, kwargs = ARCHS.get(arch, (arch, {}))
    torch.manual_seed(0)
    net = build_architecture(name, **kwargs)
    return ModelAdapter(net, num_classes=10, input_shape=SHAPE, mean=(0.0,) * SHAPE[0], std=(1.0,) * SHAPE[0])


class HandLoop:
    """The PGD-AT loop as a user writes it in plain torch, one batch at a time: eval-mode attack with
    ``torch.autograd.grad`` on the input, sign step, projection, clip; train-mode forward, backward, optimiser step.

    Args:
        arch: Architecture (built as :func:`_model` builds it: the same initial weights as robustlab's).
        steps: PGD steps.
        adapter: Call the ``ModelAdapter`` (with its normalisation) instead of the network itself.
        channels_last: The network's weights in channels-last order (what robustlab trains in on CPU).
    """

    def __init__(self, arch: str, steps: int, *, adapter: bool = False, channels_last: bool = False) -> None:
        model = _model(arch)
        self.net: nn.Module = model if adapter else model.net
        if channels_last:  # the user's one-line opt-in: the weights in channels-last order
            self.net.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
        self.gen = torch.Generator().manual_seed(0)  # the first randperm is train_model's (seed 0)
        self.steps, self.alpha = steps, 2.5 * EPS / steps

    def order(self, n: int) -> Tensor:
        """The epoch's order of the ``n`` images."""
        return torch.randperm(n, generator=self.gen)

    def step(self, x: Tensor, y: Tensor, idx: Tensor) -> None:
        """One training step on the images ``x[idx]`` (uint8)."""
        xb, yb = x[idx].float() / 255, y[idx]
        self.net.eval()
        delta = (torch.rand(xb.shape, generator=self.gen) * 2 - 1) * EPS
        xa = (xb + delta).clamp(0, 1)
        for _ in range(self.steps):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(self.net(xa), yb), xa)
            xa = torch.min(torch.max(xa.detach() + self.alpha * g.sign(), xb - EPS), xb + EPS).clamp(0, 1)
        self.net.train()
        loss = F.cross_entropy(self.net(xa), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()


class FloorParts:
    """The floor's parts on one batch: a train-mode forward and full backward, one attack pass (eval-mode forward
    and input gradient) and one training step (forward, backward, optimiser step at learning rate 0)."""

    def __init__(self, arch: str, *, channels_last: bool = False) -> None:
        self.net: nn.Module = _model(arch).net
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.0)

    def measure(self, x: Tensor, y: Tensor, idx: Tensor, spent: dict[str, float], tag: str = "") -> None:
        """Add each part's CPU seconds on ``x[idx]`` to ``spent["fb" + tag]``, ``spent["attack" + tag]``,
        ``spent["train" + tag]``."""
        xb, yb = x[idx].float() / 255, y[idx]
        self.net.train()
        t0 = time.process_time()
        F.cross_entropy(self.net(xb), yb).backward()  # type: ignore[no-untyped-call]
        spent["fb" + tag] += time.process_time() - t0
        self.net.eval()
        xa = xb.clone().requires_grad_(True)
        t0 = time.process_time()
        torch.autograd.grad(F.cross_entropy(self.net(xa), yb), xa)
        spent["attack" + tag] += time.process_time() - t0
        self.net.train()
        t0 = time.process_time()
        loss = F.cross_entropy(self.net(xb), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        spent["train" + tag] += time.process_time() - t0


def lockstep_epoch(arch: str, x: Tensor, y: Tensor, steps: int, batch: int) -> tuple[dict[str, float], str]:
    """One epoch of each in-process contender, taking turns batch by batch: after each step of ``train_model``
    (from its ``on_step`` callback) the hand loop, the hand loop through the adapter and the floor's parts run on
    the same batch, so that all of them see the same load of the machine, ~0.1 s at a time. robustlab trains in its
    default layout (``memory_format="auto"``: channels-last for a convolutional network on CPU); the hand loop and
    the floor's parts run in both layouts.

    Returns:
        CPU seconds of ``robustlab`` (the whole ``train_model`` call without the time spent in the callback),
        ``hand``, ``hand_adapter``, ``hand_cl`` (channels-last), the floor's ``fb``, ``attack`` and ``train`` parts
        and their channels-last twins ``fb_cl``, ``attack_cl``, ``train_cl`` over the epoch; and the layout
        robustlab trained in.
    """
    from robustlab import TrainConfig, train_model
    from robustlab.models.adapter import trusted_inputs

    hands = {
        "hand": HandLoop(arch, steps),
        "hand_adapter": HandLoop(arch, steps, adapter=True),
        "hand_cl": HandLoop(arch, steps, channels_last=True),
    }
    orders = {k: h.order(len(x)) for k, h in hands.items()}
    parts = {"": FloorParts(arch), "_cl": FloorParts(arch, channels_last=True)}
    parts_keys = [p + tag for tag in parts for p in ("fb", "attack", "train")]
    spent = dict.fromkeys(("hand", "hand_adapter", "hand_cl", *parts_keys, "callback"), 0.0)

    def others(report: Any) -> None:
        t_in = time.process_time()
        for name, h in hands.items():
            idx = orders[name][report.step * batch : (report.step + 1) * batch]
            t0 = time.process_time()
            with trusted_inputs(h.net):  # the adapter's input checks off, as in robustlab's own loops
                h.step(x, y, idx)
            spent[name] += time.process_time() - t0
        for tag, part in parts.items():
            part.measure(x, y, orders["hand"][report.step * batch : (report.step + 1) * batch], spent, tag)
        spent["callback"] += time.process_time() - t_in

    model = _model(arch)
    cfg = TrainConfig(
        epochs=1,
        batch_size=batch,
        lr=LR,
        momentum=MOMENTUM,
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
        layout = train_model(model, x, y, cfg, run / "run", on_step=others).memory_format
        spent["robustlab"] = time.process_time() - t0 - spent["callback"]
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return spent, layout


def plain_network(net: nn.Module) -> nn.Sequential:
    """``net`` as an ``nn.Sequential`` of copies of its torch modules, which ART's environment unpickles without
    robustlab: a network made of a ``features`` sequence and a ``classifier`` (a sequence, fast_mnist's layout; or one
    linear layer after global average pooling, VGG's), checked to give the same logits on the dataset's inputs. A
    ``ToGrid``, which passes an input already on its grid through (fast_mnist on 28×28 images), becomes torch's
    ``nn.Identity``: the same computation.

    Raises:
        ValueError: another layout, a module that is not torch's own, or other logits.
    """
    features, classifier = getattr(net, "features", None), getattr(net, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Sequential | nn.Linear):
        raise ValueError(f"{type(net).__name__} is not a features sequence and a classifier")
    from robustlab.models.archs._layers import ToGrid

    head = (
        list(classifier)
        if isinstance(classifier, nn.Sequential)
        else [nn.AdaptiveAvgPool2d(1), nn.Flatten(), copy.deepcopy(classifier)]
    )
    plain = nn.Sequential(*(nn.Identity() if isinstance(m, ToGrid) else copy.deepcopy(m) for m in [*features, *head]))
    foreign = [type(m).__name__ for m in plain.modules() if not type(m).__module__.startswith("torch.")]
    if foreign:
        raise ValueError(f"modules outside torch: {', '.join(foreign)}")
    probe = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    was = net.training
    plain.eval(), net.eval()  # batch norm: compared on its running statistics, which the probe leaves as they were
    with torch.no_grad():
        same = torch.equal(plain(probe), net(probe))
    plain.train(was), net.train(was)
    if not same:
        raise ValueError("the sequential copy computes other logits")
    return plain


def art_epoch(
    art_python: str, arch: str, x: Tensor, y: Tensor, steps: int, batch: int, trainer: str, threads: int, retained: bool
) -> dict[str, Any]:
    """One ART epoch in ART's environment; its CPU seconds around ``fit`` and its versions. ``retained``: glibc
    keeps freed memory there too (its environment variables for what ``retain_freed_memory`` sets here)."""
    with tempfile.TemporaryDirectory(prefix="rl-bench-art-") as tmp:
        model_path, job_path, out_path = Path(tmp) / "net.pt", Path(tmp) / "job.pt", Path(tmp) / "out.json"
        torch.save(plain_network(_model(arch).net), model_path)
        job = {
            "model": str(model_path),
            "x": x.float() / 255,
            "y": y,
            "classes": 10,
            "eps": EPS,
            "eps_step": 2.5 * EPS / steps,
            "steps": steps,
            "batch": batch,
            "lr": LR,
            "momentum": MOMENTUM,
            "trainer": trainer,
            "threads": threads,
            "seed": 0,
        }
        torch.save(job, job_path)
        one = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        env = {**os.environ, "TQDM_DISABLE": "1", **one}  # numpy's BLAS on as many threads as torch
        if retained:
            env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
        subprocess.run([art_python, str(ART_SCRIPT), str(job_path), str(out_path)], check=True, env=env)
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


def _section(args: argparse.Namespace, result: dict[str, Any], best: dict[str, float]) -> str:
    from _common import describe_machine

    floor_fb, floor_parts = result["floor_steps_plus_1_fb_s"], result["floor_parts_s"]
    rows = [
        (f"robustlab `train_model` (trained {', '.join(result['robustlab_layout'])})", "robustlab"),
        ("hand-written loop", "hand"),
        ("hand-written loop through the `ModelAdapter`", "hand_adapter"),
        ("hand-written loop, weights channels-last", "hand_cl"),
    ]
    rows += [(ART_TRAINERS[t], f"art_{t}") for t in result["art"]["trainers"] if f"art_{t}" in best]
    lines = [
        f"{_heading(args)}: one PGD-AT epoch\n",
        f"`python benchmarks/training.py{_dataset_flag(args)} --n {args.n} --repeats {args.repeats}` — {args.arch}, "
        f"the first {args.n:,} {_NAMES[args.dataset]} training images, batch {args.batch}, PGD-{args.steps} at ε "
        f"{_eps_text()} (step 2.5·ε/{args.steps}, random "
        f"start), SGD, {args.threads} thread(s), CPU seconds of one epoch, the best of {args.repeats} rounds after "
        "an untimed warm-up, "
        + (
            "freed memory kept in the process as robustlab's command line keeps it (`retain_freed_memory`; ART's "
            "process through glibc's environment variables)"
            if result["freed_memory_retained"]
            else "glibc's default allocator (`ROBUSTLAB_MALLOC=system`)"
        )
        + ". robustlab's time is the whole `train_model` call (set-up, checkpoint and metrics "
        "written); the hand-written loops and the floor's parts run batch by batch between robustlab's steps (from "
        "its `on_step` callback, whose time is not robustlab's), so all of them see the same load; ART runs in its "
        "own environment after them in each round, its time taken around its trainer's `fit` alone. The floors are "
        "measured in both layouts (row-major and channels-last weights); the ratios are to the faster one.\n",
        "| | CPU s | × floor (steps+1)·(fwd+bwd) | × floor (steps·attack + train) | × robustlab |",
        "|---|---|---|---|---|",
    ]
    for label, key in rows:
        t = best[key]
        lines.append(
            f"| {label} | {t:.2f} | {t / floor_fb:.2f} | {t / floor_parts:.2f} | {t / best['robustlab']:.2f} |"
        )
    for layout, f in result["floors_by_layout_s"].items():
        lines.append(f"| floor (steps+1)·(fwd+bwd), {layout} | {f['fb']:.2f} | {f['fb'] / floor_fb:.2f} | | |")
    for layout, f in result["floors_by_layout_s"].items():
        lines.append(
            f"| floor steps·attack pass + training step, {layout} | {f['parts']:.2f} | | "
            f"{f['parts'] / floor_parts:.2f} | |"
        )
    lines[-1] += "\n"
    med = result["median_of_rounds"]
    sentences = [
        f"robustlab / floor {result['robustlab_over_floor']:.2f} (median of the rounds "
        f"{med['robustlab_over_floor']:.2f}; target ≤ 1.10)",
        f"robustlab / hand loop {result['robustlab_over_hand']:.2f} (median {med['robustlab_over_hand']:.2f}; "
        "target ≤ 1.00)",
        f"robustlab / hand loop through the adapter {result['robustlab_over_hand_adapter']:.2f} "
        f"(median {med['robustlab_over_hand_adapter']:.2f})",
        f"robustlab / hand loop channels-last {result['robustlab_over_hand_cl']:.2f} "
        f"(median {med['robustlab_over_hand_cl']:.2f}; like for like)",
        f"hand loop / floor {result['hand_over_floor']:.2f}",
    ]
    for t in result["art"]["trainers"]:
        if f"art_{t}_over_robustlab" in result:
            sentences.append(
                f"ART ({t}) / robustlab {result[f'art_{t}_over_robustlab']:.2f} (median "
                f"{med[f'art_{t}_over_robustlab']:.2f}; target ≥ 1.3)"
            )
    if result["art"].get("skipped"):
        sentences.append(f"ART not run: {result['art']['skipped']}")
    art = result["art"]
    art_versions = f" ART {art['version']} (its torch {art['torch']})." if "version" in art else ""
    start, end = (" ".join(f"{v:.1f}" for v in result[k]) for k in ("load_average_start", "load_average_end"))
    lines.append(
        "; ".join(sentences)
        + f". Load average {start} at the start and {end} at the end ("
        + (
            "other processes shared the 2 cores"
            if max(result["load_average_start"][0], result["load_average_end"][0]) > 1.5
            else "no other job on the machine"
        )
        + "). "
        + describe_machine(result["machine"])
        + art_versions
        + "\n"
    )
    return "\n".join(lines)


_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


def _eps_text() -> str:
    return f"{round(EPS * 255)}/255" if EPS < 0.1 else f"{EPS}"


def _dataset_flag(args: argparse.Namespace) -> str:
    return (
        "" if args.dataset == "mnist" and args.arch == "fast_mnist" else f" --dataset {args.dataset} --arch {args.arch}"
    )


def _heading(args: argparse.Namespace) -> str:
    """The section's heading: MNIST's (the issue's benchmark) keeps its own; another dataset's network has its own."""
    if args.dataset == "mnist":
        return "## Adversarial training"
    return f"## Adversarial training on {_NAMES[args.dataset]} ({args.arch})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="mnist", help="MNIST at ε 0.3 or CIFAR-10 at 8/255.")
    ap.add_argument(
        "--arch",
        default=None,
        help=f"Architecture (default fast_mnist on MNIST, vgg8-w25 on CIFAR-10); {', '.join(ARCHS)}.",
    )
    ap.add_argument("--n", type=int, default=10000, help="Training images (an epoch's size).")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--art-python", default="/work/art-venv/bin/python", help="Python of ART's own environment.")
    ap.add_argument(
        "--art-trainers", default=",".join(ART_TRAINERS), help=f"ART trainers to run: {', '.join(ART_TRAINERS)}."
    )
    ap.add_argument("--write", default=None, help="Markdown file to write the results section into.")
    args = ap.parse_args()
    global EPS, SHAPE
    EPS, SHAPE = DATASETS[args.dataset]
    args.arch = args.arch or ("fast_mnist" if args.dataset == "mnist" else "vgg8-w25")
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine, write_section

    from robustlab import load_dataset
    from robustlab._allocator import retain_freed_memory

    retained = retain_freed_memory()  # as robustlab's own processes (the command line) do; ROBUSTLAB_MALLOC=system: not
    torch.set_num_threads(args.threads)
    load_start = [round(v, 2) for v in os.getloadavg()]
    train = load_dataset(args.dataset, "train")
    x, y = train.x[: args.n], train.y[: args.n]
    art: dict[str, Any] = {"trainers": [t for t in args.art_trainers.split(",") if t]}
    unknown = [t for t in art["trainers"] if t not in ART_TRAINERS]
    if unknown:
        ap.error(f"unknown ART trainer(s) {', '.join(unknown)}; known: {', '.join(ART_TRAINERS)}")
    if not Path(args.art_python).is_file():
        art["skipped"] = f"no ART environment at {args.art_python} (--art-python)"
    else:
        try:
            plain_network(_model(args.arch).net)
        except ValueError as err:
            art["skipped"] = f"{args.arch} cannot be handed to ART's environment: {err}"
    if "skipped" in art:
        print(f"ART skipped: {art['skipped']}", file=sys.stderr)
    trainers = [] if "skipped" in art else art["trainers"]
    art_info: dict[str, dict[str, Any]] = {}

    layouts: set[str] = set()

    def round_(xs: Tensor, ys: Tensor) -> dict[str, float]:
        spent, layout = lockstep_epoch(args.arch, xs, ys, args.steps, args.batch)
        layouts.add(layout)
        for t in trainers:
            art_info[t] = art_epoch(
                args.art_python, args.arch, xs, ys, args.steps, args.batch, t, args.threads, retained
            )
            spent[f"art_{t}"] = float(art_info[t]["cpu_seconds"])
        return spent

    round_(x[: 2 * args.batch], y[: 2 * args.batch])  # untimed: imports and first calls
    runs: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for k, v in round_(x, y).items():
            runs.setdefault(k, []).append(v)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in runs.items()), flush=True)
    best = {k: min(v) for k, v in runs.items() if k != "callback"}
    # Each floor in both layouts; the faster layout's is the floor (the least the passes can cost here).
    floors = {
        tag: {
            "fb": (args.steps + 1) * best["fb" + tag],
            "parts": args.steps * best["attack" + tag] + best["train" + tag],
        }
        for tag in ("", "_cl")
    }
    floor_fb = min(f["fb"] for f in floors.values())
    floor_parts = min(f["parts"] for f in floors.values())
    rounds_floor = [(args.steps + 1) * min(a, b) for a, b in zip(runs["fb"], runs["fb_cl"], strict=True)]

    def med(num: list[float], den: list[float]) -> float:
        return round(statistics.median(n / d for n, d in zip(num, den, strict=True)), 3)

    median = {
        "robustlab_over_floor": med(runs["robustlab"], rounds_floor),
        "robustlab_over_hand": med(runs["robustlab"], runs["hand"]),
        "robustlab_over_hand_adapter": med(runs["robustlab"], runs["hand_adapter"]),
        "robustlab_over_hand_cl": med(runs["robustlab"], runs["hand_cl"]),
        "hand_over_floor": med(runs["hand"], rounds_floor),
    }
    result: dict[str, Any] = {
        "arch": args.arch,
        "dataset": args.dataset,
        "images": args.n,
        "batch": args.batch,
        "steps": args.steps,
        "eps": EPS,
        "repeats": args.repeats,
        "freed_memory_retained": retained,
        "robustlab_layout": sorted(layouts),
        "cpu_s": {k: round(v, 3) for k, v in best.items()},
        "all_cpu_s": {k: [round(t, 3) for t in v] for k, v in runs.items()},
        "floor_steps_plus_1_fb_s": round(floor_fb, 3),
        "floor_parts_s": round(floor_parts, 3),
        "floors_by_layout_s": {
            ("contiguous" if tag == "" else "channels_last"): {k: round(v, 3) for k, v in f.items()}
            for tag, f in floors.items()
        },
        "robustlab_over_floor": round(best["robustlab"] / floor_fb, 3),
        "robustlab_over_parts_floor": round(best["robustlab"] / floor_parts, 3),
        "robustlab_over_hand": round(best["robustlab"] / best["hand"], 3),
        "robustlab_over_hand_adapter": round(best["robustlab"] / best["hand_adapter"], 3),
        "robustlab_over_hand_cl": round(best["robustlab"] / best["hand_cl"], 3),
        "hand_over_floor": round(best["hand"] / floor_fb, 3),
        "hand_cl_over_floor": round(best["hand_cl"] / floor_fb, 3),
    }
    for t, out in art_info.items():
        key = f"art_{t}"
        result[f"{key}_over_robustlab"] = round(best[key] / best["robustlab"], 3)
        median[f"{key}_over_robustlab"] = med(runs[key], runs["robustlab"])
        art.update(version=out["art"], torch=out["torch"], numpy=out["numpy"])
        art[f"{t}_attack_batch"] = out["attack_batch"]
    result["median_of_rounds"] = median
    result["targets_met"] = {
        "at_most_1_10_floor": result["robustlab_over_floor"] <= 1.10,
        "at_most_hand": result["robustlab_over_hand"] <= 1.0,
        "at_most_hand_channels_last": result["robustlab_over_hand_cl"] <= 1.0,
        **{f"art_{t}_at_least_1_3": result[f"art_{t}_over_robustlab"] >= 1.3 for t in art_info},
    }
    result["art"] = art
    result["load_average_start"] = load_start
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["machine"] = machine()
    stem = "training" if args.dataset == "mnist" else f"training-{args.dataset}-{args.arch}"
    result_file = Path(__file__).parent / "results" / (f"{stem}.json" if retained else f"{stem}-system-malloc.json")
    result_file.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if args.write:
        # MNIST's heading is matched up to its colon, so that it does not take another dataset's section
        prefix = _heading(args) + (":" if args.dataset == "mnist" else "")
        write_section(Path(args.write), prefix, _section(args, result, best))


if __name__ == "__main__":
    main()
