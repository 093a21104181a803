"""APGD and APGD-T: AutoAttack's parameter-free PGD, as a step rule of the one gradient loop.

APGD (Croce & Hein 2020) is PGD with a heavy-ball step whose size is halved, per sample, at fixed checkpoints when
progress stalls; after a halving the sample restarts from its best point so far. :class:`APGDSchedule` is that rule:
the gradient loop (:mod:`._gradient`) takes the passes, counts them and drops fooled samples; the rule chooses the
start, keeps the best point, runs the checkpoints and takes the steps. Norms: L∞ and L2 (sign / normalised steps
with momentum 0.75) and L1 ("Mind the box", Croce & Hein 2021: a sparse step on the largest gradient coordinates,
the exact projection onto the L1 ball ∩ [0, 1]^d, adaptive sparsity and, by default, the three-stage ε schedule
3ε → 2ε → ε).

APGD-T attacks each point with the targeted DLR loss towards its 2nd, 3rd, … (k+1)-th largest clean logit, one
target after another on the points still robust; its success stays untargeted (prediction ≠ label).

Randomness. By default each sample draws its random start from its own generator, seeded from the run's seed, the
sample's position in the whole attack and the run (restart, target): the answer does not depend on the batch size
or on which other points share the batch. ``reference_rng=True`` reproduces the reference protocol instead (one
generator seeded with the seed at every batch, drawing for the whole batch of points still to attack, in the
reference's order) and, to agree with the reference bitwise on CPU, runs every point for every iteration and returns
the *last* misclassified iterate, as the reference does.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020 (APGD, DLR loss, APGD-T).
    Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers", ICML 2021 (APGD-L1).
    Reference implementation: fra31/auto-attack, ``autoattack/autopgd_base.py`` (pyautoattack 0.2.0).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks._gradient import GradientConfig, StepRule, gradient_attack
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, Cost, RunContext, _apply_params
from robustlab.attacks._state import ActiveRows
from robustlab.errors import ConfigError
from robustlab.threat import DLR, Loss, Norm, make_loss
from robustlab.threat.projections import l1_box_correction

logger = logging.getLogger(__name__)

#: Losses APGD ascends (APGD-T always uses the targeted DLR loss).
APGD_LOSSES = ("ce", "dlr")

#: The three-stage ε schedule of APGD-L1: budgets relative to ε and shares of the iterations (the last stage takes
#: what the first two leave).
L1_STAGES = ((3.0, 0.3), (2.0, 0.3), (1.0, 0.4))

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def checkpoint_schedule(steps: int) -> tuple[int, int, int]:
    """APGD's checkpoint constants for ``steps`` iterations: the first interval, the smallest one and the decrease.

    Returns:
        ``(max(int(0.22 N), 1), max(int(0.06 N), 1), max(int(0.03 N), 1))`` as in the reference.
    """
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def checkpoints(steps: int) -> list[int]:
    """The iterations (1-based) after which L∞/L2 APGD checks its step size: ``[22, 41, 57, 70, 80, 87, 93, 99]``
    for 100 iterations (intervals of 22, 19, 16, … shrinking by 3 % of the iterations down to 6 %)."""
    first, smallest, decrease = checkpoint_schedule(steps)
    out, k, at = [], first, first
    while at <= steps:
        out.append(at)
        k = max(k - decrease, smallest)
        at += k
    return out


def l1_stages(steps: int) -> list[tuple[float, int]]:
    """APGD-L1's three stages for ``steps`` iterations: ``(eps factor, iterations)``; 100 → 30, 30, 40."""
    iters = [math.ceil(share * steps) for _, share in L1_STAGES]
    iters[-1] = steps - sum(iters[:-1])
    return [(factor, n) for (factor, _), n in zip(L1_STAGES, iters, strict=True)]


def sample_seeds(seed: int, index: Tensor, run: int) -> list[int]:
    """One 63-bit seed per sample from the run's seed, the samples' global positions and the run number (a
    splitmix-style mix), so that a sample's random start depends on nothing else."""
    out = []
    for i in index.tolist():
        z = (seed * _MIX[0] + (int(i) + 1) * _MIX[1] + (run + 1) * _MIX[2]) % (1 << 64)
        z = ((z ^ (z >> 30)) * _MIX[1]) % (1 << 64)
        z = ((z ^ (z >> 27)) * _MIX[2]) % (1 << 64)
        out.append((z ^ (z >> 31)) & ((1 << 63) - 1))
    return out


