"""One success rule and one median in the results, rates with intervals, up-front parameter checks, the
non-convergence warning of a starved search, and saved adversarial examples that carry dataset rows."""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustlab.attacks import AttackResult, attack, check_params
from robustlab.attacks.oracle import LinearClassifier
from robustlab.errors import ConfigError
from robustlab.metrics import clever
from robustlab.stats import Rate

F64 = torch.float64


def problem(n: int = 10, seed: int = 0) -> tuple[LinearClassifier, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = LinearClassifier(torch.randn(3, 12, generator=g, dtype=F64), torch.zeros(3, dtype=F64))
    x = torch.rand((n, 3, 2, 2), generator=g, dtype=F64)
    return model, x, model(x).argmax(1).detach()


class CountingModel(torch.nn.Module):
    """A linear model that counts its forward passes."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def hand_result(l2: list[float], success: list[bool], clean_ok: list[bool], status: list[str]) -> AttackResult:
    n = len(l2)
    label = torch.zeros(n, dtype=torch.int64)
    clean_pred = torch.tensor([0 if ok else 1 for ok in clean_ok])
    succ = torch.tensor(success)
    t = torch.tensor(l2, dtype=F64)
    return AttackResult(
        attack="pgd", norm="l2", eps=1.0, target_mode="untargeted", minimal=False, fixed_budget=True, seed=0,
        params={}, index=torch.arange(n), label=label, target=torch.full((n,), -1), clean_pred=clean_pred,
        adv_pred=torch.where(succ, 2, clean_pred), success=succ, status=status, l0=t, l1=t, l2=t, linf=t,
        eps_found=torch.ones(n, dtype=F64), forward_passes=torch.ones(n, dtype=torch.int64),
        gradient_passes=torch.ones(n, dtype=torch.int64), seconds=0.0,
    )  # fmt: skip


def test_the_summary_median_averages_the_two_middle_values_of_an_even_count() -> None:
    res = hand_result([0.4, 0.1, 0.3, 0.2, 9.0], [True] * 4 + [False], [True] * 5, ["success"] * 4 + ["failure"])
    s = res.summary()
    assert s["median_l2"] == pytest.approx(0.25)  # torch's lower median would say 0.2
    assert s["median_l2"] == pytest.approx(statistics.median([0.4, 0.1, 0.3, 0.2]))
    assert s["mean_l2"] == pytest.approx(0.25)


def test_a_clever_median_averages_the_two_middle_scores() -> None:
    model, x, y = problem(n=4, seed=3)
    res = clever(model, x, y, norm="l2", batches=4, samples=8)
    scores = res.score.tolist()
    assert len(set(scores)) == 4
    assert res.median == pytest.approx(statistics.median(scores), rel=1e-12)
    assert res.summary()["median"] == res.median


def test_correct_robust_and_won_are_computed_once_and_written_as_columns() -> None:
    # 0: won; 1: failure; 2: misclassified, "fooled" (not won); 3: numerical error (neither correct nor robust)
    res = hand_result(
        [0.1, 0.5, 0.2, 0.3],
        [True, False, True, False],
        [True, True, False, True],
        ["success", "failure", "misclassified", "numerical_error"],
    )
    assert res.correct.tolist() == [True, True, False, False]
    assert res.robust.tolist() == [False, True, False, False]
    assert res.won.tolist() == [True, False, False, False]
    cols = res.to_columns()
    assert cols["correct"] == res.correct.tolist() and cols["robust"] == res.robust.tolist()
    assert cols["won"] == res.won.tolist() and cols["fixed_budget"] == [True] * 4
    assert "schema_version" not in cols  # the store owns record schemas and their versions
    s = res.summary()
    assert (s["n_correct"], s["n_success"], s["success_rate"], s["median_l2"]) == (2, 1, 0.5, pytest.approx(0.1))


def test_every_rate_carries_its_denominator_and_wilson_interval() -> None:
    model, x, y = problem(n=12)
    y = y.clone()
    y[:2] = (y[:2] + 1) % 3  # two images already misclassified
    s = attack(model, x, y, "pgd", norm="l2", eps=0.3).summary()
    n_correct, n_won = 10, s["n_success"]
    assert s["rates"]["success_rate"] == Rate(n_won, n_correct).to_dict()
    assert s["rates"]["clean_accuracy"] == Rate(10, 12).to_dict()
    robust_k = s["rates"]["robust_accuracy"]["k"]
    assert s["rates"]["robust_accuracy"] == Rate(robust_k, 12).to_dict()
    for name in ("success_rate", "clean_accuracy", "robust_accuracy"):
        assert s[name] == s["rates"][name]["value"]  # the point estimates stay under their old keys
        low, high = s["rates"][name]["low"], s["rates"][name]["high"]
        assert low <= s[name] <= high


@pytest.mark.parametrize(
    ("name", "kwargs", "fixed"),
    [("pgd", {}, True), ("pgd", {"minimal": True}, False), ("cw", {"steps": 10, "search_steps": 3}, False)],
)
def test_fixed_budget_comes_from_the_method_and_the_minimal_search(name: str, kwargs: dict, fixed: bool) -> None:
    model, x, y = problem(n=4)
    res = attack(model, x, y, name, **kwargs)
    assert res.fixed_budget is fixed and res.to_columns()["fixed_budget"] == [fixed] * 4


def test_an_unknown_parameter_names_the_close_match_and_the_valid_keys() -> None:
    message = r"unknown parameter 'restart' for attack 'pgd'\. Did you mean: restarts\?"
    with pytest.raises(ConfigError, match=message) as e:
        check_params("pgd", {"restart": 5})
    assert "warm_start" in str(e.value) and "l1_sparsity" in str(e.value) and "momentum" in str(e.value)
    with pytest.raises(ConfigError, match="Did you mean: search_steps"):
        check_params("cw", {"search_step": 5})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pgd", {"restarts": "abc"}, "parameter 'restarts' of attack 'pgd' must be an integer, got 'abc'"),
        ("pgd", {"restarts": True}, "parameter 'restarts' of attack 'pgd' must be an integer, got True"),
        ("pgd", {"momentum": "0.9"}, "parameter 'momentum' of attack 'pgd' must be a number, got '0.9'"),
        ("pgd", {"random_start": 1}, "parameter 'random_start' of attack 'pgd' must be true or false, got 1"),
        ("pgd", {"loss": 3}, "parameter 'loss' of attack 'pgd' must be a string, got 3"),
        ("pgd", {"tolerance": "abc"}, "parameter 'tolerance' of attack 'pgd' must be a number, got 'abc'"),
        ("ead", {"beta": [1]}, r"parameter 'beta' of attack 'ead' must be a number, got \[1\]"),
        ("pgd", {"restarts": 0}, "restarts must be >= 1"),
    ],
)
def test_a_wrong_parameter_is_refused_before_anything_runs(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_params(name, params)
    model, x, y = problem(n=3)
    counting = CountingModel(model)
    with pytest.raises(ConfigError, match=message):
        attack(counting, x, y, name, **params)
    assert counting.calls == 0


def test_an_argument_of_attack_is_not_a_parameter() -> None:
    with pytest.raises(ConfigError, match=r"seed is an argument of attack\(\) .*not an attack parameter"):
        check_params("pgd", {"seed": 3})
    with pytest.raises(ConfigError, match=r"batch_size, norm are arguments of attack\(\)"):
        check_params("cw", {"norm": "l2", "batch_size": 3})


def test_check_params_returns_the_resolved_configuration() -> None:
    cfg = check_params("pgd", {"restarts": 3, "kappa": 1}, steps=7)
    assert (cfg["restarts"], cfg["steps"], cfg["kappa"], cfg["rel_step"]) == (3, 7, 1, 2.5)
    assert check_params("ead", {"beta": 0.01, "warm_start": True})["warm_start"] is True
    with pytest.raises(ConfigError, match="warm_start applies to the minimal search"):
        check_params("pgd", {"warm_start": True})
    assert check_params("pgd", {"warm_start": True}, minimal=True) == check_params("pgd", minimal=True)


def test_a_starved_ead_says_it_did_not_converge_instead_of_reporting_full_robustness(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model, x, y = problem()
    with caplog.at_level(logging.WARNING, logger="robustlab.attacks"):
        starved = attack(model, x, y, "ead", steps=20, search_steps=2)
    assert starved.summary()["success_rate"] == 0.0
    [warning] = starved.summary()["warnings"]
    assert warning.startswith("ead did not converge on 10 of 10 attacked images")
    assert "search_steps=2" in warning and "c = 0.01" in warning and "10 of them have no adversarial example" in warning
    assert [r.getMessage() for r in caplog.records] == [warning]
    full = attack(model, x, y, "ead")
    assert full.summary()["success_rate"] == 1.0 and full.warnings == []


def test_saved_adversarials_carry_the_dataset_rows_with_the_usual_permissions(tmp_path: Path) -> None:
    model, x, y = problem(n=5)
    rows = torch.tensor([40, 3, 17, 8, 100])
    res = attack(model, x, y, "pgd", norm="l2", eps=0.5, index=rows, keep_adversarials=True)
    assert torch.equal(res.index, rows) and res.to_columns()["index"] == rows.tolist()
    old = os.umask(0o022)
    try:
        path = res.save_adversarials(tmp_path / "adv" / "pgd.safetensors")
    finally:
        os.umask(old)
    assert torch.equal(load_file(str(path))["index"], rows)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["pgd.safetensors"]  # no temporary file left


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    model, x, y = problem(n=3)
    res = attack(model, x, y, "fgsm", eps=0.1, keep_adversarials=True)

    def half_written(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        res.save_adversarials(tmp_path / "a.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "index", [torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1, 2]), torch.tensor([True, False, True]), [0, 1, 2]]
)
def test_a_wrong_index_is_refused_before_anything_runs(index: object) -> None:
    model, x, y = problem(n=3)
    counting = CountingModel(model)
    with pytest.raises(ConfigError, match=r"index must be an integer tensor of shape \(3,\)"):
        attack(counting, x, y, "fgsm", eps=0.1, index=index)  # type: ignore[arg-type]
    assert counting.calls == 0
