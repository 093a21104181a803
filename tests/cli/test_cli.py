"""The command line: one JSON object on stdout with --json, clear errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout


def test_eval_json_on_a_subset(data_dir: Path) -> None:
    out = _json(["eval", "--model", "resnet20-akamaster", "--dataset", "cifar10", "--n", "50", "--json"])
    assert out["n"] == 50 and out["subset"] is True and out["seed"] == 0
    assert out["correct"] == round(out["accuracy"] * 50) and out["accuracy"] > 0.8


def test_zoo_list_json_includes_published() -> None:
    names = {m["name"] for m in _json(["zoo", "list", "--json"])["models"]}
    assert "resnet56-akamaster" in names


def test_data_check_json(data_dir: Path) -> None:
    out = _json(["data", "check", "--json"])
    assert out["ok"] is True
    assert {f["dataset"] for f in out["files"] if f["status"] == "ok"} >= {"mnist", "fashion-mnist", "cifar10"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "--model", "resnet20-akamastr", "--n", "5"], "Did you mean: resnet20-akamaster"),
        (["eval", "--model", "resnet20-akamaster", "--dataset", "cifar100", "--n", "5"], "unknown dataset"),
        (["eval", "--model", "resnet20-akamaster", "--data", "/nonexistent/dir", "--n", "5"], "does not exist"),
    ],
)
def test_user_errors_exit_2_with_message(args: list[str], fragment: str, data_dir: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_train_then_eval_the_exported_weights(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (rng.random((300, 8, 8, 3)) * 60 + y[:, None, None, None] * 90).astype(np.uint8)
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    ds = f"npz:{tmp_path / 'toy.npz'}"
    out = _json(
        [
            "train",
            "--arch",
            "mlp",
            "--arch-kwargs",
            '{"image_size": 8, "hidden": [32]}',
            "--dataset",
            ds,
            "--epochs",
            "3",
            "--batch-size",
            "50",
            "--lr",
            "0.05",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    # One npz file has no held-out split: the accuracy is on the training images and named so.
    assert "test_accuracy" not in out
    assert out["train_accuracy"] > 0.9 and out["recipe"]["epochs"] == 3
    sidecar = json.loads((tmp_path / "run" / "model.json").read_text())
    assert "test_accuracy" not in sidecar["metrics"] and sidecar["metrics"]["train_accuracy"] == out["train_accuracy"]
    again = _json(["eval", "--model", out["weights"], "--dataset", ds, "--json"])
    assert again["accuracy"] == out["train_accuracy"]
    bad = runner.invoke(app, ["train", "--arch", "mlp", "--arch-kwargs", "{depth", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not valid JSON" in bad.stderr