class StartNoise:
    """Where APGD's random starts come from.

    ``reference=True``: the reference's protocol, one CPU generator seeded with ``seed`` per batch, each draw for
    the whole set of rows (``torch.rand``/``torch.randn`` of the rows' shape), moved to the rows' device.
    ``reference=False``: per sample, a generator seeded by :func:`sample_seeds` from ``(seed, global index, run)``.
    """

    def __init__(self, seed: int, reference: bool) -> None:
        self.seed, self.reference = seed, reference
        self.generator = torch.Generator().manual_seed(seed) if reference else None

    def draw(self, like: Tensor, index: Tensor, run: int, kind: str) -> Tensor:
        """Uniform [0, 1) (``kind="rand"``) or standard normal (``"randn"``) noise shaped like ``like``.

        Shape:
            - like: ``(n, *)``; index: ``(n,)`` global positions
            - output: ``(n, *)``, ``like``'s dtype and device
        """
        fn = torch.rand if kind == "rand" else torch.randn
        if self.generator is not None:
            return fn(like.shape, generator=self.generator).to(like.device, like.dtype)
        rows = [
            fn(like.shape[1:], generator=torch.Generator().manual_seed(s)) for s in sample_seeds(self.seed, index, run)
        ]
        if not rows:
            return torch.empty_like(like)
        return torch.stack(rows).to(like.device, like.dtype)


def _view(v: Tensor, like: Tensor) -> Tensor:
    """``(n,)`` → ``(n, 1, …, 1)`` to broadcast against ``like``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _l2(v: Tensor) -> Tensor:
    """Per-row L2 norm as ``(n, 1, …, 1)``, computed as the reference does."""
    return _view((v**2).reshape(v.shape[0], -1).sum(-1).sqrt(), v)


def _unit_l2(v: Tensor) -> Tensor:
    return v / (_l2(v) + 1e-12)


def _clip_linf(x0: Tensor, z: Tensor, eps: Tensor) -> Tensor:
    """Project onto the L∞ ball, then the box, in the reference's arithmetic. Shape: eps ``(n, 1, …, 1)``."""
    return torch.clamp(torch.min(torch.max(z, x0 - eps), x0 + eps), 0.0, 1.0)


def _clip_l2(x0: Tensor, z: Tensor, eps: Tensor) -> Tensor:
    """Radial projection onto the L2 ball, then the box, in the reference's arithmetic."""
    d = z - x0
    return torch.clamp(x0 + _unit_l2(d) * torch.min(eps.expand_as(x0), _l2(d)), 0.0, 1.0)


def _l0(v: Tensor) -> Tensor:
    """Per-row count of non-zero coordinates, float32. Shape: ``(n, *)`` → ``(n,)``."""
    return (v != 0.0).reshape(v.shape[0], -1).sum(-1).float()


class TargetFromReference(Loss):
    """A targeted loss whose targets travel in the loop's ``reference`` slot, so that the loop's own success test
    stays untargeted (APGD-T: a targeted loss, untargeted success)."""

    def __init__(self, inner: Loss) -> None:
        self.inner = inner
        self.name = inner.name

    def __call__(
        self, logits: Tensor, labels: Tensor, targets: Tensor | None, reference: Tensor | None = None
    ) -> Tensor:
        if reference is None:
            raise ValueError("TargetFromReference needs the target classes in 'reference'")
        return self.inner(logits, labels, reference)


