"""The AutoAttack cascade: stages on the points still robust, every point judged by the evaluator, flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, AttackMethod, Batch, Cost, RunContext, attack
from robustlab.attacks import _autoattack as aa
from robustlab.attacks._checks import check_model
from robustlab.attacks._methods import _apply_params
from robustlab.errors import ConfigError


class _Linear(nn.Module):
    """Two-class linear model with logits (w·x, -w·x): the margin of a point is closed-form."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, d, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        z = x.reshape(x.shape[0], -1) @ self.w
        return torch.stack([z, -z], 1)


@dataclass(frozen=True)
class _NoSettings:
    """A test stage's (empty) settings."""


class _Cheat(AttackMethod):
    """A stage that proposes points far outside the budget, flipping every label: the evaluator must project them."""

    name, norms, fixed_budget, defaults = "cheat", ("linf",), True, _NoSettings()

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> Any:
        return _apply_params(self.defaults, params, self.name)

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        ctx.log.setdefault("cheat_rows", []).extend(batch.index.tolist())
        return 1 - batch.x  # the far side of the box: adversarial, but never within a small eps

    def cost(self) -> Cost:
        return Cost(0, 0)


@pytest.fixture
def cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cascade of FGSM then the out-of-budget stage then PGD, for the semantics tests."""
    if "cheat" not in ATTACKS.names():
        ATTACKS.register("cheat", _Cheat())
    plan = [("fgsm", "fgsm", {}), ("cheat", "cheat", {}), ("pgd", "pgd", {"restarts": 2})]
    monkeypatch.setitem(aa.VERSIONS, "standard", {"linf": plan})


def _data(n: int = 40, d: int = 16) -> tuple[nn.Module, Tensor, Tensor]:
    model = _Linear(d)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 1, 4, d // 4), generator=g, dtype=torch.float64)
    y = model(x).argmax(1)
    y[:3] = 1 - y[:3]  # three points misclassified from the start
    return model, x, y


def _margin(model: _Linear, x: Tensor) -> Tensor:
    return (x.reshape(len(x), -1) @ model.w).abs()


def _reach(model: _Linear, x: Tensor, eps: float) -> Tensor:
    """The largest change of |w·x| towards the other class inside the L∞ ball ∩ [0, 1] (closed form): each
    coordinate moves by eps or to the box edge, in the direction that shrinks the margin."""
    flat = x.reshape(len(x), -1)
    z = flat @ model.w
    down = (model.w[None, :] * z[:, None]) > 0  # lowering x_i lowers |z|
    room = torch.where(down, flat, 1 - flat).clamp(max=eps)
    return (room * model.w.abs()[None, :]).sum(1)


@pytest.mark.usefixtures("cascade")
def test_each_stage_runs_on_the_points_still_robust_and_the_evaluator_judges_every_point() -> None:
    model, x, y = _data()
    eps = 0.02
    res = attack(model, x, y, "autoattack", norm="linf", eps=eps, seed=0, steps=5)
    s = res.summary()
    stages = s["cascade"]
    assert [c["attack"] for c in stages] == ["fgsm", "cheat", "pgd"]
    correct = int(res.correct.sum())
    assert stages[0]["attacked"] == correct  # the misclassified three are never attacked
    # The cheating stage's candidates are projected into the eps-ball before judging: it cannot break a point
    # that the budget protects, and the points it is credited with are adversarial within eps.
    assert stages[1]["attacked"] == correct - stages[0]["broken"]
    assert stages[2]["attacked"] == stages[1]["attacked"] - stages[1]["broken"]
    reachable = _reach(model, x, eps) >= _margin(model, x)
    assert not bool((res.won & ~reachable).any())
    assert float(res.linf[res.won].max()) <= eps + 1e-12
    # The cascade's own count equals the evaluator's final verdict, and each point names its breaker.
    assert stages[-1]["robust_accuracy_after"] == pytest.approx(s["robust_accuracy"])
    broken_by = res.columns["broken_by"]
    assert {b for b, won in zip(broken_by, res.won.tolist(), strict=True) if won} <= {"fgsm", "cheat", "pgd"}
    assert all(b == "" for b, won in zip(broken_by, res.won.tolist(), strict=True) if not won)
    assert res.to_columns()["broken_by"] == broken_by


@pytest.mark.usefixtures("cascade")
def test_robust_accuracy_equals_the_closed_form_on_a_linear_model() -> None:
    model, x, y = _data(n=60)
    for eps in (0.01, 0.03, 0.08):
        res = attack(model, x, y, "autoattack", norm="linf", eps=eps, seed=1, steps=10)
        analytic = ((_reach(model, x, eps) < _margin(model, x)) & (model(x).argmax(1) == y)).double().mean()
        assert res.summary()["robust_accuracy"] == pytest.approx(float(analytic))


def test_unknown_version_and_uncovered_norm_are_one_line_errors() -> None:
    model, x, y = _data(n=4)
    with pytest.raises(ConfigError, match="Did you mean 'standard'"):
        attack(model, x, y, "autoattack", eps=0.1, version="standrd")
    ten = _mlp(10)  # enough classes for every stage's loss: the norm is what is wrong
    xs, ys = torch.rand(4, 1, 4, 4), torch.arange(4)
    with pytest.raises(ConfigError, match="covers norms linf, l2, not 'l1'"):
        attack(ten, xs, ys, "autoattack", norm="l1", eps=1.0, version="plus")
    with pytest.raises(ConfigError, match="eval_draws"):
        attack(model, x, y, "autoattack", eps=0.1, version="rand", eval_draws=5)
    with pytest.raises(ConfigError, match="untargeted"):
        attack(model, x, y, "autoattack", eps=0.1, target="random")


class _Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


class _Rounding(nn.Module):
    """Input quantisation in front of a model: zero input gradients everywhere (planted gradient masking)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(torch.round(x * 4) / 4)


