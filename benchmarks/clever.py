"""CLEVER benchmark: robustlab vs. ART's ``clever_u`` / ``clever_t`` and vs. our own gradient floor.

Same small CNN (a LeNet-5-sized CIFAR-10 network, ~62 k parameters, trained here for a few seeded epochs on
the offline training file), same correctly classified test images, same budget (``N_b`` batches × ``N_s``
samples, radius ``R``). Times are CPU seconds of this process (one thread), with wall seconds alongside: on a
shared, busy machine wall time mostly measures waiting. Reports:

- agreement: per image, mean and standard deviation of the score over seeds for both libraries (their
  Monte-Carlo spread) and the difference of the means in units of that spread;
- time per input: robustlab (all images in one call) vs. ART (one image at a time, as its API works);
- robustlab vs. its gradient floor: the same margin gradients (``N_b · N_s`` points × targets, the same batch
  size, one forward and one backward per target, precomputed points) with nothing else: no sampling, norms
  or fits. A naive floor (one forward + backward per target) is shown too.

Run it with an environment that has ART (not a robustlab dependency), under ``nice`` on a shared machine::

    nice -n 19 /work/peers-venv/bin/python benchmarks/clever.py --json clever.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import art_classifier, machine  # benchmarks/, first on sys.path when a script runs
from torch import Tensor, nn

import robustlab
from robustlab._allocator import retain_freed_memory
from robustlab.metrics import clever
from robustlab.models import ModelAdapter
from robustlab.models.adapter import trusted_inputs
from robustlab.threat import get_norm

log = logging.getLogger("benchmarks.clever")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
ART_NORM = {"l1": 1, "l2": 2, "linf": np.inf}


def make_model(data_dir: str | None, epochs: int, seed: int = 0) -> tuple[ModelAdapter, float]:
    """A LeNet-5-sized CNN trained for ``epochs`` on the offline CIFAR-10 training rows; its test accuracy."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )
    model = ModelAdapter(net, num_classes=10, input_shape=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD, name="lenet")
    train = robustlab.load_dataset("cifar10", "train", data_dir)
    x, y = train.images(), train.y
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(128):
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test = robustlab.load_dataset("cifar10", "test", data_dir)
    acc = float((model.predict(test.images()) == test.y).float().mean())
    return model, acc


def pick_inputs(model: ModelAdapter, data_dir: str | None, n: int, seed: int) -> Tensor:
    """``n`` correctly classified test images from a seeded shuffle."""
    test = robustlab.load_dataset("cifar10", "test", data_dir).subset(20 * n, seed)
    x = test.images()
    keep = (model.predict(x) == test.y).nonzero().flatten()[:n]
    return x[keep]


def art_scores(clf: Any, x: Tensor, norm: str, target: str, batches: int, samples: int, radius: float, seed: int):
    """ART's scores for each image (global numpy seed, as ART draws from ``np.random``) and seconds."""
    from art.metrics import clever_t, clever_u

    np.random.seed(seed)
    out = []
    t0 = time.perf_counter()
    for xi in x.numpy():
        if target == "untargeted":
            out.append(clever_u(clf, xi, batches, samples, radius, ART_NORM[norm], verbose=False))
        else:  # top2: the runner-up class of the clean prediction
            logits = clf.predict(xi[None])[0]
            k = int(np.argsort(logits)[-2])
            out.append(clever_t(clf, xi, k, batches, samples, radius, ART_NORM[norm]))
    return [float(s) for s in out], time.perf_counter() - t0


def gradient_floor(model: nn.Module, x: Tensor, norm: str, radius: float, points: int, batch_size: int, naive: bool):
    """CPU seconds for the margin gradients our estimator needs, and nothing else.

    Points (``points`` per input, drawn in the ball and clipped beforehand, untimed) go through forward passes
    of ``batch_size`` rows; each row needs the gradient of ``z_y - z_k`` for every ``k != y``: one backward per
    target after one forward (``naive``: one forward + backward per target).
    """
    nrm = get_norm(norm)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        y = model(x).argmax(1)
    pts = torch.cat(
        [(xi.expand(points, *xi.shape) + nrm.random_init(xi.expand(points, *xi.shape), radius, g)) for xi in x]
    )
    pts = pts.clamp(0, 1)
    ys = y.repeat_interleave(points)
    k = 10
    t0 = time.process_time()
    with trusted_inputs(model):  # the network's passes only, as robustlab's own loop runs them
        _floor_passes(model, pts, ys, k, batch_size, naive)
    return time.process_time() - t0


