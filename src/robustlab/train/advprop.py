"""``advprop`` and ``mdprop``: adversarial points as auxiliary data, each kind through its own batch norm.

Both train a multi-branch network (:class:`robustlab.models.norm_layers.MultiBatchNorm2d`; the method asks for it
through :meth:`~robustlab.train.methods.TrainingMethod.model_kwargs`, so ``robustlab train`` builds it) and deploy
the clean branch ``main``: the auxiliary branches only see adversarial rows while training, and the saved spec
records route ``main``.

**advprop** (Xie et al., CVPR 2020). Per batch ``(x, y)`` of ``B`` rows:

1. ``x'``: PGD through the **adv** branch, in the loop's attack batch-norm mode (``TrainConfig.attack_bn``; the
   reference re-implementation attacks in eval mode, the default here), the route block wrapping the attack;
2. one forward pass of ``[x; x']`` with rows ``0..B-1`` through ``main`` and ``B..2B-1`` through ``adv``
   (:func:`~robustlab.models.norm_layers.split`), in train mode, so each branch's batch statistics and running
   statistics come from its own rows only (AdvProp re-implementation issue #8 was the silent opposite);
3. loss ``(1/2B) Σ_{2B rows} CE = ½·[CE(f_main(x), y) + CE(f_adv(x'), y)]`` with per-half batch means.

The loss is the **mean over the concatenated 2B rows**, as the reference re-implementation computes it
(tingxueronghua/pytorch-classification-advprop ``imagenet.py::train``: ``criterion(outputs, targets).mean()`` over
the reshaped ``(2N, C)`` outputs): half the paper's sum of the two expectations, i.e. the same direction at half
the step, so the loop's learning rates keep the scale of a standard step. The loop's training accuracy counts the
clean rows (route ``main``); ``clean_loss``, ``adv_loss`` and ``adv_accuracy`` are logged (issue #4: the adv
branch's loss on adversarial rows is the sanity check).

Settings and their source (research note ``training.md`` §1.3; the re-implementation's ``run.sh`` and
``attacker.py``): ``eps`` 1/255 (``--attack-epsilon 1`` on the reference's [−1, 1] scale with ``IMAGE_SCALE``
2/255), ``steps`` 1, ``step_size`` 1/255, used as ``max(step_size, eps / steps)`` (the reference's rule),
``attack`` ``"random-target"`` (the reference's targeted PGD that *descends* the cross-entropy of a random class;
Scenic's AdvProp config uses ``random_target`` too) or ``"ce"`` (untargeted, ascends the label's cross-entropy),
``random_start`` ``True`` and ``norm`` ``linf``.

Differences from the reference, on purpose: the random target is uniform over the *other* classes
(``(y + U{1..K−1}) mod K``; the reference's ``(y + U{0..999}) mod 1000`` keeps the label with probability 1/1000);
the random start is a per-row uniform point of the ball on every batch when ``random_start`` is on (the reference
flips one coin per batch, ``randn() > prob_start_from_clean``, so about half its batches start from the clean
image); images are in [0, 1], not [−1, 1] (the budgets are converted).

**mdprop** (the classification core of MDProp, Sinha et al. ACML 2023; note §1.5): ``K ≥ 2`` adversarial
distributions of different shape or strength, each through its own branch ``adv1``, ``adv2``, … and the clean rows
through ``main``. Per batch, as the reference's ``AdvResNet_Mine.forward`` splits it: the batch is cut into ``K``
consecutive parts (rows ``⌊kB/K⌋ .. ⌊(k+1)B/K⌋ − 1``; for ``K = 2`` the first and second half), part ``k`` is
attacked by attacker ``k`` through route ``adv<k>``; then one forward pass of ``[x; x'_1; …; x'_K]`` (2B rows) with
the explicit split ``main = B, adv1 = n_1, …, advK = n_K``; loss: the mean cross-entropy over all 2B rows (the
reference's loss over the concatenated batch; ``CE`` of each row with its own label).

MDProp's attacks are feature-space, targeted towards the embeddings of random other batch members (attacker 1: one
target, attacker 2: five), one step of ``eps / steps`` from a start within ±5e-4 of the image. The classification
analogue here: ``distributions`` ``"linf:2/255,l2:0.25"`` (two budgets of different shape and comparable strength:
an L∞ 2/255 ball's corner has L2 norm ≈ 0.43 on 32×32×3 images; small budgets, AdvProp's regime) — an inference of
ours, not the paper's; ``steps`` 1 and ``rel_step`` 1.0 (step ``rel_step · eps / steps``: the reference's rule);
``attack`` ``"random-target"`` (towards a random other class: the classification counterpart of moving towards a
random other sample) or ``"ce"``; ``random_start`` ``False`` (the reference's ±5e-4 jitter is not reproduced).

Randomness (both methods): the random targets, then the random start of each attacked part, are drawn from the
run's generator over the *whole* batch (:meth:`~robustlab.train.methods.StepContext.draw`) and sliced to the part's
rows, so a multi-process run draws what one process draws.

References:
    Xie, Tan, Gong, Wang, Yuille, Le, "Adversarial Examples Improve Image Recognition", CVPR 2020.
    Sinha et al., "Improving the Robustness of Deep Metric Learning with Multi-Domain Propagation" (MDProp), ACML
    2023 (code: intherejeet/MDProp).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from robustlab.errors import ConfigError
from robustlab.models.norm_layers import MAIN, route, routes_of, split
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod, inner_attack

if TYPE_CHECKING:
    from robustlab.attacks import AttackMethod

#: The inner attacks of ``advprop`` and ``mdprop``: untargeted cross-entropy ascent, or descent towards a random
#: other class.
ATTACK_KINDS = ("ce", "random-target")


# -- helpers shared with the other multi-branch methods ---------------------------------------------------------


def require_branches(model: nn.Module, method: str, branches: Sequence[str], kwargs: Mapping[str, Any]) -> None:
    """Refuse a model without every one of ``branches`` (its multi-branch layers' routes).

    Args:
        model: The model being trained (an adapter or a bare network).
        method: The method's name, for the message.
        branches: The routes the method trains.
        kwargs: The architecture arguments that build such a model (said in the message).

    Raises:
        ConfigError: a branch is missing.
    """
    have = routes_of(model)
    missing = [b for b in branches if b not in have]
    if missing:
        said = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        what = f"its branches are {', '.join(have)}" if have else "it has plain batch norms (no branches)"
        raise ConfigError(
            f"{method} trains the batch-norm branches {', '.join(branches)}, but {what}: missing "
            f"{', '.join(missing)}. Build the model with the architecture arguments {said} (robustlab train and "
            "fit_and_export add them from the method)"
        )


def random_targets(ctx: StepContext, y: Tensor, num_classes: int) -> Tensor:
    """A uniformly drawn class other than the label for each row: ``(y + U{1..K−1}) mod K``, drawn over the whole
    batch (:meth:`StepContext.draw`).

    Shape:
        y: (B,) → (B,)
    """
    if num_classes < 2:
        raise ConfigError(f"a random target needs at least 2 classes, got {num_classes}")
    offset = ctx.draw(y, lambda t: torch.randint(1, num_classes, t.shape, generator=ctx.generator, dtype=t.dtype))
    return (y + offset) % num_classes


@functools.lru_cache(maxsize=32)
def _configured(steps: int, step_size: float, random_start: bool) -> AttackMethod:
    return inner_attack(steps, step_size, loss="ce", random_start=random_start)


def attack_rows(
    ctx: StepContext,
    x: Tensor,
    y: Tensor,
    rows: slice,
    *,
    attack: str,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
) -> Tensor:
    """The inner maximiser on ``x[rows]`` through the current route, with the random draws made for all of ``x``.

    What :meth:`StepContext.perturb` does (the loop's attack batch-norm mode, parameters and their gradients left
    alone, every row taking every step, the cost added to ``ctx``), plus a targeted variant: ``attack
    "random-target"`` descends the cross-entropy of :func:`random_targets` (drawn first), ``"ce"`` ascends the
    label's. The random start (drawn second, when on) is a uniform point of the ``norm`` ball. Both draws cover the
    whole batch and are sliced to ``rows``, so the draws do not depend on how a caller cuts the batch.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) → (n, C, H, W), the rows ``rows``
    """
    from robustlab.attacks import perturb
    from robustlab.threat import get_norm

    targets = None
    if attack == "random-target":
        targets = random_targets(ctx, y, _num_classes(ctx.model))[rows]
    init = None
    if random_start:
        norm_obj = get_norm(norm)
        init = (x + ctx.draw(x, lambda t: norm_obj.random_init(t, eps, ctx.generator)))[rows]
    xs, ys = x[rows], y[rows]
    if len(xs) == 0:
        return xs.detach()
    t0 = time.perf_counter()
    with ctx.attack_mode(), torch.enable_grad():
        out = perturb(
            ctx.model,
            xs,
            ys,
            _configured(int(steps), float(step_size), bool(random_start)),
            norm=norm,
            eps=float(eps),
            generator=ctx.generator,
            targets=targets,
            init=init,
        )
    ctx.inner_passes += steps * len(xs)
    ctx.inner_seconds += time.perf_counter() - t0
    return out.detach()


def _num_classes(model: nn.Module) -> int:
    k = getattr(model, "num_classes", None)
    if not isinstance(k, int):
        raise ConfigError("a random-target attack needs the model's num_classes: train a ModelAdapter")
    return k


def check_attack_settings(method: str, attack: str, steps: int) -> None:
    """Validate the inner attack's kind and step count (``ConfigError`` otherwise)."""
    if attack not in ATTACK_KINDS:
        raise ConfigError(f"{method}: attack must be one of {', '.join(ATTACK_KINDS)}, got {attack!r}")
    if steps <= 0:
        raise ConfigError(f"{method}: steps must be > 0, got {steps}")


