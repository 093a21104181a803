"""Square Attack: its schedules and patterns (exact), the threat-model invariants of every query, query counting
and early stop, per-point randomness independent of the batch, non-square images, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import robustlab.attacks._square  # noqa: F401 - registers "square"
from robustlab.attacks import ATTACKS, Cost, attack
from robustlab.attacks._square import (
    PointDraws,
    ReferenceDraws,
    SquareConfig,
    Window,
    eta_pattern,
    grid_cells,
    p_selection,
    square_attack,
    window_side,
)
from robustlab.errors import ConfigError


def net(channels: int = 3, classes: int = 5, seed: int = 0) -> nn.Module:
    """A small fixed CNN that takes any image size (adaptive pooling)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((3, 3)),
        nn.Flatten(),
        nn.Linear(72, classes),
    )
    return model.eval()


def problem(
    h: int = 12, w: int = 12, n: int = 16, channels: int = 3, seed: int = 1
) -> tuple[nn.Module, Tensor, Tensor]:
    """A model and inputs it classifies as the labels (every point is attacked)."""
    model = net(channels)
    x = torch.rand((n, channels, h, w), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


class Recorder(nn.Module):
    """Wraps a model and keeps every batch it is queried with."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.detach().clone())
        out: Tensor = self.model(x)
        return out


# --- the p schedule and the window sizes ---------------------------------------------------------------------------


def test_p_schedule_at_the_reference_thresholds() -> None:
    # (last iteration of the phase, divisor of p_init): the reference's p_selection with resc_schedule=False.
    phases = [(10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)]
    start = 0
    for last, divisor in phases:
        for it in (start, last):
            assert p_selection(it, 0.8, 10000, False) == 0.8 / divisor, it
        start = last + 1
    assert p_selection(8001, 0.8, 10000, False) == 0.8 / 512
    assert p_selection(9999, 0.8, 10000, False) == 0.8 / 512
    # AutoAttack's 5,000 queries never leave the p_init / 128 phase.
    assert {p_selection(it, 0.8, 5000, False) for it in range(4001, 5000)} == {0.8 / 128}


def test_rescaled_schedule_maps_the_iteration_to_ten_thousand() -> None:
    # 1,000 queries: iteration i is read as int(i / 1000 * 10000) = 10 i.
    expected = {0: 1, 1: 1, 2: 2, 5: 2, 6: 4, 20: 4, 21: 8, 50: 8, 51: 16, 100: 16, 101: 32, 200: 32, 201: 64}
    expected |= {400: 64, 401: 128, 600: 128, 601: 256, 800: 256, 801: 512, 999: 512}
    for it, divisor in expected.items():
        assert p_selection(it, 0.8, 1000, True) == 0.8 / divisor, it
    # 300 queries: int(i / 300 * 10000) crosses 10 between i = 0 and i = 1.
    assert p_selection(0, 0.8, 300, True) == 0.8
    assert p_selection(1, 0.8, 300, True) == 0.4  # int(33.3) = 33


def test_window_sides_over_the_phases() -> None:
    divisors = [1, 2, 4, 8, 16, 32, 64, 128]
    # The note's tables (square.py with p_init 0.8): MNIST 28 x 28 and CIFAR 32 x 32.
    assert [window_side(0.8 / d, 1, 28, 28, "linf") for d in divisors] == [25, 18, 13, 9, 6, 4, 3, 2]
    assert [window_side(0.8 / d, 3, 32, 32, "linf") for d in divisors] == [29, 20, 14, 10, 7, 5, 4, 3]
    # L2: at least 3 and odd.
    assert [window_side(0.8 / d, 1, 28, 28, "l2") for d in divisors] == [25, 19, 13, 9, 7, 5, 3, 3]
    assert [window_side(0.8 / d, 3, 32, 32, "l2") for d in divisors] == [29, 21, 15, 11, 7, 5, 5, 3]
    assert window_side(0.8 / 512, 3, 224, 224, "linf") == 9  # sqrt(0.0015625 * 224^2) = sqrt(78.4) = 8.85


def test_window_side_rounds_half_to_even_and_fits_the_image() -> None:
    assert window_side(0.0625, 1, 10, 10, "linf") == 2  # sqrt(6.25) = 2.5 -> 2 (Python's rounding, as the reference)
    assert window_side(0.1225, 1, 10, 10, "linf") == 4  # sqrt(12.25) = 3.5 -> 4
    assert window_side(1e-6, 1, 10, 10, "linf") == 1
    assert window_side(0.8, 1, 5, 40, "linf") == 5  # sqrt(160) = 12.6, capped at the shorter side
    assert window_side(0.8, 1, 4, 40, "l2") == 4  # odd, then capped: the cap wins


# --- the L2 pattern and the starting grid ---------------------------------------------------------------------------


def rectangles_closed_form(a: int, b: int) -> Tensor:
    """Independent form of the nested rectangles (float64): cell value = sum over r from its ring (Chebyshev
    distance to cell (a // 2, b // 2)) to max(a // 2, b // 2) of 1 / (r + 1)^2, then unit L2 norm."""
    last = max(a // 2, b // 2)
    out = torch.zeros(a, b, dtype=torch.float64)
    for i in range(a):
        for j in range(b):
            ring = max(abs(i - a // 2), abs(j - b // 2))
            out[i, j] = sum(1.0 / (r + 1) ** 2 for r in range(ring, last + 1))
    return out / out.norm()


def test_eta_pattern_small_case_by_hand() -> None:
    # s = 3: the top row is rect(1, 3) = [1/4, 1 + 1/4, 1/4]; the bottom two rows are -rect(2, 3) with
    # rect(2, 3) = [[1/4, 1/4, 1/4], [1/4, 5/4, 1/4]]; each half has unit norm, then the whole.
    top = torch.tensor([[0.25, 1.25, 0.25]], dtype=torch.float64)
    bottom = torch.tensor([[0.25, 0.25, 0.25], [0.25, 1.25, 0.25]], dtype=torch.float64)
    expected = torch.cat([top / top.norm(), -bottom / bottom.norm()]) / math.sqrt(2)
    assert torch.allclose(eta_pattern(3).double(), expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize("s", [1, 2, 3, 4, 5, 7, 9, 13, 25, 29])
def test_eta_pattern_against_closed_form(s: int) -> None:
    eta = eta_pattern(s)
    assert eta.shape == (s, s) and eta.dtype == torch.float32
    if s == 1:  # no top half: the single cell is the bottom half's
        assert eta.item() == -1.0
        return
    top, bottom = rectangles_closed_form(s // 2, s), rectangles_closed_form(s - s // 2, s)
    expected = torch.cat([top, -bottom]) / math.sqrt(2)
    assert torch.allclose(eta.double(), expected, atol=1e-6, rtol=0)
    assert (eta[: s // 2] > 0).all() and (eta[s // 2 :] < 0).all()
    assert abs(float(eta.double().norm()) - 1.0) < 1e-6


def test_start_grid() -> None:
    # The reference's 5 x 5 grid: side h // 5, centred.
    assert grid_cells(28, 28) == (5, [(1 + 5 * i, 1 + 5 * j) for i in range(5) for j in range(5)])
    assert grid_cells(32, 32) == (6, [(1 + 6 * i, 1 + 6 * j) for i in range(5) for j in range(5)])
    # Non-square: the side from the shorter axis, as many cells as fit along each axis, each inside the image.
    s, cells = grid_cells(10, 23)
    assert s == 2 and len(cells) == 5 * 11
    assert all(vh >= 0 and vh + s <= 10 and vw >= 0 and vw + s <= 23 for vh, vw in cells)


# --- windows ----------------------------------------------------------------------------------------------------------


def test_per_point_windows_equal_shared_windows_at_equal_positions() -> None:
    t = torch.randn(4, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    vh, vw = torch.tensor([2, 2, 2, 2]), torch.tensor([5, 5, 5, 5])
    shared, per_point = Window(2, 5, 4), Window(vh, vw, 4)
    assert torch.equal(shared.read(t), per_point.read(t))
    assert torch.equal(shared.mask(9, 11, t).expand(4, 1, 9, 11), per_point.mask(9, 11, t))
    values = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    a, b = t.clone(), t.clone()
    shared.write(a, values)
    per_point.write(b, values)
    assert torch.equal(a, b)


def test_per_point_windows_read_and_write_each_rows_own_square() -> None:
    t = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).view(2, 1, 5, 6)
    window = Window(torch.tensor([0, 3]), torch.tensor([4, 1]), 2)
    assert torch.equal(window.read(t)[0, 0], t[0, 0, 0:2, 4:6])
    assert torch.equal(window.read(t)[1, 0], t[1, 0, 3:5, 1:3])
    mask = window.mask(5, 6, t)
    assert mask[0, 0, 0:2, 4:6].eq(1).all() and mask[0].sum() == 4
    assert mask[1, 0, 3:5, 1:3].eq(1).all() and mask[1].sum() == 4
    window.write(t, torch.full((2, 1, 2, 2), -1.0))
    assert (t == -1).sum() == 8 and t[1, 0, 3:5, 1:3].eq(-1).all()


def test_point_draws_cover_every_position_and_both_signs() -> None:
    draws = PointDraws(seed=3)
    index = torch.arange(4000)
    window, signs = draws.linf_step(index, 0, 3, 12, 12, 9)
    positions = torch.stack([torch.as_tensor(window.vh), torch.as_tensor(window.vw)])
    assert positions.min() == 0 and positions.max() == 3  # 0 ... H - s, the last one included
    counts = torch.bincount(positions.flatten(), minlength=4).double() / positions.numel()
    assert (counts - 0.25).abs().max() < 0.03
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(signs.mean())) < 0.05


def test_point_draws_depend_on_the_point_not_its_batch() -> None:
    draws = PointDraws(seed=3)
    every = draws.uniform(torch.arange(10), 7, 2, 5)
    some = draws.uniform(torch.tensor([8, 3]), 7, 2, 5)
    assert torch.equal(some, every[[8, 3]])
    assert not torch.equal(draws.uniform(torch.arange(10), 8, 2, 5), every)  # another iteration
    assert not torch.equal(PointDraws(seed=4).uniform(torch.arange(10), 7, 2, 5), every)  # another seed
    draws.start_restart(1)
    assert not torch.equal(draws.uniform(torch.arange(10), 7, 2, 5), every)  # another restart


def _splitmix_uniform(seed: int, index: int, restart: int, it: int, purpose: int, element: int) -> float:
    """PointDraws' documented stream in plain Python integers: splitmix64's finaliser over (seed ^ tag, index,
    restart, it + 1, purpose, element), each added as a multiple of the golden gamma; the top 24 bits."""
    mask = (1 << 64) - 1
    gamma = 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z &= mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    z = mix(mix(seed ^ 0x5371_7561_7265) + index * gamma)
    for part in (restart, it + 1, purpose, element):
        z = mix(z + part * gamma)
    return (z >> 40) * 2.0**-24


def test_point_draws_are_the_documented_hash_and_one_iteration_draws_them_in_one_pass() -> None:
    draws = PointDraws(seed=5)
    draws.start_restart(1)
    index = torch.tensor([0, 3, 977])
    c, h, w, s = 3, 12, 10, 4
    u = draws.uniforms(index, 6, (0, 1, 2, 3, 4, 5), c)
    for r, i in enumerate(index.tolist()):
        for q in range(6):
            for e in range(c):
                assert float(u[r, q, e]) == _splitmix_uniform(5, i, 1, 6, q, e)
    assert torch.equal(draws.uniform(index, 6, 4, c), u[:, 4])
    window, signs = draws.linf_step(index, 6, c, h, w, s)  # purposes 0, 1: the corner; 2: the signs
    assert torch.equal(torch.as_tensor(window.vh), (u[:, 0, 0] * (h - s + 1)).long())
    assert torch.equal(torch.as_tensor(window.vw), (u[:, 1, 0] * (w - s + 1)).long())
    assert torch.equal(signs.flatten(1), torch.where(u[:, 2] < 0.5, -1.0, 1.0))
    first, second, flip, signs2 = draws.l2_step(index, 6, c, h, w, s)  # 0-3: two corners, 4: flip, 5: signs
    assert torch.equal(torch.as_tensor(first.vh), (u[:, 0, 0] * (h - s + 1)).long())
    assert torch.equal(torch.as_tensor(second.vw), (u[:, 3, 0] * (w - s + 1)).long())
    assert torch.equal(flip, u[:, 4, 0] < 0.5)
    assert torch.equal(signs2.flatten(1), torch.where(u[:, 5] < 0.5, -1.0, 1.0))


def test_reference_draws_follow_the_global_generators_stream() -> None:
    torch.manual_seed(11)
    expected = torch.rand(2)
    draws = ReferenceDraws(11, torch.device("cpu"))
    window, _ = draws.linf_step(torch.arange(3), 0, 1, 28, 28, 25)
    assert (window.vh, window.vw) == (int(3 * expected[0]), int(3 * expected[1]))


# --- the attack: invariants, counting, randomness ---------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("reference_rng", [False, True])
def test_every_query_stays_in_the_ball_and_the_box(norm: str, reference_rng: bool) -> None:
    model, x, y = problem(h=10, w=14)
    recorder = Recorder(model)
    eps = torch.linspace(0.05, 0.3, x.shape[0]) if norm == "linf" else torch.linspace(0.3, 2.0, x.shape[0])
    index = torch.arange(x.shape[0])
    config = SquareConfig(queries=60, reference_rng=reference_rng)
    draws = ReferenceDraws(0, x.device) if reference_rng else PointDraws(0)
    rows: list[Tensor] = []
    out = square_attack(
        recorder, x, y, None, eps, norm=norm, config=config, index=index, draws=draws, on_query=rows.append
    )
    assert len(recorder.inputs) == len(rows) > 1
    for queried, idx in zip([*recorder.inputs, out], [*rows, index], strict=True):
        delta = (queried - x[idx]).flatten(1)
        assert queried.min() >= 0 and queried.max() <= 1
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert (size <= eps[idx] * (1 + 1e-5)).all()


def test_never_calls_backward() -> None:
    class NoBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, t: Tensor) -> Tensor:  # type: ignore[override]
            return t.clone()

        @staticmethod
        def backward(ctx: object, grad: Tensor) -> Tensor:  # type: ignore[override]
            raise AssertionError("Square took a gradient")

    inner, x, y = problem()

    class Guarded(nn.Module):
        def forward(self, t: Tensor) -> Tensor:
            out: Tensor = inner(NoBackward.apply(t))
            return out

    for norm in ("linf", "l2"):
        result = attack(Guarded(), x, y, "square", norm=norm, eps=0.1 if norm == "linf" else 0.5, queries=30)
        assert int(result.gradient_passes.sum()) == 0
    assert all(p.grad is None for p in inner.parameters())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_query_counts_and_early_stop(norm: str) -> None:
    model, x, y = problem(n=24)
    queries = 40
    recorder = Recorder(model)
    result = attack(recorder, x, y, "square", norm=norm, eps=0.03 if norm == "linf" else 0.5, queries=queries)
    counts = torch.tensor(result.columns["queries"])
    fooled = result.success
    assert 0 < int(fooled.sum()) < x.shape[0]  # both kinds of points, so the test can fail
    # The façade adds its clean pass and its judging pass to the attack's queries.
    assert torch.equal(result.forward_passes, counts + 2)
    # A point that survives queries the start and every iteration; a fooled one stops at its fooling query.
    assert (counts[~fooled] == queries + 1).all()
    assert (counts[fooled] <= queries + 1).all() and (counts[fooled] < queries + 1).any()
    # Each queried batch holds exactly the points still running: the batch sizes add up to the counts.
    assert sum(t.shape[0] for t in recorder.inputs) == int(counts.sum()) + 2 * x.shape[0]
    assert ATTACKS.get("square").configure(queries, None, {}).cost() == Cost(gradient=0, forward=queries + 1)


def test_a_fooled_query_is_what_the_evaluator_judges() -> None:
    model, x, y = problem(n=24)
    result = attack(model, x, y, "square", norm="linf", eps=0.03, queries=40, keep_adversarials=True)
    assert 0 < int(result.success.sum()) < x.shape[0]
    with torch.no_grad():
        pred = model(result.adversarials).argmax(1)
    assert torch.equal(pred != y, result.success)


def test_default_randomness_does_not_depend_on_the_batch_size() -> None:
    model, x, y = problem(n=20)
    for norm, eps in (("linf", 0.15), ("l2", 1.0)):
        whole = attack(model, x, y, "square", norm=norm, eps=eps, queries=20, seed=5, keep_adversarials=True)
        split = attack(
            model, x, y, "square", norm=norm, eps=eps, queries=20, seed=5, batch_size=3, keep_adversarials=True
        )
        assert whole.columns["queries"] == split.columns["queries"]
        assert whole.adversarials is not None and split.adversarials is not None
        assert torch.allclose(whole.adversarials, split.adversarials, atol=1e-6, rtol=0)


def test_same_seed_same_result_other_seed_other_result() -> None:
    model, x, y = problem(n=12)
    runs = [attack(model, x, y, "square", eps=0.1, queries=25, seed=s, keep_adversarials=True) for s in (1, 1, 2)]
    assert runs[0].adversarials is not None and runs[1].adversarials is not None and runs[2].adversarials is not None
    assert torch.equal(runs[0].adversarials, runs[1].adversarials)
    assert not torch.equal(runs[0].adversarials, runs[2].adversarials)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize(("h", "w"), [(8, 21), (21, 8)])
def test_non_square_images(norm: str, h: int, w: int) -> None:
    model, x, y = problem(h=h, w=w, n=12)
    eps = 0.05 if norm == "linf" else 0.5
    for reference_rng in (False, True):
        result = attack(model, x, y, "square", norm=norm, eps=eps, queries=80, reference_rng=reference_rng)
        assert int(result.success.sum()) > 0  # it works: it fools some points
        size = result.linf if norm == "linf" else result.l2
        assert (size <= eps * (1 + 1e-5)).all()


def test_restarts_attack_only_the_survivors() -> None:
    model, x, y = problem(n=24)
    one = attack(model, x, y, "square", eps=0.02, queries=20, restarts=1, seed=0)
    two = attack(model, x, y, "square", eps=0.02, queries=20, restarts=2, seed=0)
    assert 0 < int(one.success.sum()) < x.shape[0]
    first = torch.tensor(one.columns["queries"])
    both = torch.tensor(two.columns["queries"])
    assert torch.equal(both[one.success], first[one.success])  # fooled in the first run: no second run
    assert (both[~one.success] > 21).all()  # the survivors start again (a second start and more queries)
    assert bool((two.success | ~one.success).all()) and int(two.success.sum()) >= int(one.success.sum())


def test_starting_points_are_used_and_projected() -> None:
    model, x, y = problem(n=6)
    init = (x + 0.5).clamp(0, 1)  # far outside the ball
    recorder = Recorder(model)
    square_attack(
        recorder,
        x,
        y,
        None,
        torch.full((6,), 0.1),
        norm="linf",
        config=SquareConfig(queries=1),
        index=torch.arange(6),
        draws=PointDraws(0),
        on_query=lambda idx: None,
        init=init,
    )
    assert torch.allclose(recorder.inputs[0], torch.min(init, x + 0.1).clamp(0, 1))


def test_targeted_goal() -> None:
    model, x, y = problem(n=16)
    targets = (y + 1) % 5
    result = attack(model, x, y, "square", eps=0.3, queries=40, target=targets)
    assert int(result.success.sum()) > 0
    assert torch.equal(result.adv_pred[result.success], targets[result.success])


# --- errors -----------------------------------------------------------------------------------------------------------


def test_clear_errors() -> None:
    model, x, y = problem(n=2)
    square = ATTACKS.get("square")
    with pytest.raises(ConfigError, match="no step size"):
        square.configure(None, 0.1, {})
    with pytest.raises(ConfigError, match="Did you mean: queries"):
        square.configure(None, None, {"querys": 10})
    with pytest.raises(ConfigError, match="'margin' or 'ce'"):
        square.configure(None, None, {"loss": "dlr"})
    with pytest.raises(ConfigError, match="p_init"):
        square.configure(None, None, {"p_init": 1.5})
    with pytest.raises(ConfigError, match="queries >= 1"):
        square.configure(0, None, {})
    assert square.configure(123, None, {}).config.queries == 123  # steps is the query budget
    with pytest.raises(ConfigError, match="does not support norm 'l1'"):
        attack(model, x, y, "square", norm="l1", eps=1.0)
