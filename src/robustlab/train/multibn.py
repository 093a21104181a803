"""``multibn``: one batch-norm branch per perturbation type and a learned selector that routes each input.

MultiBN (Lo & Patel, IEEE TIP 2021) trains on several perturbation types at once; each type's inputs go through
their own batch-norm branch, and a selection module learns to detect the type and send the input to its branch. No
reference code was found (research note ``training.md`` §1.4); this is the note's adaptation to images.

Per batch ``(x, y)`` of ``B`` rows and perturbation types ``t_1 … t_T`` (``types``; default ``clean, linf, l2,
corrupt``), each type through branch ``b(t)`` (``clean`` → ``main``, any other type → the branch of its name):

1. ``x_t`` for each type: ``clean``: ``x``; ``linf`` / ``l2``: untargeted PGD on the whole batch through branch
   ``b(t)`` (the route block wraps the attack; the loop's attack batch-norm mode, ``TrainConfig.attack_bn``),
   ``steps`` steps of ``rel_step · eps / steps`` from a uniform random start; ``corrupt``: one common corruption of
   ``corruptions`` at a severity in ``1..max_severity``, both drawn per batch (:mod:`robustlab.data.corruptions`);
2. one forward pass of ``[x_{t_1}; …; x_{t_T}]`` (T·B rows) with the explicit split ``b(t_1) = B, …, b(t_T) = B``
   (each branch's batch statistics from its own rows only);
3. the selector's logits on the same T·B rows, *normalised* as the model's forward pass normalises them
   (``(x − mean) / std`` of the :class:`~robustlab.models.ModelAdapter`);
4. loss, with ``CE`` the batch mean over a type's B rows:

   ``reduction="sum"`` (default): ``Σ_t [CE(f_{b(t)}(x_t), y) + mu · CE(s(x_t), idx(b(t)))]``;
   ``reduction="mean"``: the same divided by ``T``.

   ``idx(b)`` is the branch's position in the selector's outputs (:func:`~robustlab.models.norm_layers.routes_of`
   order). The classification terms take the run's label smoothing; the selector's does not. The sum is the note's
   form (and the brief's); the shared weights then see ``T`` times the gradient of one type's loss, so a learning
   rate tuned for a standard step may need dividing by ``T`` (or ``reduction="mean"``).

The trained model is deployed through route ``select`` (the selector's softmax weights the branches); evaluate it
with an attacker that attacks the selector too (:func:`robustlab.metrics.routing.routing_report`:
``select`` soft routing, ``select-hard`` with BPDA, per-type robust accuracy and the selector's confusion matrix);
:meth:`MultiBN.perturbations` builds the evaluation's perturbation types from the training settings.

Settings and their source: ``types`` ``clean,linf,l2,corrupt`` (note §1.4's K); ``linf_eps`` 8/255 and
``l2_eps`` 0.5 (the standard CIFAR-10 budgets, robustlab's L∞ and L2 defaults); ``steps`` 7 and ``rel_step`` 2.5
(Madry's CIFAR PGD-7; step ``2.5 · eps / steps`` as ``pgd-at``); ``random_start`` ``True``; ``corruptions``
``extra``: the four extra CIFAR-10-C corruptions (speckle noise, Gaussian blur, spatter, saturate), not the 15
benchmark ones, so that a CIFAR-10-C evaluation stays held out (AugMax excludes its benchmark-overlapping operations
for the same reason; ``benchmark``, ``all`` or a comma-separated list choose others); ``max_severity`` 5 (severity
uniform on 1..5); ``mu`` 1.0 (the note's weight of the selector term); ``reduction`` ``sum``.

The model must have exactly the branches the types train (``main`` and one per non-clean type) and a selector over
them: the method says so in :meth:`~MultiBN.model_kwargs` (``robustlab train`` and
:func:`robustlab.train.standalone.with_method_needs` build it so, and refuse user ``arch_kwargs`` that contradict
it), and every step checks the model it is given (a model built by hand), refusing with a
:class:`~robustlab.errors.ConfigError` a selector with fewer branches than perturbation types, a missing branch or
a branch no type trains.

Randomness: per batch, in the order of ``types``: each attack's random start (over the whole batch,
:meth:`~robustlab.train.methods.StepContext.draw`), and for ``corrupt`` three integers from the run's generator (the
corruption, the severity, and the seed of the corruption's own generator). In a multi-process run every process
draws the same corruption, severity and seed, but each corrupts its own rows, so the per-image noise is not what a
single process would draw for the same rows.

References:
    Lo, Patel, "Defending Against Multiple and Unforeseen Adversarial Videos", IEEE TIP 2021 (arXiv 2009.05244).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import ConfigError
from robustlab.models.adapter import ModelAdapter
from robustlab.models.norm_layers import MAIN, Selector, route, routes_of, split
from robustlab.train.advprop import attack_rows, check_budget
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod

if TYPE_CHECKING:
    from robustlab.metrics.routing import Perturbation

#: The perturbation types ``multibn`` knows.
PERTURBATION_TYPES = ("clean", "linf", "l2", "corrupt")

#: The loss reductions over the types.
REDUCTIONS = ("sum", "mean")


def branch_of(kind: str) -> str:
    """The branch a perturbation type trains: ``main`` for ``clean``, the type's name otherwise."""
    return MAIN if kind == "clean" else kind


