"""The Wilson interval against published values and its defining equation; the median against numpy."""

import math

import numpy as np
import pytest
import torch

from robustlab.stats import Z95, Rate, format_number, median, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombes_table(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(("k", "n"), [(3, 10), (0, 7), (50, 50), (123, 4567)])
def test_wilson_bounds_solve_the_score_equation(k: int, n: int) -> None:
    # The Wilson bounds are the p with |p_hat - p| = z sqrt(p (1 - p) / n).
    p_hat = k / n
    for p in wilson_interval(k, n):
        assert abs(p_hat - p) == pytest.approx(Z95 * math.sqrt(p * (1 - p) / n), abs=1e-12)


def test_rate_reports_its_denominator_and_nothing_for_zero_trials() -> None:
    r = Rate(8, 10)
    assert r.to_dict()["k"] == 8 and r.to_dict()["n"] == 10 and r.value == 0.8
    assert str(r).endswith("(8/10)")
    empty = Rate(0, 0).to_dict()
    assert empty["value"] is None and empty["low"] is None and empty["high"] is None
    with pytest.raises(ValueError, match="0 <= k <= n"):
        Rate(3, 2)


@pytest.mark.parametrize(
    "values", [[3.0, 1.0, 4.0, 1.5], [2.0], [5.0, 1.0, 2.0], list(np.random.default_rng(0).random(10))]
)
def test_median_averages_the_two_middle_values_like_numpy(values: list[float]) -> None:
    assert median(torch.tensor(values)) == pytest.approx(float(np.median(values)), abs=1e-12)
    assert median(values) == pytest.approx(float(np.median(values)), abs=1e-12)


def test_median_ignores_nan_and_is_none_for_no_values() -> None:
    assert median([1.0, float("nan"), 3.0]) == 2.0
    assert median([]) is None
    assert median(torch.tensor([1.0, 2.0])) != float(torch.tensor([1.0, 2.0]).median())  # torch's lower median


def test_format_number_gives_four_digits_and_one_mark_for_nothing() -> None:
    assert format_number(0.123456) == "0.1235"
    assert format_number(7) == "7"
    assert format_number(None) == format_number(float("nan")) == "–"
    assert format_number(None, missing="-") == "-"
