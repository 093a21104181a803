"""Metrics: clean accuracy, CLEVER (and its comparison with attacks), class-wise metrics and corruption errors."""

from robustlab.metrics._clever_compare import CleverComparison, compare_with_attack, compare_with_distortions
from robustlab.metrics.accuracy import AccuracyResult, evaluate, predict_classes
from robustlab.metrics.classwise import ClasswiseResult, classwise_from_records, classwise_metrics
from robustlab.metrics.clever import CleverResult, clever
from robustlab.metrics.corruption import (
    CorruptionAccuracy,
    CorruptionErrors,
    CorruptionReport,
    corruption_accuracy,
    corruption_errors,
    corruption_report,
)

__all__ = [
    "AccuracyResult",
    "ClasswiseResult",
    "CleverComparison",
    "CleverResult",
    "CorruptionAccuracy",
    "CorruptionErrors",
    "CorruptionReport",
    "classwise_from_records",
    "classwise_metrics",
    "clever",
    "compare_with_attack",
    "compare_with_distortions",
    "corruption_accuracy",
    "corruption_errors",
    "corruption_report",
    "evaluate",
    "predict_classes",
]
