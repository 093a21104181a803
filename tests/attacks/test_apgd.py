"""APGD / APGD-T units: the DLR values, the checkpoint schedule, both halving conditions, the exact L1 ∩ box
projection against an independent solver, the batch-size-invariant random starts, and the bad inputs.

The side-by-side bitwise comparison with the reference is tests/reference/test_apgd_reference.py; the linear known
answers are tests/oracle/test_apgd_known_answers.py.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

import robustlab.attacks._apgd  # noqa: F401 - registers apgd and apgd-t
from robustlab.attacks import ATTACKS, attack
from robustlab.attacks._apgd import APGDSchedule, StartNoise, checkpoint_schedule, checkpoints, l1_stages
from robustlab.attacks._evaluator import PassCounter
from robustlab.attacks._gradient import GradientConfig, gradient_attack
from robustlab.attacks._state import ActiveRows
from robustlab.errors import ConfigError
from robustlab.threat import DLR, get_norm, make_loss
from robustlab.threat.projections import l1_box_correction, project_l1_box

F64 = torch.float64


# -- DLR ------------------------------------------------------------------------------------------------------------
def test_dlr_values_by_hand() -> None:
    logits = torch.tensor(
        [
            [3.0, 1.0, 2.0, 0.0],  # label on top: -(3 - 2) / (3 - 1)
            [3.0, 1.0, 2.0, 0.0],  # label 2 (second): -(2 - 3) / (3 - 1)
            [-5.0, -1.0, -3.0, -2.0],  # all negative, label 1 on top: -(-1 - -2) / (-1 - -3)
            [1.0, 1.0, 0.0, -1.0],  # a tie at the top, label 0: -(1 - 1) / (1 - 0)
        ],
        dtype=F64,
    )
    labels = torch.tensor([0, 2, 1, 0])
    expected = torch.tensor([-0.5, 0.5, -0.5, 0.0], dtype=F64)
    assert torch.allclose(DLR()(logits, labels, None), expected, rtol=0, atol=1e-12)


def test_targeted_dlr_values_by_hand() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0], [-5.0, -1.0, -3.0, -2.0]], dtype=F64)
    labels, targets = torch.tensor([0, 1]), torch.tensor([3, 2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected = torch.tensor([-(3.0 - 0.0) / (3.0 - 0.5), -(-1.0 + 3.0) / (-1.0 - (-3.0 - 5.0) / 2)], dtype=F64)
    assert torch.allclose(DLR()(logits, labels, targets), expected, rtol=0, atol=1e-12)


def test_dlr_against_the_paper_formula_on_random_logits() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (3, 4, 10):
        z = torch.randn(50, k, generator=g, dtype=F64) * 3 - 1
        y = torch.randint(0, k, (50,), generator=g)
        t = (y + 1 + torch.randint(0, k - 1, (50,), generator=g)) % k
        want, want_t = [], []
        for row, label, target in zip(z.tolist(), y.tolist(), t.tolist(), strict=True):
            srt = sorted(row, reverse=True)
            others = max(v for c, v in enumerate(row) if c != label)
            want.append(-(row[label] - others) / (srt[0] - srt[2] + 1e-12))
            if k >= 4:
                want_t.append(-(row[label] - row[target]) / (srt[0] - (srt[2] + srt[3]) / 2 + 1e-12))
        assert torch.allclose(DLR()(z, y, None), torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-12)
        if k >= 4:
            assert torch.allclose(DLR()(z, y, t), torch.tensor(want_t, dtype=F64), rtol=1e-12, atol=1e-12)


# -- schedules ------------------------------------------------------------------------------------------------------
def test_checkpoints_for_100_iterations() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_checkpoints_match_the_paper_recursion_at_100_and_1000() -> None:
    # p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (in hundredths, to stay exact)
    p = [0, 22]
    while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    assert checkpoints(100) == p[1:]
    assert checkpoints(1000) == [10 * q for q in p[1:]]


def test_checkpoints_for_10_and_20_iterations_use_the_reference_integer_rounding() -> None:
    # int(0.22 N), int(0.06 N), int(0.03 N), each at least 1: N = 10 → 2, 1, 1; N = 20 → 4, 1, 1
    assert checkpoint_schedule(10) == (2, 1, 1) and checkpoint_schedule(20) == (4, 1, 1)
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(20) == [4, 7, 9, *range(10, 21)]


def test_l1_eps_stages() -> None:
    assert l1_stages(100) == [(3.0, 30), (2.0, 30), (1.0, 40)]
    assert l1_stages(10) == [(3.0, 3), (2.0, 3), (1.0, 4)]
    assert sum(n for _, n in l1_stages(7)) == 7


# -- the two halving conditions --------------------------------------------------------------------------------------
def _rule_and_state(n: int) -> tuple[APGDSchedule, ActiveRows]:
    x0 = torch.full((n, 1, 2, 2), 0.5, dtype=F64)
    s = ActiveRows(x0=x0, x=x0.clone(), eps=torch.full((n,), 0.1, dtype=F64), labels=torch.zeros(n, dtype=torch.long))
    rule = APGDSchedule("linf", 100, 0.75, StartNoise(0, False), torch.arange(n), 0)
    rule.start(s)
    s["x_best"] = torch.full_like(x0, 0.55)
    s["grad_best"] = torch.ones_like(x0)
    s["loss_best"] = torch.full((n,), 10.0, dtype=F64)
    s["loss_checked"] = torch.full((n,), 10.0, dtype=F64)
    return rule, s


def _rising(n_rises: int, length: int, first: float = 1.0) -> Tensor:
    """A loss trace of ``length`` values starting at ``first`` that rises exactly ``n_rises`` times."""
    steps = torch.tensor([1.0] * n_rises + [-0.5] * (length - 1 - n_rises), dtype=F64)
    return torch.cat([torch.tensor([first], dtype=F64), first + steps.cumsum(0)])


def test_oscillation_condition_and_the_first_checkpoint_comparison_with_zero() -> None:
    rule, s = _rule_and_state(5)
    # At the first checkpoint (after iteration 22) the 22 comparisons run over history[0..21] and history[0] vs
    # history[-1], the zero-initialised last column: a first loss > 0 counts as a rise, a negative one does not.
    s["history"][0, :22] = _rising(21, 22)  # 21 + 1 rises: keeps its step
    s["history"][1, :22] = _rising(15, 22)  # 15 + 1 = 16 <= 16.5: halves
    s["history"][2, :22] = _rising(16, 22)  # 16 + 1 = 17 > 16.5: keeps
    s["history"][3, :22] = _rising(16, 22, first=-30.0)  # 16 + 0 = 16: halves (only because history[0] < 0)
    s["history"][4, :22] = _rising(16, 22, first=0.0)  # 0 > 0 is false: 16: halves
    grad = torch.zeros_like(s["x"])
    grad = rule._checkpoint(s, 21, grad)
    fired = torch.tensor([False, True, False, True, True])
    assert torch.equal(s["step"], 0.2 * torch.where(fired, 0.5, 1.0).to(F64))
    assert torch.equal(s["x"][fired], s["x_best"][fired]) and bool((s["x"][~fired] == 0.5).all())
    assert torch.equal(grad[fired], s["grad_best"][fired]) and bool((grad[~fired] == 0).all())
    assert torch.equal(s["halved"], fired.to(F64))
    assert rule.interval == 19


def test_no_improvement_condition_fires_only_when_the_step_was_not_halved_last_time() -> None:
    rule, s = _rule_and_state(3)
    s["history"][:, :22] = _rising(21, 22)  # no oscillation anywhere
    s["history"][1, :22] = _rising(10, 22)  # row 1 halves at the first checkpoint
    rule._checkpoint(s, 21, torch.zeros_like(s["x"]))
    assert torch.equal(s["halved"], torch.tensor([0.0, 1.0, 0.0], dtype=F64))
    # Second checkpoint (after iteration 41, interval 19): losses keep rising, but the best loss improved only on
    # row 2; row 0 was not halved last time and did not improve → halves; row 1 was halved last time → keeps.
    s["history"][:, 22:41] = torch.arange(100.0, 119.0, dtype=F64)
    s["loss_best"] = torch.tensor([10.0, 10.0, 11.0], dtype=F64)
    steps_before = s["step"].clone()
    rule._checkpoint(s, 40, torch.zeros_like(s["x"]))
    assert torch.equal(s["step"], steps_before * torch.tensor([0.5, 1.0, 1.0], dtype=F64))
    assert rule.interval == 16


# -- the exact L1 ∩ box projection ----------------------------------------------------------------------------------
def kkt_projection(x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Independent solver, float64: delta(lam) = clip(soft_threshold(y, lam), -x, 1 - x), with the multiplier
    lam >= 0 of the L1 constraint found by bisection on sum |delta(lam)| = eps (lam = 0 if that already fits)."""
    lo, hi = -x, 1 - x

    def at(lam: Tensor) -> Tensor:
        soft = y.sign() * (y.abs() - lam.unsqueeze(1)).clamp_min(0)
        return torch.max(torch.min(soft, hi), lo)

    zero = torch.zeros(x.shape[0], dtype=F64)
    lam_lo, lam_hi = zero.clone(), y.abs().amax(1) + 1
    for _ in range(200):
        mid = (lam_lo + lam_hi) / 2
        over = at(mid).abs().sum(1) > eps
        lam_lo, lam_hi = torch.where(over, mid, lam_lo), torch.where(over, lam_hi, mid)
    fits = at(zero).abs().sum(1) <= eps
    return torch.where(fits.unsqueeze(1), at(zero), at(lam_hi))


