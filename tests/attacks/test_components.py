"""Unit tests of the strategies: norms, losses, targets, eps parsing and the result object."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from robustlab.attacks import AttackResult, attack, parse_eps
from robustlab.attacks.oracle import LinearClassifier
from robustlab.threat import DLR, L1, L2, CrossEntropy, Linf, Margin, get_norm, get_target_mode, margin, other_max

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("norm", [Linf(), L2(), L1(sparsity=1.0)])
def test_steepest_step_attains_the_dual_norm(norm) -> None:
    # <g, step> = step_size * ||g||_dual, the largest increase of a linear function over the ball
    g = torch.randn((5, 2, 3, 3), generator=gen(), dtype=F64)
    step = norm.steepest_step(g, 0.3)
    gain = (g * step).reshape(5, -1).sum(1)
    assert torch.allclose(gain, 0.3 * norm.dual(g))
    assert torch.allclose(norm.distance(step), torch.full((5,), 0.3, dtype=F64))


def test_l1_step_skips_coordinates_pinned_at_the_box() -> None:
    g = torch.tensor([[5.0, 1.0, -0.5]], dtype=F64)
    x_adv = torch.tensor([[1.0, 0.5, 0.5]], dtype=F64)  # the largest ascent coordinate is already at 1
    step = L1(sparsity=1.0).steepest_step(g, 0.2, x_adv)
    assert torch.equal(step, torch.tensor([[0.0, 0.2, 0.0]], dtype=F64))


@pytest.mark.parametrize("name", ["linf", "l2", "l1"])
def test_projection_is_the_closest_point_of_the_ball(name: str) -> None:
    norm = get_norm(name)
    delta = torch.randn((64, 6), generator=gen(1), dtype=F64)
    eps = torch.linspace(0.1, 3.0, 64, dtype=F64)
    p = norm.project(delta, eps)
    assert bool((norm.distance(p) <= eps * (1 + 1e-12)).all())
    inside = norm.distance(delta) <= eps
    assert torch.equal(p[inside], delta[inside])
    # no random point of the ball is closer (in L2, the metric of the projection)
    for _ in range(200):
        cand = norm.project(torch.randn((64, 6), generator=gen(_ + 2), dtype=F64), eps)
        assert bool(((cand - delta).norm(dim=1) >= (p - delta).norm(dim=1) - 1e-12).all())


def test_l1_projection_matches_a_known_case() -> None:
    p = L1().project(torch.tensor([[3.0, -1.0, 0.5]], dtype=F64), 2.0)
    assert torch.allclose(p, torch.tensor([[2.0, 0.0, 0.0]], dtype=F64))
    p = L1().project(torch.tensor([[1.0, -1.0, 0.0]], dtype=F64), 1.0)
    assert torch.allclose(p, torch.tensor([[0.5, -0.5, 0.0]], dtype=F64))


@pytest.mark.parametrize("name", ["linf", "l2", "l1"])
def test_random_init_lies_in_the_ball_and_fills_it(name: str) -> None:
    norm = get_norm(name)
    x = torch.zeros((2000, 4), dtype=F64)
    d = norm.random_init(x, 0.5, gen(3))
    r = norm.distance(d)
    assert bool((r <= 0.5 + 1e-12).all())
    # uniform in a 4-dimensional ball: P(r <= 0.5 t) = t^4; the median radius is 0.5 * 0.5 ** 0.25
    assert float(r.median()) == pytest.approx(0.5 * 0.5**0.25, rel=0.05)
    assert torch.equal(d, norm.random_init(x, 0.5, gen(3)))  # same generator state, same draw


@pytest.mark.parametrize("name", ["linf", "l2", "l1"])
def test_random_init_fills_every_orthant_equally(name: str) -> None:
    d = get_norm(name).random_init(torch.zeros((8000, 4), dtype=F64), 0.5, gen(5))
    orthant = ((d > 0).long() * torch.tensor([1, 2, 4, 8])).sum(1)
    counts = torch.bincount(orthant, minlength=16)
    assert bool((counts - 500).abs().max() < 100), counts  # 500 ± 22 expected: 4.5 standard deviations
    # and the signs carry no information about the magnitudes
    big = d.abs() > d.abs().median()
    assert float((d[big] > 0).double().mean()) == pytest.approx(0.5, abs=0.03)


def test_random_init_with_infinite_eps_stays_finite() -> None:
    for name in ("linf", "l2", "l1"):
        d = get_norm(name).random_init(torch.zeros((3, 5)), math.inf, gen())
        assert bool(torch.isfinite(d).all())


def test_other_max_with_all_negative_logits() -> None:
    z = torch.tensor([[-5.0, -2.0, -3.0], [-1.0, -9.0, -8.0]])
    y = torch.tensor([1, 0])
    assert torch.equal(other_max(z, y), torch.tensor([-3.0, -8.0]))  # not 0, as a zeroed mask would give
    assert torch.equal(margin(z, y, None), torch.tensor([-1.0, -7.0]))
    assert torch.equal(margin(z, y, torch.tensor([2, 2])), torch.tensor([-1.0, -7.0]))


def test_losses_on_logits() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    assert float(Margin()(z, y, None)) == -1.0
    assert float(Margin(kappa=0.5)(z * 10, torch.tensor([3]), None)) == 0.5  # capped at kappa
    ce = CrossEntropy()
    assert float(ce(z, y, None)) == pytest.approx(float(torch.nn.functional.cross_entropy(z, y)))
    assert float(ce(z, y, t)) == pytest.approx(-float(torch.nn.functional.cross_entropy(z, t)))
    dlr = DLR()
    assert float(dlr(z, y, None)) == pytest.approx(-(2 - 1) / (2 - 0))
    assert float(dlr(z * 7 + 3, y, None)) == pytest.approx(float(dlr(z, y, None)))  # shift/scale invariant
    assert float(dlr(z, y, t)) == pytest.approx(-(2 - 0) / (2 - 0.5 * (0 - 1)))


def test_target_modes() -> None:
    z = torch.tensor([[0.0, 5.0, 1.0, 3.0], [9.0, 1.0, 2.0, -4.0]])
    y = torch.tensor([1, 0])
    assert torch.equal(get_target_mode("top2").select(z, y, gen()), torch.tensor([3, 2]))
    assert torch.equal(get_target_mode("least-likely").select(z, y, gen()), torch.tensor([0, 3]))
    assert get_target_mode("untargeted").select(z, y, gen()) is None
    big = torch.zeros((4000, 5))
    labels = torch.randint(0, 5, (4000,), generator=gen(1))
    t = get_target_mode("random").select(big, labels, gen(2))
    assert t is not None and bool((t != labels).all())
    assert set(t.tolist()) == {0, 1, 2, 3, 4}
    assert torch.equal(t, get_target_mode("random").select(big, labels, gen(2)))


@pytest.mark.parametrize(
    ("text", "value"), [("8/255", 8 / 255), ("0.5", 0.5), (" 1e-3 ", 1e-3), ("inf", math.inf), (2, 2.0), (None, None)]
)
def test_parse_eps(text, value) -> None:
    assert parse_eps(text) == value


def make_result(tmp_keep: bool = True) -> tuple[AttackResult, torch.Tensor]:
    g = gen(4)
    model = LinearClassifier(torch.randn(3, 12, generator=g, dtype=F64), torch.zeros(3, dtype=F64))
    x = torch.rand((8, 3, 2, 2), generator=g, dtype=F64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 3
    return attack(model, x, y, "pgd", eps=0.2, keep_adversarials=tmp_keep, seed=5), x


def test_summary_is_json_and_consistent_with_the_records() -> None:
    res, _ = make_result()
    s = res.summary()
    json.dumps(s, allow_nan=False)
    recs = res.to_records()
    assert s["n"] == len(recs) == 8
    correct = [r for r in recs if r["status"] != "misclassified"]
    assert s["clean_accuracy"] == len(correct) / 8
    assert s["success_rate"] == sum(r["success"] for r in correct) / len(correct)
    assert s["robust_accuracy"] == sum(r["adv_pred"] == r["label"] for r in recs) / 8
    assert s["gradient_passes"] == sum(r["gradient_passes"] for r in recs)
    # 7 attacked samples x 10 steps; the ones fooled early left the batch
    assert s["gradient_passes_budget"] == 7 * 10
    assert s["gradient_passes"] + s["gradient_passes_saved"] == 70 and s["gradient_passes_saved"] > 0
    wins = sorted(r["l2"] for r in correct if r["success"])
    assert 0 < len(wins) < len(correct)
    assert s["mean_l2"] == pytest.approx(sum(wins) / len(wins))
    for key in ("median_l1", "mean_l1", "median_linf", "mean_linf", "seconds", "forward_passes"):
        assert key in s
    assert recs[0]["status"] == "misclassified"
    assert recs[1]["seed"] == 5 and json.loads(recs[1]["params"])["steps"] == 10
    assert recs[1]["target"] is None and recs[1]["eps"] == 0.2


def test_adversarial_examples_are_saved_with_safetensors(tmp_path) -> None:
    res, _ = make_result()
    path = res.save_adversarials(tmp_path / "adv" / "pgd.safetensors")
    loaded = load_file(str(path))
    assert res.adversarials is not None
    assert torch.equal(loaded["adversarials"], res.adversarials)
    assert torch.equal(loaded["index"], torch.arange(8))
    assert not (tmp_path / "adv" / "pgd.safetensors.tmp").exists()
    bare, _ = make_result(tmp_keep=False)
    with pytest.raises(ValueError, match="keep_adversarials=True"):
        bare.save_adversarials(tmp_path / "x.safetensors")


def test_batching_does_not_change_deterministic_attacks() -> None:
    g = gen(6)
    model = LinearClassifier(torch.randn(3, 12, generator=g, dtype=F64), torch.zeros(3, dtype=F64))
    x = torch.rand((10, 3, 2, 2), generator=g, dtype=F64)
    y = model(x).argmax(1).detach()
    whole = attack(model, x, y, "ifgsm", eps=0.05, keep_adversarials=True)
    parts = attack(model, x, y, "ifgsm", eps=0.05, keep_adversarials=True, batch_size=3)
    assert whole.adversarials is not None and parts.adversarials is not None
    assert torch.equal(whole.adversarials, parts.adversarials)
    assert torch.equal(whole.gradient_passes, parts.gradient_passes)


def test_restarts_attack_only_the_samples_not_yet_fooled() -> None:
    g = gen(7)
    model = LinearClassifier(torch.randn(2, 12, generator=g, dtype=F64), torch.zeros(2, dtype=F64))
    x = 0.3 + 0.4 * torch.rand((12, 3, 2, 2), generator=g, dtype=F64)
    y = model(x).argmax(1).detach()

    res = attack(model, x, y, "pgd", eps=0.05, steps=4, restarts=3)

    robust = ~res.success
    assert bool(robust.any()) and bool(res.success.any())
    # a robust sample runs every restart to the end (3 x 4 passes) and one judging forward pass per
    # restart but the last, besides the clean and final evaluations
    assert bool((res.gradient_passes[robust] == 12).all())
    assert bool((res.forward_passes[robust] == 2 + 2).all())
    assert bool((res.gradient_passes[res.success] < 12).all())
    assert res.summary()["gradient_passes_budget"] == 12 * 12


def test_gradient_loop_starts_from_init_and_stops_at_an_adversarial_start() -> None:
    from robustlab.attacks._evaluator import PassCounter
    from robustlab.attacks._gradient import GradientConfig, gradient_attack

    g = gen(11)
    model = LinearClassifier(torch.randn(2, 12, generator=g, dtype=F64), torch.zeros(2, dtype=F64))
    x = 0.3 + 0.4 * torch.rand((4, 3, 2, 2), generator=g, dtype=F64)
    y = model(x).argmax(1).detach()
    w = model.weight[1 - y] - model.weight[y]  # (4, 12): the direction that raises the other class
    push = 0.2 * torch.sign(w).reshape(x.shape)  # L-inf 0.2
    start = x + push * torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64).reshape(4, 1, 1, 1)
    eps = torch.full((4,), 0.25, dtype=F64)
    fooled_at_start = model(start).argmax(1) != y
    assert bool(fooled_at_start[:2].all()) and not bool(fooled_at_start[2:].any())  # the setting this test needs

    counter = PassCounter(4)
    config = GradientConfig(steps=5, rel_step=1.0, random_start=False)
    out = gradient_attack(
        model, x, y, None, eps, norm=Linf(), config=config, generator=gen(0), counter=counter,
        index=torch.arange(4), init=start,
    )  # fmt: skip
    # rows 0-1 start adversarial: one gradient pass to see it, and the start itself is returned
    assert torch.equal(out[:2], start[:2]) and torch.equal(counter.gradient[:2], torch.tensor([1, 1]))
    # rows 2-3 start at the clean input like a cold I-FGSM
    cold = gradient_attack(
        model, x[2:], y[2:], None, eps[2:], norm=Linf(), config=config, generator=gen(0), counter=PassCounter(2),
        index=torch.arange(2),
    )  # fmt: skip
    assert torch.equal(out[2:], cold)


def test_warm_starts_come_only_from_judged_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustlab.attacks._methods as methods

    calls: list[tuple[int, bool, bool]] = []  # (rows, warm, every warm start is adversarial)
    real = methods.gradient_attack

    def spy(model, x, labels, targets, eps, **kw):
        init = kw.get("init")
        fooled = True if init is None else bool((model(init).argmax(1) != labels).all())
        calls.append((x.shape[0], init is not None, fooled))
        return real(model, x, labels, targets, eps, **kw)

    monkeypatch.setattr(methods, "gradient_attack", spy)
    g = gen(12)
    model = LinearClassifier(torch.randn(3, 12, generator=g, dtype=F64), torch.zeros(3, dtype=F64))
    x = 0.3 + 0.4 * torch.rand((16, 3, 2, 2), generator=g, dtype=F64)
    y = model(x).argmax(1).detach()

    res = attack(model, x, y, "ifgsm", eps=0.5, steps=4, minimal=True, search_attempts=6, warm_start=True)

    assert not calls[0][1] and calls[0][0] == 16  # the first attempt has nothing to start from
    assert any(warm for _, warm, _ in calls[1:])
    assert all(ok for _, _, ok in calls)
    assert res.summary()["search_warm_start"] is True


def tiny_cnn(seed: int) -> torch.nn.Module:
    """A float64 conv-ReLU-linear net with 4 classes: non-convex, so inner runs differ in length per sample."""
    g = gen(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 4 * 4, 4),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.5)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("cw", {"lr": 0.05}),
        ("cw", {"lr": 0.05, "warm_start": True, "target": "random"}),
        ("cw", {"lr": 0.05, "abort_early": False}),
        ("ead", {}),
        ("ead", {"fista": False, "patience": 2}),
    ],
)
def test_const_search_treats_every_sample_as_if_it_were_alone(name: str, params: dict) -> None:
    # Samples leave the batch at different iterations (plateaus) and search steps: every sample must still see
    # only its own iterate, moments, constant, plateau state and patience, whatever the others do.
    model = tiny_cnn(8)
    x = torch.rand((10, 3, 4, 4), generator=gen(9), dtype=F64)
    y = model(x).argmax(1).detach()
    kw = {"steps": 32, "search_steps": 6, "initial_const": 0.01, "seed": 2, **params}

    whole = attack(model, x, y, name, **kw)
    alone = attack(model, x, y, name, batch_size=1, **kw)

    assert bool((whole.gradient_passes > 0).all())  # the setup: every sample is attacked ...
    if params.get("abort_early", True):  # ... and runs end at different times, so the batch changes under it
        assert len(set(whole.gradient_passes.tolist())) >= 4, whole.gradient_passes
    else:
        assert bool((whole.gradient_passes == 32 * 6).all())
    assert torch.equal(whole.gradient_passes, alone.gradient_passes)
    assert torch.equal(whole.forward_passes, alone.forward_passes)
    assert torch.equal(whole.success, alone.success)
    assert int(whole.success.sum()) >= 8
    assert torch.allclose(whole.l2, alone.l2, rtol=1e-4, atol=0)
    assert torch.allclose(whole.l1, alone.l1, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("pgd", {"eps": 0.3, "steps": 6}),  # early stop: samples leave, so progress stops short of the budget
        ("ifgsm", {"eps": 0.5, "steps": 4, "minimal": True, "search_attempts": 3}),
        ("cw", {"steps": 8, "search_steps": 2}),
    ],
)
def test_progress_counts_the_model_calls_against_the_budget_and_changes_nothing(name: str, kw: dict) -> None:
    model = tiny_cnn(3)
    n = 6
    x = torch.rand((n, 3, 4, 4), generator=gen(4), dtype=F64)
    y = model(x).argmax(1).detach()
    calls: list[tuple[int, int]] = []
    res = attack(model, x, y, name, progress=lambda done, budget: calls.append((done, budget)), **kw)
    plain = attack(model, x, y, name, **kw)
    budget = res.summary()["model_calls_budget"]
    assert calls[0] == (0, budget) and {b for _, b in calls} == {budget}
    dones = [d for d, _ in calls]
    # Every model call the attack made (gradient passes and forward queries), less the clean pass and the
    # evaluator's pass, which are not the attack's.
    spent = int(res.gradient_passes.sum() + res.forward_passes.sum()) - 2 * n
    assert dones == sorted(dones) and dones[-1] == spent <= budget
    assert len(calls) > 2
    assert torch.equal(res.success, plain.success) and torch.equal(res.l2, plain.l2)
    assert torch.equal(res.gradient_passes, plain.gradient_passes)


def test_format_eps_writes_whole_255ths_as_fractions_and_reads_back() -> None:
    from robustlab.attacks import format_eps, parse_eps

    assert [format_eps(e) for e in (8 / 255, 1 / 255, 0.3, 0.1, 0.0)] == ["8/255", "1/255", "0.3", "0.1", "0"]
    assert all(parse_eps(format_eps(k / 255)) == pytest.approx(k / 255) for k in (1, 2, 4, 8, 16))
