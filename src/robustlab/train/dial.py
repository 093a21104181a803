"""``dial``: domain invariant adversarial learning (Levi, Attias, Kontorovich; arXiv 2104.00322).

TRADES (or PGD-AT) plus a **domain classifier** ``D`` on the penultimate features ``h`` (the input of the network's
classifier), behind a gradient-reversal layer: ``D`` learns to tell clean (domain 0) from adversarial (domain 1)
features, and the reversed gradient pushes the feature extractor to make them indistinguishable.

Per batch ``(x, y)``, with ``x₀ = x + start_std · N(0, 1)`` (clipped into the ball and [0, 1]):

- ``kind="kl"`` (DIAL-KL, the CIFAR recipe): ``x′`` ascends ``KL(f(x) ‖ f(x′))`` from ``x₀`` (TRADES' inner attack);
  ``L_adv = β · (1/B) Σ KL(f(x) ‖ f(x′)) + r · CE(D(x′), 1)``;
- ``kind="ce"`` (DIAL-CE, the MNIST recipe): ``x′`` ascends ``CE(f(x′), y)`` from the same start;
  ``L_adv = β · CE(f(x′), y) + r · CE(D(x′), 1)``;
- ``L_nat = CE(f(x), y) + r · CE(D(x), 0)``; loss ``= L_nat + L_adv``.

``D(·) = head(GRL_α(h(·)))``; the gradient-reversal layer is the identity forward and multiplies the gradient by
``−α`` backward, with ``α = 2 / (1 + exp(−10 p)) − 1`` and ``p`` the training progress in steps
(:attr:`StepContext.progress`, the fraction of the run's steps done once this step is taken). The reference's
``adjust_alpha`` computes ``p`` from the *batch index* divided by the *dataset length*, so ``p`` barely moves within
an epoch and rises in jumps of ``1/epochs``; progress in steps is the schedule the formula intends.

The class cross-entropies (``CE(f(x), y)``, and ``CE(f(x′), y)`` for ``"ce"``) use the run's label smoothing
(:meth:`StepContext.ce`; 0 by default for adversarial methods, as in the reference); the domain cross-entropies
never do (the domain labels are exact).

**The domain head.** The method asks for it with ``model_kwargs() == {"heads": {"domain": 2}}``:
:func:`robustlab.models.build_architecture` adds a :class:`~robustlab.models.heads.FeatureHead` ``domain``
(FC 100 → BN1d → ReLU → FC 2, the reference's ``SmallCNNDANN`` / ``WideResNetDANN`` domain classifier) that reads the
classifier's input through a forward pre-hook; the network's ``forward`` still returns the class logits only, so
evaluation and attacks never see the head. The clean and the adversarial features go through the head as two
batches (its BN1d normalises each with its own statistics, as the reference's two model calls do). The head's
parameters receive their gradients in the same backward as the network's: under DistributedDataParallel the clean
forward is :meth:`StepContext.forward_again` and the adversarial one :meth:`StepContext.forward` (one forward of the
wrapper per backward), as for ``trades``.

Exported models keep the head (state-dict keys ``domain.*``; the spec's ``arch_kwargs`` records
``heads={"domain": 2}``); to load such weights into the plain architecture, declare ``drop_keys=("domain.*",)`` in
the :class:`~robustlab.models.spec.WeightsSpec`.

Settings and their source (matanle51/DIAL ``train_dial_cifar10.py`` / ``train_dial_mnist.py``, research note §1.10):
``eps`` (required; CIFAR 0.031, MNIST 0.3), ``kind`` (``"kl"``: the CIFAR-10 recipe; MNIST uses ``"ce"``), ``beta``
(8.0, CIFAR-10; MNIST 6), ``domain_weight`` (r = 6.0, CIFAR-10's ``--domain-loss-ratio``; MNIST 0.1), ``steps`` (10,
CIFAR-10; MNIST 40), ``step_size`` (``None``: ``2.5·eps/steps`` as ``trades`` here, 0.00775 at eps 0.031; the
reference passes 0.007 on CIFAR-10 and 0.01 on MNIST), ``start_std`` (0.001). Optimiser and schedule (SGD 0.1,
wd 7e-4, ×0.1 at 75 %/90 % of 100 epochs on CIFAR-10) are the loop's business. DIAL-AWP is not implemented.

Logs: ``natural_loss`` (``CE(f(x), y)``), ``robust_loss`` (the KL or CE term before ``β``), ``domain_loss``
(``CE(D(x), 0) + CE(D(x′), 1)`` before ``r``), ``domain_accuracy`` (over the clean and adversarial rows together;
0.5 is chance, where the feature extractor wants it) and ``grl_alpha``. The training accuracy is counted on the clean
logits, as for ``trades``.

References:
    Levi, Attias, Kontorovich, "Domain Invariant Adversarial Learning", TMLR (arXiv 2104.00322).
    Ganin, Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import ConfigError, ModelError
from robustlab.models.heads import FeatureHead, feature_head, reverse_gradient
from robustlab.train.methods import (
    TRAINING_METHODS,
    StepContext,
    StepOutput,
    TrainingMethod,
    kl_to_reference,
    trades_inner,
)

#: Name and width of DIAL's domain head (clean = 0, adversarial = 1).
DOMAIN_HEAD = "domain"
DOMAIN_CLASSES = 2
#: The variants: the inner attack's and the robust term's loss.
DIAL_KINDS = ("kl", "ce")


def grl_alpha(progress: float, gamma: float = 10.0) -> float:
    """The gradient-reversal weight ``2 / (1 + exp(−gamma · p)) − 1`` at training progress ``p`` in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


