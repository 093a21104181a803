"""Everything the report shows, computed once from a run directory by the registered job kinds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.analysis.classwise import ClasswiseAnalysis
from robustlab.errors import ConfigError
from robustlab.store import connect
from robustlab.store.kinds import job_kinds


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


@dataclass
class StudyAnalysis:
    """The analysed study: each job kind's analysis under its name (``study["attack"]``; ``None`` when the
    run has no records of that kind).

    Attributes:
        run_dir: The run directory.
        manifest: Its manifest (spec, versions, and the ``context`` the run recorded: class names, models).
        kinds: Each kind's analysis, in phase order.
    """

    run_dir: Path
    manifest: dict[str, Any]
    kinds: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> Any:
        return self.kinds.get(kind)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest["spec"])

    @property
    def context(self) -> dict[str, Any]:
        """What the run recorded when it started (empty for runs of older versions)."""
        return dict(self.manifest.get("context") or {})

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Class names of the study's dataset, as recorded by the run."""
        classes = self.context.get("classes")
        return tuple(classes) if classes else None

    @property
    def classwise(self) -> list[ClasswiseAnalysis]:
        """Class-wise analyses of every kind that has them (an analysis's ``classwise`` attribute)."""
        return [c for a in self.kinds.values() for c in getattr(a, "classwise", None) or []]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "spec": self.manifest["spec"],
            **{k: _jsonable(a) for k, a in self.kinds.items()},
        }


def analyse_run(run_dir: str | os.PathLike[str]) -> StudyAnalysis:
    """Analyse a (possibly partial) run directory: every registered kind's analysis, in phase order (a kind
    may use the analyses of the kinds it runs after)."""
    run = Path(run_dir)
    if not (run / "manifest.json").is_file():
        raise ConfigError(f"{run} is not a run directory (no manifest.json): run `robustlab run` first")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    con = connect(run)
    study = StudyAnalysis(run, manifest)
    for kind in job_kinds():
        study.kinds[kind.name] = kind.analyse(con, study)
    return study
