"""Adversarial attacks judged by one evaluator.

``attack(model, x, y, "pgd", norm="linf", eps=8/255)`` runs a registered attack and returns an
:class:`AttackResult` with per-sample records. Attacks: ``fgsm``, ``ifgsm``, ``pgd``, ``mifgsm`` (one gradient
loop), ``cw`` and ``ead`` (one binary search over the constant). Norms (``linf``, ``l2``, ``l1``), target modes
(``untargeted``, ``random``, ``least-likely``, ``top2`` or an explicit tensor) and losses are the threat
primitives of :mod:`robustlab.threat`.
"""

from robustlab.attacks._methods import ATTACKS
from robustlab.attacks._result import RECORD_FIELDS, AttackResult
from robustlab.attacks._run import attack, check_params, list_attacks, parse_eps
from robustlab.threat import LOSSES, NORMS, TARGET_MODES

__all__ = [
    "ATTACKS",
    "LOSSES",
    "NORMS",
    "RECORD_FIELDS",
    "TARGET_MODES",
    "AttackResult",
    "attack",
    "check_params",
    "list_attacks",
    "parse_eps",
]
