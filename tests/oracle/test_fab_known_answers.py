"""Known answers for FAB-T on float64 linear models: it lands on the analytic minimal distortion, from above.

On a linear model FAB's linearisation is exact, so its first step reaches the boundary overshot by ``eta`` and
the backward steps close in on it; after AutoAttack's 100 iterations the closest adversarial example found lies
within 1 % above ``|margin| / ||w_y - w_k||_dual`` and, being a real adversarial example, never below it. The
[0, 1] box never binds here: inputs lie in [0.35, 0.65] and only points whose minimal perturbation fits in the
remaining room are used.
"""

from __future__ import annotations

import pytest
import torch

import robustlab.attacks._fab  # noqa: F401 - registers fab-t
from robustlab.attacks import attack
from robustlab.attacks.oracle import LinearClassifier, minimal_distortion, pairwise_distances

F64 = torch.float64
SHAPE = (3, 4, 4)  # D = 48


def linear_problem(num_classes: int, n: int, seed: int) -> tuple[LinearClassifier, torch.Tensor, torch.Tensor]:
    """A random linear model, inputs away from the box edges, labels = the model's predictions."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, 48, generator=g, dtype=F64)
    x = 0.35 + 0.3 * torch.rand((n, *SHAPE), generator=g, dtype=F64)
    b = -(w @ x.reshape(n, -1).mean(0)) + 0.05 * torch.randn(num_classes, generator=g, dtype=F64)
    model = LinearClassifier(w, b)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def box_free(model: LinearClassifier, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """Rows whose minimal perturbation (every coordinate's share of it) stays below 0.3: the box cannot bind."""
    return minimal_distortion(model, x, y, norm) < 0.3


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_binary_fab_t_lands_within_one_percent_above_the_minimum(norm: str) -> None:
    model, x, y = linear_problem(2, 40, seed=11)
    keep = box_free(model, x, y, norm)
    x, y = x[keep], y[keep]
    assert x.shape[0] >= 10  # the setup
    dstar = minimal_distortion(model, x, y, norm)

    # a budget above every minimum, and every iteration run: FAB's own smallest adversarial is returned
    res = attack(model, x, y, "fab-t", norm=norm, eps=0.34, early_stop=False)

    assert bool(res.success.all())
    ratio = getattr(res, norm) / dstar
    assert bool((ratio >= 1 - 1e-9).all()), ratio.min()
    assert bool((ratio <= 1.01).all()), ratio.max()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_ten_classes_never_below_the_minimum_and_on_the_first_targets_boundary(norm: str) -> None:
    model, x, y = linear_problem(10, 40, seed=12)
    pair = pairwise_distances(model, x, y, norm)  # (N, K)
    keep = pair.amin(1) < 0.3
    with torch.no_grad():
        first_target = model(x).sort(dim=1)[1][:, -2]  # the 2nd largest clean logit
    keep &= pair.gather(1, first_target[:, None]).squeeze(1) < 0.3
    x, y, pair, first_target = x[keep], y[keep], pair[keep], first_target[keep]
    assert x.shape[0] >= 10

    res = attack(model, x, y, "fab-t", norm=norm, eps=0.34, early_stop=False)

    assert bool(res.success.all())
    dist = getattr(res, norm)
    assert bool((dist >= pair.amin(1) * (1 - 1e-9)).all())  # never below the untargeted minimum
    # the first target's run fools every point, at most 1 % beyond that target's boundary (it may cross into a
    # third class on the way, which is closer)
    assert bool((dist <= 1.01 * pair.gather(1, first_target[:, None]).squeeze(1)).all())


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_fixed_budget_gives_the_exact_robust_accuracy(norm: str) -> None:
    model, x, y = linear_problem(2, 60, seed=13)
    keep = box_free(model, x, y, norm)
    x, y = x[keep], y[keep]
    dstar = minimal_distortion(model, x, y, norm)
    eps = float(dstar.median())
    away = ((dstar / eps - 1).abs() > 0.02).nonzero().flatten()  # FAB's 1 % decides the others
    x, y, dstar = x[away], y[away], dstar[away]

    res = attack(model, x, y, "fab-t", norm=norm, eps=eps)  # default: early stop

    assert torch.equal(res.success, dstar < eps)
    assert bool((getattr(res, norm) <= eps * (1 + 1e-9)).all())