def _mlp(k: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, k))


def test_flags_name_randomness_probabilities_few_classes_and_zero_gradients() -> None:
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    codes = [f["code"] for f in check_model(_mlp(10), x, y)]
    assert codes == []
    noisy = check_model(_Noisy(_mlp(10)), x, y)
    assert [f["code"] for f in noisy] == ["stochastic-model"] and "version='rand'" in noisy[0]["message"]
    assert check_model(_Noisy(_mlp(10)), x, y, version="rand") == []
    soft = [f["code"] for f in check_model(nn.Sequential(_mlp(10), nn.Softmax(1)), x, y)]
    assert soft == ["softmax-output"]
    few = check_model(_mlp(4), x, y)
    assert [f["code"] for f in few] == ["few-classes"] and "3 target classes" in few[0]["message"]
    masked = check_model(_Rounding(_mlp(10)), x, y)
    assert [f["code"] for f in masked] == ["zero-gradients"] and "100.0%" in masked[0]["message"]


def test_expected_accuracy_of_a_randomised_model_averages_draws_per_point() -> None:
    torch.manual_seed(0)

    class Coin(nn.Module):
        def forward(self, x: Tensor) -> Tensor:  # class 0 with probability x[0] (per point)
            p = x.reshape(x.shape[0], -1)[:, 0]
            heads = (torch.rand_like(p) < p).double()
            return torch.stack([heads, 1 - heads], 1)

    x = torch.zeros(200, 1, 2, 2, dtype=torch.float64)
    x[:100, 0, 0, 0] = 0.9  # 100 points right with probability 0.9, 100 with 0.1
    x[100:, 0, 0, 0] = 0.1
    y = torch.zeros(200, dtype=torch.int64)
    out = aa.expected_accuracy(Coin(), x, y, draws=200)
    assert out["low"] < 0.5 < out["high"] and abs(out["value"] - 0.5) < 0.03 and out["draws"] == 200


class _Never(AttackMethod):
    name, norms, fixed_budget, defaults = "never", ("linf",), True, _NoSettings()

    def resolve(self, steps: int | None, step_size: float | None, params: dict[str, Any]) -> Any:
        return _apply_params(self.defaults, params, self.name)

    def propose(self, ctx: RunContext, batch: Batch) -> Tensor:
        return batch.x

    def cost(self) -> Cost:
        return Cost(0, 0)


def test_black_box_beating_white_box_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    if "never" not in ATTACKS.names():
        ATTACKS.register("never", _Never())
    # A white-box stage that finds nothing, then a stage labelled as the black-box one that breaks points.
    monkeypatch.setitem(aa.VERSIONS, "standard", {"linf": [("apgd-ce", "never", {}), ("square", "pgd", {})]})
    model, x, y = _data()
    res = attack(model, x, y, "autoattack", eps=0.05, seed=0)
    s = res.summary()
    assert s["cascade"][1]["broken"] > 0
    assert "black-box-beats-white-box" in s["flags"]
    detail = next(f for f in s["flag_details"] if f["code"] == "black-box-beats-white-box")
    assert "points" in detail["message"]


def test_eot_averages_draws_and_is_the_plain_attack_on_a_deterministic_model() -> None:
    model = _mlp(10).double()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    y = model(x).argmax(1)
    one = attack(model, x, y, "apgd", eps=0.05, steps=10, seed=0, keep_adversarials=True)
    two = attack(model, x, y, "apgd", eps=0.05, steps=10, seed=0, keep_adversarials=True, eot_iter=2)
    assert one.adversarials is not None and two.adversarials is not None
    assert torch.equal(one.adversarials, two.adversarials)  # (g + g) / 2 == g exactly
    assert int(two.gradient_passes.sum()) == 2 * int(one.gradient_passes.sum())


def test_the_rand_version_runs_eot_and_reports_the_expected_accuracy_next_to_the_single_draw_one() -> None:
    torch.manual_seed(0)
    model = _Noisy(_mlp(10))
    x = torch.rand(8, 1, 4, 4)
    y = _mlp(10)(x).argmax(1)
    res = attack(model, x, y, "autoattack", eps=0.02, version="rand", steps=3, seed=0)
    s = res.summary()
    assert [c["attack"] for c in s["cascade"]] == ["apgd-ce", "apgd-dlr"]
    assert "stochastic-model" not in s["flags"]
    exp = s["expected_robust_accuracy"]
    assert exp["draws"] == 20 and 0 <= exp["low"] <= exp["value"] <= exp["high"] <= 1
    assert "single-draw" in s["robust_accuracy_note"]
    # APGD's 3 iterations + its start, 20 draws each, for every attacked point of the first stage.
    first = s["cascade"][0]["attacked"]
    assert int(res.gradient_passes.sum()) >= first * 4 * 20
