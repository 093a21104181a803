"""Everything the report shows, computed once from a run directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.analysis.classwise import (
    ClasswiseAnalysis,
    classwise_analyses,
    corruption_accuracies,
    corruption_summary,
)
from robustlab.analysis.pareto import LogErrorFit, ModelPoint, fit_log_error, pareto_frontier, points_from_summary
from robustlab.analysis.summary import attack_summary, clean_summary, clever_summary, clever_vs_attack
from robustlab.analysis.transfer import TransferMatrix, transfer_matrices
from robustlab.data import load_dataset
from robustlab.errors import ConfigError
from robustlab.metrics.corruption import CorruptionAccuracy, CorruptionErrors
from robustlab.store import connect


@dataclass
class ParetoAnalysis:
    """Frontier and fits for one distortion measure (an attack configuration)."""

    key: str
    norm: str
    points: list[ModelPoint]
    frontier: list[ModelPoint]
    fit_all: LogErrorFit | None
    fit_frontier: LogErrorFit | None
    family_means: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "norm": self.norm,
            "points": [p.__dict__ for p in self.points],
            "frontier": [p.model for p in self.frontier],
            "fit_all": self.fit_all.to_dict() if self.fit_all else None,
            "fit_frontier": self.fit_frontier.to_dict() if self.fit_frontier else None,
            "family_means": self.family_means,
        }


@dataclass
class StudyAnalysis:
    """The analysed study."""

    run_dir: Path
    manifest: dict[str, Any]
    clean: list[dict[str, Any]]
    attacks: list[dict[str, Any]]
    transfer: list[TransferMatrix]
    pareto: list[ParetoAnalysis]
    clever: list[dict[str, Any]]
    clever_vs_attack: list[dict[str, Any]]
    errors: dict[str, float] = field(default_factory=dict)
    classwise: list[ClasswiseAnalysis] = field(default_factory=list)
    corruption: dict[str, CorruptionErrors] = field(default_factory=dict)
    corruption_accuracy: dict[str, CorruptionAccuracy] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "spec": self.manifest["spec"],
            "errors": self.errors,
            "clean": self.clean,
            "attacks": self.attacks,
            "transfer": [t.to_dict() for t in self.transfer],
            "pareto": [p.to_dict() for p in self.pareto],
            "clever": self.clever,
            "clever_vs_attack": self.clever_vs_attack,
        }


def _model_errors(clean: list[dict[str, Any]]) -> dict[str, float]:
    """Top-1 error per model: the recorded full-test-set accuracy when known, else the screened candidates'."""
    from robustlab.models import MODELS

    errors = {}
    for row in clean:
        acc = row["accuracy"]
        if row["model"] in MODELS:
            acc = MODELS.get(row["model"]).metrics.get("test_accuracy", acc)
        errors[row["model"]] = 1.0 - float(acc)
    return errors


def _classes(name: str, split: str) -> tuple[str, ...]:
    """Class names: from the dataset's spec when it is a named dataset, else from the data itself."""
    from robustlab.data import DATASETS

    return DATASETS.get(name).classes if name in DATASETS else load_dataset(name, split).classes


def analyse_run(run_dir: str | os.PathLike[str]) -> StudyAnalysis:
    """Analyse a (possibly partial) run directory."""
    run = Path(run_dir)
    if not (run / "manifest.json").is_file():
        raise ConfigError(f"{run} is not a run directory (no manifest.json): run `robustlab run` first")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    con = connect(run)
    clean = clean_summary(con)
    attacks = attack_summary(con)
    errors = _model_errors(clean)
    pareto = []
    for key in sorted({r["key"] for r in attacks if r["minimal"] or r["attack"] in ("cw", "ead")}):
        pts = points_from_summary(attacks, errors, key)
        if not pts:
            continue
        front = pareto_frontier(pts)
        fams: dict[str, list[float]] = {}
        for p in pts:
            fams.setdefault(p.family, []).append(p.distortion)
        norm = next(r["norm"] for r in attacks if r["key"] == key)
        pareto.append(
            ParetoAnalysis(
                key,
                norm,
                pts,
                front,
                fit_log_error(pts),
                fit_log_error(front),
                {f: sum(v) / len(v) for f, v in sorted(fams.items())},
            )
        )
    spec = manifest["spec"]
    classes = _classes(spec["dataset"]["name"], spec["dataset"]["split"])
    accs = corruption_accuracies(con, f"{spec['dataset']['name']}/{spec['dataset']['split']}")
    baseline = (spec.get("corruptions") or {}).get("baseline")
    return StudyAnalysis(
        run,
        manifest,
        clean,
        attacks,
        transfer_matrices(con),
        pareto,
        clever_summary(con),
        clever_vs_attack(con),
        errors,
        classwise_analyses(con, classes),
        corruption_summary(accs, baseline),
        accs,
    )
