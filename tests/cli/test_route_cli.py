"""``--route``: multi-branch models are evaluated through their recorded inference route, or the one asked for,
and the route is recorded with the results (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.models import ModelSpec, save_weights
from robustlab.models.loading import assemble
from robustlab.models.norm_layers import MultiBatchNorm2d

runner = CliRunner()


def _multi_model(tmp_path: Path) -> tuple[list[str], Path]:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 40))
    kw = {"depth": 8, "width": 4, "norm_layer": "multibn", "routes": ["adv"]}
    spec = ModelSpec("toy", "resnet", "resnet_cifar", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, "toy", kw)
    net = assemble(spec).net
    with torch.no_grad():  # the adv branch sees the world very differently: its predictions differ
        for m in net.modules():
            if isinstance(m, MultiBatchNorm2d):
                adv = m.aux["adv"]
                assert isinstance(adv, torch.nn.BatchNorm2d) and adv.running_mean is not None
                adv.running_mean.fill_(2.0)
    path = tmp_path / "toy.safetensors"
    save_weights(net, spec, path)
    return ["--model", str(path), "--dataset", f"npz:{tmp_path / 'toy.npz'}"], path


def test_eval_records_the_route_and_follows_route_option(tmp_path: Path) -> None:
    args, _ = _multi_model(tmp_path)
    main = runner.invoke(app, ["eval", *args, "--json"])
    assert main.exit_code == 0, main.output
    adv = runner.invoke(app, ["eval", *args, "--route", "adv", "--json"])
    assert adv.exit_code == 0, adv.output
    a, b = json.loads(main.stdout), json.loads(adv.stdout)
    assert a["route"] == "main" and b["route"] == "adv"
    assert b["model"].endswith("@adv") and not a["model"].endswith("@adv")


def test_attack_through_an_unknown_route_is_a_one_line_error(tmp_path: Path) -> None:
    args, _ = _multi_model(tmp_path)
    result = runner.invoke(app, ["attack", *args, "--attack", "fgsm", "--eps", "8/255", "--route", "avd", "--n", "4"])
    assert result.exit_code == 2
    assert "unknown route 'avd': the model's routes are main, adv" in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_route_on_a_plain_model_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", x=rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), y=rng.integers(0, 2, 30))
    spec = ModelSpec("toy", "mlp", "mlp", 2, (1, 8, 8), (0.5,), (0.25,), "toy", {"image_size": 8})
    save_weights(assemble(spec).net, spec, tmp_path / "toy.safetensors")
    args = ["eval", "--model", str(tmp_path / "toy.safetensors"), "--dataset", f"npz:{tmp_path / 'toy.npz'}"]
    result = runner.invoke(app, [*args, "--route", "adv"])
    assert result.exit_code == 2
    assert "the model has a single batch norm" in " ".join(result.stderr.split())


def test_a_model_reference_may_name_its_route_and_study_records_carry_it(tmp_path: Path) -> None:
    from robustlab.bench.jobs import record_constants
    from robustlab.bench.plan import Job
    from robustlab.bench.spec import model_problem
    from robustlab.errors import ModelError
    from robustlab.models import load_model

    _, path = _multi_model(tmp_path)
    assert load_model(str(path)).route == "main"
    adv = load_model(f"{path}@adv")
    assert adv.route == "adv" and adv.name == "toy@adv"
    assert model_problem(f"{path}@adv") is None
    with pytest.raises(ModelError, match="unknown route 'avd'"):
        load_model(f"{path}@avd")
    with pytest.raises(ModelError, match="names route 'adv' and route= asks for 'main'"):
        load_model(f"{path}@adv", route="main")
    job = Job(kind="clean", model=f"{path}@adv", params={}, indices=(0,))
    assert record_constants(job, adv)["route"] == "adv"
    plain = ModelSpec("p", "mlp", "mlp", 2, (1, 8, 8), (0.5,), (0.25,), "toy", {"image_size": 8})
    assert "route" not in record_constants(job, assemble(plain))  # plain models: no route column
