"""FAB-T: its three projections against independent solvers, and the attack's mechanics.

The projections are checked against scipy's LP solver (L∞, L1) and a float64 bisection on the Lagrange
multiplier of the L2 problem, on small random problems with the point on either side of the hyperplane, on
it, and too far from it for the box to allow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from robustlab.attacks import ATTACKS, attack, perturb
from robustlab.attacks._fab import FABTargeted, target_classes
from robustlab.attacks._fab_projections import project_l1, project_l2, project_linf
from robustlab.attacks.oracle import LinearClassifier, pairwise_distances
from robustlab.errors import ConfigError

F64 = torch.float64
PROJECTIONS = {"linf": project_linf, "l2": project_l2, "l1": project_l1}


def random_problems(n: int, dim: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points in the box (some coordinates on its faces), normals with a few zeros, offsets ``scale`` away."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, dim, generator=g, dtype=F64)
    t[:, 0] = 0.0
    t[:, 1] = 1.0
    w = torch.randn(n, dim, generator=g, dtype=F64)
    w[:, 2] = 0.0
    side = torch.where(torch.rand(n, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    b = (w * t).sum(1) + side * scale * torch.rand(n, generator=g, dtype=F64) * w.abs().sum(1)
    return t, w, b


def furthest_move(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The step to the box corner that moves ``<w, z>`` furthest towards ``b`` (zero where ``w`` is zero)."""
    down = ((w * t).sum(1) >= b).unsqueeze(1)  # the step must decrease <w, z>
    corner = torch.where((w > 0) == down, torch.zeros_like(t), torch.ones_like(t))
    return (corner - t) * (w != 0)


