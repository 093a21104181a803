"""The audit's total cost against the sum of its attacks run alone on the shrinking robust set (issue 17's target:
at most 1.2×), in per-sample model calls and in CPU time, measured in one run.

The audit (:func:`robustlab.audit.audit`) runs one clean pass, the model checks, each ladder rung only on the
points still robust, the judging of every candidate and the honest number at the end. "Its attacks run alone" is
each rung's attack by itself, with nothing shared: the same configured attack, the same seed, on the rows that rung
attacked in the audit (every clean-correct point for FGSM, the short PGD and the ε sweep; for every other rung the
points no earlier rung broke, read from the audit's ``broken_by``), each candidate projected, clipped and judged by
one forward pass (the evaluator's rule, which any attack run alone pays too). A rung that continues another's runs
(the long PGD from the short one, the guided PGD from the transfer points) starts from the candidates its
predecessor produced alone. The rows each rung attacked alone must equal the audit's ``attacked``, and the points
it broke its ``broken`` (the same seeds give the same runs): the script checks both, so that the comparison is
like for like.

    ROBUSTLAB_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/audit.py --threads 1 --write docs/benchmarks.md

CPU time is the process's (``time.process_time``), so a loaded machine's waiting does not count; with one torch
thread it is the work done. Results go to ``benchmarks/results/audit.json`` (with ``--write``, a section of that
Markdown file).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, machine, write_section

from robustlab.attacks import ATTACKS, Batch, PassCounter, RunContext, constrain
from robustlab.audit import AuditConfig, AuditResult, Rung, audit, build_ladder
from robustlab.audit._ladder import rung_seed
from robustlab.data import load_dataset
from robustlab.models import ZOO_DIR, load_model
from robustlab.models.adapter import eval_mode, predict_logits, trusted_inputs
from robustlab.threat import get_norm

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
TARGET = 1.2
#: Reduced budgets (AuditConfig fields): a few CPU minutes for the whole comparison on 2 cores.
BUDGETS = {"steps_long": 50, "apgd_steps": 50, "restarts": 2, "square_queries": 300}


@dataclasses.dataclass(frozen=True)
class Alone:
    """One rung run by itself: rows attacked and broken, per-sample model calls and seconds."""

    attack: str
    attacked: int
    broken: int
    gradient_passes: int
    forward_passes: int
    cpu_s: float
    wall_s: float

    @property
    def calls(self) -> int:
        return self.gradient_passes + self.forward_passes


def _rows_of(result: AuditResult, rung: Rung, clean_correct: Tensor, order: list[str]) -> Tensor:
    """The rows the audit attacked with ``rung``: every clean-correct point (standalone rungs), else those no earlier
    ladder rung broke (a deterministic model: ``broken_by`` names the first rung that broke each point)."""
    if rung.standalone:
        return clean_correct.nonzero().flatten()
    earlier = set(order[: order.index(rung.label)])
    still = [bool(c) and result.broken_by[i] not in earlier for i, c in enumerate(clean_correct.tolist())]
    return torch.tensor(still).nonzero().flatten()


def _run_alone(
    rung: Rung,
    rows: Tensor,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    large_eps: float,
    norm: str,
    surrogate: nn.Module | None,
    init: Tensor | None,
    seed: int,
    batch_size: int,
) -> tuple[Alone, Tensor]:
    """``rung``'s attack alone on ``rows`` (propose, project and clip, one judging pass); its candidates ``(N, *)``."""
    norm_obj = get_norm(norm)
    method = ATTACKS.get(rung.attack).configure(rung.steps, None, dict(rung.params))
    counter = PassCounter(int(x.shape[0]))
    budget = large_eps if rung.eps_factor is None else min(eps * rung.eps_factor, large_eps)
    gen = torch.Generator().manual_seed(rung_seed(seed, rung.label))
    guide = surrogate if rung.guide == "surrogate" else None
    ctx = RunContext(model=model, norm=norm_obj, generator=gen, counter=counter, gradient_model=guide)
    candidates = x.clone()
    broken = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for lo in range(0, rows.numel(), batch_size):
        r = rows[lo : lo + batch_size]
        eps_b = torch.full((r.numel(),), budget, dtype=x.dtype)
        batch = Batch(x[r], y[r], None, eps_b, r, init=None if init is None else init[r])
        cand = constrain(x[r], method.propose(ctx, batch).detach(), norm_obj, eps_b)
        with torch.no_grad():
            pred = model(cand).argmax(1)
        counter.add_forward(r)
        broken += int((pred != y[r]).sum())
        candidates[r] = cand
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    stats = Alone(
        rung.label,
        int(rows.numel()),
        broken,
        int(counter.gradient.sum()),
        int(counter.forward.sum()),
        cpu,
        wall,
    )
    return stats, candidates


