"""The resumable run loop: plan, skip finished jobs, execute the rest, phase by phase."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from robustlab._io import atomic_write_text
from robustlab.bench.executors import Executor, LocalExecutor
from robustlab.bench.plan import Job, plan_clean, plan_evaluation, plan_transfer
from robustlab.bench.spec import StudySpec
from robustlab.data import load_dataset
from robustlab.errors import DataError
from robustlab.store import is_done, open_run, read_records

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]
"""Called with (phase, jobs done, jobs in phase, label of the job just finished)."""


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


def _common_correct(run: Path, jobs: list[Job], candidates: list[int], n: int) -> list[int]:
    ok = set(candidates)
    for job in jobs:
        t = read_records(run, "clean", job.id)
        ok &= set(pc.filter(t["index"], t["correct"]).to_pylist())
    chosen = [i for i in candidates if i in ok][:n]
    if not chosen:
        raise DataError("no image is classified correctly by every model: use subset: random, or fewer models")
    if len(chosen) < n:
        log.warning(
            "only %d of the %d candidates are classified correctly by every model (wanted %d); "
            "raise dataset.pool for more",
            len(chosen),
            len(candidates),
            n,
        )
    return chosen


def run_study(
    spec: StudySpec,
    run_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    progress: ProgressFn | None = None,
) -> RunSummary:
    """Run (or resume) a study into ``run_dir``.

    Re-running the same spec skips every job whose records exist; a run directory of another spec is
    refused (see :func:`robustlab.store.open_run`).
    """
    run = Path(run_dir)
    open_run(run, spec.canonical(), spec.digest())
    executor = executor or LocalExecutor(None if data_dir is None else str(data_dir))
    d = spec.dataset
    full = load_dataset(d.name, d.split, data_dir)
    pool = d.n if d.subset == "random" else (d.pool or 4 * d.n)
    candidates = full.subset(pool, d.seed).indices.tolist()

    clean = plan_clean(spec, candidates)
    executed = _execute("clean", clean, run, executor, progress)
    subset = candidates if d.subset == "random" else _common_correct(run, clean, candidates, d.n)
    evaluation = plan_evaluation(spec, subset)
    executed += _execute("attack", evaluation, run, executor, progress)
    transfer = plan_transfer(spec, evaluation)
    executed += _execute("transfer", transfer, run, executor, progress)

    jobs = clean + evaluation + transfer
    plan = {"subset": subset, "jobs": [{k: v for k, v in j.to_dict().items() if k != "indices"} for j in jobs]}
    atomic_write_text(run / "plan.json", json.dumps(plan, indent=1) + "\n")
    return RunSummary(run, len(jobs), len(jobs) - executed, executed, subset)
