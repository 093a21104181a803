"""The gradient-masking audit on models whose masking is known: planted defects are flagged every time, the audit's
honest number is within 3 points of the attack a careful evaluator would run (on the same points, never more
optimistic), honest models get no masking flag, and bad inputs are refused with a clear error.

The models are tiny (:mod:`.planted`): an 8x8 grey 10-class task where a clean MLP keeps about 80 % robust accuracy
at L-inf 0.1, so that a masked number (100 %) and the honest one differ by 20 points.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from robustlab.attacks import CHECKS, attack, perturb
from robustlab.audit import THRESHOLDS, AuditConfig, AuditResult, Rung, RungResult, audit
from robustlab.audit._flags import ladder_findings
from robustlab.audit._model import bypass, find_non_differentiable
from robustlab.errors import ConfigError

from . import planted as P

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.1
#: Budgets of the test audits (the defaults cost 3-5x more; the flags need no more on these models).
CONFIG = AuditConfig(
    steps_long=50,
    apgd_steps=50,
    restarts=2,
    square_queries=300,
    eot_iter=10,
    judge_draws=30,
    eval_draws=100,
    min_points=100,
)
#: Points robust accuracy is measured on (each point is a third of a point of robust accuracy).
N = 300


def _points(seed: int = 0, n: int = N) -> tuple[Tensor, Tensor]:
    return P.data(n, seed=30 + seed)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, draws: int = 1) -> float:
    with torch.no_grad():
        return sum(float((model(x).argmax(1) == y).double().mean()) for _ in range(draws)) / draws


def _masking(result: AuditResult) -> list[str]:
    return [f.code for f in result.flags if f.masking]


def _check_verified(result: AuditResult, model: nn.Module, x: Tensor, y: Tensor) -> None:
    """The honest number of a deterministic model is what its kept adversarial examples score, inside the ball."""
    adv = result.adversarials
    assert adv is not None
    assert float((adv - x).abs().max()) <= EPS + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert _accuracy(model, adv, y) == pytest.approx(result.honest["robust_accuracy"], abs=1e-9)


class StraightThroughQuantise(nn.Module):
    """The careful evaluator's BPDA, written independently of the audit: rounding forward, identity backward."""

    def forward(self, x: Tensor) -> Tensor:
        return x + (torch.round(x * 4) / 4 - x).detach()


