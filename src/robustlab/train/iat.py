"""``iat``: interpolated adversarial training (Lamb et al.): mixup on the clean batch and on its PGD points.

Per batch ``(x, y)``:

1. ``(x̃, y_a, y_b, λ₁)``: mixup of the clean batch, ``x̃ = λ₁·x + (1 − λ₁)·x[π₁]``, ``y_a = y``, ``y_b = y[π₁]``,
   with ``λ₁ ~ Beta(alpha, alpha)`` and a random permutation ``π₁``;
   ``L₁ = λ₁·CE(f(x̃), y_a) + (1 − λ₁)·CE(f(x̃), y_b)``;
2. ``x′``: L∞ PGD on the *clean* batch (``steps`` sign steps of ``step_size`` from a uniform random start, every
   point taking every step), in the loop's batch-norm mode (``TrainConfig.attack_bn``);
3. mixup of ``x′`` with a new ``λ₂`` and a new permutation ``π₂`` → ``L₂``, written as ``L₁``;
4. loss ``(L₁ + L₂) / 2``.

Settings (defaults are the hyper-parameters of the CIFAR-10 re-implementation read for the research note,
ndb796/Pytorch-Adversarial-Training-CIFAR ``interpolated_adversarial_training.py``; no official code was found):
``eps`` (required; the reference uses 0.0314 ≈ 8/255), ``steps`` (7), ``step_size`` (``None``: ``eps / 4``, the
reference's 0.00784 at eps 0.0314), ``random_start`` (``True``), ``clip_start`` (``False``: as in the reference, the
uniform start is not clipped to [0, 1] before the first gradient; only the iterates are), ``alpha`` (1.0: λ uniform
on [0, 1]). SGD, its schedule and weight decay are the loop's business, not the method's.

Attack batch-norm mode: the reference script attacks the live model in train mode (its helper that attacks an
eval-mode copy is never called); here ``TrainConfig.attack_bn`` decides (``"train"`` reproduces the reference).

Randomness: ``λ`` and the permutations come from the run's generator. ``λ`` is one number per batch, drawn as a
seed from the generator that feeds NumPy's Beta sampler (PyTorch's public Beta sampler takes no generator). Each
permutation is drawn over the *global* batch, so every process of a multi-process run makes the same draws and
their generators stay in step; a process whose rows are only part of the global batch then mixes *within its own
rows*, in the order the global permutation gives them (a uniform permutation of the local rows). With one process
this is the reference's permutation of the whole batch; under DDP the mixing partners are local, and ``λ`` is
shared by all processes.

Training accuracy: the loop counts ``argmax`` of the returned logits against ``y``. The returned logits are those of
the mixed adversarial batch, so the count is against ``y_a`` (each row's own label, which dominates the mix only
when ``λ₂ > 1/2``): it is the reference script's per-batch "Adv Accuracy" print, not comparable with PGD-AT's
training accuracy, and it costs no further forward pass. The λ-weighted version (the reference's epoch total) is
logged as ``mix_adv_accuracy``, with the two halves of the loss as ``mix_clean_loss`` and ``mix_adv_loss``.

References:
    Lamb, Verma, Kannala, Bengio, "Interpolated Adversarial Training: Achieving Robust Neural Networks without
    Sacrificing Too Much Accuracy", AISec 2019 (arXiv 1906.06784).
    Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.train.methods import (
    TRAINING_METHODS,
    StepContext,
    StepOutput,
    TrainingMethod,
    require_budget,
    require_positive,
)

#: Seeds handed from the run's generator to NumPy's Beta sampler lie in [0, 2**62).
_SEED_RANGE = 2**62


@dataclass(frozen=True)
class IATSettings:
    """Settings of ``iat`` (see the module docstring for their source).

    Attributes:
        eps: L∞ training budget of the PGD points (required).
        steps: PGD steps.
        step_size: Absolute PGD step; ``None``: ``eps / 4``.
        random_start: Start PGD from a uniform point of the ball.
        clip_start: Clip the random start to [0, 1] before the first gradient (the reference does not).
        alpha: Mixup's Beta(alpha, alpha) parameter.
    """

    eps: float | None = None
    steps: int = 7
    step_size: float | None = None
    random_start: bool = True
    clip_start: bool = False
    alpha: float = 1.0


def mixup_draw(ctx: StepContext, y: Tensor, alpha: float) -> tuple[float, Tensor]:
    """One mixup draw from the run's generator: ``λ ~ Beta(alpha, alpha)`` and a permutation of the local rows.

    The permutation is drawn over the global batch and ranked within this process's rows (see the module
    docstring); with one process it is the drawn permutation itself.

    Shape:
        y: (B,) → permutation (B,) int64 on ``y``'s device
    """
    seed = int(torch.randint(_SEED_RANGE, (1,), generator=ctx.generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    drawn = ctx.draw(y, lambda t: torch.randperm(len(t), generator=ctx.generator))
    # ranks of this process's entries: a permutation of 0..B-1 (the identity map on a whole-batch permutation)
    return lam, drawn.argsort().argsort()


def mixup_loss(ctx: StepContext, logits: Tensor, y: Tensor, perm: Tensor, lam: float) -> Tensor:
    """``λ·CE(logits, y) + (1 − λ)·CE(logits, y[perm])`` with the run's label smoothing.

    Shape:
        logits: (B, K); y, perm: (B,) → scalar
    """
    return lam * ctx.ce(logits, y) + (1.0 - lam) * ctx.ce(logits, y[perm])


class IAT(TrainingMethod):
    """Interpolated adversarial training: half mixup on the clean batch, half mixup on its PGD points.

    References:
        Lamb et al., "Interpolated Adversarial Training", AISec 2019 (arXiv 1906.06784).
    """

    name = "iat"
    adversarial = True

    def __init__(self) -> None:
        self.settings = IATSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        s = copy.settings
        require_budget(self.name, s.eps, s.steps)
        require_positive(self.name, "step_size", s.step_size)
        if not (math.isfinite(s.alpha) and s.alpha > 0):
            raise ConfigError(f"iat: alpha (mixup's Beta(alpha, alpha) parameter) must be > 0, got {s.alpha}")
        return copy

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        step_size = s.step_size if s.step_size is not None else s.eps / 4
        lam1, perm1 = mixup_draw(ctx, y, s.alpha)
        logits_clean = ctx.forward(lam1 * x + (1.0 - lam1) * x[perm1])  # (B, K)
        clean = mixup_loss(ctx, logits_clean, y, perm1, lam1)
        x_adv = ctx.perturb(
            x,
            y,
            eps=s.eps,
            steps=s.steps,
            step_size=step_size,
            random_start=s.random_start,
            clip_start=s.clip_start,
        )
        lam2, perm2 = mixup_draw(ctx, y, s.alpha)
        logits_adv = ctx.forward_again(lam2 * x_adv + (1.0 - lam2) * x_adv[perm2])  # (B, K)
        adv = mixup_loss(ctx, logits_adv, y, perm2, lam2)
        with torch.no_grad():
            pred = logits_adv.argmax(1)
            acc = lam2 * (pred == y).double().mean() + (1.0 - lam2) * (pred == y[perm2]).double().mean()
        logs = {"mix_clean_loss": clean.item(), "mix_adv_loss": adv.item(), "mix_adv_accuracy": float(acc)}
        return StepOutput((clean + adv) / 2, logits_adv, logs)


TRAINING_METHODS.register("iat", IAT())
