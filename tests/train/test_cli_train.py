"""``robustlab train`` with adversarial methods: --json per-epoch metrics, progress lines in a log, and every bad
input a one-line error with exit code 2 and no run directory left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustlab.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _args(toy: str, out: Path, *extra: str) -> list[str]:
    base = ["train", "--arch", "mlp", "--arch-kwargs", '{"image_size": 8, "hidden": [16]}', "--dataset", toy]
    # the audit that ends an adversarial run is tested in test_train_audit.py
    return [*base, "--epochs", "2", "--batch-size", "40", "--lr", "0.05", "--out", str(out), "--no-audit", *extra]


def _error(result: object) -> str:
    """The one error line (exit code 2)."""
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_json_has_per_epoch_metrics_and_the_model_path(toy: str, tmp_path: Path) -> None:
    result = runner.invoke(app, _args(toy, tmp_path / "run", "--method", "pgd-at", "--eps", "8/255", "--steps", "2"))
    assert result.exit_code == 0, result.output
    # progress to a non-terminal: plain lines per epoch with the inner attack's cost
    assert "epoch 1/2 done" in result.stderr and "inner attack" in result.stderr
    out = json.loads(
        runner.invoke(
            app, [*_args(toy, tmp_path / "run", "--method", "pgd-at", "--eps", "8/255", "--steps", "2"), "--json"]
        ).stdout
    )
    assert Path(out["weights"]).is_file() and out["weights"].endswith("model.safetensors")
    assert [e["epoch"] for e in out["epochs"]] == [1, 2]
    assert all(e["inner_passes"] == 2 * 120 for e in out["epochs"])
    assert out["recipe"]["method"] == "pgd-at" and out["recipe"]["method_params"]["eps"] == pytest.approx(8 / 255)
    assert out["recipe"]["label_smoothing"] == 0.0
    assert out["recipe"]["memory_format"] == "contiguous"  # auto: an MLP has no convolution to gain from it


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--method", "pgd-at", "--eps", "0"], "--eps must be > 0"),
        (["--method", "pgd-at", "--eps", "-0.1"], "eps must be >= 0"),
        (["--method", "trades", "--eps", "0.1", "--steps", "0"], "--steps must be > 0"),
        (["--method", "pgd-at", "--eps", "0.1", "--steps", "-3"], "--steps must be > 0"),
        (["--method", "pgd-at"], "pgd-at needs eps"),
        (["--method", "pgd_at", "--eps", "0.1"], "Did you mean: pgd-at"),
        (["--method", "fgsm", "--eps", "0.1"], "unknown training method 'fgsm'"),
        (["--method", "fgsm-rs", "--eps", "0.1", "--steps", "3"], "fgsm-rs has no setting 'steps'"),
        (["--method", "pgd-at", "--eps", "0.1", "--optimizer", "rmsprop"], "optimizer must be one of sgd, adam"),
        (["--method", "pgd-at", "--eps", "abc"], "cannot read eps"),
        (["--method", "pgd-at", "--eps", "0.1", "--eps-ramp", "2"], "eps_ramp must be in [0, 1]"),
        (["--method", "trades", "--eps", "0.1", "--eps-ramp", "0.3"], "trades has no setting 'eps_ramp'"),
        (["--method", "dial", "--eps", "0.1", "--set", "kind"], "--set takes KEY=VALUE, got 'kind'"),
        (["--method", "dial", "--eps", "0.1", "--set", "knd=ce"], "dial has no setting 'knd'. Did you mean: kind?"),
        (["--method", "multibn", "--arch-kwargs", '{"norm_layer": "dubin"}'], "multibn builds its own model layout"),
        (["--memory-format", "nhwc"], "memory_format must be one of auto, channels_last, contiguous; got 'nhwc'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(
    toy: str, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    result = runner.invoke(app, _args(toy, tmp_path / "run", *extra))
    assert fragment in _error(result)
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_method_or_eps_is_refused(toy: str, tmp_path: Path) -> None:
    first = runner.invoke(app, _args(toy, tmp_path / "run", "--method", "fgsm-rs", "--eps", "0.1", "--json"))
    assert first.exit_code == 0, first.output
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    line = _error(runner.invoke(app, _args(toy, tmp_path / "run", "--method", "fgsm-rs", "--eps", "0.2")))
    assert "changed: method_params.eps (0.1 → 0.2)" in line
    line = _error(runner.invoke(app, _args(toy, tmp_path / "run", "--method", "pgd-at", "--eps", "0.1")))
    assert "method (fgsm-rs → pgd-at)" in line
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_label_smoothing_with_an_adversarial_method_warns(toy: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app, _args(toy, tmp_path / "run", "--method", "fgsm-rs", "--eps", "0.1", "--label-smoothing", "0.1")
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and "masks gradients" in warned[0]


def test_a_nan_loss_is_a_clear_error(toy: str, tmp_path: Path) -> None:
    line = _error(runner.invoke(app, _args(toy, tmp_path / "run", "--lr", "1e30", "--schedule", "constant")))
    assert "the training loss became" in line and "no epoch had finished" in line and "--lr" in line
    assert not (tmp_path / "run").exists()