def _floor_passes(model: nn.Module, pts: Tensor, ys: Tensor, k: int, batch_size: int, naive: bool) -> None:
    for start in range(0, len(pts), batch_size):
        xb, yb = pts[start : start + batch_size].clone().requires_grad_(True), ys[start : start + batch_size]
        others = [(yb + s) % k for s in range(1, k)]
        if naive:
            for kb in others:
                z = model(xb)
                torch.autograd.grad((z.gather(1, yb[:, None]) - z.gather(1, kb[:, None])).sum(), xb)
        else:
            z = model(xb)
            for j, kb in enumerate(others):
                cot = torch.zeros_like(z).scatter_(1, yb[:, None], 1.0).scatter_(1, kb[:, None], -1.0)
                torch.autograd.grad(z, xb, cot, retain_graph=j < len(others) - 1)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and CPU seconds of this process (the robust measure on a shared machine: with one
    thread the CPU time is the work done, whatever else runs)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def rescore(r: Any, scale_reg: float | None) -> list[float]:
    """Scores of ``r`` refitted from the same gradient maxima with another fit (no new gradients); ``None``:
    the largest sampled gradient norm (no fit)."""
    from robustlab.metrics._weibull import fit_reverse_weibull

    m = r.batch_maxima
    if scale_reg is None:
        loc = r.max_gradient_norm
    else:
        loc = torch.from_numpy(fit_reverse_weibull(m.reshape(-1, m.shape[-1]).numpy(), scale_reg=scale_reg).location)
        loc = loc.reshape(m.shape[:2])
    s = torch.where(r.margin > 0, (r.margin.clamp_min(0) / loc).clamp_max(r.radius), torch.zeros_like(loc))
    return s.amin(1).tolist()


def agreement(ours: list[list[float]], art: list[list[float]]) -> dict[str, Any]:
    """Per image: means and sample standard deviations over seeds, relative difference, difference in spreads."""
    o, a = np.array(ours), np.array(art)  # (seeds, N)
    mo, ma = o.mean(0), a.mean(0)
    so, sa = o.std(0, ddof=1), a.std(0, ddof=1)
    spread = np.sqrt((so**2 + sa**2) / 2)
    z = np.abs(mo - ma) / np.where(spread > 0, spread, np.nan)
    return {
        "ours_mean": mo.tolist(),
        "ours_sd": so.tolist(),
        "art_mean": ma.tolist(),
        "art_sd": sa.tolist(),
        "rel_diff": ((mo - ma) / ma).tolist(),
        "diff_in_spreads": z.tolist(),
        "ours_cv_median": float(np.median(so / mo)),
        "art_cv_median": float(np.median(sa / ma)),
        "median_rel_diff": float(np.median(np.abs((mo - ma) / ma))),
        "max_diff_in_spreads": float(np.nanmax(z)),
    }


def run_setting(model, clf, x, norm, target, batches, samples, radius, seeds, batch_size) -> dict[str, Any]:
    n = len(x)
    ours, ours_mle, ours_max, art = [], [], [], []
    t_ours, t_art = [], []  # (wall, cpu) per input
    for s in range(seeds):  # interleaved, so load changes on a shared machine hit both
        r, wall, cpu = timed(
            lambda s=s: clever(
                model,
                x,
                norm=norm,
                target=target,
                batches=batches,
                samples=samples,
                radius=radius,
                seed=s,
                batch_size=batch_size,
            )
        )
        ours.append(r.score.tolist())
        ours_mle.append(rescore(r, 0.0))
        ours_max.append(rescore(r, None))
        t_ours.append((wall / n, cpu / n))
        (sa, _), wall_a, cpu_a = timed(lambda s=s: art_scores(clf, x, norm, target, batches, samples, radius, s))
        art.append(sa)
        t_art.append((wall_a / n, cpu_a / n))
        log.info("%s %s seed %d: ours %.3fs CPU/input, ART %.3fs CPU/input", norm, target, s, cpu / n, cpu_a / n)
    out = {
        "norm": norm,
        "target": target,
        "radius": radius,
        "seeds": seeds,
        "n": n,
        "agreement": agreement(ours, art),
        "agreement_plain_mle": agreement(ours_mle, art),
        "agreement_max_sample": agreement(ours_max, art),
        "ours_cpu_s_per_input": statistics.median(c for _, c in t_ours),
        "art_cpu_s_per_input": statistics.median(c for _, c in t_art),
        "ours_wall_s_per_input": statistics.median(w for w, _ in t_ours),
        "art_wall_s_per_input": statistics.median(w for w, _ in t_art),
    }
    out["speedup_vs_art_cpu"] = out["art_cpu_s_per_input"] / out["ours_cpu_s_per_input"]
    out["speedup_vs_art_wall"] = out["art_wall_s_per_input"] / out["ours_wall_s_per_input"]
    return out


