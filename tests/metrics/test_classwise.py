"""Class-wise metrics: counts add up, CFPS on a hand-made confusion example, correlations, bad inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robustlab.errors import ConfigError
from robustlab.metrics import cfps_vulnerability_correlation, classwise_from_records, classwise_metrics

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


def test_spearman_uses_average_ranks_for_ties() -> None:
    from robustlab.metrics.classwise import _spearman

    assert _spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 2, 3])) == pytest.approx(1.0)
    assert _spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
