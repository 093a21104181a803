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
    sweep = [zoo.SWEEP_RECIPES.get(n) for n in zoo.SWEEP_RECIPES.names()]
    betas = sorted(
        r.config.method_params["beta"]
        for r in [*cifar, *sweep]
        if r.arch_kwargs == {"depth": 8, "width": 0.25} and r.config.method == "trades"
    )
    assert betas == [1.0, 3.0, 6.0]  # the β sweep: two arms of its own and the robust zoo's β 6 model
    mnist = [r for r in recipes if r.dataset == "mnist"]
    fgsm = [r for r in mnist if r.config.method == "fgsm-rs"]
    assert sorted(r.config.seed for r in fgsm) == [0, 1, 2]
    assert all(
        r.config.method_params == {"eps": 0.3, "alpha": 0.375, "random_start": True, "clip_start": False} for r in fgsm
    )
    assert all(r.spec().mean == (0.0,) and r.spec().input_shape == (1, 28, 28) for r in mnist)
    assert not any(zoo.RECIPES.get(n).robust for n in zoo.RECIPES.names())


def _tiny(
    name: str,
    method: str,
    params: dict[str, float],
    *,
    train_images: int,
    eval_images: int,
    autoattack_images: int = 10,
) -> zoo.ZooRecipe:
    """A robust recipe that builds in seconds: a quarter-width fast_mnist, one epoch on a few MNIST images."""
    config = TrainConfig(
        epochs=1, batch_size=100, lr=5e-3, optimizer="adam", augment="none", method=method, method_params=params,
        monitor_n=0,
    )  # fmt: skip
    return zoo.ZooRecipe(
        name,
        "fast_mnist",
        "fast_mnist",
        {"width": 0.25},
        config,
        dataset="mnist",
        train_images=train_images,
        normalize=False,
        eval_images=eval_images,
        autoattack_images=autoattack_images,
    )


