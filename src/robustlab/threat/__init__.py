"""Threat-model primitives shared by attacks, metrics (CLEVER) and training: norms, target modes and losses.

- **Norms** (:data:`NORMS`): ``linf``, ``l2``, ``l1`` as strategy objects (distance, dual, random start,
  steepest step, projection) that own their defaults (``default_eps``, ``clever_radius``, ``diameter``).
- **Target modes** (:data:`TARGET_MODES`): ``untargeted``, ``random``, ``least-likely``, ``top2``, and the
  checks of labels and explicit targets.
- **Losses** (:data:`LOSSES`): ``ce``, ``margin``, ``dlr`` on logits, all maximised by the attacker, and ``kl``
  (TRADES' inner maximisation: the KL divergence from reference logits, which the caller passes as ``reference``).
- **Semantic threat models** (:func:`semantic_threat`, presets :data:`PRESETS` ``mild`` and ``caa``): image
  attributes within ranges (rendered by :mod:`robustlab.transforms`) plus an L∞ pixel residual.

This package sits below ``attacks`` and ``metrics`` and above only ``transforms``; it imports neither (nor ``bench``,
``store``, ``report`` or ``cli``). Adding a norm, a target mode or a loss is one class and one registration here; the
CLI choices and the study spec's allowed values are read from the registries.
"""

from robustlab.threat.losses import DLR, LOSSES, CrossEntropy, Loss, Margin, make_loss, margin, other_max
from robustlab.threat.norms import L1, L2, NORMS, Linf, Norm, get_norm, per_sample
from robustlab.threat.projections import l1_box_correction, project_l1_box
from robustlab.threat.semantic import PRESETS, SemanticThreat, semantic_threat
from robustlab.threat.targets import (
    TARGET_MODES,
    LeastLikely,
    RandomTarget,
    TargetMode,
    Top2,
    Untargeted,
    check_labels,
    get_target_mode,
    resolve_targets,
)

__all__ = [
    "DLR",
    "L1",
    "L2",
    "LOSSES",
    "NORMS",
    "PRESETS",
    "TARGET_MODES",
    "CrossEntropy",
    "LeastLikely",
    "Linf",
    "Loss",
    "Margin",
    "Norm",
    "RandomTarget",
    "SemanticThreat",
    "TargetMode",
    "Top2",
    "Untargeted",
    "check_labels",
    "get_norm",
    "get_target_mode",
    "l1_box_correction",
    "make_loss",
    "margin",
    "other_max",
    "per_sample",
    "project_l1_box",
    "resolve_targets",
    "semantic_threat",
]
