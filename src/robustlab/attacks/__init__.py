"""Adversarial attacks judged by one evaluator.

``attack(model, x, y, "pgd", norm="linf", eps=8/255)`` runs a registered attack and returns an
:class:`AttackResult` with per-sample records. Under that façade, attacks are objects (:class:`AttackMethod`:
``ATTACKS.get("pgd").configure(...)``, ``propose(ctx, batch)``) that cascades and training loops hold directly;
:func:`perturb` is the light primitive for training (no judging, no records, no mode switch).

Attacks: ``fgsm``, ``ifgsm``, ``pgd``, ``mifgsm`` (one gradient loop), ``cw`` and ``ead`` (one binary search over the
constant), the AutoAttack family, ``gpga`` (a surrogate-guided attack in the manner of G-PGA), and ``semantic``
(:func:`semantic_attack`: image attributes and a pixel residual, judged by re-rendering from the parameters). Norms
(``linf``, ``l2``, ``l1``), target modes (``untargeted``, ``random``, ``least-likely``, ``top2`` or an explicit
tensor) and losses are the threat primitives of :mod:`robustlab.threat`.

The checks of a model and of an evaluation (:data:`CHECKS`: stable codes, their explanation and the fix to try) are
shared by AutoAttack and the gradient-masking audit (:mod:`robustlab.audit`), as are the evaluator's projection
(:func:`constrain`) and the pass counter the attack objects report their model calls to.
"""

from robustlab.attacks import _apgd, _autoattack, _fab, _guided, _square  # noqa: F401 - each registers its attacks
from robustlab.attacks._checks import CHECKS, Check, GradientCheck, check_gradients, looks_like_probabilities
from robustlab.attacks._evaluator import PassCounter, constrain, correct_fraction
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext
from robustlab.attacks._perturb import perturb
from robustlab.attacks._result import RECORD_FIELDS, AttackResult
from robustlab.attacks._run import (
    attack,
    check_params,
    check_surrogate,
    check_takes_surrogate,
    format_eps,
    list_attacks,
    parse_eps,
)
from robustlab.attacks._semantic import SemanticConfig, achromatic, semantic_attack, semantic_perturb
from robustlab.threat import LOSSES, NORMS, TARGET_MODES

__all__ = [
    "ATTACKS",
    "CHECKS",
    "LOSSES",
    "NORMS",
    "RECORD_FIELDS",
    "TARGET_MODES",
    "AttackMethod",
    "AttackResult",
    "Batch",
    "Check",
    "Cost",
    "GradientCheck",
    "PassCounter",
    "RunContext",
    "SemanticConfig",
    "achromatic",
    "attack",
    "check_gradients",
    "check_params",
    "check_surrogate",
    "check_takes_surrogate",
    "constrain",
    "correct_fraction",
    "format_eps",
    "list_attacks",
    "looks_like_probabilities",
    "parse_eps",
    "perturb",
    "semantic_attack",
    "semantic_perturb",
]