def test_build_records_robustness_and_list_shows_it(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = _tiny("tiny-fgsm-rs", "fgsm-rs", {"eps": 0.3}, train_images=300, eval_images=50, autoattack_images=20)
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


@pytest.mark.parametrize(
    ("flag", "name", "fragment"),
    [
        ("--robust", "vgg8-w25-trades-b1", "is the β sweep's (sweep=True; --sweep on the command line)"),
        ("--sweep", "vgg8-w25-trades", "is the robust zoo's (robust=True; --robust on the command line)"),
        ("--sweep", "vgg8-w25-trades-b2", "unknown sweep recipe 'vgg8-w25-trades-b2'"),
    ],
)
def test_build_with_a_recipe_of_the_other_collection_says_where_it_is(
    tmp_path: Path, flag: str, name: str, fragment: str
) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    result = CliRunner().invoke(app, ["zoo", "build", flag, "--only", name, "--out", str(out), "--runs", str(runs)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not runs.exists()


def test_build_zoo_refuses_a_bad_audit_n_before_training(tmp_path: Path) -> None:
    from robustlab.errors import ConfigError

    with pytest.raises(ConfigError, match="audit_n must be an integer >= 1"):
        zoo.build_zoo(None, tmp_path / "runs", tmp_path / "out", robust=True, audit_n=0)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("folder", "registry"), [("ROBUST_ZOO_DIR", "ROBUST_RECIPES"), ("SWEEP_ZOO_DIR", "SWEEP_RECIPES")]
)
def test_every_shipped_robust_model_was_built_by_its_recipe(folder: str, registry: str) -> None:
    """A shipped sidecar records the recipe it was trained with; it must be the registered one, so that
    ``zoo build --robust`` (``--sweep``) reproduces what ``zoo list --robust`` (``--sweep``) shows."""
    shipped = [p for p in sorted(getattr(zoo, folder).glob("*.json")) if p.name != "manifest.json"]
    recipes = getattr(zoo, registry)
    assert sorted(p.stem for p in shipped) == sorted(recipes.names())  # every recipe shipped, nothing else
    for side in shipped:
        recorded = json.loads(side.read_text(encoding="utf-8"))["recipe"]
        config = recipes.get(side.stem).config
        for key in ("epochs", "batch_size", "lr", "seed", "method", "optimizer", "schedule"):
            assert recorded[key] == getattr(config, key), (side.stem, key)
        # a setting added after a model was trained is absent from its record, which then had the default
        defaults = dataclasses.asdict(TRAINING_METHODS.get(config.method).settings)
        for key, value in config.method_params.items():
            assert recorded["method_params"].get(key, defaults[key]) == value, (side.stem, key)


def test_the_sweep_arms_are_the_robust_zoo_recipe_but_for_beta() -> None:
    base = zoo.ROBUST_RECIPES.get(zoo.SWEEP_BASE)
    assert base.config.method == "trades" and base.config.method_params["beta"] == 6.0
    for name in zoo.SWEEP_RECIPES.names():
        arm = zoo.SWEEP_RECIPES.get(name)
        beta = arm.config.method_params["beta"]
        assert beta in (1.0, 3.0) and name == f"{zoo.SWEEP_BASE}-b{beta:g}"
        same = dataclasses.replace(
            arm,
            name=base.name,
            config=dataclasses.replace(arm.config, method_params={**arm.config.method_params, "beta": 6.0}),
        )
        assert same == base  # like for like: the architecture, data, epochs and every other setting
    assert not set(zoo.SWEEP_RECIPES.names()) & set(zoo.ROBUST_RECIPES.names())


def _shipped(folder: Path) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["models"]}


def test_the_shipped_robust_zoo_meets_its_bar_and_the_sweep_its_trend() -> None:
    """What the zoo promises, on the records it ships: every CIFAR-10 model 20+ points under standard AutoAttack
    (its standard twin is at 0 %, measured by benchmarks/robust_zoo.py); along the β sweep clean accuracy falls and
    PGD-20 and AutoAttack robust accuracy rise."""
    robust = _shipped(zoo.ROBUST_ZOO_DIR)
    cifar = {n: e for n, e in robust.items() if e["dataset"] == "cifar10"}
    assert len(cifar) >= 6
    for name, e in cifar.items():
        rob: dict[str, float] = e["robust"]  # type: ignore[assignment]
        assert rob["eps"] == 8 / 255 and rob["autoattack"] >= 0.20, name
    arms = [*_shipped(zoo.SWEEP_ZOO_DIR).values(), robust[zoo.SWEEP_BASE]]
    arms.sort(key=lambda e: e["spec"]["recipe"]["method_params"]["beta"])  # type: ignore[index]
    assert [e["spec"]["recipe"]["method_params"]["beta"] for e in arms] == [1.0, 3.0, 6.0]  # type: ignore[index]
    clean = [float(e["test_accuracy"]) for e in arms]  # type: ignore[arg-type]
    pgd20 = [float(e["robust"]["pgd20"]) for e in arms]  # type: ignore[index]
    aa = [float(e["robust"]["autoattack"]) for e in arms]  # type: ignore[index]
    assert clean == sorted(clean, reverse=True) and pgd20 == sorted(pgd20) and aa == sorted(aa)


def test_zoo_list_sweep_shows_the_arms_in_order_of_beta() -> None:
    listed = CliRunner().invoke(app, ["zoo", "list", "--sweep", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["models"]
    assert [r["beta"] for r in rows] == [1.0, 3.0, 6.0] and all(r["built"] for r in rows)
    assert [r["name"] for r in rows if r["robust_zoo"]] == [zoo.SWEEP_BASE]
    robust = [
        r["name"] for r in json.loads(CliRunner().invoke(app, ["zoo", "list", "--robust", "--json"]).stdout)["models"]
    ]
    assert zoo.SWEEP_BASE in robust and not ({r["name"] for r in rows} - {zoo.SWEEP_BASE}) & set(robust)
    table = " ".join(CliRunner().invoke(app, ["zoo", "list", "--sweep"]).stdout.split())
    assert "TRADES β sweep" in table and "vgg8-w25-trades-b1" in table


def test_zoo_build_sweep_writes_the_sweep_folder_only(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = _tiny("tiny-trades-b1", "trades", {"eps": 0.3, "beta": 1.0}, train_images=200, eval_images=20)
    registry: Registry[zoo.ZooRecipe] = Registry("sweep recipe")
    registry.register(tiny.name, tiny)
    monkeypatch.setattr(zoo, "SWEEP_RECIPES", registry)
    monkeypatch.setattr(zoo, "SWEEP_ZOO_DIR", tmp_path / "sweep")
    monkeypatch.setattr(zoo, "ROBUST_ZOO_DIR", tmp_path / "robust")
    result = CliRunner().invoke(
        app, ["zoo", "build", "--sweep", "--no-audit", "--runs", str(tmp_path / "runs"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [b["robust"]["method"] for b in json.loads(result.stdout)["built"]] == ["trades"]
    (entry,) = json.loads((tmp_path / "sweep" / "manifest.json").read_text())["models"]
    assert entry["name"] == "tiny-trades-b1" and entry["robust"]["pgd20_images"] == 20
    assert (tmp_path / "sweep" / "tiny-trades-b1.safetensors").is_file() and not (tmp_path / "robust").exists()
