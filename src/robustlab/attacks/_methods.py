"""Attack objects: the typed layer under the :func:`~robustlab.attacks.attack` façade.

An :class:`AttackMethod` is registered by name with its default settings; ``configure`` returns a copy holding
validated settings, and ``propose(ctx, batch)`` returns candidates that the one evaluator judges. Training loops,
cascades (AutoAttack) and audits hold these objects directly; the façade maps a name and JSON settings to them.
Here: the gradient attacks (configurations of the one gradient loop) and C&W / EAD (the constant search).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn

from robustlab._registry import Registry
from robustlab.attacks._cw import CarliniWagnerL2, ElasticNet, InnerOptimizer, SearchConfig, const_search
from robustlab.attacks._evaluator import PassCounter
from robustlab.attacks._gradient import GradientConfig, StartGradients, gradient_attack
from robustlab.errors import ConfigError
from robustlab.threat import LOSSES, NORMS, Norm, make_loss


@dataclass
class RunContext:
    """What a method needs besides the batch: model (in eval mode), norm, randomness and the counter; in a
    minimal search, the cache of clean-input gradients that every attempt's first step shares.

    ``unconverged`` (``(N,)`` bool on the CPU, addressed by global index) is where a method marks the samples
    its own diagnostics say it did not converge on (read by :meth:`AttackMethod.diagnose`).
    ``gradient_model`` is the model whose gradients guide the attack when it is not the judged one (a surrogate);
    ``None`` means ``model``. ``log`` is where a method keeps what it reports besides its candidates across the
    batches of one call (read back by :meth:`AttackMethod.summarise`)."""

    model: nn.Module
    norm: Norm
    generator: torch.Generator
    counter: PassCounter
    start_grads: StartGradients | None = None
    unconverged: Tensor | None = None
    gradient_model: nn.Module | None = None
    log: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def guide(self) -> nn.Module:
        """The model to take gradients from (``gradient_model`` or ``model``)."""
        return self.gradient_model if self.gradient_model is not None else self.model


@dataclass(frozen=True)
class Batch:
    """The rows of one attack problem; every tensor has one entry per row.

    Attributes:
        x: Clean inputs in [0, 1].
        labels: True labels.
        targets: Target classes, or ``None`` for an untargeted goal.
        eps: Per-row budget in the threat norm (``inf`` when unbounded).
        index: Global sample positions (for the pass counter).
        init: Starting points instead of the clean input (a warm-started minimal search), or ``None``.
        reference: Per-row data a loss compares against (TRADES' KL: clean logits), or ``None``.

    Shape:
        - x, init: ``(N, C, H, W)``; labels, targets, eps, index: ``(N,)``; reference: ``(N, *)``
    """

    x: Tensor
    labels: Tensor
    targets: Tensor | None
    eps: Tensor
    index: Tensor
    init: Tensor | None = None
    reference: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, rows: Tensor) -> Batch:
        """The sub-problem of ``rows`` (positions or a bool mask)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[rows]

        return Batch(
            x=self.x[rows],
            labels=self.labels[rows],
            targets=pick(self.targets),
            eps=self.eps[rows],
            index=self.index[rows],
            init=pick(self.init),
            reference=pick(self.reference),
        )


@dataclass(frozen=True)
class Cost:
    """Model calls one sample costs when it never leaves the batch early.

    Attributes:
        gradient: Forward + input-gradient passes.
        forward: Forward-only passes (queries).
    """

    gradient: int
    forward: int = 0

    @property
    def calls(self) -> int:
        """Every model call, gradient or not: the unit of budgets and progress."""
        return self.gradient + self.forward

    def __mul__(self, k: int) -> Cost:
        return Cost(self.gradient * k, self.forward * k)

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.gradient + other.gradient, self.forward + other.forward)