@dataclasses.dataclass
class AuditRun:
    """One audit, timed: the result, its CPU and wall seconds, and the CPU seconds from each rung's start to the
    next one's (the last rung's run to the end of the audit; ``before``: the clean pass and the model checks)."""

    result: AuditResult
    cpu_s: float
    wall_s: float
    rung_cpu: dict[str, float]
    before_cpu: float


def _timed_audit(
    model: nn.Module, x: Tensor, y: Tensor, index: Tensor, surrogate: nn.Module | None, **kw: Any
) -> AuditRun:
    starts: list[tuple[str, float]] = []

    def progress(label: str, done: int, total: int) -> None:  # called at each rung's start, then per model call
        if not starts or starts[-1][0] != label:
            starts.append((label, time.process_time()))

    c0, t0 = time.process_time(), time.perf_counter()
    result = audit(model, x, y, surrogate=surrogate, index=index, progress=progress, **kw)
    c1, wall = time.process_time(), time.perf_counter() - t0
    ends = [t for _, t in starts[1:]] + [c1]
    rung_cpu = {label: end - begin for (label, begin), end in zip(starts, ends, strict=True)}
    return AuditRun(result, c1 - c0, wall, rung_cpu, (starts[0][1] if starts else c1) - c0)


def _all_alone(
    run: AuditRun, config: AuditConfig, model: nn.Module, x: Tensor, y: Tensor, surrogate: nn.Module | None, seed: int,
    batch_size: int,
) -> list[Alone]:  # fmt: skip
    """Every rung the audit ran, each alone on the rows the audit gave it, in the audit's order."""
    result = run.result
    large_eps = get_norm(result.norm).diameter(int(x[0].numel())) / 2  # the sweep's large budget, as the audit's
    with contextlib.ExitStack() as stack:
        for module in (model,) if surrogate is None else (model, surrogate):
            stack.enter_context(eval_mode(module))
            stack.enter_context(trusted_inputs(module))
        clean_correct = predict_logits(model, x, batch_size).argmax(1) == y
        ran = {r.rung.label for r in result.rungs}
        ladder = [r for r in build_ladder(**_ladder_args(config)) if r.label in ran]
        order = [r.label for r in ladder if r.in_ladder]
        kept: dict[str, Tensor] = {}
        alone: list[Alone] = []
        for rung in ladder:
            rows = _rows_of(result, rung, clean_correct, order)
            stats, cand = _run_alone(
                rung, rows, model, x, y, eps=result.eps, large_eps=large_eps, norm=result.norm, surrogate=surrogate,
                init=kept.get(rung.init_from) if rung.init_from else None, seed=seed, batch_size=batch_size,
            )  # fmt: skip
            kept[rung.label] = cand
            alone.append(stats)
    return alone


