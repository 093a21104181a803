"""robustlab: measure, explain and improve the robustness of image classifiers.

The public API is what ``__all__`` lists; everything else may change.
"""

from robustlab.attacks import AttackResult, attack, list_attacks, parse_eps
from robustlab.data import Dataset, load_dataset, resolve_data_dir
from robustlab.data.corruptions import corrupt, list_corruptions
from robustlab.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    InputContractError,
    ModelError,
    RobustlabError,
    UnknownNameError,
)
from robustlab.metrics import (
    AccuracyResult,
    ClasswiseResult,
    CleverResult,
    CorruptionReport,
    classwise_metrics,
    clever,
    compare_with_attack,
    corruption_report,
    evaluate,
)
from robustlab.models import ModelAdapter, ModelSpec, build_model, list_models, load_model, save_weights
from robustlab.train import TrainConfig, train_model

__version__ = "0.1.0"

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