#: What each Python type of a setting is called in an error message.
_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_value(key: str, value: Any, kind: Any, method: str) -> Any:
    """Return ``value`` if it has the type ``kind`` (``bool``, ``int``, ``float``, ``str``, or one of them
    ``| None``); an integer is a valid float, a bool is never a number.

    Raises:
        ConfigError: naming the setting, the attack, the type wanted and the value given.
    """
    kinds = set(getattr(kind, "__args__", (kind,)))
    if value is None and type(None) in kinds:
        return value
    if not any(_is(value, k) for k in kinds):
        want = " or ".join(_KIND.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not type(None))
        none = " (or null)" if type(None) in kinds else ""
        raise ConfigError(f"parameter {key!r} of attack {method!r} must be {want}{none}, got {value!r}")
    return value


def _is(value: Any, kind: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def unknown_key(key: str, known: list[str], method: str) -> ConfigError:
    """The error for a setting ``method`` does not have, with the close matches and every known key."""
    # The near-certain matches if there are any (restart -> restarts, not also warm_start), else the looser ones.
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.75) or difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown parameter {key!r} for attack {method!r}.{hint} Known: {', '.join(sorted(known))}.")


def _apply_params(cfg: Any, params: dict[str, Any], method: str) -> Any:
    hints = typing.get_type_hints(type(cfg))
    for key, value in params.items():
        if key not in hints:
            raise unknown_key(key, list(hints), method)
        check_value(key, value, hints[key], method)
    return dataclasses.replace(cfg, **params)