def check_budget(method: str, name: str, eps: float, norm: str) -> None:
    """Validate one budget and its norm (``ConfigError`` otherwise)."""
    from robustlab.threat import NORMS

    if norm not in NORMS:
        raise ConfigError(f"{method}: unknown norm {norm!r}; norms: {', '.join(NORMS.names())}")
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"{method}: {name} must be a finite number > 0, got {eps}")


def _parse_float(method: str, name: str, value: Any) -> Any:
    """``"8/255"`` → 8/255 for a budget given as text (other values unchanged, checked by ``configure``)."""
    if isinstance(value, str):
        from robustlab.attacks import parse_eps

        try:
            return parse_eps(value)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{method}: {name} must be a number or a fraction such as 8/255, got {value!r}") from exc
    return value


# -- advprop ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvPropSettings:
    """Settings of ``advprop`` (see the module docstring for their source).

    Attributes:
        eps: Budget of the adversarial points.
        steps: PGD steps.
        step_size: Absolute step, used as ``max(step_size, eps / steps)``.
        attack: ``"random-target"`` or ``"ce"``.
        random_start: Start from a uniform point of the ball.
        norm: Threat norm.
    """

    eps: float = 1 / 255
    steps: int = 1
    step_size: float = 1 / 255
    attack: str = "random-target"
    random_start: bool = True
    norm: str = "linf"


