"""FAB's three projections: the smallest Lp step from a point onto a hyperplane, staying inside the box [0, 1].

For each row, given a point ``t``, a normal ``w`` and an offset ``b``, each function returns the step ``d`` that
solves

    minimise ||d||_p   subject to   <w, t + d> = b,   0 <= t + d <= 1,

for p = ∞, 2, 1. When the box keeps the hyperplane out of reach, the step goes as far towards it as the box
allows (every coordinate that helps is moved to its bound), which is the limit of the problem above.

All three orient the problem the same way first: ``w`` is flipped so that the point lies on the side where
``<w, t> - b >= 0`` and the step must *decrease* ``<w, z>`` by ``gap = <w, t> - b``. Each coordinate ``i`` can
then contribute at most ``room_i`` (move to 0 where ``w_i > 0``, to 1 where ``w_i < 0``), and the solution is a
one-parameter family (a threshold λ for L∞, a Lagrange multiplier for L2, a greedy prefix for L1) found by a
sort and a bisection over the sorted breakpoints: ``O(D log D)`` per row, batched over rows.

The arithmetic (sums, cumulative sums and their order) is that of the reference implementation, so that FAB
reproduces the reference trajectory bit for bit on the CPU. Coordinates with ``|w_i| <= 1e-8`` never move.

References:
    Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack", ICML 2020,
    Section 3 and the supplement (the projections onto a hyperplane with box constraints).
    fra31/auto-attack, ``autoattack/fab_projections.py`` (the reference implementation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

#: Breakpoints beyond this are "never" (a coordinate whose normal is zero).
_FAR = 1e12
#: Coordinates with a smaller normal entry are left alone.
_FLAT = 1e-8


def _orient(t: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Flip each row's hyperplane so that the point lies on its non-negative side.

    Returns:
        ``(w, gap)``: the oriented normal (a new tensor) and ``gap = <w, t> - b >= 0``, the amount by which the
        step must decrease ``<w, z>``.

    Shape:
        - t, w: ``(N, D)``; b: ``(N,)``
        - output: ``(N, D)``, ``(N,)``
    """
    gap = (w * t).sum(1) - b
    sign = 2 * (gap >= 0) - 1  # (N,) +1 / -1
    return w * sign.unsqueeze(1), gap * sign


def _bisect(like: Tensor, hi: int, steps: int, test: Callable[[Tensor], Tensor]) -> Tensor:
    """The largest position ``k`` in ``[0, hi]`` for which ``test(k)`` holds, assuming it holds on a prefix.

    ``test`` maps an ``(n,)`` int64 tensor of positions to an ``(n,)`` bool tensor. ``like`` only gives the
    number of rows and the device. After ``steps`` halvings of ``[lo, hi]`` the answer is ``lo``.
    """
    lo = torch.zeros(like.shape[0], dtype=torch.int64, device=like.device)
    up = torch.full_like(lo, hi)
    for _ in range(steps):
        mid = (lo + up) // 2
        ok = test(mid)
        lo = torch.where(ok, mid, lo)
        up = torch.where(ok, up, mid)
    return lo