class LogOf(nn.Module):
    """The careful evaluator's fix for a softmax output: attack the log-probabilities (logits up to a constant)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.inner(x))


# -- honest models --------------------------------------------------------------------------------------------------
def test_an_honest_two_class_linear_model_gets_no_flag_at_any_budget() -> None:
    x, y = _points(n=1500)
    keep = y < 2
    x, y = x[keep][:N], y[keep][:N]
    model = P.two_class_linear()
    for eps in (0.1, 0.2):
        result = audit(model, x, y, eps=eps, config=CONFIG, surrogate=P.two_class_linear(), surrogate_name="twin")
        assert result.flags == [], [f.evidence for f in result.flags]
        assert result.verdict.startswith("no masking found at this budget")
        assert not result.masking_suspected


def test_an_honest_mlp_gets_no_masking_flag_and_its_pgd_number_stands() -> None:
    x, y = _points()
    model = P.trained_mlp(0)
    result = audit(model, x, y, eps=EPS, config=CONFIG, surrogate=P.trained_mlp(7), surrogate_name="mlp-7")
    assert _masking(result) == [], [f.evidence for f in result.flags]
    assert result.verdict.startswith("no masking found")
    pgd20 = result.robust_accuracy["pgd-20"]
    assert pgd20 is not None and 0.6 < result.honest["robust_accuracy"] <= pgd20 < 0.95
    assert pgd20 - result.honest["robust_accuracy"] < 0.05  # the stronger attacks find little more


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_honest_mlps_of_other_seeds_get_no_masking_flag(seed: int) -> None:
    x, y = _points(seed)
    result = audit(P.trained_mlp(seed), x, y, eps=EPS, config=CONFIG, seed=seed)
    assert _masking(result) == [], [f.evidence for f in result.flags]


# -- planted masking ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_input_quantisation_is_flagged_and_bpda_gives_the_honest_number(seed: int) -> None:
    x, y = _points(seed)
    mlp = P.trained_mlp(seed)
    model = nn.Sequential(P.Quantise(), mlp)
    result = audit(model, x, y, eps=EPS, config=CONFIG, seed=seed, keep_adversarials=True)
    codes = result.codes
    assert {"zero-gradients", "non-differentiable-layers", "adaptive-beats-white-box"} <= set(codes)
    assert result.facts.zero_gradients == 1.0 and result.facts.bypass == ["0"]
    assert result.verdict.startswith("masking suspected")
    pgd20 = result.robust_accuracy["pgd-20"]
    assert pgd20 is not None and pgd20 - result.honest["robust_accuracy"] >= 0.08  # BPDA beats PGD by >= 8 points
    assert any(d["attack"].startswith("bpda") and d["points"] >= 8 for d in result.honest["lowered_by"])
    careful = perturb(nn.Sequential(StraightThroughQuantise(), mlp), x, y, "pgd", eps=EPS, steps=50, seed=seed)
    assert result.honest["robust_accuracy"] <= _accuracy(model, careful, y) + 0.03
    _check_verified(result, model, x, y)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_logits_scaled_by_1e4_are_flagged_and_the_margin_loss_gives_the_honest_number(seed: int) -> None:
    x, y = _points(seed)
    model = nn.Sequential(P.trained_mlp(seed), P.Scale(1e4))
    result = audit(model, x, y, eps=EPS, config=CONFIG, seed=seed, keep_adversarials=True)
    assert {"zero-gradients", "losses-disagree"} <= set(result.codes)
    assert result.robust_accuracy["pgd-20"] == pytest.approx(result.clean_accuracy, abs=0.02)  # CE: no progress
    careful = attack(model, x, y, "pgd", eps=EPS, steps=50, loss="margin", seed=seed).summary()["robust_accuracy"]
    assert result.honest["robust_accuracy"] <= careful + 0.03
    assert result.honest["robust_accuracy"] < result.clean_accuracy - 0.1
    _check_verified(result, model, x, y)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_an_eval_time_random_transformation_is_flagged_and_eot_lowers_robust_accuracy(seed: int) -> None:
    x, y = _points(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(P.RandomNoise(0.3), P.trained_mlp(seed))
    result = audit(model, x, y, eps=EPS, config=CONFIG, seed=seed, keep_adversarials=True)
    assert {"stochastic-model", "adaptive-beats-white-box"} <= set(result.codes)
    eot = [r for r in result.rungs if r.rung.role == "eot"]
    assert eot and sum(r.broken for r in eot) / N > 0.05  # EoT breaks what every plain attack left
    assert result.honest["expected"] and result.facts.stochastic
    reference = attack(model, x, y, "apgd", eps=EPS, steps=50, eot_iter=10, keep_adversarials=True, seed=seed)
    assert reference.adversarials is not None
    careful = _accuracy(model, reference.adversarials, y, draws=200)
    assert result.adversarials is not None
    ours = _accuracy(model, result.adversarials, y, draws=200)  # the same estimator for both
    assert ours <= careful + 0.03
    assert result.honest["robust_accuracy"] == pytest.approx(ours, abs=0.03)  # its own 100 draws agree


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_a_model_ending_in_softmax_is_flagged_and_its_honest_number_matches_attacking_its_logits(seed: int) -> None:
    x, y = _points(seed)
    model = nn.Sequential(P.trained_mlp(seed), nn.Softmax(dim=1))
    result = audit(model, x, y, eps=EPS, config=CONFIG, seed=seed, keep_adversarials=True)
    assert "softmax-output" in result.codes and result.facts.probabilities
    careful = attack(LogOf(model), x, y, "pgd", eps=EPS, steps=50, seed=seed).summary()["robust_accuracy"]
    assert result.honest["robust_accuracy"] <= careful + 0.03
    _check_verified(result, model, x, y)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fgsm_training_without_random_start_is_flagged_and_pgd_gives_the_honest_number(
    seed: int, data_dir: Path
) -> None:
    # robustlab's own fgsm-rs training without its random start, on 5,000 MNIST images (about 30 s a seed: slow)
    from robustlab.data import load_dataset

    model = P.fgsm_at_without_random_start(seed)
    test = load_dataset("mnist", "test")
    x, y = test.x[:N].float() / 255, test.y[:N]
    eps = 0.3
    result = audit(model, x, y, eps=eps, config=CONFIG, surrogate=None, seed=seed, keep_adversarials=True)
    assert "single-step-far-above-iterative" in result.codes, result.verdict
    assert result.verdict.startswith("masking suspected") and result.masking_suspected
    fgsm, pgd20 = result.robust_accuracy["fgsm"], result.robust_accuracy["pgd-20"]
    assert fgsm is not None and pgd20 is not None and fgsm - pgd20 > 0.2
    careful = min(
        attack(model, x, y, "pgd", eps=eps, steps=50, restarts=3, seed=seed).summary()["robust_accuracy"],
        attack(model, x, y, "apgd", eps=eps, steps=50, seed=seed).summary()["robust_accuracy"],
    )
    assert result.honest["robust_accuracy"] <= careful + 0.03
    adv = result.adversarials
    assert adv is not None and float((adv - x).abs().max()) <= eps + 1e-6
    assert _accuracy(model, adv, y) == pytest.approx(result.honest["robust_accuracy"], abs=1e-9)


def test_a_model_whose_gradients_are_unavailable_everywhere_runs_the_gradient_free_checks_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, y = _points(n=150)
    model = nn.Sequential(P.Threshold(), P.trained_mlp(0))
    with caplog.at_level(logging.WARNING):
        result = audit(model, x, y, eps=EPS, config=CONFIG, surrogate=P.trained_mlp(7), surrogate_name="mlp-7")
    assert "gradients-unavailable" in result.codes and result.facts.gradient_error is not None
    assert "graph is cut" in result.facts.gradient_error
    ran = {r.rung.label for r in result.rungs}
    assert {"square", "transfer-pgd-50"} <= ran and not ran & {"fgsm", "pgd-20", "apgd-ce"}
    skipped = {s["attack"]: s["reason"] for s in result.skipped}
    assert skipped["pgd-20"] == skipped["apgd-ce"] == "the model's input gradients are unavailable"
    assert any("ran only the gradient-free checks" in w for w in result.warnings)
    assert any("ran only the gradient-free checks" in r.getMessage() for r in caplog.records)
    assert "gradients unavailable: only gradient-free checks and BPDA ran" in result.verdict
    # with nothing white-box to beat, the comparison flags stay silent: the evidence is the check itself
    assert not {"black-box-beats-white-box", "adaptive-beats-white-box"} & set(result.codes)


# -- the checks -------------------------------------------------------------------------------------------------
def test_the_layer_probe_finds_rounding_and_thresholding_and_bpda_passes_the_gradient_through() -> None:
    x, _ = _points(n=8)
    rounding = nn.Sequential(P.Quantise(), nn.Flatten(), nn.Linear(64, 10))
    cut = nn.Sequential(P.Threshold(), nn.Flatten(), nn.Linear(64, 10))
    assert [(layer.name, layer.kind, layer.bypassable) for layer in find_non_differentiable(rounding, x)] == [
        ("0", "zero", True)
    ]
    assert [(layer.name, layer.kind) for layer in find_non_differentiable(cut, x)] == [("0", "cut")]
    assert find_non_differentiable(P.trained_mlp(0), x) == []
    point = x.clone().requires_grad_(True)
    with bypass(rounding, ["0"]):
        out = rounding(point)
        (grad,) = torch.autograd.grad(out.sum(), point)
    linear = rounding[2]
    assert isinstance(linear, nn.Linear)
    expected = linear.weight.sum(0).reshape(1, 1, 8, 8).expand_as(x)  # the identity backward through the rounding
    assert torch.allclose(grad, expected, atol=1e-5)
    assert torch.allclose(out, rounding(x), atol=1e-6)  # forward values unchanged, hooks removed after
    assert not rounding[0]._forward_hooks


class ForcedTrainBN(nn.Module):
    """An MLP whose batch norm always uses the batch's statistics (eval() does not reach it)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = P.trained_mlp(0)
        self.bn = nn.BatchNorm1d(10)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.batch_norm(self.net(x), None, None, self.bn.weight, self.bn.bias, training=True)