def run(model_name: str, surrogate_name: str | None, n: int, eps: str, seed: int, batch_size: int) -> dict[str, Any]:
    """Two rounds, in turn audit then alone and alone then audit, so that a drift of the machine's load falls on
    both sides; the ratios are of the sums over both rounds (model calls are the same in every run)."""
    ds_full = load_dataset("cifar10" if not model_name.startswith("fast-mnist") else "mnist", "test")
    ds = ds_full.subset(n, seed)
    shape = tuple(ds_full.x.shape[1:])
    model = load_model(_ref(model_name), input_shape=shape)
    surrogate = None if surrogate_name is None else load_model(_ref(surrogate_name), input_shape=shape)
    x, y = ds.images(), ds.y
    config = AuditConfig(**BUDGETS)
    kw = {"eps": eps, "surrogate_name": surrogate_name, "config": config, "seed": seed, "batch_size": batch_size}
    load = [list(os.getloadavg())]

    first = _timed_audit(model, x, y, ds.indices, surrogate, **kw)
    result = first.result
    if result.facts.stochastic:
        raise SystemExit("the comparison reads the robust set from broken_by: use a deterministic model")
    alone_1 = _all_alone(first, config, model, x, y, surrogate, seed, batch_size)
    load.append(list(os.getloadavg()))
    alone_2 = _all_alone(first, config, model, x, y, surrogate, seed, batch_size)
    second = _timed_audit(model, x, y, ds.indices, surrogate, **kw)
    load.append(list(os.getloadavg()))
    if second.result.broken_by != result.broken_by:
        raise SystemExit("the two audits differ: the comparison needs a deterministic audit")
    audits, alones = [first, second], [alone_1, alone_2]

    ran = {r.rung.label: r for r in result.rungs}
    rows_out = []
    for a1, a2 in zip(alone_1, alone_2, strict=True):
        r = ran[a1.attack]
        rows_out.append(
            {
                "attack": a1.attack,
                "attacked": a1.attacked,
                "broken": a1.broken,
                "gradient_passes": a1.gradient_passes,
                "forward_passes": a1.forward_passes,
                "calls": a1.calls,
                "same_calls_both_rounds": a1.calls == a2.calls,
                "cpu_s": [a1.cpu_s, a2.cpu_s],
                "audit_attacked": r.attacked,
                "audit_broken": r.broken,
                "same_rows": a1.attacked == r.attacked,
                "same_breaks": a1.broken == r.broken,
                "audit_calls": r.gradient_passes + r.forward_passes,
                "audit_cpu_s": [a.rung_cpu.get(a1.attack, 0.0) for a in audits],
                "audit_wall_s": [{q.rung.label: q.seconds for q in a.result.rungs}[a1.attack] for a in audits],
            }
        )
    audit_calls = result.gradient_passes + result.forward_passes
    rung_calls = sum(r.gradient_passes + r.forward_passes for r in result.rungs)
    alone_calls = sum(a.calls for a in alone_1)
    audit_cpu = [a.cpu_s for a in audits]
    alone_cpu = [sum(a.cpu_s for a in side) for side in alones]
    return {
        "model": model_name,
        "surrogate": surrogate_name,
        "n": n,
        "eps": result.eps,
        "norm": result.norm,
        "seed": seed,
        "batch_size": batch_size,
        "config": dataclasses.asdict(config),
        "clean_accuracy": result.clean_accuracy,
        "honest": result.honest,
        "codes": result.codes,
        "skipped": result.skipped,
        "load_average": load,
        "audit": {
            "calls": audit_calls,
            "gradient_passes": result.gradient_passes,
            "forward_passes": result.forward_passes,
            "rung_calls": rung_calls,
            "outside_rungs_calls": audit_calls - rung_calls,
            "cpu_s": audit_cpu,
            "before_rungs_cpu_s": [a.before_cpu for a in audits],
            "wall_s": [a.wall_s for a in audits],
        },
        "alone": {"calls": alone_calls, "cpu_s": alone_cpu, "wall_s": [sum(a.wall_s for a in side) for side in alones]},
        "ratio_calls": audit_calls / alone_calls,
        "ratio_cpu": sum(audit_cpu) / sum(alone_cpu),
        "ratio_cpu_rounds": [a / b for a, b in zip(audit_cpu, alone_cpu, strict=True)],
        "target": TARGET,
        "rungs": rows_out,
    }


def _ref(name: str) -> str:
    """A robust-zoo model by its name (its weights file), else the name as it is."""
    path = ZOO_DIR / "robust" / f"{name}.safetensors"
    return str(path) if path.is_file() else name


def _ladder_args(config: AuditConfig) -> dict[str, Any]:
    names = ("steps_short", "steps_long", "restarts", "apgd_steps", "square_queries", "eot_iter", "sweep")
    return {k: getattr(config, k) for k in names}


