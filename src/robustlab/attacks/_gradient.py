"""The one gradient loop: FGSM, I-FGSM, PGD (random start, restarts) and MI-FGSM are configurations of it.

The loop owns the mechanics (per-sample loss and input gradient, early stop, restarts, counting, the per-sample
state in :class:`~._state.ActiveRows`); what changes between methods is the :class:`StepRule` that turns the
gradient into the next iterate (a constant step, MI-FGSM's momentum, APGD's schedule).

FGSM is one step of size eps without random start; I-FGSM is several smaller steps; PGD adds a random start
and restarts; MI-FGSM accumulates an L1-normalised gradient with decay ``momentum``. The norm supplies the
random start, the steepest-ascent step and the projection; the loss is any :class:`~robustlab.threat.Loss`.

A sample whose current iterate already meets the attack goal leaves the batch (``early_stop``): it is a
success whatever happens next, so the answer is unchanged and the remaining gradient passes are saved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import overload

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter, constrain, constrain_, is_success
from robustlab.attacks._state import ActiveRows
from robustlab.threat import Loss, Norm, make_loss, per_sample


class StartGradients:
    """Input gradients of the loss at the clean inputs, kept across the attempts of a minimal search.

    Without a random start, every attempt's first step takes the gradient at the clean input, which does not
    depend on eps: computed in the first attempt, it serves every later one (the same answer for fewer passes;
    an FGSM search then costs one gradient pass per image, whatever the number of attempts).

    Shape:
        - like: ``(N, C, H, W)``, the inputs of the whole attack; rows are addressed by global index
    """

    def __init__(self, like: Tensor) -> None:
        self.grad = torch.empty_like(like)
        self.have = torch.zeros(like.shape[0], dtype=torch.bool, device=like.device)

    def get(self, index: Tensor) -> Tensor | None:
        """The cached gradients of rows ``index``, or ``None`` unless every one is cached."""
        return self.grad[index] if bool(self.have[index].all()) else None

    def put(self, index: Tensor, grad: Tensor) -> None:
        self.grad[index] = grad
        self.have[index] = True


@dataclass(frozen=True)
class GradientConfig:
    """Settings of the gradient loop.

    Attributes:
        steps: Gradient steps per restart.
        step_size: Absolute step length in the threat norm; ``None`` means ``rel_step * eps / steps``.
        rel_step: Step length relative to ``eps / steps`` when ``step_size`` is ``None``.
        random_start: Start from a uniform point of the eps-ball instead of the clean input.
        restarts: Number of runs; each later run attacks only the samples not yet fooled.
        momentum: MI-FGSM decay factor mu; ``0`` disables momentum.
        loss: Loss name (``"ce"``, ``"margin"``, ``"dlr"``).
        kappa: Confidence of the margin loss.
        early_stop: Drop samples from the batch as soon as their iterate succeeds.
    """

    steps: int = 10
    step_size: float | None = None
    rel_step: float = 2.5
    random_start: bool = True
    restarts: int = 1
    momentum: float = 0.0
    loss: str = "ce"
    kappa: float = 0.0
    early_stop: bool = True
    eot_iter: int = 1


class StepRule(ABC):
    """How one iteration of the gradient loop turns the input gradient into the next iterate.

    The state ``s`` holds, per active row, ``x`` (the iterate), ``x0`` (the clean input), ``eps``, ``step`` (the
    step length), ``labels``, ``targets`` and ``reference``; a rule keeps whatever else it needs (momentum, the
    previous iterate, best points) in ``s`` under its own names, so that early stop compacts it with the rest.

    One run of the loop calls, in order: :meth:`starting_point` (``None``: the loop's own start), :meth:`start`,
    then for each pass at ``s["x"]``: the early stop, :meth:`observe` and (but after the last pass) :meth:`step`;
    at the end :meth:`finish` and :meth:`succeeded`.

    Attributes:
        final_pass: Take one more pass after the last step, observed but not stepped from (APGD evaluates its last
            iterate; the constant step does not need to).
        projects: :meth:`step` returns points already inside the threat set, which the loop then keeps as they are
            (APGD projects in the reference's own arithmetic, or onto the L1 ball ∩ box exactly).
    """

    final_pass: bool = False
    projects: bool = False

    def starting_point(self, s: ActiveRows, generator: torch.Generator) -> Tensor | None:
        """The rule's own start for the run (e.g. APGD's random start), or ``None`` for the loop's start."""
        return None

    def start(self, s: ActiveRows) -> None:  # noqa: B027 - optional hook
        """Initialise the rule's own per-row tensors at the start of a run."""

    def observe(self, s: ActiveRows, logits: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
        """See the pass at ``s["x"]`` (after the early stop); return the gradient to step along. A rule may move
        rows elsewhere (APGD's restart from the best point sets ``s["x"]`` and returns that point's gradient).

        Shape:
            - logits: ``(n, K)``; loss: ``(n,)``; grad: ``(n, C, H, W)``
        """
        return grad

    @abstractmethod
    def step(self, s: ActiveRows, grad: Tensor, loss: Tensor, norm: Norm) -> Tensor:
        """The next iterate (before the loop's projection unless :attr:`projects`), as a new tensor: the loop
        projects it in place (:func:`~robustlab.attacks._evaluator.constrain_`).

        Shape:
            - grad: ``(n, C, H, W)``, finite (NaN replaced by 0); loss: ``(n,)``, at ``s["x"]``
        """

    def finish(self, s: ActiveRows) -> Tensor:
        """The point a run returns for its still-active rows (the last iterate by default)."""
        return s["x"]

    def succeeded(self, s: ActiveRows) -> Tensor | None:
        """``(n,)`` bool: the still-active rows the rule itself saw reach the goal (when early stop is off), or
        ``None`` when it does not track it."""
        return None


class ConstantStep(StepRule):
    """FGSM / I-FGSM / PGD: a steepest-ascent step of length ``s["step"]`` in the threat norm."""

    def step(self, s: ActiveRows, grad: Tensor, loss: Tensor, norm: Norm) -> Tensor:
        return norm.steepest_step(grad, s["step"], s["x"]).add_(s["x"])  # a new tensor: s["x"] + step


class Momentum(StepRule):
    """MI-FGSM: ``g <- mu * g + grad / ||grad||_1``, then a steepest-ascent step along ``g``.

    References:
        Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
    """

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def start(self, s: ActiveRows) -> None:
        s["momentum"] = torch.zeros_like(s["x"])

    def step(self, s: ActiveRows, grad: Tensor, loss: Tensor, norm: Norm) -> Tensor:
        l1 = grad.abs().reshape(grad.shape[0], -1).sum(1).clamp_min(1e-12)
        s["momentum"] = self.mu * s["momentum"] + grad / per_sample(l1, grad)
        return s["x"] + norm.steepest_step(s["momentum"], s["step"], s["x"])


def rule_for(config: GradientConfig) -> StepRule:
    """The step rule a :class:`GradientConfig` asks for."""
    return Momentum(config.momentum) if config.momentum else ConstantStep()


@overload
def _rows(t: Tensor, act: Tensor) -> Tensor: ...
@overload
def _rows(t: None, act: Tensor) -> None: ...
def _rows(t: Tensor | None, act: Tensor) -> Tensor | None:
    """The rows ``act`` of ``t``: ``t`` itself when ``act`` is every row in order (read, never written, by the loop).

    Shape:
        - t: ``(N, *)``; act: ``(n,)`` sorted row indices → ``(n, *)``
    """
    return None if t is None else t if len(act) == t.shape[0] else t[act]


def _expected_pass(
    model: nn.Module, cur: Tensor, s: ActiveRows, loss_fn: Loss, draws: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Input gradient, per-row loss and logits at ``cur``; with ``draws > 1``, each averaged over that many forward
    and backward passes (expectation over transformation, for randomised models).

    The early stop then judges the averaged logits, not one lucky draw; APGD's schedule sees the averaged loss
    (the reference's ``eot_iter`` averages the gradient but keeps the last draw's loss and logits).

    References:
        Athalye, Engstrom, Ilyas & Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018 (EoT).
    """
    grad = value = logits = None
    for _ in range(draws):
        graph = model(cur)  # (n, K)
        per_row = loss_fn(graph, s["labels"], s.get("targets"), s.get("reference"))
        (g,) = torch.autograd.grad(per_row.sum(), cur)
        if grad is None or value is None or logits is None:
            grad, value, logits = g, per_row.detach(), graph.detach()
        else:
            grad, value, logits = grad + g, value + per_row.detach(), logits + graph.detach()
    assert grad is not None and value is not None and logits is not None
    if draws == 1:
        return grad, value, logits
    return grad / draws, value / draws, logits / draws


def gradient_attack(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    eps: Tensor,
    *,
    norm: Norm,
    config: GradientConfig,
    generator: torch.Generator,
    counter: PassCounter,
    index: Tensor,
    start_grads: StartGradients | None = None,
    init: Tensor | None = None,
    reference: Tensor | None = None,
    rule: StepRule | None = None,
    loss: Loss | None = None,
    success: Tensor | None = None,
) -> Tensor:
    """Run the gradient loop on one batch; the model must already be in the mode the caller wants (eval to attack).

    Args:
        model: Classifier returning logits.
        x: Clean inputs in [0, 1].
        labels: True labels.
        targets: Target classes, or ``None`` for untargeted.
        eps: Per-sample budget in ``norm``.
        norm: Threat-model norm.
        config: Loop settings.
        generator: Randomness for the random start.
        counter: Pass counter, indexed by ``index``.
        index: Global sample positions of the rows of ``x`` (for the counter).
        start_grads: Cache of the gradients at the clean inputs (used without a random start). The rows
            must not be adversarial already: a cached first step skips the early-stop check of the clean input.
        init: Starting points of the first run instead of the clean input or a random start (projected into
            the eps-ball and [0, 1] first): the warm start of a minimal search. Later restarts start as usual.
        reference: Per-row data the loss compares against (TRADES' KL: the clean logits).
        rule: The update rule; default :func:`rule_for` ``(config)``.
        loss: The loss object; default ``make_loss(config.loss, config.kappa)``.
        success: ``(N,)`` bool, optional output: set True for the rows known to reach the goal (caught by the
            early stop, by a restart's check, or reported by the rule's :meth:`StepRule.succeeded`).

    Returns:
        Adversarial candidates inside the eps-ball and [0, 1] (the evaluator still judges them).

    Shape:
        - x, init: ``(N, C, H, W)``; labels, targets, eps, index: ``(N,)``; reference: ``(N, *)``
        - output: ``(N, C, H, W)``

    References:
        Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM).
        Kurakin et al., "Adversarial Examples in the Physical World", ICLR 2017 workshop (I-FGSM).
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018 (PGD).
        Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018 (MI-FGSM).
    """
    loss_fn = loss if loss is not None else make_loss(config.loss, config.kappa)
    rule = rule if rule is not None else rule_for(config)
    step_all = (
        torch.full_like(eps, config.step_size) if config.step_size is not None else config.rel_step * eps / config.steps
    )
    n_all = x.shape[0]
    out: Tensor | None = None  # the points returned; a copy of x once a row is written into it
    done = torch.zeros(n_all, dtype=torch.bool, device=x.device)
    for restart in range(config.restarts):
        act = (~done).nonzero().flatten()  # (n,) local rows still to fool
        if act.numel() == 0:
            break
        s = ActiveRows(
            rows=act,
            x0=_rows(x, act),
            labels=_rows(labels, act),
            targets=_rows(targets, act),
            eps=_rows(eps, act),
            step=_rows(step_all, act),
            reference=_rows(reference, act),
        )
        start = init if restart == 0 else None
        own = rule.starting_point(s, generator)
        if own is not None:
            s["x"] = own
        elif start is not None:
            s["x"] = constrain(s["x0"], _rows(start, act), norm, s["eps"])
        elif config.random_start:
            s["x"] = constrain_(s["x0"], s["x0"] + norm.random_init(s["x0"], s["eps"], generator), norm, s["eps"])
        else:
            s["x"] = s["x0"].clone()
        rule.start(s)
        where = index[s.rows]  # (n,) global positions of the active rows, for the counter and the cache
        for step in range(config.steps + int(rule.final_pass)):
            from_clean = step == 0 and not config.random_start and start is None and start_grads is not None
            cached = start_grads.get(where) if from_clean and start_grads is not None else None
            if cached is not None:
                grad, value = cached, torch.zeros(len(s), dtype=x.dtype, device=x.device)
            else:
                cur = s["x"].requires_grad_(True)
                grad, value, logits = _expected_pass(model, cur, s, loss_fn, config.eot_iter)
                counter.add_gradient(where, config.eot_iter)
                s["x"] = cur.detach()
                if from_clean and start_grads is not None:
                    start_grads.put(where, grad)
            if config.early_stop and cached is None:
                won = is_success(logits, s["labels"], s.get("targets"))
                if bool(won.any()):
                    out = x.detach().clone() if out is None else out
                    out[s.rows[won]] = s["x"][won]
                    done[s.rows[won]] = True
                    s.keep(~won)
                    where = where[~won]
                    grad, value, logits = grad[~won], value[~won], logits[~won]
                    if len(s) == 0:
                        break
            if cached is None:
                grad = rule.observe(s, logits, value, grad)
            if step == config.steps:  # the rule's final pass: observed, no step from it
                break
            direction = torch.nan_to_num(grad)  # a NaN in one sample must not stop the others
            moved = rule.step(s, direction, value, norm)
            s["x"] = moved if rule.projects or moved is s["x"] else constrain_(s["x0"], moved, norm, s["eps"])
        if len(s) == 0:
            continue
        final = rule.finish(s)
        if out is None and len(s) == n_all:  # every row ran to the end: the rule's points are the output
            out = final
        else:
            out = x.detach().clone() if out is None else out
            out[s.rows] = final
        reached = rule.succeeded(s)
        if reached is not None:
            done[s.rows[reached]] = True
        if restart < config.restarts - 1:
            with torch.no_grad():
                won = is_success(model(final), s["labels"], s.get("targets"))
            counter.add_forward(index[s.rows])
            done[s.rows[won]] = True
    if success is not None:
        success |= done
    return x.detach().clone() if out is None else out
