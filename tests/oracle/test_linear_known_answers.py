"""Known answers on float64 linear models: minimal distortion = |margin| / ||w_y - w_k||_dual.

Inputs lie in [0.35, 0.65] and every budget is below 0.35, so the [0, 1] box never binds and the analytic
answers are exact.
"""

from __future__ import annotations

import pytest
import torch

from robustlab.attacks import attack
from robustlab.attacks.oracle import (
    LinearClassifier,
    minimal_distortion,
    pairwise_distances,
    targeted_lower_bound,
    targeted_minimal_l2,
)

F64 = torch.float64
SHAPE = (3, 4, 4)  # D = 48


def linear_problem(num_classes: int, n: int, seed: int, bias_shift: float = 0.0):
    """A random linear model, inputs away from the box edges, labels = the model's predictions."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, 48, generator=g, dtype=F64)
    x = 0.35 + 0.3 * torch.rand((n, *SHAPE), generator=g, dtype=F64)
    center = x.reshape(n, -1).mean(0)
    b = -(w @ center) + 0.05 * torch.randn(num_classes, generator=g, dtype=F64) + bias_shift
    model = LinearClassifier(w, b)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def separated_budget(dstar: torch.Tensor, margin: float = 0.1) -> tuple[float, torch.Tensor]:
    """eps = median minimal distortion, and the samples whose answer is unambiguous (|d*/eps - 1| > margin)."""
    eps = float(dstar.median())
    keep = ((dstar / eps - 1).abs() > margin).nonzero().flatten()
    return eps, keep


def assert_on_some_boundary(l2: torch.Tensor, pair: torch.Tensor) -> None:
    """Each distortion is within [1, 1.01] x the distance to some class's half-space.

    With K > 2 the untargeted problem is not convex (the adversarial set is a union of half-spaces); its
    local minima are exactly the projections onto single half-spaces, so C&W may land on one that is not the
    closest, but it must land on one.
    """
    ratio = l2[:, None] / pair  # (N, K)
    hit = ((ratio >= 1 - 1e-9) & (ratio <= 1.01)).any(1)
    assert bool(hit.all()), ratio[~hit]


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "pgd", "mifgsm"])
def test_fixed_budget_attacks_give_the_exact_robust_accuracy(name: str, norm: str) -> None:
    model, x, y = linear_problem(2, 80, seed=1)
    eps, keep = separated_budget(minimal_distortion(model, x, y, norm))
    x, y = x[keep], y[keep]
    dstar = minimal_distortion(model, x, y, norm)
    assert eps < 0.35 and 0.2 < float((dstar > eps).double().mean()) < 0.8  # the setup itself

    res = attack(model, x, y, name, norm=norm, eps=eps, seed=3)

    expected_success = dstar < eps
    assert torch.equal(res.success, expected_success)
    assert res.summary()["robust_accuracy"] == pytest.approx(float((~expected_success).double().mean()), abs=0)
    dist = getattr(res, norm)[res.success]
    assert bool((dist >= dstar[res.success] * (1 - 1e-9)).all())  # never below the analytic minimum
    assert bool((getattr(res, norm) <= eps * (1 + 1e-9)).all())


@pytest.mark.parametrize("bias_shift", [0.0, -1000.0])
def test_cw_l2_lands_within_one_percent_of_the_minimum(bias_shift: float) -> None:
    # bias_shift = -1000 makes every logit negative: a margin that zeroes the label's logit instead of masking
    # it would see a success everywhere (the C&W bug of several libraries)
    model, x, y = linear_problem(2, 8, seed=2, bias_shift=bias_shift)
    with torch.no_grad():
        assert bias_shift == 0 or bool((model(x) < 0).all())
    dstar = minimal_distortion(model, x, y, "l2")

    res = attack(model, x, y, "cw")

    assert bool(res.success.all())
    ratio = res.l2 / dstar
    assert float(ratio.min()) >= 1 - 1e-9, ratio
    assert float(ratio.max()) <= 1.01, ratio


def test_untargeted_cw_with_many_classes_lands_on_a_class_boundary_never_below_the_minimum() -> None:
    model, x, y = linear_problem(5, 16, seed=2, bias_shift=-1000.0)  # all logits negative, too
    with torch.no_grad():
        assert bool((model(x) < 0).all())
    pair = pairwise_distances(model, x, y, "l2")

    res = attack(model, x, y, "cw")

    assert bool(res.success.all())
    assert bool((res.l2 >= pair.amin(1) * (1 - 1e-9)).all())
    assert_on_some_boundary(res.l2, pair)
    assert float((res.l2 / pair.amin(1)).median()) <= 1.01  # and mostly the closest class


def test_targeted_cw_lands_within_one_percent_of_the_exact_targeted_minimum() -> None:
    model, x, y = linear_problem(4, 12, seed=7)

    res = attack(model, x, y, "cw", target="random", seed=1)

    exact = targeted_minimal_l2(model, x, res.target)
    assert bool(res.success.all())
    assert torch.equal(res.adv_pred, res.target)
    ratio = res.l2 / exact
    assert float(ratio.min()) >= 1 - 1e-9 and float(ratio.max()) <= 1.01, ratio
    assert bool((res.l2 >= targeted_lower_bound(model, x, res.target, "l2") * (1 - 1e-9)).all())


def test_ead_with_beta_zero_lands_within_one_percent_of_the_l2_minimum() -> None:
    model, x, y = linear_problem(4, 16, seed=4)
    dstar = minimal_distortion(model, x, y, "l2")

    res = attack(model, x, y, "ead", norm="l2", beta=0.0)

    assert bool(res.success.all())
    ratio = res.l2 / dstar
    assert float(ratio.min()) >= 1 - 1e-9, ratio
    assert float(ratio.max()) <= 1.01, ratio


@pytest.mark.parametrize("decision", ["l1"])  # "en" (the default) is exercised by the beta = 0 test
def test_ead_l1_never_reports_less_than_the_l1_minimum(decision: str) -> None:
    model, x, y = linear_problem(3, 16, seed=5)
    dstar = minimal_distortion(model, x, y, "l1")

    res = attack(model, x, y, "ead", beta=0.05, decision=decision)

    assert float(res.summary()["success_rate"]) == 1.0
    assert bool((res.l1 >= dstar * (1 - 1e-9)).all())
    assert float((res.l1 / dstar).median()) < 1.5  # and it does get close: an L1 attack, not an L2 one


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_linf_minimal_search_is_within_its_bisection_tolerance(name: str) -> None:
    model, x, y = linear_problem(2, 40, seed=8)
    dstar = minimal_distortion(model, x, y, "linf")
    eps_max = 0.3
    assert float(dstar.max()) < eps_max

    tol = eps_max / 2**11  # what 12 bisection attempts from eps_max can reach
    res = attack(model, x, y, name, norm="linf", eps=eps_max, minimal=True, search_attempts=12, tolerance=tol, rtol=0)

    assert bool(res.success.all())
    assert bool((res.eps_found >= dstar * (1 - 1e-9)).all())
    assert bool((res.eps_found <= dstar + tol).all())
    assert bool((res.linf >= dstar * (1 - 1e-9)).all())
    assert bool((res.linf <= res.eps_found * (1 + 1e-9)).all())


@pytest.mark.parametrize("name", ["ifgsm", "pgd"])
def test_warm_started_minimal_search_keeps_the_known_answer(name: str) -> None:
    # starting each attempt from the best success so far changes the path, not what the search may end on:
    # never below the analytic minimum, within the bisection tolerance above it
    model, x, y = linear_problem(2, 40, seed=8)  # two classes: the sign step is the exact L-inf ascent direction
    dstar = minimal_distortion(model, x, y, "linf")
    eps_max, tol = 0.3, 0.3 / 2**11
    assert float(dstar.max()) < eps_max

    res = attack(
        model, x, y, name, norm="linf", eps=eps_max, minimal=True, search_attempts=12, tolerance=tol, rtol=0,
        warm_start=True,
    )  # fmt: skip

    assert res.extra["search_warm_start"] is True
    assert bool(res.success.all())
    assert bool((res.eps_found >= dstar * (1 - 1e-9)).all())
    assert bool((res.eps_found <= dstar + tol).all())
    assert bool((res.linf >= dstar * (1 - 1e-9)).all())


@pytest.mark.parametrize("rtol", [0.02, 0.1])
def test_minimal_search_with_a_relative_tolerance(rtol: float) -> None:
    model, x, y = linear_problem(2, 40, seed=10)
    dstar = minimal_distortion(model, x, y, "linf")

    res = attack(model, x, y, "ifgsm", norm="linf", eps=0.3, minimal=True, rtol=rtol, search_attempts=20)

    assert bool(res.success.all())
    assert bool((res.eps_found >= dstar * (1 - 1e-9)).all())
    assert bool((res.eps_found <= dstar / (1 - rtol) * (1 + 1e-9)).all())
    assert int(res.gradient_passes.max()) < 20 * 10  # resolved before the attempts ran out


def test_minimal_search_reattacks_only_unresolved_images_and_counts_the_passes_saved() -> None:
    model, x, y = linear_problem(2, 40, seed=9)
    y = y.clone()
    y[0] = 1 - y[0]  # misclassified from the start: never attacked
    dstar = minimal_distortion(model, x, y, "linf")
    # about half the images robust at eps_max; halfway between two minima, so no image sits exactly on the boundary
    # (a median of an odd count is one image's minimum, where a tie decides the verdict)
    d = dstar[1:].sort().values
    eps_max = float(d[len(d) // 2 - 1 : len(d) // 2 + 1].mean())

    res = attack(model, x, y, "pgd", norm="linf", eps=eps_max, minimal=True, steps=10)

    s = res.summary()
    robust = torch.tensor([st == "failure" for st in res.status])
    assert res.status[0] == "misclassified" and int(res.gradient_passes[0]) == 0
    assert torch.equal(robust[1:], dstar[1:] >= eps_max)
    assert bool((res.gradient_passes[robust] == 10).all())  # one attempt at eps_max, then resolved
    assert s["gradient_passes"] + s["gradient_passes_saved"] == s["gradient_passes_every_eps"]
    assert s["gradient_passes_every_eps"] == 39 * 10 * 10
    assert s["gradient_passes"] < 0.5 * s["gradient_passes_every_eps"]


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "mifgsm"])
def test_minimal_search_reuses_the_clean_gradient_for_the_same_answer(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import robustlab.attacks._run as rla
    from robustlab.attacks._gradient import StartGradients

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x = torch.rand(30, 6, dtype=torch.float64) * 0.6 + 0.2
    y = net(x).argmax(1)

    def search() -> rla.AttackResult:
        return attack(net, x, y, name, norm="linf", eps=0.5, minimal=True, search_attempts=8, rtol=0.01)

    cached = search()

    class NoCache(StartGradients):
        def get(self, index: torch.Tensor) -> None:
            return None

    monkeypatch.setattr(rla, "StartGradients", NoCache)
    fresh = search()

    assert torch.allclose(cached.eps_found, fresh.eps_found, rtol=0, atol=1e-12)
    assert torch.allclose(cached.linf, fresh.linf, rtol=0, atol=1e-12)
    assert cached.status == fresh.status
    attempts = fresh.forward_passes - 2  # the clean and the judged pass aside, one forward per attempt
    assert bool((attempts > 1).any())
    # every attempt after the first takes its first step from the cache
    assert bool((cached.gradient_passes == fresh.gradient_passes - (attempts - 1).clamp_min(0)).all())
    if name == "fgsm":
        assert bool((cached.gradient_passes == (attempts > 0).long()).all())  # one pass per attacked image
