"""Class-wise metrics: counts add up, CFPS on a hand-made confusion example, correlations, bad inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robustlab.analysis.classwise import cfps_vulnerability_correlation
from robustlab.errors import ConfigError
from robustlab.metrics import classwise_from_records, classwise_metrics

# Hand-made example, 3 classes, 9 samples. Perturbed predictions (true → predicted):
#   class 0: 0, 0, 1      class 1: 1, 2, 2      class 2: 2, 2, 0
# Correct: 2 + 1 + 2 = 5. False positives: FP(0) = 1 (a 2 predicted 0), FP(1) = 1, FP(2) = 2.
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2]
ADV = [0, 0, 1, 1, 2, 2, 2, 2, 0]
CLEAN = [0, 0, 0, 1, 1, 1, 2, 2, 1]  # one clean error: a 2 predicted 1


def test_cfps_and_fp_tp_on_a_hand_made_confusion() -> None:
    r = classwise_metrics(LABELS, CLEAN, ADV, classes=["a", "b", "c"])
    assert r.confusion == [[2, 1, 0], [0, 1, 2], [1, 0, 2]]
    assert r.false_positives == [1, 1, 2] and r.robust_correct == [2, 1, 2]
    assert r.cfps == pytest.approx([1 / 5, 1 / 5, 2 / 5])
    assert r.fp_tp_ratio == pytest.approx([1 / 2, 1 / 1, 2 / 2])
    assert r.clean_false_positives == [0, 1, 0] and r.clean_cfps == pytest.approx([0, 1 / 8, 0])
    assert r.robust_accuracy == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert r.clean_accuracy == pytest.approx([1, 1, 2 / 3])
    assert r.vulnerability == pytest.approx([1 / 3, 2 / 3, 0])
    assert (r.worst_class, r.worst_class_accuracy, r.best_class) == (1, pytest.approx(1 / 3), 0)
    assert r.gap == pytest.approx(1 / 3) and r.clean_worst_class == 2 and r.clean_gap == pytest.approx(1 / 3)
    assert r.robust_accuracy_overall == pytest.approx(5 / 9) and r.clean_accuracy_overall == pytest.approx(8 / 9)
    table = r.table()
    assert table[2]["class"] == "c" and table[2]["cfps"] == pytest.approx(0.4)
    assert r.to_dict()["classes"] == ("a", "b", "c")


def test_class_wise_counts_add_up_to_the_overall_counts() -> None:
    rng = np.random.default_rng(0)
    y, pc, pa = rng.integers(0, 10, 500), rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    r = classwise_metrics(torch.from_numpy(y), pc, pa.tolist(), num_classes=10)
    assert sum(r.support) == r.n == 500
    assert sum(r.robust_correct) == int((y == pa).sum()) and sum(r.clean_correct) == int((y == pc).sum())
    assert sum(map(sum, r.confusion)) == 500 and sum(map(sum, r.clean_confusion)) == 500
    assert sum(r.false_positives) == 500 - sum(r.robust_correct)  # every error is someone's false positive
    assert sum(r.cfps) == pytest.approx((500 - sum(r.robust_correct)) / sum(r.robust_correct))
    assert [sum(row) for row in r.confusion] == r.support


def test_empty_classes_and_no_correct_prediction_give_none() -> None:
    r = classwise_metrics([0, 0], [1, 1], [1, 1], num_classes=3)
    assert r.robust_accuracy == [0.0, None, None] and r.cfps == [None, None, None]
    assert r.fp_tp_ratio == [None, None, None] and r.worst_class == 0


def test_records_of_an_attack_result() -> None:
    rec = SimpleNamespace(label=torch.tensor(LABELS), clean_pred=torch.tensor(CLEAN), adv_pred=torch.tensor(ADV))
    assert classwise_from_records(rec).cfps == pytest.approx([0.2, 0.2, 0.4])
    with pytest.raises(ConfigError, match=r"missing \['adv_pred'\]"):
        classwise_from_records(SimpleNamespace(label=[0], clean_pred=[0]))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (([0, 1], [0], [0, 1]), "same length, got 2, 1, 2"),
        (([0, 3], [0, 1], [0, 1]), r"labels must lie in 0\.\.2, got 0\.\.3"),
        (([[0]], [0], [0]), "1-D array"),
        (([0.5], [0], [0]), "integer class indices"),
    ],
)
def test_bad_inputs(args: tuple, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        classwise_metrics(*args, num_classes=3)


def test_correlation_pools_models_and_classes() -> None:
    # model A: the more attractive a class, the more vulnerable (perfect rank agreement)
    a = classwise_metrics(LABELS, LABELS, ADV)
    b = classwise_metrics(LABELS, LABELS, [0, 0, 0, 1, 1, 0, 2, 0, 0])
    corr = cfps_vulnerability_correlation({"A": a, "B": b}, permutations=200)
    assert corr.n_points == 6 and corr.models == ("A", "B")
    xs = np.array([p["cfps"] for p in corr.points])
    ys = np.array([p["vulnerability"] for p in corr.points])
    assert corr.pearson == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert -1 <= corr.spearman <= 1 and 0 < corr.spearman_p <= 1
    assert set(corr.per_model) == {"A", "B"} and not math.isnan(corr.per_model["B"]["spearman"])
    with pytest.raises(ConfigError, match="at least one model"):
        cfps_vulnerability_correlation({})


# The textbook formulas the scipy-based implementation replaced, kept as the reference it must agree with.
def _ref_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=np.float64)
    for value in np.unique(v):  # ties get their average rank
        tied = v == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _ref_pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else math.nan


def _ref_correlation(a: np.ndarray, b: np.ndarray, permutations: int, seed: int) -> tuple[float, ...]:
    pearson, spearman = _ref_pearson(a, b), _ref_pearson(_ref_ranks(a), _ref_ranks(b))
    rng = np.random.default_rng(seed)
    ra, rb = _ref_ranks(a), _ref_ranks(b)
    hits_p = hits_s = 0
    for _ in range(permutations):
        perm = rng.permutation(len(b))
        hits_p += abs(_ref_pearson(a, b[perm])) >= abs(pearson) - 1e-12
        hits_s += abs(_ref_pearson(ra, rb[perm])) >= abs(spearman) - 1e-12
    return pearson, spearman, (hits_p + 1) / (permutations + 1), (hits_s + 1) / (permutations + 1)


def _random_results(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in "ABC":
        y = torch.randint(0, 10, (400,), generator=g)
        clean = torch.where(torch.rand(400, generator=g) < 0.8, y, torch.randint(0, 10, (400,), generator=g))
        adv = torch.where(torch.rand(400, generator=g) < 0.4, clean, torch.randint(0, 3, (400,), generator=g))
        out[m] = classwise_metrics(y, clean, adv)
    return out


@pytest.mark.parametrize("cfps", ["cfps", "clean_cfps"])
@pytest.mark.parametrize("vulnerability", ["robust_error", "accuracy_drop"])
def test_correlation_gives_the_numbers_of_the_textbook_formulas(cfps: str, vulnerability: str) -> None:
    results = _random_results(5)
    corr = cfps_vulnerability_correlation(
        results,
        cfps=cfps,  # type: ignore[arg-type]
        vulnerability=vulnerability,  # type: ignore[arg-type]
        permutations=300,
        seed=3,
    )
    a = np.array([p["cfps"] for p in corr.points])
    b = np.array([p["vulnerability"] for p in corr.points])
    pearson, spearman, pearson_p, spearman_p = _ref_correlation(a, b, 300, 3)
    assert corr.pearson == pytest.approx(pearson, abs=1e-12)
    assert corr.spearman == pytest.approx(spearman, abs=1e-12)
    assert (corr.pearson_p, corr.spearman_p) == (pearson_p, spearman_p)
    for model, r in corr.per_model.items():
        xs = np.array([p["cfps"] for p in corr.points if p["model"] == model])
        ys = np.array([p["vulnerability"] for p in corr.points if p["model"] == model])
        assert r["pearson"] == pytest.approx(_ref_pearson(xs, ys), abs=1e-12)
        assert r["spearman"] == pytest.approx(_ref_pearson(_ref_ranks(xs), _ref_ranks(ys)), abs=1e-12)
    # the numbers the home-made implementation gave on this input before it was replaced
    if (cfps, vulnerability) == ("cfps", "robust_error"):
        assert corr.pearson == pytest.approx(-0.7155631975196054, abs=1e-12)
        assert corr.spearman == pytest.approx(-0.582489019232965, abs=1e-12)


def test_correlation_of_a_constant_side_is_nan_without_warnings() -> None:
    flat = classwise_metrics(LABELS, LABELS, LABELS)  # nothing changes: every vulnerability is 0
    corr = cfps_vulnerability_correlation({"A": flat}, permutations=10)
    assert math.isnan(corr.pearson) and math.isnan(corr.spearman) and math.isnan(corr.pearson_p)
    assert set(corr.per_model["A"]) == {"pearson", "spearman"}
    assert all(math.isnan(v) for v in corr.per_model["A"].values())