def test_layers_in_train_mode_and_batch_dependent_outputs_are_flagged_and_modes_restored() -> None:
    x, y = _points(n=40)
    model = nn.Sequential(P.trained_mlp(0), nn.BatchNorm1d(10), nn.Dropout(0.5))
    model.train()
    small = AuditConfig(steps_short=2, steps_long=2, restarts=1, apgd_steps=2, square_queries=5, min_points=1)
    result = audit(model, x, y, eps=EPS, config=small)
    train = next(f for f in result.flags if f.code == "train-mode-bn")
    assert train.values["count"] == 2 and "1, 2" in train.values["names"] and not train.masking
    assert not result.facts.stochastic  # evaluated in eval mode: the dropout is off
    assert all(m.training for m in model.modules())  # the caller's modes are restored
    forced = audit(ForcedTrainBN(), x, y, eps=EPS, config=small)
    assert "batch-dependent-outputs" in forced.codes and forced.facts.batch_diff


# -- CLEVER above a found distortion ----------------------------------------------------------------------------
#: A cheap ladder for the CLEVER tests: the comparison needs broken points, not converged attacks.
CLEVER_CONFIG = AuditConfig(steps_long=10, apgd_steps=10, restarts=1, square_queries=100, min_points=1, clever_points=5)


def test_clever_above_a_distortion_the_audit_found_is_flagged_on_planted_zero_gradients() -> None:
    x, y = _points(n=40)
    model = P.make_quantised_template()  # rounding in front of the linear template matcher
    result = audit(model, x, y, eps=EPS, config=CLEVER_CONFIG, surrogate=None, keep_adversarials=True)
    record = result.clever
    assert record is not None and record["ran"] and record["n_compared"] == len(record["rows"]) > 0
    assert "clever-above-found-distortion" in result.codes
    assert record["n_exceeds"] == record["n_compared"] and record["median_ratio"] > 1
    # CLEVER sees zero gradients, so its score is its radius (2 eps); the found points really are adversarial,
    # within eps of their clean points, so the true minimal distortion is below CLEVER's estimate
    rows = torch.tensor(record["rows"])
    adv = result.adversarials
    assert adv is not None
    assert float((adv[rows] - x[rows]).abs().amax()) <= EPS + 1e-6 < record["radius"]
    with torch.no_grad():
        assert bool((model(adv[rows]).argmax(1) != y[rows]).all())
    found = next(f for f in result.flags if f.code == "clever-above-found-distortion")
    assert found.masking and f"on {record['n_exceeds']} of {record['n_compared']} broken points" in found.evidence


