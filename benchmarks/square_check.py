"""Square Attack: robustlab against the reference (pyautoattack 0.2.0 = fra31/auto-attack) on the same points.

advertorch's PGD-trained LeNet5 (``../shared/data/pretrained-advertorch-lenet5-mnist``), the first ``--n`` MNIST
test images, L∞ 0.3, ``--queries`` queries, p_init 0.8: robust accuracy (clean errors count as not robust, as in
advertorch's published 89.29 % on the 10,000 test images) and CPU seconds of each implementation, plus the per-point
agreement (a = robust in ours only, b = robust in the reference only) and the queries spent.

advertorch's benchmark ran its Square port with its default ``resc_schedule=True`` (the p schedule stretched to the
1,000 queries); AutoAttack runs ``resc_schedule=False``. ``--schedule`` picks one or both (default: both).
``--rng`` picks robustlab's randomness: ``ours`` (per-point windows, the default) and/or ``reference``
(``reference_rng=True``: the reference's batch-shared windows, expected to give the same queries per point).

Both sides run the same TorchScript model on ``--threads`` threads (default 1) with the same chunks of
``--batch-size`` clean-correct points (AutoAttack's 250); the reference runs in its own virtualenv as a subprocess.

    ROBUSTLAB_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/square_check.py
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from _lenet5 import lenet5

import robustlab.attacks._square  # noqa: F401 - registers "square"
from robustlab.attacks import attack
from robustlab.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
REF_SCRIPT = Path(__file__).resolve().parent / "_square_ref.py"
RESULTS = Path(__file__).resolve().parent / "results" / "square_check.json"


def _reference(ref_python: str, model_file: Path, x: Tensor, y: Tensor, **job: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.pt", Path(tmp) / "out.pt"
        torch.save({"model": str(model_file), "x": x, "y": y, **job}, job_path)
        subprocess.run([ref_python, str(REF_SCRIPT), str(job_path), str(out_path)], check=True)
        out: dict[str, Any] = torch.load(out_path, weights_only=False)
        return out


def _summary(robust: Tensor, queries: Tensor, cpu: float, wall: float) -> dict[str, Any]:
    fooled = (queries > 0) & ~robust
    return {
        "robust_accuracy": round(float(robust.float().mean()), 4),
        "robust": int(robust.sum()),
        "fooled_by_square": int(fooled.sum()),
        "median_queries_fooled": float(queries[fooled].median()) if bool(fooled.any()) else None,
        "total_queries": int(queries.sum()),
        "cpu_seconds": round(cpu, 1),
        "wall_seconds": round(wall, 1),
    }


def _agreement(ours: Tensor, ref: Tensor) -> dict[str, Any]:
    a = int((ours & ~ref).sum())  # robust in ours only
    b = int((~ours & ref).sum())  # robust in the reference only
    return {"robust_ours_only": a, "robust_reference_only": b, "ours_weaker": a - b > 2 * math.sqrt(a + b) + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", choices=["rescaled", "autoattack", "both"], default="both")
    parser.add_argument("--rng", choices=["ours", "reference", "both"], default="ours")
    parser.add_argument("--ref-python", default=str(ROOT / ".." / "ref-venv" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist", "test", download=False)
    x, y = ds.images()[: args.n].float(), ds.y[: args.n]
    net = lenet5().net.eval()  # type: ignore[union-attr]
    results: dict[str, Any] = {
        "model": "advertorch LeNet5 (PGD-trained)",
        "images": args.n,
        "norm": "linf",
        "eps": args.eps,
        "queries": args.queries,
        "p_init": 0.8,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "published": "advertorch: 89.29 % robust on 10,000 images (its Square port, resc_schedule=True)",
        "runs": {},
    }
    schedules = {"rescaled": [True], "autoattack": [False], "both": [True, False]}[args.schedule]
    rngs = {"ours": [False], "reference": [True], "both": [False, True]}[args.rng]
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.pt"
        torch.jit.trace(net, x[:2]).save(str(model_file))
        model = torch.jit.load(str(model_file)).eval()
        for rescale in schedules:
            name = "rescaled" if rescale else "autoattack"
            ref = _reference(
                args.ref_python,
                model_file,
                x,
                y,
                norm="Linf",
                eps=args.eps,
                queries=args.queries,
                p_init=0.8,
                seed=args.seed,
                rescale=rescale,
                batch_size=args.batch_size,
                threads=args.threads,
            )
            run: dict[str, Any] = {
                "reference": _summary(ref["robust"], ref["queries"], ref["cpu_seconds"], ref["wall_seconds"])
            }
            results["runs"][name] = run
            _write(args.out, results)
            print(name, "reference", run["reference"], flush=True)
            for reference_rng in rngs:
                label = "ours_reference_rng" if reference_rng else "ours"
                cpu0, wall0 = time.process_time(), time.perf_counter()
                result = attack(
                    model,
                    x,
                    y,
                    "square",
                    norm="linf",
                    eps=args.eps,
                    seed=args.seed,
                    batch_size=args.batch_size,
                    queries=args.queries,
                    p_init=0.8,
                    rescale_schedule=rescale,
                    reference_rng=reference_rng,
                )
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                queries = torch.tensor(result.columns["queries"])
                run[label] = _summary(result.robust, queries, cpu, wall)
                run[label]["agreement"] = _agreement(result.robust, ref["robust"])
                if reference_rng:
                    run[label]["same_queries_as_reference"] = bool(torch.equal(queries, ref["queries"]))
                print(name, label, run[label], flush=True)
                results["runs"][name] = run
                _write(args.out, results)  # after every run: a long benchmark keeps what it finished
    print(json.dumps(results, indent=2))


def _write(path: Path, results: dict[str, Any]) -> None:
    results["machine"] = machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
