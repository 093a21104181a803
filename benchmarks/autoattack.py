"""AutoAttack: robustlab against the reference (pyautoattack 0.2.0 = fra31/auto-attack) in one run, CPU time.

Parts (``--parts``, default all):

- ``resnet``: standard AutoAttack, L∞ 8/255, the published akamaster ResNet-20 on the first ``--n-resnet`` CIFAR-10
  test images (every point falls to APGD-CE: the work is what an implementation spends on points already broken).
- ``lenet``: standard AutoAttack, L∞ 0.3, advertorch's PGD-trained LeNet5 on the first ``--n-lenet`` MNIST test
  images (most points survive to the end: the work is the algorithm itself).
- ``resnet-linf1`` and ``resnet-l2``: the outcome comparison of issue 13 (the published ResNet-20 on the first
  ``--n-outcome`` CIFAR-10 test images at L∞ 1/255 and at L2 0.1, budgets where robust accuracy lies between 10 % and
  90 %): per-point verdicts, the paired test and the difference in robust accuracy (target: never significantly
  weaker, within 0.5 points). ``lenet`` with ``--n-lenet 1000`` is the third configuration.
- ``stages``: each attack of the standard cascade alone (as the cascade configures it) on the first
  ``--n-stages`` points of the ``lenet`` part, both sides, with their model calls, rows forwarded and the CPU
  seconds of those forward passes counted: where one implementation spends more than the other.
- ``iteration``: one APGD iteration against the floor of one forward + input-gradient pass (ResNet-20, a batch that
  is never fooled at a tiny eps, so every row runs every iteration).

Both sides run the same TorchScript model with the same number of threads; the reference runs in its own
virtualenv (``scripts/reference-env.sh``) as a subprocess, its CPU seconds measured inside it around
``run_standard_evaluation`` alone. Per-point verdicts are compared with the paired test of
``../shared/notes/autoattack.md`` §6.3 (a = robust in ours only, b = robust in the reference only).

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/autoattack.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _autoattack_ref import Counted
from _common import describe_machine, machine, write_section

from robustlab.attacks import attack
from robustlab.data import load_dataset
from robustlab.models import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "autoattack.json"
REF_SCRIPT = Path(__file__).resolve().parent / "_autoattack_ref.py"


class _Plain(nn.Module):
    """A model adapter's normalisation and network without its Python-side input checks (traceable)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.net = getattr(model, "net", model)
        self.register_buffer("mean", getattr(model, "mean", torch.zeros(1)).clone())
        self.register_buffer("std", getattr(model, "std", torch.ones(1)).clone())

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net((x - self.mean) / self.std)
        return out


def _traced(model: nn.Module, x: Tensor, path: Path) -> nn.Module:
    """The model as TorchScript, normalisation included: both implementations run exactly this."""
    traced = torch.jit.trace(_Plain(model).eval(), x[:2])
    traced.save(str(path))
    return torch.jit.load(str(path)).eval()


@contextmanager
def _reference(
    ref_python: str, model_file: Path, x: Tensor, y: Tensor, **job: Any
) -> Iterator[Callable[[], dict[str, Any]]]:
    """Start the reference on a job; the block gets a function that waits for it and returns its output."""
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.pt", Path(tmp) / "out.pt"
        torch.save({"model": str(model_file), "x": x, "y": y, **job}, job_path)
        proc = subprocess.Popen([ref_python, str(REF_SCRIPT), str(job_path), str(out_path)])

        def result() -> dict[str, Any]:
            if proc.wait() != 0:
                raise RuntimeError(f"the reference failed (exit {proc.returncode})")
            out: dict[str, Any] = torch.load(out_path, weights_only=False)
            return out

        try:
            yield result
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _mcnemar(ours: Tensor, ref: Tensor) -> dict[str, Any]:
    a = int((ours & ~ref).sum())  # robust in ours only: ours weaker there
    b = int((~ours & ref).sum())  # robust in the reference only: ours stronger there
    return {"robust_ours_only": a, "robust_reference_only": b, "weaker": a - b > 2 * math.sqrt(a + b) + 1}