@dataclass(frozen=True)
class MultiBNSettings:
    """Settings of ``multibn`` (see the module docstring for their source).

    Attributes:
        types: Comma-separated perturbation types (``clean``, ``linf``, ``l2``, ``corrupt``); ``clean`` included.
        linf_eps: Budget of the ``linf`` type.
        l2_eps: Budget of the ``l2`` type.
        steps: PGD steps of each attacked type.
        rel_step: PGD step: ``rel_step · eps / steps``.
        random_start: Start PGD from a uniform point of the ball.
        corruptions: ``extra``, ``benchmark``, ``all`` or comma-separated corruption names.
        max_severity: The ``corrupt`` type's severity is uniform on ``1..max_severity``.
        mu: Weight of the selector's cross-entropy.
        reduction: ``sum`` or ``mean`` of the per-type terms.
    """

    types: str = "clean,linf,l2,corrupt"
    linf_eps: float = 8 / 255
    l2_eps: float = 0.5
    steps: int = 7
    rel_step: float = 2.5
    random_start: bool = True
    corruptions: str = "extra"
    max_severity: int = 5
    mu: float = 1.0
    reduction: str = "sum"


class MultiBN(TrainingMethod):
    """MultiBN: one batch-norm branch per perturbation type, plus a learned branch selector.

    References:
        Lo, Patel, "Defending Against Multiple and Unforeseen Adversarial Videos", IEEE TIP 2021.
    """

    name = "multibn"
    adversarial = True

    def __init__(self) -> None:
        self.settings = MultiBNSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        params = dict(params)
        for key in ("linf_eps", "l2_eps"):
            if isinstance(params.get(key), str):
                from robustlab.attacks import parse_eps

                params[key] = parse_eps(params[key])
        copy = super().configure(params)
        assert isinstance(copy, MultiBN)
        s = copy.settings
        kinds = copy.types()
        if "linf" in kinds:
            check_budget(self.name, "linf_eps", s.linf_eps, "linf")
        if "l2" in kinds:
            check_budget(self.name, "l2_eps", s.l2_eps, "l2")
        if s.steps <= 0:
            raise ConfigError(f"multibn: steps must be > 0, got {s.steps}")
        if not (math.isfinite(s.rel_step) and s.rel_step > 0):
            raise ConfigError(f"multibn: rel_step must be > 0, got {s.rel_step}")
        if not 1 <= s.max_severity <= 5:
            raise ConfigError(f"multibn: max_severity must be in 1..5, got {s.max_severity}")
        if not (math.isfinite(s.mu) and s.mu >= 0):
            raise ConfigError(f"multibn: mu must be >= 0, got {s.mu}")
        if s.reduction not in REDUCTIONS:
            raise ConfigError(f"multibn: reduction must be one of {', '.join(REDUCTIONS)}, got {s.reduction!r}")
        if "corrupt" in kinds:
            copy.corruption_names()
        return copy

    def types(self) -> list[str]:
        """The perturbation types, in order.

        Raises:
            ConfigError: an unknown or repeated type, ``clean`` missing, or fewer than two types.
        """
        import difflib

        kinds = [t.strip() for t in self.settings.types.split(",") if t.strip()]
        for t in kinds:
            if t not in PERTURBATION_TYPES:
                close = difflib.get_close_matches(t, PERTURBATION_TYPES, n=1)
                hint = f" Did you mean: {close[0]}?" if close else ""
                raise ConfigError(
                    f"multibn: unknown perturbation type {t!r}.{hint} Types: {', '.join(PERTURBATION_TYPES)}"
                )
        if len(set(kinds)) != len(kinds):
            raise ConfigError(f"multibn: each perturbation type once, got {self.settings.types!r}")
        if "clean" not in kinds:
            raise ConfigError(
                "multibn: types must include clean (the clean inputs' branch is main, the one the plain "
                f"architecture's batch norms become), got {self.settings.types!r}"
            )
        if len(kinds) < 2:
            raise ConfigError("multibn needs at least two perturbation types (clean and one more)")
        return kinds

    def branches(self) -> list[str]:
        """The branch of each type, in the order of :meth:`types`."""
        return [branch_of(t) for t in self.types()]

    def corruption_names(self) -> list[str]:
        """The corruptions the ``corrupt`` type draws from.

        Raises:
            UnknownNameError: an unknown corruption (close matches listed).
        """
        from robustlab.data.corruptions import get_corruption, list_corruptions

        text = self.settings.corruptions.strip()
        if text in ("extra", "benchmark", "all"):
            return list_corruptions(text)
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise ConfigError("multibn: corruptions is empty; give extra, benchmark, all or corruption names")
        for n in names:
            get_corruption(n)
        return names

    def model_kwargs(self) -> dict[str, Any]:
        return {"norm_layer": "multibn", "routes": [b for b in self.branches() if b != MAIN], "selector": True}

    def inference_route(self) -> str | None:
        return "select"

    def inner_steps(self) -> int:
        attacked = sum(t in ("linf", "l2") for t in self.types())
        return int(self.settings.steps) * attacked

    def check_model(self, model: nn.Module) -> Selector:
        """The model's selector, after checking that the model has exactly the branches the types train.

        Raises:
            ConfigError: no selector, a selector with fewer branches than perturbation types, a missing branch,
                or a branch no perturbation type trains.
        """
        want = self.branches()
        net = model.net if isinstance(model, ModelAdapter) else model
        have = routes_of(net)
        sel = getattr(net, "selector", None)
        fix = f"build the model with the architecture arguments {self.model_kwargs()} (robustlab train adds them)"
        types = f"{len(want)} perturbation types ({', '.join(self.types())} → branches {', '.join(want)})"
        if not isinstance(sel, Selector):
            what = f"branches {', '.join(have)}" if have else "plain batch norms"
            raise ConfigError(f"multibn routes every input with a learned selector; the model ({what}) has none: {fix}")
        if len(sel.names) < len(want):
            raise ConfigError(
                f"multibn: the model's selector has {len(sel.names)} branches ({', '.join(sel.names)}), fewer than "
                f"the {types}: {fix}"
            )
        missing = [b for b in want if b not in have or b not in sel.names]
        if missing:
            raise ConfigError(f"multibn: the model has no branch {', '.join(missing)} for the {types}: {fix}")
        spare = [b for b in dict.fromkeys((*have, *sel.names)) if b not in want]
        if spare:
            raise ConfigError(
                f"multibn: the model's branch(es) {', '.join(spare)} would be trained by no perturbation type "
                f"(the {types}): {fix}, or add the types"
            )
        return sel

    def corrupted(self, ctx: StepContext, x: Tensor) -> Tensor:
        """The ``corrupt`` type's inputs: one corruption and severity drawn for the batch, then a seed for the
        corruption's own generator (three draws from the run's generator).

        Shape:
            x: (B, C, H, W) in [0, 1] → (B, C, H, W)
        """
        from robustlab.data.corruptions import corrupt

        names = self.corruption_names()
        g = ctx.generator
        which = int(torch.randint(len(names), (1,), generator=g))
        severity = int(torch.randint(1, self.settings.max_severity + 1, (1,), generator=g))
        seed = int(torch.randint(2**62, (1,), generator=g))
        with torch.no_grad():
            return corrupt(x, names[which], severity, generator=torch.Generator().manual_seed(seed))

    def perturbations(
        self, *, corruption: str | None = None, severity: int = 3, steps: int = 20
    ) -> dict[str, Perturbation]:
        """The evaluation's perturbation types by branch (:func:`robustlab.metrics.routing.routing_report`):
        PGD at the training budgets with ``steps`` steps, and ``corruption`` (default: the first of
        :meth:`corruption_names`) at ``severity``."""
        from robustlab.metrics.routing import Perturbation

        s = self.settings
        out: dict[str, Perturbation] = {}
        for t in self.types():
            if t == "clean":
                out[MAIN] = Perturbation.clean()
            elif t == "linf":
                out[t] = Perturbation.pgd("linf", s.linf_eps, steps=steps)
            elif t == "l2":
                out[t] = Perturbation.pgd("l2", s.l2_eps, steps=steps)
            else:
                out[t] = Perturbation.corrupted(corruption or self.corruption_names()[0], severity)
        return out

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        model = ctx.model
        sel = self.check_model(model)
        kinds, branches = self.types(), self.branches()
        b = len(x)
        inputs: list[Tensor] = []
        for t, branch in zip(kinds, branches, strict=True):
            if t == "clean":
                inputs.append(x)
            elif t in ("linf", "l2"):
                eps = s.linf_eps if t == "linf" else s.l2_eps
                with route(model, branch):  # each type's attack through its own branch
                    inputs.append(
                        attack_rows(
                            ctx,
                            x,
                            y,
                            slice(None),
                            attack="ce",
                            norm=t,
                            eps=eps,
                            steps=s.steps,
                            step_size=s.rel_step * eps / s.steps,
                            random_start=s.random_start,
                        )
                    )
            else:
                inputs.append(self.corrupted(ctx, x))
        xs = torch.cat(inputs)  # (T·B, C, H, W)
        with route(model, split(**dict.fromkeys(branches, b))):
            logits = ctx.forward(xs)  # (T·B, K)
        z = model.normalise(xs) if isinstance(model, ModelAdapter) else xs
        chosen = sel(z)  # (T·B, R): the selector sees the normalised inputs, as in the forward pass
        terms, selector_terms = [], []
        logs: dict[str, float] = {}
        for i, (t, branch) in enumerate(zip(kinds, branches, strict=True)):
            rows = slice(i * b, (i + 1) * b)
            ce = ctx.ce(logits[rows], y)
            target = torch.full((b,), sel.names.index(branch), dtype=torch.long, device=x.device)
            sce = F.cross_entropy(chosen[rows], target)
            terms.append(ce)
            selector_terms.append(sce)
            logs[f"{t}_loss"] = float(ce.detach())
        classification = torch.stack(terms).sum()
        selection = torch.stack(selector_terms).sum()
        loss = classification + s.mu * selection
        if s.reduction == "mean":
            loss = loss / len(kinds)
        with torch.no_grad():
            own = torch.tensor([sel.names.index(br) for br in branches], device=x.device).repeat_interleave(b)
            logs["selector_loss"] = float(selection) / len(kinds)
            logs["selector_accuracy"] = float((chosen.argmax(1) == own).double().mean())
        clean = logits[kinds.index("clean") * b : (kinds.index("clean") + 1) * b]
        return StepOutput(loss, clean, logs)


TRAINING_METHODS.register("multibn", MultiBN())
