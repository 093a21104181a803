"""The gradient-masking audit: is a model's robustness real?

``audit(model, x, y, eps=8/255)`` checks the model (probability outputs, randomness, train-mode layers, zero or
non-finite input gradients, layers without a derivative), climbs a ladder of attacks on the same points (FGSM,
PGD-20, PGD-100 with CE, margin and DLR, restarts, APGD-CE, APGD-T, BPDA, EoT, Square, transfer from a surrogate
and surrogate-initialised PGD, each only on the points still robust; a PGD ε sweep; without a surrogate named, the
cheapest standard zoo model of the same data, :func:`choose_surrogate`), raises flags with stable codes
(:data:`robustlab.attacks.CHECKS`) against documented thresholds, and gives a verdict with the honest number: the
lowest verified robust accuracy and the attack that reached it. ``robustlab audit`` is its command; see
``docs/audit.md``.
"""

from robustlab.audit._audit import AuditConfig, AuditResult, audit
from robustlab.audit._flags import RELATIVE, THRESHOLDS, Finding
from robustlab.audit._ladder import Rung, RungResult, build_ladder
from robustlab.audit._model import Layer, ModelFacts
from robustlab.audit._surrogate import SurrogateChoice, choose_surrogate

__all__ = [
    "RELATIVE",
    "THRESHOLDS",
    "AuditConfig",
    "AuditResult",
    "Finding",
    "Layer",
    "ModelFacts",
    "Rung",
    "RungResult",
    "SurrogateChoice",
    "audit",
    "build_ladder",
    "choose_surrogate",
]
