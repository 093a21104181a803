"""From a spec to jobs: the unit of work, resumption and distribution.

A job's id is a hash of its canonical content (kind, model, parameters, the exact image indices, the ids
of the jobs it depends on and its kind's record schema version). A changed spec therefore gives new ids,
and a stale result is never reused silently.

A study runs in phases because later kinds depend on earlier results: each registered job kind
(:mod:`robustlab.store.kinds`) names the kinds that must finish first, and :func:`robustlab.store.kinds.phases`
orders them. With the built-in kinds that is ``clean`` (clean predictions on the candidate images, from which
the evaluation subset is chosen), then every kind that evaluates the subset (``attack`` and the others), then
``transfer`` (every model on every other model's stored adversarial examples).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.bench.spec import StudySpec
from robustlab.store.kinds import schema_of


@dataclass(frozen=True)
class Job:
    """One unit of work. ``params`` must be JSON data; ``indices`` are dataset rows."""

    kind: str
    model: str
    params: dict[str, Any]
    indices: tuple[int, ...]
    depends: tuple[str, ...] = ()
    label: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        """16 hex digits of the sha256 of the canonical job content."""
        content = {
            "schema": schema_of(self.kind).version,
            "kind": self.kind,
            "model": self.model,
            "params": self.params,
            "indices": hashlib.sha256(json.dumps(self.indices).encode()).hexdigest(),
            "depends": sorted(self.depends),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "params": self.params,
            "indices": list(self.indices),
            "depends": list(self.depends),
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(d["kind"], d["model"], d["params"], tuple(d["indices"]), tuple(d["depends"]), d.get("label", ""))


@dataclass
class PlanState:
    """What earlier phases produced, handed to the planning of later ones.

    Attributes:
        run: The run directory (its records can be read).
        candidates: Dataset rows screened first (the evaluation pool).
        subset: The evaluation subset, once a kind has chosen it (:meth:`JobKind.settle`).
        jobs: The jobs planned so far, by kind.
    """

    run: Path
    candidates: list[int]
    subset: list[int] | None = None
    jobs: dict[str, list[Job]] = field(default_factory=dict)

    def evaluation_subset(self) -> list[int]:
        """The evaluation subset (a kind that needs it runs after the kind that chooses it)."""
        if self.subset is None:
            raise RuntimeError("the evaluation subset is not chosen yet: the kind must run after 'clean'")
        return self.subset


def data_params(spec: StudySpec) -> dict[str, Any]:
    """The parameters every job that reads images shares: dataset, split and batch size."""
    return {"dataset": spec.dataset.name, "split": spec.dataset.split, "batch_size": spec.batch_size}