def floor_setting(model, x, norm, batches, samples, radius, batch_size, repeats) -> dict[str, Any]:
    """Ours vs. the gradient floor (untargeted: 9 targets), interleaved, CPU-time medians over repeats."""
    from robustlab.metrics._weibull import fit_reverse_weibull

    n = len(x)
    ours, floor, naive, fits = [], [], [], []
    for rep in range(repeats):
        r, _, cpu = timed(
            lambda rep=rep: clever(
                model, x, norm=norm, batches=batches, samples=samples, radius=radius, seed=rep, batch_size=batch_size
            )
        )
        ours.append(cpu / n)
        floor.append(gradient_floor(model, x, norm, radius, batches * samples, batch_size, naive=False) / n)
        naive.append(gradient_floor(model, x, norm, radius, batches * samples, batch_size, naive=True) / n)
        m = r.batch_maxima.reshape(-1, r.batch_maxima.shape[-1]).numpy()
        fits.append(timed(lambda m=m: fit_reverse_weibull(m, scale_reg=0.01))[2] / n)
        log.info(
            "floor rep %d: ours %.3f, floor %.3f, naive %.3f, fit %.3f CPU s/input",
            rep,
            ours[-1],
            floor[-1],
            naive[-1],
            fits[-1],
        )
    o, f, nv = statistics.median(ours), statistics.median(floor), statistics.median(naive)
    return {
        "norm": norm,
        "n": n,
        "repeats": repeats,
        "gradients_per_input": batches * samples * 9,
        "ours_cpu_s_per_input": o,
        "floor_cpu_s_per_input": f,
        "naive_floor_cpu_s_per_input": nv,
        "fit_cpu_s_per_input": statistics.median(fits),
        "ours_over_floor": o / f,
        "ours_over_naive_floor": o / nv,
        "pair_ratios": [a / b for a, b in zip(ours, floor, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5, help="images")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the CNN")
    parser.add_argument("--batch-size", type=int, default=500, help="our sample points per forward pass")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the floor comparison")
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--settings", default="l2:untargeted:5:5,linf:top2:0.1:3,l1:top2:30:3", help="norm:target:R:seeds"
    )
    parser.add_argument("--only", choices=["agreement", "floor"], default=None, help="run one part")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()  # as robustlab's own processes do; every library here runs in this process

    model, acc = make_model(args.data, args.epochs)
    x = pick_inputs(model, args.data, args.n, seed=1)
    clf = art_classifier(model)
    log.info("model test accuracy %.3f, %d inputs", acc, len(x))
    results: dict[str, Any] = {
        "machine": {**machine("scipy", "art"), "freed_memory_retained": retained},
        "model": {"name": "lenet5-cifar10", "params": sum(p.numel() for p in model.parameters()), "test_acc": acc},
        "budget": {"batches": args.batches, "samples": args.samples, "art_pool_factor": 10},
        "settings": [],
    }
    for item in args.settings.split(",") if args.only != "floor" else []:
        norm, target, radius, seeds = item.split(":")
        results["settings"].append(
            run_setting(
                model, clf, x, norm, target, args.batches, args.samples, float(radius), int(seeds), args.batch_size
            )
        )
        log.info("%s", json.dumps(results["settings"][-1]))
    if args.only == "agreement":
        results["floor"] = None
    else:
        results["floor"] = floor_setting(model, x, "l2", args.batches, args.samples, 5.0, args.batch_size, args.repeats)
    log.info("%s", json.dumps(results["floor"]))
    text = json.dumps(results, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
