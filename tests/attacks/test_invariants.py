"""Invariants every registered attack must satisfy, parametrised over the attack registry."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS, attack, list_attacks
from robustlab.attacks.oracle import LinearClassifier
from robustlab.errors import ConfigError
from robustlab.threat import get_norm

F64 = torch.float64
#: Small budgets for the minimal-distortion attacks: invariants do not need their precision.
FAST: dict[str, dict[str, int]] = {
    "cw": {"steps": 30, "search_steps": 4},
    "ead": {"steps": 30, "search_steps": 4},
    "apgd": {"steps": 20},
    "apgd-t": {"steps": 10, "n_target_classes": 2},
    "fab-t": {"steps": 20, "targets": 2},
    "square": {"steps": 200},
    "autoattack": {"steps": 10, "queries": 100},
}
#: Enough for them to fool every sample of these small problems.
FULL: dict[str, dict[str, int]] = {"cw": {"steps": 100, "search_steps": 5}, "ead": {"steps": 100, "search_steps": 5}}
ALL = list_attacks()


def needs(name: str, model: nn.Module) -> dict[str, Any]:
    """What an attack needs besides the model: the guided attack a surrogate (here the model itself: white-box)."""
    return {"surrogate": model} if name == "gpga" else {}


def fast(name: str, model: nn.Module) -> dict[str, Any]:
    return {**FAST.get(name, {}), **needs(name, model)}


def norm_of(name: str) -> str:
    return ATTACKS.get(name).default_norm


def classes(name: str, wanted: int) -> int:
    """``wanted``, or the fewest classes the attack accepts if more (targeted DLR: 4)."""
    method = ATTACKS.get(name)
    for k in range(wanted, 11):
        try:
            method.check_classes(k, False)
            return k
        except ConfigError:
            continue
    raise AssertionError(f"{name} accepts no number of classes up to 10")


def targetable(name: str) -> bool:
    """Whether the attack accepts a target (APGD, APGD-T, FAB-T and AutoAttack are untargeted only)."""
    try:
        ATTACKS.get(name).check_classes(10, True)
        return True
    except ConfigError:
        return False


def budget(name: str) -> float:
    return {"linf": 0.05, "l2": 0.3, "l1": 1.0}[norm_of(name)]


def problem(num_classes: int = 3, n: int = 12, seed: int = 0, dtype: torch.dtype = F64, scale: float = 1.0):
    """A linear model on 2x3x3 inputs spanning the whole box, some pixels exactly 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(num_classes, 18, generator=g, dtype=F64)
    x = torch.rand((n, 2, 3, 3), generator=g, dtype=F64)
    x[0, 0, 0, 0], x[1, 1, 2, 2] = 0.0, 1.0
    b = -(w @ x.reshape(n, -1).mean(0))
    model = LinearClassifier(w, b).to(dtype)
    x = x.to(dtype)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


