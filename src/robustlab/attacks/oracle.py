"""Closed-form answers on linear classifiers, for testing attacks (micrograd-style oracle tests).

For ``z = W x + b`` and an input far enough from the [0, 1] box, the smallest Lp perturbation that makes
class ``k`` beat the label ``y`` is ``(z_y - z_k) / ||w_y - w_k||_q`` with ``q`` the dual exponent; the minimal
untargeted distortion is the minimum over ``k != y``. Any attack that reports a success below it has a norm
or success bug; any that fails above it (for exact attacks) under-attacks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.threat import Norm, get_norm


class LinearClassifier(nn.Module):
    """``logits = W @ x.flatten() + b``.

    Args:
        weight: ``(K, D)`` with ``D`` the number of input values.
        bias: ``(K,)``.

    Shape:
        - input: ``(N, C, H, W)`` with ``C * H * W == D``
        - output: ``(N, K)``
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())
        self.num_classes = weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.weight.T + self.bias


def pairwise_distances(model: LinearClassifier, x: Tensor, y: Tensor, norm: str | Norm) -> Tensor:
    """Minimal distortion that makes each class tie with the label, ignoring the box.

    Entry ``[i, k]`` is ``(z_y - z_k) / ||w_y - w_k||_dual`` (``inf`` for ``k == y``); it is negative when the
    model already prefers ``k``.

    Shape:
        - x: ``(N, C, H, W)``; y: ``(N,)``
        - output: ``(N, K)``
    """
    nrm = get_norm(norm)
    with torch.no_grad():
        z = model(x)  # (N, K)
        w = model.weight  # (K, D)
        diff = w[y][:, None, :] - w[None, :, :]  # (N, K, D)
        dual = nrm.dual(diff.reshape(-1, w.shape[1])).reshape(diff.shape[:2])  # (N, K)
        gap = z.gather(1, y[:, None]) - z  # (N, K)
        out = gap / dual
        result: Tensor = out.masked_fill(torch.nn.functional.one_hot(y, w.shape[0]).bool(), float("inf"))
        return result


def minimal_distortion(model: LinearClassifier, x: Tensor, y: Tensor, norm: str | Norm) -> Tensor:
    """The exact minimal untargeted Lp distortion (valid when the box does not bind).

    Shape:
        - x: ``(N, C, H, W)``; y: ``(N,)``
        - output: ``(N,)``
    """
    return pairwise_distances(model, x, y, norm).amin(1)


def targeted_lower_bound(model: LinearClassifier, x: Tensor, targets: Tensor, norm: str | Norm) -> Tensor:
    """A lower bound on the targeted minimal distortion: the target must beat every other class, so the
    distortion is at least the largest single-constraint distance (exact for two classes).

    Shape:
        - x: ``(N, C, H, W)``; targets: ``(N,)``
        - output: ``(N,)``
    """
    d = -pairwise_distances(model, x, targets, norm)  # [i, k]: distance for t to beat k; -inf at t
    return d.clamp_min(0).masked_fill(torch.isinf(d), 0).amax(1)


def targeted_minimal_l2(model: LinearClassifier, x: Tensor, targets: Tensor) -> Tensor:
    """The exact targeted minimal L2 distortion (box ignored), by enumerating active constraint sets.

    The target must beat every other class: ``(w_t - w_k) . delta >= z_k - z_t`` for all ``k != t``, an
    intersection of half-spaces. Its least-norm point is the least-norm solution of some subset of the
    constraints taken as equalities; the answer is the smallest such solution that is feasible. Exponential
    in the number of classes: meant for a handful.

    Shape:
        - x: ``(N, C, H, W)``; targets: ``(N,)``
        - output: ``(N,)``
    """
    from itertools import combinations

    with torch.no_grad():
        z = model(x)  # (N, K)
        w = model.weight  # (K, D)
        k_all = w.shape[0]
        out = torch.full((x.shape[0],), float("inf"), dtype=x.dtype)
        for i in range(x.shape[0]):
            t = int(targets[i])
            others = [k for k in range(k_all) if k != t]
            a = torch.stack([w[t] - w[k] for k in others])  # (K-1, D)
            b = torch.stack([z[i, k] - z[i, t] for k in others])  # (K-1,)
            if bool((b <= 0).all()):
                out[i] = 0.0
                continue
            for size in range(1, len(others) + 1):
                for sub in combinations(range(len(others)), size):
                    a_s, b_s = a[list(sub)], b[list(sub)]
                    delta = a_s.T @ torch.linalg.solve(a_s @ a_s.T, b_s)  # least-norm solution
                    if bool((a @ delta >= b - 1e-9).all()):
                        out[i] = torch.minimum(out[i], torch.linalg.vector_norm(delta))
        return out
