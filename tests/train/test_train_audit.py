"""The gradient-masking audit after adversarial training and of the robust zoo: ``robustlab train`` with an
adversarial method writes ``audit.json`` beside its checkpoint (not with ``--no-audit``, never for the standard
method) and shows it; ``robustlab zoo audit --robust`` records the audit's summary in a model's sidecar and the
manifest, and ``zoo list --robust`` shows it; bad input is a one-line error with exit code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from robustlab._io import file_digest
from robustlab._registry import Registry
from robustlab.cli import app
from robustlab.models.spec import ModelSpec
from robustlab.models.weights import save_weights
from robustlab.train import TrainConfig, zoo
from robustlab.train.post_audit import AUDIT_FILE, TRAINING_AUDIT

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _train(toy: str, out: Path, *extra: str) -> list[str]:
    base = ["train", "--arch", "mlp", "--arch-kwargs", '{"image_size": 8, "hidden": [16]}', "--dataset", toy]
    return [*base, "--epochs", "1", "--batch-size", "40", "--lr", "0.05", "--out", str(out), *extra]


ADVERSARIAL = ("--method", "pgd-at", "--eps", "8/255", "--steps", "2", "--monitor-n", "0")


def _error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_an_adversarial_run_ends_with_its_audit_beside_the_checkpoint_and_a_rerun_keeps_it(
    toy: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, [*_train(toy, run, *ADVERSARIAL, "--audit-n", "24"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    a = out["audit"]
    record = json.loads((run / AUDIT_FILE).read_text())
    sidecar = json.loads((run / "model.json").read_text())
    # the audit of these weights, at the training budget, on the first 24 points, with the reduced ladder
    assert record["weights_sha256"] == sidecar["weights"]["sha256"] == file_digest(run / "model.safetensors")
    assert record["eps"] == pytest.approx(8 / 255) and record["norm"] == "linf" and record["n"] == 24
    assert record["points"] == "first 24" and record["config"]["steps_long"] == TRAINING_AUDIT.steps_long
    assert record["data"].endswith("toy.npz/train") and "no held-out split" in record["note"]
    ladder = {r["attack"] for r in record["rungs"]} | {s["attack"] for s in record["skipped"]}
    assert ladder >= {"fgsm", "pgd-20", "pgd-50", "apgd-ce", "square", "transfer-pgd-50"}
    assert record["surrogate"] is None and record["surrogate_choice"]["how"] == "none"  # no zoo model of this data
    assert a["file"] == str(run / AUDIT_FILE) and a["reused"] is False
    assert a["verdict"] == record["verdict"] and a["robust_accuracy"] == record["honest"]["robust_accuracy"]
    assert a["codes"] == [f["code"] for f in record["flags"]]
    assert 0.0 <= a["robust_accuracy"] <= out["train_accuracy"] + 1e-9
    # the same command again: the finished run is not retrained, and its audit of the same weights is kept
    again = runner.invoke(app, _train(toy, run, *ADVERSARIAL, "--audit-n", "24"))
    assert again.exit_code == 0, again.output
    said = " ".join(again.stderr.split())
    assert f"audit (24 points of {record['data']}, linf eps 0.03137): honest robust accuracy" in said
    assert f"audit verdict: {record['verdict']}" in said and "(kept: same weights and settings)" in said
    assert json.loads((run / AUDIT_FILE).read_text()) == record


def test_no_audit_with_no_audit_nor_for_the_standard_method(toy: str, tmp_path: Path) -> None:
    off = runner.invoke(app, [*_train(toy, tmp_path / "off", *ADVERSARIAL, "--no-audit"), "--json"])
    assert off.exit_code == 0, off.output
    assert json.loads(off.stdout)["audit"] is None and not (tmp_path / "off" / AUDIT_FILE).exists()
    std = runner.invoke(app, [*_train(toy, tmp_path / "std", "--monitor-n", "0"), "--json"])
    assert std.exit_code == 0, std.output
    assert json.loads(std.stdout)["audit"] is None and not (tmp_path / "std" / AUDIT_FILE).exists()
    assert (tmp_path / "std" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([*ADVERSARIAL, "--audit-n", "0"], "--audit-n must be >= 1 (points audited), got 0"),
        ([*ADVERSARIAL, "--audit-n", "-5"], "--audit-n must be >= 1"),
        (["--audit"], "--audit audits at the training budget"),
    ],
)
def test_bad_audit_input_is_one_line_exit_2_and_nothing_written(
    toy: str, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    assert fragment in _error(runner.invoke(app, _train(toy, tmp_path / "run", *extra)))
    assert not (tmp_path / "run").exists()


#: One step of everything: these tests are about what is recorded, test_audit.py about the numbers.
BUDGET = [
    *("-p", "steps_short=1", "-p", "steps_long=1", "-p", "apgd_steps=1", "-p", "restarts=1"),
    *("-p", "square_queries=1", "-p", "sweep=2", "-p", "gradient_points=2", "-p", "min_points=1"),
]


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A robust zoo folder with one small (untrained) MNIST model recorded as FGSM-RS at 0.3, and its recipe."""
    recipe = zoo.ZooRecipe(
        "tiny-fgsm-rs",
        "fast_mnist",
        "fast_mnist",
        {"width": 0.25},
        TrainConfig(epochs=1, method="fgsm-rs", method_params={"eps": 0.3}, monitor_n=0),
        dataset="mnist",
        normalize=False,
    )
    registry: Registry[zoo.ZooRecipe] = Registry("robust zoo recipe")
    registry.register(recipe.name, recipe)
    folder = tmp_path / "robust"
    monkeypatch.setattr(zoo, "ROBUST_RECIPES", registry)
    monkeypatch.setattr(zoo, "ROBUST_ZOO_DIR", folder)
    from robustlab.models.loading import assemble

    robust = {"norm": "linf", "eps": 0.3, "method": "fgsm-rs", "pgd20": 0.0, "pgd20_images": 10, "autoattack": 0.0}
    spec = ModelSpec.from_dict(
        {
            **recipe.spec().to_dict(),
            "metrics": {"test_accuracy": 0.1, "robust": robust},
            "recipe": {"method": "fgsm-rs", "seed": 0},
        }
    )
    save_weights(assemble(spec).net, spec, folder / "tiny-fgsm-rs.safetensors")
    zoo.write_manifest(folder)
    return folder


