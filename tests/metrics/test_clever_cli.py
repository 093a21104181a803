"""``robustlab clever``: one JSON object with mean, median, per-input scores and seconds; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()
BASE = ["clever", "--model", "resnet20-akamaster", "--dataset", "cifar10", "--n", "2", "--batches", "3"]


def test_clever_json(data_dir: Path) -> None:
    result = runner.invoke(app, [*BASE, "--samples", "4", "--norm", "linf", "--target", "top2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert out["n"] == 2 and out["norm"] == "linf" and out["target"] == "top2" and out["radius"] == 0.1
    assert len(out["scores"]) == 2 and all(0 <= s <= 0.1 for s in out["scores"])
    assert min(out["scores"]) <= out["median"] <= max(out["scores"])
    assert out["mean"] == sum(out["scores"]) / 2 and out["seconds"] > 0
    assert out["gradient_passes"] == 2 * 3 * 4


def test_clever_bad_radius_exits_2_with_message(data_dir: Path) -> None:
    result = runner.invoke(app, [*BASE, "--radius", "0"])
    assert result.exit_code == 2
    assert "radius must be a finite number > 0" in " ".join(result.stderr.split())
    assert result.stdout == ""
