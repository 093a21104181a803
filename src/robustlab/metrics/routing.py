"""How a multi-branch model with a learned selector routes perturbed inputs, under an adaptive attacker.

A MultiBN-style model (Lo & Patel, TIP 2021; :mod:`robustlab.models.norm_layers`) has one batch-norm branch per
perturbation type and a selector that sends each input to a branch. Its robustness is that of the *whole* routed
model: the attacker attacks the router too. Here each perturbation type's inputs are produced against the route
under evaluation:

- ``select``: soft routing (the selector's softmax weights the branches), differentiable end to end, so the
  gradient attack moves the routing as well as the prediction;
- ``select-hard``: the deployed arg-max routing; its forward pass is one-hot and its backward pass is the softmax's
  (a straight-through estimate, BPDA), so the same gradient attack applies;
- a branch name (``main``, ``linf``, …): that branch alone, the selector bypassed (what each branch could do with a
  perfect router).

Attacks run through the public attack engine (:func:`robustlab.attacks.attack`, judged by its evaluator); a
corruption (:func:`robustlab.data.corruptions.corrupt`) is applied as is (it does not adapt); the clean type is the
inputs themselves.

Two numbers per route come out (:func:`routing_report`): the selector's **confusion matrix** (rows: the true
perturbation type, i.e. the branch trained for it; columns: the selector's arg-max branch on the perturbed inputs;
both in :func:`~robustlab.models.norm_layers.routes_of` order) and each type's **robust accuracy** (the route's
accuracy on the inputs made against it). :func:`selector_confusion` is the matrix of one route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from robustlab.errors import ConfigError, ModelError
from robustlab.models.adapter import ModelAdapter, eval_mode
from robustlab.models.norm_layers import SELECT_ROUTES, Selector, routes_of, selector_weights

#: What makes a perturbation type's inputs.
PERTURBATION_KINDS = ("clean", "attack", "corrupt")


@dataclass(frozen=True)
class Perturbation:
    """How the inputs of one perturbation type are made (use the constructors :meth:`clean`, :meth:`pgd`,
    :meth:`attacked` and :meth:`corrupted`).

    Attributes:
        kind: ``"clean"``, ``"attack"`` (adaptive: against the evaluated route) or ``"corrupt"``.
        attack: Registered attack name (``kind="attack"``).
        norm: The attack's norm; ``None``: the attack's default.
        eps: The attack's budget.
        steps: The attack's steps; ``None``: the attack's default.
        step_size: The attack's absolute step; ``None``: the attack's rule.
        params: Further attack settings (``restarts``, ``loss``, ...) as ``(name, value)`` pairs.
        corruption: Corruption name (``kind="corrupt"``).
        severity: Corruption severity, 1..5.
    """

    kind: str
    attack: str = "pgd"
    norm: str | None = None
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None
    params: tuple[tuple[str, Any], ...] = ()
    corruption: str | None = None
    severity: int = 3

    def __post_init__(self) -> None:
        if self.kind not in PERTURBATION_KINDS:
            raise ConfigError(f"perturbation kind must be one of {', '.join(PERTURBATION_KINDS)}, got {self.kind!r}")
        if self.kind == "corrupt" and self.corruption is None:
            raise ConfigError("a corrupt perturbation needs the corruption's name")

    @classmethod
    def clean(cls) -> Perturbation:
        """The inputs themselves."""
        return cls("clean")

    @classmethod
    def pgd(
        cls, norm: str, eps: float, *, steps: int = 20, step_size: float | None = None, **params: Any
    ) -> Perturbation:
        """PGD in ``norm`` at ``eps`` against the evaluated route (``params``: ``restarts``, ``loss``, ...)."""
        return cls("attack", "pgd", norm, float(eps), steps, step_size, tuple(sorted(params.items())))

    @classmethod
    def attacked(
        cls,
        attack: str,
        *,
        norm: str | None = None,
        eps: float | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        **params: Any,
    ) -> Perturbation:
        """Any registered attack against the evaluated route."""
        return cls("attack", attack, norm, eps, steps, step_size, tuple(sorted(params.items())))

    @classmethod
    def corrupted(cls, name: str, severity: int = 3) -> Perturbation:
        """A common corruption (the same images for every route: it does not adapt)."""
        return cls("corrupt", corruption=name, severity=severity)

    def describe(self) -> str:
        """One line: what makes the inputs."""
        if self.kind == "clean":
            return "clean"
        if self.kind == "corrupt":
            return f"{self.corruption} (severity {self.severity})"
        extra = "".join(f" {k}={v}" for k, v in self.params)
        return f"{self.attack} {self.norm or ''} eps={self.eps} steps={self.steps}{extra}".replace("  ", " ")


@dataclass
class RoutingReport:
    """The selector's routing and each perturbation type's robust accuracy, per evaluated route.

    Attributes:
        branches: The branches in :func:`routes_of` order: the confusion matrices' rows (true type, named by the
            branch trained for it) and columns (the selector's arg-max branch).
        perturbations: What made each type's inputs, by branch.
        routes: The evaluated routes.
        confusion: Route → ``(K, K)`` int64 counts.
        accuracy: Route → branch → the route's accuracy on that type's inputs made against it.
        n: Images per type.
    """

    branches: tuple[str, ...]
    perturbations: dict[str, str]
    routes: tuple[str, ...]
    confusion: dict[str, Tensor] = field(default_factory=dict)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    n: int = 0

    def routing_accuracy(self, route: str) -> float:
        """The fraction of all perturbed inputs the selector sends to their own type's branch under ``route``."""
        c = self.confusion[route]
        return float(c.diagonal().sum()) / max(1, int(c.sum()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "branches": list(self.branches),
            "perturbations": dict(self.perturbations),
            "routes": list(self.routes),
            "confusion": {r: c.tolist() for r, c in self.confusion.items()},
            "accuracy": {r: dict(a) for r, a in self.accuracy.items()},
            "routing_accuracy": {r: self.routing_accuracy(r) for r in self.confusion},
            "n": self.n,
        }


def _check_model(model: object) -> tuple[ModelAdapter, tuple[str, ...]]:
    if not isinstance(model, ModelAdapter):
        raise ConfigError(f"a routing evaluation needs a ModelAdapter, got {type(model).__name__}")
    branches = routes_of(model.net)
    if not isinstance(getattr(model.net, "selector", None), Selector):
        raise ModelError(
            f"{model.name} has no selector (its branches: {', '.join(branches) or 'none'}); the routing evaluation "
            "is for multi-branch models built with selector=True"
        )
    return model, branches


def _check_perturbations(branches: Sequence[str], perturbations: Mapping[str, Perturbation]) -> None:
    unknown = [b for b in perturbations if b not in branches]
    missing = [b for b in branches if b not in perturbations]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown branch(es) {', '.join(unknown)}")
        if missing:
            parts.append(f"no perturbation for {', '.join(missing)}")
        raise ConfigError(
            f"perturbations must give one perturbation type per branch ({', '.join(branches)}): {'; '.join(parts)}"
        )
    for b, p in perturbations.items():
        if not isinstance(p, Perturbation):
            raise ConfigError(f"perturbations[{b!r}] must be a Perturbation, got {type(p).__name__}")


@torch.no_grad()
def selector_choice(model: ModelAdapter, x: Tensor, batch_size: int = 256) -> Tensor:
    """The selector's arg-max branch (index into :func:`routes_of`) for each image, in eval mode.

    The selector sees the normalised input, as in the model's forward pass.

    Shape:
        x: (N, C, H, W) in [0, 1] → (N,) int64, on ``x``'s device
    """
    model, _ = _check_model(model)
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(model.mean.device)
            z = model.normalise(xb)
            out.append(selector_weights(model.net, z, hard=False).argmax(1).to(x.device))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def _inputs(
    routed: ModelAdapter, x: Tensor, y: Tensor, p: Perturbation, seed: int, batch_size: int
) -> tuple[Tensor, float]:
    """The perturbed inputs of one type made against ``routed``, and ``routed``'s accuracy on them."""
    if p.kind == "attack":
        from robustlab.attacks import attack

        res = attack(
            routed,
            x,
            y,
            p.attack,
            norm=p.norm,
            eps=p.eps,
            steps=p.steps,
            step_size=p.step_size,
            seed=seed,
            batch_size=batch_size,
            keep_adversarials=True,
            **dict(p.params),
        )
        assert res.adversarials is not None
        return res.adversarials.to(x.device), float(res.robust.double().mean()) if len(x) else 0.0
    if p.kind == "corrupt":
        from robustlab.data.corruptions import corrupt

        assert p.corruption is not None
        xs = corrupt(x, p.corruption, p.severity, generator=torch.Generator().manual_seed(seed))
    else:
        xs = x
    acc = float((routed.predict(xs, batch_size).to(y.device) == y).double().mean()) if len(x) else 0.0
    return xs, acc


def routing_report(
    model: ModelAdapter,
    x: Tensor,
    y: Tensor,
    perturbations: Mapping[str, Perturbation],
    *,
    routes: Sequence[str] = SELECT_ROUTES,
    seed: int = 0,
    batch_size: int = 256,
) -> RoutingReport:
    """For each route: the selector's confusion matrix and each perturbation type's robust accuracy, with every
    attack run against that route (``select``: soft routing; ``select-hard``: arg-max routing attacked with the
    softmax's gradient, BPDA; a branch name: that branch alone).

    Args:
        model: A multi-branch model with a selector.
        x: Clean images in [0, 1].
        y: Labels.
        perturbations: One :class:`Perturbation` per branch, keyed by the branch trained for that type (e.g.
            ``{"main": Perturbation.clean(), "linf": Perturbation.pgd("linf", 8/255), ...}``).
        routes: The routes to evaluate.
        seed: Seeds the attacks' random starts and the corruptions.
        batch_size: Images per forward pass.

    Raises:
        ConfigError: the model is not an adapter, or ``perturbations`` does not give exactly one type per branch.
        ModelError: the model has no selector, or a route is not one of its routes.

    Shape:
        x: (N, C, H, W); y: (N,)
    """
    model, branches = _check_model(model)
    _check_perturbations(branches, perturbations)
    routes = tuple(routes)
    k = len(branches)
    report = RoutingReport(branches, {b: perturbations[b].describe() for b in branches}, routes, n=len(x))
    for r in routes:
        routed = model.with_route(r)  # refuses an unknown route
        counts = torch.zeros(k * k, dtype=torch.long)
        report.accuracy[r] = {}
        for row, branch in enumerate(branches):
            xs, acc = _inputs(routed, x, y, perturbations[branch], seed, batch_size)
            report.accuracy[r][branch] = acc
            chosen = selector_choice(model, xs, batch_size).cpu()
            counts += torch.bincount(row * k + chosen, minlength=k * k)
        report.confusion[r] = counts.view(k, k)
    return report


def selector_confusion(
    model: ModelAdapter,
    x: Tensor,
    y: Tensor,
    perturbations: Mapping[str, Perturbation],
    *,
    route: str = "select",
    seed: int = 0,
    batch_size: int = 256,
) -> Tensor:
    """The selector's confusion matrix under an adaptive attacker: ``counts[i, j]`` images of perturbation type
    ``i`` (made against ``route``) that the selector sends to branch ``j``; rows and columns in
    :func:`routes_of` order (see :func:`routing_report`, which also gives the robust accuracies).

    Shape:
        x: (N, C, H, W); y: (N,) → (K, K) int64
    """
    return routing_report(model, x, y, perturbations, routes=(route,), seed=seed, batch_size=batch_size).confusion[
        route
    ]