def test_clever_on_an_honest_linear_model_stays_below_every_found_distortion() -> None:
    x, y = _points(n=60)
    model = P.template_matcher()  # CLEVER equals the minimal distortion of a linear model exactly
    result = audit(model, x, y, eps=0.15, config=CLEVER_CONFIG, surrogate=None)
    record = result.clever
    assert record is not None and record["ran"] and record["n_compared"] >= 4
    assert record["n_exceeds"] == 0 and record["max_ratio"] <= 1
    assert "clever-above-found-distortion" not in result.codes


def test_the_clever_comparison_is_off_by_default_and_its_budget_is_checked() -> None:
    x, y = _points(n=20)
    small = AuditConfig(steps_long=2, apgd_steps=2, restarts=1, square_queries=5, min_points=1)
    result = audit(P.template_matcher(), x, y, eps=EPS, config=small, surrogate=None)
    assert result.clever is None and result.to_dict()["clever"] is None
    with pytest.raises(ConfigError, match="clever_points must be an integer >= 0"):
        AuditConfig(clever_points=-1)


# -- the ladder -------------------------------------------------------------------------------------------------
def test_each_rung_attacks_only_the_points_every_earlier_rung_left_robust() -> None:
    x, y = _points(n=120)
    model = P.trained_mlp(0)
    result = audit(model, x, y, eps=EPS, config=CONFIG)
    clean_correct = round(result.clean_accuracy * result.n)
    robust = clean_correct
    for r in result.rungs:
        if r.rung.standalone:
            assert r.attacked == clean_correct  # FGSM, the short PGD and the sweep: every clean-correct point
        else:
            assert r.attacked == robust, r.rung.label
        if r.rung.in_ladder:
            robust = round(r.robust_after * result.n) if r.robust_after is not None else robust
    assert robust == result.honest["k"]
    assert sum(1 for b in result.broken_by if b) == clean_correct - robust