def project_linf(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Smallest L∞ step from ``t`` onto ``{z : <w, z> = b}`` inside ``[0, 1]^D``.

    With the problem oriented (see the module docstring), the optimal step moves every useful coordinate by
    ``min(λ, room_i)`` against the sign of ``w_i``; the progress ``sum_i |w_i| min(λ, room_i)`` is piecewise
    linear in λ with breakpoints at the ``room_i``, so λ is found by sorting the rooms and bisecting.

    Args:
        t: Points to project.
        w: Normals of the hyperplanes.
        b: Offsets of the hyperplanes.

    Returns:
        The step ``d`` (``t + d`` is the projection).

    Shape:
        - t, w: ``(N, D)``; b: ``(N,)``
        - output: ``(N, D)``
    """
    dim = w.shape[1]
    w, gap = _orient(t, w, b)
    need = -gap  # the change of <w, z> to make (<= 0)
    toward = (w < 0).to(t.dtype)  # 1 where the useful bound is 1, 0 where it is 0
    moving = (w != 0).to(t.dtype)
    step = (toward - t) * moving  # the full move of each coordinate to its useful bound
    room = toward - t * (2 * toward - 1)  # |full move|, also for coordinates that do not move
    order = torch.argsort(room, dim=1)  # ascending rooms
    full = (w * step).sum(1)  # progress of the full move (<= 0)

    desc = order.flip((1,))  # largest room first
    w_desc = w.gather(1, desc)
    slope = torch.cumsum(w_desc.abs(), dim=1)  # (N, D) |w| of the coordinates still below λ
    # base[k]: progress of the coordinates saturated when λ equals the k-th largest room
    base = torch.cumsum(-w_desc * step.gather(1, desc), dim=1) + full.unsqueeze(1)

    smallest = room.gather(1, order[:, 0:1]).squeeze(1)
    below_all = need - (base[:, -1] - slope[:, -1] * smallest) > 0  # λ below every room
    between = (need - full > 0) & ~below_all  # reachable, λ between two rooms
    # rows with need <= full cannot reach the hyperplane (or just touch it): the full move

    if bool(below_all.any()):
        lam = torch.clamp_min((need[below_all] - base[below_all, -1]) / (-slope[below_all, -1]), min=0)
        step[below_all] = (2 * toward[below_all] - 1) * lam.unsqueeze(-1)

    o, bs, sl, rm, nd = order[between], base[between], slope[between], room[between], need[between]

    def progress_short(k: Tensor) -> Tensor:
        at = o.gather(1, dim - 1 - k.unsqueeze(1))  # the coordinate with the k-th largest room
        value = (bs.gather(1, k.unsqueeze(1)) - sl.gather(1, k.unsqueeze(1)) * rm.gather(1, at)).squeeze(1)
        return nd - value > 0

    k = _bisect(nd, dim - 1, math.ceil(math.log2(dim)), progress_short)
    lam = torch.clamp_min(
        (nd - bs.gather(1, k.unsqueeze(1)).squeeze(1)) / (-sl.gather(1, k.unsqueeze(1)).squeeze(1)), 0
    )
    lam = lam.unsqueeze(-1)
    tw, st = toward[between], step[between]
    step[between] = torch.min(lam, st) * tw + torch.max(-lam, st) * (1 - tw)
    return step * moving


def project_l2(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Smallest L2 step from ``t`` onto ``{z : <w, z> = b}`` inside ``[0, 1]^D``.

    The optimal step is ``d_i = clip(-α w_i, -t_i, 1 - t_i)`` for the multiplier ``α >= 0`` that meets the
    hyperplane; coordinate ``i`` saturates at ``α = r_i``, so α is found by sorting the ``r_i`` and bisecting
    over the progress at each breakpoint, then solved in closed form on its interval.

    Args:
        t: Points to project.
        w: Normals of the hyperplanes.
        b: Offsets of the hyperplanes.

    Returns:
        The step ``d`` (``t + d`` is the projection).

    Shape:
        - t, w: ``(N, D)``; b: ``(N,)``
        - output: ``(N, D)``
    """
    dim = w.shape[1]
    w, gap = _orient(t, w, b)
    flat = w.abs() < _FLAT
    # multiplier at which each coordinate hits its useful bound (the positive one of the two ratios)
    r = torch.max(t / w, (t - 1) / w).clamp(min=-_FAR, max=_FAR)
    r.masked_fill_(flat, _FAR)
    r[r == -_FAR] *= -1
    r_sorted, idx = torch.sort(r, dim=1)
    r_next = F.pad(r_sorted[:, 1:], (0, 1))
    r_sorted.masked_fill_(r_sorted == _FAR, 0)
    r_next.masked_fill_(r_next == _FAR, 0)

    w2 = (w**2).gather(1, idx)
    w2_all = w2.sum(dim=1, keepdim=True)
    w2_free = w2_all - torch.cumsum(w2, dim=1)  # |w|^2 of the coordinates not yet saturated after position k
    step = -(r * w)  # the saturated move of every coordinate
    step.mul_((w.abs() > _FLAT).to(t.dtype))
    # progress[k]: change of <w, z> at the k-th breakpoint (progress[0] at the first one)
    first = -w2_all * r_sorted[:, 0:1]
    progress = torch.cat((first, torch.cumsum((-r_next + r_sorted) * w2_free, dim=1) + first), 1)

    before_first = progress[:, 0] + gap < 0  # α below every breakpoint: nothing saturates
    unreachable = (step * w).sum(dim=1) + gap > 0  # even the full move falls short
    between = ~(before_first | unreachable)

    pr, gp = progress[between], gap[between]
    k = _bisect(gp, dim - 1, math.ceil(math.log2(dim)), lambda j: pr.gather(1, j.unsqueeze(1)).squeeze(1) + gp > 0)

    if bool(before_first.any()):
        alpha = gap[before_first] / w2_all[before_first].squeeze(-1)
        step[before_first] = -alpha.unsqueeze(-1) * w[before_first]

    if bool(between.any()):
        free = w2_free[between, k]
        alpha = (progress[between, k] + gap[between]) / free + r_sorted[between, k]
        alpha[free == 0] = 0
        saturated = (alpha.unsqueeze(-1) > r[between]).to(t.dtype)
        step[between] = step[between] * saturated - alpha.unsqueeze(-1) * w[between] * (1 - saturated)

    return step * (w.abs() > _FLAT).to(t.dtype)


def project_l1(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Smallest L1 step from ``t`` onto ``{z : <w, z> = b}`` inside ``[0, 1]^D``.

    The L1 step is greedy: coordinates are used in order of decreasing ``|w_i|`` (the most progress per unit
    of L1), each moved to its useful bound, until the next one would overshoot; that one is moved only as far
    as needed. The prefix length is found by bisection over the cumulative progress.

    The bisection runs ``ceil(log2(D))`` halvings over ``D + 1`` positions; for a reachable hyperplane the
    answer is at most ``D - 1``, and the only path that does not narrow to one position ends there.

    Args:
        t: Points to project.
        w: Normals of the hyperplanes.
        b: Offsets of the hyperplanes.

    Returns:
        The step ``d`` (``t + d`` is the projection).

    Shape:
        - t, w: ``(N, D)``; b: ``(N,)``
        - output: ``(N, D)``
    """
    dim = w.shape[1]
    w, gap = _orient(t, w, b)
    order = torch.argsort((1 / w).abs().clamp_max(_FAR), dim=1)  # largest |w| first
    rank = torch.argsort(order)  # position of each coordinate in that order
    step = (-t + (w < 0).to(t.dtype)) * (w != 0).to(t.dtype)  # full move to the useful bound
    gain = torch.min(-w * t, w * (1 - t)).gather(1, order)  # (N, D) progress of each full move (<= 0)
    # left[k]: what remains of the gap after the k first coordinates moved fully (left[0] = gap)
    left = torch.cumsum(torch.cat((gap.unsqueeze(-1), gain), 1), dim=1)

    reachable = left[:, -1] < 0  # otherwise: every coordinate moves fully and still falls short (or just meets)
    lf = left[reachable]
    k = _bisect(lf, dim + 1, math.ceil(math.log2(dim)), lambda j: lf.gather(1, j.unsqueeze(1)).squeeze(1) > 0)

    if bool(reachable.any()):
        last = order[reachable].gather(1, k.unsqueeze(1)).squeeze(1)  # the coordinate that moves partly
        rows = reachable.nonzero().squeeze(1)
        alpha = -left[reachable, k] / w[rows, last]
        step[reachable] = step[reachable] * (rank[reachable] < k.unsqueeze(-1)).to(t.dtype)
        step[rows, last] = alpha

    return step * (w.abs() > _FLAT).to(t.dtype)
