"""One success rule: ``AttackResult.summary()`` and the study's DuckDB analysis of the same records agree on
every statistic (the records carry the rule's ``correct``, ``robust`` and ``won`` columns; one median
convention, the average of the two middle values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robustlab import load_dataset
from robustlab.analysis import attack_summary
from robustlab.attacks import attack
from robustlab.bench import Job
from robustlab.kinds.attack import write_attack_records
from robustlab.store import connect

from .tiny_models import make_b

STATISTICS = (
    "n",
    "n_correct",
    "n_success",
    "n_numerical_error",
    "clean_accuracy",
    "robust_accuracy",
    "success_rate",
    "median_l1",
    "mean_l1",
    "median_l2",
    "mean_l2",
    "median_linf",
    "mean_linf",
    "gradient_passes",
    "forward_passes",
)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ifgsm", {"norm": "linf", "steps": 3, "minimal": True}),
        ("pgd", {"norm": "l2", "eps": 0.3, "steps": 3}),
        ("cw", {"steps": 10, "search_steps": 2}),
    ],
)
def test_attack_summary_equals_the_duckdb_analysis_of_its_records(
    name: str, kwargs: dict[str, Any], tmp_path: Path, data_dir: Path
) -> None:
    ds = load_dataset("cifar10", "test", data_dir).subset(48, seed=3)
    model = make_b()
    result = attack(model, ds.images(), ds.y, name, seed=0, batch_size=16, index=ds.indices, **kwargs)
    params = {"key": name, "attack": name, "target": result.target_mode, "minimal": result.minimal}
    job = Job("attack", "template2", params, tuple(ds.indices.tolist()))
    write_attack_records(tmp_path, job, result, model)

    (row,) = attack_summary(connect(tmp_path))
    s = result.summary()
    for stat in STATISTICS:
        if s[stat] is None:
            assert row[stat] is None, stat
        else:
            assert row[stat] == pytest.approx(s[stat], rel=1e-12, abs=1e-15), stat
    assert row["n_robust"] == s["rates"]["robust_accuracy"]["k"]
    assert row["fixed_budget"] == result.fixed_budget
    assert s["n_success"] > 0 and s["n_correct"] < s["n"]  # the numbers compared are not trivially empty


def _ifgsm_minimal(data_dir: Path) -> Any:
    ds = load_dataset("cifar10", "test", data_dir).subset(48, seed=3)
    return attack(make_b(), ds.images(), ds.y, "ifgsm", norm="linf", steps=3, minimal=True, seed=0, batch_size=16)


def test_the_median_is_the_average_of_the_two_middle_successes(data_dir: Path) -> None:
    """An even number of successes whose middle values differ: the lower median (torch's) would not match the
    study's DuckDB median."""
    result = _ifgsm_minimal(data_dir)
    won = sorted(result.linf[result.won].tolist())
    assert len(won) % 2 == 0 and won[len(won) // 2 - 1] < won[len(won) // 2]
    assert result.summary()["median_linf"] == pytest.approx((won[len(won) // 2 - 1] + won[len(won) // 2]) / 2)