@pytest.mark.parametrize("case", ["outside", "sparse", "box-only", "inside"])
def test_l1_box_projection_matches_an_independent_kkt_solver(case: str) -> None:
    g = torch.Generator().manual_seed({"outside": 0, "sparse": 1, "box-only": 2, "inside": 3}[case])
    for _ in range(20):
        n, d = 6, int(torch.randint(2, 60, (1,), generator=g))
        x = torch.rand(n, d, generator=g, dtype=F64)
        x[:, : d // 3] = (x[:, : d // 3] > 0.5).to(F64)  # some coordinates on the box faces
        y = torch.randn(n, d, generator=g, dtype=F64) * 0.8
        if case == "sparse":
            y = y * (torch.rand(n, d, generator=g) < 0.2)
        eps = float(torch.rand(1, generator=g)) * d * 0.2 + 0.01
        if case in ("box-only", "inside"):
            eps = float(y.abs().sum(1).max()) + 1.0  # the ball does not bind
        if case == "inside":
            y = torch.max(torch.min(y, 1 - x), -x)  # already in the box too
        want = kkt_projection(x, y, eps)
        got = project_l1_box(x, y, eps)
        assert torch.allclose(got, want, rtol=0, atol=1e-10), (got - want).abs().max()
        assert bool((got.abs().sum(1) <= eps + 1e-9).all())
        assert bool((x + got >= -1e-12).all() and (x + got <= 1 + 1e-12).all())
        if case == "inside":
            assert bool((l1_box_correction(x, y, eps) == 0).all())


def test_l1_box_projection_of_a_root_on_the_first_segment() -> None:
    # One coordinate inside the box (breakpoint 0), one far outside: the L1 threshold lies below every other
    # breakpoint. The reference's bisection answers index 0 here and leaves the point outside the ball.
    x = torch.tensor([[0.7930, 0.8543]], dtype=F64)
    y = torch.tensor([[1.6361, -0.5382]], dtype=F64)
    got = project_l1_box(x, y, 0.35)
    assert torch.allclose(got, kkt_projection(x, y, 0.35), rtol=0, atol=1e-12)
    assert float(got.abs().sum()) == pytest.approx(0.35, abs=1e-12)


def test_l1_box_projection_float32_and_per_sample_eps() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(8, 3, 5, 5, generator=g)
    y = torch.randn(8, 3, 5, 5, generator=g)
    eps = torch.linspace(0.5, 20.0, 8)
    got = project_l1_box(x, y, eps)
    assert got.dtype == torch.float32 and got.shape == x.shape
    xs, ys = x.double().flatten(1), y.double().flatten(1)
    want = torch.cat([kkt_projection(xs[i : i + 1], ys[i : i + 1], float(eps[i])) for i in range(8)])
    assert torch.allclose(got.flatten(1).double(), want, atol=2e-5)


# -- randomness -----------------------------------------------------------------------------------------------------
def test_default_random_starts_do_not_depend_on_the_batch() -> None:
    like = torch.zeros(12, 1, 4, 4)
    index = torch.arange(100, 112)
    noise = StartNoise(7, reference=False)
    whole = noise.draw(like, index, 0, "rand")
    parts = torch.cat([noise.draw(like[:5], index[:5], 0, "rand"), noise.draw(like[5:], index[5:], 0, "rand")])
    assert torch.equal(whole, parts)
    shuffled = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise.draw(like, index[shuffled], 0, "rand"), whole[shuffled])
    assert not torch.equal(noise.draw(like, index, 1, "rand"), whole)  # another run, other starts
    assert not torch.equal(StartNoise(8, reference=False).draw(like, index, 0, "rand"), whole)


