"""Study job kinds as plugins: the :class:`JobKind` protocol, its registry and the phase order.

A job kind (``clean``, ``attack``, ``transfer``, the others in :mod:`robustlab.kinds`, or a new one) is ONE module that
subclasses :class:`JobKind` and registers an instance with :func:`register_kind`. The instance owns everything
about its kind:

================  ==========================================================================================
``name``          the job kind and record kind (``records/<name>/``, the DuckDB view)
``field``         the :class:`~robustlab.bench.spec.StudySpec` field holding its section (``None``: always on)
``section``       that field's type and ``default`` (a pydantic model, ``list[...]`` of one, or ``X | None``)
``after``         kinds whose jobs must be finished before its own are planned (phase dependencies)
``schema``        its :class:`~robustlab.store.schema.RecordSchema` (columns, types and version)
``check``         cross-section checks of a parsed spec (error messages, reported with the others)
``plan``          spec + what earlier phases produced → jobs
``settle``        what the finished phase hands to later ones (the clean kind chooses the subset)
``run``           one job: load, compute, write its records
``analyse``       the store → its rows and objects (``analysis.kinds[name]``)
``report``        its report sections (title, nav id, figures, tables, text)
================  ==========================================================================================

Why the registry lives here. Every layer of the study iterates over the kinds: ``bench`` plans and runs
them, ``analysis`` analyses them, ``report`` renders them, and DESIGN's arrows run
``cli → bench/report → analysis → store``. The store is the one module all three may import, and it already
owns the record kinds (their schemas, :mod:`robustlab.store.schema`). The kinds themselves sit in the plugin
package :mod:`robustlab.kinds`, ABOVE bench, analysis and report (a kind uses all three); the registry
imports that package on first use (:func:`job_kinds`), the way entry points load plugins, so no lower
module ever imports a kind by name and adding a kind touches one module.

Phases: the planner runs kinds in layers; a layer holds every kind whose ``after`` kinds are in earlier
layers (a topological order; ties by name, so the order is deterministic).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, ClassVar

from robustlab._registry import Registry
from robustlab.store.schema import RECORD_SCHEMAS, RecordSchema, register_schema

#: The package of built-in kinds, imported once by :func:`job_kinds`.
BUILTIN_KINDS = "robustlab.kinds"


class JobKind:
    """One kind of study job. Subclass it in one module and register an instance (see the module docstring).

    Type hints of the hooks stay loose (``Any``) because their real types live above the store:
    ``spec`` is a :class:`~robustlab.bench.spec.StudySpec`, ``state`` a
    :class:`~robustlab.bench.plan.PlanState`, ``job`` a :class:`~robustlab.bench.plan.Job`, ``ctx`` a
    :class:`~robustlab.bench.jobs.JobContext`, ``study`` a :class:`~robustlab.analysis.study.StudyAnalysis`.
    """

    name: ClassVar[str]
    schema: ClassVar[RecordSchema]
    field: ClassVar[str | None] = None
    section: ClassVar[Any] = None
    default: ClassVar[Any] = None
    after: ClassVar[tuple[str, ...]] = ()
    #: Keep the section in the canonical spec (the run's identity) even when it equals its default. ``False`` for
    #: every kind added after the first release, so registering it changes no existing study's identity; ``True``
    #: only for the first kinds, whose unused sections were always part of it.
    always_in_identity: ClassVar[bool] = False

    def active(self, spec: Any) -> bool:
        """Whether the spec asks for this kind (its section is set and not empty)."""
        return self.field is None or bool(getattr(spec, self.field))

    def check(self, spec: Any) -> list[str]:
        """Problems across sections of a parsed spec (each a message); none by default."""
        return []

    def plan(self, spec: Any, state: Any) -> list[Any]:
        """The kind's jobs, given the spec and what earlier phases produced."""
        raise NotImplementedError

    def settle(self, spec: Any, state: Any, run: Path) -> None:
        """Called once the kind's jobs are all done: hand results to later phases (nothing by default)."""

    def run(self, job: Any, run: Path, ctx: Any) -> dict[str, Any]:
        """Execute one job and write its records; returns a small JSON summary."""
        raise NotImplementedError

    def analyse(self, con: Any, study: Any) -> Any:
        """The kind's analysis of the store (``None``: nothing to show)."""
        return None

    def report(self, study: Any) -> list[Any]:
        """The kind's report sections (:class:`robustlab.report.html.Section`)."""
        return []


JOB_KINDS: Registry[JobKind] = Registry("job kind")
_loaded = False


def register_kind(kind: JobKind) -> JobKind:
    """Register a job kind and its record schema."""
    register_schema(kind.schema)
    return JOB_KINDS.register(kind.name, kind)


def unregister_kind(name: str) -> None:
    """Remove a kind and its record schema (for tests and short-lived plugins)."""
    JOB_KINDS._items.pop(name.lower(), None)
    RECORD_SCHEMAS._items.pop(name.lower(), None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module(BUILTIN_KINDS)


def get_kind(name: str) -> JobKind:
    """The registered kind ``name`` (built-ins loaded first)."""
    _load_builtins()
    return JOB_KINDS.get(name)


def schema_of(kind: str) -> RecordSchema:
    """The record schema of a kind (built-in kinds loaded first).

    Raises:
        UnknownNameError: no such record kind.
    """
    _load_builtins()
    return RECORD_SCHEMAS.get(kind)


def phases() -> list[list[JobKind]]:
    """Every registered kind, in dependency layers.

    Raises:
        ValueError: a kind depends on an unknown kind, or the dependencies form a cycle.
    """
    _load_builtins()
    kinds = {n: JOB_KINDS.get(n) for n in JOB_KINDS}
    for k in kinds.values():
        unknown = [a for a in k.after if a not in kinds]
        if unknown:
            raise ValueError(f"job kind {k.name!r} runs after unknown kind(s) {', '.join(unknown)}")
    done: set[str] = set()
    layers = []
    while len(done) < len(kinds):
        layer = sorted(n for n, k in kinds.items() if n not in done and set(k.after) <= done)
        if not layer:
            raise ValueError(f"job kinds depend on each other in a cycle: {sorted(set(kinds) - done)}")
        layers.append([kinds[n] for n in layer])
        done.update(layer)
    return layers


def job_kinds() -> list[JobKind]:
    """Every registered kind in phase order."""
    return [k for layer in phases() for k in layer]


def present_kinds(run: str | os.PathLike[str]) -> list[str]:
    """Record kinds that have a folder in ``run/records`` (registered or not), sorted."""
    root = Path(run) / "records"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
