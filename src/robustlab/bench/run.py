"""The resumable run loop: check, plan, skip finished jobs, execute the rest, phase by phase.

Phases come from the registered job kinds (:func:`robustlab.store.kinds.phases`): a phase runs every kind
whose ``after`` kinds have finished. Before anything is written the spec has been validated (all errors at
once, :func:`robustlab.bench.spec.parse_spec`) and the dataset is loaded; then the run directory is locked
(one run per folder), the manifest is written or checked, and the phases run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab._io import atomic_write_text
from robustlab.bench.executors import Executor, LocalExecutor
from robustlab.bench.plan import Job, PlanState
from robustlab.bench.spec import StudySpec
from robustlab.data import Dataset, load_dataset
from robustlab.errors import ConfigError, RobustlabError
from robustlab.store import is_done, open_run
from robustlab.store.kinds import phases
from robustlab.store.lock import run_lock, unwritable

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]
"""Called with (phase, jobs done, jobs in phase, label of the job just finished): once when a phase starts
(label ``""``; ``done`` counts the jobs already in the store) and after every job. A phase is named by its
kinds joined by ``+``, e.g. ``"attack"`` when it is the only kind of its phase."""


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    run_dir: Path
    jobs: int
    skipped: int
    executed: int
    subset: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "jobs": self.jobs,
            "skipped": self.skipped,
            "executed": self.executed,
            "n": len(self.subset),
        }


def _execute(phase: str, jobs: list[Job], run: Path, executor: Executor, progress: ProgressFn | None) -> int:
    todo = [j for j in jobs if not is_done(run, j.kind, j.id)]
    if progress is not None:
        progress(phase, len(jobs) - len(todo), len(jobs), "")
    done = len(jobs) - len(todo)
    for summary in executor.run([j.to_dict() for j in todo], str(run)):
        done += 1
        log.info("%s: %s (%.1fs)", phase, summary["label"], summary["seconds"])
        if progress is not None:
            progress(phase, done, len(jobs), summary["label"])
    return len(todo)


def _models_context(models: list[str]) -> dict[str, dict[str, Any]]:
    """What the registry says of each model: family, source and recorded test accuracy (user models: none)."""
    from robustlab.models import MODELS

    out = {}
    for name in models:
        spec = MODELS.get(name) if name in MODELS else None
        out[name] = {
            "family": spec.family if spec else "user",
            "source": spec.source if spec else "user",
            "test_accuracy": spec.metrics.get("test_accuracy") if spec else None,
            "test_images": spec.metrics.get("test_images") if spec else None,  # the accuracy's denominator
        }
    return out


def _check_models(models: list[str], full: Dataset, data_dir: str | os.PathLike[str] | None) -> None:
    """Load every model once and check it fits the dataset, before anything is written.

    A model that cannot be built, or whose classes do not fit the dataset's labels or class names, would
    otherwise fail its first job after the manifest is written. Only one model is held at a time.

    Raises:
        ConfigError: the first model that does not load or fit, named, with the reason.
    """
    from robustlab.models import load_model
    from robustlab.models.classes import check_dataset_fits

    shape = tuple(full.x.shape[1:])
    for ref in models:
        try:
            model = load_model(ref, data_dir=data_dir, download=False, input_shape=shape)
            check_dataset_fits(model, full.y, full.classes, dataset=f"{full.name}/{full.split}")
        except RobustlabError as exc:
            raise ConfigError(f"model {ref}: {exc}") from exc
        del model


def run_study(
    spec: StudySpec,
    run_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    progress: ProgressFn | None = None,
) -> RunSummary:
    """Run (or resume) a study into ``run_dir``.

    Re-running the same spec skips every job whose records exist; a run directory holding finished jobs of
    another spec is refused (see :func:`robustlab.store.open_run`), one where no job finished is re-planned.

    Raises:
        ConfigError: another run holds the folder (``run_dir/.lock``), or it cannot be written.
        DataError: the dataset is missing; nothing is written then.
    """
    run = Path(run_dir)
    d = spec.dataset
    full = load_dataset(d.name, d.split, data_dir)
    pool = d.n if d.subset == "random" else (d.pool or 4 * d.n)
    candidates = full.subset(pool, d.seed).indices.tolist()
    _check_models(spec.models, full, data_dir)
    context = {"classes": list(full.classes), "models": _models_context(spec.models)}
    with run_lock(run):
        open_run(run, spec.canonical(), spec.digest(), context)
        executor = executor or LocalExecutor(None if data_dir is None else str(data_dir))
        state = PlanState(run, candidates)
        executed = 0
        for layer in phases():
            active = [k for k in layer if k.active(spec)]
            jobs: list[Job] = []
            for kind in active:
                state.jobs[kind.name] = kind.plan(spec, state)
                jobs += state.jobs[kind.name]
            if jobs:
                name = "+".join(k.name for k in active if state.jobs[k.name])
                executed += _execute(name, jobs, run, executor, progress)
            for kind in active:
                kind.settle(spec, state, run)
        every = [j for js in state.jobs.values() for j in js]
        plan = {
            "subset": state.subset,
            "jobs": [{k: v for k, v in j.to_dict().items() if k != "indices"} for j in every],
        }
        try:
            atomic_write_text(run / "plan.json", json.dumps(plan, indent=1) + "\n")
        except OSError as exc:
            raise unwritable(run, exc) from exc
    return RunSummary(run, len(every), len(every) - executed, executed, state.subset or [])
