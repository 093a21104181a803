"""Metrics: accuracy (more to come: success rates, distortions, CLEVER, class-wise metrics)."""

from robustlab.metrics.accuracy import AccuracyResult, evaluate, predict_classes

__all__ = ["AccuracyResult", "evaluate", "predict_classes"]
