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

from robustlab.attacks._fab_projections import project_l1, project_l2, project_linf

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