def _chunk(
    net: nn.Module, model_file: Path, x: Tensor, y: Tensor, args: argparse.Namespace, **aa: Any
) -> dict[str, Any]:
    """Both implementations on one set of points: verdicts, CPU seconds, cascades (the unit a resumed run keeps)."""
    job = {
        "norm": {"linf": "Linf", "l2": "L2", "l1": "L1"}[aa["norm"]],
        "eps": aa["eps"],
        "version": "standard",
        "seed": 0,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "count": args.count,
    }
    counted = Counted(net) if args.count else None
    with _reference(args.ref_python, model_file, x, y, **job) as reference:
        if not args.side_by_side:
            ref = reference()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        res = attack(
            counted if counted is not None else net, x, y, "autoattack", norm=aa["norm"], eps=aa["eps"], seed=0,
            batch_size=args.batch_size,
        )  # fmt: skip
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if args.side_by_side:
            ref = reference()
    s = res.summary()
    # Every extra success of ours must be a verified adversarial example: the evaluator re-checked the budget.
    over = float(getattr(res, aa["norm"])[res.won].max()) if bool(res.won.any()) else 0.0
    return {
        "n": len(y),
        "clean_correct": round(s["clean_accuracy"] * len(y)),
        "robust": {"robustlab": res.robust.cpu(), "reference": ref["robust"].cpu()},
        "cascade": {
            "robustlab": [(c["attack"], c["robust_accuracy_after"], c["seconds"]) for c in s["cascade"]],
            "reference": ref["after"],
        },
        "cpu_seconds": {"robustlab": cpu, "reference": ref["cpu_seconds"]},
        "wall_seconds": {"robustlab": wall, "reference": ref["wall_seconds"]},
        "largest_distortion_of_a_success": over,
        "flags": s["flags"],
        **(
            {
                "calls": {"robustlab": counted.calls, "reference": ref["calls"]},
                "rows": {"robustlab": counted.rows, "reference": ref["rows"]},
                "forward_cpu_seconds": {"robustlab": counted.seconds, "reference": ref["forward_cpu_seconds"]},
            }
            if counted is not None
            else {}
        ),
    }


def _merge_cascades(chunks: list[dict[str, Any]], side: str) -> list[tuple[str, float, float]]:
    """Robust accuracy after each stage over all chunks (size-weighted) and its seconds summed (the reference's are
    wall seconds from its log, robustlab's the cascade's own wall timing), per stage, not cumulative."""
    n = sum(c["n"] for c in chunks)
    names = [row[0] for row in chunks[0]["cascade"][side]]
    out = []
    for i, name in enumerate(names):
        after = sum(c["cascade"][side][i][1] * c["n"] for c in chunks) / n
        seconds = sum(c["cascade"][side][i][2] if len(c["cascade"][side][i]) > 2 else math.nan for c in chunks)
        out.append((name, after, seconds))
    return out