def test_reference_rng_draws_like_the_global_generator_after_manual_seed() -> None:
    like = torch.zeros(6, 1, 3, 3)
    noise = StartNoise(3, reference=True)
    first, second = noise.draw(like, torch.arange(6), 0, "rand"), noise.draw(like[:4], torch.arange(4), 1, "randn")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        assert torch.equal(first, torch.rand(like.shape)) and torch.equal(second, torch.randn(4, 1, 3, 3))


def small_net(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, classes)).double().eval()


def points(net: nn.Module, n: int = 24) -> tuple[Tensor, Tensor]:
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        return x, net(x).argmax(1)


@pytest.mark.parametrize("name", ["apgd", "apgd-t"])
def test_verdicts_and_examples_do_not_depend_on_the_batch_size(name: str) -> None:
    net = small_net()
    x, y = points(net)
    runs = [attack(net, x, y, name, norm="linf", eps=0.08, steps=20, seed=2, batch_size=b) for b in (24, 7)]
    assert 0 < int(runs[0].success.sum()) < len(x)  # the setup: some fooled, some robust
    assert torch.equal(runs[0].success, runs[1].success)


def test_same_seed_same_result_and_the_seed_matters() -> None:
    net = small_net()
    x, y = points(net)
    a, b = (attack(net, x, y, "apgd", norm="l2", eps=0.5, steps=10, seed=4, keep_adversarials=True) for _ in "ab")
    assert torch.equal(a.success, b.success) and torch.equal(a.l2, b.l2)
    c = attack(net, x, y, "apgd", norm="l2", eps=0.5, steps=10, seed=5)
    assert not torch.equal(a.l2, c.l2)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_early_drop_gives_the_verdicts_of_the_full_batch_run_for_less_work(norm: str) -> None:
    """Fooled points leave the batch by default; with the same starts, the full-batch run (every point, every
    iteration, as the reference) fools exactly the same points, and every dropped point's iterate is adversarial."""
    net = small_net()
    x, y = points(net, 16)
    index, eps = torch.arange(16), torch.full((16,), {"linf": 0.08, "l2": 0.5, "l1": 3.0}[norm], dtype=F64)

    def run(early: bool) -> tuple[Tensor, Tensor, PassCounter]:
        rule = APGDSchedule(norm, 15, 0.75, StartNoise(1, reference=False), index, 0, track_fooled=not early)
        won, counter = torch.zeros(16, dtype=torch.bool), PassCounter(16)
        out = gradient_attack(
            net, x, y, None, eps, norm=get_norm(norm), config=GradientConfig(steps=15, early_stop=early),
            generator=torch.Generator(), counter=counter, index=index, rule=rule, loss=make_loss("ce"), success=won,
        )  # fmt: skip
        return out, won, counter

    (fast, fast_won, fast_count), (full, full_won, full_count) = run(True), run(False)
    assert 0 < int(full_won.sum()) < 16
    assert torch.equal(fast_won, full_won)
    with torch.no_grad():
        assert bool((net(fast).argmax(1) != y)[fast_won].all()) and bool((net(full).argmax(1) != y)[full_won].all())
    assert bool((full_count.gradient == 16).all())  # the start and 15 iterations
    assert int(fast_count.gradient.sum()) < int(full_count.gradient.sum())


