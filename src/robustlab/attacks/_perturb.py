"""``perturb``: an attack's candidates without judging, records or mode switches — the primitive for training loops.

:func:`~robustlab.attacks.attack` is the evaluation façade: it forces eval mode, skips already misclassified rows,
judges every example and builds per-sample records. Inside a training step all of that is wrong or wasted: the
method decides the batch-norm mode, every row is perturbed, and only the perturbed inputs are wanted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter, constrain_
from robustlab.attacks._methods import ATTACKS, AttackMethod, Batch, RunContext
from robustlab.attacks._run import parse_eps
from robustlab.errors import ConfigError
from robustlab.models.adapter import check_images, trusted_inputs
from robustlab.threat import get_norm


class _Uncounted(PassCounter):
    """The counter of a :func:`perturb` call that was given none: nobody reads it, so nothing is counted (counting
    is three index operations per gradient step, about 1 % of a small network's adversarial-training step)."""

    def add_forward(self, idx: Tensor) -> None:
        pass

    def add_gradient(self, idx: Tensor, times: int = 1) -> None:
        pass


def perturb(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str | AttackMethod = "pgd",
    *,
    norm: str | None = None,
    eps: float | str | Tensor,
    steps: int | None = None,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    targets: Tensor | None = None,
    reference: Tensor | None = None,
    init: Tensor | None = None,
    counter: PassCounter | None = None,
    **params: Any,
) -> Tensor:
    """Perturb every row of ``x`` with a registered (or already configured) attack and return the points.

    Nothing is judged or recorded, and the model's train/eval mode is left as the caller set it (adversarial
    training attacks in eval mode by default, some methods in train mode). The model's parameters and their
    ``.grad`` are not touched: gradients are taken with respect to the input only.

    Args:
        model: Classifier returning logits.
        x: Clean inputs in [0, 1].
        y: Labels.
        attack: A registered attack name (``"pgd"``, ``"fgsm"``, ``"apgd"``, ...) or an :class:`AttackMethod`
            returned by ``configure``.
        norm: Threat norm; default: the attack's own.
        eps: Budget: a number, a string such as ``"8/255"``, or a per-row tensor ``(N,)``.
        steps: Iterations (default: the attack's).
        step_size: Absolute step length (default: the attack's rule).
        generator: Randomness for random starts; default a new one seeded with ``seed`` on ``x``'s device.
        seed: Seed of the default generator.
        targets: Target classes for a targeted goal, or ``None``.
        reference: Per-row data the loss compares against (TRADES' KL: the clean logits).
        init: Starting points instead of the clean input or a random start.
        counter: Pass counter to add this call's model calls to (default: none, nothing is counted).
        **params: The attack's settings (``loss``, ``random_start``, ``restarts``, ``early_stop`` ...). Pass
            ``early_stop=False`` to keep ascending on rows that are already misclassified, as adversarial
            training does.

    Returns:
        Perturbed inputs inside the eps-ball of ``norm`` and [0, 1], detached.

    Shape:
        - x, init: ``(N, C, H, W)``; y, targets: ``(N,)``; reference: ``(N, K)``
        - output: ``(N, C, H, W)``
    """
    if isinstance(attack, str):
        method: AttackMethod = ATTACKS.get(attack).configure(steps, step_size, params)
    elif steps is not None or step_size is not None or params:
        raise ConfigError("a configured attack object takes no further settings; configure it with them instead")
    else:
        method = attack
    norm_obj = get_norm(norm or method.default_norm)
    if norm_obj.name not in method.norms:
        raise ConfigError(f"attack {method.name!r} does not support norm {norm_obj.name!r}; it supports {method.norms}")
    check_images(x, ndim=None, name="perturb")  # once here; the iterates stay in [0, 1]
    x = x.detach()
    n = x.shape[0]
    if isinstance(eps, Tensor):
        eps_t = eps.detach().to(device=x.device, dtype=x.dtype).expand(n).clone()
    else:
        value = parse_eps(eps)
        if value is None:
            raise ConfigError("perturb needs an eps")
        eps_t = torch.full((n,), value, dtype=x.dtype, device=x.device)
    ctx = RunContext(
        model=model,
        norm=norm_obj,
        generator=generator if generator is not None else torch.Generator(device=x.device).manual_seed(seed),
        counter=counter if counter is not None else _Uncounted(n),
    )
    batch = Batch(
        x=x,
        labels=y.to(x.device),
        targets=targets,
        eps=eps_t,
        index=torch.arange(n, device=x.device),
        init=init,
        reference=None if reference is None else reference.detach(),
    )
    with trusted_inputs(model):
        out = method.propose(ctx, batch)
    # the attack's own output: constrained in place unless it shares memory with the caller's tensors
    return constrain_(x, out.detach(), norm_obj, eps_t, keep=(init, targets, reference))
