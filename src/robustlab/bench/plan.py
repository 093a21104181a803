"""From a spec to jobs: the unit of work, resumption and distribution.

A job's id is a hash of its canonical content (kind, model, parameters, the exact image indices, the ids
of the jobs it depends on and the record schema version). A changed spec therefore gives new ids, and a
stale result is never reused silently.

A study runs in three phases, because later phases depend on earlier results:

1. ``clean``: clean predictions of every model on the candidate images (the pool for ``common-correct``);
2. ``attack``, ``clever`` and ``corruption``: on the evaluation subset chosen from phase 1;
3. ``transfer``: every model's predictions on every other model's stored adversarial examples.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from robustlab.bench.spec import StudySpec

#: Bumped whenever a job's records change meaning; part of every job id.
RECORD_SCHEMA_VERSION = 1


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
            "schema": RECORD_SCHEMA_VERSION,
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


def _data_params(spec: StudySpec) -> dict[str, Any]:
    return {"dataset": spec.dataset.name, "split": spec.dataset.split, "batch_size": spec.batch_size}


def plan_clean(spec: StudySpec, candidates: list[int]) -> list[Job]:
    """Phase 1: clean predictions of every model on the candidate rows."""
    return [Job("clean", m, _data_params(spec), tuple(candidates), label=f"clean {m}") for m in spec.models]


def attack_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every attack configuration of the grid, as the canonical params of its jobs."""
    out = []
    for a in spec.attacks:
        for eps, steps, target in itertools.product(a.eps, a.steps, a.targets):
            out.append(
                {
                    "attack": a.name,
                    "norm": a.norm,
                    "eps": eps,
                    "steps": steps,
                    "target": target,
                    "minimal": a.minimal,
                    "transfer": a.transfer,
                    "params": dict(sorted(a.params.items())),
                    "seed": spec.seed,
                }
            )
    return out


def config_key(cfg: dict[str, Any]) -> str:
    """A short readable name of an attack configuration, e.g. ``ifgsm-linf-eps0.0314-s10-untargeted``."""
    parts = [cfg["attack"], cfg["norm"] or "default"]
    if cfg["eps"] is not None:
        parts.append(f"eps{cfg['eps']:.4g}")
    if cfg["steps"] is not None:
        parts.append(f"s{cfg['steps']}")
    parts.append(cfg["target"])
    if cfg["minimal"]:
        parts.append("minimal")
    if cfg["params"]:
        parts.append(hashlib.sha256(json.dumps(cfg["params"], sort_keys=True).encode()).hexdigest()[:6])
    return "-".join(parts)


def plan_evaluation(spec: StudySpec, subset: list[int]) -> list[Job]:
    """Phase 2: attack jobs (model × attack configuration) and CLEVER jobs on the evaluation subset."""
    jobs = []
    for model in spec.models:
        for cfg in attack_configs(spec):
            jobs.append(
                Job(
                    "attack",
                    model,
                    {**_data_params(spec), **cfg, "key": config_key(cfg)},
                    tuple(subset),
                    label=f"{config_key(cfg)} on {model}",
                )
            )
    if spec.clever is not None:
        c = spec.clever.model_dump()
        n = c.pop("n")
        for model in spec.models:
            jobs.append(
                Job(
                    "clever",
                    model,
                    {**_data_params(spec), **c, "seed": spec.seed},
                    tuple(subset[:n]),
                    label=f"clever {model}",
                )
            )
    if spec.corruptions is not None:
        c = spec.corruptions.model_dump()
        n = c.pop("n") or len(subset)
        c.pop("baseline")
        for model in spec.models:
            jobs.append(
                Job("corruption", model, {**_data_params(spec), **c}, tuple(subset[:n]), label=f"corruptions {model}")
            )
    return jobs


def plan_transfer(spec: StudySpec, attack_jobs: list[Job]) -> list[Job]:
    """Phase 3: for each target model, one job over every source's adversarial examples of transfer configs."""
    sources = [j for j in attack_jobs if j.kind == "attack" and j.params["transfer"]]
    if not sources:
        return []
    src = tuple(sorted(j.id for j in sources))
    return [
        Job("transfer", m, _data_params(spec), sources[0].indices, depends=src, label=f"transfer onto {m}")
        for m in spec.models
    ]
