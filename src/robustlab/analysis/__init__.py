"""Analysis over the store: summaries, transfer matrices, the Pareto frontier and its log-error law.

:func:`analyse_run` runs every registered job kind's analysis (:mod:`robustlab.store.kinds`).
"""

from robustlab.analysis.pareto import (
    LogErrorFit,
    ModelPoint,
    ParetoAnalysis,
    fit_log_error,
    pareto_analysis,
    pareto_frontier,
    points_from_summary,
)
from robustlab.analysis.study import StudyAnalysis, analyse_run
from robustlab.analysis.summary import add_rate, attack_summary, query_rows, rate_of
from robustlab.analysis.transfer import TransferMatrix, transfer_matrices

__all__ = [
    "LogErrorFit",
    "ModelPoint",
    "ParetoAnalysis",
    "StudyAnalysis",
    "TransferMatrix",
    "add_rate",
    "analyse_run",
    "attack_summary",
    "fit_log_error",
    "pareto_analysis",
    "pareto_frontier",
    "points_from_summary",
    "query_rows",
    "rate_of",
    "transfer_matrices",
]
