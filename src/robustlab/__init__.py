"""robustlab: measure, explain and improve the robustness of image classifiers.

The public API is what ``__all__`` lists; everything else may change.

The names are imported on first use (PEP 562), so ``import robustlab`` (and ``robustlab --help``) does not
import torch; ``robustlab.attack`` and the others load their package when first touched.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from robustlab._version import __version__
from robustlab.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    InputContractError,
    ModelError,
    RobustlabError,
    UnknownNameError,
)

if _typing.TYPE_CHECKING:
    from robustlab.attacks import AttackResult, attack, list_attacks, parse_eps
    from robustlab.data import Dataset, load_dataset, resolve_data_dir
    from robustlab.data.corruptions import corrupt, list_corruptions
    from robustlab.metrics import (
        AccuracyResult,
        ClasswiseResult,
        CleverResult,
        CorruptionReport,
        classwise_metrics,
        compare_with_attack,
        corruption_report,
        evaluate,
    )
    from robustlab.metrics.clever import clever
    from robustlab.models import ModelAdapter, ModelSpec, build_model, list_models, load_model, save_weights
    from robustlab.train import TrainConfig, train_model

#: Where each lazily imported public name lives.
_LAZY = {
    **dict.fromkeys(("AttackResult", "attack", "list_attacks", "parse_eps"), "robustlab.attacks"),
    **dict.fromkeys(("Dataset", "load_dataset", "resolve_data_dir"), "robustlab.data"),
    **dict.fromkeys(("corrupt", "list_corruptions"), "robustlab.data.corruptions"),
    **dict.fromkeys(
        (
            "AccuracyResult",
            "ClasswiseResult",
            "CleverResult",
            "CorruptionReport",
            "classwise_metrics",
            "clever",
            "compare_with_attack",
            "corruption_report",
            "evaluate",
        ),
        "robustlab.metrics",
    ),
    **dict.fromkeys(
        ("ModelAdapter", "ModelSpec", "build_model", "list_models", "load_model", "save_weights"), "robustlab.models"
    ),
    **dict.fromkeys(("TrainConfig", "train_model"), "robustlab.train"),
}


def __getattr__(name: str) -> _typing.Any:
    """Import a public name's package on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robustlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AccuracyResult",
    "AttackResult",
    "ChecksumError",
    "ClasswiseResult",
    "CleverResult",
    "ConfigError",
    "CorruptionReport",
    "DataError",
    "Dataset",
    "InputContractError",
    "ModelAdapter",
    "ModelError",
    "ModelSpec",
    "RobustlabError",
    "TrainConfig",
    "UnknownNameError",
    "__version__",
    "attack",
    "build_model",
    "classwise_metrics",
    "clever",
    "compare_with_attack",
    "corrupt",
    "corruption_report",
    "evaluate",
    "list_attacks",
    "list_corruptions",
    "list_models",
    "load_dataset",
    "load_model",
    "parse_eps",
    "resolve_data_dir",
    "save_weights",
    "train_model",
]