class AdvProp(TrainingMethod):
    """AdvProp: clean rows through the main batch norm, their PGD points through an auxiliary one, one forward.

    References:
        Xie et al., "Adversarial Examples Improve Image Recognition", CVPR 2020.
    """

    name = "advprop"
    adversarial = True
    branch = "adv"

    def __init__(self) -> None:
        self.settings = AdvPropSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        s = copy.settings
        check_budget(self.name, "eps", s.eps, s.norm)
        check_attack_settings(self.name, s.attack, s.steps)
        if not (math.isfinite(s.step_size) and s.step_size > 0):
            raise ConfigError(f"{self.name}: step_size must be > 0, got {s.step_size}")
        return copy

    def model_kwargs(self) -> dict[str, Any]:
        return {"norm_layer": "multibn", "routes": [self.branch]}

    def inference_route(self) -> str | None:
        return MAIN

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        model = ctx.model
        require_branches(model, self.name, (MAIN, self.branch), self.model_kwargs())
        b = len(x)
        with route(model, self.branch):  # the attack runs through the auxiliary batch norm
            x_adv = attack_rows(
                ctx,
                x,
                y,
                slice(None),
                attack=s.attack,
                norm=s.norm,
                eps=s.eps,
                steps=s.steps,
                step_size=max(s.step_size, s.eps / s.steps),
                random_start=s.random_start,
            )
        with route(model, split(**{MAIN: b, self.branch: b})):
            logits = ctx.forward(torch.cat([x, x_adv]))  # (2B, K): rows 0..B-1 main, B..2B-1 adv
        loss = ctx.ce(logits, torch.cat([y, y]))  # mean over the 2B rows = (CE_main + CE_adv) / 2
        clean, adv = logits[:b], logits[b:]
        with torch.no_grad():
            logs = {
                "clean_loss": float(ctx.ce(clean, y)),
                "adv_loss": float(ctx.ce(adv, y)),
                "adv_accuracy": float((adv.argmax(1) == y).double().mean()),
            }
        return StepOutput(loss, clean, logs)


