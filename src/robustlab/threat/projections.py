"""Exact projection onto the intersection of an L1 ball and the [0, 1] box.

Projecting onto the L1 ball and then clipping to [0, 1] (what :class:`~robustlab.threat.norms.L1` plus the
evaluator's clip do) is a valid point of the set, but not the nearest one: clipping frees budget that the ball
projection had already spent. APGD-L1 ("Mind the box") needs the nearest point, which this module computes.

The problem separates by coordinate. Write the projected perturbation as ``sign(y) * (|y| + d)`` with the change
``d`` in ``[l, u]``: ``l = -|y|`` (a coordinate shrinks at most to zero) and ``u = min(0, 1 - x - y, x + y)``
(it shrinks at least enough to enter the box). If the box alone meets the budget (``sum(-u) >= |y|_1 - eps``)
the answer is ``d = u``; otherwise the KKT conditions give ``d = -clip(alpha, -u, -l)`` with the one threshold
``alpha >= 0`` at which ``sum clip(alpha, -u, -l) = |y|_1 - eps``. That sum is piecewise linear in ``alpha``,
with breakpoints ``-u`` and ``-l``: after one sort of the 2d breakpoints, a cumulative sum gives its value at
every breakpoint and the segment holding the root gives ``alpha`` in closed form (O(d log d) per sample).

The arithmetic follows the reference's order (fra31/auto-attack ``L1_projection``), so that APGD-L1 agrees with
it bitwise; :func:`l1_box_correction` returns the *correction* added to ``x + y`` for the same reason.

References:
    Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers", ICML 2021
    (Lemma 3.1 and its algorithm).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["l1_box_correction", "project_l1_box"]


def l1_box_correction(x: Tensor, y: Tensor, eps: float | Tensor) -> Tensor:
    """The change ``c`` that moves ``x + y`` to its nearest point of {‖δ‖₁ ≤ eps} ∩ [0, 1]^d around ``x``.

    The projected point is ``x + y + c`` (in that order of additions), the projected perturbation ``y + c``.

    Args:
        x: Centres of the balls, inside [0, 1].
        y: Perturbations to project.
        eps: Radius, a number or one per sample.

    Returns:
        The correction ``c``, in the promoted dtype of ``x`` and ``y`` (float32 for float32 inputs, where the
        arithmetic is the reference's).

    Shape:
        - x, y: ``(N, *)``; eps: scalar or ``(N,)``
        - output: ``(N, *)``
    """
    n, dtype = x.shape[0], torch.promote_types(x.dtype, y.dtype)
    xf = x.detach().to(dtype).reshape(n, -1)  # (N, d)
    yf = y.detach().to(dtype).reshape(n, -1)
    d = xf.shape[1]
    sigma = yf.sign()
    upper = torch.min(torch.zeros_like(yf), torch.min(1 - xf - yf, xf + yf))  # (N, d) largest allowed change, <= 0
    lower = -yf.abs()  # (N, d) smallest allowed change
    change = upper.clone()  # the box alone: right wherever it already meets the budget

    breaks, order = torch.sort(-torch.cat((upper, lower), 1), dim=1)  # (N, 2d) ascending thresholds
    nxt = torch.cat(
        (breaks[:, 1:], torch.zeros(n, 1, dtype=dtype, device=xf.device)), 1
    )  # next breakpoint (0 after the last)
    slope = (2 * (order < d).to(dtype) - 1).cumsum(dim=1)  # (N, 2d) coordinates moving between this break and the next
    box_shrink = -upper.sum(dim=1)  # (N,) L1 mass the box alone removes
    excess = torch.as_tensor(eps, dtype=dtype, device=xf.device) - yf.abs().sum(dim=1)  # (N,) eps - |y|_1
    over = (box_shrink + excess < 0).nonzero().squeeze(1)  # rows the box alone leaves outside the ball
    if excess.dim() == 0:
        excess = excess.expand(n)
    removed = box_shrink.unsqueeze(-1) + torch.cumsum((nxt - breaks) * slope, dim=1)  # (N, 2d) mass removed at next
    if over.numel():
        # The last breakpoint whose removed mass still falls short (``removed`` never decreases along a row), at
        # most 2d - 2 as in the reference's bisection: the root lies on the segment after it. When none falls short
        # the root lies on the first segment, [breaks[0], breaks[1]], where the removed mass starts at the box's
        # own; the reference's bisection cannot return that case (it answers index 0 and divides by the wrong
        # slope), which happens only when a single coordinate holds the smallest breakpoint (tiny or dense problems).
        rows = over
        short = removed[rows] + excess[rows].unsqueeze(1) < 0  # (M, 2d)
        last = (short.sum(1) - 1).clamp(max=2 * d - 2)  # (M,) -1: the first segment
        first, at = last < 0, last.clamp(min=0)
        before = torch.where(first, box_shrink[rows], removed[rows, at])  # removed mass where the segment starts
        start = torch.where(first, breaks[rows, 0], nxt[rows, at])
        alpha = (-before - excess[rows]) / slope[rows, last + 1] + start  # (M,)
        change[rows] = -torch.min(torch.max(-upper[rows], alpha.unsqueeze(-1)), -lower[rows])
    return (sigma * change).reshape(x.shape)


def project_l1_box(x: Tensor, y: Tensor, eps: float | Tensor) -> Tensor:
    """The nearest perturbation to ``y`` in {δ : ‖δ‖₁ ≤ eps, x + δ ∈ [0, 1]^d} (Euclidean distance).

    Args:
        x: Centres of the balls, inside [0, 1].
        y: Perturbations to project.
        eps: Radius, a number or one per sample.

    Shape:
        - x, y: ``(N, *)``; eps: scalar or ``(N,)``
        - output: ``(N, *)``
    """
    return y + l1_box_correction(x, y, eps)