class SeesClean(nn.Module):
    """Counts the forward passes that get exactly the clean images ``x``, all of them."""

    def __init__(self, inner: nn.Module, x: Tensor) -> None:
        super().__init__()
        self.inner, self.x, self.clean_calls = inner, x, 0

    def forward(self, z: Tensor) -> Tensor:
        if z.shape == self.x.shape and torch.equal(z.detach(), self.x):
            self.clean_calls += 1
        out: Tensor = self.inner(z)
        return out


def test_one_clean_pass_serves_the_checks_and_every_attack() -> None:
    x, y = _points(n=60)
    model = SeesClean(P.trained_mlp(0), x)
    small = AuditConfig(steps_long=5, apgd_steps=5, restarts=1, square_queries=10, min_points=1)
    audit(model, x, y, eps=EPS, config=small)
    # the clean pass, the randomness probe (a second pass of the same batch), the input-gradient check and FGSM's
    # one step (its gradient at x); no rung classifies the clean images again to learn which points to attack
    assert model.clean_calls == 4


def test_the_same_seed_gives_the_same_audit() -> None:
    x, y = _points(n=60)
    model = nn.Sequential(P.Quantise(), P.trained_mlp(0))
    small = AuditConfig(steps_long=10, apgd_steps=10, restarts=1, square_queries=20, min_points=1)
    one, two = (audit(model, x, y, eps=EPS, config=small, seed=3).to_dict() for _ in range(2))
    for d in (one, two):
        d.pop("seconds")
        for r in d["rungs"]:
            r.pop("seconds")
    assert one == two


def test_the_json_holds_the_verdict_the_flags_and_robust_accuracy_per_attack() -> None:
    x, y = _points(n=60)
    small = AuditConfig(steps_long=10, apgd_steps=10, restarts=1, square_queries=20, min_points=1)
    out = audit(nn.Sequential(P.trained_mlp(0), P.Scale()), x, y, eps=EPS, config=small).to_dict()
    assert isinstance(out["verdict"], str) and out["masking_suspected"] is True
    assert all({"code", "evidence", "explanation", "fix"} <= set(f) for f in out["flags"])
    assert {f["code"] for f in out["flags"]} >= {"zero-gradients", "losses-disagree"}
    assert set(out["robust_accuracy"]) == {r["attack"] for r in out["rungs"]}
    assert all(v is None or 0 <= v <= 1 for v in out["robust_accuracy"].values())
    assert out["thresholds"] == THRESHOLDS


