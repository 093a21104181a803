"""A surrogate-guided attack in the manner of G-PGA (``"gpga"``): match and deceive, then deceive the model itself.

Gradient masking makes a model's own input gradients uninformative (vanishing, shattered or pointing away from
the adversarial examples that exist), so that PGD fails although the model is not robust. A surrogate whose
gradients are informative (a standard-trained model of the same data) knows directions that transfer. Naseer et
al. proposed G-PGA, which lets such a surrogate guide the attack with a "match and deceive" loss; their exact loss
was not available to us, so this is our own design of the same idea, in two phases over ``steps`` iterations:

1. **Match and deceive** (the first ``match_fraction`` of the steps), from the clean input: each step follows
   ``ĝ_deceive + match_weight · max(0, cos(ĝ_deceive, ĝ_match)) · ĝ_match``, where ``g_deceive = ∇ CE(s(x'), y)``
   pushes the surrogate off the true class and ``g_match = −∇ KL(p_s(x') ‖ p_t(x'))`` (the surrogate's distribution
   held fixed) pulls the model's prediction towards the surrogate's. ``ĝ`` is a gradient divided by its dual norm,
   per sample, so that neither part dominates by scale alone (logits scaled by 10⁴ or gradients near zero cannot
   drown or mute the surrogate's direction); the match direction counts as much as it agrees with the deceive
   direction, so that a model whose gradients are noise (shattered) or point away adds nothing — without that weight
   a planted shattered-gradient model kept 47.5 % robust against 25.0 % with it (``docs/audit.md``). Where the model's
   gradients vanish, the phase is a transfer attack; where they are informative, it seeks points at which the
   surrogate is fooled *and* the model agrees with it.
2. **Deceive the model** (the rest of the steps): PGD on the model's own ``loss`` (margin by default: it does not
   saturate like cross-entropy) from the phase-1 point, without random start.

A sample is judged by the model at every iterate of both phases and stops once the model misclassifies it; the
candidate returned is that point (or the last iterate). Each phase-1 step costs one gradient pass of the model and
one of the surrogate; both are counted.

References:
    Naseer, Khan, Porikli and Khan, "Guidance Through Surrogate: Towards a Generic Diagnostic Attack", IEEE TNNLS
    (arXiv 2212.14875): the match-and-deceive idea and the label-smoothing masking it reveals.
    Athalye, Carlini and Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018 (masking).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.attacks._evaluator import constrain, is_success
from robustlab.attacks._gradient import GradientConfig, gradient_attack
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext, _apply_params, every_norm
from robustlab.errors import ConfigError
from robustlab.threat import LOSSES, Norm, make_loss


@dataclass(frozen=True)
class GuidedConfig:
    """Settings of the guided attack.

    Attributes:
        steps: Iterations of both phases together.
        match_fraction: The share of ``steps`` spent in the match-and-deceive phase (``0``: PGD alone; ``1``: no
            phase 2).
        match_weight: Weight of the (normalised) match direction against the (normalised) deceive direction.
        rel_step: Each phase's step length relative to ``eps / (its steps)``.
        loss: The model's loss in phase 2 (``"margin"``, ``"dlr"``, ``"ce"``).
    """

    steps: int = 100
    match_fraction: float = 0.5
    match_weight: float = 1.0
    rel_step: float = 2.5
    loss: str = "margin"

    @property
    def match_steps(self) -> int:
        """Iterations of phase 1."""
        return round(self.steps * self.match_fraction)


def _unit(grad: Tensor, norm: Norm) -> Tensor:
    """``grad`` divided by its per-sample dual norm (rows with a zero or non-finite gradient give zero)."""
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    size = norm.dual(grad).view(-1, *([1] * (grad.dim() - 1)))
    return torch.where(size > 0, grad / size.clamp_min(torch.finfo(grad.dtype).tiny), torch.zeros_like(grad))


class GuidedMethod(AttackMethod):
    """The surrogate-guided attack (``"gpga"``): untargeted, every norm; needs a surrogate (``attack(...,
    surrogate=S)`` or the audit's)."""

    name = "gpga"
    fixed_budget = True
    defaults = GuidedConfig()

    @property
    def norms(self) -> tuple[str, ...]:  # type: ignore[override]
        return every_norm()

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> GuidedConfig:
        if step_size is not None:
            raise ConfigError("gpga sets its step lengths from eps and its steps; change them with rel_step=...")
        cfg: GuidedConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        if cfg.steps < 1:
            raise ConfigError(f"gpga needs steps >= 1, got {cfg.steps}")
        if not 0 <= cfg.match_fraction <= 1:
            raise ConfigError(f"match_fraction must be in [0, 1], got {cfg.match_fraction}")
        if cfg.match_weight < 0 or cfg.rel_step <= 0:
            raise ConfigError("match_weight must be >= 0 and rel_step > 0")
        LOSSES.get(cfg.loss)
        return cfg

    def cost(self) -> Cost:
        c = self.config
        return Cost(gradient=2 * c.match_steps + (c.steps - c.match_steps))

    def check_classes(self, num_classes: int, targeted: bool) -> None:
        super().check_classes(num_classes, targeted)
        if targeted:
            raise ConfigError("gpga is untargeted: its surrogate is pushed off the true class, not towards a target")
        make_loss(self.config.loss).check(num_classes, targeted)

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        if ctx.gradient_model is None:
            raise ConfigError(
                "gpga is guided by a surrogate model: pass one (robustlab attack --surrogate S, attack(..., "
                "surrogate=S)), or run it inside robustlab audit, which picks a standard zoo model of the data"
            )
        if batch.targets is not None:
            raise ConfigError("gpga is untargeted")
        cfg, norm, counter = self.config, ctx.norm, ctx.counter
        x0, labels, eps, index = batch.x, batch.labels, batch.eps, batch.index
        x = x0.clone() if batch.init is None else constrain(x0, batch.init, norm, eps)
        open_ = torch.ones(len(batch), dtype=torch.bool, device=x0.device)  # rows the model still classifies right
        k1 = cfg.match_steps
        step = cfg.rel_step * eps / max(k1, 1)
        for _ in range(k1):
            rows = open_.nonzero().flatten()
            if rows.numel() == 0:
                break
            xa = x[rows].detach().requires_grad_(True)
            with torch.enable_grad():
                zt = ctx.model(xa)
                zs = ctx.gradient_model(xa)
                deceive = F.cross_entropy(zs, labels[rows], reduction="sum")
                (g_deceive,) = torch.autograd.grad(deceive, xa)
                ps = F.softmax(zs.detach(), 1)
                match = -(ps * (torch.log(ps.clamp_min(1e-30)) - F.log_softmax(zt, 1))).sum()
                (g_match,) = torch.autograd.grad(match, xa)
            counter.add_gradient(index[rows], 2)
            hit = is_success(zt.detach(), labels[rows], None)
            open_[rows[hit]] = False
            move = ~hit
            if not bool(move.any()):
                break
            ud, um = _unit(g_deceive[move], norm), _unit(g_match[move], norm)
            agree = F.cosine_similarity(ud.flatten(1), um.flatten(1), dim=1).clamp_min(0)  # (n,): 0 for noise
            g = ud + cfg.match_weight * agree.view(-1, *([1] * (ud.dim() - 1))) * um
            r, xm = rows[move], xa.detach()[move]
            x[r] = constrain(x0[r], xm + norm.steepest_step(g, step[r], xm), norm, eps[r])
        rows = open_.nonzero().flatten()
        k2 = cfg.steps - k1
        if k2 and rows.numel():
            x[rows] = gradient_attack(
                ctx.model,
                x0[rows],
                labels[rows],
                None,
                eps[rows],
                norm=norm,
                config=GradientConfig(steps=k2, rel_step=cfg.rel_step, random_start=False, loss=cfg.loss),
                generator=ctx.generator,
                counter=counter,
                index=index[rows],
                init=x[rows],
            )
        return x


ATTACKS.register("gpga", GuidedMethod())
