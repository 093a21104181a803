"""APGD and APGD-T on float64 linear models: the exact robust accuracy mean[d* > eps] for L∞, L2 and L1.

The fixtures are those of test_linear_known_answers.py: inputs in [0.35, 0.65], budgets below 0.35 (the box never
binds at eps), samples within 10 % of the budget left out so that every answer is unambiguous.
"""

from __future__ import annotations

import pytest
import torch
from test_linear_known_answers import linear_problem, separated_budget

import robustlab.attacks._apgd  # noqa: F401 - registers apgd and apgd-t
from robustlab.attacks import attack
from robustlab.attacks.oracle import minimal_distortion


def check_exact(res: object, dstar: torch.Tensor, eps: float, norm: str) -> None:
    expected = dstar < eps
    assert torch.equal(res.success, expected), (res.success, expected)  # type: ignore[attr-defined]
    dist = getattr(res, norm)
    assert bool((dist[expected] >= dstar[expected] * (1 - 1e-9)).all())  # never below the analytic minimum
    assert bool((dist <= eps * (1 + 1e-9)).all())


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_apgd_ce_gives_the_exact_robust_accuracy_of_a_binary_linear_model(norm: str) -> None:
    model, x, y = linear_problem(2, 80, seed=1)
    eps, keep = separated_budget(minimal_distortion(model, x, y, norm))
    x, y = x[keep], y[keep]
    dstar = minimal_distortion(model, x, y, norm)
    assert eps < 0.35 and 0.2 < float((dstar > eps).double().mean()) < 0.8  # the setup itself

    res = attack(model, x, y, "apgd", norm=norm, eps=eps, steps=50, seed=3)

    check_exact(res, dstar, eps, norm)
    assert res.summary()["robust_accuracy"] == pytest.approx(float((dstar > eps).double().mean()), abs=0)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("name", ["apgd", "apgd-t"])
def test_apgd_dlr_and_apgd_t_give_the_exact_robust_accuracy_of_a_five_class_linear_model(name: str, norm: str) -> None:
    model, x, y = linear_problem(5, 60, seed=4)
    eps, keep = separated_budget(minimal_distortion(model, x, y, norm))
    x, y = x[keep], y[keep]
    dstar = minimal_distortion(model, x, y, norm)
    assert eps < 0.35 and 0.2 < float((dstar > eps).double().mean()) < 0.8

    params = {"loss": "dlr"} if name == "apgd" else {}
    res = attack(model, x, y, name, norm=norm, eps=eps, steps=50, seed=3, **params)

    check_exact(res, dstar, eps, norm)