def test_zoo_audit_records_the_summary_in_the_sidecar_and_manifest_and_list_shows_it(
    tiny_zoo: Path, data_dir: Path
) -> None:
    weights = tiny_zoo / "tiny-fgsm-rs.safetensors"
    digest = file_digest(weights)
    result = runner.invoke(app, ["zoo", "audit", "--robust", "--n", "12", *BUDGET, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["models"]
    sidecar = json.loads((tiny_zoo / "tiny-fgsm-rs.json").read_text())
    recorded = sidecar["metrics"]["audit"]
    assert row == {"name": "tiny-fgsm-rs", **recorded}
    assert recorded["n"] == 12 and recorded["eps"] == 0.3 and recorded["data"] == "mnist/test"
    assert recorded["surrogate"] is None and recorded["config"]["steps_long"] == 1  # MNIST: no standard zoo model
    assert sidecar["metrics"]["robust"]["pgd20_images"] == 10  # the rest of the sidecar is kept
    assert file_digest(weights) == digest == sidecar["weights"]["sha256"]  # the weights are not rewritten
    full = json.loads((tiny_zoo / "audits" / "tiny-fgsm-rs.json").read_text())  # every rung, beside the sidecar
    assert full["verdict"] == recorded["verdict"] and full["rungs"] and full["n"] == 12
    (entry,) = json.loads((tiny_zoo / "manifest.json").read_text())["models"]
    assert entry["audit"] == recorded
    listed = runner.invoke(app, ["zoo", "list", "--robust", "--json"])
    assert json.loads(listed.stdout)["models"][0]["audit"] == recorded
    table = " ".join(runner.invoke(app, ["zoo", "list", "--robust"]).stdout.split())
    head = "masking suspected" if recorded["masking_suspected"] else "no masking"
    assert "audit" in table and f"{head}: {100 * recorded['robust_accuracy']:.1f} %" in table


def test_zoo_list_without_an_audit_leaves_the_column_empty(tiny_zoo: Path) -> None:
    listed = runner.invoke(app, ["zoo", "list", "--robust", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["models"][0]["audit"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--robust", "--n", "0"], "--n must be >= 1"),
        (["--robust", "--only", "tiny-fgsm"], "unknown robust zoo model 'tiny-fgsm'"),
        (["--robust", "--only", "vgg8-w25-trades-b1"], "It is the β sweep's (sweep=True; --sweep on the"),
        ([], "add --robust"),
        (["--robust", "-p", "steps_lng=3"], "unknown audit setting 'steps_lng'"),
    ],
)
def test_zoo_audit_bad_input_is_one_line_exit_2_and_the_sidecar_unchanged(
    tiny_zoo: Path, args: list[str], fragment: str
) -> None:
    before = (tiny_zoo / "tiny-fgsm-rs.json").read_text()
    assert fragment in _error(runner.invoke(app, ["zoo", "audit", *args]))
    assert (tiny_zoo / "tiny-fgsm-rs.json").read_text() == before
