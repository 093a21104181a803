"""``robustlab audit``: the JSON (verdict, flags as ``{code, evidence}``, robust accuracy per attack), the table,
progress on stderr, and one-line errors (exit code 2, nothing on stdout) for bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from robustlab.cli import app

from . import planted as P

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
PLANTED = Path(__file__).with_name("planted.py")
#: Small budgets: these tests are about the command, test_audit.py about the numbers.
BUDGET = [
    *("-p", "steps_short=5", "-p", "steps_long=10", "-p", "apgd_steps=10"),
    "-p",
    "restarts=1",
    "-p",
    "square_queries=30",
]


@pytest.fixture
def toy(tmp_path: Path, data_dir: Path) -> str:
    """60 images of the planted task as an ``npz:`` dataset."""
    return f"npz:{P.write_npz(tmp_path / 'toy.npz', 60, seed=3)}"


def _args(toy: str, model: str = "make_quantised", *extra: str) -> list[str]:
    return ["audit", "--model", f"{PLANTED}:{model}", "--dataset", toy, "--eps", "0.1", *BUDGET, *extra]


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)  # exactly one JSON document on stdout
    return out


def _fails(args: list[str], *fragments: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in " ".join(result.stderr.split()), result.stderr


def test_json_holds_the_verdict_the_flags_and_robust_accuracy_per_attack(toy: str) -> None:
    out = _json(_args(toy, "make_quantised", "--surrogate", f"{PLANTED}:make_mlp"))
    assert out["verdict"].startswith("masking suspected") and out["masking_suspected"] is True
    flags = {f["code"]: f for f in out["flags"]}
    assert {"zero-gradients", "non-differentiable-layers"} <= set(flags)
    assert all(isinstance(f["evidence"], str) and f["evidence"] for f in out["flags"])
    accuracy = out["robust_accuracy"]
    assert accuracy["pgd-5"] == 1.0 and accuracy["bpda-pgd-10"] < 1.0
    assert out["honest"]["robust_accuracy"] <= accuracy["bpda-pgd-10"]
    assert out["n"] == 60 and out["eps"] == 0.1 and out["norm"] == "linf" and out["surrogate"].endswith("make_mlp")
    assert {r["attack"] for r in out["rungs"]} >= {"fgsm", "square", "transfer-pgd-10", "guided-pgd-10"}


def test_the_table_shows_the_ladder_each_flag_with_its_fix_and_the_verdict_and_progress_goes_to_stderr(
    toy: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, _args(toy, "make_scaled"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "pgd-10-margin" in text and "robust accuracy" in text
    assert "flag losses-disagree: attacks with the" in text and "fix: report attacks with a scale-invariant" in text
    assert "skipped transfer-pgd-10: no surrogate given" in text
    assert "verdict: masking suspected" in text
    assert "audit pgd-5@large" in result.stderr  # the plain progress lines name the attack running
    # the warning, logged on stderr at once, gives the interval 60 points allow
    assert any(
        r.getMessage().startswith("only 60 points: a robust accuracy near 50 % is known to within 12.3")
        for r in caplog.records
    )


def test_gradients_unavailable_everywhere_runs_the_gradient_free_checks_and_says_so(
    toy: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, [*_args(toy, "make_threshold"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "gradients-unavailable" in {f["code"] for f in out["flags"]}
    assert "square" in out["robust_accuracy"] and "pgd-5" not in out["robust_accuracy"]
    assert "gradients unavailable: only gradient-free checks and BPDA ran" in out["verdict"]
    assert any("ran only the gradient-free checks" in r.getMessage() for r in caplog.records)  # logged on stderr


@pytest.mark.parametrize("eps", ["0", "0/255", "-1"])
def test_eps_zero_or_negative_is_a_one_line_error(toy: str, eps: str) -> None:
    args = _args(toy)
    args[args.index("--eps") + 1] = eps
    _fails(args, "eps")


def test_a_surrogate_with_another_number_of_classes_is_a_one_line_error(toy: str) -> None:
    _fails(
        _args(toy, "make_mlp", "--surrogate", f"{PLANTED}:make_other_classes"),
        "returns outputs of shape (2, 5), the model has 10 classes",
    )


def test_a_surrogate_for_other_images_is_a_one_line_error(toy: str) -> None:
    _fails(  # a zoo model of CIFAR-10: 3x32x32 images, not the task's 1x8x8
        _args(toy, "make_mlp", "--surrogate", "vgg8-w25"),
        "the surrogate vgg8-w25 takes inputs of shape (3, 32, 32), the data has (1, 8, 8)",
    )
    _fails(_args(toy, "make_mlp", "--surrogate", f"{PLANTED}:make_other_shape"), "--surrogate", "(1, 8, 8)")


def test_an_unknown_budget_setting_is_a_one_line_error_with_close_matches(toy: str) -> None:
    _fails([*_args(toy), "-p", "step_long=5"], "unknown audit setting 'step_long'", "Did you mean: steps_long")
    _fails([*_args(toy), "-p", "restarts=0"], "restarts must be an integer >= 1")
