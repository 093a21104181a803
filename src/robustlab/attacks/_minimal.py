"""Per-image minimal-distortion search for fixed-budget attacks (the seed study's protocol).

Each image starts at ``eps_max``. After a success the upper bound becomes the distortion actually used (at
most the eps tried) and eps moves halfway down to the largest failed eps (a halving while no failure is
known); after a failure eps moves to the midpoint between it and the upper bound. An image that fails at
``eps_max``, or whose bracket ``[lower, upper]`` is narrower than ``max(tolerance, rtol * upper)``, is
resolved and no longer attacked; at most ``attempts`` attacks are spent per image.

With ``warm_start``, an image that already has a success starts its next attack from that example, projected
into the smaller eps-ball, instead of from the clean input (or a random start). The protocol is unchanged; the
attack at each eps is stronger and its successes cheaper, so the search usually ends lower for fewer passes,
but it is no longer the plain fixed-budget attack at each eps that the seed study ran (off by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks._evaluator import PassCounter, constrain, is_success
from robustlab.threat import Norm


@dataclass
class MinimalOutcome:
    """Result of the search for one batch.

    Shape:
        - x_adv: ``(N, C, H, W)``, the least-distorted success (the clean input if none)
        - eps_found: ``(N,)``, the upper bound of the bracket (``inf`` if no success up to ``eps_max``)
        - attempts_used: ``(N,)`` int64
    """

    x_adv: Tensor
    eps_found: Tensor
    attempts_used: Tensor


def minimal_search(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    *,
    run: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    norm: Norm,
    eps_max: float,
    attempts: int,
    tolerance: float,
    rtol: float,
    counter: PassCounter,
    index: Tensor,
    warm_start: bool = False,
) -> MinimalOutcome:
    """Search each image's smallest successful eps, re-attacking only unresolved images.

    Args:
        model: Classifier (already in eval mode).
        x: Clean inputs.
        labels: True labels.
        targets: Targets or ``None``.
        run: ``run(rows, eps, init)`` attacks ``x[rows]`` at per-sample budgets ``eps``, starting from ``init``
            (``None``: the attack's own start), and returns candidates.
        norm: Threat-model norm.
        eps_max: Largest budget tried (the first attempt).
        attempts: Most attacks per image.
        tolerance: An image is resolved once ``upper - lower <= tolerance`` (absolute) ...
        rtol: ... or once ``upper - lower <= rtol * upper`` (relative to its own distortion).
        counter: Pass counter (one forward pass per judged attempt).
        index: Global positions of the rows of ``x``.
        warm_start: Start an image's attack from its best success so far (see the module docstring).

    Shape:
        - x: ``(N, C, H, W)``; labels, targets, index: ``(N,)``
    """
    n = x.shape[0]
    lower = torch.zeros(n, dtype=x.dtype, device=x.device)
    upper = torch.full_like(lower, float("inf"))
    eps = torch.full_like(lower, float(eps_max))
    best = x.detach().clone()
    used = torch.zeros(n, dtype=torch.int64, device=x.device)
    open_ = torch.ones(n, dtype=torch.bool, device=x.device)
    for _ in range(attempts):
        rows = open_.nonzero().flatten()
        if rows.numel() == 0:
            break
        cand = constrain(x[rows], _attack(run, rows, eps, best, upper, warm_start), norm, eps[rows])
        with torch.no_grad():
            won = is_success(model(cand), labels[rows], None if targets is None else targets[rows])
        counter.add_forward(index[rows])
        used[rows] += 1
        dist = norm.distance(cand - x[rows])
        w, f = rows[won], rows[~won]
        shrink = dist[won] <= upper[w]
        upper[w[shrink]] = torch.minimum(dist[won][shrink], eps[w[shrink]])
        best[w[shrink]] = cand[won][shrink]
        lower[f] = torch.maximum(lower[f], eps[f])
        eps = torch.where(torch.isfinite(upper), (lower + upper) / 2, eps)
        open_ = torch.isfinite(upper) & (upper - lower > torch.clamp(rtol * upper, min=tolerance))
    return MinimalOutcome(x_adv=best, eps_found=upper, attempts_used=used)


def _attack(
    run: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    rows: Tensor,
    eps: Tensor,
    best: Tensor,
    upper: Tensor,
    warm_start: bool,
) -> Tensor:
    """One attempt on ``rows``: cold, or (``warm_start``) the rows with a success from their best example and the
    others as usual, in two calls so that the cold rows keep sharing their cached first gradient."""
    if not warm_start:
        return run(rows, eps[rows], None)
    warm = torch.isfinite(upper[rows])
    out = torch.empty_like(best[rows])
    for mask, init in ((warm, best), (~warm, None)):
        if bool(mask.any()):
            sub = rows[mask]
            out[mask] = run(sub, eps[sub], None if init is None else init[sub])
    return out
