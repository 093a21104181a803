"""Metrics: accuracy (more to come: success rates, distortions, CLEVER, class-wise metrics)."""

from robustlab.metrics.accuracy import AccuracyResult, evaluate, predict_classes
from robustlab.metrics.classwise import (
    CFPSCorrelation,
    ClasswiseResult,
    cfps_vulnerability_correlation,
    classwise_from_records,
    classwise_metrics,
)
from robustlab.metrics.clever import CleverComparison, CleverResult, clever, compare_with_attack
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
    "CFPSCorrelation",
    "ClasswiseResult",
    "CleverComparison",
    "CleverResult",
    "CorruptionAccuracy",
    "CorruptionErrors",
    "CorruptionReport",
    "cfps_vulnerability_correlation",
    "classwise_from_records",
    "classwise_metrics",
    "clever",
    "compare_with_attack",
    "corruption_accuracy",
    "corruption_errors",
    "corruption_report",
    "evaluate",
    "predict_classes",
]
