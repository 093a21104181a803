"""FAB-T: the targeted Fast Adaptive Boundary attack, as AutoAttack runs it at a fixed budget.

FAB is a minimal-distortion attack. Each iteration linearises the logit difference ``f = z_t - z_y`` (target
``t``, label ``y``) at the current point ``x1``, projects both ``x1`` and the clean point ``x0`` onto the
hyperplane ``f = 0`` inside the box (:mod:`._fab_projections`), and moves to a convex combination of the two
projections with an overshoot ``eta``, weighted towards the clean point by at most ``alpha_max``. A point that
crosses the decision boundary is kept if it is the closest so far and then pulled back towards ``x0`` by the
factor ``beta``, so the search homes in on the boundary from both sides.

AutoAttack's FAB-T runs one deterministic restart (no random start, no randomness at all) of 100 iterations
per target, for the targets = the 2nd, 3rd, ... (k+1)-th largest clean logits, k = min(9, K - 1), each target on
the points still robust; a point counts as fooled when the closest adversarial found lies within eps. Success
stays untargeted (prediction != label): the target only shapes the linearisation.

What differs from the reference implementation (same answers, fewer costs and no side effects):

- Gradients are taken with respect to the input only (:func:`torch.autograd.grad`); the reference calls
  ``.backward()``, which computes and accumulates every parameter's gradient into the user's model.
- The clean logits (for the clean filter and the targets) are computed once instead of once per target.
- With ``early_stop`` (the default), a point leaves the batch as soon as it has an adversarial example within
  eps: its verdict cannot change any more, only its distortion could shrink further. The returned examples of
  such points are then not the smallest FAB would find in all 100 iterations (the reference's are), but they are
  inside the budget. ``early_stop=False`` runs every iteration on every point and reproduces the reference's
  examples bit for bit on the CPU.

References:
    Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack", ICML 2020.
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020 (FAB-T in AutoAttack).
    fra31/auto-attack, ``autoattack/fab_base.py``, ``fab_pt.py`` (the reference implementation).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter
from robustlab.attacks._fab_projections import project_l1, project_l2, project_linf
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext, _apply_params
from robustlab.attacks._state import ActiveRows
from robustlab.errors import ConfigError

logger = logging.getLogger(__name__)

#: The distance a point has before FAB found any adversarial example for it.
_NOT_FOUND = 1e10


@dataclass(frozen=True)
class FABConfig:
    """Settings of FAB-T (AutoAttack's values by default).

    Attributes:
        steps: Iterations per target.
        targets: Number of target classes k: the 2nd ... (k+1)-th largest clean logits (clamped to K - 1).
        alpha_max: Largest weight of the clean point's projection in each step.
        eta: Overshoot of each step beyond the linearised boundary.
        beta: Backward step: a point that crossed the boundary moves back to ``x0 + beta * (x1 - x0)``.
        early_stop: Drop a point from the batch once it has an adversarial example within eps.
    """

    steps: int = 100
    targets: int = 9
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    early_stop: bool = True


def _rows(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


#: Row-wise distances as the reference computes them (the same reductions, so the same rounding).
DISTANCES: dict[str, Callable[[Tensor], Tensor]] = {
    "linf": lambda flat: flat.abs().max(dim=1)[0],
    "l2": lambda flat: (flat**2).sum(dim=-1).sqrt(),
    "l1": lambda flat: flat.abs().sum(dim=-1),
}
PROJECTIONS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "linf": project_linf,
    "l2": project_l2,
    "l1": project_l1,
}


def target_classes(clean_logits: Tensor, count: int) -> Tensor:
    """AutoAttack's targets: column ``j`` is the class with the (j+2)-th largest clean logit.

    Args:
        clean_logits: Logits at the clean inputs.
        count: Number of targets k (at most K - 1).

    Shape:
        - clean_logits: ``(N, K)``
        - output: ``(N, k)`` int64
    """
    ranking = clean_logits.sort(dim=-1)[1]  # ascending, as the reference sorts
    return torch.stack([ranking[:, -j] for j in range(2, count + 2)], dim=1)


def fab_target_run(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targets: Tensor,
    eps: Tensor,
    *,
    norm: str,
    config: FABConfig,
    counter: PassCounter,
    index: Tensor,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One FAB run (one target per row, no random start) from the clean points.

    Args:
        model: Classifier returning logits (already in eval mode).
        x: Clean inputs, classified correctly.
        labels: True labels.
        targets: The class each row's linearisation compares with its label.
        eps: Per-row budget: with ``config.early_stop`` a row leaves once it has an adversarial within it.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        config: FAB's settings.
        counter: Pass counter, indexed by ``index``.
        index: Global sample positions of the rows (for the counter).
        init: Starting points instead of the clean inputs (clipped to [0, 1]); ``None``: the clean inputs.

    Returns:
        ``(best, dist)``: the closest adversarial example found for each row (the clean input where none was)
        and its distance to the clean input (``1e10`` where none was found).

    Shape:
        - x, init: ``(N, C, H, W)``; labels, targets, eps, index: ``(N,)``
        - output: ``(N, C, H, W)``, ``(N,)``
    """
    project, distance = PROJECTIONS[norm], DISTANCES[norm]
    n = x.shape[0]
    best = x.detach().clone()
    best_dist = torch.full((n,), _NOT_FOUND, dtype=x.dtype, device=x.device)
    ones = [1] * (x.dim() - 1)
    s = ActiveRows(
        x0=x.detach(),
        x1=x.detach().clone() if init is None else init.detach().clamp(0.0, 1.0),
        labels=labels,
        targets=targets,
        eps=eps.to(x.dtype),
        best=best.clone(),
        dist=best_dist.clone(),
    )
    for _ in range(config.steps):
        m = len(s)
        x0, x1, y = s["x0"], s["x1"], s["labels"]
        u = torch.arange(m, device=x.device)
        # the linearisation of f = z_t - z_y at x1: one forward + input-gradient pass
        cur = x1.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(cur)  # (m, K)
            f = -(logits[u, y] - logits[u, s["targets"]])
            (grad,) = torch.autograd.grad(f.sum(), cur)
        counter.add_gradient(index[s.rows])
        w = grad.reshape(m, -1)
        b = -f.detach() + (grad * x1).reshape(m, -1).sum(dim=-1)
        # project x1 and x0 onto the hyperplane together (one batch of 2m rows)
        steps = project(
            torch.cat((x1.reshape(m, -1), x0.reshape(m, -1)), 0), torch.cat((w, w), 0), torch.cat((b, b), 0)
        )
        d1, d2 = steps[:m].reshape(x1.shape), steps[m:].reshape(x1.shape)
        size = distance(steps).unsqueeze(1).reshape(-1, *ones)
        size = torch.max(size, torch.full_like(size, 1e-8))
        a1, a2 = size[:m], size[m:]
        alpha = torch.min(torch.max(a1 / (a1 + a2), torch.zeros_like(a1)), torch.full_like(a1, config.alpha_max))
        x1 = ((x1 + config.eta * d1) * (1 - alpha) + (x0 + d2 * config.eta) * alpha).clamp(0.0, 1.0)
        # did it cross the boundary? one forward pass
        with torch.no_grad():
            crossed = model(x1).max(dim=1)[1] != y
        counter.add_forward(index[s.rows])
        dist = distance(_rows(x1 - x0))
        closer = crossed & (dist < s["dist"])
        s["best"] = torch.where(closer.reshape(-1, *ones), x1, s["best"])
        s["dist"] = torch.where(closer, dist, s["dist"])
        s["x1"] = torch.where(crossed.reshape(-1, *ones), x0 + (x1 - x0) * config.beta, x1)
        if config.early_stop:
            done = s["dist"] <= s["eps"]
            if bool(done.any()):
                s.scatter(best, "best", done)
                s.scatter(best_dist, "dist", done)
                s.keep(~done)
                if len(s) == 0:
                    break
    s.scatter(best, "best")
    s.scatter(best_dist, "dist")
    return best, best_dist


def fab_targeted(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    eps: Tensor,
    *,
    norm: str,
    config: FABConfig,
    counter: PassCounter,
    index: Tensor,
    init: Tensor | None = None,
) -> tuple[Tensor, int]:
    """FAB-T at a fixed budget, as AutoAttack runs it: one FAB run per target on the points still robust.

    A point is fooled by a target when the closest adversarial example found lies within its eps and a fresh
    forward pass still misclassifies it (as the reference checks); fooled points skip the remaining targets.

    Args:
        model: Classifier returning logits (already in eval mode).
        x: Clean inputs in [0, 1].
        labels: True labels.
        eps: Per-sample budget in ``norm``.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        config: FAB's settings.
        counter: Pass counter, indexed by ``index``.
        index: Global sample positions of the rows (for the counter).
        init: Where each target's run starts instead of the clean input (a warm-started minimal search).

    Returns:
        ``(x_adv, k)``: the adversarial example of each fooled point (the clean input for the others and for
        points misclassified to begin with) and the number of targets used, ``min(config.targets, K - 1)``.

    Shape:
        - x, init: ``(N, C, H, W)``; labels, eps, index: ``(N,)``
        - output: ``(N, C, H, W)``
    """
    out = x.detach().clone()
    with torch.no_grad():
        clean = model(x)  # (N, K)
    counter.add_forward(index)
    k = min(config.targets, clean.shape[1] - 1)
    targets = target_classes(clean, k)  # (N, k)
    robust = clean.max(dim=1)[1] == labels
    for j in range(k):
        rows = robust.nonzero().flatten()
        if rows.numel() == 0:
            break
        best, dist = fab_target_run(
            model,
            x[rows],
            labels[rows],
            targets[rows, j],
            eps[rows],
            norm=norm,
            config=config,
            counter=counter,
            index=index[rows],
            init=None if init is None else init[rows],
        )
        found = (dist <= eps[rows].to(dist.dtype)).nonzero().flatten()
        if found.numel() == 0:
            continue
        with torch.no_grad():
            still = model(best[found]).max(dim=1)[1] == labels[rows[found]]
        counter.add_forward(index[rows[found]])
        fooled = found[~still]
        out[rows[fooled]] = best[fooled]
        robust[rows[fooled]] = False
    return out, k


class FABTargeted(AttackMethod):
    """``fab-t``: AutoAttack's FAB-T at a fixed budget (see the module docstring); L∞, L2 and L1.

    It chooses its own targets (the 2nd ... (k+1)-th largest clean logits) and succeeds on any
    misclassification, so it takes no target option. Deterministic: the generator is never used.
    """

    name = "fab-t"
    norms = ("linf", "l2", "l1")
    fixed_budget = True
    defaults = FABConfig()

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> FABConfig:
        if step_size is not None:
            raise ConfigError(
                "fab-t has no step size (each step goes to the linearised boundary); shape it with eta, alpha_max "
                "and beta instead"
            )
        cfg: FABConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        if cfg.steps < 1 or cfg.targets < 1:
            raise ConfigError(f"fab-t needs steps >= 1 and targets >= 1, got {cfg.steps} and {cfg.targets}")
        if not 0 <= cfg.alpha_max <= 1:
            raise ConfigError(f"alpha_max must lie in [0, 1], got {cfg.alpha_max}")
        if not cfg.eta > 0:
            raise ConfigError(f"eta must be > 0 (AutoAttack: 1.05), got {cfg.eta}")
        if not 0 < cfg.beta <= 1:
            raise ConfigError(f"beta must lie in (0, 1] (AutoAttack: 0.9), got {cfg.beta}")
        return cfg

    def cost(self) -> Cost:
        c = self.config
        # per target and iteration: the linearisation (gradient) and the boundary check (forward); plus the
        # clean pass and one re-check per target
        return Cost(gradient=c.targets * c.steps, forward=1 + c.targets * (c.steps + 1))

    def check_classes(self, num_classes: int, targeted: bool) -> None:
        super().check_classes(num_classes, targeted)
        if targeted:
            raise ConfigError(
                "fab-t chooses its own targets (the 2nd to 10th largest clean logits) and succeeds on any "
                "misclassification; run it untargeted (drop the target option)"
            )
        if self.config.targets > num_classes - 1:
            logger.warning(self._clamp_message(num_classes))
        self.__dict__["_num_classes"] = num_classes  # for diagnose(); set on the configured copy of one run

    def targets_used(self, num_classes: int) -> int:
        """The number of targets a run uses on a ``num_classes``-class model: ``min(targets, K - 1)``."""
        return min(int(self.config.targets), num_classes - 1)

    def _clamp_message(self, num_classes: int) -> str:
        return (
            f"{self.name}: targets={self.config.targets} needs more classes than the model's {num_classes}; it "
            f"runs {num_classes - 1} targets per point (every class but the label)"
        )

    def diagnose(self, unconverged: Tensor | None, success: Tensor, attacked: int) -> list[str]:
        k = self.__dict__.get("_num_classes")
        if k is not None and self.config.targets > k - 1:
            return [self._clamp_message(k)]
        return []

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        if batch.targets is not None:
            self.check_classes(2, True)
        x_adv, _ = fab_targeted(
            ctx.guide,
            batch.x,
            batch.labels,
            batch.eps,
            norm=ctx.norm.name,
            config=self.config,
            counter=ctx.counter,
            index=batch.index,
            init=batch.init,
        )
        return x_adv


ATTACKS.register("fab-t", FABTargeted())
