"""``robustlab attack``: one JSON object with the issue's fields; errors exit 2 with a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()
BASE = ["attack", "--model", "resnet20-akamaster", "--dataset", "cifar10", "--n", "6"]


def test_attack_json_holds_the_summary(data_dir: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "adv.safetensors"
    result = runner.invoke(
        app, [*BASE, "--attack", "fgsm", "--eps", "8/255", "--json", "--save-adversarials", str(out_file)]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON document on stdout
    for key in (
        "n",
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
        "seconds",
    ):
        assert key in out
    assert out["n"] == 6 and out["attack"] == "fgsm" and out["norm"] == "linf"
    assert out["eps"] == pytest.approx(8 / 255)
    assert out["robust_accuracy"] <= out["clean_accuracy"]
    assert out["median_linf"] is None or out["median_linf"] <= 8 / 255 + 1e-6
    assert load_file(str(out_file))["adversarials"].shape == (6, 3, 32, 32)


def test_saved_adversarials_carry_the_dataset_rows_of_the_subset(data_dir: Path, tmp_path: Path) -> None:
    from robustlab.data import load_dataset

    out_file = tmp_path / "adv.safetensors"
    result = runner.invoke(app, [*BASE, "--attack", "fgsm", "--seed", "3", "--save-adversarials", str(out_file)])
    assert result.exit_code == 0, result.output
    rows = load_dataset("cifar10", "test", data_dir).subset(6, 3).indices
    assert rows.tolist() != list(range(6))  # a seeded subset: positions and rows differ
    assert load_file(str(out_file))["index"].tolist() == rows.tolist()


def test_attack_table_output(data_dir: Path) -> None:
    result = runner.invoke(app, [*BASE, "--attack", "pgd", "--steps", "2", "--target", "top2", "-p", "restarts=1"])
    assert result.exit_code == 0, result.output
    assert "robust_accuracy" in result.stdout and "success_rate" in result.stdout


def test_attack_table_names_the_search_the_target_and_the_passes_saved(data_dir: Path) -> None:
    args = [*BASE, "--attack", "ifgsm", "--steps", "2", "--minimal", "--eps", "8/255", "--target", "least-likely"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the title may wrap
    assert "minimal search from eps=0.03137" in text
    assert "least-likely target" in text
    assert "gradient_passes_saved" in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--attack", "pgdd"], "Did you mean: pgd"),
        (["--attack", "pgd", "--eps", "-8/255"], "eps must be >= 0"),
        (["--attack", "pgd", "--steps", "0"], "steps must be an integer >= 1"),
        (["--attack", "cw", "--norm", "linf"], "does not support norm 'linf'"),
        (["--attack", "pgd", "-p", "restart=2"], "Did you mean: restarts"),
        (["--attack", "pgd", "-p", "restarts"], "--param expects KEY=VALUE"),
        (["--attack", "pgd", "-p", "seed=3"], "--param seed: use the command's own option --seed"),
        (["--attack", "pgd", "-p", "progress=1"], "--param progress: not an attack setting"),
        (["--attack", "pgd", "-p", "index=3"], "--param index: not an attack setting"),
    ],
)
def test_attack_errors_exit_2_with_a_message(data_dir: Path, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_a_surrogate_that_is_the_model_itself_gives_the_white_box_attack_exactly(data_dir: Path) -> None:
    args = [*BASE, "--attack", "pgd", "--eps", "1/255", "--steps", "5", "--json"]
    alone = runner.invoke(app, args)
    guided = runner.invoke(app, [*args, "--surrogate", "resnet20-akamaster"])
    assert alone.exit_code == 0 and guided.exit_code == 0, alone.output + guided.output
    a, g = json.loads(alone.stdout), json.loads(guided.stdout)
    assert g["surrogate"] == "resnet20-akamaster" and a["surrogate"] is None
    for key in ("robust_accuracy", "median_linf", "gradient_passes"):
        assert g[key] == a[key]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--attack", "square", "--surrogate", "vgg8-w25"], "square takes no surrogate"),
        (["--attack", "gpga"], "gpga is guided by a surrogate model"),
        (["--attack", "pgd", "--surrogate", "vgg8-w2"], "--surrogate vgg8-w2: unknown model 'vgg8-w2'. Did you mean"),
    ],
)
def test_surrogate_errors_are_one_line_exit_2(data_dir: Path, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code == 2
    assert fragment in result.output and len(result.output.strip().splitlines()) == 1
