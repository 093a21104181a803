"""The study runner: spec → plan → jobs (content-hashed ids) → executors → store.

What each kind of job does (its spec section, planning, run, records, analysis and report) lives in its job
kind, :mod:`robustlab.kinds`; the runner only orders and executes them (:mod:`robustlab.store.kinds`).
"""

from robustlab.bench.executors import LocalExecutor, ProcessExecutor, RayExecutor, make_executor
from robustlab.bench.plan import Job, PlanState
from robustlab.bench.run import RunSummary, run_study
from robustlab.bench.spec import StudySpec, load_spec, parse_spec, resolve_output, spec_model

__all__ = [
    "Job",
    "LocalExecutor",
    "PlanState",
    "ProcessExecutor",
    "RayExecutor",
    "RunSummary",
    "StudySpec",
    "load_spec",
    "make_executor",
    "parse_spec",
    "resolve_output",
    "run_study",
    "spec_model",
]
