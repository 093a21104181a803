"""C&W-L2 and EAD-L1: two inner optimisers that share one binary search over the constant ``c``.

Both minimise ``dist(x', x) + c * f(x')`` with the hinge ``f = max(-margin, -kappa)`` on logits; the binary
search looks, per sample, for the smallest ``c`` that still yields an adversarial example and keeps the
least-distorted success seen anywhere. Each inner run stops early for a sample whose objective has stalled
(the sample leaves the batch), which changes nothing for that sample and saves its remaining passes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter, is_success
from robustlab.attacks._state import ActiveRows
from robustlab.threat import margin, per_sample


@dataclass(frozen=True)
class SearchConfig:
    """The binary search over the constant and the inner loop's budget.

    Attributes:
        search_steps: Binary-search steps over ``c``.
        initial_const: Starting ``c`` (multiplied by 10 until a success, then bisected).
        steps: Inner iterations per value of ``c``.
        lr: Inner learning rate.
        kappa: Confidence: success needs a margin of at least ``kappa``.
        abort_early: Per-sample plateau handling: when a sample's objective improved by less than 0.01 % over
            the last ``steps // 10`` iterations, shrink its learning rate, and drop it from the batch at the
            ``patience + 1``-th such plateau.
        patience: Plateaus tolerated (each shrinking the learning rate by 5x) before a sample is dropped. While
            ``c`` is still being escalated (no upper bound yet), a run in which the sample never succeeds ends at
            its first plateau: it only has to show that ``c`` is too small.
        warm_start: Start each inner run from the best example found so far instead of the clean input. Off by
            default: it saves few passes and, with several classes, can settle up to a few per cent above a
            decision boundary.
        lr_decay: C&W only: cosine decay of Adam's learning rate to 0 over the inner iterations, so the
            iterate settles on the decision boundary instead of oscillating around it (not in the paper,
            which uses a constant rate; EAD always uses its square-root decay).
    """

    search_steps: int = 9
    initial_const: float = 1e-3
    steps: int = 100
    lr: float = 0.01
    kappa: float = 0.0
    abort_early: bool = True
    patience: int = 1
    lr_decay: bool = True
    warm_start: bool = False


@dataclass
class _Run:
    """Per-sample outcome of one inner run at fixed ``c``.

    ``best``/``score`` are the least-distorted success seen at any iterate (``score`` is ``inf`` if none);
    ``settled`` tells whether the last iterate, where the optimiser converged, is adversarial. The binary
    search moves ``c`` on ``settled``: a success reached only in the first, overshooting steps does not
    prove that ``c`` is large enough, and trusting it stops the search below the constant that makes the
    optimum adversarial.
    """

    best: Tensor
    score: Tensor
    settled: Tensor


class InnerOptimizer(ABC):
    """One inner minimisation at fixed per-sample constants (C&W's Adam, EAD's ISTA/FISTA)."""

    @abstractmethod
    def run(
        self,
        model: nn.Module,
        x: Tensor,
        labels: Tensor,
        targets: Tensor | None,
        const: Tensor,
        config: SearchConfig,
        counter: PassCounter,
        index: Tensor,
        start: Tensor,
        patience: Tensor,
    ) -> _Run:
        """Minimise the objective for every sample of the batch at its constant, dropping a sample at its
        ``patience + 1``-th plateau (``patience``: ``(N,)``)."""


def _objective_terms(
    model: nn.Module, xp: Tensor, labels: Tensor, targets: Tensor | None, kappa: float
) -> tuple[Tensor, Tensor, Tensor]:
    logits = model(xp)  # (n, K)
    mrg = margin(logits, labels, targets)  # (n,), > 0 when the goal is met
    return logits, mrg, (-mrg).clamp(min=-kappa)


def _won(logits: Tensor, mrg: Tensor, labels: Tensor, targets: Tensor | None, kappa: float) -> Tensor:
    ok = is_success(logits, labels, targets)
    return ok & (mrg >= kappa) if kappa > 0 else ok


class _Plateau:
    """Per-sample plateau handling: shrink the learning rate, then abort (C&W's early abort, refined).

    Every ``steps // 10`` iterations, a sample whose lowest objective in the window just ended is not 0.01 %
    below the lowest of the window before has reached a plateau: its learning rate is multiplied by 0.2;
    at its ``patience + 1``-th plateau it leaves the batch. Window minima, rather than single values, keep a
    sample that oscillates around the decision boundary while still converging; shrinking the rate first
    lets it settle on the boundary instead of stopping at the oscillation's amplitude.
    """

    def __init__(self, n: int, config: SearchConfig, like: Tensor, patience: Tensor) -> None:
        self.every = max(config.steps // 10, 1)
        self.on, self.patience, self.full = config.abort_early, patience, config.patience  # patience: (n,)
        self.prev = torch.full((n,), float("inf"), dtype=like.dtype, device=like.device)
        self.window = torch.full_like(self.prev, float("inf"))
        self.scale = torch.ones_like(self.prev)
        self.strikes = torch.zeros(n, dtype=torch.int64, device=like.device)

    def keep(self, it: int, objective: Tensor, alive: Tensor, succeeded: Tensor) -> Tensor | None:
        """Record the objective; return a mask over ``alive`` of the samples to keep, or ``None`` if all stay.

        A sample with a success in this run (``succeeded``, over ``alive``) gets the configured patience
        whatever its own: it must settle on the boundary before the search may trust it."""
        if not self.on:
            return None
        window = torch.minimum(self.window[alive], objective)
        if (it + 1) % self.every:
            self.window[alive] = window
            return None
        prev = self.prev[alive]
        self.prev[alive] = window
        self.window[alive] = float("inf")
        stuck = ~(torch.isinf(prev) | (window < prev - 1e-4 * prev.abs()))
        strikes = self.strikes[alive] + stuck.long()
        self.strikes[alive] = strikes
        self.scale[alive] = torch.where(stuck, self.scale[alive] * 0.2, self.scale[alive])
        keep = strikes <= torch.where(succeeded, self.full, self.patience[alive])
        return None if bool(keep.all()) else keep


class CarliniWagnerL2(InnerOptimizer):
    """Adam on the tanh-space variable ``w`` with ``x' = (tanh(w) + 1) / 2``; distortion ``||x' - x||_2^2``.

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
    """

    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        labels: Tensor,
        targets: Tensor | None,
        const: Tensor,
        config: SearchConfig,
        counter: PassCounter,
        index: Tensor,
        start: Tensor,
        patience: Tensor,
    ) -> _Run:
        n = x.shape[0]
        best = x.clone()
        score = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        settled = torch.zeros(n, dtype=torch.bool, device=x.device)
        w = torch.atanh((2 * start - 1).clamp(-1 + 1e-6, 1 - 1e-6))  # (n, C, H, W)
        s = ActiveRows(w=w, m=torch.zeros_like(w), v=torch.zeros_like(w), x=x, labels=labels, targets=targets, c=const)
        stall = _Plateau(n, config, x, patience)
        for it in range(config.steps):
            w = s["w"].requires_grad_(True)
            xp = (torch.tanh(w) + 1) / 2
            logits, mrg, f = _objective_terms(model, xp, s["labels"], s.get("targets"), config.kappa)
            dist = (xp - s["x"]).pow(2).reshape(xp.shape[0], -1).sum(1)  # (n,)
            obj = dist + s["c"] * f
            (grad,) = torch.autograd.grad(obj.sum(), w)
            counter.add_gradient(index[s.rows])
            with torch.no_grad():
                w = w.detach()
                won = _won(logits, mrg, s["labels"], s.get("targets"), config.kappa)
                settled[s.rows] = won
                better = won & (dist < score[s.rows])
                if bool(better.any()):
                    score[s.rows[better]] = dist[better]
                    best[s.rows[better]] = xp[better]
                t = it + 1
                m, v = s["m"], s["v"]
                grad = torch.nan_to_num_(grad)  # in place, like every Adam step below: one pass per operation
                m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
                v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
                denom = torch.div(v, 1 - self.beta2**t).sqrt_().add_(self.adam_eps)
                lr = config.lr * (0.5 * (1 + math.cos(math.pi * it / config.steps)) if config.lr_decay else 1.0)
                s["w"] = w.sub_(
                    torch.div(m, 1 - self.beta1**t).mul_(per_sample(stall.scale[s.rows] * lr, w)).div_(denom)
                )
                keep = stall.keep(it, obj.detach(), s.rows, torch.isfinite(score[s.rows]))
                if keep is not None:
                    s.keep(keep)
                    if len(s) == 0:
                        break
        return _Run(best=best, score=score, settled=settled)


class ElasticNet(InnerOptimizer):
    """EAD: ISTA/FISTA on ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1`` with projected
    shrinkage-thresholding onto [0, 1] and a square-root decaying learning rate.

    Args:
        beta: L1 weight (``0`` gives an L2 attack without the tanh change of variables).
        decision: ``"en"`` keeps the success with the smallest elastic-net cost, ``"l1"`` the smallest L1.
        fista: Use FISTA's momentum slack variable (one extra forward pass per iteration to judge the
            iterate itself); otherwise plain ISTA.

    References:
        Chen et al., "EAD: Elastic-Net Attacks to Deep Neural Networks via Adversarial Examples", AAAI 2018.
        Beck & Teboulle, "A Fast Iterative Shrinkage-Thresholding Algorithm", SIAM J. Imaging Sci. 2009.
    """

    def __init__(self, beta: float = 1e-3, decision: str = "en", fista: bool = True) -> None:
        self.beta, self.decision, self.fista = beta, decision, fista

    def _score(self, delta: Tensor) -> Tensor:
        flat = delta.reshape(delta.shape[0], -1)
        l1 = flat.abs().sum(1)
        return flat.pow(2).sum(1) + self.beta * l1 if self.decision == "en" else l1

    def _shrink(self, z: Tensor, x0: Tensor) -> Tensor:
        d = z - x0
        up = (z - self.beta).clamp(max=1.0)
        down = (z + self.beta).clamp(min=0.0)
        return torch.where(d > self.beta, up, torch.where(d < -self.beta, down, x0))

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        labels: Tensor,
        targets: Tensor | None,
        const: Tensor,
        config: SearchConfig,
        counter: PassCounter,
        index: Tensor,
        start: Tensor,
        patience: Tensor,
    ) -> _Run:
        n = x.shape[0]
        best = x.clone()
        score = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        settled = torch.zeros(n, dtype=torch.bool, device=x.device)
        s = ActiveRows(xk=start.clone(), yk=start.clone(), x=x, labels=labels, targets=targets, c=const)
        stall = _Plateau(n, config, x, patience)
        for it in range(config.steps):
            alive, xa, ya, ta = s.rows, s["x"], s["labels"], s.get("targets")
            lr = per_sample(stall.scale[alive] * config.lr * (1 - it / config.steps) ** 0.5, xa)
            yk = s["yk"].requires_grad_(True)
            logits, mrg, f = _objective_terms(model, yk, ya, ta, config.kappa)
            smooth = (yk - xa).pow(2).reshape(yk.shape[0], -1).sum(1) + s["c"] * f
            (grad,) = torch.autograd.grad(smooth.sum(), yk)
            counter.add_gradient(index[alive])
            with torch.no_grad():
                yk = yk.detach()
                obj = smooth.detach() + self.beta * (yk - xa).abs().reshape(yk.shape[0], -1).sum(1)
                if not self.fista:  # ISTA: the evaluated point is the iterate itself
                    settled[alive] = self._keep_best(logits, mrg, yk, xa, ya, ta, alive, best, score, config.kappa)
                x_new = self._shrink(yk - lr * torch.nan_to_num(grad), xa)
                if self.fista:
                    logits_new = model(x_new)
                    counter.add_forward(index[alive])
                    mrg_new = margin(logits_new, ya, ta)
                    settled[alive] = self._keep_best(
                        logits_new, mrg_new, x_new, xa, ya, ta, alive, best, score, config.kappa
                    )
                    s["yk"] = (x_new + it / (it + 3) * (x_new - s["xk"])).clamp(0.0, 1.0)
                else:
                    s["yk"] = x_new
                s["xk"] = x_new
                keep = stall.keep(it, obj, alive, torch.isfinite(score[alive]))
                if keep is not None:
                    s.keep(keep)
                    if len(s) == 0:
                        break
        return _Run(best=best, score=score, settled=settled)

    def _keep_best(
        self,
        logits: Tensor,
        mrg: Tensor,
        point: Tensor,
        xa: Tensor,
        ya: Tensor,
        ta: Tensor | None,
        alive: Tensor,
        best: Tensor,
        score: Tensor,
        kappa: float,
    ) -> Tensor:
        s = self._score(point - xa)
        won = _won(logits, mrg, ya, ta, kappa)
        better = won & (s < score[alive])
        if bool(better.any()):
            score[alive[better]] = s[better]
            best[alive[better]] = point[better]
        return won


def const_search(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    *,
    inner: InnerOptimizer,
    config: SearchConfig,
    counter: PassCounter,
    index: Tensor,
    unconverged: Tensor | None = None,
) -> Tensor:
    """The binary search over ``c`` shared by C&W and EAD; the model must already be in eval mode.

    Per sample: when the inner run settles on an adversarial example, ``upper = min(upper, c)``, otherwise
    ``lower = max(lower, c)``; the next ``c`` is the midpoint once an upper bound exists, otherwise ``10 * c``.
    The least-distorted success of any iterate at any ``c`` is kept. A sample that never settled on an adversarial
    example has no upper bound when the search steps run out: the search did not converge for it (its constant
    was still growing), and it is marked in ``unconverged`` (``(N_total,)`` bool, addressed by ``index``).

    Returns:
        The least-distorted success over all constants (the clean input where none was found).

    Shape:
        - x: ``(N, C, H, W)``; labels, targets, index: ``(N,)``
        - output: ``(N, C, H, W)``

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
        Chen et al., "EAD: Elastic-Net Attacks to Deep Neural Networks via Adversarial Examples", AAAI 2018.
    """
    n = x.shape[0]
    x = x.detach()
    const = torch.full((n,), config.initial_const, dtype=x.dtype, device=x.device)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, float("inf"))
    best = x.clone()
    best_score = torch.full_like(const, float("inf"))
    for _ in range(config.search_steps):
        start = best if config.warm_start else x
        # Until a sample has an upper bound on c, its constant is only being escalated (x 10): a run in which it
        # never succeeds only tells that c is too small, so it ends at its first plateau (a run with a success
        # keeps the full patience, to settle on the boundary before the search trusts it).
        patience = torch.where(torch.isfinite(upper), config.patience, 0)
        res = inner.run(model, x, labels, targets, const, config, counter, index, start, patience)
        better = res.score < best_score
        best[better] = res.best[better]
        best_score[better] = res.score[better]
        upper = torch.where(res.settled, torch.minimum(upper, const), upper)
        lower = torch.where(res.settled, lower, torch.maximum(lower, const))
        const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
    if unconverged is not None:
        unconverged[index[~torch.isfinite(upper)].cpu()] = True
    return best
