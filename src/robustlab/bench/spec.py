"""The study spec: a YAML file validated by pydantic, every error reported at once with its path.

Example::

    name: demo
    output: runs/demo                 # relative to the spec's folder; may not escape it
    models: [resnet20-akamaster, vgg11-w50]
    dataset: {name: cifar10, n: 100, seed: 0, subset: common-correct}
    attacks:
      - {name: fgsm, norm: linf, minimal: true}
      - {name: ifgsm, norm: linf, eps: [2/255, 8/255], steps: [5, 10], targets: [untargeted, random], transfer: true}
      - {name: cw, params: {search_steps: 4, steps: 50}}
    clever: {norm: l2, n: 10, batches: 10, samples: 32, radius: 2.0}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustlab.errors import ConfigError

SPEC_VERSION = 1
TargetMode = Literal["untargeted", "random", "least-likely", "top2"]


def _lookup(get: Any, name: str) -> None:
    """Registry lookups raise UnknownNameError (a KeyError); pydantic collects only ValueErrors."""
    try:
        get(name)
    except KeyError as exc:
        raise ValueError(str(exc)) from None


def _unset() -> list[Any]:
    return [None]


def _untargeted() -> list[Any]:
    return ["untargeted"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSection(_Strict):
    """Which images every model is evaluated on."""

    name: str = "cifar10"
    split: Literal["test", "train"] = "test"
    n: int = Field(default=100, gt=0, description="Number of images.")
    seed: int = 0
    subset: Literal["random", "common-correct"] = Field(
        default="random", description="'common-correct': only images every model classifies correctly (the seed study)."
    )
    pool: int | None = Field(default=None, gt=0, description="Candidates screened for common-correct (default 4·n).")


class AttackSection(_Strict):
    """One attack with a parameter grid (lists expand to one job per combination)."""

    name: str
    norm: str | None = None
    eps: list[float | str | None] = Field(default_factory=_unset)
    steps: list[int | None] = Field(default_factory=_unset)
    targets: list[TargetMode] = Field(default_factory=_untargeted)
    minimal: bool = False
    transfer: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("eps", "steps", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("targets", mode="before")
    @classmethod
    def _listify_targets(cls, v: Any) -> Any:
        return v if isinstance(v, list) else [v]

    @field_validator("name")
    @classmethod
    def _known_attack(cls, v: str) -> str:
        from robustlab.attacks import ATTACKS

        _lookup(ATTACKS.get, v)
        return v.lower()

    @field_validator("norm")
    @classmethod
    def _known_norm(cls, v: str | None) -> str | None:
        from robustlab.attacks import NORMS

        if v is not None:
            _lookup(NORMS.get, v)
        return v.lower() if v else v

    @field_validator("eps")
    @classmethod
    def _valid_eps(cls, v: list[float | str | None]) -> list[float | None]:
        from robustlab.attacks import parse_eps

        return [parse_eps(e) for e in v]

    @field_validator("params")
    @classmethod
    def _no_shadowing(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {"norm", "eps", "steps", "target", "targets", "minimal", "seed", "batch_size"})
        if clash:
            raise ValueError(f"{', '.join(clash)} belong(s) at the attack's top level, not under params")
        runner = sorted(set(v) & {"keep_adversarials", "progress"})
        if runner:
            raise ValueError(
                f"{', '.join(runner)} are set by the runner (transfer: true keeps adversarials), not params"
            )
        return v

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, v: list[int | None]) -> list[int | None]:
        if any(s is not None and s <= 0 for s in v):
            raise ValueError(f"steps must be positive, got {v}")
        return v


class CleverSection(_Strict):
    """CLEVER scores on the first ``n`` images of the subset."""

    norm: Literal["l1", "l2", "linf"] = "l2"
    target: TargetMode = "untargeted"
    n: int = Field(default=10, gt=0)
    batches: int = Field(default=10, ge=2, description="At least 2: the extreme-value fit needs several maxima.")
    samples: int = Field(default=32, gt=0)
    radius: float = Field(default=2.0, gt=0)


class CorruptionSection(_Strict):
    """Common corruptions on the first ``n`` images of the subset (all of them by default)."""

    names: list[str] | None = Field(None, description="Corruptions (default: the 15 benchmark corruptions).")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    n: int | None = Field(default=None, gt=0)
    seed: int = 0
    baseline: str | None = Field(None, description="Model that normalises CE (ImageNet-C used AlexNet).")

    @field_validator("names")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        from robustlab.data.corruptions import CORRUPTIONS

        for name in v or []:
            _lookup(CORRUPTIONS.get, name)
        return v

    @field_validator("severities")
    @classmethod
    def _range(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= s <= 5 for s in v):
            raise ValueError(f"severities must be a non-empty list of values in 1..5, got {v}")
        return sorted(set(v))


class StudySpec(_Strict):
    """A whole robustness study."""

    version: int = SPEC_VERSION
    name: str = "study"
    output: str = "runs/study"
    models: list[str] = Field(min_length=1)
    dataset: DatasetSection = DatasetSection()  # frozen: safe to share
    attacks: list[AttackSection] = Field(default_factory=list)
    clever: CleverSection | None = None
    corruptions: CorruptionSection | None = None
    seed: int = 0
    batch_size: int = Field(default=128, gt=0)

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str]) -> list[str]:
        from robustlab.models import MODELS

        errors = []
        for name in v:
            if ":" in name or name.endswith(".safetensors"):
                continue
            try:
                _lookup(MODELS.get, name)
            except ValueError as exc:
                errors.append(str(exc))
        if errors:
            raise ValueError("; ".join(errors))
        if len(set(v)) != len(v):
            raise ValueError(f"models must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _baseline_is_a_model(self) -> StudySpec:
        c = self.corruptions
        if c is not None and c.baseline is not None and c.baseline not in self.models:
            raise ValueError(f"corruptions.baseline {c.baseline!r} must be one of the study's models")
        return self

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON data with defaults filled in (what the run's identity is computed from)."""
        return json.loads(self.model_dump_json())

    def digest(self) -> str:
        """sha256 of the canonical spec."""
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  - {path}: {msg}")
    return f"{source}: {len(lines)} error(s) in the study spec:\n" + "\n".join(lines)


def parse_spec(data: dict[str, Any], source: str = "spec") -> StudySpec:
    """Validate a spec given as a dict; all problems are reported together, each with its path.

    Raises:
        ConfigError: listing every error as ``path: message``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a study spec must be a mapping, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Read and validate a YAML spec file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"spec file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
    return parse_spec(data, str(p))


def resolve_output(spec: StudySpec, root: str | os.PathLike[str]) -> Path:
    """The run directory: ``spec.output`` under ``root``; a path escaping ``root`` is refused."""
    base = Path(root).resolve()
    out = (base / spec.output).resolve()
    if out != base and base not in out.parents:
        raise ConfigError(
            f"output {spec.output!r} escapes its root {base}: use a path inside it (or pass --out explicitly)"
        )
    return out