def compare(name: str, model: nn.Module, x: Tensor, y: Tensor, args: argparse.Namespace, **aa: Any) -> dict[str, Any]:
    """Standard AutoAttack on ``(x, y)`` by both implementations, same model, threads and seed.

    With ``--state DIR`` the points go in chunks of ``--batch-size`` (one batch each, as both sides would batch
    them in one call), each chunk's outcome saved as it finishes; a rerun skips the chunks already saved, so an
    outcome comparison of CPU-hours can be spread over several sessions. The reference's randomness is the same
    either way (it re-seeds every attack on every batch); robustlab draws per point from the point's position in
    the call, so a chunked run draws differently from a single call (both are its default generator).
    """
    chunks: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.pt"
        net = _traced(model, x, model_file)
        if args.state is None:
            chunks.append(_chunk(net, model_file, x, y, args, **aa))
        else:
            folder = args.state / f"{name.replace(' ', '_').replace(',', '')}-{aa['norm']}-{aa['eps']:.6g}"
            folder.mkdir(parents=True, exist_ok=True)
            stop_at = len(y) if args.end_chunk is None else min(len(y), args.end_chunk * args.batch_size)
            for start in range(args.first_chunk * args.batch_size, stop_at, args.batch_size):
                stop = min(start + args.batch_size, len(y))
                f = folder / f"{start:06d}-{stop:06d}.pt"
                if f.is_file():
                    chunks.append(torch.load(f, weights_only=False))
                    print(f"[{name}] points {start}-{stop}: kept from {f}", flush=True)
                    continue
                out = _chunk(net, model_file, x[start:stop], y[start:stop], args, **aa)
                tmp_file = f.with_suffix(".tmp")
                torch.save(out, tmp_file)
                tmp_file.replace(f)  # a killed run never leaves a half-written chunk
                chunks.append(out)
                print(
                    f"[{name}] points {start}-{stop}: robust {float(out['robust']['robustlab'].float().mean()):.3f} "
                    f"(reference {float(out['robust']['reference'].float().mean()):.3f}), CPU s "
                    f"{out['cpu_seconds']['robustlab']:.0f} / {out['cpu_seconds']['reference']:.0f}",
                    flush=True,
                )
    n = sum(c["n"] for c in chunks)
    robust = torch.cat([c["robust"]["robustlab"] for c in chunks])
    ref_robust = torch.cat([c["robust"]["reference"] for c in chunks])
    cpu = {side: sum(c["cpu_seconds"][side] for c in chunks) for side in ("robustlab", "reference")}
    ra = {"robustlab": float(robust.double().mean()), "reference": float(ref_robust.double().mean())}
    out = {
        "part": name,
        "n": n,
        "chunks": len(chunks),
        "norm": aa["norm"],
        "eps": aa["eps"],
        "clean_accuracy": sum(c["clean_correct"] for c in chunks) / n,
        "robust_accuracy": ra,
        "cascade": {
            "robustlab": _merge_cascades(chunks, "robustlab"),
            "reference": _merge_cascades(chunks, "reference"),
        },
        "cpu_seconds": cpu,
        "wall_seconds": {side: sum(c["wall_seconds"][side] for c in chunks) for side in ("robustlab", "reference")},
        "speedup_cpu": cpu["reference"] / cpu["robustlab"] if cpu["robustlab"] else None,
        "verdicts": _mcnemar(robust, ref_robust),
        "difference_points": 100 * (ra["robustlab"] - ra["reference"]),
        "largest_distortion_of_a_success": max(c["largest_distortion_of_a_success"] for c in chunks),
        "flags": sorted({f for c in chunks for f in c["flags"]}),
        **{
            key: {side: sum(c[key][side] for c in chunks) for side in ("robustlab", "reference")}
            for key in ("calls", "rows", "forward_cpu_seconds")
            if all(key in c for c in chunks)
        },
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


#: The standard cascade's attacks as robustlab registers them: (stage, attack, settings, steps).
_STAGES = {
    "apgd-ce": ("apgd", {"loss": "ce"}, 100),
    "apgd-t": ("apgd-t", {"n_target_classes": 9}, 100),
    "fab-t": ("fab-t", {"targets": 9}, 100),
    "square": ("square", {"queries": 5000, "p_init": 0.8}, None),
}


def stages(model: nn.Module, x: Tensor, y: Tensor, args: argparse.Namespace, **aa: Any) -> dict[str, Any]:
    """Each stage of the cascade alone on every point, both sides (the reference at the same time as ours with
    ``--side-by-side``), with model calls, rows and forward CPU seconds."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.pt"
        net = _traced(model, x, model_file)
        for name, (attack_name, params, steps) in _STAGES.items():
            job = {"norm": "Linf", "eps": aa["eps"], "seed": 0, "threads": args.threads, "stage": name}
            with _reference(args.ref_python, model_file, x, y, **job) as reference:
                if not args.side_by_side:
                    ref = reference()
                counted = Counted(net)
                cpu0 = time.process_time()
                res = attack(
                    counted, x, y, attack_name, norm=aa["norm"], eps=aa["eps"], seed=0, steps=steps,
                    batch_size=args.batch_size, **params,
                )  # fmt: skip
                cpu = time.process_time() - cpu0
                if args.side_by_side:
                    ref = reference()
            row = {
                "stage": name,
                "robust": {
                    "robustlab": float(res.robust.double().mean()),
                    "reference": float(ref["robust"].double().mean()),
                },
                "cpu_seconds": {"robustlab": cpu, "reference": ref["cpu_seconds"]},
                "calls": {"robustlab": counted.calls, "reference": ref["calls"]},
                "rows": {"robustlab": counted.rows, "reference": ref["rows"]},
                "forward_cpu_seconds": {"robustlab": counted.seconds, "reference": ref["forward_cpu_seconds"]},
                "speedup_cpu": ref["cpu_seconds"] / cpu,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    total = {side: sum(r["cpu_seconds"][side] for r in rows) for side in ("robustlab", "reference")}
    return {"part": "stages", "n": len(y), "norm": aa["norm"], "eps": aa["eps"], "stages": rows, "cpu_seconds": total,
            "speedup_cpu": total["reference"] / total["robustlab"]}  # fmt: skip


def iteration(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per APGD iteration against one forward + input-gradient pass on the same never-fooled batch."""
    data = load_dataset("cifar10", "test")
    x, y = data.images()[: args.iter_batch], data.y[: args.iter_batch].long()
    net = _Plain(load_model("resnet20-akamaster")).eval()
    keep = net(x).argmax(1) == y
    x, y = x[keep], y[keep]
    steps = args.iter_steps

    def floor() -> float:
        t0 = time.process_time()
        for _ in range(steps):
            xi = x.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(net(xi), y, reduction="sum")
            torch.autograd.grad(loss, xi)
        return (time.process_time() - t0) / steps

    def forward() -> float:
        t0 = time.process_time()
        with torch.no_grad():
            net(x)
        return time.process_time() - t0

    def apgd() -> float:
        t0 = time.process_time()
        res = attack(net, x, y, "apgd", eps=1e-4, steps=steps, seed=0, batch_size=None)
        total = time.process_time() - t0
        assert int(res.won.sum()) == 0, "the iteration benchmark needs a batch that is never fooled"
        # attack() adds the clean pass and the evaluator's pass (two forwards) around APGD's steps + 1 passes.
        return (total - 2 * min(forward() for _ in range(3))) / (steps + 1)

    floor()  # warm-up
    f = min(floor() for _ in range(3))
    a = min(apgd() for _ in range(3))
    out = {"part": "iteration", "batch": len(y), "floor_cpu_s": f, "apgd_cpu_s": a, "ratio": a / f}
    print(json.dumps(out), flush=True)
    return out


def docs(results: list[dict[str, Any]], m: dict[str, Any]) -> str:
    lines = [
        "## AutoAttack: robustlab against the reference (benchmarks/autoattack.py)",
        "",
        describe_machine(m),
        "",
        "Standard AutoAttack by robustlab and by the reference (pyautoattack 0.2.0, algorithm-identical to "
        "fra31/auto-attack, in its own virtualenv) on the same TorchScript model, inputs, seed, batch size and "
        "threads; CPU seconds of the evaluation alone. Verdicts: points robust in one implementation only.",
        "",
        "| part | n | ε | clean | robust (robustlab) | robust (reference) | robust ours only / ref only | "
        "CPU s robustlab | CPU s reference | speed-up |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    results = sorted(results, key=lambda r: (r["part"], r.get("n", 0)))
    for r in results:
        if r["part"] in ("iteration", "stages"):
            continue
        v = r["verdicts"]
        lines.append(
            f"| {r['part']} | {r['n']} | {r['norm']} {r['eps']:.4g} | {r['clean_accuracy']:.2%} | "
            f"{r['robust_accuracy']['robustlab']:.2%} | {r['robust_accuracy']['reference']:.2%} | "
            f"{v['robust_ours_only']} / {v['robust_reference_only']}{' (**weaker**)' if v['weaker'] else ''} | "
            f"{r['cpu_seconds']['robustlab']:.1f} | "
            f"{r['cpu_seconds']['reference']:.1f} | {r['speedup_cpu']:.2f}× |"
        )
    for r in results:
        if r["part"] == "iteration":
            lines += [
                "",
                f"One APGD iteration on a never-fooled batch of {r['batch']} CIFAR-10 images (ResNet-20): "
                f"{r['apgd_cpu_s']:.3f} CPU s against {r['floor_cpu_s']:.3f} CPU s for one forward + input-gradient "
                f"pass, **{r['ratio']:.3f}×** the floor.",
            ]
    for r in results:
        if r["part"] == "stages":
            lines += [
                "",
                f"Each stage alone on the first {r['n']} points (L∞ {r['eps']:g}, the PGD-trained LeNet5): "
                "CPU seconds, model calls, rows forwarded, CPU seconds inside the model's forward passes "
                "(robustlab / reference).",
                "",
                "| stage | robust | CPU s | calls | rows | forward CPU s | speed-up |",
                "|---|---|---:|---:|---:|---:|---:|",
            ]
            for st in r["stages"]:
                a, c = st["robust"], st["cpu_seconds"]
                lines.append(
                    f"| {st['stage']} | {a['robustlab']:.1%} / {a['reference']:.1%} | {c['robustlab']:.1f} / "
                    f"{c['reference']:.1f} | {st['calls']['robustlab']} / {st['calls']['reference']} | "
                    f"{st['rows']['robustlab']} / {st['rows']['reference']} | "
                    f"{st['forward_cpu_seconds']['robustlab']:.1f} / {st['forward_cpu_seconds']['reference']:.1f} | "
                    f"{st['speedup_cpu']:.2f}× |"
                )
            lines.append(f"| all four | | | | | | **{r['speedup_cpu']:.2f}×** |")
    for r in results:
        if r["part"] not in ("iteration", "stages"):
            run = r.get("machine")
            when = "" if run is None else f" (commit {run['commit']}, load average {run['load_average']})"
            lines += [
                "",
                f"Cascade, {r['part']}, n {r['n']}{when}: robustlab {r['cascade']['robustlab']}; "
                f"reference {r['cascade']['reference']}.",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref-python", default=str(ROOT.parent / "ref-venv" / "bin" / "python"))
    p.add_argument("--parts", default="iteration,resnet,lenet")
    p.add_argument("--n-resnet", type=int, default=1000)
    p.add_argument("--n-lenet", type=int, default=200)
    p.add_argument("--n-stages", type=int, default=200, help="Points of the stages part (LeNet5, MNIST).")
    p.add_argument("--n-outcome", type=int, default=1000, help="Points of the resnet-linf1 and resnet-l2 parts.")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iter-batch", type=int, default=128)
    p.add_argument("--iter-steps", type=int, default=20)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--state",
        type=Path,
        help="Save each chunk of --batch-size points as it finishes and skip saved ones on a rerun (resumable).",
    )
    p.add_argument(
        "--first-chunk",
        type=int,
        default=0,
        help="With --state: begin at this chunk (0-based), so that a second process can take later chunks of the "
        "same run on another core; the result then covers the chunks from there on, and a final run from chunk 0 "
        "keeps every saved chunk and reports them all.",
    )
    p.add_argument(
        "--end-chunk",
        type=int,
        default=None,
        help="With --state: stop before this chunk (0-based), so that a process given --first-chunk 0 --end-chunk 2 "
        "does not go on to redo the chunks a second process (--first-chunk 2) is still running. Default: the last.",
    )
    p.add_argument(
        "--side-by-side",
        action="store_true",
        help="Run the reference at the same time as robustlab (each on its own threads), so that both see the same "
        "load on a shared machine; by default the reference runs first, then robustlab.",
    )
    p.add_argument(
        "--count",
        action="store_true",
        help="Count each side's model calls, rows and the CPU seconds inside the model's forward passes (a thin "
        "wrapper around the model on both sides).",
    )
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    if args.end_chunk is not None and args.end_chunk <= args.first_chunk:
        p.error(f"--end-chunk {args.end_chunk} must be above --first-chunk {args.first_chunk}")
    torch.set_num_threads(args.threads)
    m = machine()
    results = []
    parts = args.parts.split(",")
    if "iteration" in parts:
        results.append(iteration(args))
    if "resnet" in parts:
        data = load_dataset("cifar10", "test")
        x, y = data.images()[: args.n_resnet], data.y[: args.n_resnet].long()
        results.append(
            compare("resnet20 (standard)", load_model("resnet20-akamaster"), x, y, args, norm="linf", eps=8 / 255)
        )
    for part, norm, eps in (("resnet-linf1", "linf", 1 / 255), ("resnet-l2", "l2", 0.1)):
        if part in parts:
            data = load_dataset("cifar10", "test")
            x, y = data.images()[: args.n_outcome], data.y[: args.n_outcome].long()
            model = load_model("resnet20-akamaster")
            results.append(compare(f"resnet20 (standard), {part}", model, x, y, args, norm=norm, eps=eps))
    if "stages" in parts:
        from _lenet5 import lenet5

        data = load_dataset("mnist", "test")
        x, y = data.images()[: args.n_stages], data.y[: args.n_stages].long()
        results.append(stages(lenet5(), x, y, args, norm="linf", eps=0.3))
    if "lenet" in parts:
        from _lenet5 import lenet5

        data = load_dataset("mnist", "test")
        x, y = data.images()[: args.n_lenet], data.y[: args.n_lenet].long()
        results.append(compare("lenet5 (PGD-trained)", lenet5(), x, y, args, norm="linf", eps=0.3))
    # Parts run on their own (they take CPU-hours) accumulate in RESULTS: a new result replaces the one of the same
    # part and size, and the docs section is written from all of them.
    # A run over a range of chunks (--first-chunk / --end-chunk) is one worker's share of a larger run: it is
    # printed (and written to --json) but not stored, so that it never replaces or sits beside the whole run's result.
    for r in results:
        r["machine"] = m
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "results": results}, indent=1))
    if args.first_chunk or args.end_chunk is not None:
        print(f"a range of chunks: not stored in {RESULTS.name}; a run from chunk 0 reports them all", flush=True)
        return
    stored = json.loads(RESULTS.read_text())["results"] if RESULTS.is_file() else []
    fresh = {(r["part"], r.get("n")) for r in results}
    merged = [r for r in stored if (r["part"], r.get("n")) not in fresh] + results
    RESULTS.write_text(json.dumps({"results": merged}, indent=1) + "\n")
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "## AutoAttack: robustlab against", docs(merged, m))


if __name__ == "__main__":
    main()