@dataclass(frozen=True)
class DIALSettings:
    """Settings of ``dial`` (see the module docstring for their source).

    Attributes:
        eps: L∞ training budget (required).
        kind: ``"kl"`` (TRADES-style KL attack and robust term) or ``"ce"`` (PGD on the cross-entropy).
        beta: β, the weight of the robust term.
        domain_weight: r, the weight of both domain cross-entropies.
        steps: Inner ascent steps.
        step_size: Absolute step; ``None``: ``2.5 · eps / steps``.
        start_std: Standard deviation of the Gaussian start around ``x``.
    """

    eps: float | None = None
    kind: str = "kl"
    beta: float = 8.0
    domain_weight: float = 6.0
    steps: int = 10
    step_size: float | None = None
    start_std: float = 0.001


class DIAL(TrainingMethod):
    """Domain invariant adversarial learning: TRADES/PGD-AT plus a gradient-reversed clean-vs-adversarial domain head.

    References:
        Levi, Attias, Kontorovich, "Domain Invariant Adversarial Learning", TMLR (arXiv 2104.00322).
    """

    name = "dial"
    adversarial = True

    def __init__(self) -> None:
        self.settings = DIALSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        s = copy.settings
        if s.eps is None:
            raise ConfigError("dial needs eps (the training budget), e.g. --eps 8/255 or method_params={'eps': 0.031}")
        if not (math.isfinite(s.eps) and s.eps > 0):
            raise ConfigError(f"dial: eps must be > 0, got {s.eps}")
        if s.kind not in DIAL_KINDS:
            raise ConfigError(
                f"dial: kind must be one of {', '.join(DIAL_KINDS)} (KL or CE robust term), got {s.kind!r}"
            )
        if s.steps <= 0:
            raise ConfigError(f"dial: steps must be > 0, got {s.steps}")
        if s.step_size is not None and not (math.isfinite(s.step_size) and s.step_size > 0):
            raise ConfigError(f"dial: step_size must be > 0, got {s.step_size}")
        for key in ("beta", "domain_weight", "start_std"):
            value = getattr(s, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"dial: {key} must be >= 0, got {value}")
        return copy

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def model_kwargs(self) -> dict[str, Any]:
        return {"heads": {DOMAIN_HEAD: DOMAIN_CLASSES}}

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        head = _domain_head(ctx)
        step_size = s.step_size if s.step_size is not None else 2.5 * s.eps / s.steps
        x_adv = trades_inner(
            ctx, x, y, eps=s.eps, steps=s.steps, step_size=step_size, start_std=s.start_std, loss=s.kind
        )
        alpha = grl_alpha(ctx.progress)
        logits = ctx.forward_again(x)  # (B, K)
        domain = head(reverse_gradient(head.take_features(), alpha))  # (B, 2)
        logits_adv = ctx.forward(x_adv)  # (B, K)
        domain_adv = head(reverse_gradient(head.take_features(), alpha))  # (B, 2)
        clean_label = torch.zeros(len(x), dtype=torch.long, device=x.device)
        adv_label = torch.ones(len(x), dtype=torch.long, device=x.device)
        d_nat = F.cross_entropy(domain, clean_label)
        d_adv = F.cross_entropy(domain_adv, adv_label)
        natural = ctx.ce(logits, y)
        robust = kl_to_reference(logits_adv, logits).mean() if s.kind == "kl" else ctx.ce(logits_adv, y)
        loss = natural + s.domain_weight * d_nat + s.beta * robust + s.domain_weight * d_adv
        with torch.no_grad():
            hits = (domain.argmax(1) == 0).sum() + (domain_adv.argmax(1) == 1).sum()
            domain_acc = float(hits) / (2 * len(x)) if len(x) else 0.0
        logs = {
            "natural_loss": natural.item(),
            "robust_loss": robust.item(),
            "domain_loss": (d_nat + d_adv).item(),
            "domain_accuracy": domain_acc,
            "grl_alpha": alpha,
        }
        return StepOutput(loss, logits, logs)


def _domain_head(ctx: StepContext) -> FeatureHead:
    try:
        return feature_head(ctx.model, DOMAIN_HEAD)
    except ModelError:
        raise ConfigError(
            f"dial needs a model with the domain head: build its architecture with "
            f"heads={{{DOMAIN_HEAD!r}: {DOMAIN_CLASSES}}} (the method's model_kwargs, which fit_and_export adds to "
            "the spec's arch_kwargs)"
        ) from None


TRAINING_METHODS.register("dial", DIAL())
