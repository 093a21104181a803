"""What each kind of job does: load its model and images, compute, write its records to the store.

Job functions are registered by kind; each takes the job, the run directory and a :class:`JobContext`
(per-process caches of the dataset and of the last model used) and returns a small summary. They are
deterministic given the job: the seed is part of the job's parameters, never drawn at run time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab._allocator import retain_freed_memory
from robustlab._registry import Registry
from robustlab.bench.plan import Job
from robustlab.data import Dataset, load_dataset
from robustlab.errors import RobustlabError
from robustlab.models import ModelAdapter, eval_mode, load_model
from robustlab.store import artifact_path, read_records, write_records

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Per-process state: where data lives and what was loaded last (one model at a time bounds memory)."""

    data_dir: str | None = None
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    _datasets: dict[tuple[str, str], Dataset] = field(default_factory=dict)
    _model: tuple[str, ModelAdapter] | None = None

    def dataset(self, name: str, split: str) -> Dataset:
        key = (name, split)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(name, split, self.data_dir, download=False)
        return self._datasets[key]

    def model(self, ref: str) -> ModelAdapter:
        if self._model is None or self._model[0] != ref:
            self._model = (ref, load_model(ref, data_dir=self.data_dir, download=False, device=self.device))
        return self._model[1]

    def images(self, job: Job) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The job's images (float in [0, 1]), labels and row indices. Shape: (N, C, H, W), (N,), (N,)."""
        ds = self.dataset(job.params["dataset"], job.params["split"]).take(torch.tensor(job.indices))
        return ds.images().to(self.device), ds.y.to(self.device), ds.indices


JobFn = Callable[[Job, Path, JobContext], dict[str, Any]]
JOB_KINDS: Registry[JobFn] = Registry("job kind")


def _meta(job: Job, model: ModelAdapter, **extra: Any) -> dict[str, Any]:
    """The constant columns of a job's records: its model, the model's family, and ``extra``."""
    spec = getattr(model, "spec", None)
    return {"model": job.model, "family": spec.family if spec is not None else "user", **extra}