def _result(label: str, role: str, broken: int, after: float, standalone: bool = False) -> RungResult:
    rung = Rung(label, "pgd", role, standalone=standalone)
    alone = after if standalone else None
    return RungResult(rung, {"steps": 20}, EPS, attacked=100, broken=broken, robust_alone=alone, robust_after=after)


@pytest.mark.parametrize(
    ("left", "broken", "flagged"),
    [(0.81, 3, False), (0.81, 5, True), (0.12, 3, True), (0.12, 2, False)],
)
def test_still_falling_needs_two_points_and_five_percent_of_what_was_left(
    left: float, broken: int, flagged: bool
) -> None:
    # 100 points: PGD-20 left `left`, the long PGD broke `broken` more (NoFrost's shape: 12 % -> 5.3 %)
    results = [
        _result("fgsm", "fgsm", 0, left, standalone=True),
        _result("pgd-20", "short", 0, left, standalone=True),
        _result("pgd-100", "long", broken, left - broken / 100),
    ]
    codes = [f.code for f in ladder_findings(results, 100, None)]
    assert ("still-falling-with-steps" in codes) is flagged


@pytest.mark.parametrize(
    ("pgd20", "honest", "flagged"),
    [(0.88, 0.81, True), (0.925, 0.88, False), (0.12, 0.06, True), (0.30, 0.26, False), (0.566, 0.531, False)],
)
def test_the_whole_ladder_against_pgd20_needs_five_points_and_five_percent(
    pgd20: float, honest: float, flagged: bool
) -> None:
    # FGSM-RS MNIST here (88 -> 81), Madry's MNIST model (92.5 -> 88.0), NoFrost-like, TRADES' WRN (56.6 -> 53.1)
    broken = round(100 * (pgd20 - honest))
    results = [
        _result("fgsm", "fgsm", 0, pgd20, standalone=True),
        _result("pgd-20", "short", 0, pgd20, standalone=True),
        _result("apgd-t", "apgd", broken, honest),
    ]
    found = [f for f in ladder_findings(results, 100, None) if f.code == "strong-attacks-beat-pgd"]
    assert bool(found) is flagged
    if found:
        assert "apgd-t (" in found[0].evidence and found[0].values["points"] == pytest.approx(100 * (pgd20 - honest))


@pytest.mark.parametrize(
    ("fgsm", "pgd20", "flagged"),
    [(0.833, 0.002, True), (0.44, 0.02, True), (0.947, 0.901, False), (0.30, 0.12, False), (0.80, 0.83, False)],
)
def test_fgsm_far_above_pgd20_needs_twenty_points(fgsm: float, pgd20: float, flagged: bool) -> None:
    # FGSM-AT without random start (notes: 83.3 vs 0.2; here 44 vs 2 on a subset), healthy FGSM-RS (94.7 vs 90.1)
    results = [
        _result("fgsm", "fgsm", 0, fgsm, standalone=True),
        _result("pgd-20", "short", 0, pgd20, standalone=True),
    ]
    found = [f for f in ladder_findings(results, 100, None) if f.code == "single-step-far-above-iterative"]
    assert bool(found) is flagged
    if found:
        assert found[0].values["points"] == pytest.approx(100 * (fgsm - pgd20)) and found[0].masking
        assert "FGSM left" in found[0].evidence and "pgd-20 only" in found[0].evidence
    codes = [f.code for f in ladder_findings(results, 100, None)]
    assert ("single-step-beats-iterative" in codes) is (pgd20 - fgsm > 0.01)


# -- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0, 0.0, "0", "0/255", -0.1, math.inf])
def test_eps_zero_negative_or_infinite_is_refused(eps: float | str) -> None:
    x, y = _points(n=4)
    with pytest.raises(ConfigError, match=r"eps"):
        audit(P.trained_mlp(0), x, y, eps=eps)