class APGDSchedule(StepRule):
    """APGD's update rule: random start, heavy-ball step, checkpoints with both halving conditions, restart from the
    best point; for L1 the sparse step, the exact L1 ∩ box projection and the adaptive sparsity.

    One object serves one run (one restart, target or ε stage) of the gradient loop over a batch.

    Args:
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        steps: Iterations of this run (the loop takes ``steps + 1`` passes: the start and one per step).
        rho: Oscillation threshold of the first halving condition (0.75).
        noise: The source of the random start.
        index: Global positions of the batch's rows (for per-sample noise).
        run: Number of this run within the attack (restart / target / stage), for per-sample noise.
        init: Starting points of the batch's rows instead of a random start (APGD-L1's stages), already projected.
        track_fooled: Remember whether any iterate was misclassified and the last such iterate (the reference's
            behaviour when no sample leaves the batch early).
        schedule_steps: Iterations the L∞/L2 checkpoint constants are computed from (default ``steps``).

    State (per row, in the loop's :class:`~._state.ActiveRows`): ``x_old``, ``x_best``, ``grad_best``,
    ``loss_best``, ``loss_checked``, ``halved``, ``history`` (``(n, steps)`` losses), ``step``; L1: ``topk``,
    ``sparsity``, ``step_max``, ``step_min``; when tracking: ``fooled``, ``x_fooled``.
    """

    final_pass = True
    projects = True

    def __init__(
        self,
        norm: str,
        steps: int,
        rho: float,
        noise: StartNoise,
        index: Tensor,
        run: int,
        init: Tensor | None = None,
        track_fooled: bool = False,
        schedule_steps: int | None = None,
    ) -> None:
        self.norm, self.steps, self.rho = norm, steps, rho
        self.noise, self.index, self.run, self.init = noise, index, run, init
        self.track_fooled = track_fooled
        self.interval, self.smallest, self.decrease = checkpoint_schedule(schedule_steps or steps)
        if norm == "l1":
            self.interval = max(int(0.04 * steps), 1)
        self.done = -1  # steps taken; -1 until the start has been observed
        self.since_check = 0

    # -- the start ---------------------------------------------------------------------------------------------
    def starting_point(self, s: ActiveRows, generator: torch.Generator) -> Tensor:
        x0, eps = s["x0"], _view(s["eps"], s["x0"])
        index = self.index[s.rows.to(self.index.device)]
        if self.init is not None:
            if self.noise.reference:  # the reference draws (and discards) a start even when given one
                self.noise.draw(x0, index, self.run, "randn")
            return self.init[s.rows].clamp(0.0, 1.0)
        if self.norm == "linf":
            t = 2 * self.noise.draw(x0, index, self.run, "rand") - 1
            peak = _view(t.abs().reshape(t.shape[0], -1).max(1)[0], t)
            start = x0 + eps * (t / (peak + 1e-12))
        elif self.norm == "l2":
            t = self.noise.draw(x0, index, self.run, "randn")
            start = x0 + eps * _unit_l2(t)
        else:
            t = self.noise.draw(x0, index, self.run, "randn")
            start = x0 + t + l1_box_correction(x0, t, s["eps"]).to(x0.dtype)
        return start.clamp(0.0, 1.0)

    def start(self, s: ActiveRows) -> None:
        x, x0 = s["x"], s["x0"]
        alpha = 1.0 if self.norm == "l1" else 2.0
        s["step"] = alpha * s["eps"]
        s["x_old"] = x.clone()
        s["history"] = torch.zeros(len(s), self.steps, dtype=x.dtype, device=x.device)
        s["halved"] = torch.ones(len(s), dtype=x.dtype, device=x.device)
        if self.norm == "l1":
            n_fts = x0[0].numel()
            if self.init is None:
                s["topk"] = torch.full((len(s),), 0.2, dtype=x.dtype, device=x.device)
                s["sparsity"] = torch.full((len(s),), float(n_fts), dtype=x.dtype, device=x.device)
            else:
                s["sparsity"] = _l0(x - x0)
                s["topk"] = s["sparsity"] / n_fts / 1.5
            eps64 = s["eps"].double()
            s["step_max"] = (alpha * eps64).to(x.dtype)
            s["step_min"] = (alpha * eps64 / 10.0).to(x.dtype)
        if self.track_fooled:
            s["x_fooled"] = x.clone()

    # -- after every pass --------------------------------------------------------------------------------------
    def observe(self, s: ActiveRows, logits: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
        x = s["x"]
        if self.track_fooled:
            wrong = logits.max(1)[1] != s["labels"]
            s["fooled"] = wrong if self.done < 0 else s["fooled"] | wrong
            if self.done >= 0:
                s["x_fooled"][wrong] = x[wrong]
        if self.done < 0:  # the start point
            s["x_best"], s["grad_best"], s["loss_best"] = x.clone(), grad.clone(), loss.clone()
            s["loss_checked"] = loss.clone()
            self.done = 0
            return grad
        i = self.done - 1  # the iteration whose result this pass evaluates
        s["history"][:, i] = loss
        better = loss > s["loss_best"]
        s["x_best"][better] = x[better]
        s["grad_best"][better] = grad[better]
        s["loss_best"][better] = loss[better]
        self.since_check += 1
        if self.since_check == self.interval and i < self.steps - 1:
            grad = self._checkpoint(s, i, grad)
        elif self.since_check == self.interval:
            self.since_check = 0  # the reference also checks after the last iteration; nothing follows it
        return grad

    def _checkpoint(self, s: ActiveRows, i: int, grad: Tensor) -> Tensor:
        self.since_check = 0
        x, x0 = s["x"], s["x0"]
        if self.norm == "l1":
            sparsity = _l0(s["x_best"] - x0)
            fire = (sparsity / s["sparsity"]) < 0.95
            s["topk"] = sparsity / x0[0].numel() / 1.5
            step = s["step"].clone()
            step[fire] = s["step_max"][fire]
            step[~fire] /= 1.5
            s["step"] = torch.min(torch.max(step, s["step_min"]), s["step_max"])
            s["sparsity"] = sparsity
        else:
            history, k = s["history"], self.interval
            rises = torch.zeros(len(s), dtype=x.dtype, device=x.device)
            for c in range(k):  # column -1 is the zero-initialised last column, as in the reference
                rises += (history[:, i - c] > history[:, i - c - 1]).to(x.dtype)
            oscillating = (rises <= k * self.rho * torch.ones_like(rises)).to(x.dtype)
            stalled = (1.0 - s["halved"]) * (s["loss_checked"] >= s["loss_best"]).to(x.dtype)
            fired = torch.max(oscillating, stalled)
            s["halved"] = fired.clone()
            s["loss_checked"] = s["loss_best"].clone()
            fire = fired > 0
            step = s["step"].clone()
            step[fire] /= 2.0
            s["step"] = step
            self.interval = max(self.interval - self.decrease, self.smallest)
        if bool(fire.any()):
            x = x.clone()
            x[fire] = s["x_best"][fire]
            s["x"] = x
            grad = grad.clone()
            grad[fire] = s["grad_best"][fire]
        return grad

    # -- the step ----------------------------------------------------------------------------------------------
    def step(self, s: ActiveRows, grad: Tensor, loss: Tensor, norm: Norm) -> Tensor:
        x, x0 = s["x"], s["x0"]
        eps, step = _view(s["eps"], x), _view(s["step"], x)
        self.done += 1
        if self.norm == "l1":
            n, n_fts = x.shape[0], x0[0].numel()
            ordered = grad.abs().reshape(n, -1).sort(-1)[0]
            keep_from = torch.clamp((1.0 - s["topk"]) * n_fts, min=0, max=n_fts - 1).long()
            threshold = _view(ordered[torch.arange(n, device=x.device), keep_from], x)
            sparse = grad * (grad.abs() >= threshold).float()
            direction = sparse.sign()
            moved = x + step * direction / (_view(direction.abs().reshape(n, -1).sum(-1), x) + 1e-10)
            delta = moved - x0
            return x0 + delta + l1_box_correction(x0, delta, s["eps"]).to(x.dtype)
        clip = _clip_linf if self.norm == "linf" else _clip_l2
        grad2 = x - s["x_old"]
        s["x_old"] = x.clone()
        a = 0.75 if self.done > 1 else 1.0
        ascent = torch.sign(grad) if self.norm == "linf" else _unit_l2(grad)
        z = clip(x0, x + step * ascent, eps)
        return clip(x0, x + (z - x) * a + grad2 * (1 - a), eps)

    # -- the end -----------------------------------------------------------------------------------------------
    def finish(self, s: ActiveRows) -> Tensor:
        if self.track_fooled:
            return torch.where(_view(s["fooled"], s["x"]), s["x_fooled"], s["x_best"])
        return s["x_best"]

    def succeeded(self, s: ActiveRows) -> Tensor | None:
        return s["fooled"] if self.track_fooled else None


@dataclass(frozen=True)
class APGDConfig:
    """Settings of APGD and APGD-T.

    Attributes:
        loss: ``"ce"`` or ``"dlr"`` (APGD; APGD-T always uses the targeted DLR loss).
        steps: Iterations per run (each costs one forward + input-gradient pass, plus one at the start).
        restarts: Runs per point (per target for APGD-T); each later run attacks only the points still robust.
        rho: Threshold of the oscillation condition (halve when the loss rose in at most ``rho`` of the interval's
            steps).
        n_target_classes: APGD-T: targets per point, the 2nd … (k+1)-th largest clean logits; clamped to K − 1.
        l1_eps_schedule: APGD-L1: run 30 % / 30 % / 40 % of the iterations at 3ε, 2ε, ε (the reference's
            ``use_largereps``, AutoAttack's L1 setting); only the last stage's points count.
        reference_rng: Reproduce the reference's random-start protocol and its full-batch iterations (for the
            bitwise comparison): slower, and the random starts depend on the batch composition.
        eot_iter: Forward and backward passes averaged per iteration (expectation over transformation, for
            randomised models; AutoAttack's ``rand`` version uses 20).
    """

    loss: str = "ce"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    n_target_classes: int = 9
    l1_eps_schedule: bool = True
    reference_rng: bool = False
    eot_iter: int = 1


class APGD(AttackMethod):
    """APGD (``targeted=False``, registered as ``apgd``) and APGD-T (``targeted=True``, ``apgd-t``)."""

    fixed_budget = True
    norms = ("linf", "l2", "l1")

    def __init__(self, name: str, targeted: bool) -> None:
        self.name, self.targeted = name, targeted
        self.defaults = APGDConfig(loss="dlr" if targeted else "ce")

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> APGDConfig:
        if step_size is not None:
            raise ConfigError(f"{self.name} sets its own step size (2 eps, halved at checkpoints); drop step_size")
        cfg: APGDConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        if self.targeted and cfg.loss != "dlr":
            raise ConfigError(f"{self.name} always uses the targeted DLR loss; drop loss={cfg.loss!r} or use 'apgd'")
        if cfg.loss not in APGD_LOSSES:
            raise ConfigError(f"loss of {self.name} must be one of {', '.join(APGD_LOSSES)}, got {cfg.loss!r}")
        if cfg.steps < 1 or cfg.restarts < 1 or cfg.n_target_classes < 1 or cfg.eot_iter < 1:
            raise ConfigError("steps, restarts, n_target_classes and eot_iter must be >= 1")
        if not 0 < cfg.rho <= 1:
            raise ConfigError(f"rho must be in (0, 1], got {cfg.rho}")
        return cfg

    def cost(self) -> Cost:
        c = self.config
        runs = c.restarts * (c.n_target_classes if self.targeted else 1)
        forward = (runs if c.reference_rng else 1) if self.targeted else 0
        # L1 with the ε schedule takes 2 more passes per run (one per extra stage start), not counted here.
        return Cost(gradient=runs * (c.steps + 1) * c.eot_iter, forward=forward)

    def check_classes(self, num_classes: int, targeted: bool) -> None:
        super().check_classes(num_classes, targeted)
        if targeted:
            raise ConfigError(f"{self.name} is untargeted (APGD-T picks its own targets); drop the target setting")
        if self.targeted:
            DLR().check(num_classes, True)
            if self.config.n_target_classes > num_classes - 1:
                logger.warning(self._clamp_message(num_classes))
        else:
            make_loss(self.config.loss).check(num_classes, False)
        self.__dict__["_num_classes"] = num_classes  # for diagnose(); set on the configured copy of one run

    def n_targets(self, num_classes: int) -> int:
        """Targets per point: ``n_target_classes`` clamped to ``num_classes - 1``."""
        return min(int(self.config.n_target_classes), num_classes - 1)

    def _clamp_message(self, num_classes: int) -> str:
        return (
            f"{self.name}: n_target_classes={self.config.n_target_classes} needs more classes than the model's "
            f"{num_classes}; it runs {num_classes - 1} targets per point (every class but the label)"
        )

    def diagnose(self, unconverged: Tensor | None, success: Tensor, attacked: int) -> list[str]:
        k = self.__dict__.get("_num_classes")
        if self.targeted and k is not None and self.config.n_target_classes > k - 1:
            return [self._clamp_message(k)]
        return []

    # -- proposing ---------------------------------------------------------------------------------------------
    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        cfg, norm = self.config, ctx.norm.name
        if norm not in self.norms:
            raise ConfigError(f"{self.name} supports the norms {', '.join(self.norms)}, got {norm!r}")
        noise = StartNoise(ctx.generator.initial_seed(), cfg.reference_rng)
        out = batch.x.detach().clone()
        fooled = torch.zeros(len(batch), dtype=torch.bool, device=batch.x.device)
        clean: Tensor | None = None
        if self.targeted:
            clean = self._clean_logits(ctx, batch, None)  # (N, K) targets come from the clean logits
            ranks: list[int | None] = list(range(2, self.n_targets(clean.shape[1]) + 2))
            loss: Loss = TargetFromReference(DLR())
        else:
            ranks, loss = [None], make_loss(cfg.loss)
        run = 0
        for rank in ranks:
            for _ in range(cfg.restarts):
                rows = (~fooled).nonzero().flatten()
                if rows.numel() == 0:
                    return out
                targets = None
                if rank is not None and clean is not None:
                    logits = clean[rows]
                    if cfg.reference_rng and rows.numel() < len(batch):  # the reference re-runs the rows left
                        logits = self._clean_logits(ctx, batch, rows)
                    targets = logits.sort(dim=1)[1][:, -rank]
                x_run, won = self._run(ctx, batch.take(rows), loss, targets, noise, run)
                out[rows] = x_run
                fooled[rows[won]] = True
                run += 1
        return out

    def _clean_logits(self, ctx: RunContext, batch: Batch, rows: Tensor | None) -> Tensor:
        x = batch.x if rows is None else batch.x[rows]
        with torch.no_grad():
            logits: Tensor = ctx.guide(x)
        ctx.counter.add_forward(batch.index if rows is None else batch.index[rows])
        return logits.detach()

    def _run(
        self, ctx: RunContext, batch: Batch, loss: Loss, targets: Tensor | None, noise: StartNoise, run: int
    ) -> tuple[Tensor, Tensor]:
        """One run (a restart for one target) on the rows of ``batch``; returns the points and who was fooled."""
        cfg, norm = self.config, ctx.norm
        staged = norm.name == "l1" and cfg.l1_eps_schedule
        stages = l1_stages(cfg.steps) if staged else [(1.0, cfg.steps)]
        x0, eps64 = batch.x, batch.eps.double()
        init: Tensor | None = None
        if staged:
            start = x0 + noise.draw(x0, batch.index, run, "randn")
            init = start + l1_box_correction(x0, start - x0, (stages[0][0] * eps64).to(x0.dtype)).to(x0.dtype)
        won = torch.zeros(len(batch), dtype=torch.bool, device=x0.device)
        x_out = x0
        for number, (factor, steps) in enumerate(stages):
            last = number == len(stages) - 1
            eps = (factor * eps64).to(batch.eps.dtype)
            if init is not None:
                init = init + l1_box_correction(x0, init - x0, eps.to(x0.dtype)).to(x0.dtype)
            rule = APGDSchedule(
                norm.name,
                steps,
                cfg.rho,
                noise,
                batch.index,
                run * len(stages) + number,
                init=init,
                track_fooled=last and cfg.reference_rng,
                schedule_steps=cfg.steps,
            )
            config = GradientConfig(
                steps=steps,
                restarts=1,
                random_start=True,
                early_stop=last and not cfg.reference_rng,
                eot_iter=cfg.eot_iter,
            )
            won = torch.zeros(len(batch), dtype=torch.bool, device=x0.device)
            x_out = gradient_attack(
                ctx.guide,
                x0,
                batch.labels,
                None,
                eps,
                norm=norm,
                config=config,
                generator=ctx.generator,
                counter=ctx.counter,
                index=batch.index,
                reference=targets,
                rule=rule,
                loss=loss,
                success=won,
            )
            init = x_out
        return x_out, won


ATTACKS.register("apgd", APGD("apgd", targeted=False))
ATTACKS.register("apgd-t", APGD("apgd-t", targeted=True))
