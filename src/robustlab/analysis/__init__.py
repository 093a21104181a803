"""Analysis over the store: summaries, transfer matrices, the Pareto frontier and its log-error law."""

from robustlab.analysis.pareto import LogErrorFit, ModelPoint, fit_log_error, pareto_frontier, points_from_summary
from robustlab.analysis.study import StudyAnalysis, analyse_run
from robustlab.analysis.summary import attack_summary, clean_summary, clever_summary, clever_vs_attack
from robustlab.analysis.transfer import TransferMatrix, transfer_matrices

__all__ = [
    "LogErrorFit",
    "ModelPoint",
    "StudyAnalysis",
    "TransferMatrix",
    "analyse_run",
    "attack_summary",
    "clean_summary",
    "clever_summary",
    "clever_vs_attack",
    "fit_log_error",
    "pareto_frontier",
    "points_from_summary",
    "transfer_matrices",
]
