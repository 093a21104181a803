"""``robustlab attack`` with AutoAttack and its attacks: ``--version``, ``--loss``, the cascade in ``--json`` and in
the table, flags with their messages, and one-line errors (exit code 2, nothing on stdout, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from robustlab.attacks import ATTACKS
from robustlab.attacks import _autoattack as aa
from robustlab.cli import app

runner = CliRunner()
MODELS = Path(__file__).resolve().parents[1] / "bench" / "autoattack_models.py"
TEMPLATE, DROPOUT, NAN = (f"{MODELS}:make_{m}" for m in ("template", "dropout", "nan"))
SMALL = [("ifgsm", "ifgsm", {}), ("pgd", "pgd", {"restarts": 1})]


def _base(model: str = TEMPLATE, n: int = 8) -> list[str]:
    return ["attack", "--model", model, "--dataset", "cifar10", "--n", str(n), "--eps", "4/255"]


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)  # exactly one JSON document on stdout
    return out


@pytest.fixture
def small_cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aa.VERSIONS, "standard", {"linf": SMALL})


def test_json_of_the_real_standard_cascade(data_dir: Path) -> None:
    out = _json([*_base(), "--attack", "autoattack", "--steps", "2", "-p", "queries=20", "--json"])
    assert out["n"] == 8 and out["version"] == "standard" and out["seed"] == 0
    assert isinstance(out["flags"], list) and all(isinstance(c, str) for c in out["flags"])
    cascade = out["cascade"]
    assert [c["attack"] for c in cascade] == [label for label, _, _ in aa.VERSIONS["standard"]["linf"]]
    assert all({"attack", "robust_accuracy_after", "seconds"} <= set(c) for c in cascade)
    after = [c["robust_accuracy_after"] for c in cascade]
    assert after == sorted(after, reverse=True) and after[0] <= out["clean_accuracy"]
    assert after[-1] == pytest.approx(out["robust_accuracy"])  # a deterministic model: the evaluator agrees
    assert out["rates"]["robust_accuracy"]["k"] == round(out["robust_accuracy"] * 8)


@pytest.mark.usefixtures("small_cascade")
def test_table_shows_the_cascade_and_each_flag_with_its_message(data_dir: Path) -> None:
    result = runner.invoke(app, [*_base(DROPOUT), "--attack", "autoattack", "--steps", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "autoattack standard (linf" in text and "cascade" in text and "robust accuracy after" in text
    assert "ifgsm" in text and "pgd" in text
    assert "flag stochastic-model: two forward passes" in text and "evaluate it with version='rand'" in text


@pytest.mark.skipif(
    "eot_iter" not in ATTACKS.get("apgd").param_names(),
    reason="version rand needs APGD's eot_iter setting, not implemented yet",
)
def test_rand_reports_the_expected_robust_accuracy_and_does_not_flag_randomness(data_dir: Path) -> None:
    out = _json([*_base(DROPOUT, n=6), "--attack", "autoattack", "--version", "rand", "--steps", "1", "--json"])
    assert out["version"] == "rand" and "stochastic-model" not in out["flags"]
    assert [c["attack"] for c in out["cascade"]] == ["apgd-ce", "apgd-dlr"]
    e = out["expected_robust_accuracy"]
    assert e["draws"] == 20 and e["low"] <= e["value"] <= e["high"] and e["n"] == 6


@pytest.mark.usefixtures("small_cascade")
def test_nan_logits_are_numerical_errors_and_never_robust(data_dir: Path) -> None:
    from robustlab.data import load_dataset

    out = _json([*_base(NAN, n=16), "--attack", "autoattack", "--steps", "2", "--json"])
    images = load_dataset("cifar10", "test", data_dir).subset(16, 0).images()
    bright = int((images.flatten(1).mean(1) > 0.5).sum())  # the images the model answers with NaN
    assert 0 < bright < 16 and out["n_numerical_error"] == bright
    assert out["rates"]["robust_accuracy"]["k"] <= 16 - bright
    assert out["rates"]["clean_accuracy"]["k"] <= 16 - bright


def test_loss_reaches_the_attacks_that_have_one(data_dir: Path) -> None:
    apgd = _json([*_base(n=4), "--attack", "apgd", "--loss", "dlr", "--steps", "2", "--json"])
    assert apgd["params"]["loss"] == "dlr" and apgd["flags"] == []
    pgd = _json([*_base(n=4), "--attack", "pgd", "--loss", "ce", "--steps", "2", "--json"])
    assert pgd["params"]["loss"] == "ce"
    assert {"n", "clean_accuracy", "robust_accuracy", "flags"} <= set(pgd)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--attack", "autoattack", "--version", "standrd"],
            "unknown autoattack version 'standrd'. Did you mean 'standard'?",
        ),
        (["--attack", "autoatack"], "unknown attack 'autoatack'. Did you mean: autoattack?"),
        (["--attack", "autoattack", "--norm", "linff"], "unknown norm 'linff'. Did you mean: linf?"),
        (
            ["--attack", "autoattack", "--version", "plus", "--norm", "l1"],
            ("'plus'", "linf, l2", "'l1'"),
        ),
        (
            ["--attack", "autoattack", "--version", "rand", "--norm", "l1"],
            ("'rand'", "linf, l2", "'l1'"),
        ),
        (["--attack", "pgd", "--version", "standard"], "--version applies to --attack autoattack only, not 'pgd'"),
        (["--attack", "autoattack", "--loss", "dlr"], "--loss applies to attacks with a loss setting"),
        (["--attack", "apgd", "--loss", "margin"], "loss of apgd must be one of ce, dlr, got 'margin'"),
        (["--attack", "pgd", "--loss", "kl"], "--loss kl is TRADES' training loss"),
        (["--attack", "apgd", "-p", "loss=dlr"], "--param loss: use the command's own option --loss"),
        (["--attack", "autoattack", "-p", "version=plus"], "--param version: use the command's own option --version"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str], fragment: str | tuple[str, ...], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr("robustlab.cli._attack.load_inputs", lambda *a, **k: loaded.append("x"))
    out = tmp_path / "adv.safetensors"
    result = runner.invoke(app, [*_base(), *args, "--save-adversarials", str(out)])
    assert result.exit_code == 2, result.output
    parts = (fragment,) if isinstance(fragment, str) else fragment  # e.g. the version, the norms it covers, the norm
    assert result.stderr.strip().count("\n") == 0 and all(p in result.stderr for p in parts)
    assert result.stdout == "" and not out.exists() and list(tmp_path.iterdir()) == []
    assert loaded == []  # refused before any data or model was loaded


def test_the_flags_checked_are_the_models_own(data_dir: Path, small_cascade: None) -> None:
    """The same model without the forced dropout raises no randomness flag (the flag is the model's, not noise)."""
    out = _json([*_base(), "--attack", "autoattack", "--steps", "2", "--json"])
    assert "stochastic-model" not in out["flags"]
    torch.manual_seed(0)
    noisy = _json([*_base(DROPOUT), "--attack", "autoattack", "--steps", "2", "--json"])
    assert "stochastic-model" in noisy["flags"]
    detail = next(f for f in noisy["flag_details"] if f["code"] == "stochastic-model")
    assert "version='rand'" in detail["message"]