class AttackMethod(ABC):
    """A registered attack: its settings and how it proposes candidates for a batch.

    The registered object holds the defaults; :meth:`configure` returns a copy with validated settings, so a
    configured attack is a value that training loops and cascades can keep and call.

    Attributes:
        name: Registry name.
        norms: Norms it supports; the first is the default.
        fixed_budget: ``True`` for attacks that take an eps budget (and can be wrapped by the minimal search);
            ``False`` for minimal-distortion attacks (C&W, EAD), for which eps only bounds the evaluation.
        defaults: The default configuration (a frozen dataclass whose fields are the accepted ``params``).
        config: The configuration this object runs with.
        takes_surrogate: Its gradients can come from a surrogate (``RunContext.gradient_model``): a transfer
            attack. ``False`` for query-only attacks and cascades.
    """

    name: str
    norms: tuple[str, ...]
    fixed_budget: bool
    defaults: Any
    takes_surrogate: bool = True

    @property
    def config(self) -> Any:
        """The settings this object runs with (the defaults until :meth:`configure`)."""
        return self.__dict__.get("_config", self.defaults)

    @property
    def default_norm(self) -> str:
        """The norm used when none is given."""
        return self.norms[0]

    def configure(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> Self:
        """A copy of this attack with validated settings.

        Args:
            steps: The generic iteration count (``None``: the attack's default).
            step_size: The generic absolute step length (``None``: the attack's default).
            params: Attack-specific settings (the fields of :attr:`defaults`).

        Raises:
            ConfigError: an unknown setting (with its close matches), a value of the wrong type or out of range.
        """
        configured = copy.copy(self)
        configured.__dict__["_config"] = self.resolve(steps, step_size, params)
        return configured

    @abstractmethod
    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> Any:
        """Validate the user's settings and return the resolved configuration (a frozen dataclass).

        Raises:
            ConfigError: an unknown setting, a value of the wrong type or out of range.
        """

    def param_names(self) -> list[str]:
        """The settings :meth:`configure` accepts in ``params``."""
        return [f.name for f in dataclasses.fields(self.defaults)]

    @abstractmethod
    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        """Candidates for every row of ``batch`` (shape ``(N, C, H, W)``); the evaluator projects, clips and
        judges them. ``batch.init`` (fixed-budget attacks only): starting points of a warm-started minimal search."""

    @abstractmethod
    def cost(self) -> Cost:
        """Model calls one sample costs when it never leaves the batch early."""

    def check_classes(self, num_classes: int, targeted: bool) -> None:
        """Raise :class:`ConfigError` if the configuration cannot work with this many classes."""
        if num_classes < 2:
            raise ConfigError(f"attack {self.name!r} needs a model with at least 2 classes, got {num_classes}")

    def summarise(
        self, ctx: RunContext, x: Tensor, x_adv: Tensor, labels: Tensor, correct: Tensor
    ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """What this attack reports besides the evaluator's verdicts, once every batch has run.

        Args:
            ctx: The run context (its ``log`` holds what :meth:`propose` kept).
            x: Every clean input; x_adv: the judged examples; labels; correct: the clean-correct rows.

        Returns:
            Summary entries, and extra per-sample columns (each a list over all samples).
        """
        return {}, {}

    def diagnose(self, unconverged: Tensor | None, success: Tensor, attacked: int) -> list[str]:
        """Sentences for the user when the method's own diagnostics say its numbers are not to be trusted.

        Args:
            unconverged: ``(N,)`` bool, the samples the method marked in :attr:`RunContext.unconverged`.
            success: ``(N,)`` bool, the evaluator's verdict.
            attacked: How many samples were attacked (clean-correct, finite).
        """
        return []


def every_norm() -> tuple[str, ...]:
    """Every registered norm, L∞ first: the norms of an attack that only asks the norm for its start, steepest
    step and projection (so a newly registered norm reaches it)."""
    return ("linf", *(name for name in NORMS.names() if name != "linf"))


class GradientMethod(AttackMethod):
    """FGSM / I-FGSM / PGD / MI-FGSM: presets of :func:`~._gradient.gradient_attack`."""

    fixed_budget = True

    @property
    def norms(self) -> tuple[str, ...]:  # type: ignore[override]
        """Every registered norm (the loop only asks the norm for its start, step and projection); L∞ first."""
        return every_norm()

    def __init__(self, name: str, defaults: GradientConfig, one_step: bool = False) -> None:
        self.name, self.defaults, self.one_step = name, defaults, one_step

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> GradientConfig:
        if self.one_step and steps not in (None, 1):
            raise ConfigError(f"{self.name} takes exactly one step (got steps={steps}); use 'ifgsm' or 'pgd'")
        cfg: GradientConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        if step_size is not None:
            cfg = dataclasses.replace(cfg, step_size=step_size)
        LOSSES.get(cfg.loss)
        if cfg.restarts < 1:
            raise ConfigError(f"restarts must be >= 1, got {cfg.restarts}")
        if cfg.momentum < 0:
            raise ConfigError(f"momentum must be >= 0, got {cfg.momentum}")
        if cfg.eot_iter < 1:
            raise ConfigError(f"eot_iter must be >= 1, got {cfg.eot_iter}")
        return cfg

    def cost(self) -> Cost:
        c = self.config
        return Cost(gradient=c.steps * c.restarts * c.eot_iter, forward=c.restarts - 1)

    def check_classes(self, num_classes: int, targeted: bool) -> None:
        super().check_classes(num_classes, targeted)
        make_loss(self.config.loss, self.config.kappa).check(num_classes, targeted)

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        return gradient_attack(
            ctx.guide,
            batch.x,
            batch.labels,
            batch.targets,
            batch.eps,
            norm=ctx.norm,
            config=self.config,
            generator=ctx.generator,
            counter=ctx.counter,
            index=batch.index,
            start_grads=ctx.start_grads,
            init=batch.init,
            reference=batch.reference,
        )


@dataclass(frozen=True)
class EADConfig(SearchConfig):
    """:class:`~._cw.SearchConfig` plus EAD's ``beta``, ``decision`` rule (``"en"``/``"l1"``) and ``fista``."""

    beta: float = 1e-3
    decision: str = "en"
    fista: bool = True


class ConstSearchMethod(AttackMethod):
    """C&W-L2 and EAD: an inner optimiser under the shared binary search over ``c``."""

    fixed_budget = False

    def __init__(self, name: str, norms: tuple[str, ...], defaults: SearchConfig) -> None:
        self.name, self.norms, self.defaults = name, norms, defaults

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> SearchConfig:
        if step_size is not None:
            raise ConfigError(f"{self.name} has no step size; set its learning rate with lr=...")
        cfg: SearchConfig = _apply_params(self.defaults, params, self.name)
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        if cfg.search_steps < 1:
            raise ConfigError(f"search_steps must be >= 1, got {cfg.search_steps}")
        if cfg.initial_const <= 0 or cfg.lr <= 0:
            raise ConfigError("initial_const and lr must be > 0")
        if isinstance(cfg, EADConfig):
            if cfg.decision not in ("en", "l1"):
                raise ConfigError(f"decision must be 'en' or 'l1', got {cfg.decision!r}")
            if cfg.beta < 0:
                raise ConfigError(f"beta must be >= 0, got {cfg.beta}")
        return cfg

    def cost(self) -> Cost:
        c = self.config
        per_step = 2 if isinstance(c, EADConfig) and c.fista else 1  # FISTA judges its iterate with a forward
        return Cost(gradient=c.steps * c.search_steps, forward=(per_step - 1) * c.steps * c.search_steps)

    def diagnose(self, unconverged: Tensor | None, success: Tensor, attacked: int) -> list[str]:
        config = self.config
        if unconverged is None or not bool(unconverged.any()):
            return []
        stuck = int(unconverged.sum())
        empty = int((unconverged & ~success).sum())
        largest = config.initial_const * 10 ** (config.search_steps - 1)
        consequence = (
            f"{empty} of them have no adversarial example at all, so the success rate is a lower bound and the "
            "robust accuracy an upper bound"
            if empty
            else "each has an adversarial example from an overshooting iterate only, so its distortion is likely "
            "far above the minimum"
        )
        return [
            f"{self.name} did not converge on {stuck} of {attacked} attacked images: its binary search over the "
            f"constant never settled on an adversarial example (the constant was still growing when the "
            f"search_steps={config.search_steps} ran out, at c = {largest:.3g}, with steps={config.steps} each); "
            f"{consequence}. Raise search_steps, initial_const or steps."
        ]

    def inner(self, config: SearchConfig) -> InnerOptimizer:
        """The inner optimiser for this configuration."""
        if isinstance(config, EADConfig):
            return ElasticNet(beta=config.beta, decision=config.decision, fista=config.fista)
        return CarliniWagnerL2()

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        if batch.init is not None:  # only the minimal search of fixed-budget attacks passes starting points
            raise ConfigError(f"{self.name} takes no starting points; its warm_start setting restarts from its best")
        return const_search(
            ctx.guide,
            batch.x,
            batch.labels,
            batch.targets,
            inner=self.inner(self.config),
            config=self.config,
            counter=ctx.counter,
            index=batch.index,
            unconverged=ctx.unconverged,
        )


ATTACKS: Registry[AttackMethod] = Registry("attack")
ATTACKS.register(
    "fgsm", GradientMethod("fgsm", GradientConfig(steps=1, rel_step=1.0, random_start=False), one_step=True)
)
ATTACKS.register("ifgsm", GradientMethod("ifgsm", GradientConfig(steps=10, rel_step=1.0, random_start=False)))
ATTACKS.register("pgd", GradientMethod("pgd", GradientConfig(steps=10, rel_step=2.5, random_start=True)))
ATTACKS.register(
    "mifgsm", GradientMethod("mifgsm", GradientConfig(steps=10, rel_step=1.0, random_start=False, momentum=1.0))
)
ATTACKS.register("cw", ConstSearchMethod("cw", ("l2",), SearchConfig()))
ATTACKS.register("ead", ConstSearchMethod("ead", ("l1", "l2"), EADConfig()))
