"""The one gradient loop: FGSM, I-FGSM, PGD (random start, restarts) and MI-FGSM are configurations of it.

FGSM is one step of size eps without random start; I-FGSM is several smaller steps; PGD adds a random start
and restarts; MI-FGSM accumulates an L1-normalised gradient with decay ``momentum``. The norm supplies the
random start, the steepest-ascent step and the projection; the loss is any :class:`~robustlab.threat.Loss`.

A sample whose current iterate already meets the attack goal leaves the batch (``early_stop``): it is a
success whatever happens next, so the answer is unchanged and the remaining gradient passes are saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter, constrain, is_success
from robustlab.threat import Norm, make_loss, per_sample


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
) -> Tensor:
    """Run the gradient loop on one batch; the model must already be in eval mode.

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

    Returns:
        Adversarial candidates inside the eps-ball and [0, 1] (the evaluator still judges them).

    Shape:
        - x, init: ``(N, C, H, W)``; labels, targets, eps, index: ``(N,)``
        - output: ``(N, C, H, W)``

    References:
        Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM).
        Kurakin et al., "Adversarial Examples in the Physical World", ICLR 2017 workshop (I-FGSM).
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018 (PGD).
        Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018 (MI-FGSM).
    """
    loss_fn = make_loss(config.loss, config.kappa)
    step_all = (
        torch.full_like(eps, config.step_size) if config.step_size is not None else config.rel_step * eps / config.steps
    )
    out = x.detach().clone()
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for restart in range(config.restarts):
        act = (~done).nonzero().flatten()  # (n,) local rows still to fool
        if act.numel() == 0:
            break
        xa, ya, ea, sa = x[act], labels[act], eps[act], step_all[act]
        ta = None if targets is None else targets[act]
        start = init if restart == 0 else None
        if start is not None:
            cur = constrain(xa, start[act], norm, ea)
        elif config.random_start:
            cur = constrain(xa, xa + norm.random_init(xa, ea, generator), norm, ea)
        else:
            cur = xa.clone()
        mom = torch.zeros_like(xa) if config.momentum else None
        for step in range(config.steps):
            from_clean = step == 0 and not config.random_start and start is None and start_grads is not None
            cached = start_grads.get(index[act]) if from_clean and start_grads is not None else None
            if cached is not None:
                grad = cached
            else:
                cur.requires_grad_(True)
                logits = model(cur)  # (n, K)
                (grad,) = torch.autograd.grad(loss_fn(logits, ya, ta).sum(), cur)
                counter.add_gradient(index[act])
                cur = cur.detach()
                if from_clean and start_grads is not None:
                    start_grads.put(index[act], grad)
            if config.early_stop and cached is None:
                won = is_success(logits.detach(), ya, ta)
                if bool(won.any()):
                    out[act[won]] = cur[won]
                    done[act[won]] = True
                    keep = ~won
                    act, xa, ya, ea, sa, cur, grad = (t[keep] for t in (act, xa, ya, ea, sa, cur, grad))
                    ta = None if ta is None else ta[keep]
                    mom = None if mom is None else mom[keep]
                    if act.numel() == 0:
                        break
            direction = torch.nan_to_num(grad)  # a NaN in one sample must not stop the others
            if mom is not None:
                l1 = direction.abs().reshape(direction.shape[0], -1).sum(1).clamp_min(1e-12)
                mom = config.momentum * mom + direction / per_sample(l1, direction)
                direction = mom
            cur = constrain(xa, cur + norm.steepest_step(direction, sa, cur), norm, ea)
        out[act] = cur
        if restart < config.restarts - 1 and act.numel():
            with torch.no_grad():
                won = is_success(model(cur), ya, ta)
            counter.add_forward(index[act])
            done[act[won]] = True
    return out