# -- mdprop -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MDPropSettings:
    """Settings of ``mdprop`` (see the module docstring for their source).

    Attributes:
        distributions: Comma-separated ``norm:eps`` of the attackers, in branch order (``adv1``, ``adv2``, …);
            at least two.
        steps: PGD steps of every attacker.
        rel_step: Step of attacker ``k``: ``rel_step · eps_k / steps``.
        attack: ``"random-target"`` or ``"ce"``.
        random_start: Start each attacker from a uniform point of its ball.
    """

    distributions: str = "linf:2/255,l2:0.25"
    steps: int = 1
    rel_step: float = 1.0
    attack: str = "random-target"
    random_start: bool = False


class MDProp(TrainingMethod):
    """MDProp's core for classification: K adversarial distributions, each through its own batch norm.

    References:
        Sinha et al., "Improving the Robustness of Deep Metric Learning with Multi-Domain Propagation", ACML 2023.
    """

    name = "mdprop"
    adversarial = True

    def __init__(self) -> None:
        self.settings = MDPropSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        assert isinstance(copy, MDProp)
        s = copy.settings
        check_attack_settings(self.name, s.attack, s.steps)
        if not (math.isfinite(s.rel_step) and s.rel_step > 0):
            raise ConfigError(f"{self.name}: rel_step must be > 0, got {s.rel_step}")
        copy.attackers()  # validates distributions now, not at the first step
        return copy

    def attackers(self) -> list[tuple[str, float]]:
        """``(norm, eps)`` of each attacker, in branch order.

        Raises:
            ConfigError: fewer than two, or a malformed entry.
        """
        parts = [p.strip() for p in self.settings.distributions.split(",") if p.strip()]
        out = []
        for part in parts:
            norm, sep, eps_text = part.partition(":")
            if not sep:
                raise ConfigError(f"mdprop: each distribution is norm:eps (e.g. linf:2/255), got {part!r}")
            eps = _parse_float(self.name, f"the budget of {part!r}", eps_text.strip())
            if not isinstance(eps, float):
                raise ConfigError(f"mdprop: the budget of {part!r} must be a number")
            check_budget(self.name, f"the budget of {part!r}", eps, norm.strip())
            out.append((norm.strip(), eps))
        if len(out) < 2:
            raise ConfigError(
                f"mdprop needs at least two adversarial distributions (norm:eps, comma-separated), got "
                f"{self.settings.distributions!r}; with one, use advprop"
            )
        return out

    def branches(self) -> list[str]:
        """The auxiliary branch of each attacker: ``adv1``, ``adv2``, …"""
        return [f"adv{k + 1}" for k in range(len(self.attackers()))]

    def model_kwargs(self) -> dict[str, Any]:
        return {"norm_layer": "multibn", "routes": self.branches()}

    def inference_route(self) -> str | None:
        return MAIN

    def inner_steps(self) -> int:
        return int(self.settings.steps)  # each row is attacked by one attacker

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        model = ctx.model
        attackers, branches = self.attackers(), self.branches()
        require_branches(model, self.name, (MAIN, *branches), self.model_kwargs())
        b, k = len(x), len(attackers)
        bounds = [i * b // k for i in range(k + 1)]
        parts: list[Tensor] = []
        for i, ((norm, eps), branch) in enumerate(zip(attackers, branches, strict=True)):
            with route(model, branch):
                parts.append(
                    attack_rows(
                        ctx,
                        x,
                        y,
                        slice(bounds[i], bounds[i + 1]),
                        attack=s.attack,
                        norm=norm,
                        eps=eps,
                        steps=s.steps,
                        step_size=s.rel_step * eps / s.steps,
                        random_start=s.random_start,
                    )
                )
        sizes = {MAIN: b, **{br: bounds[i + 1] - bounds[i] for i, br in enumerate(branches)}}
        with route(model, split(**sizes)):
            logits = ctx.forward(torch.cat([x, *parts]))  # (2B, K)
        loss = ctx.ce(logits, torch.cat([y, y]))  # the adversarial parts keep the batch order
        clean = logits[:b]
        logs = {"clean_loss": float(ctx.ce(clean.detach(), y))}
        for i, branch in enumerate(branches):
            lo, hi = b + bounds[i], b + bounds[i + 1]
            if hi > lo:
                logs[f"{branch}_loss"] = float(ctx.ce(logits[lo:hi].detach(), y[bounds[i] : bounds[i + 1]]))
        return StepOutput(loss, clean, logs)


TRAINING_METHODS.register("advprop", AdvProp())
TRAINING_METHODS.register("mdprop", MDProp())