def test_a_surrogate_with_other_classes_or_another_input_shape_is_refused_before_any_attack() -> None:
    from robustlab.models import ModelAdapter

    x, y = _points(n=4)
    model = P.template_matcher()
    with pytest.raises(ConfigError, match=r"surrogate other returns outputs of shape \(2, 5\), the model has 10"):
        audit(model, x, y, eps=EPS, surrogate=P.make_other_classes(), surrogate_name="other")
    wide = ModelAdapter(P.make_other_shape(), num_classes=10, input_shape=(3, 8, 8))
    with pytest.raises(ConfigError, match=r"takes inputs of shape \(3, 8, 8\), the data has \(1, 8, 8\)"):
        audit(model, x, y, eps=EPS, surrogate=wide)
    with pytest.raises(ConfigError, match=r"cannot classify the data's inputs of shape \(1, 8, 8\)"):
        audit(model, x, y, eps=EPS, surrogate=P.make_other_shape())


def test_too_few_points_for_the_statistics_warn_with_the_interval_they_allow() -> None:
    x, y = _points(n=20)
    small = AuditConfig(steps_long=2, apgd_steps=2, restarts=1, square_queries=5)
    result = audit(P.trained_mlp(0), x, y, eps=EPS, config=small)
    (warning,) = result.warnings
    assert warning.startswith("only 20 points: a robust accuracy near 50 % is known to within 20.1 points")
    assert "use 500 points or more" in warning


def test_no_points_and_bad_labels_are_refused() -> None:
    x, y = _points(n=4)
    with pytest.raises(ConfigError, match="at least one point"):
        audit(P.trained_mlp(0), x[:0], y[:0], eps=EPS)
    with pytest.raises(ConfigError):
        audit(P.trained_mlp(0), x, y + 10, eps=EPS)
    with pytest.raises(ConfigError, match="steps_long must be an integer >= 1"):
        AuditConfig(steps_long=0)


# -- the registry and the documentation -------------------------------------------------------------------------------
def test_every_check_has_an_explanation_a_fix_and_a_documented_row() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    for code in CHECKS:
        check = CHECKS.get(code)
        assert check.explanation and check.fix and check.message
        assert f"`{code}`" in doc, f"docs/audit.md does not document {code}"
    for code, threshold in THRESHOLDS.items():
        assert code in CHECKS
        assert f"| `{code}` | {threshold:g} |" in doc, f"docs/audit.md does not give {code}'s threshold"


def test_a_weak_pgd_alone_is_not_called_masking_but_the_verdict_says_pgd_overstates() -> None:
    """`strong-attacks-beat-pgd` alone (FGSM-RS MNIST: APGD-T 84.0 % against PGD-20's 90.7 %) is a weak evaluation
    attack, not masking; with a masking flag beside it the verdict is "masking suspected"."""
    from types import SimpleNamespace

    from robustlab.audit._audit import _verdict
    from robustlab.audit._flags import Finding

    honest = {"robust_accuracy": 0.84, "low": 0.794, "high": 0.877, "expected": False, "attack": "apgd-t"}
    honest["first_pgd"] = {"attack": "pgd-20", "value": 0.907}
    facts = SimpleNamespace(gradients_available=True)
    weak = [Finding("strong-attacks-beat-pgd")]
    text = _verdict(weak, honest, facts, 0.3, 300)  # type: ignore[arg-type]
    assert text.startswith("no masking found at this budget (eps 0.3, 300 points), but a PGD number alone overstates")
    assert "84.0 %" in text and "reached by apgd-t (pgd-20 alone left 90.7 %)" in text
    assert not CHECKS.get("strong-attacks-beat-pgd").masking
    both = [*weak, Finding("losses-disagree")]
    assert _verdict(both, honest, facts, 0.3, 300).startswith("masking suspected (losses-disagree)")  # type: ignore[arg-type]
