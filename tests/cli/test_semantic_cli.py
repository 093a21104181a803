"""``robustlab semantic``: the JSON (rates with Wilson intervals, the necessity histogram with its denominators, per
class with the dataset's class names, the threat model, costs), the table, progress on stderr, the grid of examples
and the ``--out`` folder, and one-line errors (exit code 2, nothing on stdout, nothing written) for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from robustlab.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
TESTS = Path(__file__).resolve().parents[1]
TEMPLATE = f"{TESTS / 'bench' / 'tiny_models.py'}:make_a"  # class means of CIFAR-10: about a third right
GREY = f"{Path(__file__).with_name('semantic_models.py')}:make_grey"
#: Small budgets: these tests are about the command; the attack's numbers have tests of their own.
BASE = [
    *("semantic", "--model", TEMPLATE, "--dataset", "cifar10", "--n", "12", "--steps", "2", "--restarts", "0"),
    *("-p", "grid=3", "--attributes", "hue,brightness,rotation", "--batch-size", "16"),
]
PNG = b"\x89PNG\r\n\x1a\n"


def _fails(args: list[str], *fragments: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in " ".join(result.stderr.split()), result.stderr


def test_json_holds_rates_histograms_per_class_threat_and_costs_and_writes_the_grid_and_out(
    data_dir: Path, tmp_path: Path
) -> None:
    grid, out_dir = tmp_path / "figs" / "grid.png", tmp_path / "out"
    result = runner.invoke(app, [*BASE, "--range", "hue=-pi/4:pi/4", "--pixel-eps", "1/255", "--json",
                                 "--grid-png", str(grid), "--out", str(out_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert out["n"] == 12 and out["subset"] is True
    for name in ("clean_accuracy", "robust_accuracy", "success_rate"):
        r = out["rates"][name]
        assert out[name] == r["value"] and r["low"] <= r["value"] <= r["high"] and {"k", "n"} <= set(r)
    assert out["rates"]["success_rate"]["n"] == out["n_correct"] and out["n_success"] > 0

    h = out["histogram"]
    assert h["method"] == "necessity" and set(h["share"]) == {"hue", "brightness", "rotation"}
    assert h["n"] == out["n_success"] and all(d <= h["n"] for d in h["denominator"].values())
    assert sum(v for v in h["share"].values() if v is not None) == pytest.approx(1.0)
    assert all(h["count"][a] == h["rates"][a]["k"] for a in h["share"])
    assert set(out["histograms"]) == {"necessity", "sensitivity"}
    assert out["histograms"]["sensitivity"]["n"] == out["n_correct"]
    assert set(out["single_attribute"]) == {"hue", "brightness", "rotation"}
    cifar = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    assert set(out["per_class"]) <= cifar and sum(c["n"] for c in out["per_class"].values()) == 12
    assert sum(c["n_success"] for c in out["per_class"].values()) == out["n_success"]

    t = out["threat"]
    assert t["preset"] == "mild" and t["attributes"] == ["rotation", "hue", "brightness"]  # rendering order
    assert t["ranges"]["hue"] == pytest.approx([-0.7853981634, 0.7853981634]) and t["padding"] == "reflection"
    assert t["pixel_eps"] == pytest.approx(1 / 255)
    assert out["config"]["steps"] == 2 and out["config"]["grid"] == 3 and out["config"]["shapley"] is False
    assert out["model_calls"] == out["forward_passes"] + out["gradient_passes"] > 0 and out["seconds"] > 0

    assert out["grid_png"] == str(grid) and grid.read_bytes().startswith(PNG)
    assert out["out"] == str(out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["grid.png", "records.parquet", "semantic.json"]
    saved = json.loads((out_dir / "semantic.json").read_text())
    assert saved["histogram"] == out["histogram"] and saved["rates"] == out["rates"]
    records = pq.read_table(out_dir / "records.parquet").to_pylist()
    assert len(records) == 12 and sum(r["won"] for r in records) == out["n_success"]
    assert {"attr_hue", "attr_rotation", "attr_brightness", "undone_by", "pixel_linf"} <= set(records[0])
    assert all(abs(r["attr_hue"]) <= 0.7853981634 + 1e-9 for r in records)


def test_steps_0_runs_the_sweep_alone_with_forward_passes_only(data_dir: Path) -> None:
    result = runner.invoke(app, [*BASE, "--steps", "0", "--pixel-eps", "0", "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    assert out["config"]["steps"] == 0 and out["config"]["grid"] == 3
    assert out["gradient_passes"] == 0 and out["forward_passes"] > 0
    # each image: its clean pass, at most 3 points per attribute, the judging pass (no necessity pass: a success
    # of the sweep moves one attribute)
    assert out["forward_passes"] <= out["n"] * (1 + 3 * 3 + 1)


def test_the_table_shows_each_attribute_and_the_classes_and_progress_goes_to_stderr(data_dir: Path) -> None:
    result = runner.invoke(app, [*BASE, "--pixel-eps", "0"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "fooled alone" in text and "necessity" in text and "share" in text and "no pixel residual" in text
    assert all(a in text for a in ("hue", "brightness", "rotation"))
    assert "robust_accuracy:" in text and "(95 %" in text and "per class" in text and "top attribute" in text
    # not a terminal (a log file, a pipe): plain lines, the last one when the attack finished
    assert "semantic: " in result.stderr and "done in" in result.stderr


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--attributes", "hue,rotaton"], ("unknown attribute 'rotaton'", "Did you mean: rotation")),
        (["--range", "hue=0.5"], ("--range hue", "LOW:HIGH", "'0.5'")),
        (["--range", "hue"], ("--range expects NAME=LOW:HIGH",)),
        (["--range", "hue=a:b"], ("--range hue", "LOW:HIGH")),
        (["--attributes", "saturation", "--range", "saturation=-0.5:1"], ("saturation", "leaves its domain", ">= 0")),
        (["--attributes", "blur", "--range", "blur=0:1"], ("blur", "leaves its domain", "> 0")),
        (["--range", "gamma=0.9:1.1"], ("range is given for 'gamma'", "not among the attributes")),
        (["--pixel-eps", "-1/255"], ("--pixel-eps", "must be >= 0")),
        (["--preset", "mld"], ("unknown semantic preset 'mld'", "Did you mean: mild")),
        (["-p", "grd=5"], ("unknown semantic setting 'grd'", "Did you mean: grid")),
        (["-p", "steps=5"], ("use the command's own option --steps",)),
        (["-p", "loss=kl"], ("loss must be 'margin' or 'ce'",)),
        (["-p", "single_starts=3"], ("single_starts must be true or false",)),
        (["--steps", "-1"], ("--steps",)),
        (["--steps", "0", "-p", "grid=0"], ("steps=0 is the single-attribute sweep alone", "grid >= 2")),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2_and_nothing_written(
    tmp_path: Path, extra: list[str], fragments: tuple[str, ...]
) -> None:
    grid, out_dir = tmp_path / "grid.png", tmp_path / "out"
    _fails([*BASE, *extra, "--grid-png", str(grid), "--out", str(out_dir)], *fragments)
    assert sorted(tmp_path.iterdir()) == []


def test_colour_attributes_on_mnist_are_one_line_and_grey_attributes_work(data_dir: Path, tmp_path: Path) -> None:
    grey = ["semantic", "--model", GREY, "--dataset", "mnist", "--n", "4", "--steps", "1", "--restarts", "0"]
    grid, out_dir = tmp_path / "grid.png", tmp_path / "out"
    _fails([*grey, "--grid-png", str(grid), "--out", str(out_dir)], "hue, saturation need RGB images", "1 channel")
    _fails([*grey, "--attributes", "brightness,hue_hsv"], "hue_hsv needs RGB images")
    assert sorted(tmp_path.iterdir()) == []
    result = runner.invoke(app, [*grey, "-p", "grid=2", "--attributes", "brightness,rotation,blur", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["threat"]["attributes"] == ["rotation", "brightness", "blur"] and out["n"] == 4


def test_an_out_path_that_is_a_file_is_refused_before_the_work(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    _fails([*BASE, "--out", str(tmp_path / "taken")], "--out", "is a file, not a folder")
    _fails([*BASE, "--grid-png", str(tmp_path)], "--grid-png", "is a folder; give a file name")


def test_a_full_disk_while_writing_is_one_line_and_leaves_neither_the_grid_nor_the_folder(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "records.parquet"))

    monkeypatch.setattr(pq, "write_table", full)
    _fails([*BASE, "--grid-png", str(tmp_path / "grid.png"), "--out", str(tmp_path / "out")], "No space left")
    assert sorted(tmp_path.iterdir()) == []  # the grid, written first, is removed again