def _markdown(out: dict[str, Any], m: dict[str, Any]) -> str:
    a, alone = out["audit"], out["alone"]
    agree = all(r["same_rows"] and r["same_breaks"] and r["same_calls_both_rounds"] for r in out["rungs"])
    rounds = " and ".join(f"{v:.3f}×" for v in out["ratio_cpu_rounds"])
    before = sum(a["before_rungs_cpu_s"])
    load = "; ".join(" ".join(f"{v:.1f}" for v in la) for la in out["load_average"])
    lines = [
        "## Audit: total cost against its attacks run alone (`benchmarks/audit.py`)",
        "",
        f"`{out['model']}` ({out['norm']} ε {out['eps']:.4g}, surrogate `{out['surrogate']}`), {out['n']} CIFAR-10 "
        f"test points (seed {out['seed']}), batch {out['batch_size']}, budgets {BUDGETS} (the other AuditConfig "
        f"fields at their defaults), one torch thread. Clean {100 * out['clean_accuracy']:.1f} %, PGD-20 alone "
        f"{100 * out['honest']['first_pgd']['value']:.1f} %, honest {100 * out['honest']['robust_accuracy']:.1f} % "
        f"({out['honest']['attack']}), flags: {', '.join(out['codes']) or 'none'}. Issue 17's target: the audit "
        f"costs at most {TARGET}× the sum of its attacks run alone on the same shrinking robust set. Each attack "
        "alone: the same configured attack and seed on the rows the audit gave it (read from `broken_by`), its "
        "candidates projected, clipped and judged by one forward pass; the long PGD and the guided PGD start from "
        "their predecessor's candidates, as in the audit. Two rounds (audit then alone, alone then audit), CPU time "
        "of the process (`time.process_time`), summed over both rounds.",
        "",
        "| | model calls (per sample, each round) | CPU s (2 rounds) | wall s (2 rounds) |",
        "|---|---:|---:|---:|",
        f"| audit | {a['calls']:,} | {sum(a['cpu_s']):.1f} | {sum(a['wall_s']):.1f} |",
        f"| its attacks alone | {alone['calls']:,} | {sum(alone['cpu_s']):.1f} | {sum(alone['wall_s']):.1f} |",
        f"| ratio | **{out['ratio_calls']:.3f}×** | **{out['ratio_cpu']:.3f}×** (rounds {rounds}) | "
        f"{sum(a['wall_s']) / sum(alone['wall_s']):.3f}× |",
        "",
        f"The audit's extra model calls are its clean pass and model checks ({a['outside_rungs_calls']:,} calls, "
        f"{before / 2:.2f} CPU s per audit before the first rung); every rung made exactly the calls its attack "
        f"made alone, attacked the same rows and broke the same points (all rungs agree: {agree}). Wall time is not "
        "the measure: two trainings share the 2 cores, so it follows their load. Per rung (CPU s: mean of the two "
        "rounds; in the audit, from the rung's start to the next one's):",
        "",
        "| rung | rows | broken | model calls | CPU s alone | CPU s in the audit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['attack']} | {r['attacked']} | {r['broken']} | {r['calls']:,} | {sum(r['cpu_s']) / 2:.2f} | "
        f"{sum(r['audit_cpu_s']) / 2:.2f} |"
        for r in out["rungs"]
    ]
    lines += ["", f"Load average (1, 5, 15 min) at the start, between the rounds and at the end: {load}.", ""]
    lines += [describe_machine(m), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg8-w25-pgd-at")
    parser.add_argument("--surrogate", default="vgg8-w25")
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", type=Path, help="Markdown file whose audit section is replaced")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = run(args.model, args.surrogate or None, args.n, args.eps, args.seed, args.batch_size)
    m = machine()
    out["machine"] = m
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")
    a, alone = out["audit"], out["alone"]
    print(f"audit: {a['calls']:,} calls, {sum(a['cpu_s']):.1f} CPU s over 2 rounds")
    print(f"alone: {alone['calls']:,} calls, {sum(alone['cpu_s']):.1f} CPU s over 2 rounds")
    print(
        f"ratio: calls {out['ratio_calls']:.3f}x, CPU {out['ratio_cpu']:.3f}x (rounds {out['ratio_cpu_rounds']}), "
        f"target {TARGET}x"
    )
    if args.write:
        write_section(args.write, "## Audit: total cost", _markdown(out, m))


if __name__ == "__main__":
    main()
