"""The surrogate-guided attack (``gpga``) on linear models whose answers are known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, attack
from robustlab.errors import ConfigError

D, K, N = 64, 3, 400
EPS = 0.15
RIPPLE = 0.01  # the planted term changes each logit by at most this much


class Linear(nn.Module):
    """``W x + b``, plus (when ``u`` is given) a ripple ``a sin(ω u_k·x)`` per logit: values within ``a`` of the
    linear model, gradients dominated by ``a ω u_k cos(·)`` — shattered, pointing nowhere useful."""

    def __init__(self, w: Tensor, u: Tensor | None = None, a: float = 0.0, omega: float = 0.0) -> None:
        super().__init__()
        self.w, self.u, self.a, self.omega = w, u, a, omega

    def forward(self, x: Tensor) -> Tensor:
        f = x.flatten(1)
        z = f @ self.w.T
        if self.u is not None:
            z = z + self.a * torch.sin(self.omega * (f @ self.u.T))
        return z


@pytest.fixture(scope="module")
def problem() -> tuple[Linear, Linear, Tensor, Tensor, Tensor, Tensor]:
    """A linear surrogate, the same model with a planted ripple, points well inside the box (no clipping within
    EPS), their labels, the linear margins to each class and ‖w_y − w_k‖₁: a point's minimal L∞ distortion on the
    linear model is min_k margin_k / ‖w_y − w_k‖₁."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(K, D, generator=g, dtype=torch.float64)
    u = torch.randint(0, 2, (K, D), generator=g).to(torch.float64) * 2 - 1
    x = 0.3 + 0.4 * torch.rand(N, 1, 8, 8, generator=g, dtype=torch.float64)
    linear, rippled = Linear(w), Linear(w, u, a=RIPPLE, omega=1e4)
    z = linear(x)
    y = z.argmax(1)
    dual = (w[y][:, None, :] - w[None]).abs().sum(2)  # (N, K): ‖w_y − w_k‖₁
    dual[torch.arange(N), y] = 1.0
    margins = z.gather(1, y[:, None]) - z  # (N, K)
    margins[torch.arange(N), y] = float("inf")
    return linear, rippled, x, y, margins, dual


def _success(result: object) -> Tensor:
    return torch.tensor(result.to_columns()["success"])  # type: ignore[attr-defined]


def test_on_a_model_without_masking_it_breaks_exactly_the_points_the_closed_form_says(problem: tuple) -> None:
    linear, _, x, y, margins, dual = problem
    minimal = (margins / dual).min(1).values
    result = attack(linear, x, y, "gpga", eps=EPS, steps=100, surrogate=linear)
    success = _success(result)
    clear = (minimal - EPS).abs() > 0.01 * EPS  # points not on the boundary
    assert clear.sum() > 0.9 * N
    assert torch.equal(success[clear], (minimal < EPS)[clear])


def test_planted_shattered_gradients_fool_pgd_but_not_the_guided_attack(problem: tuple) -> None:
    linear, rippled, x, y, margins, dual = problem
    # Certainly breakable: the ε-vertex towards some class k takes the linear margin below −2a, so the ripple
    # cannot save the point.
    certain = ((margins + 2 * RIPPLE) / dual < EPS).any(1)
    assert 0.5 * N < int(certain.sum()) < N
    pgd = _success(attack(rippled, x, y, "pgd", eps=EPS, steps=100, loss="margin"))
    assert pgd.float().mean() < 0.05  # the planted masking works: the model's own gradients find nothing
    guided = _success(attack(rippled, x, y, "gpga", eps=EPS, steps=100, surrogate=linear))
    assert bool(guided[certain].all())


def test_without_the_match_phase_it_is_pgd_on_the_margin_from_the_clean_point(problem: tuple) -> None:
    linear, rippled, x, y, _, _ = problem
    guided = attack(rippled, x, y, "gpga", eps=EPS, steps=30, surrogate=linear, match_fraction=0.0)
    pgd = attack(rippled, x, y, "pgd", eps=EPS, steps=30, loss="margin", random_start=False)
    assert guided.to_columns()["success"] == pgd.to_columns()["success"]
    assert guided.to_columns()["linf"] == pgd.to_columns()["linf"]


def test_each_match_step_costs_one_model_and_one_surrogate_pass(problem: tuple) -> None:
    linear, rippled, x, y, _, _ = problem
    result = attack(rippled, x[:20], y[:20], "gpga", eps=1e-6, steps=10, surrogate=linear)  # nothing breaks
    assert result.summary()["n_success"] == 0
    assert result.to_columns()["gradient_passes"] == [2 * 5 + 5] * 20
    assert ATTACKS.get("gpga").configure(10, None, {}).cost().gradient == 15


def test_bad_settings_are_one_line_errors(problem: tuple) -> None:
    linear, rippled, x, y, _, _ = problem
    with pytest.raises(ConfigError, match="guided by a surrogate model"):
        attack(rippled, x[:4], y[:4], "gpga", eps=EPS)
    with pytest.raises(ConfigError, match="untargeted"):
        attack(rippled, x[:4], y[:4], "gpga", eps=EPS, surrogate=linear, target="random")
    other = Linear(torch.zeros(K + 1, D, dtype=torch.float64))
    with pytest.raises(ConfigError, match="same data and classes"):
        attack(rippled, x[:4], y[:4], "gpga", eps=EPS, surrogate=other)
    with pytest.raises(ConfigError, match="match_fraction"):
        attack(rippled, x[:4], y[:4], "gpga", eps=EPS, surrogate=linear, match_fraction=1.5)
    for query_only in ("square", "autoattack", "semantic"):
        with pytest.raises(ConfigError, match=f"{query_only} takes no surrogate"):
            attack(rippled, x[:4], y[:4], query_only, eps=EPS, surrogate=linear)
    with pytest.raises(ConfigError, match="rel_step"):
        attack(rippled, x[:4], y[:4], "gpga", eps=EPS, surrogate=linear, step_size=0.1)