# -- bad input ------------------------------------------------------------------------------------------------------
def test_dlr_needs_three_classes_and_targeted_dlr_four() -> None:
    x, y = torch.rand(4, 1, 6, 6, dtype=F64), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="at least 3 classes") as err:
        attack(small_net(2), x, y, "apgd", loss="dlr", eps=0.1, steps=2)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="at least 4 classes"):
        attack(small_net(3), x, y, "apgd-t", eps=0.1, steps=2)
    attack(small_net(2), x, y, "apgd", loss="ce", eps=0.1, steps=2)  # CE is fine with 2 classes


def test_fewer_than_ten_classes_clamps_the_targets_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    net = small_net(5)
    x, y = points(net, 8)
    with caplog.at_level(logging.WARNING):
        res = attack(net, x, y, "apgd-t", eps=0.05, steps=3)
    assert any("runs 4 targets per point" in r.getMessage() for r in caplog.records)
    assert any("runs 4 targets per point" in w for w in res.warnings)
    # 4 targets x (3 steps + the start) gradient passes at most per point
    assert int(res.gradient_passes.max()) <= 4 * 4


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"loss": "margin"}, "loss of apgd must be one of"),
        ({"rho": 1.5}, "rho"),
        ({"restarts": 0}, ">= 1"),
        ({"restart": 2}, "Did you mean: restarts"),
    ],
)
def test_bad_settings_are_one_line_errors(params: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ATTACKS.get("apgd").configure(None, None, params)
    with pytest.raises(ConfigError, match="sets its own step size"):
        ATTACKS.get("apgd").configure(None, 0.1, {})
