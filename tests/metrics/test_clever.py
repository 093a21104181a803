"""CLEVER: exact on linear models, faithful to scipy's fit, seeded, batched, with clear errors.

Models are float64 linear classifiers (closed-form answers) and a tiny CNN; budgets are a few hundred
gradients so the file runs in seconds on a busy CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from torch import nn

from robustlab.attacks import attack
from robustlab.attacks.oracle import LinearClassifier, pairwise_distances
from robustlab.errors import ConfigError, InputContractError, ModelError
from robustlab.metrics import clever, compare_with_attack
from robustlab.metrics._weibull import FIT_SHAPES, fit_reverse_weibull

F64 = torch.float64
TARGETS = ["untargeted", "random", "least-likely", "top2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_problem(num_classes: int = 5, n: int = 6, seed: int = 0) -> tuple[LinearClassifier, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, 48, generator=g, dtype=F64)
    x = 0.35 + 0.3 * torch.rand((n, 3, 4, 4), generator=g, dtype=F64)
    b = -(w @ x.reshape(n, -1).mean(0)) + 0.1 * torch.randn(num_classes, generator=g, dtype=F64)
    return LinearClassifier(w, b), x


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 4),
    ).to(F64)


# -- known answers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_linear_model_score_is_the_exact_distance(norm: str, target: str) -> None:
    model, x = linear_problem()
    r = clever(model, x, norm=norm, target=target, batches=3, samples=4, radius=1e3)
    exact = pairwise_distances(model, x, r.label, norm).gather(1, r.targets)  # (N, T) |margin| / ||w_y - w_k||_q
    assert torch.allclose(r.target_scores, exact.clamp_min(0), rtol=1e-2, atol=0)
    assert torch.allclose(r.score, exact.clamp_min(0).amin(1), rtol=1e-2, atol=0)
    assert r.targets.shape[1] == (4 if target == "untargeted" else 1)
    assert bool((r.targets != r.label[:, None]).all())
    assert {s for row in r.fit_status for s in row} == {"degenerate"}  # constant gradient: zero variance
    assert not r.poor_fit.any()
    for t in (r.score, r.location, r.scale, r.ks_pvalue, r.ks_statistic):
        assert not torch.isnan(t).any()


def test_linear_untargeted_score_is_the_minimal_distortion_and_radius_caps_it() -> None:
    model, x = linear_problem(num_classes=3)
    r = clever(model, x, norm="l2", batches=2, samples=2, radius=1e3)
    exact = pairwise_distances(model, x, r.label, "l2").amin(1)
    assert torch.allclose(r.score, exact, rtol=1e-9)
    cap = float(exact.median())
    capped = clever(model, x, norm="l2", batches=2, samples=2, radius=cap)
    assert torch.allclose(capped.score, exact.clamp_max(cap), rtol=1e-9)


def test_degenerate_series_fit_to_their_constant_without_nan() -> None:
    fit = fit_reverse_weibull(np.array([[2.5] * 6, [0.0] * 6, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0 + 1e-12]]))
    assert np.allclose(fit.location, [2.5, 0.0, 1.0])
    assert list(fit.status) == ["degenerate"] * 3
    assert not np.isnan(np.concatenate([fit.location, fit.scale, fit.ks_pvalue, fit.ks_statistic])).any()


def test_zero_gradient_scores_the_radius_and_wrong_side_scores_zero() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.flatten(1) * 0).sum(1, keepdim=True) + torch.tensor([[1.0, 0.0, -1.0]], dtype=x.dtype)

    x = torch.full((2, 1, 2, 2), 0.5, dtype=F64)
    r = clever(Constant(), x, radius=0.7, batches=2, samples=2)
    assert r.score.tolist() == [0.7, 0.7] and r.location.abs().max() == 0
    wrong = clever(Constant(), x, torch.tensor([2, 1]), radius=0.7, batches=2, samples=2)
    assert wrong.score.tolist() == [0.0, 0.0]  # already misclassified: distance 0
    assert not torch.isnan(wrong.target_scores).any()


def test_non_finite_outputs_give_nan_for_that_input_only() -> None:
    model, x = linear_problem(n=3)

    class NanFirst(nn.Module):  # NaN logits and gradients around the first input only, row by row
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            bad = (z - x[0]).flatten(1).norm(dim=1) < 0.2  # inputs are ~1 apart in L2
            sign = 1.0 - 2.0 * bad.to(z.dtype)
            return model(z) + 0 * torch.sqrt(sign * z.flatten(1).sum(1))[:, None]  # sqrt(< 0): NaN

    r = clever(NanFirst(), x, torch.tensor([0, 1, 2]), radius=0.05, batches=2, samples=3)
    assert math.isnan(r.score[0]) and set(r.fit_status[0]) == {"nonfinite"} and bool(r.poor_fit[0])
    assert bool(torch.isfinite(r.score[1:]).all())
    assert r.to_dict()["scores"][0] is None


# -- the fit is scipy's, vectorised ----------------------------------------------------------------------------


@pytest.mark.parametrize("reg", [0.0, 0.01])
def test_batched_fit_matches_scipy_weibull_max_fit_and_kstest(reg: float) -> None:
    rng = np.random.default_rng(1)
    series = np.stack(
        [
            scipy.stats.weibull_max.rvs(4.0, loc=3.0, scale=0.5, size=12, random_state=rng),
            rng.normal(2.0, 1.0, size=(12, 30)).max(1),
        ]
    )

    def fmin(func, x0, args=(), disp=0):  # the reference code's fmin_with_reg with weight `reg`
        return scipy.optimize.fmin(lambda th, x: func(th, x) + reg * th[2] * th[2], x0, args, disp=disp)

    fit = fit_reverse_weibull(series, scale_reg=reg)
    for i, s in enumerate(series):
        shift, spread = s.max(), s.max() - s.min()
        best = None
        for c0 in FIT_SHAPES:  # the reference loop: fit on rescaled data, K-S on the original, best p wins
            c, loc, scale = scipy.stats.weibull_max.fit((s - shift) / spread, c0, optimizer=fmin)
            loc, scale = shift + loc * spread, scale * spread
            p = scipy.stats.kstest(s, "weibull_max", args=(c, loc, scale)).pvalue
            if best is None or p > best[0]:
                best = (p, c, loc, scale, c0)
        assert best is not None
        assert fit.ks_pvalue[i] == pytest.approx(best[0], rel=1e-9)
        assert (fit.shape[i], fit.location[i], fit.scale[i]) == pytest.approx(best[1:4], rel=1e-9)
        assert fit.init_shape[i] == best[4]


def test_diverged_plain_mle_is_flagged_and_the_regularised_fit_is_not() -> None:
    maxima = np.random.default_rng(0).normal(2.0, 1.0, size=(2, 10, 30)).max(2)  # Gaussian maxima: near-Gumbel
    plain = fit_reverse_weibull(maxima, scale_reg=0.0)
    assert plain.status[0] == "diverged" and plain.location[0] > 1e5 * maxima[0].max()  # scipy's answer too
    regularised = fit_reverse_weibull(maxima, scale_reg=0.01)
    assert list(regularised.status) == ["ok", "ok"] and regularised.location[0] < 2 * maxima[0].max()


# -- randomness and batching -----------------------------------------------------------------------------------


def test_same_seed_same_scores_any_batch_size_and_seeds_agree() -> None:
    model = tiny_cnn()
    x = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=F64)
    kw = {"norm": "l2", "target": "top2", "batches": 12, "samples": 10, "radius": 2.0}
    a = clever(model, x, seed=3, **kw)
    b = clever(model, x, seed=3, batch_size=7, **kw)
    torch.testing.assert_close(a.batch_maxima, b.batch_maxima)
    torch.testing.assert_close(a.score, b.score)
    scores = torch.stack([clever(model, x, seed=s, **kw).score for s in range(4)])  # (seeds, N)
    assert bool((scores > 0).all())
    spread = scores.std(0) / scores.mean(0)
    assert float(spread.max()) < 0.25, scores  # Monte-Carlo spread, not disagreement
    assert not torch.equal(scores[0], scores[1])


def test_progress_reports_every_sample_point_and_changes_nothing() -> None:
    model = tiny_cnn()
    x = torch.rand((3, 3, 8, 8), generator=torch.Generator().manual_seed(1), dtype=F64)
    kw = {"norm": "linf", "target": "top2", "batches": 4, "samples": 5, "radius": 0.1, "seed": 2, "batch_size": 7}
    calls: list[tuple[int, int]] = []
    with_bar = clever(model, x, progress=lambda done, total: calls.append((done, total)), **kw)
    plain = clever(model, x, **kw)
    total = 3 * 4 * 5
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert len(calls) == 1 + math.ceil(total / 7)  # one call per forward pass of at most 7 points
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})  # strictly increasing
    torch.testing.assert_close(with_bar.batch_maxima, plain.batch_maxima, rtol=0, atol=0)


def test_model_modes_restored_and_gradient_counts() -> None:
    model = tiny_cnn().train()
    x = torch.rand((2, 3, 8, 8), dtype=F64)
    r = clever(model, x, batches=2, samples=3, radius=1.0)
    assert model.training and all(m.training for m in model.modules())
    assert r.gradient_passes.tolist() == [2 * 3 * 3] * 2  # batches * samples * (K - 1)
    assert r.forward_passes.tolist() == [2 * 3 + 1] * 2
    out = r.to_dict()
    assert len(out["scores"]) == 2 and out["median"] is not None and out["target"] == "untargeted"
    cols = r.to_columns()
    assert {len(v) for v in cols.values()} == {2}
    assert cols["score"] == r.score.tolist() and all(len(t) == 3 for t in cols["target_scores"])
    assert [cols["target_scores"][i][r.targets[i].tolist().index(cols["target"][i])] for i in range(2)] == cols["score"]


# -- comparison with attacks -------------------------------------------------------------------------------------


def test_compare_with_attack_consistent_on_linear_and_flags_masked_gradients() -> None:
    model, x = linear_problem(num_classes=2, n=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    found = attack(model, x, y, "cw", norm="l2", steps=100)
    exact = clever(model, x, y, norm="l2", batches=2, samples=2, radius=1e3)
    cmp = compare_with_attack(exact, found)
    assert bool(cmp.compared.all()) and not cmp.exceeds.any()
    assert float(cmp.ratio.max()) <= 1 and float(cmp.ratio.min()) > 0.95  # C&W is near-minimal here

    class Masked(nn.Module):  # same logits, gradients shrunk 100x: CLEVER overestimates 100x
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(0.01 * x + 0.99 * x.detach())

    masked = clever(Masked(model), x, y, norm="l2", batches=2, samples=2, radius=1e3)
    flagged = compare_with_attack(masked, found)
    assert bool(flagged.exceeds.all()) and float(flagged.ratio.min()) > 90
    assert flagged.summary()["n_exceeds"] == 4


def test_compare_with_attack_refuses_mismatched_inputs_or_targets() -> None:
    model, x = linear_problem(num_classes=3, n=4)
    r = clever(model, x, target="top2", batches=2, samples=2, radius=10.0)
    other = attack(model, x, r.label, "fgsm", norm="l2", target="least-likely")
    with pytest.raises(ConfigError, match="same targets"):
        compare_with_attack(r, other)
    with pytest.raises(ConfigError, match="inputs"):
        compare_with_attack(r, attack(model, x[:3], r.label[:3], "fgsm", norm="l2"))


# -- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radius": 0.0}, "radius must be a finite number > 0"),
        ({"radius": -1.0}, "radius must be a finite number > 0"),
        ({"radius": math.nan}, "radius must be a finite number > 0"),
        ({"batches": 0}, "batches must be an integer >= 2"),
        ({"batches": 1}, "needs at least 2 per-batch maxima"),
        ({"samples": 0}, "samples must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"fit": "mse"}, "unknown fit method 'mse'"),
        ({"fit_shapes": (1.0, -2.0)}, "fit_shapes must be"),
    ],
)
def test_bad_configuration_raises_a_clear_error(kwargs: dict, message: str) -> None:
    model, x = linear_problem(n=2)
    with pytest.raises(ConfigError, match=message):
        clever(model, x, **kwargs)


def test_target_equal_to_label_raises() -> None:
    model, x = linear_problem(n=3)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ConfigError, match="targets equal their label"):
        clever(model, x, y, target=torch.tensor([1, 1, 0]))


def test_one_output_model_raises() -> None:
    with pytest.raises(ModelError, match="at least 2 outputs"):
        clever(nn.Sequential(nn.Flatten(), nn.Linear(48, 1)).to(F64), torch.rand((2, 3, 4, 4), dtype=F64))


def test_bad_inputs_labels_and_names_raise() -> None:
    model, x = linear_problem(n=2)
    with pytest.raises(InputContractError, match=r"\[0, 1\]"):
        clever(model, x * 3)
    with pytest.raises(ConfigError, match="out of range"):
        clever(model, x, torch.tensor([0, 7]))
    with pytest.raises(ConfigError, match="least-likely"):
        clever(LinearClassifier(torch.randn(2, 48, dtype=F64), torch.zeros(2, dtype=F64)), x, target="least-likely")
    with pytest.raises(KeyError, match="Did you mean: l2"):
        clever(model, x, norm="l3")