class TrainModeForbidden(nn.Module):
    """Wraps a model and fails if it is ever called in training mode (the attack must use eval mode)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.inner.training:
            raise RuntimeError("called in training mode")
        return self.dropout(self.inner(x))


@pytest.mark.parametrize("name", ALL)
def test_examples_lie_inside_the_eps_ball_and_the_box(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3))
    eps = budget(name)

    res = attack(model, x, y, name, eps=eps, keep_adversarials=True, **fast(name, model))

    adv = res.adversarials
    assert adv is not None
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    dist = get_norm(norm_of(name)).distance(adv - x)
    assert bool((dist <= eps * (1 + 1e-9)).all())
    assert torch.allclose(getattr(res, norm_of(name)), dist)
    assert bool(res.success.any())  # the budget is large enough for the check above to mean something


@pytest.mark.parametrize("name", ALL)
def test_eps_zero_returns_the_input(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3))

    res = attack(model, x, y, name, eps=0.0, keep_adversarials=True, **fast(name, model))

    assert res.adversarials is not None
    assert torch.equal(res.adversarials, x)
    assert not bool(res.success.any())
    assert res.summary()["robust_accuracy"] == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", ALL)
def test_dtype_and_device_are_kept(name: str, dtype: torch.dtype) -> None:
    model, x, y = problem(num_classes=classes(name, 3), dtype=dtype)

    res = attack(model, x, y, name, eps=budget(name), keep_adversarials=True, **fast(name, model))

    assert res.adversarials is not None
    assert res.adversarials.dtype == dtype and res.adversarials.device == x.device


@pytest.mark.parametrize("name", ALL)
def test_model_mode_is_restored_and_eval_mode_used(name: str) -> None:
    inner, x, y = problem(num_classes=classes(name, 3))
    model = TrainModeForbidden(inner)
    model.train()
    inner.eval()  # mixed modes: each submodule must get its own mode back

    attack(model, x, y, name, eps=budget(name), **fast(name, model))

    assert model.training and model.dropout.training and not inner.training


@pytest.mark.parametrize("name", ALL)
def test_the_model_and_inputs_are_not_modified(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x0, y0 = x.clone(), y.clone()

    attack(model, x, y, name, eps=budget(name), **fast(name, model))

    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_result(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3))

    goal = "random" if targetable(name) else "untargeted"
    a = attack(model, x, y, name, eps=budget(name), target=goal, seed=7, keep_adversarials=True, **fast(name, model))
    b = attack(model, x, y, name, eps=budget(name), target=goal, seed=7, keep_adversarials=True, **fast(name, model))

    assert a.adversarials is not None and b.adversarials is not None
    assert torch.equal(a.adversarials, b.adversarials)
    ra, rb = a.to_records(), b.to_records()
    assert ra == rb


def test_pgd_random_start_depends_on_the_seed() -> None:
    model, x, y = problem()

    a = attack(model, x, y, "pgd", eps=0.05, seed=1, keep_adversarials=True, early_stop=False)
    b = attack(model, x, y, "pgd", eps=0.05, seed=2, keep_adversarials=True, early_stop=False)

    assert a.adversarials is not None and b.adversarials is not None
    assert not torch.equal(a.adversarials, b.adversarials)


@pytest.mark.parametrize("target", ["untargeted", "random", "least-likely", "top2"])
@pytest.mark.parametrize("name", ALL)
def test_reported_success_equals_recomputed_success(name: str, target: str) -> None:
    if target != "untargeted" and not targetable(name):
        pytest.skip(f"{name} is untargeted only (a target is a one-line error, tested with the attack)")
    model, x, y = problem(num_classes=4, n=10)

    res = attack(model, x, y, name, eps=2 * budget(name), target=target, keep_adversarials=True, **fast(name, model))

    assert res.adversarials is not None
    with torch.no_grad():
        pred = model(res.adversarials).argmax(1)
    assert torch.equal(pred, res.adv_pred)
    expected = pred != y if target == "untargeted" else pred == res.target
    assert torch.equal(res.success, expected)
    if target != "untargeted":
        assert bool((res.target != y).all())
        assert torch.equal(res.adv_pred[res.success], res.target[res.success])  # targeted: pred = target


@pytest.mark.parametrize("name", ALL)
def test_success_is_non_decreasing_in_eps(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 2), n=16)
    scale = budget(name)

    wins = [attack(model, x, y, name, eps=f * scale, **fast(name, model)).success for f in (0.25, 0.5, 1.0, 2.0, 4.0)]

    for small, large in itertools.pairwise(wins):
        assert bool((large | ~small).all())
    assert int(wins[-1].sum()) > int(wins[0].sum())


@pytest.mark.parametrize("name", ALL)
def test_unbounded_eps_reaches_every_sample(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3), n=12, scale=20.0)

    res = attack(model, x, y, name, eps=math.inf, **FULL.get(name, {}), **needs(name, model))

    assert res.summary()["success_rate"] == 1.0
    assert res.summary()["robust_accuracy"] == 0.0


@pytest.mark.parametrize("name", ALL)
def test_the_last_class_as_label_works(name: str) -> None:
    model, x, y = problem(num_classes=classes(name, 3), n=12)
    keep = y == 2
    assert int(keep.sum()) >= 2

    res = attack(model, x[keep], y[keep], name, eps=4 * budget(name), **FULL.get(name, {}), **needs(name, model))

    assert bool(res.success.all())
    assert bool((res.adv_pred != 2).all())


@pytest.mark.parametrize("name", ALL)
def test_nan_logits_are_a_numerical_error_never_robust(name: str) -> None:
    inner, x, y = problem(num_classes=classes(name, 3))

    class NaNForSome(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            out = inner(z)
            bad = z.reshape(z.shape[0], -1)[:, 0] == 0.0  # sample 0 has a 0 in its first pixel
            return torch.where(bad[:, None], torch.full_like(out, math.nan), out)

    res = attack(NaNForSome(), x, y, name, eps=budget(name), **fast(name, inner))

    assert res.status[0] == "numerical_error"
    assert not bool(res.success[0])
    assert not bool(res.robust[0])
    assert res.summary()["n_numerical_error"] == 1
    assert all(s != "numerical_error" for s in res.status[1:])


def test_a_misclassified_input_is_not_attacked_and_excluded_from_the_success_rate() -> None:
    model, x, y = problem()
    y = y.clone()
    y[0] = (y[0] + 1) % 3

    res = attack(model, x, y, "pgd", eps=0.0)

    assert res.status[0] == "misclassified"
    assert int(res.gradient_passes[0]) == 0
    assert res.summary()["success_rate"] == 0.0  # nobody else is fooled at eps = 0
    assert res.summary()["clean_accuracy"] == pytest.approx(11 / 12)