@JOB_KINDS.decorator("clean")
def _clean(job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
    x, y, idx = ctx.images(job)
    model = ctx.model(job.model)
    with torch.no_grad(), eval_mode(model):
        logits = torch.cat(
            [model(x[i : i + job.params["batch_size"]]) for i in range(0, len(x), job.params["batch_size"])]
        )
    pred, y = logits.argmax(1).cpu(), y.cpu()
    logits = logits.cpu()
    top2 = logits.topk(2, dim=1).values
    cols = {
        "index": idx.tolist(),
        "label": y.tolist(),
        "pred": pred.tolist(),
        "correct": (pred == y).tolist(),
        "margin": (top2[:, 0] - top2[:, 1]).tolist(),
    }
    write_records(run, "clean", job.id, cols, _meta(job, model))
    return {"accuracy": float((pred == y).float().mean())}


@JOB_KINDS.decorator("attack")
def _attack(job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
    from robustlab.attacks import attack

    p = job.params
    x, y, idx = ctx.images(job)
    model = ctx.model(job.model)
    result = attack(
        model,
        x,
        y,
        p["attack"],
        norm=p["norm"],
        eps=p["eps"],
        steps=p["steps"],
        target=p["target"],
        minimal=p["minimal"],
        seed=p["seed"],
        batch_size=p["batch_size"],
        keep_adversarials=p["transfer"],
        **p["params"],
    )
    if p["transfer"]:
        result.save_adversarials(artifact_path(run, job.id))  # before the records: they mark the job done
    cols = result.to_columns()
    cols["index"] = idx.tolist()  # dataset rows, not positions in the batch
    cols.pop("attack"), cols.pop("norm")
    write_records(
        run,
        "attack",
        job.id,
        cols,
        _meta(
            job,
            model,
            key=p["key"],
            attack=p["attack"],
            norm=result.norm,
            target_mode=p["target"],
            eps_budget=result.eps,
            minimal=p["minimal"],
        ),
    )
    s = result.summary()
    return {"success_rate": s["success_rate"], "gradient_passes": s["gradient_passes"]}


@JOB_KINDS.decorator("clever")
def _clever(job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
    from robustlab.metrics.clever import clever

    p = job.params
    x, y, idx = ctx.images(job)
    model = ctx.model(job.model)
    result = clever(
        model,
        x,
        y,
        norm=p["norm"],
        target=p["target"],
        batches=p["batches"],
        samples=p["samples"],
        radius=p["radius"],
        seed=p["seed"],
    )
    cols = result.to_columns()
    cols["index"] = idx.tolist()
    write_records(
        run,
        "clever",
        job.id,
        cols,
        _meta(job, model, norm=p["norm"], target_mode=p["target"]),
    )
    scores = [v for v in cols["score"] if v is not None]  # non-finite scores are stored as None
    return {"median_score": float(torch.tensor(scores).median()) if scores else None}


@JOB_KINDS.decorator("corruption")
def _corruption(job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
    from robustlab.metrics.corruption import corruption_accuracy

    p = job.params
    ds = ctx.dataset(p["dataset"], p["split"]).take(torch.tensor(job.indices))
    model = ctx.model(job.model)
    result = corruption_accuracy(model, ds, p["names"], p["severities"], seed=p["seed"], batch_size=p["batch_size"])
    cols: dict[str, list[Any]] = {k: [] for k in ("index", "label", "clean_pred", "corruption", "severity", "pred")}
    for name, by_severity in result.predictions.items():
        for severity, pred in by_severity.items():
            cols["index"] += result.indices.tolist()
            cols["label"] += result.labels.tolist()
            cols["clean_pred"] += result.clean_predictions.tolist()
            cols["corruption"] += [name] * result.n
            cols["severity"] += [severity] * result.n
            cols["pred"] += pred.tolist()
    write_records(
        run,
        "corruption",
        job.id,
        cols,
        _meta(job, model, seed=p["seed"], constants=result.constants),
    )
    return {"clean_accuracy": result.clean_accuracy}


@JOB_KINDS.decorator("transfer")
def _transfer(job: Job, run: Path, ctx: JobContext) -> dict[str, Any]:
    from safetensors.torch import load_file

    model = ctx.model(job.model)
    bs = job.params["batch_size"]
    parts: dict[str, list[Any]] = {
        k: []
        for k in (
            "source_job",
            "source_model",
            "key",
            "target_mode",
            "index",
            "label",
            "target",
            "source_success",
            "pred",
        )
    }
    for src in job.depends:
        rec = read_records(run, "attack", src).to_pydict()
        adv = load_file(str(artifact_path(run, src)))["adversarials"]  # (N, C, H, W) judged examples
        with torch.no_grad(), eval_mode(model):
            pred = torch.cat([model(adv[i : i + bs].to(ctx.device)).argmax(1).cpu() for i in range(0, len(adv), bs)])
        n = len(pred)
        parts["source_job"] += [src] * n
        parts["source_model"] += rec["model"]
        parts["key"] += rec["key"]
        parts["target_mode"] += rec["target_mode"]
        parts["index"] += rec["index"]
        parts["label"] += rec["label"]
        parts["target"] += rec["target"]
        parts["source_success"] += rec["success"]
        parts["pred"] += pred.tolist()
    write_records(run, "transfer", job.id, parts, _meta(job, model))
    return {"sources": len(job.depends)}


def run_job(job_dict: dict[str, Any], run: str, ctx: JobContext | None = None) -> dict[str, Any]:
    """Execute one job (any executor calls this). Returns ``{"id", "kind", "seconds", ...summary}``."""
    job = Job.from_dict(job_dict)
    ctx = ctx or _process_context()
    t0 = time.perf_counter()
    try:
        summary = JOB_KINDS.get(job.kind)(job, Path(run), ctx)
    except RobustlabError as exc:
        raise RobustlabError(f"job {job.id} ({job.label}) failed: {exc}") from exc
    return {"id": job.id, "kind": job.kind, "label": job.label, "seconds": time.perf_counter() - t0, **summary}


_PROCESS_CONTEXT: JobContext | None = None


def init_worker(data_dir: str | None, threads: int | None) -> None:
    """Initialiser of worker processes: one context per process, and the thread count."""
    global _PROCESS_CONTEXT
    retain_freed_memory()
    _PROCESS_CONTEXT = JobContext(data_dir=data_dir)
    if threads:
        torch.set_num_threads(threads)


def _process_context() -> JobContext:
    global _PROCESS_CONTEXT
    if _PROCESS_CONTEXT is None:
        _PROCESS_CONTEXT = JobContext(data_dir=os.environ.get("ROBUSTLAB_DATA"))
    return _PROCESS_CONTEXT


def describe(job: Job) -> str:
    """One line for logs."""
    return f"{job.kind} {job.id} {json.dumps(job.label)}"