def reachable(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows whose hyperplane meets the box (with a margin, so that the LP is comfortably feasible)."""
    corner = t + furthest_move(t, w, b)
    return ((w * corner).sum(1) - b).sign() != ((w * t).sum(1) - b).sign()


def lp_minimal_norm(t: np.ndarray, w: np.ndarray, b: float, norm: str) -> float:
    """min ||d||_p s.t. <w, t + d> = b, 0 <= t + d <= 1, for p = ∞ (variables d, s) or 1 (d = u - v)."""
    dim = t.shape[0]
    if norm == "linf":
        c = np.r_[np.zeros(dim), 1.0]
        eye = np.eye(dim)
        a_ub = np.block([[eye, -np.ones((dim, 1))], [-eye, -np.ones((dim, 1))]])
        res = linprog(
            c,
            A_ub=a_ub,
            b_ub=np.zeros(2 * dim),
            A_eq=np.r_[w, 0.0][None],
            b_eq=[b - w @ t],
            bounds=[*zip(-t, 1 - t, strict=True), (0, None)],
            method="highs",
        )
    else:
        c = np.ones(2 * dim)
        res = linprog(
            c,
            A_eq=np.r_[w, -w][None],
            b_eq=[b - w @ t],
            bounds=[*((0, u) for u in 1 - t), *((0, v) for v in t)],
            method="highs",
        )
    assert res.status == 0, res.message
    return float(res.fun)


def l2_by_multiplier(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The L2 projection by bisection on the multiplier α of d(α) = clip(-α w', -t, 1 - t), w' oriented."""
    sign = torch.where((w * t).sum(1) >= b, 1.0, -1.0).to(F64).unsqueeze(1)
    wo, gap = w * sign, ((w * t).sum(1) - b) * sign.squeeze(1)
    lo = torch.zeros_like(gap)
    hi = torch.full_like(gap, 1e6)
    for _ in range(200):
        mid = (lo + hi) / 2
        d = torch.maximum(torch.minimum(-mid.unsqueeze(1) * wo, 1 - t), -t)
        short = (wo * d).sum(1) + gap > 0  # not there yet: a larger multiplier
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    return torch.maximum(torch.minimum(-hi.unsqueeze(1) * wo, 1 - t), -t)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("dim", [7, 16, 48])
def test_projection_is_the_minimal_norm_point_on_the_hyperplane_in_the_box(norm: str, dim: int) -> None:
    t, w, b = random_problems(60, dim, seed=dim, scale=0.8)
    ok = reachable(t, w, b)
    assert 20 < int(ok.sum()) < 60  # the setup: both reachable and out-of-reach hyperplanes
    d = PROJECTIONS[norm](t, w, b)

    z = t + d
    assert bool(((z >= -1e-12) & (z <= 1 + 1e-12)).all())
    assert torch.allclose((w * z).sum(1)[ok], b[ok], atol=1e-9, rtol=0)
    got = {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "l1": d.abs().sum(1)}[norm]
    if norm == "l2":
        expected = l2_by_multiplier(t[ok], w[ok], b[ok])
        assert torch.allclose(d[ok], expected, atol=1e-5, rtol=0)  # strictly convex: the unique minimiser
    else:
        tn, wn, bn = t.numpy(), w.numpy(), b.numpy()
        best = torch.tensor([lp_minimal_norm(tn[i], wn[i], float(bn[i]), norm) for i in ok.nonzero().flatten()])
        assert torch.allclose(got[ok], best.to(F64), atol=1e-5, rtol=0)
    # out of reach: as far as the box allows, i.e. every useful coordinate at its bound
    assert torch.allclose(d[~ok], furthest_move(t, w, b)[~ok], atol=1e-12, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_of_a_point_on_the_hyperplane_is_no_step(norm: str) -> None:
    t, w, _ = random_problems(20, 12, seed=5, scale=0.0)
    t = t.clamp(0.05, 0.95)  # away from the faces: 0 is then the only step of norm 0
    b = (w * t).sum(1)
    d = PROJECTIONS[norm](t, w, b)
    assert float(d.abs().max()) < 1e-12


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_ignores_coordinates_with_a_zero_normal_and_keeps_rows_apart(norm: str) -> None:
    t, w, b = random_problems(30, 10, seed=9, scale=0.2)
    d = PROJECTIONS[norm](t, w, b)
    assert bool((d[:, 2] == 0).all())  # w[:, 2] = 0
    # each row is its own problem: projecting the rows one at a time gives the same steps
    single = torch.cat([PROJECTIONS[norm](t[i : i + 1], w[i : i + 1], b[i : i + 1]) for i in range(30)])
    assert torch.allclose(single, d, atol=1e-12, rtol=0)


# --- the attack ------------------------------------------------------------------------------------------------


def small_cnn(classes: int = 10, seed: int = 0) -> nn.Module:
    """A random float32 conv net on 1x8x8 inputs, parameters requiring gradients (as a user's model would)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, classes)
    ).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))


def predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_fab_t_is_registered_with_autoattacks_settings() -> None:
    fab = ATTACKS.get("fab-t")
    assert isinstance(fab, FABTargeted)
    assert fab.norms == ("linf", "l2", "l1") and fab.fixed_budget
    c = fab.config
    assert (c.steps, c.targets, c.alpha_max, c.eta, c.beta) == (100, 9, 0.1, 1.05, 0.9)
    # per target and iteration: one linearisation (gradient) and one boundary check (forward)
    assert fab.cost().gradient == 900 and fab.cost().forward == 1 + 9 * 101


def test_targets_are_the_next_largest_clean_logits() -> None:
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.0, 1.0], [9.0, 1.0, 2.0, 3.0, 4.0]])
    assert target_classes(logits, 4).tolist() == [[3, 2, 4, 0], [4, 3, 2, 1]]
    assert target_classes(logits, 1).tolist() == [[3], [4]]


def test_parameter_gradients_are_never_touched() -> None:
    model = small_cnn()
    x = images(6)
    y = predicted(model, x)
    attack(model, x, y, "fab-t", eps=0.3, steps=5)
    perturb(model, x, y, "fab-t", eps=0.3, steps=5)
    assert all(p.grad is None for p in model.parameters())
    for p in model.parameters():  # gradients the user accumulated stay as they were
        p.grad = torch.full_like(p, 0.5)
    attack(model, x, y, "fab-t", eps=0.3, steps=5, norm="l2")
    assert all(bool((p.grad == 0.5).all()) for p in model.parameters() if p.grad is not None)


def test_deterministic_whatever_the_seed() -> None:
    model = small_cnn()
    x = images(8)
    y = predicted(model, x)
    a = attack(model, x, y, "fab-t", eps=0.05, steps=10, seed=1, keep_adversarials=True)
    b = attack(model, x, y, "fab-t", eps=0.05, steps=10, seed=2, keep_adversarials=True)
    assert a.adversarials is not None and b.adversarials is not None
    assert torch.equal(a.adversarials, b.adversarials)
    assert 0 < int(a.success.sum()) < 8  # the setup: some fooled, some not


@pytest.mark.parametrize(("classes", "targets_used"), [(10, 9), (4, 3), (2, 1)])
def test_model_calls_per_point_and_targets_clamped_to_k_minus_1(classes: int, targets_used: int) -> None:
    model = small_cnn(classes)
    x = images(5)
    y = predicted(model, x)
    steps = 4

    res = attack(model, x, y, "fab-t", eps=1e-6, steps=steps)  # nothing can be fooled: every target, every step
    clamped = [w for w in res.warnings if "targets=9 needs more classes" in w]
    assert len(clamped) == (classes < 10)  # the clamp is recorded with the result

    assert not bool(res.success.any())
    assert res.gradient_passes.tolist() == [targets_used * steps] * 5
    # attack()'s clean pass + FAB's clean pass + one boundary check per iteration + the evaluator's pass
    assert res.forward_passes.tolist() == [1 + 1 + targets_used * steps + 1] * 5
    assert FABTargeted().configure(steps, None, {}).targets_used(classes) == targets_used


def test_early_stop_keeps_every_verdict_and_saves_passes() -> None:
    model = small_cnn()
    x = images(12, seed=3)
    y = predicted(model, x)

    full = attack(model, x, y, "fab-t", eps=0.04, steps=15, early_stop=False)
    fast = attack(model, x, y, "fab-t", eps=0.04, steps=15)

    assert torch.equal(full.success, fast.success)
    assert 0 < int(full.success.sum()) < 12
    assert int(fast.gradient_passes.sum()) < int(full.gradient_passes.sum())
    assert bool((fast.linf <= 0.04 + 1e-7).all())


def test_the_linearisation_is_the_targeted_one() -> None:
    # one iteration on a linear model: the step is eta times the L2 projection onto z_t = z_y, t = 2nd largest logit
    g = torch.Generator().manual_seed(5)
    scales = torch.tensor([1, 4, 0.3, 2, 0.6], dtype=F64)[:, None]  # so that the closest class is not always t
    w, b = torch.randn(5, 48, generator=g, dtype=F64) * scales, torch.zeros(5, dtype=F64)
    model = LinearClassifier(w, b)
    x = (0.35 + 0.3 * torch.rand((6, 3, 4, 4), generator=g, dtype=F64)).clamp(0, 1)
    with torch.no_grad():
        z = model(x)
    y, t = z.argmax(1), z.sort(1)[1][:, -2]
    assert bool((pairwise_distances(model, x, y, "l2").argmin(1) != t).any())  # untargeted FAB would differ

    res = attack(model, x, y, "fab-t", norm="l2", eps=10.0, steps=1, targets=1, keep_adversarials=True)

    assert res.adversarials is not None
    normal = w[t] - w[y]  # (N, D)
    gap = z.gather(1, y[:, None]).squeeze(1) - z.gather(1, t[:, None]).squeeze(1)
    expected = 1.05 * (gap / (normal**2).sum(1))[:, None] * normal
    got = (res.adversarials - x).reshape(6, -1)
    assert bool(res.success.all())
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)


def test_points_never_fooled_come_back_clean() -> None:
    model = small_cnn()
    x = images(6)
    y = predicted(model, x)
    out = perturb(model, x, y, "fab-t", eps=1e-6, steps=3)
    assert torch.equal(out, x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_size": 0.1}, "no step size"),
        ({"target": "top2"}, "chooses its own targets"),
        ({"eta2": 1.0}, "Did you mean: eta"),
        ({"beta": 0.0}, "beta must lie in"),
        ({"alpha_max": 1.5}, "alpha_max must lie in"),
        ({"targets": 0}, "targets >= 1"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict[str, object], match: str) -> None:
    model = small_cnn()
    x = images(2)
    with pytest.raises(ConfigError, match=match):
        attack(model, x, predicted(model, x), "fab-t", eps=0.1, **kwargs)  # type: ignore[arg-type]
