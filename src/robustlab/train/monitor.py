"""Per-epoch robustness monitor and the catastrophic-overfitting detector.

After every epoch the loop measures clean, FGSM and PGD accuracy on a fixed held-out batch. Single-step
adversarial training can collapse within an epoch ("catastrophic overfitting", Wong et al. 2020): the model
learns to defeat the one-step attack it trains on while multi-step PGD accuracy falls to near zero. The
detector flags an epoch whose PGD accuracy dropped by more than ``drop`` (20 points) from the previous epoch
while the FGSM accuracy held up: it rose, or fell so much less that the FGSM-minus-PGD gap widened by more than
``drop`` too. The loop then warns, stops, or rolls back to the last good checkpoint.

The "or the gap widened" part is measured, not assumed: FGSM-RS on MNIST (seed 1 of Wong et al.'s recipe here)
collapsed in one epoch from PGD 67.6 % / FGSM 94.4 % to PGD 15.0 % / FGSM 84.4 % (FGSM dipped in the collapse
epoch, then climbed to 99 % while PGD reached 0.6 %); "FGSM rose" alone missed it, and no later epoch dropped
PGD by 20 points again. A bad epoch that lowers both accuracies alike (a learning-rate spike) keeps the gap and
is not flagged.

References:
    Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.models.adapter import eval_mode

#: What the loop does when the detector fires.
OVERFIT_ACTIONS = ("warn", "stop", "rollback")


@dataclass(frozen=True)
class MonitorReading:
    """Accuracies on the monitor batch after one epoch (``None``: not measured, e.g. no budget for standard)."""

    clean: float
    fgsm: float | None
    pgd: float | None


def measure(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | None,
    norm: str = "linf",
    steps: int = 10,
    seed: int = 0,
) -> MonitorReading:
    """Clean, FGSM (one step of size ``eps``, no random start) and PGD (``steps`` steps of ``2.5·eps/steps``,
    random start) accuracy of ``model`` in eval mode on ``x``; the random start is seeded, so every epoch is
    measured on the same starting points.

    Shape:
        x: (N, C, H, W) in [0, 1]; y: (N,)
    """
    from robustlab.train.methods import inner_maximise

    with eval_mode(model):
        with torch.no_grad():
            clean = _acc(model(x), y)
        if eps is None:
            return MonitorReading(clean, None, None)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        with torch.enable_grad():
            x_f = inner_maximise(
                model, x, y, eps=eps, steps=1, step_size=eps, random_start=False, generator=gen, norm=norm
            )
            x_p = inner_maximise(
                model,
                x,
                y,
                eps=eps,
                steps=steps,
                step_size=2.5 * eps / steps,
                random_start=True,
                generator=gen,
                norm=norm,
            )
        with torch.no_grad():
            return MonitorReading(clean, _acc(model(x_f), y), _acc(model(x_p), y))


def _acc(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def is_collapse(previous: MonitorReading | None, current: MonitorReading, drop: float = 0.20) -> bool:
    """Catastrophic overfitting: PGD accuracy fell by more than ``drop`` since ``previous`` while FGSM accuracy
    rose or the FGSM-minus-PGD gap widened by more than ``drop`` (FGSM accuracy held up while PGD's collapsed)."""
    p, c = previous, current
    if p is None or p.pgd is None or p.fgsm is None or c.pgd is None or c.fgsm is None:
        return False
    widened = (c.fgsm - c.pgd) - (p.fgsm - p.pgd)
    return p.pgd - c.pgd > drop and (c.fgsm > p.fgsm or widened > drop)


def first_collapse(readings: Sequence[MonitorReading], drop: float = 0.20) -> int | None:
    """Index of the first reading flagged by :func:`is_collapse` against the one before, or ``None``."""
    for i in range(1, len(readings)):
        if is_collapse(readings[i - 1], readings[i], drop):
            return i
    return None
