"""The robust zoo: recipes as data, a build records the budget, PGD-20 robust accuracy and AutoAttack as pending,
its own manifest, and ``zoo list --robust`` shows them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustlab._registry import Registry
from robustlab.cli import app
from robustlab.train import TrainConfig, zoo
from robustlab.train.methods import TRAINING_METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_robust_recipes_cover_the_issue() -> None:
    recipes = [zoo.ROBUST_RECIPES.get(n) for n in zoo.ROBUST_RECIPES.names()]
    cifar = [r for r in recipes if r.dataset == "cifar10"]
    assert {r.config.method for r in cifar} == {"pgd-at", "trades"} and len({r.family for r in cifar}) >= 2
    assert all(r.config.method_params["eps"] == 8 / 255 and r.config.label_smoothing == 0 for r in cifar)
    betas = sorted(
        r.config.method_params["beta"]
        for r in cifar
        if r.arch_kwargs == {"depth": 8, "width": 0.25} and r.config.method == "trades"
    )
    assert betas == [1.0, 3.0, 6.0]
    mnist = [r for r in recipes if r.dataset == "mnist"]
    fgsm = [r for r in mnist if r.config.method == "fgsm-rs"]
    assert sorted(r.config.seed for r in fgsm) == [0, 1, 2]
    assert all(
        r.config.method_params == {"eps": 0.3, "alpha": 0.375, "random_start": True, "clip_start": False} for r in fgsm
    )
    assert all(r.spec().mean == (0.0,) and r.spec().input_shape == (1, 28, 28) for r in mnist)
    assert not any(zoo.RECIPES.get(n).robust for n in zoo.RECIPES.names())


def test_build_records_robustness_and_list_shows_it(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = zoo.ZooRecipe(
        "tiny-fgsm-rs",
        "fast_mnist",
        "fast_mnist",
        {"width": 0.25},
        TrainConfig(
            epochs=1,
            batch_size=100,
            lr=5e-3,
            optimizer="adam",
            augment="none",
            method="fgsm-rs",
            method_params={"eps": 0.3},
            monitor_n=0,
        ),
        dataset="mnist",
        train_images=300,
        normalize=False,
        eval_images=50,
        autoattack_images=20,
    )
    registry: Registry[zoo.ZooRecipe] = Registry("robust zoo recipe")
    registry.register(tiny.name, tiny)
    monkeypatch.setattr(zoo, "ROBUST_RECIPES", registry)
    monkeypatch.setattr(zoo, "ROBUST_ZOO_DIR", tmp_path / "robust")
    phases: list[tuple[str, str]] = []
    result = zoo.build_zoo(
        None, tmp_path / "runs", robust=True, audit_n=20, on_phase=lambda name, what: phases.append((name, what))
    )
    (spec,) = result.built
    assert phases == [  # each long measurement is announced before it starts
        ("tiny-fgsm-rs", "PGD-20 at linf 0.3 on 50 test images"),
        ("tiny-fgsm-rs", "standard AutoAttack on 20 test images"),
        ("tiny-fgsm-rs", "gradient-masking audit on 20 test points"),
    ]
    robust = spec.metrics["robust"]
    assert robust["eps"] == 0.3 and robust["pgd20_images"] == 50 and robust["autoattack_images"] == 20
    assert 0.0 <= robust["autoattack"] <= 1.0 and isinstance(robust["autoattack_flags"], list)
    assert 0.0 <= robust["pgd20"] <= spec.metrics["test_accuracy"]
    sidecar = json.loads((tmp_path / "robust" / "tiny-fgsm-rs.json").read_text())
    assert sidecar["metrics"]["robust"] == robust and sidecar["recipe"]["method"] == "fgsm-rs"
    (entry,) = result.manifest["models"]
    assert result.manifest["dataset"] == "mnist" and entry["dataset"] == "mnist" and entry["method"] == "fgsm-rs"
    assert entry["robust"]["pgd20"] == robust["pgd20"]
    listed = CliRunner().invoke(app, ["zoo", "list", "--robust", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)["models"]
    assert row["built"] and row["pgd20"] == robust["pgd20"] and row["autoattack"] == robust["autoattack"]
    audited = spec.metrics["audit"]  # the build audits what it built, on the first 20 of the PGD-20 points
    assert audited["n"] == 20 and audited["eps"] == 0.3 and isinstance(audited["codes"], list)
    assert audited["robust_accuracy"] <= audited["first_pgd"]["value"]  # the ladder only lowers PGD-20's number
    full = json.loads((tmp_path / "robust" / "audits" / "tiny-fgsm-rs.json").read_text())
    assert full["verdict"] == audited["verdict"] and full["n"] == 20
    as_json = json.loads(json.dumps(audited))  # tuples become lists in the sidecar
    assert sidecar["metrics"]["audit"] == as_json and row["audit"] == as_json
    table = CliRunner().invoke(app, ["zoo", "list", "--robust"])
    assert (
        "tiny-fgsm-rs" in table.stdout and f"{robust['autoattack']:.4f}" in table.stdout and "linf 0.3" in table.stdout
    )


def test_build_with_a_bad_audit_n_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "robust"
    result = CliRunner().invoke(
        app, ["zoo", "build", "--robust", "--audit-n", "0", "--out", str(out), "--runs", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2
    assert "--audit-n must be >= 1" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_build_zoo_refuses_a_bad_audit_n_before_training(tmp_path: Path) -> None:
    from robustlab.errors import ConfigError

    with pytest.raises(ConfigError, match="audit_n must be an integer >= 1"):
        zoo.build_zoo(None, tmp_path / "runs", tmp_path / "out", robust=True, audit_n=0)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_every_shipped_robust_model_was_built_by_its_recipe() -> None:
    """A shipped sidecar records the recipe it was trained with; it must be the registered one, so that
    ``zoo build --robust`` reproduces what ``zoo list --robust`` shows."""
    shipped = [p for p in sorted(zoo.ROBUST_ZOO_DIR.glob("*.json")) if p.name != "manifest.json"]
    assert shipped
    for side in shipped:
        recorded = json.loads(side.read_text(encoding="utf-8"))["recipe"]
        config = zoo.ROBUST_RECIPES.get(side.stem).config
        for key in ("epochs", "batch_size", "lr", "seed", "method", "optimizer", "schedule"):
            assert recorded[key] == getattr(config, key), (side.stem, key)
        # a setting added after a model was trained is absent from its record, which then had the default
        defaults = dataclasses.asdict(TRAINING_METHODS.get(config.method).settings)
        for key, value in config.method_params.items():
            assert recorded["method_params"].get(key, defaults[key]) == value, (side.stem, key)
