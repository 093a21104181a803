"""The study runner: spec → plan → jobs (content-hashed ids) → executors → store."""

from robustlab.bench.executors import LocalExecutor, ProcessExecutor, RayExecutor, make_executor
from robustlab.bench.plan import Job, attack_configs, config_key
from robustlab.bench.run import RunSummary, run_study
from robustlab.bench.spec import StudySpec, load_spec, parse_spec, resolve_output

__all__ = [
    "Job",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "RunSummary",
    "StudySpec",
    "attack_configs",
    "config_key",
    "load_spec",
    "make_executor",
    "parse_spec",
    "resolve_output",
    "run_study",
]
