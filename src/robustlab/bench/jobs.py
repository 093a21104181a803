"""Running one job: the per-process context (data and model caches) and the dispatch to its kind.

What a job does belongs to its kind (:meth:`robustlab.store.kinds.JobKind.run`); this module gives every
kind the same tools: a :class:`JobContext` to load images and models, and :func:`record_constants` for the
columns every record has. Jobs are deterministic given the job: the seed is part of the job's parameters,
never drawn at run time.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab._allocator import retain_freed_memory
from robustlab.bench.plan import Job
from robustlab.data import Dataset, load_dataset
from robustlab.errors import RobustlabError
from robustlab.models import ModelAdapter, load_model
from robustlab.models.classes import check_dataset_fits
from robustlab.store.kinds import get_kind
from robustlab.store.lock import unwritable


@dataclass
class JobContext:
    """Per-process state: where data lives and what was loaded last (one model at a time bounds memory)."""

    data_dir: str | None = None
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    _datasets: dict[tuple[str, str], Dataset] = field(default_factory=dict)
    _model: tuple[str, ModelAdapter] | None = None
    #: (C, H, W) of the current job's images: lets a user factory return a plain ``nn.Module``.
    input_shape: tuple[int, ...] | None = None

    def dataset(self, name: str, split: str) -> Dataset:
        key = (name, split)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(name, split, self.data_dir, download=False)
        return self._datasets[key]

    def model(self, ref: str) -> ModelAdapter:
        if self._model is None or self._model[0] != ref:
            model = load_model(
                ref, data_dir=self.data_dir, download=False, device=self.device, input_shape=self.input_shape
            )
            self._model = (ref, model)
        return self._model[1]

    def images(self, job: Job) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The job's images (float in [0, 1]), labels and row indices. Shape: (N, C, H, W), (N,), (N,).

        Raises:
            ConfigError: the labels or class names do not fit the job's model.
        """
        ds = self.dataset(job.params["dataset"], job.params["split"]).take(torch.tensor(job.indices))
        check_dataset_fits(self.model(job.model), ds.y, ds.classes, dataset=f"{ds.name}/{ds.split}")
        return ds.images().to(self.device), ds.y.to(self.device), ds.indices


def model_source(model: ModelAdapter) -> tuple[str, str]:
    """(family, source) of a loaded model: from its spec, else ``("user", "user")`` (a user factory)."""
    spec = getattr(model, "spec", None)
    return (spec.family, spec.source) if spec is not None else ("user", "user")


def record_constants(job: Job, model: ModelAdapter, **extra: Any) -> dict[str, Any]:
    """The constant columns of a job's records: its model, the model's family, the route of a multi-branch model
    (plain models have no ``route`` column), and ``extra``."""
    route = {"route": model.route} if getattr(model, "route", None) is not None else {}
    return {"model": job.model, "family": model_source(model)[0], **route, **extra}


def _output_error(exc: OSError, run: Path) -> bool:
    """Whether ``exc`` means the run directory cannot be written (full, read-only, not ours)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    inside = exc.filename is not None and run.resolve() in Path(exc.filename).resolve().parents
    return inside and exc.errno in (errno.EACCES, errno.EPERM)


def run_job(job_dict: dict[str, Any], run: str, ctx: JobContext | None = None) -> dict[str, Any]:
    """Execute one job (any executor calls this). Returns ``{"id", "kind", "seconds", ...summary}``.

    Raises:
        RobustlabError: the job failed (the message names it); an output folder that cannot be written
            (read-only, full) is a :class:`~robustlab.errors.ConfigError`.
    """
    job = Job.from_dict(job_dict)
    ctx = ctx or _process_context()
    t0 = time.perf_counter()
    try:
        if "dataset" in job.params:  # every built-in kind's jobs name their dataset
            ctx.input_shape = tuple(ctx.dataset(job.params["dataset"], job.params["split"]).x.shape[1:])
        summary = get_kind(job.kind).run(job, Path(run), ctx)
    except RobustlabError as exc:
        raise RobustlabError(f"job {job.id} ({job.label}) failed: {exc}") from exc
    except OSError as exc:
        if _output_error(exc, Path(run)):
            raise unwritable(Path(run), exc) from exc
        raise
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
