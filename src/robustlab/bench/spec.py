"""The study spec: a YAML file validated by pydantic, every error reported at once with its path.

The common fields (name, output, models, dataset, seed, batch size) are declared here; every other section
belongs to a job kind (:mod:`robustlab.store.kinds`), which declares its field, type and default. The class
that parses a spec, :func:`spec_model`, is :class:`StudySpec` extended with the sections of the registered
kinds, built on first use.

Example::

    name: demo
    output: runs/demo                 # relative to the spec's folder; may not escape it
    models: [resnet20-akamaster, vgg11-w50]
    dataset: {name: cifar10, n: 100, seed: 0, subset: common-correct}
    attacks:
      - {name: fgsm, norm: linf, minimal: true}
      - {name: ifgsm, norm: linf, eps: [2/255, 8/255], steps: [5, 10], targets: [untargeted, random], transfer: true}
      - {name: cw, params: {search_steps: 4, steps: 50}}
    # ... and the sections of the other job kinds (robustlab.kinds), each under its field name
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from robustlab.errors import ConfigError
from robustlab.store.kinds import job_kinds

SPEC_VERSION = 1


def lookup(get: Any, name: str) -> Any:
    """``get(name)`` for a section's validator: registry lookups raise UnknownNameError (a KeyError), and
    pydantic collects only ValueErrors."""
    try:
        return get(name)
    except KeyError as exc:
        raise ValueError(str(exc)) from None


def _target_mode(name: str) -> str:
    from robustlab.threat import get_target_mode

    return str(lookup(get_target_mode, name).name)


def _norm(name: str) -> str:
    from robustlab.threat import get_norm

    return str(lookup(get_norm, name).name)


#: A registered target mode (robustlab.threat.TARGET_MODES), stored under its canonical name.
TargetMode = Annotated[str, AfterValidator(_target_mode)]
#: A registered norm (robustlab.threat.NORMS), stored under its canonical name.
NormName = Annotated[str, AfterValidator(_norm)]


class SpecSection(BaseModel):
    """Base of every spec section: unknown keys are errors, and a parsed section is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSection(SpecSection):
    """Which images every model is evaluated on."""

    name: str = "cifar10"
    split: Literal["test", "train"] = "test"
    n: int = Field(default=100, gt=0, description="Number of images.")
    seed: int = 0
    subset: Literal["random", "common-correct"] = Field(
        default="random", description="'common-correct': only images every model classifies correctly (the seed study)."
    )
    pool: int | None = Field(default=None, gt=0, description="Candidates screened for common-correct (default 4·n).")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from robustlab.data import DATASETS

        scheme, sep, rest = v.partition(":")
        if not sep:
            lookup(DATASETS.get, v)
            return v
        if scheme.lower() not in ("npz", "folder"):
            raise ValueError(f"unknown dataset scheme {scheme!r}: use a dataset name, npz:PATH or folder:PATH")
        path = Path(rest).expanduser()
        if not (path.is_file() if scheme.lower() == "npz" else path.is_dir()):
            raise ValueError(f"{v}: {path.absolute()} does not exist")
        return v


class StudySpec(SpecSection):
    """A whole robustness study: the common fields. Parse with :func:`parse_spec` (or :func:`spec_model`),
    which adds the job kinds' sections."""

    version: int = SPEC_VERSION
    name: str = "study"
    output: str = "runs/study"
    models: list[str] = Field(min_length=1)
    dataset: DatasetSection = DatasetSection()  # frozen: safe to share
    seed: int = 0
    batch_size: int = Field(default=128, gt=0)

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str]) -> list[str]:
        errors = [problem for name in v if (problem := model_problem(name)) is not None]
        if errors:
            raise ValueError("; ".join(errors))
        if len(set(v)) != len(v):
            raise ValueError(f"models must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _kinds_agree(self) -> StudySpec:
        problems = [p for k in job_kinds() if k.field is None or hasattr(self, k.field) for p in k.check(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def section(self, field: str) -> Any:
        """The section a job kind reads (``None`` when the kind is not part of this spec class)."""
        return getattr(self, field, None)

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON data with defaults filled in (what the run's identity is computed from).

        A section of a job kind added after the first release is left out while it equals its default (unused):
        registering a new kind must not change the identity of every existing study, or no run made before it
        could resume. The sections of the first kinds stay in, as they always were.
        """
        result: dict[str, Any] = json.loads(self.model_dump_json())
        optional = _new_kind_fields()
        for name, field in type(self).model_fields.items():
            if name in optional and result.get(name) == json.loads(_default_json(field)):
                del result[name]
        return result

    def digest(self) -> str:
        """sha256 of the canonical spec."""
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()


def _new_kind_fields() -> set[str]:
    """The spec fields of kinds whose unused section stays out of the identity (``JobKind.always_in_identity``)."""
    from robustlab.store.kinds import job_kinds

    return {k.field for k in job_kinds() if k.field is not None and not k.always_in_identity}


def _default_json(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return json.dumps(value, default=lambda o: o.model_dump(mode="json"))


def model_problem(name: str) -> str | None:
    """Why the model reference ``name`` of a spec cannot load (an unknown zoo name with close matches, a missing
    file or module), or ``None``."""
    from robustlab.models import MODELS
    from robustlab.models.loading import split_route

    name, _ = split_route(name)  # the route itself is checked when the model loads
    if ":" in name or name.endswith(".safetensors"):
        return _user_model_problem(name)
    try:
        lookup(MODELS.get, name)
    except ValueError as exc:
        return str(exc)
    return None


def _user_model_problem(ref: str) -> str | None:
    """Why a user model reference cannot load (a missing file or module), or ``None``."""
    if ref.endswith(".safetensors"):
        return None if Path(ref).is_file() else f"model file {ref} does not exist"
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        return f"model {ref!r}: use path/to/file.py:factory or package.module:factory"
    if target.endswith(".py"):
        return None if Path(target).is_file() else f"model {ref}: factory file {target} does not exist"
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    return None if found is not None else f"model {ref}: module {target!r} cannot be imported"


_SPEC_MODELS: dict[tuple[str, ...], type[StudySpec]] = {}


def spec_model() -> type[StudySpec]:
    """:class:`StudySpec` with a field per registered job kind that has a section (built once per set of
    kinds)."""
    kinds = [k for k in job_kinds() if k.field is not None]
    key = tuple(k.name for k in kinds)
    if key not in _SPEC_MODELS:
        fields: dict[str, Any] = {k.field: (k.section, k.default) for k in kinds if k.field is not None}
        _SPEC_MODELS[key] = create_model("StudySpec", __base__=StudySpec, __module__=__name__, **fields)
    return _SPEC_MODELS[key]


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
        return spec_model().model_validate(data)
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
